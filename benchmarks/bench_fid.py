"""Images/s of FID feature extraction (TF-Inception pool3 at 299x299) on this machine.

Times ``InceptionV3Features`` under ``inference_mode`` on MNIST-shaped uint8 batches (1x28x28, so the
grey-to-RGB expand and the TF1 bilinear resize to 299 are included), after one warm-up batch, on the GPU
when there is one. Merges the result into ``fid.json`` (``feature_extraction`` key) in ``--out``, next to
the MNIST FIDs recorded there by hand from ``evaluate.py`` runs.

    python benchmarks/bench_fid.py --images 200 --batch_size 50
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_modules.metrics import feature_network  # noqa: E402


def measure(images: int, batch_size: int, device: torch.device) -> dict:
    network = feature_network().to(device)
    batch = torch.randint(0, 256, (batch_size, 1, 28, 28), dtype=torch.uint8)
    with torch.inference_mode():
        network(batch.to(device))  # warm-up: allocator, kernels, weights in cache
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        done = 0
        while done < images:
            network(batch.to(device))
            done += batch_size
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {
        "images": done,
        "batch_size": batch_size,
        "seconds": round(seconds, 2),
        "images_per_second": round(done / seconds, 2),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=50)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    result = measure(args.images, args.batch_size, torch.device(args.device))
    print(json.dumps(result, indent=2))
    path = args.out / "fid.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.setdefault("feature_extraction", {})[args.device] = result
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
