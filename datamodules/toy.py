"""2-D Gaussian mixtures, the standard mode-collapse test (Metz et al. 2017; Srivastava et al. 2017; Lin et al. 2018).

PacGAN's protocol (Lin et al. 2018, Table 1): ``ring``, 8 modes evenly on a circle of radius 1 with
sigma 0.01; ``grid``, 25 modes at {-4, -2, 0, 2, 4}^2 with sigma 0.05. The ring's angles are 2*pi*k/8 for
k = 0..7 (``linspace(0, 2*pi, 8)`` would put two modes on one point).
"""

from __future__ import annotations

import math
from typing import Literal

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

MIXTURES = {"ring": 0.01, "grid": 0.05}  # the standard deviation of each mode


def mixture_means(kind: Literal["ring", "grid"]) -> torch.Tensor:
    """The modes' centres [K, 2]."""
    if kind == "ring":
        angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
        return torch.stack([angles.cos(), angles.sin()], dim=1).float()
    if kind == "grid":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return torch.cartesian_prod(axis, axis)
    raise ValueError(f"unknown mixture {kind!r}; choose 'ring' (8 modes) or 'grid' (25 modes)")


def sample_mixture(kind: Literal["ring", "grid"], n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n points [n, 2] from the mixture: a uniformly chosen mode plus N(0, sigma^2 I)."""
    means = mixture_means(kind)
    modes = torch.randint(len(means), (n,), generator=generator)
    return means[modes] + MIXTURES[kind] * torch.randn(n, 2, generator=generator)


class ToyMixtureDataModule(pl.LightningDataModule):
    """``num_samples`` seeded points of a 2-D mixture per epoch, as float batches [B, 2]."""

    gives_points = True  # not images: only a model with takes_points (gan_modules.toy.ToyGAN) trains on it

    def __init__(
        self,
        mixture: Literal["ring", "grid"] = "ring",
        num_samples: int = 100_000,
        batch_size: int = 500,
        seed: int = 0,
    ) -> None:
        super().__init__()
        mixture_means(mixture)  # validates the name now, not at the first batch
        if num_samples < batch_size or batch_size < 1:
            raise ValueError(f"need num_samples >= batch_size >= 1, got {num_samples} and {batch_size}")
        self.mixture, self.num_samples, self.batch_size, self.seed = mixture, num_samples, batch_size, seed
        self.points: torch.Tensor | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.points is None:
            self.points = sample_mixture(self.mixture, self.num_samples, torch.Generator().manual_seed(self.seed))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.points), batch_size=self.batch_size, shuffle=True, drop_last=True)
