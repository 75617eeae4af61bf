"""Image folders -> one uint8 ``.npy`` file per split, decoded, cropped and resized once.

Two CPU cores decode a few hundred 178x218 JPEGs a second, far fewer than a GPU trains on, so the
first run decodes the whole split once (a process pool over every core) into ``[N, 3, S, S]`` uint8
and every later epoch and run memory-maps that file (``np.load(mmap_mode="r")``).

The cache file name carries two hashes: one of what the pixels depend on (source folder, split,
resolution, crop, resampling filter, this file's ``CACHE_VERSION``) and one of the split's file list
(relative names, sizes, modification times). Any change picks a new name and rebuilds; a rebuild for a
changed file list deletes the stale file with the same settings. The file is written under a temporary
name and renamed (``gan_modules.io.atomic_file``) only when complete, so a killed run never leaves a half-written
file under a name that a later run would trust.

Bad files never stop a build: files whose extension is not an image's (``notes.txt``, ``Thumbs.db``)
are ignored, files that do not decode (zero bytes, corrupt, truncated) are skipped, and both are
reported in one warning naming the first few. Odd modes are converted to RGB (see ``to_rgb``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from gan_modules.io import atomic_file, atomic_text

log = logging.getLogger(__name__)

# Bump when decoding changes the pixels it produces, so that old caches are not reused.
CACHE_VERSION = 1
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
# Bicubic with PIL's antialiasing (the filter widens with the downscale factor), as StyleGAN's
# dataset_tool and torchvision's antialiased Resize do; bilinear is visibly softer at 178 -> 64.
RESAMPLE = Image.Resampling.BICUBIC
# Below this many files a process pool costs more to start than it saves.
POOL_MIN_FILES = 256
# A leftover temporary file untouched for this long belongs to a run that was killed.
STALE_TMP_SECONDS = 3600.0
SHOW_NAMES = 5


@dataclass(frozen=True)
class SourceFile:
    """One image file: its path, its name relative to the dataset root, and what identifies its content."""

    path: Path
    name: str
    size: int
    mtime_ns: int


def scan_images(folder: Path, max_depth: int | None = None) -> tuple[list[SourceFile], list[str]]:
    """Image files under ``folder`` sorted by relative name, and the names of the non-image files seen.

    ``max_depth`` 0 lists ``folder`` itself only, 1 also its subfolders (``*/*.png``), None everything.
    Hidden files and folders (``.cache``, ``.DS_Store``) are neither listed nor reported.
    """
    images: list[SourceFile] = []
    ignored: list[str] = []

    def walk(directory: Path, prefix: str, depth: int) -> None:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                name = prefix + entry.name
                if entry.is_dir():
                    if max_depth is None or depth < max_depth:
                        walk(Path(entry.path), name + "/", depth + 1)
                elif Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
                    stat = entry.stat()
                    images.append(SourceFile(Path(entry.path), name, stat.st_size, stat.st_mtime_ns))
                else:
                    ignored.append(name)

    walk(folder, "", 0)
    images.sort(key=lambda f: f.name)
    return images, sorted(ignored)


def has_images(folder: Path) -> bool:
    """Whether ``folder`` directly holds at least one file with an image extension."""
    if not folder.is_dir():
        return False
    with os.scandir(folder) as entries:
        return any(
            e.is_file() and not e.name.startswith(".") and Path(e.name).suffix.lower() in IMAGE_EXTENSIONS
            for e in entries
        )


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB.

    Transparency (RGBA, LA, palette images with a transparent colour) is composited on white: anime
    PNGs with transparent backgrounds are drawn on white, and the colour stored under transparent
    pixels is arbitrary (often black), so dropping alpha would add artefacts. 16-bit images (I;16,
    and I with values above 255) are scaled to 8 bits; PIL's own conversion would saturate them.
    """
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        values = np.asarray(img).astype(np.float64)
        if img.mode.startswith("I;16") or values.max(initial=0) > 255:
            values = values / 257.0  # 65535 -> 255
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def center_crop_box(width: int, height: int, crop_size: int | None) -> tuple[int, int, int, int]:
    """The centred square ``crop_size`` box (None or larger than the image: the shorter side)."""
    side = min(width, height) if crop_size is None else min(crop_size, width, height)
    left = (width - side) // 2
    top = (height - side) // 2
    return left, top, left + side, top + side


def decode_image(path: Path, image_size: int, crop_size: int | None, num_channels: int = 3) -> np.ndarray:
    """Image file -> uint8 [C, image_size, image_size]: RGB (C = 3) or its luma (C = 1, ITU-R 601, exact for
    gray images), centred square crop, antialiased resize.

    Raises whatever PIL raises for a file it cannot decode (truncated files included: PIL's
    ``LOAD_TRUNCATED_IMAGES`` is a process-wide switch and stays off).
    """
    if path.stat().st_size == 0:
        raise ValueError("empty file")
    with Image.open(path) as img:
        if num_channels not in (1, 3):
            raise ValueError(f"images are decoded to 1 or 3 channels, not {num_channels}")
        rgb = to_rgb(img)
        image = rgb if num_channels == 3 else rgb.convert("L")
        # Crop first, then resize: resize(box=...) lets the filter read pixels outside the box.
        square = image.crop(center_crop_box(*image.size, crop_size))
        resized = square.resize((image_size, image_size), resample=RESAMPLE)
        array = np.asarray(resized, dtype=np.uint8)
        return (array[None] if num_channels == 1 else array.transpose(2, 0, 1)).copy()


def try_decode(
    path: Path, image_size: int, crop_size: int | None, num_channels: int = 3
) -> tuple[np.ndarray | None, str]:
    """``decode_image`` that returns ``(None, reason)`` instead of raising."""
    try:
        return decode_image(path, image_size, crop_size, num_channels), ""
    except Exception as err:  # noqa: BLE001 - PIL's plugins raise a zoo of types; any failure means skip
        return None, f"{type(err).__name__}: {err}"


def decode_folder(
    folder: Path, image_size: int, num_channels: int = 3, crop_size: int | None = None
) -> tuple[list[str], list[np.ndarray], list[tuple[str, str]]]:
    """(relative names, uint8 [C, S, S] images, [(skipped name, reason)]) of the image files under ``folder``,
    in memory and uncached (small folders: a command's inputs, a detector's fakes)."""
    files, _ = scan_images(folder)
    names, images, skipped = [], [], []
    for file in files:
        image, reason = try_decode(file.path, image_size, crop_size, num_channels)
        if image is None:
            skipped.append((file.name, reason))
        else:
            names.append(file.name)
            images.append(image)
    return names, images, skipped


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _decoded(files: Sequence[SourceFile], image_size: int, crop_size: int | None, processes: int) -> Iterable:
    decode = partial(try_decode, image_size=image_size, crop_size=crop_size)
    paths = [f.path for f in files]
    if processes <= 1 or len(files) < POOL_MIN_FILES:
        yield from map(decode, paths)
        return
    chunksize = max(1, min(64, len(paths) // (processes * 8)))
    with multiprocessing.Pool(processes) as pool:
        yield from pool.imap(decode, paths, chunksize=chunksize)


def _shrink_npy(path: Path, count: int) -> None:
    """Rewrites the first axis of an ``.npy`` file's header to ``count`` and cuts the file to match.

    Used when some files failed to decode: the array was allocated for every file and the good ones
    were written first. The new shape is never longer than the old, so the header keeps its length.
    """
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
        data_offset = f.tell()
        new_shape = (count, *shape[1:])
        header = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": new_shape})
        prefix = 12 if version >= (2, 0) else 10  # magic (6) + version (2) + header length (2 or 4)
        header_len = data_offset - prefix
        f.seek(prefix)
        f.write((header.ljust(header_len - 1) + "\n").encode("latin1"))
        f.truncate(data_offset + count * int(np.prod(shape[1:])) * dtype.itemsize)


def _remove_stale_tmp(cache_dir: Path, final_name: str) -> None:
    now = time.time()
    for leftover in cache_dir.glob(f".{final_name}.*.tmp*"):
        try:
            if now - leftover.stat().st_mtime > STALE_TMP_SECONDS:
                leftover.unlink()
                log.info("removed %s, left by a run that was killed while building the cache", leftover)
        except FileNotFoundError:
            pass


def write_cache(
    files: Sequence[SourceFile],
    path: Path,
    image_size: int,
    crop_size: int | None,
    processes: int | None = None,
) -> tuple[int, list[tuple[str, str]]]:
    """Decodes ``files`` into ``path`` (an .npy of uint8 [N, 3, S, S]) atomically.

    Returns (images written, [(skipped file name, reason)]). Writes nothing when no file decodes.
    """
    processes = available_cpus() if processes is None else processes
    item_bytes = 3 * image_size * image_size
    free = shutil.disk_usage(path.parent).free
    if free < len(files) * item_bytes:
        raise OSError(
            f"the cache for {len(files)} images at {image_size}x{image_size} needs "
            f"{len(files) * item_bytes / 1e9:.1f} GB but {path.parent} has {free / 1e9:.1f} GB free; "
            "point --data.cache_dir at a larger disk or pass --data.cache false"
        )
    _remove_stale_tmp(path.parent, path.name)
    skipped: list[tuple[str, str]] = []
    count = 0
    with atomic_file(path) as tmp:  # renamed to path only when complete; removed on any error
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), 3, image_size, image_size))
        start = last_report = time.monotonic()
        for file, (image, reason) in zip(files, _decoded(files, image_size, crop_size, processes), strict=True):
            if image is None:
                skipped.append((file.name, reason))
                continue
            out[count] = image
            count += 1
            if time.monotonic() - last_report > 30.0:
                last_report = time.monotonic()
                done = count + len(skipped)
                rate = done / (last_report - start)
                eta = (len(files) - done) / rate
                log.info("cache %s: %d/%d images, %.0f/s, %.0f s left", path.name, done, len(files), rate, eta)
        out.flush()
        del out
        if count == 0:
            tmp.unlink()  # nothing decoded: atomic_file then leaves path unwritten
        elif count < len(files):
            _shrink_npy(tmp, count)
    return count, skipped


def files_digest(files: Sequence[SourceFile]) -> str:
    digest = hashlib.sha1()
    for f in files:
        digest.update(f"{f.name}\t{f.size}\t{f.mtime_ns}\n".encode())
    return digest.hexdigest()


def describe_bad_files(skipped: Sequence[tuple[str, str]], ignored: Sequence[str]) -> str:
    parts = []
    if skipped:
        shown = "; ".join(f"{name} ({reason})" for name, reason in skipped[:SHOW_NAMES])
        more = f"; and {len(skipped) - SHOW_NAMES} more" if len(skipped) > SHOW_NAMES else ""
        parts.append(f"skipped {len(skipped)} unreadable image file(s): {shown}{more}")
    if ignored:
        shown = ", ".join(ignored[:SHOW_NAMES])
        more = f", and {len(ignored) - SHOW_NAMES} more" if len(ignored) > SHOW_NAMES else ""
        parts.append(f"ignored {len(ignored)} non-image file(s): {shown}{more}")
    return "; ".join(parts)


@dataclass(frozen=True)
class CacheSpec:
    """Where one split's cache lives and what it is built from."""

    cache_dir: Path
    dataset: str  # a short name for the file name: "celeba", "anime", "images"
    split: str
    source: Path  # the dataset root the file names are relative to
    image_size: int
    crop_size: int | None

    def file_for(self, files: Sequence[SourceFile]) -> Path:
        settings = f"{CACHE_VERSION}|{self.source.resolve()}|{self.split}|{self.image_size}|{self.crop_size}|{RESAMPLE}"
        settings_hash = hashlib.sha1(settings.encode()).hexdigest()[:8]
        return self.cache_dir / f"{self.stem}-{settings_hash}-{files_digest(files)[:12]}.npy"

    @property
    def stem(self) -> str:
        crop = "min" if self.crop_size is None else str(self.crop_size)
        return f"{self.dataset}-{self.split}-{self.image_size}px-crop{crop}"


def load_or_build(spec: CacheSpec, files: Sequence[SourceFile], ignored: Sequence[str] = ()) -> np.ndarray:
    """The split's images as a read-only memory-mapped uint8 [N, 3, S, S], built first if missing.

    Raises ValueError when none of ``files`` decodes.
    """
    path = spec.file_for(files)
    if path.exists():
        images = np.load(path, mmap_mode="r")
        log.info("%s %s: %d images from the cache %s", spec.dataset, spec.split, len(images), path)
        return images
    _check_writable(spec.cache_dir)
    log.info("%s %s: decoding %d images into %s (once)", spec.dataset, spec.split, len(files), path)
    start = time.monotonic()
    count, skipped = write_cache(files, path, spec.image_size, spec.crop_size)
    if skipped or ignored:
        log.warning("%s %s in %s: %s", spec.dataset, spec.split, spec.source, describe_bad_files(skipped, ignored))
    if count == 0:
        raise ValueError(
            f"none of the {len(files)} image files of the {spec.split} split in {spec.source} could be "
            f"decoded ({describe_bad_files(skipped, [])}); check that the folder holds real images"
        )
    report = {"images": count, "source": str(spec.source), "skipped": skipped, "ignored": list(ignored)}
    atomic_text(path.with_suffix(".json"), json.dumps(report, indent=1))
    # Older caches with the same settings but another file list can never be used again.
    for stale in spec.cache_dir.glob(f"{path.name.rsplit('-', 1)[0]}-*.npy"):
        if stale != path:
            stale.unlink(missing_ok=True)
            stale.with_suffix(".json").unlink(missing_ok=True)
            log.info("removed the stale cache %s (the file list changed)", stale)
    log.info("%s %s: %d images cached in %.1f s", spec.dataset, spec.split, count, time.monotonic() - start)
    return np.load(path, mmap_mode="r")


def _check_writable(cache_dir: Path) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=cache_dir):
            pass
    except OSError as err:
        raise OSError(
            f"cannot write the preprocessing cache to {cache_dir} ({err}); pass a writable folder as "
            "--data.cache_dir, or --data.cache false to decode the images on the fly every epoch"
        ) from err
