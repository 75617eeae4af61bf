"""``python generate.py --ckpt_path <run>/checkpoints/last.ckpt --num_images 64 --out_dir samples/``.

Writes N images as PNG files and/or one grid, from the EMA generator when the checkpoint has one, and on
request a latent interpolation grid (``--interpolate grid.png``: each row walks by slerp from one latent to
another) and a GIF walking through latent space (``--walk walk.gif``).
Existing files are never overwritten: the output folder must be new or empty, every file new.
``--pretrained NAME`` samples from the model zoo's entry NAME (``gan_modules.zoo``) instead of a checkpoint;
``--pretrained list`` prints the zoo.

``--truncation PSI`` redraws every latent coordinate beyond PSI; ``--sampler drs`` (discriminator rejection
sampling) or ``--sampler mh`` (MH-GAN) picks the images with the checkpoint's discriminator, calibrated on real
images it never trained on (the run's held-out split; ``gan_modules.sampling``). They apply to ``--out_dir`` and
``--grid``; every PNG written says in its text chunks which sampler and psi made it, and the last line reports the
acceptance rate.

A class-conditional model (``model.num_classes`` > 0) draws image i of class ``classes[i % len(classes)]``:
``--classes 0,3,7`` (default: every class). File names carry the class (``000012_class7.png``, and a ``Class`` text
chunk), the grid shows one class per row (padded with black tiles where a class has fewer images), each
``--interpolate`` row keeps one class (the rows cycle through them) and ``--walk`` the first one. ``--truncation``
works; DRS and MH-GAN do not (they score images alone, and a projection D judges (image, class) pairs).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from torchvision.utils import make_grid, save_image

from gan_modules import zoo
from gan_modules.base import GANModule
from gan_modules.commands.common import (
    ClassSampler,
    add_sampler_arguments,
    check_sampler,
    datamodule_from_run,
    generate_in_batches,
    held_out_split,
    image_sampler,
    load_gan,
    parse_classes,
    rows_by_class,
)
from gan_modules.io import atomic_folder, atomic_write, grid_rows, resolve_device
from gan_modules.sampling import NEEDS_DISCRIMINATOR, Sampler, describe_text
from gan_modules.visualize import interpolation_latents, save_gif, walk_frames


@torch.inference_mode()
def generate_images(
    model: GANModule, num_images: int, batch_size: int, seed: int, sampler: Sampler | ClassSampler | None = None
) -> torch.Tensor:
    """num_images images [N, C, H, W] in [-1, 1] from seeded latents (same seed, same images), drawn by
    ``sampler`` (default: plain, untruncated)."""
    sampler = sampler if sampler is not None else Sampler(model)
    return torch.cat([images.cpu() for images in sampler.batches(num_images, batch_size, seed)])


def save_png(tensor: torch.Tensor, path: Path, text: dict[str, str]) -> None:
    """``save_image``'s PNG (a batch as a grid) with ``text`` as PNG text chunks (``Image.open(path).text``)."""
    buffer = io.BytesIO()
    save_image(tensor, buffer, format="PNG")  # save_image passes no PNG options on, so the chunks are added here
    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    Image.open(buffer).save(path, format="PNG", pnginfo=info)


def _atomic_save(tensor: torch.Tensor, path: Path, text: dict[str, str]) -> None:
    atomic_write(path, lambda tmp: save_png(tensor, tmp, text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="generate.py", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt_path", help="checkpoint written by train.py")
    source.add_argument("--pretrained", metavar="NAME", help="an entry of the model zoo; 'list' prints the zoo")
    parser.add_argument("--num_images", type=int, default=64, help="how many images to generate")
    parser.add_argument("--out_dir", default=None, help="folder for one PNG per image (must be new or empty)")
    parser.add_argument("--grid", default=None, help="also (or only) write all images as one grid PNG here")
    parser.add_argument("--interpolate", default=None, help="write a latent interpolation grid PNG here")
    parser.add_argument("--pairs", type=int, default=8, help="interpolation rows (pairs of latents)")
    parser.add_argument("--steps", type=int, default=10, help="images per interpolation row, ends included")
    parser.add_argument("--walk", default=None, help="write a GIF walking through latent space here")
    parser.add_argument("--walk_keys", type=int, default=8, help="latents the looping walk passes through")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--classes", default=None, help="class-conditional models: classes to draw, e.g. 0,3,7 (all)")
    add_sampler_arguments(parser)
    parser.add_argument("--data_dir", default=None, help="drs/mh: the held-out images' folder (default: config.yaml's)")
    args = parser.parse_args(argv)
    if args.pretrained == "list":
        print(zoo.format_listing(zoo.list_entries(), zoo.zoo_root()))
        return 0

    try:
        if not (args.out_dir or args.grid or args.interpolate or args.walk):
            raise ValueError(
                "nothing to write: pass --out_dir (one PNG per image), --grid grid.png, --interpolate interp.png "
                "and/or --walk walk.gif"
            )
        if args.num_images < 1 or args.batch_size < 1:
            raise ValueError("--num_images and --batch_size must be positive")
        check_sampler(args.sampler, args.truncation, args.drs_percentile, args.mh_k, args.pretrained, args.jbt_keep)
        if (args.sampler != "plain" or args.truncation != float("inf")) and not (args.out_dir or args.grid):
            raise ValueError("--sampler and --truncation apply to --out_dir and --grid images; pass one of them")
        if args.walk and args.walk_keys < 2:
            raise ValueError(f"--walk_keys must be at least 2, got {args.walk_keys}")
        out_dir = Path(args.out_dir).expanduser() if args.out_dir else None
        if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
            raise ValueError(f"--out_dir {out_dir} is a file, not a folder; choose a new --out_dir")
        if out_dir is not None and out_dir.exists() and any(out_dir.iterdir()):
            raise ValueError(f"{out_dir} already has files; choose a new --out_dir so nothing is overwritten")
        files = {
            flag: Path(value).expanduser()
            for flag, value in (("--grid", args.grid), ("--interpolate", args.interpolate), ("--walk", args.walk))
            if value
        }
        resolved = {flag: path.resolve() for flag, path in files.items()}
        for flag, path in files.items():
            if path.exists():
                raise ValueError(f"{path} already exists; choose a new {flag} path so nothing is overwritten")
            if out_dir is not None and out_dir.resolve() in resolved[flag].parents:
                raise ValueError(f"{flag} {path} is inside --out_dir {out_dir}; write it elsewhere")
        same = [flag for flag, where in resolved.items() if list(resolved.values()).count(where) > 1]
        if same:
            raise ValueError(f"{' and '.join(same)} name the same file; give each its own path")
        grid_path = files.get("--grid")
        if args.interpolate and (args.pairs < 1 or args.steps < 2):
            raise ValueError(f"--pairs must be >= 1 and --steps >= 2, got {args.pairs} and {args.steps}")

        device = resolve_device(args.device)
        if args.pretrained:
            model = zoo.load_entry(args.pretrained, map_location=device)
        else:
            model = load_gan(args.ckpt_path, map_location=device).eval()
        classes = parse_classes(args.classes, model)  # None: an unconditional model
        held_out = None
        if args.sampler in NEEDS_DISCRIMINATOR and classes is None:
            held_out = held_out_split(datamodule_from_run(Path(args.ckpt_path).expanduser(), args.data_dir))
        sampler = image_sampler(
            model, args.sampler, args.truncation, classes, held_out=held_out, drs_percentile=args.drs_percentile,
            mh_k=args.mh_k, jbt_keep=args.jbt_keep,
        )  # fmt: skip
        images = None
        if out_dir or grid_path:
            images = generate_images(model, args.num_images, args.batch_size, args.seed, sampler)
        if args.interpolate:
            z_interp = interpolation_latents(model.latent_dim, args.pairs, args.steps, seed=args.seed)
            # A class-conditional model keeps each row's class: the rows cycle through the classes.
            rows = (
                ClassSampler(model, classes).labels_for(args.pairs).repeat_interleave(args.steps) if classes else None
            )
            interp = generate_in_batches(model, z_interp, rows, args.batch_size)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    source = "EMA generator" if model.generator_ema is not None else "generator"
    origin = f"zoo entry {args.pretrained}" if args.pretrained else f"checkpoint {args.ckpt_path}"
    labels = {"Software": "gan_modules generate.py", "Source": f"the {source} of {type(model).__name__}, {origin}"}
    if args.interpolate:
        path = files["--interpolate"]
        latents = "slerp between N(0, I) latents: no sampler, no truncation"
        _atomic_save(make_grid(interp.add(1).div(2), nrow=args.steps), path, {**labels, "Latents": latents})
        print(f"wrote a {args.pairs} x {args.steps} slerp interpolation grid to {path}")
    if args.walk:
        path = files["--walk"]
        with torch.inference_mode():
            label = classes[0] if classes else None
            frames = walk_frames(model, args.walk_keys, steps=12, seed=args.seed, label=label).add(1).div(2)
        save_gif(frames, path)
        print(f"wrote a {len(frames)}-frame latent walk through {args.walk_keys} latents to {path}")
    if images is None:
        return 0
    unit = images.add(1).div(2)  # [-1, 1] -> [0, 1]; save_image rounds to uint8 like any PNG writer
    drawn = describe_text(sampler.describe())
    labels |= {"Sampler": drawn, "Seed": str(args.seed)}
    classes_of = sampler.labels.tolist() if classes else None  # each image's class
    if out_dir is not None:
        width = len(str(len(unit) - 1))
        with atomic_folder(out_dir) as tmp:  # all images or none: an interrupted run leaves no half-filled folder
            for i, image in enumerate(unit):
                name, text = f"{i:0{width}d}", labels
                if classes_of is not None:  # the class in the file name and in a text chunk
                    name, text = f"{name}_class{classes_of[i]}", {**labels, "Class": str(classes_of[i])}
                save_png(image, tmp / f"{name}.png", text)
        print(f"wrote {len(unit)} images to {out_dir}")
    if grid_path is not None:
        tiles, nrow = (
            (unit, grid_rows(len(unit))) if classes_of is None else rows_by_class(unit, sampler.labels, classes)
        )
        _atomic_save(make_grid(tiles, nrow=nrow), grid_path, labels)
        per_class = "" if classes_of is None else f", one class per row ({', '.join(map(str, dict.fromkeys(classes)))})"
        print(f"wrote a {len(unit)}-image grid to {grid_path}{per_class}")
    entry = f" (zoo entry {args.pretrained})" if args.pretrained else ""
    print(f"sampled from the {source} of {type(model).__name__}{entry}, seed {args.seed}; sampler {drawn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
