"""Random images for smoke tests and throughput checks: no files, any size, deterministic."""

from __future__ import annotations

import torch

from datamodules.base import ImageDataModule, UInt8ImageDataset


class SyntheticDataModule(ImageDataModule):
    """``num_images`` seeded random uint8 images [N, C, S, S]: blurred blobs, so D has structure to find.

    With ``num_classes`` > 0 image i has class i % num_classes (for class-conditional models' tests); 0: unlabelled.
    """

    def __init__(
        self,
        data_dir: str = "./data",  # unused; accepted so any config's data_dir override still parses
        batch_size: int = 16,
        num_workers: int = 0,
        image_size: int = 28,
        num_channels: int = 1,
        num_images: int = 64,
        seed: int = 0,
        num_classes: int = 0,
    ) -> None:
        super().__init__(data_dir=data_dir, batch_size=batch_size, num_workers=num_workers)
        if image_size < 1 or num_channels < 1 or num_images < 1 or num_classes < 0:
            raise ValueError("image_size, num_channels and num_images must be positive, num_classes at least 0")
        self._num_classes = num_classes
        self._image_size = image_size
        self._num_channels = num_channels
        self.num_images = num_images
        self.seed = seed

    @property
    def image_size(self) -> int:
        return self._image_size

    @property
    def num_channels(self) -> int:
        return self._num_channels

    @property
    def num_classes(self) -> int | None:
        return self._num_classes or None

    def split_sizes(self) -> tuple[int, int]:
        return self.num_images, self._num_val

    @property
    def _num_val(self) -> int:
        return max(self.batch_size, self.num_images // 4)

    def _images(self, n: int, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        coarse = torch.rand(n, self._num_channels, 4, 4, generator=gen)
        smooth = torch.nn.functional.interpolate(coarse, size=self._image_size, mode="bilinear", align_corners=False)
        return (smooth * 255).round().to(torch.uint8)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None:
            self.train_dataset = UInt8ImageDataset(self._images(self.num_images, self.seed))
            self.val_dataset = UInt8ImageDataset(self._images(self._num_val, self.seed + 1))
            if self._num_classes:
                self.train_labels = torch.arange(self.num_images) % self._num_classes
                self.val_labels = torch.arange(self._num_val) % self._num_classes
