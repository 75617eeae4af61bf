"""The 2-D mixture test bed: the standard mixtures, PacGAN's scores, the toy GAN and its benchmark table."""

import csv
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from helpers import make_trainer

from benchmarks import bench_tricks, machine
from datamodules.toy import MIXTURES, ToyMixtureDataModule, mixture_means, sample_mixture
from gan_modules.base import lr_factor
from gan_modules.cli import cli_main
from gan_modules.metrics.modes import mode_coverage
from gan_modules.toy import ToyGAN, ToyGenerator, component_index
from gan_modules.tricks import PacGAN

ROOT = Path(__file__).resolve().parents[1]
TOY_CONFIGS = ["toy_mixture.yaml", "toy_mixture_components.yaml"]
TINY_TOY = [
    "--model.g_hidden_dims", "[16, 16]", "--model.d_hidden_dims", "[16]", "--data.num_samples", "200",
    "--data.batch_size", "50", "--trainer.max_epochs", "2", "--trainer.logger", "gan_modules.loggers.CSVLogger",
]  # fmt: skip


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


def test_component_latent_splits_the_normal_into_equal_bins_and_g_is_constant_inside_each():
    z0 = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(component_index(z0, 10), minlength=10)
    assert counts.shape == (10,) and (counts - 20_000).abs().max() < 600  # uniform over the 10 components
    assert component_index(torch.tensor([-1e9, 0.0, 1e9]), 10).tolist() == [0, 5, 9]  # ordered, in range
    edge = math.sqrt(2) * torch.erfinv(torch.tensor(2 * 0.3 - 1)).item()  # the boundary between bins 2 and 3
    assert component_index(torch.tensor([edge - 1e-4, edge + 1e-4]), 10).tolist() == [2, 3]
    g = ToyGenerator(latent_dim=2, hidden_dims=(8,), components=10).eval()
    assert g.net[0].in_features == 11  # one-hot of 10 components + z's second coordinate
    z1 = torch.full((2, 1), 0.3)
    same_bin = g(torch.cat([torch.tensor([[edge + 0.01], [edge + 0.2]]), z1], dim=1))
    torch.testing.assert_close(same_bin[0], same_bin[1])  # z0 only picks the component: no path inside it
    across = g(torch.cat([torch.tensor([[edge - 0.01], [edge + 0.01]]), z1], dim=1))
    assert not torch.allclose(across[0], across[1])  # a jump between components, not a bridge
    model = ToyGAN(g_hidden_dims=(8,), d_hidden_dims=(8,), latent_components=10)
    assert model.generator.components == 10 and model.generate(torch.randn(5, 2)).shape == (5, 2)
    with pytest.raises(ValueError, match="latent_dim >= 2"):
        ToyGenerator(latent_dim=1, components=10)
    with pytest.raises(ValueError, match="components must be 0"):
        ToyGAN(latent_components=-1)


def test_toy_gan_trains_on_points_with_pacgan_and_draws_its_scatter(tmp_path):
    model = ToyGAN(g_hidden_dims=(16, 16), d_hidden_dims=(16,), tricks=[PacGAN(m=4)])
    trainer = make_trainer(tmp_path, max_epochs=2)
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

    # A configuration that extends another is also compared with that one.
    base, extended = "toy_mixture.yaml (R1 + lr 1e-3 decayed)", "toy_mixture.yaml + top-k"
    assert bench_tricks.EXTENDS[extended] == base
    more = [{**r, "config": base, "high_quality": 0.8} for r in runs[:2]]
    more += [{**r, "config": extended, "high_quality": 0.6} for r in runs[:2]]
    sentences = bench_tricks.verdicts({**results, "runs": runs + more})
    assert (
        f"- {extended} on the ring: modes 7.0 vs 7.0 (no measurable difference), high quality 60.0% vs 95.0% "
        f"(worse); against {base}, which it extends: modes 7.0 vs 7.0 (no measurable difference), "
        "high quality 60.0% vs 80.0% (worse), at this budget."
    ) == f"- {sentences[-1]}"

    # A later run of one configuration keeps the other rows when the budget and settings are the same.
    new = {**results, "runs": [{**runs[0], "config": "PacGAN4", "high_quality": 0.5}]}
    kept = bench_tricks.kept_rows(tmp_path / "tricks.json", new)
    assert [r["config"] for r in kept] == ["GAN", "GAN"] and all("earlier invocation" in r["measured"] for r in kept)
    bench_tricks.write({**new, "runs": kept + new["runs"]}, tmp_path, "python -m benchmarks.bench_tricks", seeds=2)
    text = (tmp_path / "tricks.md").read_text()
    assert "Rows kept from an earlier invocation at the same budget and settings: GAN." in text
    assert text.index("| ring | GAN |") < text.index("| ring | PacGAN4 |")  # table order, not run order
    assert bench_tricks.kept_rows(tmp_path / "tricks.json", {**new, "steps": 10}) == []


def test_mnist_ablation_section_compares_each_trick_with_the_shipped_config(tmp_path):
    from benchmarks import bench_ablation

    def row(name, seed, fid):
        return {"name": name, "seed": seed, "fid": fid, "kid": fid / 1000, "precision": 0.5, "recall": 0.5,
                "train_s": 50.0 if name == bench_ablation.BASELINE else 100.0,
                "citation": "" if name == bench_ablation.BASELINE else "X et al."}  # fmt: skip

    runs = [row(bench_ablation.BASELINE, 42, 10.0), row(bench_ablation.BASELINE, 43, 12.0)]
    runs += [row("+ a", 42, 20.0), row("+ a", 43, 22.0), row("+ b", 42, 11.5), row("+ b", 43, 12.5)]
    results = {
        "machine": machine.machine(),
        "command": "c",
        "epochs": 1,
        "steps": 937,
        "num_samples": 1000,
        "runs": runs,
    }
    (tmp_path / "tricks_mnist.json").write_text(bench_ablation.json.dumps(results))
    bench_tricks.write_markdown(tmp_path, "c")
    text = (tmp_path / "tricks.md").read_text()
    assert "## MNIST: each trick on or off from the DCGAN config" in text and "## Mode collapse" not in text
    assert f"| {bench_ablation.BASELINE} | - | 11.00 ± 1.00 | 11.00 ± 1.00 |" in text
    assert "- **+ a**: FID 21.00 vs 11.00 (worse); 2.00x the shipped config's training time." in text
    assert "| + a | X et al. | 21.00 ± 1.00 |" in text
    assert "- **+ b**: FID 12.00 vs 11.00 (no measurable difference at this budget)" in text  # 1 <= 0.5 + 1


def test_every_trick_of_the_catalogue_is_a_row_of_the_mnist_ablation():
    from benchmarks import bench_ablation

    table = bench_ablation.rows(steps=100)
    args = " ".join(" ".join(extra) for _, extra in table.values())
    catalogue = ["FeatureMatching", "discrimination", "HistoricalAveraging", "virtual", "real_label", "InstanceNoise"]
    catalogue += ["pixelshuffle", "SpectralNorm", "DRAGAN", "stddev", "DiffAugment", "PacGAN"]
    for spelled in catalogue:
        assert spelled in args
    assert table["- R1"][1] == ["--model.tricks", "[]"]


@pytest.mark.parametrize(("config", "mixture"), [(c, "ring") for c in TOY_CONFIGS] + [("toy_mixture.yaml", "grid")])
def test_toy_config_trains_through_the_cli_and_scores_every_epoch(tmp_path, config, mixture):
    args = ["--config", str(ROOT / "configs" / config), *TINY_TOY, "--data.mixture", mixture]
    cli = cli_main([*args, "--trainer.default_root_dir", str(tmp_path)])
    run = cli.run_dir
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["scatter_0000.png", "scatter_0001.png"]
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/modes")]
    assert len(rows) == 2
    assert all(0 <= float(r["val/modes"]) <= (8 if mixture == "ring" else 25) for r in rows)
    assert all(0.0 <= float(r["val/high_quality"]) <= 1.0 for r in rows)
    assert (run / "checkpoints" / "best.ckpt").is_file()  # kept on val/high_quality
    assert (cli.model.d_updates, cli.model.g_updates) == (8, 8)
    # The R1 trick and the learning-rate decay of the config are in force: the rate ends at 0.
    assert [type(t).__name__ for t in cli.model.tricks] == ["R1"]
    assert all(opt.param_groups[0]["lr"] == 0.0 for opt in cli.model.optimizers(use_pl_optimizer=False))
    assert cli.model.generator.components == (200 if config == "toy_mixture_components.yaml" else 0)


def test_toy_gan_refuses_an_image_datamodule_and_an_image_gan_refuses_points(tmp_path):
    images = ["--data", "datamodules.SyntheticDataModule", "--data.image_size", "28", "--data.num_images", "8"]
    with pytest.raises(ValueError, match="ToyGAN trains on 2-D points, not images"):
        cli_main(["--config", str(ROOT / "configs" / "toy_mixture.yaml"), *TINY_TOY, *images,
                  "--trainer.default_root_dir", str(tmp_path)])  # fmt: skip
    assert not any(tmp_path.rglob("config.yaml"))  # nothing written for a refused run
    toy_data = ["--data", "datamodules.toy.ToyMixtureDataModule", "--trainer.default_root_dir", str(tmp_path)]
    with pytest.raises(ValueError, match="DCGAN trains on images, but ToyMixtureDataModule gives 2-D points"):
        cli_main(["--config", str(ROOT / "configs" / "dcgan_mnist.yaml"), *toy_data])
    assert not any(tmp_path.rglob("config.yaml"))


def test_lr_factor_is_flat_then_falls_to_zero():
    assert [lr_factor("linear", 0.5, 10, t) for t in (0, 5, 6, 8, 10, 12)] == pytest.approx([1, 1, 0.8, 0.4, 0, 0])
    assert lr_factor("cosine", 0.0, 10, 5) == pytest.approx(0.5)
    assert lr_factor("cosine", 0.0, 10, 10) == pytest.approx(0.0)


class _RecordLR(pl.Callback):
    def __init__(self, stop_after_epoch=None):
        self.lrs, self.stop_after_epoch = [], stop_after_epoch

    def on_train_batch_end(self, trainer, pl_module, *args):
        self.lrs.append([opt.param_groups[0]["lr"] for opt in pl_module.optimizers(use_pl_optimizer=False)])

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.stop_after_epoch:
            trainer.should_stop = True


def test_lr_decay_follows_updates_and_resumes_exactly(tmp_path):
    data = lambda: ToyMixtureDataModule("ring", num_samples=400, batch_size=100)  # noqa: E731
    model = lambda: ToyGAN(g_hidden_dims=(8,), d_hidden_dims=(8,), lr=1e-3, lr_decay="linear", lr_decay_start=0.5)  # noqa: E731

    whole = _RecordLR()
    make_trainer(tmp_path, max_epochs=2, callbacks=[whole]).fit(model(), datamodule=data())
    # 8 D and 8 G updates planned; constant for the first 4, then 1 - (t - 4) / 4 after update t.
    expected = [1e-3 * f for f in (1, 1, 1, 1, 0.75, 0.5, 0.25, 0.0)]
    assert [d for d, _ in whole.lrs] == pytest.approx(expected)
    assert [g for _, g in whole.lrs] == pytest.approx(expected)

    first = _RecordLR(stop_after_epoch=0)
    trainer = make_trainer(tmp_path, max_epochs=2, callbacks=[first])
    trainer.fit(model(), datamodule=data())
    trainer.save_checkpoint(tmp_path / "half.ckpt")
    rest = _RecordLR()
    make_trainer(tmp_path, max_epochs=2, callbacks=[rest]).fit(
        model(), datamodule=data(), ckpt_path=tmp_path / "half.ckpt"
    )
    assert sum(first.lrs + rest.lrs, []) == pytest.approx(
        sum(whole.lrs, [])
    )  # the schedule's position is in the checkpoint

    with pytest.raises(ValueError, match="lr_decay needs a run of known length"):
        make_trainer(tmp_path, max_epochs=-1, max_steps=-1).fit(model(), datamodule=data())
    with pytest.raises(ValueError, match="lr_decay_start is a fraction"):
        ToyGAN(lr_decay="linear", lr_decay_start=1.0)
