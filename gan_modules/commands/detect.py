"""``python detect.py``: score images as real or generated with a detector or a GAN's discriminator.

    python detect.py --ckpt_path <detector or GAN .ckpt> --images DIR --out scores.csv
    python detect.py --ckpt_path <...> --real DIR --fake DIR         # AUROC, AP and accuracy

A ``FakeDetector`` checkpoint (``configs/detect_mnist.yaml``) gives fake probabilities and two thresholds: the
real-only one (the score that ``model.target_fpr`` of its validation reals exceed, with ``model.val_degrade``
their degraded copies pooled in; the default verdict, since it needs no fakes of the generator met) and the one
chosen on its validation split (``--threshold val``).
``--calibrate REAL_DIR --fpr 0.05`` sets the real-only threshold from your own real images instead, which is
what transfers to images that came through another pipeline than the training reals.

A GAN checkpoint uses its discriminator: the probability that an image is fake is ``1 - sigmoid(D(x))``, which
is a probability only for cross-entropy objectives (for a Wasserstein or hinge critic it is a monotone score:
AUROC and AP are still right, the 0.5 threshold is not).

``--resize F`` (resized by F with ``--resize_filter`` and back) then ``--jpeg Q`` degrade the images before
scoring, to check robustness on your own data. ``--native`` scores every image at its own size (no resize to the
model's; crops are fine, resizing destroys the evidence): for fully convolutional detectors (every
``FakeDetector`` architecture). The CSV is written atomically and never overwrites a file.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

from gan_modules.checkpoints import load_model
from gan_modules.core import ImageModule
from gan_modules.detector import (
    RESIZE_FILTERS,
    FakeDetector,
    classification_metrics,
    jpeg,
    real_only_threshold,
    resample,
)
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
    """The model's own threshold: the detector's real-only one (validation-chosen in older checkpoints), 0.5 for a
    GAN's discriminator."""
    return model.fake_threshold


def model_threshold(model: ImageModule, which: str) -> tuple[float, str]:
    """(cut, description) for ``--threshold``: "real", "val" or a number in [0, 1]; None: the model's default."""
    named = getattr(model, "thresholds", {})  # a GAN's discriminator has only its default, 0.5
    if which in named:
        return named[which], f"{which} threshold"
    if which in ("real", "val"):
        raise ValueError(f"--threshold {which}: this {model.fake_judge} has no {which} threshold; it has "
                         f"{sorted(named)}, or pass a number")  # fmt: skip
    try:
        cut = float(which)
    except ValueError:
        raise ValueError(f"--threshold must be 'real', 'val' or a probability in [0, 1], got {which!r}") from None
    if not 0 <= cut <= 1:
        raise ValueError(f"--threshold must be in [0, 1], got {cut}")
    return cut, "given threshold"


def degrade(images: torch.Tensor, jpeg_quality: int | None, resize: float | None, method: str = "area") -> torch.Tensor:
    """Resize round trip (``resample``) then JPEG, each when given; uint8 in, uint8 out."""
    if resize is not None:
        images = resample(images, resize, method)
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


def load_native(folder: str | Path, num_channels: int) -> tuple[list[torch.Tensor], list[str]]:
    """Every image under ``folder`` at its own size -> (uint8 [C, H, W] each, relative names); undecodable files
    are skipped; a folder without a decodable image is an error."""
    import numpy as np
    from PIL import Image

    from datamodules.cache import scan_images, to_rgb

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist; pass a folder of .png/.jpg images")
    images, names = [], []
    for file in scan_images(folder)[0]:
        try:
            with Image.open(file.path) as img:
                rgb = to_rgb(img)
                array = np.asarray(rgb if num_channels == 3 else rgb.convert("L"), dtype=np.uint8)
        except (OSError, ValueError):
            continue
        images.append(torch.from_numpy((array[None] if num_channels == 1 else array.transpose(2, 0, 1)).copy()))
        names.append(file.name)
    if not images:
        raise ValueError(f"no image in {folder} could be decoded; it needs .png/.jpg files")
    return images, names


MIN_NATIVE_SIZE = 8  # below this a detector's receptive field sees mostly padding


def score(model: ImageModule, images: torch.Tensor | list[torch.Tensor], args: argparse.Namespace) -> torch.Tensor:
    """Fake probabilities of a batch (fixed size) or a list of images of any sizes (``--native``), after the
    requested degradation; images of one size are scored together."""
    if isinstance(images, torch.Tensor):
        return fake_probabilities(model, degrade(images, args.jpeg, args.resize, args.resize_filter), args.batch_size)
    probs = torch.empty(len(images))
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        by_shape.setdefault(tuple(image.shape), []).append(i)
    for shape, index in by_shape.items():
        if min(shape[1:]) < MIN_NATIVE_SIZE:
            raise ValueError(f"an image of {shape[2]}x{shape[1]} px is too small to score natively (at least "
                             f"{MIN_NATIVE_SIZE} px a side); drop --native to resize it")  # fmt: skip
        batch = torch.stack([images[i] for i in index])
        probs[index] = fake_probabilities(model, degrade(batch, args.jpeg, args.resize, args.resize_filter),
                                          args.batch_size)  # fmt: skip
    return probs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="detect.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", required=True, help="a FakeDetector or GAN checkpoint written by train.py")
    parser.add_argument("--images", default=None, help="folder of images to score (with --out)")
    parser.add_argument("--out", default=None, help="CSV of path, fake probability, verdict (a new file)")
    parser.add_argument("--real", default=None, help="folder of real images (labelled mode, with --fake)")
    parser.add_argument("--fake", default=None, help="folder of generated images (labelled mode, with --real)")
    parser.add_argument("--threshold", default=None, help="fake if probability >= this: 'real' (the detector's "
                        "real-only threshold, the default), 'val' (chosen on its validation split) or a number; a "
                        "discriminator's is 0.5")  # fmt: skip
    parser.add_argument("--calibrate", default=None, help="folder of real images of your own: the threshold becomes "
                        "the score that --fpr of them exceed")  # fmt: skip
    parser.add_argument("--fpr", type=float, default=0.05, help="false-positive rate for --calibrate (default 0.05)")
    parser.add_argument("--jpeg", type=int, default=None, help="JPEG-compress the images at this quality first")
    parser.add_argument("--resize", type=float, default=None, help="resize by this factor (0.25-4) and back first")
    parser.add_argument("--resize_filter", default="area", choices=RESIZE_FILTERS, help="filter of --resize's "
                        "first resampling (area: antialiased bilinear)")  # fmt: skip
    parser.add_argument("--native", action="store_true", help="score each image at its own size instead of "
                        "resizing it to the model's")  # fmt: skip
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> bool:
    """Refuses contradictory or out-of-range flags (ValueError); returns whether this is labelled mode."""
    labelled = args.real is not None or args.fake is not None
    if labelled and (args.real is None or args.fake is None):
        raise ValueError("labelled mode needs both --real DIR and --fake DIR")
    if not labelled and (args.images is None or args.out is None):
        raise ValueError("pass --images DIR --out scores.csv to score a folder, or --real DIR --fake DIR")
    if labelled and args.images is not None:
        raise ValueError("pass either --images (score a folder) or --real/--fake (measure), not both")
    if args.out is not None and Path(args.out).expanduser().exists():
        raise ValueError(f"{args.out} already exists; choose a new --out path so nothing is overwritten")
    if args.jpeg is not None and not 1 <= args.jpeg <= 100:
        raise ValueError(f"--jpeg must be a quality in 1..100, got {args.jpeg}")
    if args.resize is not None and not (0.25 <= args.resize <= 4 and args.resize != 1):
        raise ValueError(f"--resize must be a factor in [0.25, 4] other than 1, got {args.resize}")
    if args.calibrate is not None and args.threshold is not None:
        raise ValueError("--calibrate sets the threshold from your real images; do not pass --threshold with it")
    if not 0 < args.fpr < 1:
        raise ValueError(f"--fpr must be in (0, 1), got {args.fpr}")
    return labelled


def main(argv: list[str] | None = None) -> int:
    from datamodules.realfake import load_image_folder

    args = parse_args(argv)
    try:
        labelled = check_args(args)
        model = load_model(args.ckpt_path, map_location=resolve_device(args.device)).eval()
        channels, size = image_shape(model)
        if args.native and not isinstance(model, FakeDetector):
            raise ValueError("--native needs a fully convolutional FakeDetector; a GAN's discriminator takes "
                             f"{size} px images only")  # fmt: skip
        load = (lambda folder: load_native(folder, channels)) if args.native else (
            lambda folder: load_image_folder(folder, size, channels))  # fmt: skip
        if args.calibrate is not None:
            real_probs = score(model, load(args.calibrate)[0], args)
            threshold = real_only_threshold(real_probs, args.fpr)
            how = f"threshold for {args.fpr:.1%} false positives on {len(real_probs)} images of {args.calibrate}"
        else:
            threshold, how = (default_threshold(model), "default threshold") if args.threshold is None else (
                model_threshold(model, args.threshold))  # fmt: skip
        folders = {"real": args.real, "fake": args.fake} if labelled else {"images": args.images}
        loaded = {kind: load(folder) for kind, folder in folders.items()}
        rows, probs, labels = [], [], []
        for kind, (images, names) in loaded.items():
            p = score(model, images, args)
            probs.append(p)
            labels.append(torch.full((len(p),), 1.0 if kind == "fake" else 0.0))
            root = Path(folders[kind])
            rows += [(str(root / name), f"{float(q):.6f}", "fake" if q >= threshold else "real")
                     + ((kind,) if labelled else ()) for name, q in zip(names, p)]  # fmt: skip
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    source = model.fake_judge
    if args.out is not None:
        out = Path(args.out).expanduser()
        header = ("path", "fake_probability", "verdict") + (("label",) if labelled else ())
        _write_csv(rows, header, out)
        print(f"wrote {len(rows)} scores to {out}")
    if labelled:
        m = classification_metrics(torch.cat(probs), torch.cat(labels), threshold)
        counts = f"{len(loaded['real'][1])} real, {len(loaded['fake'][1])} fake"
        print(f"{source}, {counts}: AUROC {m['auroc']:.4f}, AP {m['ap']:.4f}; at the {how} {threshold:.3f}: "
              f"accuracy {m['acc']:.4f}, fakes caught (TPR) {m['tpr']:.4f}, reals called fake (FPR) {m['fpr']:.4f}; "
              f"accuracy at 0.5 {m['acc_0.5']:.4f}")  # fmt: skip
    else:
        fakes = sum(1 for r in rows if r[2] == "fake")
        print(f"{source}: {fakes} of {len(rows)} images called fake at the {how} {threshold:.3f}")
    return 0
