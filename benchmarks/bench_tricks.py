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
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import header, machine  # noqa: E402
from datamodules.toy import MIXTURES, ToyMixtureDataModule, mixture_means, mode_coverage  # noqa: E402
from gan_modules.cli import quiet_known_warnings  # noqa: E402
from gan_modules.plots import plot_points  # noqa: E402
from gan_modules.toy import ToyGAN  # noqa: E402
from gan_modules.tricks import R1, PacGAN, TopK  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def with_trick(config: dict, trick) -> dict:
    """A configuration with one more trick appended to its list."""
    return {**config, "tricks": [*config.get("tricks", []), trick]}


TOY_MIXTURE = "toy_mixture.yaml (R1 + lr 1e-3 decayed)"
TOP_K = "toy_mixture.yaml + top-k"
# name -> ToyGAN keyword arguments (fresh objects per run).
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
}
# A configuration built on another is also compared with that one: against the plain GAN alone, the sentence
# would credit it with what its base already did.
EXTENDS = {TOP_K: TOY_MIXTURE}
DEFAULT_CONFIGS = ["GAN", "PacGAN4", "minibatch stddev", "R1 + PacGAN4", TOY_MIXTURE, TOP_K]
# Lin et al. 2018, Table 1 (modes, high-quality %), for the same protocol.
PUBLISHED = {
    ("ring", "GAN"): (6.3, 98.2),
    ("ring", "PacGAN4"): (7.8, 95.9),
    ("grid", "GAN"): (17.3, 94.8),
    ("grid", "PacGAN4"): (24.8, 93.6),
}
NUM_EVAL = 2500


def run_one(
    mixture: str, config: str, seed: int, steps: int, batch_size: int, scatter: Path | None, **model_args
) -> dict:
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
    points = torch.cat(list(model.sample_batches(NUM_EVAL, NUM_EVAL, seed=10_000 + seed)))
    score = mode_coverage(points, mixture)
    if scatter is not None:
        title = f"{config}, {mixture}: {score['modes']:.0f} modes, {100 * score['high_quality']:.1f}% HQ"
        plot_points(points, mixture_means(mixture), scatter, title, MIXTURES[mixture])
    return {**score, "wall_s": wall, "cpu_s": cpu, "seed": seed}


def figure_name(config: str) -> str:
    """A file-name-safe spelling of a configuration: 'R1 + PacGAN4' -> 'R1_PacGAN4'."""
    return re.sub(r"[^A-Za-z0-9]+", "_", config).strip("_")


def summarize(values: list[float]) -> tuple[float, float]:
    mean = statistics.mean(values)
    stderr = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return mean, stderr


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


def table_keys(results: dict) -> list[tuple[str, str]]:
    """(mixture, configuration) pairs in table order: ring then grid, configurations as in ``CONFIGS``."""
    order = list(CONFIGS)
    pairs = dict.fromkeys((r["mixture"], r["config"]) for r in results["runs"])
    return sorted(pairs, key=lambda p: (["ring", "grid"].index(p[0]), order.index(p[1]) if p[1] in order else 99))


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


def verdicts(results: dict) -> list[str]:
    """One sentence per (mixture, configuration): its modes and high-quality share against the plain GAN's,
    and against the configuration it extends (``EXTENDS``) when that one was measured too."""

    def stats(mixture: str, config: str) -> dict[str, tuple[float, float]] | None:
        rows = [r for r in results["runs"] if r["mixture"] == mixture and r["config"] == config]
        if not rows:
            return None
        return {
            "modes": summarize([r["modes"] for r in rows]),
            "hq": summarize([100 * r["high_quality"] for r in rows]),
        }

    def compare(name: str, ours: tuple[float, float], base: tuple[float, float], unit: str) -> str:
        diff, se = ours[0] - base[0], (ours[1] ** 2 + base[1] ** 2) ** 0.5
        if abs(diff) <= 2 * se:
            return f"{name} {ours[0]:.1f}{unit} vs {base[0]:.1f}{unit} (no measurable difference)"
        return f"{name} {ours[0]:.1f}{unit} vs {base[0]:.1f}{unit} ({'better' if diff > 0 else 'worse'})"

    sentences = []
    for mixture, config in table_keys(results):
        base = stats(mixture, "GAN")
        if config == "GAN" or base is None:
            continue
        ours = stats(mixture, config)
        sentence = (
            f"{config} on the {mixture}: {compare('modes', ours['modes'], base['modes'], '')}, "
            f"{compare('high quality', ours['hq'], base['hq'], '%')}"
        )
        parent = stats(mixture, EXTENDS[config]) if config in EXTENDS else None
        if parent is not None:
            sentence += (
                f"; against {EXTENDS[config]}, which it extends: {compare('modes', ours['modes'], parent['modes'], '')}, "
                f"{compare('high quality', ours['hq'], parent['hq'], '%')}"
            )
        sentences.append(sentence + ", at this budget.")
    return sentences


def write(results: dict, out: Path, command: str, seeds: int) -> None:
    results = {**results, "command": command, "seeds": seeds}
    (out / "tricks.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(out, command)


def write_markdown(out: Path, command: str) -> None:
    """``tricks.md`` from ``tricks.json`` (2-D mixtures) and ``tricks_mnist.json`` (``bench_ablation``)."""
    from benchmarks import bench_ablation

    toy_path, mnist_path = out / "tricks.json", out / "tricks_mnist.json"
    toy = json.loads(toy_path.read_text()) if toy_path.is_file() else None
    mnist = json.loads(mnist_path.read_text()) if mnist_path.is_file() else None
    lines = header("Training tricks: what each one does", (toy or mnist)["machine"], command)
    if toy is not None:
        lines += toy_section(toy, toy.get("command", "python -m benchmarks.bench_tricks"), toy.get("seeds", 5))
    if mnist is not None:
        lines += ["", *bench_ablation.section(mnist, mnist.get("command", "python -m benchmarks.bench_ablation"))]
    (out / "tricks.md").write_text("\n".join(lines) + "\n")


def toy_section(results: dict, command: str, seeds: int) -> list[str]:
    m = results["model"]
    lines = [
        "## Mode collapse: 2-D mixtures",
        "",
        f"`{command}`. "
        f"PacGAN's protocol (Lin et al. 2018): ring of 8 modes (radius 1, sigma 0.01) and grid of 25 modes "
        f"(means {{-4,-2,0,2,4}}^2, sigma 0.05); {results['num_eval']:,} samples scored per run; a sample is high "
        "quality within 3 sigma of its nearest mode, a mode is covered with at least one high-quality sample. "
        f"Toy MLP GAN (`gan_modules/toy.py`): G {' x '.join(map(str, m['g_hidden_dims']))} ReLU + BatchNorm, "
        f"D {' x '.join(map(str, m['d_hidden_dims']))} LeakyReLU, non-saturating loss, Adam {m['lr']:g} (betas 0.5, "
        f"0.999), samples from the EMA of G (decay {m.get('ema_decay')}), {results['steps']:,} updates of batch "
        f"{results['batch_size']}; mean ± standard error over "
        f"{seeds} seed(s). Published: Lin et al. 2018, Table 1 (their networks and budget, not ours).",
        "",
        "| mixture | configuration | modes | high quality | CPU s per run | published (modes / HQ) |",
        "|---|---|---|---|---|---|",
    ]
    keys = table_keys(results)
    for mixture, config in keys:
        rows = [r for r in results["runs"] if r["mixture"] == mixture and r["config"] == config]
        modes, modes_se = summarize([r["modes"] for r in rows])
        hq, hq_se = summarize([100 * r["high_quality"] for r in rows])
        cpu = statistics.mean(r["cpu_s"] for r in rows)
        total = int(rows[0]["num_modes"])
        published = PUBLISHED.get((mixture, config))
        pub = f"{published[0]} / {published[1]}%" if published else "-"
        lines.append(
            f"| {mixture} | {config} | {modes:.1f} ± {modes_se:.1f} of {total} | {hq:.1f} ± {hq_se:.1f}% | "
            f"{cpu:.0f} | {pub} |"
        )
    earlier = sorted({f"{r['config']}" for r in results["runs"] if "measured" in r})
    if earlier:
        lines += ["", f"Rows kept from an earlier invocation at the same budget and settings: {', '.join(earlier)}."]
    lines += [
        "",
        "What the numbers say, each configuration against the plain GAN on the same mixture, and a configuration "
        "built on another also against that one (a difference counts when it exceeds twice its standard error):",
        "",
    ]
    lines += [f"- {sentence}" for sentence in verdicts(results)]
    lines += ["", "Scatter plots of seed 0 (2,500 samples, modes as crosses, 3-sigma circles): `tricks/`."]
    return lines


if __name__ == "__main__":
    main()
