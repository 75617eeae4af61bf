"""Test-only datamodules and callbacks, importable by class path from the CLI in tests."""

import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn

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


def wandb_records(path):
    """The protobuf records of a W&B ``run-*.wandb`` file (an offline run's whole log), read without W&B's servers.

    The file is W&B's LevelDB-style log: a 7-byte header (":W&B", magic 0xBEE1, version), then 32 KiB blocks
    of chunks, each a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last) and its bytes.
    """
    import struct

    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    ident, magic, _ = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B" and magic == 0xBEE1, f"{path} is not a W&B run log"
    offset, pending = 7, b""
    while offset + 7 <= len(data):
        left = 32768 - offset % 32768
        if left < 7:  # a block's tail too short for a chunk header is zero padding
            offset += left
            continue
        _, length, kind = struct.unpack("<IHB", data[offset : offset + 7])
        chunk = data[offset + 7 : offset + 7 + length]
        offset += 7 + length
        if kind in (1, 2):
            pending = chunk
        elif kind in (3, 4):
            pending += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def complete_wandb_records(path, timeout=60.0):
    """The records of a run log once W&B has written all of it (its last record is the run's ``exit``).

    ``run.finish()`` returns when the run is closed, but wandb-core may still be flushing the log's last
    records (the debounced config update among them) for a moment: reading at once saw a truncated chunk or
    no config. Waits up to ``timeout`` seconds, then fails naming what it saw.
    """
    import time

    from google.protobuf.message import DecodeError

    deadline, seen = time.monotonic() + timeout, "nothing"
    while True:
        try:
            records = list(wandb_records(path))
            if records and records[-1].WhichOneof("record_type") == "exit":
                return records
            seen = f"{len(records)} records, the last {records[-1].WhichOneof('record_type') if records else None}"
        except DecodeError as err:
            seen = f"a chunk that does not parse yet ({err})"
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not end with the run's exit record within {timeout} s: {seen}")
        time.sleep(0.2)


def wandb_offline_run(path):
    """{"config": {...}, "history": [{key: value}], "summary": {key: value}} of an offline run's .wandb file,
    read once W&B has finished writing it."""
    import json

    def key(item):
        return item.key or "/".join(item.nested_key)

    run = {"config": {}, "history": [], "summary": {}}
    for record in complete_wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "config":
            run["config"].update({key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            run["history"].append({key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            run["summary"].update({key(i): json.loads(i.value_json) for i in record.summary.update})
    return run


class Linear(nn.Module):
    """D(x) = w . x: its input gradient is w everywhere."""

    def __init__(self, w):
        super().__init__()
        self.w = w

    def forward(self, x):
        return (x.flatten(1) * self.w).sum(1)


def step_with(d, real, update=0):
    """A trick Step over ``real`` (also as the fakes) for penalty tests, with no GAN behind it."""
    from gan_modules.tricks import Step

    return Step(gan=None, update=update, real_in=real, fake_in=real, real_out=None, fake_out=None, d=d)


def blobs(n: int, seed: int) -> torch.Tensor:
    """``n`` smooth uint8 28x28 grayscale images (``SyntheticDataModule``'s), a stand-in for real digits."""
    datamodule = SyntheticDataModule(num_images=n, seed=seed)
    return datamodule._images(n, seed)


def noise(n: int, seed: int) -> torch.Tensor:
    """``n`` uint8 28x28 grayscale images of uniform noise, a stand-in for crude fakes."""
    return torch.randint(0, 256, (n, 1, 28, 28), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def fake_metrics(fid: float) -> dict[str, float]:
    """A benchmark row's image metrics around ``fid``, for table-writing tests."""
    return dict(fid=fid, kid=0.001, kid_std=0.0002, precision=0.7, recall=0.6, density=0.9, coverage=0.8)
