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
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import quality  # noqa: E402
from benchmarks.machine import machine, probe_text  # noqa: E402


def trick(class_name: str, **init_args) -> list[str]:
    spec = {"class_path": f"gan_modules.tricks.{class_name}", "init_args": init_args}
    return ["--model.tricks+", json.dumps(spec)]


BASELINE = "dcgan_mnist.yaml (lazy R1, nearest upsampling)"


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
    from benchmarks import bench_tricks

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
    (out / "tricks_mnist.json").write_text(json.dumps(results, indent=2) + "\n")
    bench_tricks.write_markdown(out, command)
    return results


def section(results: dict, command: str) -> list[str]:
    """The MNIST ablation's markdown: the table and a sentence per row against the shipped config."""
    n, epochs = results["num_samples"], results["epochs"]
    names = list(dict.fromkeys(r["name"] for r in results["runs"]))
    seeds = sorted({r["seed"] for r in results["runs"]})
    stats = {}
    for name in names:
        runs = [r for r in results["runs"] if r["name"] == name]
        stats[name] = {
            "fid": quality.spread([r["fid"] for r in runs]),
            "kid": quality.spread([1000 * r["kid"] for r in runs]),
            "precision": statistics.mean(r["precision"] for r in runs),
            "recall": statistics.mean(r["recall"] for r in runs),
            "train_s": statistics.mean(r["train_s"] for r in runs),
            "citation": runs[0]["citation"],
        }
    m = results["machine"]
    lines = [
        "## MNIST: each trick on or off from the DCGAN config",
        "",
        f"Measured {m['date']} on {m['cpu_flags']}, 1-minute load average at the start "
        f"{m['load_average_at_start'][0]}"
        + probe_text(m, ", host speed ")
        + f". `{command}`. Each row: "
        "`python train.py --config configs/dcgan_mnist.yaml --seed_everything <seed> "
        f"--trainer.max_epochs {epochs}` plus the row's change ({results['steps']:,} D and G updates of batch 64), "
        f"then FID and KID of the final EMA generator at N = {n:,} (generated vs the first {n:,} MNIST test "
        "images, exact fp32 TF-Inception; FID at this N reads higher than at 10,000, so compare rows only with "
        f"each other). Mean ± half the range over seeds {', '.join(map(str, seeds))}. This budget shows what a "
        "trick does to the first epoch, not where a long run ends.",
        "",
        "| configuration | paper | FID | KID (x1000) | precision | recall | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        s = stats[name]
        lines.append(
            f"| {name} | {s['citation'] or '-'} | {s['fid'][0]:.2f} ± {s['fid'][1]:.2f} | "
            f"{s['kid'][0]:.2f} ± {s['kid'][1]:.2f} | {s['precision']:.3f} | {s['recall']:.3f} | {s['train_s']:.0f} |"
        )
    if BASELINE in stats and len(names) > 1:
        base = stats[BASELINE]
        lines += [
            "",
            "What the numbers say against the shipped config (a difference counts when it exceeds the sum of the "
            "two rows' half-ranges, i.e. when the seeds' intervals do not overlap):",
            "",
        ]
        for name in names:
            if name == BASELINE:
                continue
            s = stats[name]
            diff = s["fid"][0] - base["fid"][0]
            if abs(diff) <= s["fid"][1] + base["fid"][1]:
                verdict = "no measurable difference at this budget"
            else:
                verdict = "better" if diff < 0 else "worse"
            slower = s["train_s"] / base["train_s"] if base["train_s"] else float("nan")
            lines.append(
                f"- **{name}**: FID {s['fid'][0]:.2f} vs {base['fid'][0]:.2f} ({verdict}); "
                f"{slower:.2f}x the shipped config's training time."
            )
    return lines


if __name__ == "__main__":
    main()
