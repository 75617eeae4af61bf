"""Stacked MNIST (Metz et al. 2017; VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018): the real-data
mode-collapse benchmark. Each image is three MNIST digits as its R, G and B channels, so the data has
10 x 10 x 10 = 1,000 modes, one per digit triple; ``gan_modules.metrics.digits.StackedMNISTModes`` counts how
many of them a generator reaches.

The protocol of VEEGAN's and PacGAN's experiments: 128,000 stacks, each channel a digit drawn uniformly at
random, with replacement, from all 70,000 MNIST digits (training and test sets together). The stacks are a
fixed function of ``seed``: the same seed gives the same images on any machine (numpy's PCG64 stream).

The reference split, against which FID is measured, is ``num_reference`` (10,000, the usual FID count) further
stacks drawn the same way from an independent stream of the same seed: a fresh sample of the training
distribution, as MNIST's test set is for MNIST. (Stacks of the 10k test digits only would be a different
distribution, since the training stacks use all 70k digits, and would not be held out either.)
"""

from __future__ import annotations

import numpy as np
import torch

from datamodules.base import UInt8ImageDataset
from datamodules.mnist import MNISTDataModule, load_labelled_mnist

NUM_STACKS = 128_000  # VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al. 2018): 128k training stacks
NUM_REFERENCE = 10_000  # FID's usual sample count (Heusel et al. 2017 recommend at least 10k)
NUM_DIGITS = 70_000  # all of MNIST: 60,000 training + 10,000 test digits
NUM_TRIPLES = 1_000  # 10 digits per channel, 3 channels
_TRAIN_STREAM, _REFERENCE_STREAM = 0, 1  # numpy SeedSequence([seed, stream]): independent streams of one seed


def draw_stacks(num_stacks: int, seed: int, stream: int, num_digits: int = NUM_DIGITS) -> torch.Tensor:
    """Indices [num_stacks, 3] into the digit pool, uniform with replacement; a fixed function of (seed, stream).

    A smaller ``num_stacks`` gives a prefix of a larger one's indices (numpy draws them in order).
    """
    rng = np.random.default_rng([seed, stream])
    return torch.from_numpy(rng.integers(0, num_digits, size=(num_stacks, 3), dtype=np.int64))


def stack_digits(digits: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """digits uint8 [D, 28, 28], indices [N, 3] -> stacks uint8 [N, 3, 28, 28]: one gather, no Python loop."""
    return digits[indices]


def triple_labels(labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """digit labels [D], indices [N, 3] -> the triple of each stack as 100 * R + 10 * G + B, int64 [N]."""
    per_channel = labels[indices]
    return per_channel[:, 0] * 100 + per_channel[:, 1] * 10 + per_channel[:, 2]


class StackedMNISTDataModule(MNISTDataModule):
    """Stacked MNIST as uint8 [N, 3, 28, 28]: train = ``num_stacks`` seeded stacks of the 70k digits, val = the
    ``num_reference`` reference stacks of an independent stream of the same seed (see the module docstring).

    After ``setup``: ``train_labels`` / ``val_labels`` hold each stack's triple (100 * R + 10 * G + B) and
    ``train_indices`` / ``val_indices`` the pool index of each channel's digit (0-59,999: training digit i,
    60,000-69,999: test digit i - 60,000). MNIST itself is found, or downloaded, as ``MNISTDataModule`` does.
    """

    def __init__(
        self,
        data_dir: str = "./data",
        batch_size: int = 64,
        num_workers: int = 0,  # the set is in memory: workers would only add IPC
        download: bool = True,
        num_stacks: int = NUM_STACKS,
        num_reference: int = NUM_REFERENCE,
        seed: int = 0,
    ) -> None:
        super().__init__(data_dir=data_dir, batch_size=batch_size, num_workers=num_workers, download=download)
        if num_stacks < 1 or num_reference < 1:
            raise ValueError(
                f"data.num_stacks and data.num_reference must be positive, got {num_stacks} and {num_reference}"
            )
        self.num_stacks = num_stacks
        self.num_reference = num_reference
        self.seed = seed
        self.train_labels: torch.Tensor | None = None
        self.val_labels: torch.Tensor | None = None
        self.train_indices: torch.Tensor | None = None
        self.val_indices: torch.Tensor | None = None

    @property
    def num_channels(self) -> int:
        return 3

    @property
    def num_classes(self) -> int:
        return NUM_TRIPLES  # each stack's class is its digit triple

    def split_sizes(self) -> tuple[int, int]:
        return self.num_stacks, self.num_reference

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        train, train_labels, test, test_labels = load_labelled_mnist(self.data_dir)
        digits = torch.cat([train, test])[:, 0]  # [70000, 28, 28]
        labels = torch.cat([train_labels, test_labels])
        self.train_indices = draw_stacks(self.num_stacks, self.seed, _TRAIN_STREAM, num_digits=len(digits))
        self.val_indices = draw_stacks(self.num_reference, self.seed, _REFERENCE_STREAM, num_digits=len(digits))
        self.train_labels = triple_labels(labels, self.train_indices)
        self.val_labels = triple_labels(labels, self.val_indices)
        self.train_dataset = UInt8ImageDataset(stack_digits(digits, self.train_indices))
        self.val_dataset = UInt8ImageDataset(stack_digits(digits, self.val_indices))
