"""GAN variants as LightningModules; networks are plain nn.Modules beside them."""

from gan_modules.base import GANModule, NonFiniteLossError
from gan_modules.dcgan import DCGAN, DCGANDiscriminator, DCGANGenerator
from gan_modules.vanilla import VanillaDiscriminator, VanillaGAN, VanillaGenerator

__all__ = [
    "DCGAN",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "GANModule",
    "NonFiniteLossError",
    "VanillaDiscriminator",
    "VanillaGAN",
    "VanillaGenerator",
]
