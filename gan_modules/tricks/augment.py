"""Image augmentations: the tricks on what D sees, instance noise and DiffAugment (applied to real and fake alike),
and the face swap's random warp (what its autoencoder learns to undo, ``gan_modules.faceswap``)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from gan_modules.tricks.base import Trick, TrickHost


class InstanceNoise(Trick):
    """Gaussian noise on every D input, annealed linearly to zero (Sønderby et al. 2017; Arjovsky & Bottou 2017).

    Real and fake distributions with disjoint supports give D a perfect, gradient-free win; noise makes
    them overlap early on. The standard deviation (images in [-1, 1]) is ``std * (1 - t / anneal_steps)``
    at D update t, 0 after ``anneal_steps`` (0 keeps it constant). The schedule reads the GAN's update
    count, which checkpoints hold, so a resumed run continues the same schedule.
    """

    def __init__(self, std: float = 0.1, anneal_steps: int = 10_000) -> None:
        super().__init__()
        if std < 0 or anneal_steps < 0:
            raise ValueError(f"InstanceNoise: std and anneal_steps must be >= 0, got {std} and {anneal_steps}")
        self.std = std
        self.anneal_steps = anneal_steps

    def current_std(self, d_updates: int) -> float:
        if self.anneal_steps == 0:
            return self.std
        return self.std * max(0.0, 1.0 - d_updates / self.anneal_steps)

    def d_input(self, images: Tensor, gan: TrickHost) -> Tensor:
        std = self.current_std(gan.d_updates)
        return images + std * torch.randn_like(images) if std > 0 else images


def _color(x: Tensor) -> Tensor:
    n = x.shape[0]
    brightness = torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5
    x = x + brightness
    mean = x.mean(dim=1, keepdim=True)
    saturation = torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2
    x = (x - mean) * saturation + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5
    return (x - mean) * contrast + mean


def _translation(x: Tensor, ratio: float) -> Tensor:
    """Shifts each image by up to ``ratio`` of its size, filling with zeros (bilinear-free: a padded gather)."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    rows = (torch.arange(h, device=x.device)[None, :, None] + dy + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device)[None, None, :] + dx + 1).clamp(0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1))
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def _cutout(x: Tensor, ratio: float) -> Tensor:
    """Zeros one square of ``ratio`` times the image size, centred anywhere in each image (clipped at edges)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h, (n, 1, 1), device=x.device) - ch // 2
    left = torch.randint(0, w, (n, 1, 1), device=x.device) - cw // 2
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


class DiffAugment(Trick):
    """Differentiable augmentation of every D input, real and fake, in D's and G's passes (Zhao et al. 2020).

    ``policy`` lists the transforms applied in order: ``color`` (random brightness, saturation,
    contrast), ``translation`` (shift by up to ``translation_ratio`` of the size, zero fill) and
    ``cutout`` (one zeroed square of ``cutout_ratio`` of the size). Each is differentiable, so G learns
    through it, and D never sees an un-augmented image; this is what lets it work with little data.
    """

    def __init__(
        self,
        policy: list[Literal["color", "translation", "cutout"]] | None = None,
        translation_ratio: float = 0.125,
        cutout_ratio: float = 0.5,
    ) -> None:
        super().__init__()
        self.policy = list(policy) if policy is not None else ["color", "translation", "cutout"]
        unknown = sorted(set(self.policy) - {"color", "translation", "cutout"})
        if unknown:
            raise ValueError(f"DiffAugment: unknown policy {unknown}; choose from color, translation, cutout")
        if not (0 <= translation_ratio < 1 and 0 <= cutout_ratio < 1):
            raise ValueError("DiffAugment: translation_ratio and cutout_ratio must be in [0, 1)")
        self.translation_ratio = translation_ratio
        self.cutout_ratio = cutout_ratio

    def setup(self, gan: TrickHost) -> None:
        super().setup(gan)
        if getattr(gan, "conditional", False):
            raise ValueError(
                f"DiffAugment augments images D judges alone; {type(gan).__name__} judges image pairs. "
                "Remove it from model.tricks"
            )

    def d_input(self, images: Tensor, gan: TrickHost) -> Tensor:
        if images.ndim != 4:
            raise ValueError(f"DiffAugment needs images [N, C, H, W], got shape {tuple(images.shape)}")
        x = images
        for name in self.policy:
            if name == "color":
                x = _color(x)
            elif name == "translation":
                x = _translation(x, self.translation_ratio)
            else:
                x = _cutout(x, self.cutout_ratio)
        if images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous():
            x = x.contiguous(memory_format=torch.channels_last)  # keep the layout D is fast in
        return x


def random_warp(
    images: Tensor,
    strength: float = 1.0,
    flip_prob: float = 0.0,
    grid_size: int = 5,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """(warped inputs, targets) for images [N, C, H, W]: the autoencoder rebuilds targets from inputs.

    Targets are the images under a random similarity transform, an augmentation shared with the inputs so
    that the head's position and roll stay part of what the code describes (the 2017 code's
    ``random_transform``: rotation up to 10 deg, zoom and shift up to 5%, each scaled by ``strength``; a
    horizontal flip with ``flip_prob``). Inputs are the targets further bent by a smooth random field: a
    ``grid_size`` x ``grid_size`` grid of offsets with a standard deviation of ``strength`` / 8 of the grid's
    spacing (the 2017 ``random_warp``: 5 px of noise on a 5x5 grid of points 40 px apart), bicubically
    upsampled and added to the sampling grid. ``strength`` 0 without flips returns the images (up to rounding).
    """
    n, _, h, w = images.shape
    device = images.device

    def uniform(low: float, high: float) -> Tensor:
        return torch.rand(n, generator=generator, device=device) * (high - low) + low

    angle = torch.deg2rad(uniform(-10.0, 10.0) * strength)
    zoom = 1.0 + uniform(-0.05, 0.05) * strength
    shift = torch.stack([uniform(-0.05, 0.05), uniform(-0.05, 0.05)], dim=1) * 2 * strength  # [-1, 1] units
    flip = (torch.rand(n, generator=generator, device=device) < flip_prob).float() * -2 + 1
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # affine_grid's theta maps output coordinates to input ones; a flip mirrors the output's x.
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    targets = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    spacing = 2.0 / (grid_size - 1)
    coarse = torch.randn(n, 2, grid_size, grid_size, generator=generator, device=device) * (spacing / 8 * strength)
    offsets = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    inputs = F.grid_sample(images, grid + offsets, mode="bilinear", padding_mode="border", align_corners=False)
    return inputs, targets
