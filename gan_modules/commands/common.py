"""What the commands share: a checkpoint loaded as the kind of model a command needs.

``checkpoints.load_model`` rebuilds any image model safely; here a command names the base class it needs
(a GAN for ``generate`` and ``evaluate``), so a detector or face-swap checkpoint is refused in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from gan_modules.base import GANModule
from gan_modules.checkpoints import load_model
from gan_modules.core import to_uint8
from gan_modules.io import resolve_device


def load_gan(checkpoint_path: str | Path, map_location: str | torch.device = "cpu") -> GANModule:
    """Rebuilds the GAN variant a checkpoint was trained as; refuses other image models (a detector)."""
    return load_model(checkpoint_path, map_location=map_location, base=GANModule)


def open_generator(
    ckpt_path: str | Path, device: str, image_size: int, num_channels: int
) -> Callable[[int, int], torch.Tensor]:
    """``sample(count, seed)`` -> uint8 images [count, C, H, W] on the CPU from the GAN in ``ckpt_path``.

    The GAN is refused unless its images are ``num_channels`` x ``image_size`` (the real images' shape). The
    images come from its sampling (EMA) generator and are quantized as a saved PNG would be (``to_uint8``).
    This is the ``open_generator`` that ``train.py`` hands to ``datamodules.RealFakeDataModule``.
    """
    model = load_gan(ckpt_path, map_location=resolve_device(device)).eval()
    shape = (model.hparams.get("num_channels"), model.hparams.get("image_size"))
    if shape != (num_channels, image_size):
        raise ValueError(
            f"{ckpt_path} generates {shape[0]}-channel {shape[1]}px images, but the real images are "
            f"{num_channels}-channel {image_size}px; pair a GAN with the datamodule it was trained on"
        )

    return lambda count, seed: sample_uint8(model, count, seed)


@torch.no_grad()
def sample_uint8(model: GANModule, count: int, seed: int) -> torch.Tensor:
    """``count`` images from a GAN's sampling (EMA) generator, latents seeded by ``seed``, as uint8 on the CPU."""
    return torch.cat([to_uint8(batch).cpu() for batch in model.sample_batches(count, batch_size=500, seed=seed)])
