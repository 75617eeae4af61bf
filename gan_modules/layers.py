"""Building blocks and initialisation shared by the networks."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn


def keras_bn_momentum(keras_momentum: float) -> float:
    """Keras BatchNormalization(momentum=m) keeps m of the old running stat; PyTorch keeps 1 - momentum."""
    return 1.0 - keras_momentum


def init_dcgan_weights(module: nn.Module) -> None:
    """Conv/linear weights ~ N(0, 0.02), BatchNorm scale ~ N(1, 0.02), biases 0 (Radford et al. 2016)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:  # conditional BN keeps its own
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def normalization_2d(kind: str, channels: int, momentum: float = 0.1) -> nn.Module:
    """'batch' -> BatchNorm2d, 'instance' -> InstanceNorm2d (affine), 'none' -> Identity."""
    if kind == "batch":
        return nn.BatchNorm2d(channels, momentum=momentum)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalization {kind!r}; choose 'batch', 'instance' or 'none'")


def maybe_spectral_norm(module: nn.Module, enabled: bool) -> nn.Module:
    """Spectral normalization (Miyato et al. 2018) through torch's parametrization, when enabled."""
    return nn.utils.parametrizations.spectral_norm(module) if enabled else module


def init_glorot_weights(module: nn.Module) -> None:
    """Conv/linear weights ~ Glorot uniform, biases 0: Keras' defaults, for networks ported from Keras seeds."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class UNetDown(nn.Module):
    """[N, C_in, H, W] -> [N, C_out, H/2, W/2]: 4x4 stride-2 conv, BatchNorm, LeakyReLU 0.2 (Isola et al. 2017)."""

    def __init__(self, in_channels: int, out_channels: int, norm: bool = True) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=not norm),
            nn.BatchNorm2d(out_channels) if norm else nn.Identity(),
            nn.LeakyReLU(0.2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class UNetUp(nn.Module):
    """[N, C_in, H, W] -> [N, C_out, 2H, 2W]: 4x4 stride-2 transposed conv, BatchNorm, dropout, ReLU (Isola et al.)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def upsample_2x(in_channels: int, out_channels: int, mode: str = "transpose", bias: bool = False) -> nn.Module:
    """A x2 upsampling layer: ``transpose`` (4x4 stride-2 transposed conv, DCGAN's), ``nearest`` (nearest-neighbour
    resize + 3x3 conv, Odena et al. 2016: no checkerboard artifacts) or ``pixelshuffle`` (3x3 conv to 4x the
    channels + sub-pixel shuffle, Shi et al. 2016)."""
    if mode == "transpose":
        return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=bias)
    if mode == "nearest":
        return nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias),
        )
    if mode == "pixelshuffle":
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels * 4, kernel_size=3, padding=1, bias=bias), nn.PixelShuffle(2)
        )
    raise ValueError(f"unknown upsampling {mode!r}; choose 'transpose', 'nearest' or 'pixelshuffle'")


class MinibatchStdDev(nn.Module):
    """Appends one channel (or feature): the mean standard deviation over groups of ``group_size`` samples
    (Karras et al. 2018). A collapsed batch has a small value there, which D learns to notice.

    [N, C, H, W] -> [N, C + 1, H, W]; [N, F] -> [N, F + 1]. N must be divisible by the group size, or
    smaller than it (then the whole batch is one group).
    """

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        if group_size < 2:
            raise ValueError(f"minibatch stddev group_size must be >= 2, got {group_size}")
        self.group_size = group_size

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        g = next(d for d in range(min(self.group_size, n), 0, -1) if n % d == 0)  # the largest group size <= G
        y = x.float().reshape(g, n // g, *x.shape[1:])  # [G, M, ...]: sample i is in group i % M
        # The variance over the group spelled out: torch's CPU var() over a leading dimension took 3.4 ms
        # for a [4, 125, 256] tensor (85% of the layer's cost, doubling the toy D's step); this takes ~0.1 ms.
        centred = y - y.mean(dim=0)
        std = (centred.square().mean(dim=0) + 1e-8).sqrt()  # [M, ...]
        stat = std.flatten(1).mean(1)  # [M]
        stat = stat.repeat(g).to(x.dtype)  # back to [N], sample i gets its group's value
        shape = (n, 1, *x.shape[2:]) if x.ndim == 4 else (n, 1)
        return torch.cat([x, stat.view(n, *([1] * (x.ndim - 1))).expand(shape)], dim=1)


class MinibatchDiscrimination(nn.Module):
    """Minibatch discrimination (Salimans et al. 2016): [N, A] -> [N, A + B].

    Each sample's features go through a learned tensor T [A, B * C] to B rows of size C; for each row b,
    o_b(x_i) = sum over the other samples j of exp(-||M_i,b - M_j,b||_1). Samples that look alike get large
    values, so D can tell a collapsed batch of fakes from a varied batch of reals.
    """

    def __init__(self, in_features: int, num_kernels: int = 50, kernel_dim: int = 5) -> None:
        super().__init__()
        self.num_kernels, self.kernel_dim = num_kernels, kernel_dim
        self.T = nn.Parameter(torch.randn(in_features, num_kernels * kernel_dim) * 0.1)

    def forward(self, x: Tensor) -> Tensor:
        m = (x @ self.T).view(-1, self.num_kernels, self.kernel_dim)  # [N, B, C]
        l1 = (m.unsqueeze(0) - m.unsqueeze(1)).abs().sum(3)  # [N, N, B]
        o = torch.exp(-l1).sum(1) - 1.0  # minus each sample's exp(0) with itself
        return torch.cat([x, o], dim=1)


class VirtualBatchNorm2d(nn.Module):
    """Virtual batch normalization (Salimans et al. 2016): each sample is normalized with the statistics of a
    fixed reference batch combined with the sample itself, so its output does not depend on its batch mates.

    The owning network first runs its reference batch with ``collecting = True`` (the layer stores the
    reference mean and mean square, and normalizes the reference batch by them), then the real batch: for
    sample i, mean = (n * ref_mean + mean_i) / (n + 1), likewise for the mean square (per channel, over
    space). Gradients flow through the reference statistics, as in the paper.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.eps = eps
        self.collecting = False
        self._reference: tuple[Tensor, Tensor, int] | None = None

    def _affine(self, x: Tensor, mean: Tensor, meansq: Tensor) -> Tensor:
        var = (meansq - mean.pow(2)).clamp_min(0)
        x = (x - mean) / (var + self.eps).sqrt()
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        if self.collecting:
            mean = x.mean(dim=(0, 2, 3))
            meansq = x.pow(2).mean(dim=(0, 2, 3))
            self._reference = (mean, meansq, x.shape[0])
            return self._affine(x, mean.view(1, -1, 1, 1), meansq.view(1, -1, 1, 1))
        if self._reference is None:
            raise RuntimeError("VirtualBatchNorm2d needs its reference batch first; run the network's reference pass")
        ref_mean, ref_meansq, n = self._reference
        mean_i = x.mean(dim=(2, 3))  # [N, C]
        meansq_i = x.pow(2).mean(dim=(2, 3))
        mean = ((n * ref_mean + mean_i) / (n + 1))[:, :, None, None]
        meansq = ((n * ref_meansq + meansq_i) / (n + 1))[:, :, None, None]
        return self._affine(x, mean, meansq)


MinibatchKind = Literal["none", "stddev", "discrimination"]


def minibatch_layer(kind: str, width: int) -> tuple[nn.Module | None, int]:
    """The layer a discriminator's ``minibatch`` option names, for inputs of ``width`` features (or channels, for
    stddev on a feature map), and the width it outputs; (None, width) for ``none``."""
    if kind == "none":
        return None, width
    if kind == "stddev":
        return MinibatchStdDev(), width + 1
    if kind == "discrimination":
        layer = MinibatchDiscrimination(width)
        return layer, width + layer.num_kernels
    raise ValueError(f"unknown minibatch layer {kind!r}; choose 'none', 'stddev' or 'discrimination'")


# How a class-conditional D takes the label: a projection term on its logit, or an auxiliary classifier.
Conditioning = Literal["projection", "acgan"]


def check_conditioning(num_classes: int, conditioning: str) -> None:
    if num_classes < 0 or num_classes == 1:
        raise ValueError(f"model.num_classes must be 0 (unconditional) or at least 2, got {num_classes}")
    if conditioning not in ("projection", "acgan"):
        raise ValueError(f"model.conditioning must be 'projection' or 'acgan', got {conditioning!r}")


def require_labels(network: nn.Module, labels: Tensor | None) -> Tensor:
    if labels is None:
        raise ValueError(f"{type(network).__name__} is class-conditional: pass the class of each image (labels)")
    return labels


class LabelEmbedding(nn.Module):
    """(z [N, D], labels [N]) -> [N, D + E]: z with a learned embedding of its class appended (Mirza & Osindero 2014
    append the one-hot label; an embedding ~ N(0, 1), as wide as z by default, gives the class z's weight)."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_classes, dim)

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        return torch.cat([z, self.embedding(labels).to(z.dtype)], dim=1)


class ConditionalBatchNorm2d(nn.Module):
    """(x [N, C, H, W], labels [N]) -> x batch-normalized without an affine of its own, then scaled and shifted by
    its class's gain and bias (conditional BN: de Vries et al. 2017, Dumoulin et al. 2017; the generator of Miyato &
    Koyama 2018's projection GAN). Gains start at N(1, 0.02) and biases at 0, as DCGAN's BatchNorm."""

    def __init__(self, channels: int, num_classes: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False, momentum=momentum)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.normal_(self.gain.weight, 1.0, 0.02)  # Radford et al. 2016
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        x = self.norm(x)
        return x * self.gain(labels).to(x.dtype)[:, :, None, None] + self.bias(labels).to(x.dtype)[:, :, None, None]


class SequentialDiscriminator(nn.Module):
    """A discriminator whose ``net`` is an ``nn.Sequential`` ending in its one-logit layer: logits [N], and the
    last hidden layer's activations from the same pass (``features_and_logits``, for feature matching).

    ``add_class_head`` makes it class-conditional on those features phi(x): ``projection`` adds <embed(y), phi(x)>
    to the logit (Miyato & Koyama 2018), so it judges (image, class) pairs and needs ``labels``; ``acgan`` keeps the
    logit class-free and adds an auxiliary classifier, ``class_logits(phi(x))`` [N, num_classes] (Odena et al. 2017).
    """

    net: nn.Sequential
    num_classes: int = 0
    conditioning: str | None = None

    def add_class_head(self, num_classes: int, conditioning: Conditioning, spectral_norm: bool = False) -> None:
        """Called at the end of a subclass's ``__init__``; does nothing when ``num_classes`` is 0."""
        check_conditioning(num_classes, conditioning)
        if num_classes == 0:
            return
        features = self.net[-1].in_features
        if conditioning == "projection":
            self.projection = nn.Embedding(num_classes, features)
            nn.init.xavier_uniform_(self.projection.weight)  # Miyato & Koyama's code: a Glorot-uniform EmbedID
            maybe_spectral_norm(self.projection, spectral_norm)  # as their SNEmbedID, when D's layers have it
        else:
            self.classifier = maybe_spectral_norm(nn.Linear(features, num_classes), spectral_norm)
        self.num_classes, self.conditioning = num_classes, conditioning

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.conditioning != "projection":
            return self.net(x).squeeze(1)
        return self.features_and_logits(x, labels)[1]

    def features_and_logits(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(the last hidden layer's activations [N, F], logits [N]) from one forward pass."""
        features = self.net[:-1](x)
        logits = self.net[-1](features).squeeze(1)
        if self.conditioning == "projection":
            if labels is None:
                raise ValueError(
                    f"{type(self).__name__} is class-conditional (projection): it judges an image together with its "
                    "class, so pass labels"
                )
            logits = logits + (self.projection(labels).to(features.dtype) * features).sum(1)
        return features, logits

    def class_logits(self, features: Tensor) -> Tensor:
        """ACGAN's auxiliary classifier: ``features_and_logits``' features [N, F] -> class logits [N, num_classes]."""
        if self.conditioning != "acgan":
            raise ValueError(f"{type(self).__name__} has no auxiliary classifier (conditioning {self.conditioning})")
        return self.classifier(features)
