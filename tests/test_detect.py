"""The fake detector, its real-vs-fake data and ``detect.py``: the mechanism, not just the shapes.

An easy split (smooth blobs vs uniform noise) must give AUROC about 1 on held-out images; "fakes" that are
real images from the same distribution must give AUROC about 0.5. Fakes from a GAN checkpoint differ per split.
"""

from pathlib import Path

import pytest
import torch
from helpers import make_trainer
from torchvision.utils import save_image

from datamodules import SyntheticDataModule
from datamodules.realfake import RealFakeDataModule, hash_split, resolve_source
from gan_modules import VanillaGAN
from gan_modules.checkpoints import load_model
from gan_modules.cli import cli_main
from gan_modules.commands.common import load_gan, open_generator
from gan_modules.commands.detect import fake_probabilities
from gan_modules.commands.detect import main as detect_main
from gan_modules.detector import (
    FakeDetector,
    best_threshold,
    classification_metrics,
    gaussian_blur,
    jpeg,
    resize_down_up,
)

ROOT = Path(__file__).resolve().parents[1]
DETECT_CONFIGS = ["detect_mnist.yaml"]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def write_images(folder: Path, images: torch.Tensor) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        save_image(image.float() / 255, folder / f"{i:04d}.png")
    return folder


def blobs(n: int, seed: int) -> torch.Tensor:
    datamodule = SyntheticDataModule(num_images=n, seed=seed)
    return datamodule._images(n, seed)


def noise(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 28, 28), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def train_detector(tmp_path, fakes: Path, epochs: int = 3, *extra: str):
    args = ["--config", str(ROOT / "configs" / "detect_mnist.yaml"), "--data.real", "datamodules.SyntheticDataModule",
            "--data.real.num_images", "800", "--data.fakes", f"[{fakes}]", "--data.num_train", "300",
            "--data.num_val", "60", "--data.num_test", "100", "--data.batch_size", "32", "--model.base_channels", "8",
            "--trainer.max_epochs", str(epochs), "--trainer.default_root_dir", str(tmp_path / "runs"),
            "--trainer.logger", "gan_modules.loggers.CSVLogger", *QUIET, *extra]  # fmt: skip
    return cli_main(args)


# ----------------------------------------------------------------------------- pieces


def test_best_threshold_separates_and_prefers_the_cut_nearest_one_half():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    threshold, accuracy = best_threshold(probs, labels)
    assert accuracy == 1.0 and 0.3 < threshold <= 0.6 and threshold == pytest.approx(0.45)
    # All fakes score below every real (a badly calibrated detector): the best cut calls everything one way.
    threshold, accuracy = best_threshold(torch.tensor([0.9, 0.8, 0.1, 0.2]), torch.tensor([0, 0, 1, 1]))
    assert accuracy == 0.5
    metrics = classification_metrics(probs, labels, 0.45)
    assert metrics["auroc"] == 1.0 and metrics["ap"] == 1.0 and metrics["acc"] == 1.0 and metrics["acc_0.5"] == 1.0
    with pytest.raises(ValueError, match="both real and fake"):
        classification_metrics(probs, torch.ones(6))


def test_degradations_keep_shape_and_change_pixels_as_their_strength_says():
    images = blobs(4, 0)
    for out in (jpeg(images, 75), resize_down_up(images, 0.5), gaussian_blur(images, 1.0)):
        assert out.shape == images.shape and out.dtype == torch.uint8
    err = lambda out: (out.float() - images.float()).abs().mean().item()
    assert err(jpeg(images, 100)) < err(jpeg(images, 10))
    assert gaussian_blur(images, 0.0) is images
    rgb = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert jpeg(rgb, 90).shape == rgb.shape
    # Noise loses most of its energy to a down/up resize; smooth blobs barely change.
    noisy = noise(4, 0)
    assert (resize_down_up(noisy, 0.5).float() - noisy.float()).abs().mean() > 5 * err(resize_down_up(images, 0.5))


def test_augmentation_applies_each_degradation_with_its_probability():
    from gan_modules.detector import DetectorAugment

    images = noise(16, 3)
    assert torch.equal(DetectorAugment(blur_prob=0, jpeg_prob=0)(images), images)
    for kwargs in ({"blur_prob": 1.0}, {"jpeg_prob": 1.0}, {"resize_prob": 1.0}):
        settings = {"blur_prob": 0.0, "jpeg_prob": 0.0, **kwargs}
        out = DetectorAugment(**settings)(images)
        changed = (out != images).any(dim=(1, 2, 3)).float().mean()
        assert out.shape == images.shape and changed > 0.5  # a blur of tiny sigma may change nothing
    with pytest.raises(ValueError, match="resize_prob must be in"):
        DetectorAugment(resize_prob=2.0)


def test_hash_split_is_stable_and_disjoint():
    names = [f"{i}.png" for i in range(1000)]
    split = hash_split(names, (0.1, 0.1))
    assert split == hash_split(list(names), (0.1, 0.1))
    assert sorted(split["train"] + split["val"] + split["test"]) == list(range(1000))
    assert 50 < len(split["val"]) < 150 and 50 < len(split["test"]) < 150


def test_fake_sources_resolve_globs_to_the_newest_and_name_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for stamp in ("20260101-000000", "20260102-000000"):
        (tmp_path / "runs" / "gan" / stamp / "checkpoints").mkdir(parents=True)
        (tmp_path / "runs" / "gan" / stamp / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert resolve_source("runs/gan/*/checkpoints/last.ckpt") == "runs/gan/20260102-000000/checkpoints/last.ckpt"
    with pytest.raises(FileNotFoundError, match="matches nothing; train that GAN first"):
        resolve_source("runs/dcgan_mnist/*/checkpoints/last.ckpt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_source("nope.ckpt")


@pytest.fixture(scope="module")
def gan_checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gan")
    model = VanillaGAN(latent_dim=8, image_size=28, num_channels=1, g_hidden_dims=[16], d_hidden_dims=[16],
                       val_num_samples=0)  # fmt: skip
    trainer = make_trainer(tmp, max_steps=4)
    trainer.fit(model, datamodule=SyntheticDataModule(num_images=32, batch_size=8))
    path = tmp / "gan.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_generated_fakes_are_balanced_quantized_and_differ_per_split(gan_checkpoint):
    datamodule = RealFakeDataModule(real=SyntheticDataModule(num_images=200, seed=3), fakes=[str(gan_checkpoint)],
                                    num_train=40, num_val=10, num_test=12, batch_size=8)  # fmt: skip
    datamodule.open_generator = open_generator  # train.py hands it in; the data layer does not load models
    datamodule.setup("fit")
    for split, n in (("train", 40), ("val", 10), ("test", 12)):
        dataset = datamodule.datasets[split]
        assert len(dataset) == 2 * n and dataset.labels.sum() == n and dataset.images.dtype == torch.uint8
    fakes = {s: d.images[d.labels == 1] for s, d in datamodule.datasets.items()}
    assert not torch.equal(fakes["train"][:10], fakes["val"])
    # The same settings give the same data (seeded latents and real subset).
    again = RealFakeDataModule(real=SyntheticDataModule(num_images=200, seed=3), fakes=[str(gan_checkpoint)],
                               num_train=40, num_val=10, num_test=12)  # fmt: skip
    again.open_generator = open_generator
    again.setup("fit")
    assert torch.equal(again.datasets["test"].images, datamodule.datasets["test"].images)
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (8, 1, 28, 28) and labels.shape == (8,)


def test_a_gan_that_does_not_fit_the_real_images_is_refused(gan_checkpoint):
    real = SyntheticDataModule(num_images=200, image_size=16)
    datamodule = RealFakeDataModule(real=real, fakes=[str(gan_checkpoint)], num_train=20, num_val=5, num_test=5)
    with pytest.raises(ValueError, match="has no open_generator to sample it"):
        datamodule.setup("fit")
    datamodule.open_generator = open_generator
    with pytest.raises(ValueError, match="generates 1-channel 28px images, but the real images are 1-channel 16px"):
        datamodule.setup("fit")


# ----------------------------------------------------------------------------- the mechanism


def test_detector_learns_an_easy_split_and_the_checkpoint_keeps_its_threshold(tmp_path):
    fakes = write_images(tmp_path / "noise", noise(600, 1))
    cli = train_detector(tmp_path, fakes, 2)
    run = cli.run_dir
    assert cli.trainer.callback_metrics["val/auroc"] > 0.99
    (schedule,) = cli.trainer.lr_scheduler_configs  # cosine, per step: down to about 0 at the last step
    assert schedule.interval == "step" and schedule.scheduler.get_last_lr()[0] < 0.01 * cli.model.hparams.lr
    (result,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=str(run / "checkpoints" / "best.ckpt"),
                                 weights_only=True, verbose=False)  # fmt: skip
    assert result["test/auroc"] > 0.99 and result["test/acc"] > 0.95
    detector = load_model(run / "checkpoints" / "best.ckpt")
    assert isinstance(detector, FakeDetector) and 0 < float(detector.threshold) < 1
    assert float(detector.threshold) == pytest.approx(float(cli.model.threshold), abs=0.5)
    assert sorted(p.name for p in (run / "samples").glob("epoch_*.png")) == ["epoch_0000.png", "epoch_0001.png"]
    with pytest.raises(ValueError, match="holds a FakeDetector, not a GANModule"):
        load_gan(run / "checkpoints" / "best.ckpt")

    # detect.py: a folder scored into a CSV, then labelled folders measured; nothing is overwritten.
    real_dir = write_images(tmp_path / "real_test", blobs(40, 99))
    fake_dir = write_images(tmp_path / "fake_test", noise(40, 99))
    out = tmp_path / "scores.csv"
    ckpt = str(run / "checkpoints" / "best.ckpt")
    assert detect_main(["--ckpt_path", ckpt, "--images", str(fake_dir), "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "path,fake_probability,verdict" and len(lines) == 41
    assert sum(line.endswith(",fake") for line in lines[1:]) >= 38
    before = out.read_text()
    assert detect_main(["--ckpt_path", ckpt, "--images", str(real_dir), "--out", str(out)]) == 1
    assert out.read_text() == before
    assert detect_main(["--ckpt_path", ckpt, "--real", str(real_dir), "--fake", str(fake_dir), "--jpeg", "75"]) == 0


def test_detector_cannot_tell_real_from_real(tmp_path):
    """ "Fakes" drawn from the real distribution: held-out AUROC must stay near chance."""
    fakes = write_images(tmp_path / "more_real", blobs(600, 7))
    cli = train_detector(tmp_path, fakes, 2)
    (result,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    assert 0.35 < result["test/auroc"] < 0.65


def test_a_gan_discriminator_scores_images_as_a_detector(gan_checkpoint, tmp_path):
    gan = load_gan(gan_checkpoint)
    probs = fake_probabilities(gan, blobs(6, 0))
    assert probs.shape == (6,) and ((probs >= 0) & (probs <= 1)).all()
    logits = gan.discriminator.eval()(blobs(6, 0).float() / 127.5 - 1)
    assert torch.allclose(probs, torch.sigmoid(-logits.flatten()), atol=1e-6)
    real_dir = write_images(tmp_path / "r", blobs(5, 1))
    fake_dir = write_images(tmp_path / "f", noise(5, 1))
    assert detect_main(["--ckpt_path", str(gan_checkpoint), "--real", str(real_dir), "--fake", str(fake_dir)]) == 0


def test_detect_command_errors_are_clear(tmp_path, capsys, gan_checkpoint):
    ckpt = str(gan_checkpoint)
    assert detect_main(["--ckpt_path", ckpt, "--real", str(tmp_path)]) == 1
    assert "needs both --real DIR and --fake DIR" in capsys.readouterr().err
    assert (
        detect_main(["--ckpt_path", ckpt, "--images", str(tmp_path / "missing"), "--out", str(tmp_path / "a.csv")]) == 1
    )
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "a.csv").exists()
    assert detect_main(["--ckpt_path", ckpt, "--images", str(tmp_path), "--out", "x.csv", "--jpeg", "0"]) == 1
    assert "--jpeg must be a quality in 1..100" in capsys.readouterr().err
