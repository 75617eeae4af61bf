"""Checkpoints are read without trusting them, and --ckpt_path must fit the config it resumes."""

import sys
from pathlib import Path

import pytest
import torch
from test_cli import CSV_ONLY, ROOT, TINY_MODEL, fit, run_dirs, synthetic

import train
from gan_modules.checkpoints import UnsafeCheckpointError
from gan_modules.cli import cli_main
from gan_modules.commands.common import load_gan
from gan_modules.commands.generate import main as generate_main


class _RunsCodeWhenUnpickled:
    """A pickle payload: unpickling it calls Path.touch(marker), i.e. runs code chosen by the file's author."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


@pytest.fixture(scope="module")
def vanilla_run(tmp_path_factory):
    return fit(tmp_path_factory.mktemp("vanilla"), "vanilla_mnist.yaml", *CSV_ONLY).run_dir


def crafted_checkpoint(tmp_path: Path, source: Path) -> tuple[Path, Path]:
    """A real checkpoint with a code-running object slipped into its hyper-parameters."""
    marker = tmp_path / "code_ran"
    checkpoint = torch.load(source, weights_only=True)
    checkpoint["hyper_parameters"]["objective"] = _RunsCodeWhenUnpickled(marker)
    path = tmp_path / "crafted.ckpt"
    torch.save(checkpoint, path)
    return path, marker


def test_every_checkpoint_the_project_writes_loads_safely(vanilla_run, tmp_path):
    dcgan_run = fit(tmp_path, "dcgan_mnist.yaml", *CSV_ONLY).run_dir
    for run, name in ((vanilla_run, "VanillaGAN"), (dcgan_run, "DCGAN")):
        for ckpt in (run / "checkpoints").glob("*.ckpt"):
            torch.load(ckpt, weights_only=True)  # nothing beyond tensors and plain values
            assert type(load_gan(ckpt)).__name__ == name


def test_a_checkpoint_whose_pickle_runs_code_is_refused_and_runs_nothing(vanilla_run, tmp_path, capsys):
    path, marker = crafted_checkpoint(tmp_path, vanilla_run / "checkpoints" / "last.ckpt")
    with pytest.raises(UnsafeCheckpointError, match="refused: it holds Python objects other than tensors"):
        load_gan(path)
    assert not marker.exists()
    # The commands that read checkpoints say so in one line and write nothing.
    assert generate_main(["--ckpt_path", str(path), "--grid", str(tmp_path / "grid.png")]) == 1
    assert "nothing in the file was run" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "grid.png").exists()


def test_train_refuses_a_crafted_ckpt_path_before_writing_anything(vanilla_run, tmp_path, monkeypatch, capsys):
    path, marker = crafted_checkpoint(tmp_path, vanilla_run / "checkpoints" / "last.ckpt")
    args = ["--config", str(vanilla_run / "config.yaml"), "--ckpt_path", str(path)]
    monkeypatch.setattr(sys, "argv", ["train.py", *args, "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert train.main() == 1
    assert "nothing in the file was run" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "runs").exists()


def test_a_class_outside_the_project_is_refused_and_its_module_never_imported(vanilla_run, tmp_path, monkeypatch):
    # A module on the path whose import would leave a mark; the checkpoint names a class in it.
    (tmp_path / "stranger_module.py").write_text(
        f"from pathlib import Path\nPath({str(tmp_path / 'imported')!r}).touch()\nclass Model: pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    checkpoint = torch.load(vanilla_run / "checkpoints" / "last.ckpt", weights_only=True)
    for class_path in ("stranger_module.Model", "torch.nn.Linear"):  # unimported; imported but not a GAN
        checkpoint["gan_class_path"] = class_path
        path = tmp_path / "stranger.ckpt"
        torch.save(checkpoint, path)
        with pytest.raises(
            UnsafeCheckpointError,
            match=f"names the class '{class_path}'.*not a subclass of gan_modules.core.ImageModule",
        ):
            load_gan(path)
    assert not (tmp_path / "imported").exists() and "stranger_module" not in sys.modules


def test_ckpt_path_of_another_model_class_stops_before_writing(vanilla_run, tmp_path):
    args = ["--config", str(ROOT / "configs" / "dcgan_mnist.yaml"), *synthetic(), *TINY_MODEL["gan_modules.DCGAN"]]
    args += ["--ckpt_path", str(vanilla_run / "checkpoints" / "last.ckpt")]
    with pytest.raises(ValueError, match=r"holds a gan_modules\.vanilla\.VanillaGAN, but the config trains a .*DCGAN"):
        cli_main([*args, "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert not (tmp_path / "runs").exists()


def test_ckpt_path_with_other_network_shapes_stops_naming_both(vanilla_run, tmp_path):
    args = ["--config", str(vanilla_run / "config.yaml"), "--model.g_hidden_dims", "[16, 64]"]
    args += ["--ckpt_path", str(vanilla_run / "checkpoints" / "last.ckpt")]
    with pytest.raises(ValueError, match=r"does not fit the configured VanillaGAN.*\(32,.*g_hidden_dims \[16, 64\]"):
        cli_main([*args, "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert not (tmp_path / "runs").exists()


def test_resume_uses_the_configured_hyper_parameters_not_the_checkpoints(vanilla_run, tmp_path):
    args = ["--config", str(vanilla_run / "config.yaml"), "--model.lr", "1e-5", "--trainer.max_epochs", "2"]
    args += ["--ckpt_path", str(vanilla_run / "checkpoints" / "last.ckpt")]
    cli = cli_main([*args, "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert cli.model.hparams.lr == 1e-5 and cli.trainer.current_epoch == 2
    assert [r.name for r in run_dirs(tmp_path / "runs")] == [cli.run_dir.name]


def test_python_api_checkpoints_with_objective_and_tricks_load_safely_with_their_state(tmp_path):
    from helpers import make_trainer

    from datamodules import SyntheticDataModule
    from gan_modules import DCGAN
    from gan_modules.objectives import Hinge
    from gan_modules.tricks import R1, HistoricalAveraging

    model = DCGAN(latent_dim=8, image_size=16, num_channels=1, g_channels=4, d_channels=4, objective=Hinge(),
                  tricks=[R1(every=3), HistoricalAveraging(window=2)])  # fmt: skip
    trainer = make_trainer(tmp_path, max_epochs=1)
    trainer.fit(model, datamodule=SyntheticDataModule(image_size=16, num_channels=1, num_images=16, batch_size=8))
    trainer.save_checkpoint(tmp_path / "api.ckpt", weights_only=False)
    hparams = torch.load(tmp_path / "api.ckpt", weights_only=True)["hyper_parameters"]  # plain values only
    assert hparams["objective"] == {"class_path": "gan_modules.objectives.Hinge", "init_args": {}}
    restored = load_gan(tmp_path / "api.ckpt")
    assert type(restored.objective).__name__ == "Hinge" and restored.tricks[0].every == 3
    torch.testing.assert_close(restored.tricks[1].d_history, model.tricks[1].d_history)


def test_a_spec_naming_a_class_of_the_wrong_kind_is_refused():
    from gan_modules import DCGAN

    with pytest.raises(ValueError, match="'torch.nn.Linear', which is not a subclass of gan_modules.tricks.base.Trick"):
        DCGAN(image_size=16, tricks=[{"class_path": "torch.nn.Linear", "init_args": {"in_features": 1}}])
