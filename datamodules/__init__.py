"""LightningDataModules yielding uint8 image batches [N, C, H, W]."""

from datamodules.base import ImageDataModule, UInt8ImageDataset
from datamodules.faces import FaceSwapDataModule, SyntheticFacesDataModule
from datamodules.images import AnimeFacesDataModule, CelebADataModule, ImageFolderDataModule
from datamodules.mnist import MNISTDataModule
from datamodules.realfake import RealFakeDataModule
from datamodules.stacked_mnist import StackedMNISTDataModule
from datamodules.synthetic import SyntheticDataModule

__all__ = [
    "AnimeFacesDataModule",
    "CelebADataModule",
    "FaceSwapDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "RealFakeDataModule",
    "StackedMNISTDataModule",
    "SyntheticDataModule",
    "SyntheticFacesDataModule",
    "UInt8ImageDataset",
]
