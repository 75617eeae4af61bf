"""Test-only datamodules and callbacks, importable by class path from the CLI in tests."""

import os
from pathlib import Path

import pytorch_lightning as pl
import torch

from datamodules import SyntheticDataModule
from datamodules.base import UInt8ImageDataset


def make_trainer(tmp_path, **kwargs):
    """A quiet CPU Trainer for unit-level runs: no logger or checkpoints, every step's values logged."""
    defaults = dict(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        log_every_n_steps=1,
    )
    defaults.update(kwargs)
    return pl.Trainer(**defaults)


class _TurnsNaN(UInt8ImageDataset):
    """Float images in [-1, 1] for the first ``good_batches`` fetches, NaN afterwards."""

    def __init__(self, images, good_batches):
        super().__init__(images)
        self.good_batches = good_batches
        self.fetches = 0

    def __getitems__(self, indices):
        self.fetches += 1
        batch = self.images[indices].float() / 127.5 - 1
        return batch if self.fetches <= self.good_batches else torch.full_like(batch, float("nan"))


class NaNAfterDataModule(SyntheticDataModule):
    def __init__(self, good_batches: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.good_batches = good_batches

    def setup(self, stage=None):
        super().setup(stage)
        self.train_dataset = _TurnsNaN(self.train_dataset.images, self.good_batches)


class DumpWeights(pl.Callback):
    """Every rank saves its final state dict to $DUMP_DIR/rank<r>.pt (outside the run folder)."""

    def on_train_end(self, trainer, pl_module):
        out = Path(os.environ["DUMP_DIR"])
        torch.save({k: v.cpu() for k, v in pl_module.state_dict().items()}, out / f"rank{trainer.global_rank}.pt")
