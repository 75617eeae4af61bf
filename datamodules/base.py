"""Shared pieces of every image datamodule: an in-memory uint8 dataset and the loader around it.

Every datamodule yields ``uint8`` image batches ``[N, C, H, W]`` in ``[0, 255]``. The GAN module maps
them to ``[-1, 1]`` on the device (``gan_modules.base.to_unit_range``), so the loader copies a quarter
of the bytes a float batch would need and the conversion runs on the GPU when there is one.

A datamodule whose images have classes (MNIST) says how many (``num_classes``) and keeps each split's labels
(``train_labels``, ``val_labels``); its training loader yields ``(images, labels)`` batches once a class-conditional
model has asked (``request_labels``), images alone otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset


class UInt8ImageDataset(Dataset):
    """uint8 images [N, C, H, W] held in memory (or memory-mapped) -> uint8 batches, one index op each.

    ``__getitems__`` lets the DataLoader fetch a whole batch with one fancy index instead of N
    ``__getitem__`` calls and a ``torch.stack``; with MNIST in memory that is the whole cost of loading.
    """

    def __init__(self, images: torch.Tensor | np.ndarray) -> None:
        if images.ndim != 4 or images.dtype not in (torch.uint8, np.uint8):
            raise ValueError(f"expected uint8 images [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def _take(self, index: int | Sequence[int]) -> torch.Tensor:
        if isinstance(self.images, np.ndarray):
            # Sorted indices read a memory-mapped file mostly sequentially; the order within a
            # batch does not matter to a GAN, the batch composition is what the sampler chose.
            index = np.sort(np.asarray(index)) if not isinstance(index, int) else index
            return torch.from_numpy(np.array(self.images[index]))  # a copy: never a view into the file
        return self.images[index]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self._take(index)

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return self._take(indices)


class LabelledImages(Dataset):
    """A dataset of images and their labels [N] (int64) -> ``(images, labels)``, a whole batch per index op when the
    images' dataset has ``__getitems__`` (as ``UInt8ImageDataset``)."""

    def __init__(self, images: Dataset, labels: torch.Tensor) -> None:
        if len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} images; need one label per image")
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        take = getattr(self.images, "__getitems__", None)
        images = take(indices) if take else torch.stack([self.images[i] for i in indices])
        return images, self.labels[indices]


def collate_images(batch):
    """Identity for batches already stacked by ``__getitems__`` (images, or a tuple of images and labels); stacks a
    list of images, or of (image, label) pairs, otherwise."""
    if isinstance(batch, (torch.Tensor, tuple)):
        return batch
    if isinstance(batch[0], (tuple, list)):
        return tuple(torch.stack([torch.as_tensor(x) for x in column]) for column in zip(*batch))
    return torch.stack(batch)


class ImageDataModule(pl.LightningDataModule):
    """Base for the image datamodules: a train split and an optional reference (val) split.

    Subclasses fill ``self.train_dataset`` (and ``self.val_dataset`` when there is a held-out
    split) in ``setup`` and define ``image_size`` and ``num_channels``.
    """

    def __init__(
        self,
        data_dir: str = "./data",
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be a positive integer, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        # The class of each image of each split, int64 [N], filled by ``setup`` where the data has classes.
        self.train_labels: torch.Tensor | None = None
        self.val_labels: torch.Tensor | None = None
        self.labels_requested = False

    def check_data(self) -> None:
        """Raises now the ``FileNotFoundError`` or ``ValueError`` that ``prepare_data`` or ``setup`` would raise
        later, where that is cheap to know: files are listed, never decoded or downloaded.

        ``train.py`` calls it before it creates the run folder, so a run whose data is missing stops with the
        datamodule's own message (the expected layout, where to get the data) and leaves nothing behind.
        A datamodule that needs no files has nothing to check.
        """

    def split_sizes(self) -> tuple[int, int | None] | None:
        """(training images, held-out images or None) as far as they are known without loading the images
        (image files listed: at most that many decode), or None when only ``setup`` can tell."""
        return None

    @property
    def image_size(self) -> int:
        raise NotImplementedError

    @property
    def num_channels(self) -> int:
        raise NotImplementedError

    @property
    def num_classes(self) -> int | None:
        """How many classes the images have labels of; None for unlabelled data."""
        return None

    def request_labels(self) -> None:
        """From now on the training loader yields ``(images, labels)`` batches (a class-conditional model asks)."""
        if self.num_classes is None:
            raise ValueError(f"{type(self).__name__} has no class labels, which a class-conditional model needs")
        self.labels_requested = True

    def reference_labels(self) -> torch.Tensor | None:
        """The class of each image of ``reference_split()`` (int64 [N]), or None for unlabelled data."""
        split, _ = self.reference_split()
        return self.val_labels if split == "val" else self.train_labels

    def _loader(self, dataset: Dataset, shuffle: bool, drop_last: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=self.num_workers,
            collate_fn=collate_images,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            self.setup("fit")
        if len(self.train_dataset) < self.batch_size:
            raise ValueError(
                f"the training set has {len(self.train_dataset)} images, fewer than one batch "
                f"(data.batch_size={self.batch_size}); lower --data.batch_size or add images"
            )
        dataset = self.train_dataset
        if self.labels_requested:
            if self.train_labels is None:
                raise ValueError(f"{type(self).__name__}.setup kept no train_labels; it cannot yield labelled batches")
            dataset = LabelledImages(dataset, self.train_labels)
        # drop_last: a GAN step on a 3-image remainder batch is noise for BatchNorm and D accuracy.
        return self._loader(dataset, shuffle=True, drop_last=True)

    def reference_split(self) -> tuple[str, Dataset]:
        """(name, dataset) of the real images FID is measured against: the held-out split when there is
        one (``val``), else the training split (``train``)."""
        if self.train_dataset is None:
            self.setup("validate")
        if self.val_dataset is not None:
            return "val", self.val_dataset
        return "train", self.train_dataset

    def val_dataloader(self) -> DataLoader:
        """The reference split in its stored order; validation generates one fake per real image it sees."""
        return self._loader(self.reference_split()[1], shuffle=False, drop_last=False)
