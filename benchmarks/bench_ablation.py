"""Each trick on or off from the shipped DCGAN config, on MNIST at a fixed CPU-sized budget.

Every row is a plain ``train.py`` run of ``configs/dcgan_mnist.yaml`` with one change on the command line
(the same spelling a user types: ``--model.tricks+ '{class_path: ..., init_args: ...}'``, ``--model.d_minibatch
stddev``, ...), for ``--epochs`` epochs, then ``evaluate.py``'s metrics on its final EMA generator: ``N``
fixed-seed samples against the first ``N`` MNIST test images, exact fp32 TF-Inception. The shipped config
already has lazy R1 and nearest-neighbour upsampling, so those two rows take them away or swap them;
every other row adds one trick on top.

    python -m benchmarks.bench_ablation                # 2 seeds, 1 epoch each, N = 1,000 (about an hour on 2 cores)
    python -m benchmarks.bench_ablation --quick        # 1 seed, 60 steps, N = 200, three rows (CI-sized)

Runs are kept under ``runs/ablation/`` and reused (an interrupted benchmark resumes). The table is written
into ``benchmarks/results/tricks.md`` beside the 2-D mixtures (``bench_tricks``), with a sentence per trick.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import quality, tables  # noqa: E402
from benchmarks.machine import machine  # noqa: E402
from benchmarks.tricks_report import BASELINE, write_markdown  # noqa: E402


def trick(class_name: str, **init_args) -> list[str]:
    spec = {"class_path": f"gan_modules.tricks.{class_name}", "init_args": init_args}
    return ["--model.tricks+", json.dumps(spec)]


def rows(steps: int) -> dict[str, tuple[str, list[str]]]:
    """Row name -> (citation, extra train.py arguments). ``steps`` sizes the instance-noise annealing."""
    return {
        BASELINE: ("", []),
        "- R1": ("Mescheder et al. 2018", ["--model.tricks", "[]"]),
        "transposed-conv upsampling": ("Radford et al. 2016", ["--model.g_upsample", "transpose"]),
        "PixelShuffle upsampling": ("Shi et al. 2016", ["--model.g_upsample", "pixelshuffle"]),
        "+ one-sided label smoothing 0.9": (
            "Salimans et al. 2016",
            ["--model.objective.init_args.real_label", "[0.9, 0.9]"],
        ),
        "+ noisy labels (real 0.8-1, fake 0-0.2)": (
            "seed 002",
            [
                "--model.objective.init_args.real_label",
                "[0.8, 1.0]",
                "--model.objective.init_args.fake_label",
                "[0.0, 0.2]",
            ],
        ),  # fmt: skip
        "+ feature matching": ("Salimans et al. 2016", trick("FeatureMatching", weight=1.0)),
        "+ minibatch discrimination": ("Salimans et al. 2016", ["--model.d_minibatch", "discrimination"]),
        "+ historical averaging": ("Salimans et al. 2016", trick("HistoricalAveraging", weight=0.001, networks="both")),
        "+ virtual batch norm": ("Salimans et al. 2016", ["--model.g_norm", "virtual"]),
        "+ instance noise (0.1, annealed over the run)": (
            "Sønderby et al. 2017",
            trick("InstanceNoise", std=0.1, anneal_steps=steps),
        ),
        "+ spectral norm": ("Miyato et al. 2018", trick("SpectralNorm")),
        "+ DRAGAN": ("Kodali et al. 2017", trick("DRAGAN", weight=10.0, c=0.5)),
        "+ minibatch stddev": ("Karras et al. 2018", ["--model.d_minibatch", "stddev"]),
        "+ DiffAugment (color, translation, cutout)": ("Zhao et al. 2020", trick("DiffAugment")),
        "+ PacGAN2": ("Lin et al. 2018", trick("PacGAN", m=2)),
    }


STEPS_PER_EPOCH = 60_000 // 64  # MNIST train at the config's batch size (drop_last)
QUICK_ROWS = [BASELINE, "- R1", "+ spectral norm"]


def slug(name: str) -> str:
    keep = "".join(c if c.isalnum() else "-" for c in name.lower())
    return "-".join(part for part in keep.split("-") if part)[:48]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 seed, 60 steps, N = 200, three rows")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--num_samples", type=int, default=1000, help="N for FID/KID (generated and test images)")
    parser.add_argument("--rows", nargs="+", default=None, help="row names (default: all)")
    parser.add_argument("--data_dir", default=str(quality.ROOT / "data"))
    args = parser.parse_args(argv)
    run(args.quick, args.data_dir, args.seeds, args.epochs, args.num_samples, args.rows)


def run(
    quick: bool,
    data_dir: str,
    seeds: list[int] | None = None,
    epochs: int = 1,
    num_samples: int = 1000,
    names: list[str] | None = None,
) -> dict:
    seeds = [42] if quick else (seeds or [42, 43])
    num_samples = 200 if quick else num_samples
    limit = ["--trainer.limit_train_batches", "60"] if quick else []
    steps = 60 if quick else epochs * STEPS_PER_EPOCH
    table = rows(steps)
    names = names or (QUICK_ROWS if quick else list(table))
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from: {', '.join(table)}")
    out = quality.RESULTS / "quick" if quick else quality.RESULTS
    root = quality.ROOT / "runs" / ("ablation-quick" if quick else "ablation")
    common = ["--trainer.max_epochs", str(epochs), "--checkpoint.every_n_epochs", str(10**6), *limit]
    command = "python -m benchmarks.bench_ablation" + (" --quick" if quick else "")
    results = {
        "machine": machine(),
        "command": command,
        "epochs": epochs,
        "steps": steps,
        "num_samples": num_samples,
        "runs": [],
    }
    for name in names:
        citation, extra = table[name]
        for seed in seeds:
            run_root = root / slug(name)
            run_dir = quality.train("dcgan_mnist.yaml", seed, [*common, *extra], run_root)
            row = quality.evaluate_run(run_dir, num_samples, data_dir)
            row.update(name=name, citation=citation, seed=seed, args=extra)
            results["runs"].append(row)
            print(f"{name} seed {seed}: FID {row['fid']:.2f}, KID {1000 * row['kid']:.2f}e-3", flush=True)
    tables.write_json(out / "tricks_mnist.json", results)
    write_markdown(out, command)
    return results


if __name__ == "__main__":
    main()
