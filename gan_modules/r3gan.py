"""R3GAN's networks (Huang, Gokaslan, Kuleshov, Tompkin, NeurIPS 2024, "The GAN is dead; long live the GAN!
A Modern GAN Baseline"; official code: brownvc/R3GAN, ``R3GAN/Networks.py``), sized by YAML.

A plain modern ResNet for both players: no normalization layers, no minibatch stddev, no noise inputs, no
style mapping. Every residual block is an inverted bottleneck (1x1 expand, grouped 3x3, 1x1 project) whose last
layer starts at zero and whose inner layers are scaled down with the network's depth (Fixup, Zhang et al. 2019),
so each block is the identity at initialization. Resolution changes by low-pass (bilinear) interpolation with a
1x1 conv where the width changes, never by learned transposed or strided convs. The paper's loss (relativistic pairing
+ R1 + R2) is the objective and tricks of the config, not part of this file.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from gan_modules.base import GANModule
from gan_modules.layers import Conditioning, LabelEmbedding, SequentialDiscriminator, require_labels

LEAKY_SLOPE = 0.2  # R3GAN's BiasedActivation: leaky ReLU 0.2, as StyleGAN
# He et al. 2015's gain for leaky ReLU 0.2, sqrt(2 / (1 + 0.2^2)): R3GAN's BiasedActivation.Gain.
LEAKY_GAIN = nn.init.calculate_gain("leaky_relu", LEAKY_SLOPE)
LAYERS_PER_BRANCH = 3  # 1x1 expand, grouped 3x3, 1x1 project


def r3gan_stages(image_size: int) -> tuple[int, int]:
    """(base size, number of x2 stages): halve the size while it is even and above 7.

    R3GAN starts G (and ends D) at 4x4 (``GenerativeBasis``/``DiscriminativeBasis``), which fits powers of two;
    28 = 7 * 4 is not one, and padding MNIST to 32 would make both networks spend 30% more pixels on an empty
    border. So the base may be any size from 4 to 7: 28 -> (7, 2), 32 -> (4, 3), 64 -> (4, 4).
    """
    size, stages = image_size, 0
    while size % 2 == 0 and size > 7:
        size //= 2
        stages += 1
    if not 4 <= size <= 7:
        raise ValueError(
            f"R3GAN needs image_size = s * 2^k with s in 4..7 (e.g. 28, 32, 48, 64, 128), got {image_size}"
        )
    return size, stages


def check_widths(widths: tuple[int, ...] | list[int], image_size: int, name: str) -> tuple[int, ...]:
    """``widths`` as a tuple, after checking that there is one positive width per resolution."""
    base, stages = r3gan_stages(image_size)
    sizes = [base * 2**i for i in range(stages + 1)]
    if len(widths) != len(sizes) or any(w < 1 for w in widths):
        raise ValueError(
            f"{name} needs {len(sizes)} positive widths at {image_size}x{image_size}, one per resolution "
            f"{sizes} (G's from {base}x{base} up, D's from {image_size}x{image_size} down), got {list(widths)}"
        )
    return tuple(widths)


def msr_init_(layer: nn.Conv2d | nn.Linear, gain: float = 1.0) -> None:
    """Weights ~ N(0, gain^2 / fan_in), biases 0: He et al. 2015's init (R3GAN's ``MSRInitializer``)."""
    fan_in = layer.weight[0].numel()  # in_channels / groups * kernel area, or in_features
    nn.init.normal_(layer.weight, 0.0, gain / math.sqrt(fan_in))
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class ResidualBlock(nn.Module):
    """[N, C, H, W] -> [N, C, H, W]: x + project(act(grouped_conv(act(expand(x))))), no normalization.

    The branch is an inverted bottleneck (Sandler et al. 2018) with a grouped 3x3 conv (ResNeXt, Xie et al. 2017):
    ``expansion`` x wider inside, ``group_size`` channels per group. The conv biases sit before each activation,
    where R3GAN's ``BiasedActivation`` adds its bias.
    """

    def __init__(self, channels: int, expansion: int = 2, group_size: int = 16) -> None:
        super().__init__()
        hidden = channels * expansion
        if hidden % group_size != 0:
            raise ValueError(
                f"R3GAN: a block's inner width (width {channels} x expansion {expansion} = {hidden}) must be a "
                f"multiple of group_size {group_size}; change the widths or group_size"
            )
        self.expand = nn.Conv2d(channels, hidden, kernel_size=1)
        self.conv = nn.Conv2d(hidden, hidden, kernel_size=3, padding=1, groups=hidden // group_size)
        self.project = nn.Conv2d(hidden, channels, kernel_size=1, bias=False)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)

    def reset_parameters(self, num_blocks: int) -> None:
        """Fixup (Zhang et al. 2019), as R3GAN's ``ResidualBlock``: the inner layers' He gain is scaled by
        L^(-1 / (2m - 2)) for L blocks in the network and m layers per branch, and the last layer starts at 0."""
        gain = LEAKY_GAIN * num_blocks ** (-1 / (2 * LAYERS_PER_BRANCH - 2))
        msr_init_(self.expand, gain)
        msr_init_(self.conv, gain)
        nn.init.zeros_(self.project.weight)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.project(self.act(self.conv(self.act(self.expand(x)))))


def width_change(in_channels: int, out_channels: int) -> nn.Conv2d | None:
    """The 1x1 conv beside a resampling where the width changes (R3GAN's transition ``LinearLayer``), else None."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False) if in_channels != out_channels else None


class Upsample(nn.Module):
    """[N, C_in, H, W] -> [N, C_out, 2H, 2W]: a 1x1 conv where the width changes (at the low resolution, where it
    is cheaper), then bilinear x2. Bilinear x2 is R3GAN's low-pass FIR [1, 3, 3, 1] upsampler (its
    ``InterpolativeUpsampler`` with filter [1, 2, 1]) up to the border, where torch clamps instead of zero-padding."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = width_change(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x) if self.conv is not None else x
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class Downsample(nn.Module):
    """[N, C_in, H, W] -> [N, C_out, H/2, W/2]: a low-pass [1, 3, 3, 1] FIR with stride 2 (R3GAN's
    ``InterpolativeDownsampler`` with filter [1, 2, 1]: antialiased bilinear /2), then a 1x1 conv where the width
    changes. Written as a depthwise conv because torch's antialiased interpolation has no bf16 CPU kernel."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
        kernel = torch.outer(taps, taps)
        self.register_buffer("kernel", (kernel / kernel.sum()).view(1, 1, 4, 4), persistent=False)
        self.conv = width_change(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        kernel = self.kernel.to(x.dtype).expand(channels, 1, 4, 4)
        x = F.conv2d(x, kernel, stride=2, padding=1, groups=channels)
        return self.conv(x) if self.conv is not None else x


def init_r3gan_weights(network: nn.Module, num_blocks: int) -> None:
    """He init (gain 1) for every conv and linear layer, then Fixup for each residual block (R3GAN's scheme)."""
    for m in network.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            msr_init_(m)
    for m in network.modules():
        if isinstance(m, ResidualBlock):
            m.reset_parameters(num_blocks)


class R3GANGenerator(nn.Module):
    """z [N, latent_dim] (and labels [N] when ``num_classes`` > 0) -> images [N, C, H, W] in [-1, 1] (in eval mode;
    see below). A class-conditional G appends a learned embedding of the label to z (``LabelEmbedding``).

    A learned base [widths[0], s, s] scaled per channel by a linear map of z (R3GAN's ``GenerativeBasis``), then
    one stage per resolution from s x s up: (x2 upsampling, except at the base) + ``blocks_per_stage`` residual
    blocks, and a 1x1 conv to the image channels.

    The output layer is linear, as R3GAN's ``AggregationLayer``: in training mode D sees G's raw values and
    learns that real pixels never leave [-1, 1], which teaches G the range with a useful gradient everywhere. A
    tanh there saturated: on MNIST (mostly -1 background) this normalization-free G went all black within 25
    batches and stayed so (D loss 0.01 from batch 100 on; widths 128-64-32, R1 + R2 gamma 0.1 every 4th D
    update), where the linear output drew strokes by batch 150. In eval mode (sampling, FID, the EMA copy) the
    output is clamped to [-1, 1], the range every consumer expects.
    """

    def __init__(
        self,
        latent_dim: int = 64,  # R3GAN's NoiseDimension in every preset
        image_size: int = 32,
        num_channels: int = 3,
        widths: tuple[int, ...] = (256, 256, 256, 256),
        blocks_per_stage: int = 2,  # R3GAN's presets: 2 blocks at every resolution
        expansion: int = 2,  # R3GAN's presets: ExpansionFactor 2
        group_size: int = 16,  # R3GAN's presets: e.g. CIFAR-10, 768 * 2 channels in 96 groups
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        if blocks_per_stage < 0 or expansion < 1 or group_size < 1:
            raise ValueError("R3GAN: blocks_per_stage must be >= 0, expansion and group_size >= 1")
        base, _ = r3gan_stages(image_size)
        widths = check_widths(widths, image_size, "R3GANGenerator")
        self.latent_dim = latent_dim
        self.base_size = base
        self.num_classes = num_classes
        self.label_embedding = LabelEmbedding(num_classes, latent_dim) if num_classes else None
        self.to_basis = nn.Linear(2 * latent_dim if num_classes else latent_dim, widths[0], bias=False)
        self.basis = nn.Parameter(torch.randn(widths[0], base, base))  # N(0, 1), R3GAN's GenerativeBasis
        stages = []
        for i, width in enumerate(widths):
            layers: list[nn.Module] = [Upsample(widths[i - 1], width)] if i > 0 else []
            layers += [ResidualBlock(width, expansion, group_size) for _ in range(blocks_per_stage)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.to_image = nn.Conv2d(widths[-1], num_channels, kernel_size=1, bias=False)
        init_r3gan_weights(self, num_blocks=blocks_per_stage * len(widths))

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        z = z.view(z.shape[0], self.latent_dim)
        scale = self.to_basis(self.label_embedding(z, require_labels(self, labels)) if self.num_classes else z)
        x = self.basis.to(scale.dtype).unsqueeze(0) * scale[:, :, None, None]
        images = self.to_image(self.stages(x))
        return images if self.training else images.clamp(-1, 1)


class R3GANDiscriminator(SequentialDiscriminator):
    """images [N, C, H, W] (and labels [N] for a projection D) -> logits [N].

    A 1x1 conv from the image channels, one stage per resolution from H x W down: ``blocks_per_stage`` residual
    blocks + (/2 downsampling, except at the base), then R3GAN's ``DiscriminativeBasis``: a depthwise s x s conv
    to one value per channel (D's features) and a linear layer to the logit. ``net[0]`` is the input conv (PacGAN
    widens it), ``net[-1]`` the logit layer (``features_and_logits`` reads what comes before it, and a class head
    of a class-conditional D, ``SequentialDiscriminator``, reads the same features).
    """

    def __init__(
        self,
        image_size: int = 32,
        num_channels: int = 3,
        widths: tuple[int, ...] = (256, 256, 256, 256),  # from the image resolution down
        blocks_per_stage: int = 2,
        expansion: int = 2,
        group_size: int = 16,
        num_classes: int = 0,
        conditioning: Conditioning = "projection",
    ) -> None:
        super().__init__()
        if blocks_per_stage < 0 or expansion < 1 or group_size < 1:
            raise ValueError("R3GAN: blocks_per_stage must be >= 0, expansion and group_size >= 1")
        base, _ = r3gan_stages(image_size)
        widths = check_widths(widths, image_size, "R3GANDiscriminator")
        layers: list[nn.Module] = [nn.Conv2d(num_channels, widths[0], kernel_size=1, bias=False)]
        for i, width in enumerate(widths):
            layers += [ResidualBlock(width, expansion, group_size) for _ in range(blocks_per_stage)]
            if i + 1 < len(widths):
                layers.append(Downsample(width, widths[i + 1]))
        last = widths[-1]
        layers += [
            nn.Conv2d(last, last, kernel_size=base, groups=last, bias=False),
            nn.Flatten(),
            nn.Linear(last, 1, bias=False),
        ]
        self.net = nn.Sequential(*layers)
        init_r3gan_weights(self, num_blocks=blocks_per_stage * len(widths))
        self.add_class_head(num_classes, conditioning)


class R3GAN(GANModule):
    """R3GAN's generator and discriminator at any size s * 2^k (s in 4..7); every other option is ``GANModule``'s.

    The paper's presets are far wider (CIFAR-10: 768 channels at each of 4x4..32x32, 2 blocks each, about 21M
    parameters per network); the project's configs are small members of the same family (the MNIST one sized for
    2 CPU cores). The training recipe is the config's: the relativistic pairing objective with R1 + R2, Adam betas
    (0, 0.99), an EMA of G.
    """

    def __init__(
        self,
        latent_dim: int = 64,  # R3GAN's presets
        image_size: int = 32,
        num_channels: int = 3,
        widths: tuple[int, ...] = (256, 256, 256, 256),
        d_widths: tuple[int, ...] | None = None,
        blocks_per_stage: int = 2,  # R3GAN's presets
        expansion: int = 2,  # R3GAN's presets
        group_size: int = 16,  # R3GAN's presets
        betas: tuple[float, float] = (0.0, 0.99),  # R3GAN's train.py: beta1 0, beta2 ramped 0.9 -> 0.99
        num_classes: int = 0,
        conditioning: Conditioning = "projection",
        **kwargs,
    ) -> None:
        """
        Args:
            widths: G's channels at each resolution from the base (4x4, or 7x7 at 28) up to the image size.
            d_widths: D's channels from the image size down; None: ``widths`` reversed, as R3GAN's presets.
            blocks_per_stage: residual blocks at each resolution, in G and in D.
            expansion: how much wider a block's inside is than its width (inverted bottleneck).
            group_size: channels per group of a block's grouped 3x3 conv (width x expansion must divide by it).
            num_classes: 0 for an unconditional GAN; else the class count of a class-conditional one (the label enters
                G as an embedding appended to z, and D through ``conditioning``; see ``GANModule``).
            conditioning: "projection" (Miyato & Koyama 2018) or "acgan" (Odena et al. 2017).
        """
        super().__init__(
            generator=R3GANGenerator(
                latent_dim=latent_dim,
                image_size=image_size,
                num_channels=num_channels,
                widths=widths,
                blocks_per_stage=blocks_per_stage,
                expansion=expansion,
                group_size=group_size,
                num_classes=num_classes,
            ),
            discriminator=R3GANDiscriminator(
                image_size=image_size,
                num_channels=num_channels,
                widths=tuple(reversed(widths)) if d_widths is None else d_widths,
                blocks_per_stage=blocks_per_stage,
                expansion=expansion,
                group_size=group_size,
                num_classes=num_classes,
                conditioning=conditioning,
            ),
            latent_dim=latent_dim,
            betas=betas,
            num_classes=num_classes,
            conditioning=conditioning,
            **kwargs,
        )
        # The tricks' setup has run: a spectral norm of a zero-initialized branch conv divides 0 by its largest
        # singular value, 0, and D's first logits are NaN.
        if any(
            parametrize.is_parametrized(m.project) for m in self.discriminator.modules() if isinstance(m, ResidualBlock)
        ):
            raise ValueError(
                "R3GAN's D cannot take SpectralNorm: its residual branches start at zero, whose spectral norm is 0 "
                "(NaN logits). R3GAN regularizes D with R1 + R2 instead (gan_modules.tricks.R1, R2)"
            )
