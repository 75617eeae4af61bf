"""Images/s of the CelebA train loader with the preprocessing cache vs decoding JPEGs on the fly.

Builds a synthetic CelebA in a temporary folder (178x218 JPEGs at quality 95, smooth colour fields
plus noise so that files are about CelebA's size, the official partition's 80/10/10 proportions),
then for each resolution times:
  - the one-time cache build (``prepare_data``: decode, crop 178x178, resize, write the .npy),
  - iterating the train loader from the cache (num_workers 0 and 2),
  - iterating it without the cache (JPEG decode + crop + resize in num_workers loader processes).
Every loader is iterated for ``--epochs`` epochs; the first (worker start, cold caches) is reported
apart from the mean of the rest. Writes ``loader.json`` and ``loader.md`` to ``--out``.

    python benchmarks/bench_loader.py                # 2,000 images, 64 and 128 px, about 2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import tables  # noqa: E402
from benchmarks.machine import header  # noqa: E402
from benchmarks.machine import machine as standard_machine  # noqa: E402
from datamodules.cache import available_cpus  # noqa: E402
from datamodules.images import CelebADataModule  # noqa: E402


def make_synthetic_celeba(root: Path, n_images: int, seed: int = 0) -> None:
    """``root/celeba/img_align_celeba/000001.jpg ...`` + ``list_eval_partition.txt`` (torchvision's layout)."""
    rng = np.random.default_rng(seed)
    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    lines = []
    for i in range(1, n_images + 1):
        # A face-like amount of detail: a low-frequency colour field upsampled, plus sensor-like noise.
        coarse = Image.fromarray(rng.integers(0, 256, (7, 6, 3), dtype=np.uint8)).resize((178, 218), Image.BICUBIC)
        pixels = np.asarray(coarse, dtype=np.int16) + rng.normal(0, 4, (218, 178, 3)).astype(np.int16)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i:06d}.jpg", quality=95)
        split = 0 if i <= 0.8 * n_images else 1 if i <= 0.9 * n_images else 2
        lines.append(f"{i:06d}.jpg {split}\n")
    (root / "celeba" / "list_eval_partition.txt").write_text("".join(lines))


def time_loader(dm: CelebADataModule, epochs: int) -> dict:
    loader = dm.train_dataloader()
    epoch_seconds = []
    images = 0
    for _ in range(epochs):
        start = time.perf_counter()
        images = 0
        for batch in loader:
            assert batch.dtype == torch.uint8
            images += batch.shape[0]
        epoch_seconds.append(time.perf_counter() - start)
    steady = float(np.mean(epoch_seconds[1:])) if epochs > 1 else epoch_seconds[0]
    return {
        "images_per_epoch": images,
        "first_epoch_s": round(epoch_seconds[0], 3),
        "steady_epoch_s": round(steady, 3),
        "images_per_s_first_epoch": round(images / epoch_seconds[0], 1),
        "images_per_s": round(images / steady, 1),
    }


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": available_cpus(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "cuda": torch.cuda.is_available(),
        # Other processes share these cores; a 1-minute load above usable_cpus means the numbers are low.
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def write_markdown(report: dict, path: Path) -> None:
    m, c = report["machine"], report["config"]
    lines = header(
        "Loader throughput: CelebA-like JPEGs, preprocessing cache vs on-the-fly decoding",
        report["standard_machine"],
        "python benchmarks/bench_loader.py",
    )
    lines += [
        f"{c['n_images']} synthetic 178x218 JPEGs (quality 95, mean {c['mean_jpeg_kb']} KB), train split "
        f"{c['train_images']} images, batch {c['batch_size']}, {c['epochs']} epochs per loader "
        f"(steady = mean of epochs 2+). Machine: {m['platform']}, {m['usable_cpus']} usable CPUs, "
        f"torch {m['torch']}, Pillow {m['pillow']}, 1-minute load average {m['load_average_1min']} at the start "
        f"and {m['load_average_1min_end']} at the end. Produced by `python benchmarks/bench_loader.py`.",
        "",
        "| size | loader | num_workers | images/s (steady) | images/s (first epoch) |",
        "|---:|---|---:|---:|---:|",
    ]
    for r in report["loader"]:
        lines.append(
            f"| {r['image_size']} | {r['mode']} | {r['num_workers']} | {r['images_per_s']:,.0f} "
            f"| {r['images_per_s_first_epoch']:,.0f} |"
        )
    lines += [
        "",
        "| size | one-time cache build (train + test splits) | images/s | cache size |",
        "|---:|---|---:|---:|",
    ]
    for b in report["cache_build"]:
        lines.append(
            f"| {b['image_size']} | {b['images']} images in {b['seconds']:.1f} s ({b['processes']} processes) "
            f"| {b['images_per_s']:,.0f} | {b['cache_mb']:.1f} MB |"
        )
    if m["load_average_1min"] > m["usable_cpus"]:
        lines += [
            "",
            "Other jobs were using these cores during the run (load average above the CPU count), so the "
            "decode-bound rows (on-the-fly, cache build) are lower bounds; the cached rows are memory copies "
            "and barely depend on it.",
        ]
    celeba = 162_770 + 19_962  # the official train and test splits
    lines += ["", "For the real CelebA (train + test = 182,732 images), at these build rates:", ""]
    for b in report["cache_build"]:
        gigabytes = celeba * 3 * b["image_size"] ** 2 / 1e9
        minutes = celeba / b["images_per_s"] / 60
        lines.append(f"- {b['image_size']} px: a {gigabytes:.1f} GB cache, built once in about {minutes:.0f} min")
    tables.write_markdown(path, lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-images", type=int, default=2000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    standard = standard_machine()  # the header's machine, load and speed probe: at the start, all threads
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the loader's own cost, not intra-op parallelism; restored below
    try:
        _run(args, standard)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, standard: dict) -> None:
    machine_info = machine()
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        make_synthetic_celeba(root, args.n_images)
        jpegs = list((root / "celeba" / "img_align_celeba").glob("*.jpg"))
        mean_kb = sum(p.stat().st_size for p in jpegs) / len(jpegs) / 1024
        print(f"made {len(jpegs)} JPEGs ({mean_kb:.1f} KB each) in {time.perf_counter() - start:.1f} s", flush=True)

        loader_rows, build_rows = [], []
        for size in args.sizes:
            common = {"data_dir": str(root), "image_size": size, "batch_size": args.batch_size}
            dm = CelebADataModule(**common, cache_dir=str(root / "cache"))
            start = time.perf_counter()
            dm.prepare_data()
            seconds = time.perf_counter() - start
            files = list((root / "cache").glob(f"celeba-*-{size}px-*.npy"))
            images = sum(len(np.load(f, mmap_mode="r")) for f in files)
            build_rows.append(
                {
                    "image_size": size,
                    "images": images,
                    "seconds": round(seconds, 2),
                    "images_per_s": round(images / seconds, 1),
                    "processes": available_cpus(),
                    "cache_mb": round(sum(f.stat().st_size for f in files) / 2**20, 1),
                }
            )
            print(build_rows[-1], flush=True)
            runs = [
                ("cache", True, 0),
                ("cache", True, 2),
                ("on-the-fly decode", False, 2),
                ("on-the-fly decode", False, 0),
            ]
            for mode, use_cache, workers in runs:
                dm = CelebADataModule(**common, num_workers=workers, cache=use_cache, cache_dir=str(root / "cache"))
                row = {"image_size": size, "mode": mode, "num_workers": workers, **time_loader(dm, args.epochs)}
                loader_rows.append(row)
                print(row, flush=True)

        report = {
            "benchmark": "loader",
            "machine": {**machine_info, "load_average_1min_end": round(os.getloadavg()[0], 2)},
            "standard_machine": standard,
            "config": {
                "n_images": args.n_images,
                "train_images": loader_rows[0]["images_per_epoch"],
                "mean_jpeg_kb": round(mean_kb, 1),
                "batch_size": args.batch_size,
                "epochs": args.epochs,
                "crop_size": 178,
                "resample": "PIL bicubic (antialiased)",
            },
            "cache_build": build_rows,
            "loader": loader_rows,
        }
    args.out.mkdir(parents=True, exist_ok=True)
    tables.write_json(args.out / "loader.json", report)
    write_markdown(report, args.out / "loader.md")
    print(f"wrote {args.out / 'loader.json'} and {args.out / 'loader.md'}")


if __name__ == "__main__":
    main()
