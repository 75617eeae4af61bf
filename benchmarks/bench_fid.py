"""Images/s of FID feature extraction (TF-Inception pool3 at 299x299) in each layout, and how exact each is.

Variants, on MNIST-shaped uint8 batches (1x28x28, so the grey-to-RGB repeat and the TF1 bilinear resize
to 299 are included), ``inference_mode``, on the GPU when there is one:

- ``eager NCHW fp32``: the network as the project ran it before (the reference for exactness);
- ``channels_last fp32``: the same math in the channels_last layout;
- ``channels_last fp32 + compile``: ``torch.compile`` on top (what ``evaluate.py`` now runs);
- ``bf16`` and ``bf16 + compile``: bf16 autocast, the optional ``val_precision: bf16`` of in-training FID.

Each variant's features on a fixed batch are compared with the reference (max abs and relative error);
compile time (the first call) is reported apart from the timed calls. Writes ``fid_speed.json`` and
``fid_speed.md``.

    python benchmarks/bench_fid.py --images 300   # batches of 100, as evaluate.py runs
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import header, machine  # noqa: E402
from benchmarks.tables import write_json, write_markdown  # noqa: E402
from gan_modules.commands.evaluate import DEFAULT_BATCH_SIZE  # noqa: E402
from gan_modules.metrics.inception import InceptionV3Features  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# name -> InceptionV3Features arguments
VARIANTS = {
    "eager NCHW fp32 (before)": dict(precision="32", channels_last=False, compile=False),
    "channels_last fp32": dict(precision="32", channels_last=True, compile=False),
    "channels_last fp32 + compile (evaluate.py)": dict(precision="32", channels_last=True, compile=True),
    "bf16 channels_last": dict(precision="bf16", channels_last=True, compile=False),
    "bf16 channels_last + compile": dict(precision="bf16", channels_last=True, compile=True),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def measure(name: str, kwargs: dict, images: int, batch_size: int, device: torch.device, probe: torch.Tensor) -> dict:
    network = InceptionV3Features(batch_size=batch_size, **kwargs).to(device)
    batch = torch.randint(
        0, 256, (batch_size, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    batch = batch.to(device)
    start = time.perf_counter()
    network(batch)  # the first call compiles (when asked) and warms up the allocator and caches
    sync(device)
    first_call = time.perf_counter() - start
    start, done = time.perf_counter(), 0
    while done < images:
        network(batch)
        done += batch_size
    sync(device)
    seconds = time.perf_counter() - start
    return {
        "variant": name,
        **kwargs,
        "compiled": network.is_compiled,
        "first_call_s": round(first_call, 1),
        "images": done,
        "seconds": round(seconds, 2),
        "images_per_second": round(done / seconds, 2),
        "features": network(probe.to(device)).float().cpu(),
    }


def run(
    images: int, device: str, command: str, variants: list[str] | None = None, batch_size: int = DEFAULT_BATCH_SIZE
) -> dict:
    dev = torch.device(device)
    probe = torch.randint(
        0, 256, (batch_size, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(2)
    )
    rows = []
    for name in variants or list(VARIANTS):
        row = measure(name, VARIANTS[name], images, batch_size, dev, probe)
        print(f"{name}: {row['images_per_second']} img/s (first call {row['first_call_s']} s)", flush=True)
        rows.append(row)
    reference = rows[0]["features"]
    for row in rows:
        features = row.pop("features")
        row["max_abs_error"] = float((features - reference).abs().max())
        row["relative_error"] = float((features - reference).norm() / reference.norm())
        row["speedup"] = row["images_per_second"] / rows[0]["images_per_second"]
    results = {"machine": machine(), "device": str(dev), "batch_size": batch_size, "rows": rows}
    write(results, command)
    return results


def write(results: dict, command: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "fid_speed.json", results)
    lines = header("FID feature extraction speed (TF-Inception pool3, 299x299)", results["machine"], command)
    lines += [
        f"MNIST-shaped uint8 batches of {results['batch_size']} on {results['device']}, resize and grey-to-RGB "
        "included. Errors are against the eager NCHW fp32 features of the same images (pool3 values are about "
        "0-10); *first call* includes compilation.",
        "",
        "| variant | images/s | speed-up | first call (s) | compiled | max abs error | relative error |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['variant']} | {r['images_per_second']:.1f} | {r['speedup']:.2f}x | {r['first_call_s']} | "
            f"{'yes' if r['compiled'] else 'no'} | {r['max_abs_error']:.1e} | {r['relative_error']:.1e} |"
        )
    write_markdown(RESULTS / "fid_speed.md", lines)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300, help="timed images per variant")
    parser.add_argument(
        "--batch_size", type=int, default=DEFAULT_BATCH_SIZE, help="images per call (default: evaluate.py's)"
    )
    parser.add_argument("--device", default=default_device())
    args = parser.parse_args(argv)
    run(args.images, args.device, "python benchmarks/bench_fid.py", batch_size=args.batch_size)


if __name__ == "__main__":
    main()
