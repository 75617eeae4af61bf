"""What users already have keeps working across the restructuring: old checkpoints and every shipped config.

``fixtures/old_checkpoints/`` holds tiny runs written by train.py before the layout change (commit 137ab9b):
a DCGAN with lazy R1 and EMA, a vanilla GAN with WGAN-GP (n_critic 2), Pix2Pix, and a FaceSwap with its
adversarial PatchGANs; each with the ``config.yaml`` the CLI saved beside it, and ``sample_grids.pt``, the
sample grid each one drew then. ``fixtures/print_config/`` holds ``--print_config`` of every shipped config
(and of dcgan_mnist.yaml with each trick overlay) as printed before the change.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch

from gan_modules.checkpoints import load_model
from gan_modules.cli import cli_main

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
OLD = FIXTURES / "old_checkpoints"
OLD_CLASSES = {"dcgan": "DCGAN", "wgangp": "VanillaGAN", "pix2pix": "Pix2PixGAN", "faceswap": "FaceSwap"}


@pytest.mark.parametrize("name", sorted(OLD_CLASSES))
def test_an_old_checkpoint_loads_and_draws_the_grid_it_drew_then(name):
    model = load_model(OLD / name / "last.ckpt").eval()
    assert type(model).__name__ == OLD_CLASSES[name]
    with torch.no_grad():
        grid = model.sample_grid().float()
    torch.testing.assert_close(grid, torch.load(OLD / "sample_grids.pt", weights_only=True)[name], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["dcgan", "wgangp", "faceswap"])
def test_an_old_run_resumes_through_train_py(name, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    before = torch.load(OLD / name / "last.ckpt", weights_only=True)
    cli = cli_main([
        "--config", str(OLD / name / "config.yaml"), "--ckpt_path", str(OLD / name / "last.ckpt"),
        "--trainer.max_epochs", "2", "--trainer.default_root_dir", str(tmp_path), "--trainer.limit_val_batches", "1",
        # The saved config lists the progress bar the CLI added; turning the bar off must still work.
        "--trainer.enable_progress_bar", "false",
    ])  # fmt: skip
    after = torch.load(cli.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert after["epoch"] == before["epoch"] + 1 and after["global_step"] > before["global_step"]
    counts = after.get("gan_update_counts")
    if counts is not None:  # a GAN: its D and G update counts went on from the saved ones
        assert counts["d_updates"] > before["gan_update_counts"]["d_updates"]


def print_config(*configs: str) -> str:
    args = [part for config in configs for part in ("--config", str(ROOT / "configs" / config))]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        cli_main([*args, "--print_config"])
    return out.getvalue()


def without_version_line(text: str) -> str:
    """The first line names the installed Lightning release (``# pytorch_lightning==2.6.6``), not the config."""
    lines = text.splitlines()
    return "\n".join(lines[1:] if lines and lines[0].startswith("# pytorch_lightning==") else lines)


CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))

# The one intended difference: FaceSwap's adversarial term now goes through the shared D/G step
# (gan_modules/adversarial.py), so it takes the GAN loop's tricks, clipping and learning-rate decay. They print
# at their defaults, which train exactly as before; every other line of every config is unchanged.
FACESWAP_ADDED = [
    "    tricks: null",
    "    grad_clip_g: null",
    "    grad_clip_d: null",
    "    grad_clip_algorithm: norm",
    "    lr_decay: none",
    "    lr_decay_start: 0.0",
]


def without_added_options(text: str) -> str:
    """``text`` less FaceSwap's new options, which must stand together right after ``channels_last``."""
    lines = text.splitlines()
    if "class_path: gan_modules.faceswap.FaceSwap" not in text:
        return text
    start = lines.index("    channels_last: null") + 1
    assert lines[start : start + len(FACESWAP_ADDED)] == FACESWAP_ADDED, "FaceSwap's options changed"
    return "\n".join(lines[:start] + lines[start + len(FACESWAP_ADDED) :])


OVERLAYS = sorted(p.name for p in (ROOT / "configs" / "tricks").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS)
def test_print_config_of_every_shipped_config_is_unchanged(config):
    expected = (FIXTURES / "print_config" / config).read_text()
    assert without_version_line(without_added_options(print_config(config))) == without_version_line(expected)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_print_config_of_every_trick_overlay_is_unchanged(overlay):
    expected = (FIXTURES / "print_config" / f"tricks_{overlay}").read_text()
    assert without_version_line(print_config("dcgan_mnist.yaml", f"tricks/{overlay}")) == without_version_line(expected)


def test_every_shipped_config_has_a_recorded_print_config():
    """A new config needs its own fixture (copy its --print_config output into fixtures/print_config/)."""
    recorded = {p.name for p in (FIXTURES / "print_config").glob("*.yaml")}
    assert set(CONFIGS) | {f"tricks_{o}" for o in OVERLAYS} <= recorded
