"""``python -m benchmarks``: every benchmark, one after the other, each rewriting its ``benchmarks/results`` file.

    python -m benchmarks                 # full: throughput, loader, FID speed, tricks (2-D mixtures), the
                                         # DRS/MH-GAN on the mixtures, the tricks' MNIST ablation, progress bar,
                                         # quality table (N = 10,000), truncation / DRS / MH-GAN on its DCGAN,
                                         # Stacked MNIST (an hour per row and seed),
                                         # fake detection and its robustness matrix, face swap
    python -m benchmarks --quick         # a few minutes, CI-sized; writes benchmarks/results/quick/
    python -m benchmarks --only fid_speed throughput

Run it alone on the machine: the benchmarks time CPU work, and anything running beside them (a test suite,
another training run) spoils every figure. Each results file names the machine, the versions and the date.
On a GPU machine the same command measures the GPU paths; keep both sets of files (commit them side by side).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import (  # noqa: E402
    bench_ablation,
    bench_detect,
    bench_faceswap,
    bench_fid,
    bench_loader,
    bench_progress_bar,
    bench_sampling,
    bench_throughput,
    bench_tricks,
    bench_truncation,
    detect_matrix,
    quality,
    stacked_mnist,
)
from gan_modules import zoo  # noqa: E402

SECTIONS = (
    "throughput", "loader", "fid_speed", "tricks", "sampling", "ablation", "progress_bar", "quality", "truncation",
    "stacked_mnist", "detect", "detect_matrix", "faceswap",
)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="minutes, not an hour: smaller counts everywhere")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--data_dir", default=str(quality.ROOT / "data"))
    args = parser.parse_args(argv)
    command = "python -m benchmarks" + (" --quick" if args.quick else "")
    out = quality.RESULTS / "quick" if args.quick else quality.RESULTS
    for section in args.only:
        start = time.perf_counter()
        print(f"== {section}", flush=True)
        if section == "throughput":
            batches, warmup, repeats = (60, 10, 1) if args.quick else (300, 50, 2)
            bench_throughput.RESULTS = out
            bench_throughput.run(
                ["vanilla_mnist.yaml", "dcgan_mnist.yaml"], batches, warmup, repeats, args.data_dir, command
            )
        elif section == "loader":
            bench_loader.main(
                ["--n-images", "400", "--epochs", "2", "--out", str(out)] if args.quick else ["--out", str(out)]
            )
        elif section == "fid_speed":
            bench_fid.RESULTS = out
            bench_fid.run(images=50 if args.quick else 300, device=bench_fid.default_device(), command=command)
        elif section == "tricks":
            bench_tricks.main(["--quick"] if args.quick else [])
        elif section == "sampling":
            bench_sampling.main(["--quick"] if args.quick else [])
        elif section == "ablation":
            bench_ablation.run(args.quick, args.data_dir)
        elif section == "progress_bar":
            if not args.quick:  # a cost of a few percent needs the full-length measurement
                bench_progress_bar.main()
        elif section == "quality":
            # The full table keeps and exports its rows' generators in the model zoo; --quick never touches it.
            quality.run(args.quick, args.data_dir, command, zoo_root=None if args.quick else zoo.zoo_root())
        elif section == "truncation":  # after quality: the psi curve and DRS / MH-GAN of its DCGAN seed 42
            bench_truncation.run_for_quality_table(args.quick, args.data_dir, command)
        elif section == "stacked_mnist":
            zoo_root = None if args.quick else zoo.zoo_root()
            stacked_mnist.run(args.quick, args.data_dir, command, zoo_root=zoo_root)
        elif section == "detect":
            bench_detect.run(args.quick, args.data_dir, command)
        elif section == "detect_matrix":
            detect_matrix.run(list(detect_matrix.GENERATORS), detect_matrix.CONFIGS, args.quick, args.data_dir, command)
        elif section == "faceswap":
            bench_faceswap.main(["--epochs", "3", "--no-ablation", "--out", str(out)] if args.quick else [])
        print(f"== {section} done in {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
