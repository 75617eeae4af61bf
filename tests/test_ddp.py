"""The same config under Lightning DDP with 2 CPU processes (gloo)."""

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def test_ddp_two_processes_stay_in_sync_and_only_rank0_writes(tmp_path):
    dump, runs = tmp_path / "dump", tmp_path / "runs"
    dump.mkdir()
    args = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "dcgan_mnist.yaml")]
    args += ["--data", "datamodules.SyntheticDataModule", "--data.num_images", "32", "--data.batch_size", "4"]
    args += ["--model.g_channels", "4", "--model.d_channels", "4", "--trainer.max_epochs", "1"]
    args += ["--trainer.check_val_every_n_epoch", "1", "--model.val_num_samples", "500"]  # val/fid this epoch
    args += ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    args += ["--trainer.logger", "gan_modules.loggers.CSVLogger", "--trainer.default_root_dir", str(runs)]
    args += ["--trainer.callbacks+=helpers.DumpWeights", "--trainer.enable_progress_bar", "false"]
    env = {**os.environ, "DUMP_DIR": str(dump), "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    rank0, rank1 = torch.load(dump / "rank0.pt"), torch.load(dump / "rank1.pt")
    assert rank0.keys() == rank1.keys()
    # Weights (G, D and the EMA of G) are identical bit for bit. BatchNorm running statistics are
    # buffers that each rank updates from its own shard; DDP re-broadcasts rank 0's before every
    # forward, and rank 0 writes the checkpoints, so they are excluded here.
    weights = [name for name in rank0 if "running_" not in name and "num_batches_tracked" not in name]
    assert any(name.startswith("generator_ema.") for name in weights)
    for name in weights:
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0, msg=name)
    assert any(not torch.equal(rank0[name], rank1[name]) for name in rank0 if "running_mean" in name)
    # 32 images / 2 ranks / batch 4 = 4 batches per rank, each a D and a G update.
    checkpoint = torch.load(next(runs.glob("*/*/checkpoints/last.ckpt")), weights_only=False)
    assert checkpoint["gan_update_counts"] == {"d_updates": 4, "g_updates": 4}

    # One run folder, written by rank 0 alone: one config, one metrics file, one sample grid.
    (run,) = [p for p in runs.glob("*/*") if p.is_dir()]
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert files == [
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "config.yaml",
        "hparams.yaml",
        "metrics.csv",
        "samples/epoch_0000.png",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump", "runs"]  # nothing written in the cwd
    # Validation ran on both ranks and its metric states were synced into one val/fid.
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/fid")]
    assert len(rows) == 1 and math.isfinite(float(rows[0]["val/fid"]))
    # The synthetic reference split has 32 // 4 = 8 images: 4 fakes per rank, one FID over both shares.
    assert float(rows[0]["val/num_samples"]) == 8


def test_torchrun_ranks_share_one_run_folder(tmp_path):
    runs = tmp_path / "runs"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args += [str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "dcgan_mnist.yaml")]
    args += ["--data", "datamodules.SyntheticDataModule", "--data.num_images", "16", "--data.batch_size", "4"]
    args += ["--model.g_channels", "4", "--model.d_channels", "4", "--trainer.max_epochs", "1"]
    args += ["--model.val_num_samples", "0", "--trainer.strategy", "ddp", "--trainer.devices", "2"]
    args += ["--trainer.accelerator", "cpu", "--trainer.logger", "gan_modules.loggers.CSVLogger"]
    args += ["--trainer.default_root_dir", str(runs), "--trainer.enable_progress_bar", "false"]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = [p for p in runs.glob("*/*") if p.is_dir()]  # not one folder per rank
    assert run.name.startswith("torchrun-") and (run / "checkpoints" / "last.ckpt").is_file()
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["gan_update_counts"] == {"d_updates": 2, "g_updates": 2}  # 16 / 2 ranks / batch 4


def test_external_launchers_name_the_run_folder_from_their_job_id(monkeypatch):
    import pytest

    from gan_modules.cli import external_launch

    for name in ("SLURM_NTASKS", "SLURM_JOB_ID", "SLURM_PROCID", "WORLD_SIZE", "TORCHELASTIC_RUN_ID", "RANK"):
        monkeypatch.delenv(name, raising=False)
    assert external_launch() is None  # a plain single-process run
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert external_launch() is None  # an interactive one-task allocation: the usual timestamped folder
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert external_launch() == ("slurm-4242-0", 3)
    for name in ("SLURM_NTASKS", "SLURM_JOB_ID", "SLURM_PROCID"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # torchrun's default without --rdzv_id
    with pytest.raises(ValueError, match="--rdzv_id"):
        external_launch()
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "exp7")
    assert external_launch() == ("torchrun-exp7", 1)
