"""GAN variants as LightningModules; networks are plain nn.Modules beside them.

``from gan_modules import DCGAN`` (and ``class_path: gan_modules.DCGAN`` in YAML) still work, but this
package imports nothing until a name is asked for (PEP 562): ``gan_modules.io``, the floor every layer
uses, can be imported without loading the models. The layout is in README's "How it fits together".
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DCGAN": "gan_modules.dcgan",
    "DCGANDiscriminator": "gan_modules.dcgan",
    "DCGANGenerator": "gan_modules.dcgan",
    "FaceGAN": "gan_modules.facegan",
    "FaceGANDiscriminator": "gan_modules.facegan",
    "FaceGANGenerator": "gan_modules.facegan",
    "FaceSwap": "gan_modules.faceswap",
    "FakeDetector": "gan_modules.detector",
    "GANModule": "gan_modules.base",
    "ImageModule": "gan_modules.core",
    "NonFiniteLossError": "gan_modules.core",
    "PatchGANDiscriminator": "gan_modules.pix2pix",
    "Pix2PixGAN": "gan_modules.pix2pix",
    "R3GAN": "gan_modules.r3gan",
    "R3GANDiscriminator": "gan_modules.r3gan",
    "R3GANGenerator": "gan_modules.r3gan",
    "UNetGenerator": "gan_modules.pix2pix",
    "VanillaDiscriminator": "gan_modules.vanilla",
    "VanillaGAN": "gan_modules.vanilla",
    "VanillaGenerator": "gan_modules.vanilla",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gan_modules' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
