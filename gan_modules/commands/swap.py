"""``python swap.py --ckpt_path <run>/checkpoints/last.ckpt --input faces_a/ --out swapped/ [--grid grid.png]``.

Swaps every face image in ``--input`` to identity ``--to`` with a trained ``FaceSwap`` and writes one PNG per
input under the same name (``x.jpg`` -> ``x.png``; subfolders kept), and on request a grid of
input | reconstruction | swap triplets. Inputs are prepared as the training data was (RGB, centred square crop,
antialiased resize to the model's size), so they should be face crops aligned like the training crops.
Nothing is overwritten: ``--out`` must be new or empty, ``--grid`` new; the images are written into a temporary
folder renamed to ``--out`` at the end, so an interrupted run leaves no half-filled folder.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from datamodules.cache import IMAGE_EXTENSIONS, decode_folder
from gan_modules.checkpoints import load_model
from gan_modules.faceswap import FaceSwap
from gan_modules.io import atomic_folder, atomic_write, resolve_device

GRID_MAX = 64  # faces shown in --grid (the first ones by name); every face is still written to --out


def read_faces(folder: Path, image_size: int) -> tuple[list[str], torch.Tensor, list[tuple[str, str]]]:
    """(relative names, uint8 images [N, 3, S, S], [(skipped name, reason)]) for the images under ``folder``."""
    if not folder.is_dir():
        raise FileNotFoundError(f"--input {folder} is not a folder; pass a folder of face crops (.jpg, .png, ...)")
    names, images, skipped = decode_folder(folder, image_size)
    if not images:
        detail = f"; none of {len(skipped)} image files could be decoded" if skipped else ""
        raise FileNotFoundError(
            f"no readable face images ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {folder}{detail}; "
            "pass a folder of face crops"
        )
    return names, torch.stack([torch.from_numpy(image) for image in images]), skipped


def output_names(names: list[str]) -> list[str]:
    """Each input's relative name with a .png suffix; a clash (``x.jpg`` and ``x.png``) is a ValueError."""
    out = [str(Path(name).with_suffix(".png")) for name in names]
    seen: dict[str, str] = {}
    for name, target in zip(names, out):
        if target in seen:
            raise ValueError(
                f"{seen[target]} and {name} would both be written as {target}; rename one of them or move it away"
            )
        seen[target] = name
    return out


@torch.inference_mode()
def swap_faces(model: FaceSwap, images: torch.Tensor, to: str, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstructions by the source identity's decoder, swaps to ``to``), both [N, C, S, S] in [-1, 1] on the CPU."""
    source = "a" if to == "b" else "b"
    rebuilt, swapped = [], []
    for chunk in images.split(batch_size):
        rebuilt.append(model.reconstruct(chunk, source).cpu())
        swapped.append(model.swap(chunk, to=to).cpu())
    return torch.cat(rebuilt), torch.cat(swapped)


def comparison_grid(inputs: torch.Tensor, rebuilt: torch.Tensor, swapped: torch.Tensor) -> torch.Tensor:
    """A [3, H, W] grid in [0, 1] of input | reconstruction | swap triplets, about as wide as tall."""
    n = len(inputs)
    per_row = max(1, round(math.sqrt(n / 3)))  # 3 * per_row images wide, n / per_row tall
    triplets = torch.stack([inputs.float() / 127.5 - 1, rebuilt, swapped], dim=1).flatten(0, 1)
    return make_grid(triplets, nrow=3 * per_row, normalize=True, value_range=(-1, 1))


def _write_atomically(images: torch.Tensor, names: list[str], out_dir: Path) -> None:
    """Writes ``images`` ([-1, 1]) as PNGs under ``names`` into a temporary folder, then renames it ``out_dir``."""
    with atomic_folder(out_dir) as tmp:
        for image, name in zip(images, names):
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            save_image(image.add(1).div(2), path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="swap.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", required=True, help="FaceSwap checkpoint written by train.py")
    parser.add_argument("--input", required=True, help="folder of face crops of the other identity")
    parser.add_argument("--out", default=None, help="folder for one swapped PNG per input (must be new or empty)")
    parser.add_argument("--to", choices=["a", "b"], default="b", help="identity to swap to (default b: A's faces in)")
    parser.add_argument("--grid", default=None, help=f"also write input | reconstruction | swap triplets of the "
                        f"first {GRID_MAX} faces as one PNG here")  # fmt: skip
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    args = parser.parse_args(argv)

    try:
        if not (args.out or args.grid):
            raise ValueError("nothing to write: pass --out (one PNG per face) and/or --grid grid.png")
        if args.batch_size < 1:
            raise ValueError(f"--batch_size must be positive, got {args.batch_size}")
        out_dir = Path(args.out).expanduser() if args.out else None
        if out_dir is not None and out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
            raise ValueError(f"{out_dir} already exists and is not an empty folder; choose a new --out")
        grid_path = Path(args.grid).expanduser() if args.grid else None
        if grid_path is not None and grid_path.exists():
            raise ValueError(f"{grid_path} already exists; choose a new --grid path so nothing is overwritten")
        model = load_model(args.ckpt_path, map_location=resolve_device(args.device), base=FaceSwap).eval()
        names, images, skipped = read_faces(Path(args.input).expanduser(), model.hparams.image_size)
        targets = output_names(names)
        rebuilt, swapped = swap_faces(model, images, args.to, args.batch_size)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    if skipped:
        shown = "; ".join(f"{name} ({reason})" for name, reason in skipped[:5])
        print(f"warning: skipped {len(skipped)} unreadable image file(s): {shown}", file=sys.stderr)
    if out_dir is not None:
        _write_atomically(swapped, targets, out_dir)
        print(f"wrote {len(swapped)} faces swapped to identity {args.to.upper()} to {out_dir}")
    if grid_path is not None:
        n = min(GRID_MAX, len(images))
        grid = comparison_grid(images[:n], rebuilt[:n], swapped[:n])
        atomic_write(grid_path, lambda tmp: save_image(grid, tmp))
        print(f"wrote input | reconstruction | swap triplets of {n} faces to {grid_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
