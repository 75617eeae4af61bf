"""How well fakes are detected: the GANs' own discriminators and a dedicated detector, on MNIST.

    python -m benchmarks.bench_detect            # the quality runs' GANs (trained first if missing)
    python -m benchmarks.bench_detect --quick    # minutes: two short GAN runs, a one-epoch detector

Writes ``benchmarks/results/detect.md`` (+ ``detect.json`` and ``detect_auroc.png``):

1. **A discriminator as a detector, over training**: for every saved checkpoint of a DCGAN and a vanilla run,
   the AUROC of its D (``1 - sigmoid(D(x))``) on held-out real digits vs its own generator's fakes.
2. **A dedicated detector** (``configs/detect_mnist.yaml``, ``train.py``) trained on one generator's fakes
   and tested on held-out fakes of the same generator, of the other GAN, and of earlier checkpoints.
3. **Robustness**: the same test sets after JPEG at quality 90 and 75 and a 0.5x down/up resize.

Every test set is 5,000 real MNIST test images (test[2000:7000]; the detector's validation split is
test[:2000]) against 5,000 fakes drawn from latent seeds the detector never trained on, all as uint8.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import detect_matrix, quality  # noqa: E402
from benchmarks.machine import header, machine  # noqa: E402
from benchmarks.tables import write_json, write_markdown  # noqa: E402
from datamodules import MNISTDataModule  # noqa: E402
from datamodules.realfake import SEED_OFFSETS  # noqa: E402
from gan_modules.checkpoints import load_model  # noqa: E402
from gan_modules.commands.common import load_gan, sample_uint8  # noqa: E402
from gan_modules.commands.detect import default_threshold, degrade, fake_probabilities  # noqa: E402
from gan_modules.detector import classification_metrics  # noqa: E402
from gan_modules.io import atomic_write, resolve_device  # noqa: E402

ROOT = quality.ROOT
NUM_VAL, NUM_TEST = 2_000, 5_000
TEST_SEED = SEED_OFFSETS["test"]  # the seed RealFakeDataModule gives its first fake source's test split
DEGRADATIONS = {"clean": (None, None), "JPEG 90": (90, None), "JPEG 75": (75, None), "resize 0.5x": (None, 0.5)}
GOALS = {"same": 0.99, "other": 0.95, "JPEG 75": 0.90}


def gan_runs(quick: bool) -> dict[str, Path]:
    """{"dcgan": run, "vanilla": run}: the quality runs (seed 43), or two short runs in quick mode."""
    if quick:
        extra = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "150", "--model.val_num_samples", "0",
                 "--checkpoint.every_n_epochs", "1"]  # fmt: skip
        root = ROOT / "runs" / "detect-quick"
    else:
        extra, root = [], ROOT / "runs" / "quality"
    return {name: quality.train(f"{name}_mnist.yaml", 43, extra, root) for name in ("dcgan", "vanilla")}


def checkpoints(run: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of every periodic checkpoint and last.ckpt, by epoch."""
    found = {}
    for path in sorted((run / "checkpoints").glob("*.ckpt")):
        if path.name == "best.ckpt":
            continue
        found[torch.load(path, map_location="cpu", weights_only=True)["epoch"] + 1] = path
    return sorted(found.items())


def train_detector(fakes: Path | str, name: str, quick: bool, extra: tuple[str, ...] = ()) -> Path:
    """Trains configs/detect_mnist.yaml on ``fakes`` (``detect_matrix.train_config``); returns its best.ckpt."""
    root = ROOT / "runs" / ("detect-quick" if quick else "detect")
    quick_args = ("--trainer.max_epochs", "1", "--data.num_train", "4000") if quick else ()
    return detect_matrix.train_config(fakes, name, (*quick_args, *extra), root)


def evaluate(model, real: torch.Tensor, fake: torch.Tensor, threshold: float, degradations=("clean",)) -> dict:
    out = {}
    labels = torch.cat([torch.zeros(len(real)), torch.ones(len(fake))])
    for name in degradations:
        quality_, factor = DEGRADATIONS[name]
        probs = fake_probabilities(model, degrade(torch.cat([real, fake]), quality_, factor))
        out[name] = classification_metrics(probs, labels, threshold)
    return out


def run(quick: bool, data_dir: str, command: str, detector_args: tuple[str, ...] = ()) -> dict:
    start = time.perf_counter()
    mnist = MNISTDataModule(data_dir=data_dir)
    mnist.prepare_data()
    mnist.setup("fit")
    num_test = 1_000 if quick else NUM_TEST
    real = mnist.val_dataset.images[NUM_VAL : NUM_VAL + num_test]
    runs = gan_runs(quick)
    fakes: dict[tuple[str, int], torch.Tensor] = {}
    curve: dict[str, list[dict]] = {}
    last_gan = {}  # each run's last checkpoint (last.ckpt, the highest epoch), kept for the degradation rows
    print("== the discriminators as detectors", flush=True)
    for name, run_dir in runs.items():
        curve[name] = []
        for epoch, ckpt in checkpoints(run_dir):
            gan = last_gan[name] = load_gan(ckpt, map_location=resolve_device("auto")).eval()
            fake = sample_uint8(gan, num_test, TEST_SEED)
            fakes[(name, epoch)] = fake
            metrics = evaluate(gan, real, fake, 0.5)["clean"]
            curve[name].append({"epoch": epoch, "checkpoint": ckpt.name, **metrics})
            print(f"{name} epoch {epoch}: D AUROC {metrics['auroc']:.4f}", flush=True)
    last = {name: max(e for n, e in fakes if n == name) for name in runs}
    first = {name: min(e for n, e in fakes if n == name) for name in runs}

    print("== dedicated detectors", flush=True)
    detectors = {}
    for trained_on in ("dcgan", "vanilla"):
        ckpt = train_detector(runs[trained_on] / "checkpoints" / "last.ckpt", f"on_{trained_on}", quick, detector_args)
        model = load_model(ckpt).eval()
        threshold = default_threshold(model)
        other = "vanilla" if trained_on == "dcgan" else "dcgan"
        rows = {
            f"{trained_on} last (same generator)": evaluate(
                model, real, fakes[(trained_on, last[trained_on])], threshold, tuple(DEGRADATIONS)
            ),  # fmt: skip
            f"{other} last (other generator)": evaluate(
                model, real, fakes[(other, last[other])], threshold, tuple(DEGRADATIONS)
            ),  # fmt: skip
            f"{trained_on} epoch {first[trained_on]} (early checkpoint)": evaluate(
                model, real, fakes[(trained_on, first[trained_on])], threshold
            ),
        }
        detectors[trained_on] = {"checkpoint": str(ckpt.relative_to(ROOT)), "threshold": threshold, "rows": rows}
        for epoch_name, fake in fakes.items():
            if epoch_name[0] == trained_on:
                metrics = evaluate(model, real, fake, threshold)["clean"]
                next(p for p in curve[trained_on] if p["epoch"] == epoch_name[1])["detector_auroc"] = metrics["auroc"]
        for row, result in rows.items():
            print(f"detector on {trained_on}: {row}: AUROC {result['clean']['auroc']:.4f}", flush=True)

    print("== the discriminators after degradation", flush=True)
    d_robust = {}
    for name, gan in last_gan.items():
        d_robust[name] = evaluate(gan, real, fakes[(name, last[name])], 0.5, tuple(DEGRADATIONS))
    results = {"machine": machine(), "quick": quick, "num_test": num_test, "curve": curve, "detectors": detectors,
               "detector_args": list(detector_args),
               "d_robust": d_robust, "runs": {k: str(v.relative_to(ROOT)) for k, v in runs.items()},
               "seconds": time.perf_counter() - start}  # fmt: skip
    write(results, quality.RESULTS / "quick" if quick else quality.RESULTS, command)
    return results


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.6), constrained_layout=True)
    for i, (name, points) in enumerate(results["curve"].items()):
        epochs = [p["epoch"] for p in points]
        ax.plot(epochs, [p["auroc"] for p in points], marker="o", color=f"C{i}", label=f"{name}: its own D")
        if all("detector_auroc" in p for p in points):
            ax.plot(epochs, [p["detector_auroc"] for p in points], marker="s", linestyle="--", color=f"C{i}",
                    label=f"{name}: detector trained on its last G")  # fmt: skip
    ax.set_xlabel("GAN training epoch (checkpoint)")
    ax.set_ylabel("AUROC, real vs that checkpoint's fakes")
    ax.set_ylim(0.45, 1.02)
    ax.axhline(0.5, color="gray", linewidth=0.8, linestyle=":")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)


def write(results: dict, out: Path, command: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    n = results["num_test"]
    lines = header("Fake detection on MNIST", results["machine"], command)
    lines += [
        f"Each test set: {n:,} held-out real MNIST test digits vs {n:,} fakes from latent seeds never trained on, "
        "all uint8 (as saved PNGs). AUROC and AP need no threshold; accuracy is at the detector's threshold chosen "
        "on its validation split (a discriminator: 0.5), with accuracy at 0.5 beside it.",
        f"GAN runs: {', '.join(f'{k} `{v}`' for k, v in results['runs'].items())}. "
        f"Total time {results['seconds'] / 60:.1f} min."
        + (
            " **Quick mode: two short GAN runs and one-epoch detectors on 4,000 images, not the claim.**"
            if results["quick"]
            else ""
        ),  # fmt: skip
        "",
        "## 1. A discriminator as a detector, over training (`detect_auroc.png`)",
        "",
        "| GAN | epoch | D AUROC | D AP | D acc @0.5 | detector AUROC (trained on the last G) |",
        "|---|---|---|---|---|---|",
    ]
    for name, points in results["curve"].items():
        for p in points:
            det = f"{p['detector_auroc']:.4f}" if "detector_auroc" in p else "-"
            lines.append(f"| {name} | {p['epoch']} | {p['auroc']:.4f} | {p['ap']:.4f} | {p['acc_0.5']:.3f} | {det} |")
    lines += ["", "## 2. Dedicated detectors (`configs/detect_mnist.yaml`)", ""]
    lines += ["| trained on | tested on | AUROC | AP | acc @threshold | acc @0.5 | threshold | goal |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for trained_on, det in results["detectors"].items():
        for row, result in det["rows"].items():
            m = result["clean"]
            goal = GOALS["same"] if "same" in row else GOALS["other"] if "other" in row else None
            met = "-" if goal is None else f">= {goal}: {'yes' if m['auroc'] >= goal else 'no'}"
            lines.append(f"| {trained_on} | {row} | {m['auroc']:.4f} | {m['ap']:.4f} | {m['acc']:.3f} | "
                         f"{m['acc_0.5']:.3f} | {det['threshold']:.3f} | {met} |")  # fmt: skip
    lines += ["", "## 3. Robustness: AUROC after degrading real and fake test images alike", ""]
    lines += ["| detector | tested on | " + " | ".join(DEGRADATIONS) + " |", "|---|---|" + "---|" * len(DEGRADATIONS)]
    for trained_on, det in results["detectors"].items():
        for row, result in det["rows"].items():
            if set(result) == set(DEGRADATIONS):
                cells = " | ".join(f"{result[d]['auroc']:.4f}" for d in DEGRADATIONS)
                lines.append(f"| detector on {trained_on} | {row} | {cells} |")
    for name, result in results["d_robust"].items():
        cells = " | ".join(f"{result[d]['auroc']:.4f}" for d in DEGRADATIONS)
        lines.append(f"| {name}'s own D | {name} last | {cells} |")
    lines += ["", f"Goal after JPEG 75 (detector, same generator): AUROC >= {GOALS['JPEG 75']}."]
    write_markdown(out / "detect.md", lines)
    write_json(out / "detect.json", results, indent=1)
    plot(results, out / "detect_auroc.png")
    print(f"wrote {out / 'detect.md'}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data_dir", default=str(ROOT / "data"))
    parser.add_argument("--matrix", action="store_true", help="the robustness matrix (benchmarks/detect_matrix.py): "
                        "detectors trained on each generator x tested on each x degradations")  # fmt: skip
    parser.add_argument("--generators", nargs="+", default=None, help="--matrix: the generators (default: all)")
    parser.add_argument("--configs", nargs="+", default=None, help="--matrix: detector configs (default: web)")
    parser.add_argument("--leave_one_out", action="store_true", help="--matrix: instead, for each generator, a "
                        "detector trained on all the others (rows join the one-generator ones)")  # fmt: skip
    parser.add_argument("detector_args", nargs="*", help="more train.py arguments for the detectors (after --)")
    args = parser.parse_args(argv)
    if args.matrix:
        generators = args.generators or list(detect_matrix.GENERATORS)
        unknown = sorted(set(generators) - set(detect_matrix.GENERATORS))
        if unknown:
            parser.error(f"unknown generators {unknown}; choose from {list(detect_matrix.GENERATORS)}")
        configs = args.configs or detect_matrix.CONFIGS
        command = "python -m benchmarks.bench_detect --matrix" + (" --quick" if args.quick else "")
        command += (" --generators " + " ".join(args.generators)) if args.generators else ""
        command += (" --configs " + " ".join(args.configs)) if args.configs else ""
        command += " --leave_one_out" if args.leave_one_out else ""
        detect_matrix.run(generators, configs, args.quick, args.data_dir, command, args.leave_one_out)
        return
    command = "python -m benchmarks.bench_detect" + (" --quick" if args.quick else "")
    command += (" -- " + " ".join(args.detector_args)) if args.detector_args else ""
    run(args.quick, args.data_dir, command, tuple(args.detector_args))


if __name__ == "__main__":
    main()
