"""LightningDataModules yielding uint8 image batches [N, C, H, W]."""

from datamodules.base import ImageDataModule, UInt8ImageDataset
from datamodules.images import AnimeFacesDataModule, CelebADataModule, ImageFolderDataModule
from datamodules.mnist import MNISTDataModule
from datamodules.synthetic import SyntheticDataModule

__all__ = [
    "AnimeFacesDataModule",
    "CelebADataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "SyntheticDataModule",
    "UInt8ImageDataset",
]
