"""The 2-D mixture test bed: the standard mixtures, PacGAN's scores, the toy GAN and its benchmark table."""

import math

import pytest
import torch
from helpers import make_trainer

from benchmarks import bench_tricks, machine
from datamodules.toy import MIXTURES, ToyMixtureDataModule, mixture_means, mode_coverage, sample_mixture
from gan_modules.callbacks import PointScatter
from gan_modules.toy import ToyGAN
from gan_modules.tricks import PacGAN


def test_ring_has_eight_distinct_modes_on_the_unit_circle_and_grid_twenty_five():
    ring = mixture_means("ring")
    assert ring.shape == (8, 2)
    torch.testing.assert_close(ring.norm(dim=1), torch.ones(8))
    gaps = torch.cdist(ring, ring) + 10 * torch.eye(8)
    assert float(gaps.min()) == pytest.approx(2 * math.sin(math.pi / 8), rel=1e-5)  # no two modes on one point
    grid = mixture_means("grid")
    assert grid.shape == (25, 2) and set(grid[:, 0].tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    points = sample_mixture("grid", 20_000, torch.Generator().manual_seed(0))
    offsets = points - grid[torch.cdist(points, grid).argmin(1)]
    assert offsets.std().item() == pytest.approx(MIXTURES["grid"], rel=0.05)


def test_mode_coverage_counts_modes_and_high_quality_samples_like_pacgan():
    ring = mixture_means("ring")
    assert mode_coverage(ring.repeat(10, 1), "ring") == {"modes": 8.0, "num_modes": 8.0, "high_quality": 1.0}
    half = mode_coverage(ring[:4].repeat(10, 1), "ring")  # a collapsed G: 4 of 8 modes
    assert half["modes"] == 4.0 and half["high_quality"] == 1.0
    off = ring + 0.04  # 0.04 * sqrt(2) > 3 sigma = 0.03 away from every mode
    both = mode_coverage(torch.cat([ring, off]), "ring")
    assert both["modes"] == 8.0 and both["high_quality"] == 0.5
    assert mode_coverage(torch.zeros(5, 2), "ring")["modes"] == 0.0


def test_toy_gan_trains_on_points_with_pacgan_and_draws_its_scatter(tmp_path):
    model = ToyGAN(g_hidden_dims=(16, 16), d_hidden_dims=(16,), tricks=[PacGAN(m=4)])
    trainer = make_trainer(tmp_path, max_epochs=2, callbacks=[PointScatter("ring")])
    trainer.fit(model, datamodule=ToyMixtureDataModule("ring", num_samples=400, batch_size=100))
    assert (model.d_updates, model.g_updates) == (8, 8)
    points = model.generate(torch.randn(7, 2))
    assert points.shape == (7, 2) and torch.isfinite(points).all()
    with torch.no_grad():
        model.generator_ema.module.net[-1].bias.fill_(4.0)  # points reach the grid's corners: never clamped to 1
    assert model.generate(torch.randn(7, 2)).max() > 3.0
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["scatter_0000.png", "scatter_0001.png"]
    with pytest.raises(ValueError, match="unknown mixture 'spiral'"):
        ToyMixtureDataModule("spiral")


def test_tricks_table_gives_mean_standard_error_and_the_published_numbers(tmp_path):
    runs = [
        {"mixture": "ring", "config": "GAN", "modes": m, "num_modes": 8.0, "high_quality": q, "cpu_s": 30.0}
        for m, q in ((6.0, 0.9), (8.0, 1.0))
    ] + [
        {"mixture": "ring", "config": "PacGAN4", "modes": 8.0, "num_modes": 8.0, "high_quality": q, "cpu_s": 40.0}
        for q in (0.1, 0.1)
    ]
    results = {"machine": machine.machine(), "steps": 3000, "batch_size": 500, "num_eval": 2500, "runs": runs}
    results["model"] = {"g_hidden_dims": (64, 64), "d_hidden_dims": (32,), "lr": 5e-4}
    bench_tricks.write(results, tmp_path, "python -m benchmarks.bench_tricks", seeds=2)
    text = (tmp_path / "tricks.md").read_text()
    # mean 7, standard error = stdev(6, 8) / sqrt(2) = 1.0; HQ 95 ± 5.
    assert "| ring | GAN | 7.0 ± 1.0 of 8 | 95.0 ± 5.0% | 30 | 6.3 / 98.2% |" in text
    assert "G 64 x 64 ReLU + BatchNorm, D 32 LeakyReLU" in text
    # PacGAN4's modes (8 vs 7 ± 1) are within two standard errors; its 10% high quality is clearly worse.
    assert (
        "- PacGAN4 on the ring: modes 8.0 vs 7.0 (no measurable difference), high quality 10.0% vs 95.0% (worse)"
        in text
    )
