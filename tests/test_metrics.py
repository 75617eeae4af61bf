"""FID/KID/PRDC: input handling, the metric math, the reference cache, validation during training, evaluate.

Fast tests use conftest's TinyFeatures in place of Inception; the ``slow`` ones check the real network
(torchmetrics' documented 12.6388 and agreement with the fid-helper TorchScript to 1e-4).
"""

import csv
import json
import math

import pytest
import torch
from conftest import TinyFeatures
from test_cli import CSV_ONLY, fit, run_dirs

import gan_modules.metrics as metrics
from gan_modules.commands.evaluate import main as evaluate_main
from gan_modules.metrics import (
    GANMetrics,
    PassThrough,
    precision_recall_density_coverage,
    prepare_for_inception,
    reference_features,
    resize_like_tf1,
    to_uint8,
)
from gan_modules.metrics.reference import reference_path

# ---------------------------------------------------------------------- images -> uint8 -> Inception input


def test_to_uint8_clamps_and_rounds_like_a_saved_png():
    x = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0, 1.5, -0.9999])
    # 0.999 -> 254.87 rounds to 255 (truncation gives 254); 1.5 and -1.5 clamp (a cast would wrap).
    assert to_uint8(x).tolist() == [0, 0, 128, 255, 255, 255, 0]
    u = torch.tensor([3, 200], dtype=torch.uint8)
    assert to_uint8(u) is u
    with pytest.raises(ValueError, match="float images"):
        to_uint8(torch.tensor([1, 2]))


def test_resize_is_tf1_bilinear_not_half_pixel_or_antialiased():
    # TF1 resize_bilinear(align_corners=False) samples source x = i * in / out: [0, 100] -> [0, 50, 100, 100].
    row = torch.tensor([[[[0.0, 100.0]]]]).expand(1, 1, 2, 2)
    assert resize_like_tf1(row, size=4)[0, 0, 0].tolist() == [0.0, 50.0, 100.0, 100.0]


def test_prepare_for_inception_grey_to_rgb_tf1_resize_and_tf_scaling():
    images = torch.tensor([[0, 100], [0, 100]], dtype=torch.uint8).expand(2, 1, 2, 2)
    x = prepare_for_inception(images)
    assert x.shape == (2, 3, 299, 299) and x.dtype == torch.float32
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    # Column i samples source 2i/299 (TF1); PyTorch's half-pixel or antialiased bilinear gives 0 at i = 1.
    expected = torch.tensor([0.0, 100 * 2 / 299, 100 * 2 * 149 / 299, 100.0, 100.0])
    got = x[0, 0, 7, [0, 1, 149, 150, 298]] * 128 + 128
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert x.max() < 1 and x.min() >= -1  # TF's (x - 128) / 128: [-1, 1)


def test_prepare_for_inception_refuses_float_images():
    with pytest.raises(ValueError, match="uint8"):
        prepare_for_inception(torch.zeros(1, 3, 8, 8))


# ---------------------------------------------------------------------- FID / KID / PRDC math


def features_metrics(real, fake, **kwargs) -> dict:
    m = GANMetrics(network=None, num_features=real.shape[1], **kwargs)
    m.update_features(real, real=True)
    m.update_features(fake, real=False)
    return m.compute()


def test_fid_of_identical_sets_is_near_zero_and_of_shifted_sets_is_the_mean_term():
    feats = torch.randn(300, 8)
    same = features_metrics(feats, feats.clone(), kid_subset_size=100)
    shifted = features_metrics(feats, feats + 5.0, kid_subset_size=100)
    assert abs(same["fid"]) < 1e-3
    assert shifted["fid"] == pytest.approx(8 * 25.0, rel=1e-3)  # ||mu1 - mu2||^2, same covariance
    # KID is unbiased: noise around 0 for identical sets (random subsets), far above it when shifted.
    assert abs(same["kid"]) < 0.01 * shifted["kid"]


def test_prdc_identical_sets():
    feats = torch.randn(400, 16)
    r = precision_recall_density_coverage(feats, feats.clone())
    assert r["precision"] == 1 and r["recall"] == 1 and r["coverage"] == 1
    assert 0.8 < r["density"] < 1.5


def test_prdc_disjoint_sets():
    real = torch.randn(300, 16)
    r = precision_recall_density_coverage(real, torch.randn(300, 16) + 100.0)
    assert all(float(r[k]) == 0 for k in ("precision", "recall", "density", "coverage"))


def test_prdc_one_mode_dropped_keeps_precision_and_halves_recall_and_coverage():
    g = torch.Generator().manual_seed(0)
    modes = [torch.zeros(4), torch.full((4,), 50.0)]

    def sample(n, which):
        return torch.cat([modes[m] + torch.randn(n, 4, generator=g) for m in which])

    real = sample(500, [0, 1])
    full = precision_recall_density_coverage(real, sample(500, [0, 1]))
    dropped = precision_recall_density_coverage(real, sample(1000, [0]))
    # Same distribution: coverage's expectation is 1 - 2^-k = 0.875 (Naeem et al. 2020).
    assert full["precision"] > 0.9 and full["recall"] > 0.9 and full["coverage"] > 0.8
    # Bad samples would lower precision; a missing mode does not, it halves recall and coverage.
    assert dropped["precision"] == pytest.approx(float(full["precision"]), abs=0.05)
    assert 0.4 < dropped["recall"] <= 0.5 and 0.4 < dropped["coverage"] <= 0.5


def test_too_few_samples_give_nan_not_an_error():
    r = features_metrics(torch.randn(3, 4), torch.randn(3, 4), kid_subset_size=100)
    assert math.isfinite(r["fid"]) and math.isnan(r["precision"])


def test_gan_metrics_takes_generator_output_through_uint8():
    net = TinyFeatures()
    m = GANMetrics(network=net, kid_subset_size=4)
    images = torch.rand(8, 1, 8, 8) * 3 - 1.5  # tanh never gives this, but clamping must hold if it did
    feats = m.update(images, real=False)
    torch.testing.assert_close(feats, net(to_uint8(images)))
    assert isinstance(m.fid.inception, PassThrough)


# ---------------------------------------------------------------------- reference cache


class Split(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitems__(self, idx):
        return self.images[idx]


def test_reference_features_are_computed_once_and_keyed(tmp_path):
    net = TinyFeatures()
    data = Split(torch.randint(0, 256, (20, 1, 8, 8), dtype=torch.uint8))
    kwargs = dict(dataset=data, dataset_name="x.Data", split="val", num_samples=10, network_checksum="n1")
    first, key, cached = reference_features(net, **kwargs)
    calls = net.calls
    second, key2, cached2 = reference_features(net, **kwargs)
    assert not cached and cached2 and net.calls == calls and torch.equal(first, second) and len(first) == 10
    others = [
        dict(kwargs, split="train"),
        dict(kwargs, network_checksum="n2"),
        dict(kwargs, num_samples=12),
        dict(kwargs, dataset=Split(torch.randint(0, 256, (20, 1, 16, 16), dtype=torch.uint8))),
    ]
    paths = {reference_path(key)}
    for other in others:
        _, other_key, other_cached = reference_features(net, **other)
        assert not other_cached
        paths.add(reference_path(other_key))
    assert len(paths) == 5


# ---------------------------------------------------------------------- training and evaluate


def test_training_logs_val_fid_keeps_best_checkpoint_and_no_metric_weights(tmp_path):
    args = ["--model.val_num_samples", "8", "--trainer.check_val_every_n_epoch", "1"]
    cli = fit(tmp_path, "dcgan_mnist.yaml", *CSV_ONLY, *args, epochs=2)
    (run,) = run_dirs(tmp_path / "runs")
    assert {"val/fid", "val/kid", "val/precision", "val/recall"} <= set(cli.trainer.callback_metrics)
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert sum(1 for r in rows if r.get("val/fid")) == 2  # once per epoch, not in the sanity check
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", weights_only=False)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert not any("fid" in k or "inception" in k or "_val" in k for k in ckpt["state_dict"])


def test_evaluate_twice_uses_the_reference_cache(tmp_path, capsys, monkeypatch):
    # A cache of its own: other tests may have cached the same synthetic reference in the session's shared one.
    monkeypatch.setenv("GAN_MODULES_CACHE", str(tmp_path / "cache"))
    fit(tmp_path, "vanilla_mnist.yaml", *CSV_ONLY, "--model.val_num_samples", "0")
    (run,) = run_dirs(tmp_path / "runs")
    ckpt = run / "checkpoints" / "last.ckpt"
    out = tmp_path / "m.json"
    args = ["--ckpt_path", str(ckpt), "--num_samples", "6", "--out", str(out), "--device", "cpu"]
    assert evaluate_main(args) == 0
    first = json.loads(out.read_text())
    # The same settings again, into the default file beside the checkpoint: the reference features come cached.
    assert evaluate_main(args[:4] + ["--device", "cpu"]) == 0
    second = json.loads(ckpt.with_name("last_metrics_n6.json").read_text())
    assert not first["reference"]["cached"] and second["reference"]["cached"]
    assert first["reference"]["split"] == "val" and first["num_fake"] == 6 and first["num_real"] == 6
    for key in ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage"):
        assert first[key] == pytest.approx(second[key], abs=1e-9)
    assert first["feature_network_sha256"] == TinyFeatures.checksum and first["generator"] == "generator_ema"
    assert "FID" in capsys.readouterr().out
    # Another seed gets a file of its own; a named --out is never overwritten; a bad batch size writes nothing.
    assert evaluate_main([*args[:4], "--seed", "1", "--device", "cpu"]) == 0
    assert json.loads(ckpt.with_name("last_metrics_n6_seed1.json").read_text())["seed"] == 1
    assert json.loads(ckpt.with_name("last_metrics_n6.json").read_text()) == second
    capsys.readouterr()
    assert evaluate_main(args) == 1 and "already exists" in capsys.readouterr().err
    assert json.loads(out.read_text()) == first
    assert evaluate_main([*args[:4], "--out", str(tmp_path / "b.json"), "--batch_size", "0"]) == 1
    assert "--batch_size must be positive" in capsys.readouterr().err and not (tmp_path / "b.json").exists()


def test_evaluate_reports_a_missing_checkpoint(tmp_path, capsys):
    assert evaluate_main(["--ckpt_path", str(tmp_path / "nope.ckpt")]) == 1
    assert "does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------------- the real network (slow)


@pytest.mark.slow
def test_torchmetrics_documented_example_gives_12_6388():
    from torchmetrics.image.fid import FrechetInceptionDistance

    path = metrics.converted_weights_path()
    torch.manual_seed(42)
    fid = FrechetInceptionDistance(feature=64, feature_extractor_weights_path=str(path), antialias=False)
    imgs_dist1 = torch.randint(0, 200, (100, 3, 299, 299), dtype=torch.uint8)
    imgs_dist2 = torch.randint(100, 255, (100, 3, 299, 299), dtype=torch.uint8)
    fid.update(imgs_dist1, real=True)
    fid.update(imgs_dist2, real=False)
    assert round(float(fid.compute()), 4) == 12.6388


@pytest.mark.slow
def test_pool3_features_match_the_torchscript_to_1e_4():
    from gan_modules.metrics.inception import source_weights_path

    net = metrics.feature_network()
    scripted = torch.jit.load(str(source_weights_path()), map_location="cpu").eval()
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    with torch.inference_mode():
        ours, theirs = net(images), scripted(prepare_for_inception(images))
    assert ours.shape == (6, 2048)
    assert (ours - theirs).abs().max() < 1e-4


@pytest.mark.slow
def test_converted_weights_are_written_once():
    first = metrics.converted_weights_path()
    stamp = first.stat().st_mtime_ns
    assert metrics.converted_weights_path() == first and first.stat().st_mtime_ns == stamp
    assert metrics.network_checksum()[:16] in first.name


@pytest.mark.parametrize(("n", "subset"), [(200, 100), (1000, 500), (1001, 1000)])
def test_kid_std_is_a_real_spread_up_to_the_standard_subset_size(n, subset):
    # With up to 1000 samples per side, subsets are half the set: a subset as large as the set
    # would be identical on every draw and report a std of exactly 0.
    m = metrics.GANMetrics(network=TinyFeatures())
    gen = torch.Generator().manual_seed(0)
    m.update_features(torch.randn(n, 16, generator=gen), real=True)
    m.update_features(torch.randn(n, 16, generator=gen) + 0.5, real=False)
    results = m.compute()
    assert m.kid.subset_size == subset
    assert results["kid"] > 0 and results["kid_std"] > 0
