"""DCGAN (Radford et al. 2016), resolution-generic, with seed 002's fully convolutional generator."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from gan_modules.base import GANModule
from gan_modules.layers import (
    ConditionalBatchNorm2d,
    Conditioning,
    SequentialDiscriminator,
    VirtualBatchNorm2d,
    init_dcgan_weights,
    maybe_spectral_norm,
    minibatch_layer,
    normalization_2d,
    require_labels,
    upsample_2x,
)


def dcgan_stages(image_size: int) -> tuple[int, int]:
    """(start size, number of x2 stages): halve the size while it stays even and above 4.

    28 -> (7, 2), 32 -> (4, 3), 64 -> (4, 4), 128 -> (4, 5).
    """
    if image_size < 8:
        raise ValueError(f"DCGAN needs images of at least 8x8, got {image_size}")
    size, stages = image_size, 0
    while size % 2 == 0 and size > 4 and size // 2 >= 4:
        size //= 2
        stages += 1
    if stages < 1 or size > 8:
        raise ValueError(
            f"DCGAN needs image_size = s * 2^k with s in 4..8 and k >= 1 (e.g. 28, 32, 64, 128), got {image_size}"
        )
    return size, stages


class DCGANGenerator(nn.Module):
    """z [N, latent_dim] (and labels [N] when ``num_classes`` > 0) -> images [N, C, H, W] in [-1, 1].

    Seed 002's layout at 64x64: a 4x4 transposed conv lifts z to 4x4x512, three stride-2 transposed
    convs halve the width (256, 128, 64) while doubling the size, a 3x3 conv refines, and a last
    stride-2 transposed conv makes the image. Other sizes change the start size and stage count.
    A class-conditional G takes the label through every BatchNorm (``ConditionalBatchNorm2d``).
    """

    def __init__(
        self,
        latent_dim: int = 100,
        image_size: int = 64,
        num_channels: int = 3,
        base_channels: int = 64,
        bn_momentum: float = 0.5,  # seed 002: Keras BatchNormalization(momentum=0.5) -> PyTorch 0.5
        upsample: Literal["transpose", "nearest", "pixelshuffle"] = "transpose",
        norm: Literal["batch", "virtual"] = "batch",
        reference_batch: int = 64,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        start, stages = dcgan_stages(image_size)
        width = base_channels * 2 ** (stages - 1)
        if norm not in ("batch", "virtual"):
            raise ValueError(f"unknown generator norm {norm!r}; choose 'batch' or 'virtual'")
        if num_classes and norm == "virtual":
            raise ValueError("a class-conditional DCGAN generator takes the label through conditional BatchNorm; "
                             "use g_norm batch, not virtual")  # fmt: skip

        def bn(channels: int) -> nn.Module:
            if norm == "virtual":
                return VirtualBatchNorm2d(channels)
            if num_classes:
                return ConditionalBatchNorm2d(channels, num_classes, momentum=bn_momentum)
            return nn.BatchNorm2d(channels, momentum=bn_momentum)

        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, width, kernel_size=start, stride=1, padding=0, bias=False),
            bn(width),
            nn.LeakyReLU(0.2),
        ]
        for _ in range(stages - 1):
            layers += [
                upsample_2x(width, width // 2, upsample, bias=False),
                bn(width // 2),
                nn.LeakyReLU(0.2),
            ]
            width //= 2
        layers += [
            nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False),
            bn(width),
            nn.LeakyReLU(0.2),
            upsample_2x(width, num_channels, upsample, bias=True),
            nn.Tanh(),
        ]
        self.net = nn.Sequential(*layers)
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        init_dcgan_weights(self)
        self.virtual = [m for m in self.modules() if isinstance(m, VirtualBatchNorm2d)]
        if self.virtual:  # VBN's fixed reference batch of latents (a buffer: saved, moved, the same on every rank)
            reference = torch.randn(reference_batch, latent_dim, generator=torch.Generator().manual_seed(1234))
            self.register_buffer("reference_z", reference)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.num_classes:
            labels = require_labels(self, labels)
            x = z.view(z.shape[0], self.latent_dim, 1, 1)
            for layer in self.net:
                x = layer(x, labels) if isinstance(layer, ConditionalBatchNorm2d) else layer(x)
            return x
        if self.virtual:  # the reference batch first, so each VBN layer holds this step's reference statistics
            for layer in self.virtual:
                layer.collecting = True
            try:
                self.net(self.reference_z.to(z.dtype).view(-1, self.latent_dim, 1, 1))
            finally:
                for layer in self.virtual:
                    layer.collecting = False
            try:
                return self.net(z.view(z.shape[0], self.latent_dim, 1, 1))
            finally:
                for layer in self.virtual:
                    layer._reference = None  # holds this step's graph; never reuse it
        return self.net(z.view(z.shape[0], self.latent_dim, 1, 1))


class DCGANDiscriminator(SequentialDiscriminator):
    """images [N, C, H, W] (and labels [N] for a projection D) -> logits [N]. Stride-2 4x4 convs doubling the width,
    then a dense layer; a class head on the flattened features when ``num_classes`` > 0 (``SequentialDiscriminator``).
    """

    def __init__(
        self,
        image_size: int = 64,
        num_channels: int = 3,
        base_channels: int = 64,
        norm: Literal["batch", "instance", "none"] = "batch",
        spectral_norm: bool = False,
        bn_momentum: float = 0.5,  # seed 002
        dropout: float = 0.0,
        minibatch: Literal["none", "stddev", "discrimination"] = "none",
        num_classes: int = 0,
        conditioning: Conditioning = "projection",
    ) -> None:
        super().__init__()
        start, stages = dcgan_stages(image_size)
        width = base_channels
        layers: list[nn.Module] = [
            maybe_spectral_norm(nn.Conv2d(num_channels, width, kernel_size=4, stride=2, padding=1), spectral_norm),
            nn.LeakyReLU(0.2),
        ]
        for _ in range(stages - 1):
            conv = nn.Conv2d(width, width * 2, kernel_size=4, stride=2, padding=1, bias=norm == "none")
            layers += [
                maybe_spectral_norm(conv, spectral_norm),
                normalization_2d(norm, width * 2, momentum=bn_momentum),
                nn.LeakyReLU(0.2),
            ]
            width *= 2
        if minibatch == "stddev":  # on the last feature map, as Karras et al. 2018 do
            layer, width = minibatch_layer(minibatch, width)
            layers.append(layer)
        layers.append(nn.Flatten())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        features = width * start * start
        if minibatch != "stddev":  # discrimination compares flattened features (and rejects unknown kinds)
            layer, features = minibatch_layer(minibatch, features)
            layers += [layer] if layer is not None else []
        layers.append(maybe_spectral_norm(nn.Linear(features, 1), spectral_norm))
        self.net = nn.Sequential(*layers)
        init_dcgan_weights(self)
        self.add_class_head(num_classes, conditioning, spectral_norm=spectral_norm)


class DCGAN(GANModule):
    """DCGAN generator and discriminator at any size s * 2^k; every other option is ``GANModule``'s."""

    def __init__(
        self,
        latent_dim: int = 100,
        image_size: int = 64,
        num_channels: int = 3,
        g_channels: int = 64,
        d_channels: int = 64,
        d_norm: Literal["batch", "instance", "none"] = "batch",
        d_spectral_norm: bool = False,
        d_dropout: float = 0.0,
        bn_momentum: float = 0.5,  # seed 002
        g_upsample: Literal["transpose", "nearest", "pixelshuffle"] = "transpose",
        g_norm: Literal["batch", "virtual"] = "batch",
        d_minibatch: Literal["none", "stddev", "discrimination"] = "none",
        num_classes: int = 0,
        conditioning: Conditioning = "projection",
        **kwargs,
    ) -> None:
        """
        Args:
            num_classes: 0 for an unconditional GAN; else the class count of a class-conditional one (the label enters
                G through conditional BatchNorm, and D through ``conditioning``; see ``GANModule``).
            conditioning: "projection" (Miyato & Koyama 2018) or "acgan" (Odena et al. 2017).
        """
        super().__init__(
            generator=DCGANGenerator(
                latent_dim=latent_dim,
                image_size=image_size,
                num_channels=num_channels,
                base_channels=g_channels,
                bn_momentum=bn_momentum,
                upsample=g_upsample,
                norm=g_norm,
                num_classes=num_classes,
            ),
            discriminator=DCGANDiscriminator(
                image_size=image_size,
                num_channels=num_channels,
                base_channels=d_channels,
                norm=d_norm,
                spectral_norm=d_spectral_norm,
                bn_momentum=bn_momentum,
                dropout=d_dropout,
                minibatch=d_minibatch,
                num_classes=num_classes,
                conditioning=conditioning,
            ),
            latent_dim=latent_dim,
            num_classes=num_classes,
            conditioning=conditioning,
            **kwargs,
        )
