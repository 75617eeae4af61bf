"""``python detect.py``: score images as real or generated with a detector or a GAN's discriminator.

    python detect.py --ckpt_path <detector or GAN .ckpt> --images DIR --out scores.csv
    python detect.py --ckpt_path <...> --real DIR --fake DIR         # AUROC, AP and accuracy

A ``FakeDetector`` checkpoint (``configs/detect_mnist.yaml``) gives calibrated fake probabilities and the
threshold chosen on its validation split. A GAN checkpoint uses its discriminator: the probability that an
image is fake is ``1 - sigmoid(D(x))``, which is a probability only for cross-entropy objectives (for a
Wasserstein or hinge critic it is a monotone score: AUROC and AP are still right, the 0.5 threshold is not).
``--jpeg Q`` and ``--resize F`` degrade the images before scoring, to check robustness on your own data.
The CSV is written atomically and never overwrites a file.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

from gan_modules.checkpoints import load_model
from gan_modules.core import ImageModule
from gan_modules.detector import classification_metrics, jpeg, resize_down_up
from gan_modules.io import atomic_write, resolve_device


def image_shape(model: ImageModule) -> tuple[int, int]:
    """(num_channels, image_size) the model takes."""
    hp = model.hparams
    if "num_channels" not in hp or "image_size" not in hp:
        raise ValueError(f"{type(model).__name__} does not record its image size; it cannot score image folders")
    return int(hp["num_channels"]), int(hp["image_size"])


@torch.no_grad()
def fake_probabilities(model: ImageModule, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """uint8 images [N, C, H, W] -> probability [N] that each is generated: the model's ``fake_probability``."""
    return torch.cat([model.fake_probability(chunk).float().cpu() for chunk in images.split(batch_size)])


def default_threshold(model: ImageModule) -> float:
    """The model's own threshold: the detector's validation-chosen one, 0.5 for a GAN's discriminator."""
    return model.fake_threshold


def degrade(images: torch.Tensor, jpeg_quality: int | None, resize: float | None) -> torch.Tensor:
    if resize is not None:
        images = resize_down_up(images, resize)
    if jpeg_quality is not None:
        images = jpeg(images, jpeg_quality)
    return images


def _write_csv(rows: list[tuple], header: tuple, path: Path) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)

    atomic_write(path, write)


def main(argv: list[str] | None = None) -> int:
    from datamodules.realfake import load_image_folder

    parser = argparse.ArgumentParser(prog="detect.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", required=True, help="a FakeDetector or GAN checkpoint written by train.py")
    parser.add_argument("--images", default=None, help="folder of images to score (with --out)")
    parser.add_argument("--out", default=None, help="CSV of path, fake probability, verdict (a new file)")
    parser.add_argument("--real", default=None, help="folder of real images (labelled mode, with --fake)")
    parser.add_argument("--fake", default=None, help="folder of generated images (labelled mode, with --real)")
    parser.add_argument("--threshold", type=float, default=None, help="fake if probability >= this (default: "
                        "the detector's validation-chosen threshold, 0.5 for a discriminator)")  # fmt: skip
    parser.add_argument("--jpeg", type=int, default=None, help="JPEG-compress the images at this quality first")
    parser.add_argument("--resize", type=float, default=None, help="downsample by this factor and back first")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    args = parser.parse_args(argv)

    try:
        labelled = args.real is not None or args.fake is not None
        if labelled and (args.real is None or args.fake is None):
            raise ValueError("labelled mode needs both --real DIR and --fake DIR")
        if not labelled and (args.images is None or args.out is None):
            raise ValueError("pass --images DIR --out scores.csv to score a folder, or --real DIR --fake DIR")
        if labelled and args.images is not None:
            raise ValueError("pass either --images (score a folder) or --real/--fake (measure), not both")
        out = Path(args.out).expanduser() if args.out else None
        if out is not None and out.exists():
            raise ValueError(f"{out} already exists; choose a new --out path so nothing is overwritten")
        if args.jpeg is not None and not 1 <= args.jpeg <= 100:
            raise ValueError(f"--jpeg must be a quality in 1..100, got {args.jpeg}")
        if args.resize is not None and not 0 < args.resize < 1:
            raise ValueError(f"--resize must be a factor in (0, 1), got {args.resize}")
        if args.threshold is not None and not 0 <= args.threshold <= 1:
            raise ValueError(f"--threshold must be in [0, 1], got {args.threshold}")
        model = load_model(args.ckpt_path, map_location=resolve_device(args.device)).eval()
        channels, size = image_shape(model)
        folders = {"real": args.real, "fake": args.fake} if labelled else {"images": args.images}
        loaded = {kind: load_image_folder(folder, size, channels) for kind, folder in folders.items()}
        threshold = default_threshold(model) if args.threshold is None else args.threshold
        rows, probs, labels = [], [], []
        for kind, (images, names) in loaded.items():
            p = fake_probabilities(model, degrade(images, args.jpeg, args.resize), args.batch_size)
            probs.append(p)
            labels.append(torch.full((len(p),), 1.0 if kind == "fake" else 0.0))
            root = Path(folders[kind])
            rows += [(str(root / name), f"{float(q):.6f}", "fake" if q >= threshold else "real")
                     + ((kind,) if labelled else ()) for name, q in zip(names, p)]  # fmt: skip
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    source = model.fake_judge
    if out is not None:
        header = ("path", "fake_probability", "verdict") + (("label",) if labelled else ())
        _write_csv(rows, header, out)
        print(f"wrote {len(rows)} scores to {out}")
    if labelled:
        metrics = classification_metrics(torch.cat(probs), torch.cat(labels), threshold)
        counts = f"{len(loaded['real'][1])} real, {len(loaded['fake'][1])} fake"
        print(f"{source}, {counts}: AUROC {metrics['auroc']:.4f}, AP {metrics['ap']:.4f}, accuracy "
              f"{metrics['acc']:.4f} at threshold {threshold:.3f} ({metrics['acc_0.5']:.4f} at 0.5)")  # fmt: skip
    else:
        fakes = sum(1 for r in rows if r[2] == "fake")
        print(f"{source}: {fakes} of {len(rows)} images called fake at threshold {threshold:.3f}")
    return 0
