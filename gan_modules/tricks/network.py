"""Tricks that change D itself at setup: spectral normalization of any D, and PacGAN packing."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from gan_modules.tricks.base import Trick, TrickHost


class SpectralNorm(Trick):
    """Spectral normalization of every conv and linear layer of D (Miyato et al. 2018), torch's parametrization.

    Each weight is divided by its largest singular value (one power iteration per step), which bounds
    D's Lipschitz constant and is the stabilizer behind SNGAN, BigGAN and most modern GANs. Works on any
    variant's D; DCGAN also has the same as ``d_spectral_norm: true``.
    """

    def setup(self, gan: TrickHost) -> None:
        super().setup(gan)
        wrapped = 0
        for module in gan.discriminator.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)) and not parametrize.is_parametrized(module, "weight"):
                nn.utils.parametrizations.spectral_norm(module)
                wrapped += 1
        if wrapped == 0:
            raise ValueError(f"SpectralNorm found no conv or linear layer to normalize in {type(gan.discriminator)}")


class PacGAN(Trick):
    """PacGAN packing (Lin et al. 2018): D judges ``m`` samples at once, concatenated along channels.

    A D that sees m fakes together can tell when they are too alike, which penalizes mode collapse. At setup
    D's first conv (or linear) layer is rebuilt with m times its inputs; every batch D sees (real, fake, in
    D's and G's passes) is packed from [N, C, H, W] to [N / m, m * C, H, W] (N is cut to a multiple of m).
    Keep it last in ``model.tricks`` so that augmentations apply to single images before packing.
    """

    def __init__(self, m: int = 2) -> None:
        super().__init__()
        if m < 2:
            raise ValueError(f"PacGAN: m must be >= 2 (samples per packed input), got {m}")
        self.m = m

    def setup(self, gan: TrickHost) -> None:
        super().setup(gan)
        if getattr(gan, "conditional", False):
            raise ValueError(f"PacGAN packs unconditional samples; {type(gan).__name__} judges image pairs")
        if getattr(gan, "num_classes", 0):
            raise ValueError(
                f"PacGAN packs several images into one D input, which then has no one class; this {type(gan).__name__} "
                "is class-conditional (model.num_classes): remove PacGAN from model.tricks"
            )
        for parent in gan.discriminator.modules():
            for name, child in parent.named_children():
                if isinstance(child, nn.Conv2d):
                    new = nn.Conv2d(
                        child.in_channels * self.m, child.out_channels, child.kernel_size, child.stride,
                        child.padding, bias=child.bias is not None,
                    )  # fmt: skip
                elif isinstance(child, nn.Linear):
                    new = nn.Linear(child.in_features * self.m, child.out_features, bias=child.bias is not None)
                else:
                    continue
                with torch.no_grad():  # the original layer's initialisation scale, spread over the m inputs
                    new.weight.normal_(0.0, float(child.weight.std()) / self.m**0.5)
                    if new.bias is not None:
                        new.bias.zero_()
                setattr(parent, name, new)
                return
        raise ValueError(f"PacGAN found no conv or linear input layer in {type(gan.discriminator).__name__}")

    def d_input(self, images: Tensor, gan: TrickHost) -> Tensor:
        n = images.shape[0] - images.shape[0] % self.m
        if n == 0:
            raise ValueError(f"PacGAN(m={self.m}) needs batches of at least {self.m} images, got {images.shape[0]}")
        x = images[:n]
        packed = x.reshape(n // self.m, self.m * x.shape[1], *x.shape[2:])
        if x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            packed = packed.contiguous(memory_format=torch.channels_last)
        return packed
