"""GAN variants as LightningModules; networks are plain nn.Modules beside them."""

from gan_modules.base import GANModule, NonFiniteLossError
from gan_modules.core import ImageModule
from gan_modules.dcgan import DCGAN, DCGANDiscriminator, DCGANGenerator
from gan_modules.detector import FakeDetector
from gan_modules.facegan import FaceGAN, FaceGANDiscriminator, FaceGANGenerator
from gan_modules.faceswap import FaceSwap
from gan_modules.pix2pix import PatchGANDiscriminator, Pix2PixGAN, UNetGenerator
from gan_modules.vanilla import VanillaDiscriminator, VanillaGAN, VanillaGenerator

__all__ = [
    "DCGAN",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "FaceGAN",
    "FaceGANDiscriminator",
    "FaceGANGenerator",
    "FaceSwap",
    "FakeDetector",
    "GANModule",
    "ImageModule",
    "NonFiniteLossError",
    "PatchGANDiscriminator",
    "Pix2PixGAN",
    "UNetGenerator",
    "VanillaDiscriminator",
    "VanillaGAN",
    "VanillaGenerator",
]
