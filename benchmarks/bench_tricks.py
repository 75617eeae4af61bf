"""What the tricks do against mode collapse: 2-D mixtures under PacGAN's protocol (Lin et al. 2018, Table 1).

For each mixture (``ring``: 8 modes, sigma 0.01; ``grid``: 25 modes, sigma 0.05), each configuration
and each seed: train the toy MLP GAN (``gan_modules/toy.py``) for a fixed number of steps, draw 2,500
samples from G, and count the modes covered (a mode with at least one sample within 3 sigma) and the
share of high-quality samples (within 3 sigma of their nearest mode). The table gives the mean and the
standard error over seeds, the CPU seconds per run, and PacGAN's published numbers beside ours.

    python -m benchmarks.bench_tricks                 # 5 seeds, both mixtures, every configuration
    python -m benchmarks.bench_tricks --quick         # 1 seed, a short budget (CI-sized)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import tables  # noqa: E402
from benchmarks.machine import machine  # noqa: E402
from benchmarks.tricks_report import EXTENDS, TOP_K, TOY_MIXTURE, verdicts, write_markdown  # noqa: E402, F401
from datamodules.toy import MIXTURES, ToyMixtureDataModule, mixture_means  # noqa: E402
from gan_modules.cli import quiet_known_warnings  # noqa: E402
from gan_modules.metrics.modes import mode_coverage  # noqa: E402
from gan_modules.toy import ToyGAN  # noqa: E402
from gan_modules.tricks import R1, PacGAN, TopK  # noqa: E402
from gan_modules.visualize import plot_points  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LAZY_R1 = "toy_mixture.yaml, lazy R1"


def with_trick(config: dict, trick) -> dict:
    """A configuration with one more trick appended to its list."""
    return {**config, "tricks": [*config.get("tricks", []), trick]}


# name -> ToyGAN keyword arguments (fresh objects per run); tricks_report.CONFIG_ORDER lists them in table order.
CONFIGS = {
    "GAN": lambda: {},
    "PacGAN2": lambda: {"tricks": [PacGAN(m=2)]},
    "PacGAN4": lambda: {"tricks": [PacGAN(m=4)]},
    "minibatch stddev": lambda: {"d_minibatch": "stddev"},
    "R1 + PacGAN4": lambda: {"tricks": [R1(gamma=0.1), PacGAN(m=4)]},
    # configs/toy_mixture.yaml: 5x the learning rate, decayed linearly over the last 70%, and a light R1.
    TOY_MIXTURE: lambda: {
        "tricks": [R1(gamma=0.1)],
        "lr": 1e-3,
        "lr_decay": "linear",
        "lr_decay_start": 0.3,
    },  # fmt: skip
    # The same plus top-k (Sinha et al. 2020). A run here is one epoch, so gamma 0.01: k falls to half the
    # batch after 15% of the updates (gamma ** epochs), where the paper's 0.99 would barely move it.
    TOP_K: lambda: with_trick(CONFIGS[TOY_MIXTURE](), TopK(gamma=0.01, min_fraction=0.5)),
    # bench_sampling's recipe (configs/toy_mixture_components.yaml): R1 lazy, on every 16th D update (Karras et
    # al. 2020), which frees the CPU time for 3,000 updates of 250 in under a CPU-minute.
    LAZY_R1: lambda: {**CONFIGS[TOY_MIXTURE](), "tricks": [R1(gamma=0.1, every=16)]},
}
DEFAULT_CONFIGS = ["GAN", "PacGAN4", "minibatch stddev", "R1 + PacGAN4", TOY_MIXTURE, TOP_K]
NUM_EVAL = 2500


def train_one(mixture: str, config: str, seed: int, steps: int, batch_size: int, **model_args) -> tuple:
    """(the trained ToyGAN, wall seconds, CPU seconds) of one configuration and seed on one mixture."""
    pl.seed_everything(seed, verbose=False)
    model = ToyGAN(**{**model_args, **CONFIGS[config]()})
    data = ToyMixtureDataModule(mixture, num_samples=steps * batch_size, batch_size=batch_size, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(
            accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=tmp, log_every_n_steps=10**9,
        )  # fmt: skip
        start, cpu_start = time.perf_counter(), time.process_time()
        # The loader alone, not the datamodule: ToyGAN's own per-epoch scoring and scatter (train.py's) would
        # be drawn into the throw-away folder inside the timed section; this benchmark scores below.
        data.setup("fit")
        trainer.fit(model, train_dataloaders=data.train_dataloader())
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return model, wall, cpu


def run_one(
    mixture: str, config: str, seed: int, steps: int, batch_size: int, scatter: Path | None, **model_args
) -> dict:
    model, wall, cpu = train_one(mixture, config, seed, steps, batch_size, **model_args)
    points = torch.cat(list(model.sample_batches(NUM_EVAL, NUM_EVAL, seed=10_000 + seed)))
    score = mode_coverage(points, mixture)
    if scatter is not None:
        title = f"{config}, {mixture}: {score['modes']:.0f} modes, {100 * score['high_quality']:.1f}% HQ"
        plot_points(points, mixture_means(mixture), scatter, title, MIXTURES[mixture])
    return {**score, "wall_s": wall, "cpu_s": cpu, "seed": seed}


def figure_name(config: str) -> str:
    """A file-name-safe spelling of a configuration: 'R1 + PacGAN4' -> 'R1_PacGAN4'."""
    return re.sub(r"[^A-Za-z0-9]+", "_", config).strip("_")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 seed and a short budget (minutes)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2000, help="D (and G) updates per run")
    parser.add_argument("--batch_size", type=int, default=500)
    parser.add_argument(
        "--configs", nargs="+", default=DEFAULT_CONFIGS, choices=list(CONFIGS),
        help="configurations to run; rows of others already in the results file (same budget) are kept",
    )  # fmt: skip
    parser.add_argument("--mixtures", nargs="+", default=["ring", "grid"], choices=["ring", "grid"])
    parser.add_argument("--g_hidden", type=int, nargs="+", default=[256, 256, 256], help="G's hidden widths")
    parser.add_argument("--d_hidden", type=int, nargs="+", default=[256, 256, 256], help="D's hidden widths")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--ema", type=float, default=0.999, help="EMA decay of G (samples come from the EMA)")
    args = parser.parse_args(argv)
    model_args = {
        "g_hidden_dims": tuple(args.g_hidden),
        "d_hidden_dims": tuple(args.d_hidden),
        "lr": args.lr,
        "ema_decay": args.ema,
    }
    quiet_known_warnings()
    warnings.filterwarnings("ignore", message=r"You defined a `validation_step` but have no `val_dataloader`")
    seeds = 1 if args.quick else args.seeds
    steps = 300 if args.quick else args.steps
    out = RESULTS / "quick" if args.quick else RESULTS
    figures = out / "tricks"
    figures.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine(), "steps": steps, "batch_size": args.batch_size, "num_eval": NUM_EVAL, "runs": []}
    results["model"] = {**model_args, "argv": sys.argv[1:] if argv is None else argv}
    for mixture in args.mixtures:
        for config in args.configs:
            for seed in range(seeds):
                scatter = figures / f"{mixture}_{figure_name(config)}.png" if seed == 0 else None
                row = {
                    "mixture": mixture,
                    "config": config,
                    **run_one(mixture, config, seed, steps, args.batch_size, scatter, **model_args),
                }
                results["runs"].append(row)
                print(f"{mixture} {config} seed {seed}: {row['modes']:.0f} modes, "
                      f"{100 * row['high_quality']:.1f}% HQ, {row['cpu_s']:.0f} CPU s", flush=True)  # fmt: skip
    command = "python -m benchmarks.bench_tricks" + (" --quick" if args.quick else "")
    results["runs"] = kept_rows(out / "tricks.json", results) + results["runs"]
    write(results, out, command, seeds)


def kept_rows(path: Path, results: dict) -> list[dict]:
    """Rows of an earlier results file at the same budget and settings for configurations not run now."""
    if not path.is_file():
        return []
    old = json.loads(path.read_text())
    same = all(old.get(k) == results[k] for k in ("steps", "batch_size", "num_eval"))
    settings = lambda model: json.loads(json.dumps({k: v for k, v in model.items() if k != "argv"}))  # noqa: E731
    same = same and settings(old.get("model", {})) == settings(results["model"])
    ran = {(r["mixture"], r["config"]) for r in results["runs"]}
    kept = [r for r in old.get("runs", []) if same and (r["mixture"], r["config"]) not in ran]
    for row in kept:
        row.setdefault("measured", old["machine"]["date"] + ", an earlier invocation")
    return kept


def write(results: dict, out: Path, command: str, seeds: int) -> None:
    results = {**results, "command": command, "seeds": seeds}
    tables.write_json(out / "tricks.json", results)
    write_markdown(out, command)


if __name__ == "__main__":
    main()
