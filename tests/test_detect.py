"""The fake detector, its real-vs-fake data and ``detect.py``: the mechanism, not just the shapes.

An easy split (smooth blobs vs uniform noise) must give AUROC about 1 on held-out images; "fakes" that are
real images from the same distribution must give AUROC about 0.5. Fakes from a GAN checkpoint differ per split.
"""

from pathlib import Path

import pytest
import torch
from helpers import blobs, make_trainer, noise
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
    RESIZE_FILTERS,
    DetectorCNN,
    FakeDetector,
    best_threshold,
    classification_metrics,
    jpeg,
    real_only_threshold,
    resample,
)

ROOT = Path(__file__).resolve().parents[1]
DETECT_CONFIGS = ["detect_mnist.yaml", "detect_mnist_web.yaml"]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def write_images(folder: Path, images: torch.Tensor) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        save_image(image.float() / 255, folder / f"{i:04d}.png")
    return folder


def train_detector(tmp_path, fakes: Path, epochs: int = 3, *extra: str, config: str = "detect_mnist.yaml"):
    args = ["--config", str(ROOT / "configs" / config), "--data.real", "datamodules.SyntheticDataModule",
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


@pytest.fixture(scope="module")
def easy_detector(tmp_path_factory):
    """A detector trained for two epochs on smooth blobs (real) vs uniform noise (fake): (cli, its folder)."""
    tmp_path = tmp_path_factory.mktemp("easy_detector")
    fakes = write_images(tmp_path / "noise", noise(600, 1))
    return train_detector(tmp_path, fakes, 2), tmp_path


def test_detector_learns_an_easy_split_and_the_checkpoint_keeps_its_threshold(easy_detector):
    cli, tmp_path = easy_detector
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
    # The real-only threshold survives the round trip and is the verdict's default.
    assert 0 < float(detector.real_threshold) < 1 and detector.fake_threshold == float(detector.real_threshold)
    assert set(detector.thresholds) == {"real", "val"}
    assert result["test/fpr_real"] <= 0.15 and result["test/tpr_real"] > 0.9
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


# ----------------------------------------------------------------------------- robustness (issue 26)


def test_nodown_network_keeps_full_resolution_first_and_scores_any_size():
    net = DetectorCNN(num_channels=1, image_size=28, base_channels=8, full_res_layers=4).eval()
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:])))
             for m in net.features if isinstance(m, torch.nn.Conv2d)]  # fmt: skip
    with torch.no_grad():
        assert net(torch.randn(2, 1, 28, 28)).shape == (2,)
    for hook in hooks:
        hook.remove()
    assert sizes[:4] == [(28, 28)] * 4 and sizes[4] == (14, 14)  # four full-resolution layers, then a stride
    plain = DetectorCNN(num_channels=1, image_size=28, base_channels=8)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.features) == 3 + sum(
        isinstance(m, torch.nn.Conv2d) for m in plain.features
    )
    # Fully convolutional: another size is scored at its own resolution, not refused or resized.
    detector = FakeDetector(image_size=28, num_channels=1, arch="nodown", base_channels=8).eval()
    for shape in ((3, 1, 28, 28), (2, 1, 40, 33)):
        probs = detector.fake_probability(noise(shape[0], 0) if shape[-1] == 28 else
                                          torch.randint(0, 256, shape, dtype=torch.uint8))  # fmt: skip
        assert probs.shape == (shape[0],) and ((probs > 0) & (probs < 1)).all()
    with pytest.raises(ValueError, match="model.arch must be 'cnn', 'nodown' or 'resnet18'"):
        FakeDetector(arch="vgg")


def test_real_only_threshold_gives_the_requested_false_positive_rate_on_held_out_reals():
    scores = torch.linspace(0.1, 1.0, 10)
    cut = real_only_threshold(scores, 0.2)  # two of ten may be called fake: between 0.8 and 0.9
    assert cut == pytest.approx(0.85) and (scores >= cut).sum() == 2
    assert real_only_threshold(scores, 0.01) > 1.0 - 1e-6 and (scores >= real_only_threshold(scores, 0.01)).sum() == 0
    ties = torch.tensor([0.2, 0.5, 0.5, 0.5, 0.9])
    assert (ties >= real_only_threshold(ties, 0.4)).sum() <= 2
    # Calibrated on 4,000 reals, checked on 100,000 more from the same distribution.
    beta = torch.distributions.Beta(2.0, 5.0)
    torch.manual_seed(1)
    val, held_out = beta.sample((4_000,)), beta.sample((100_000,))
    for fpr in (0.01, 0.05, 0.2):
        rate = (held_out >= real_only_threshold(val, fpr)).float().mean().item()
        assert abs(rate - fpr) < 3 * (fpr * (1 - fpr) / 4_000) ** 0.5 + 0.002, (fpr, rate)
    metrics = classification_metrics(torch.tensor([0.1, 0.6, 0.7, 0.2]), torch.tensor([0, 0, 1, 1]), 0.5)
    assert metrics["tpr"] == 0.5 and metrics["fpr"] == 0.5
    with pytest.raises(ValueError, match="false-positive rate must be in"):
        real_only_threshold(scores, 0.0)


def test_detect_command_resizes_compresses_scores_natively_and_calibrates(easy_detector, tmp_path, capsys):
    cli, _ = easy_detector
    ckpt = str(cli.run_dir / "checkpoints" / "best.ckpt")
    detector = load_model(ckpt).eval()
    real = blobs(20, 5)
    folder = write_images(tmp_path / "real", real)

    def scores(*flags: str) -> torch.Tensor:
        out = tmp_path / f"scores{len(list(tmp_path.glob('*.csv')))}.csv"
        assert detect_main(["--ckpt_path", ckpt, "--images", str(folder), "--out", str(out), *flags]) == 0
        return torch.tensor([float(line.split(",")[1]) for line in out.read_text().splitlines()[1:]])

    # --resize F --resize_filter M then --jpeg Q: exactly resample, then JPEG, then the detector.
    expected = detector.fake_probability(jpeg(resample(real, 1.5, "nearest"), 80))
    got = scores("--resize", "1.5", "--resize_filter", "nearest", "--jpeg", "80")
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(scores("--resize", "0.5"), detector.fake_probability(resample(real, 0.5)), atol=1e-5)
    # --native: each image at its own size, never resized.
    mixed = tmp_path / "mixed"
    big = torch.randint(0, 256, (2, 1, 40, 36), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    write_images(mixed, torch.cat([real[:2], real[2:3]]))
    write_images(mixed / "big", big)
    out = tmp_path / "native.csv"
    assert detect_main(["--ckpt_path", ckpt, "--images", str(mixed), "--out", str(out), "--native"]) == 0
    rows = {line.split(",")[0]: float(line.split(",")[1]) for line in out.read_text().splitlines()[1:]}
    assert rows[str(mixed / "big" / "0001.png")] == pytest.approx(float(detector.fake_probability(big[1:2])), abs=1e-5)
    assert rows[str(mixed / "0000.png")] == pytest.approx(float(detector.fake_probability(real[:1])), abs=1e-5)
    # --calibrate: the threshold from your own reals; at most --fpr of them are then called fake.
    capsys.readouterr()
    assert detect_main(["--ckpt_path", ckpt, "--real", str(folder), "--fake", str(folder), "--calibrate",
                        str(folder), "--fpr", "0.1"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "false positives on 20 images" in printed
    fpr = float(printed.split("reals called fake (FPR) ")[1].split(";")[0])
    assert fpr <= 0.1
    assert detect_main(["--ckpt_path", ckpt, "--real", str(folder), "--fake", str(folder), "--threshold", "val"]) == 0
    assert f"val threshold {float(detector.threshold):.3f}" in capsys.readouterr().out
    refused = {
        "--resize must be a factor": ["--resize", "1"],
        "--threshold must be 'real', 'val'": ["--threshold", "best"],
        "do not pass --threshold with it": ["--calibrate", str(folder), "--threshold", "0.5"],
    }
    new = str(tmp_path / "n.csv")
    for message, flags in refused.items():
        assert detect_main(["--ckpt_path", ckpt, "--images", str(folder), "--out", new, *flags]) == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "n.csv").exists()


def test_a_detector_checkpoint_from_before_the_real_only_threshold_still_loads(easy_detector, tmp_path):
    cli, _ = easy_detector
    checkpoint = torch.load(cli.run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    del checkpoint["state_dict"]["real_threshold"]
    for name in ("target_fpr", "resize_range", "resize_filters", "random_order", "nodown_layers"):
        checkpoint["hyper_parameters"].pop(name, None)
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    detector = load_model(old)
    assert detector.thresholds == {"val": float(detector.threshold)} and detector.fake_threshold == float(
        detector.threshold
    )


def test_zoo_entries_are_fake_sources():
    assert resolve_source("zoo:vanilla_mnist-seed42") == "zoo:vanilla_mnist-seed42"
    sample = open_generator("zoo:vanilla_mnist-seed42", "cpu", 28, 1)
    images = sample(6, 3)
    assert images.shape == (6, 1, 28, 28) and images.dtype == torch.uint8 and torch.equal(images, sample(6, 3))
    with pytest.raises(ValueError, match="but the real images are 1-channel 16px"):
        open_generator("zoo:vanilla_mnist-seed42", "cpu", 16, 1)


def test_the_web_config_trains_a_nodown_detector_with_the_web_augmentation(tmp_path):
    fakes = write_images(tmp_path / "noise", noise(600, 2))
    cli = train_detector(tmp_path, fakes, 2, config="detect_mnist_web.yaml")
    model = cli.model
    assert model.hparams.arch == "nodown" and sum(isinstance(m, torch.nn.Conv2d) for m in model.network.features) == 10
    augment = model.augment
    assert (augment.resize_prob, augment.blur_prob, augment.jpeg_prob, augment.random_order) == (0.6, 0.5, 0.5, True)
    assert augment.resize_range == (0.4, 1.6) and augment.resize_filters == RESIZE_FILTERS
    assert augment.resize_scale == "log"
    assert cli.trainer.callback_metrics["val/auroc"] > 0.99 and cli.trainer.callback_metrics["val/fpr_real"] <= 0.1
    assert 0 < model.fake_threshold < 1 and model.fake_threshold == float(model.real_threshold)

    # val_degrade: the validation split is scored clean and as a degraded copy, the same copy every time, drawn
    # without touching the global random stream; the real-only cut is set on the clean and degraded reals pooled.
    assert model.hparams.val_degrade
    metrics = cli.trainer.callback_metrics
    assert {"val/auroc_clean", "val/auroc_degraded", "val/fpr_real_clean", "val/fpr_real_degraded"} <= set(metrics)
    model.eval()
    images, _ = next(iter(cli.datamodule.val_dataloader()))
    state = torch.random.get_rng_state()
    copy = model.degraded_copy(images, 0)
    assert torch.equal(torch.random.get_rng_state(), state) and torch.equal(copy, model.degraded_copy(images, 0))
    assert copy.dtype == torch.uint8 and (copy != images).flatten(1).any(1).float().mean() > 0.5
    reals = []
    for i, (images, labels) in enumerate(cli.datamodule.val_dataloader()):
        reals += [model.fake_probability(x[labels == 0]) for x in (images, model.degraded_copy(images, i))]
    pooled = real_only_threshold(torch.cat(reals), model.hparams.target_fpr)
    assert float(model.real_threshold) == pytest.approx(pooled, abs=1e-6)
    assert pooled != pytest.approx(real_only_threshold(torch.cat(reals[::2]), model.hparams.target_fpr), abs=1e-6)
