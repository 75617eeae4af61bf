"""Folders of images (anime faces, CelebA, anything) as uint8 [N, 3, S, S] batches.

Every image is converted to RGB, centre-cropped to a square (``crop_size``; None = the shorter side)
and resized to ``image_size`` with PIL's antialiased bicubic filter. CelebA's aligned faces are
178x218, so its default crop is the 178x178 centre square, as in the CelebA face GANs (DCGAN-era
code, the CelebA-128 seed), before resizing to 64, 128 or 256.

With ``cache=True`` (the default) ``prepare_data`` decodes each split once into a memory-mapped
``.npy`` under ``cache_dir`` (default ``<data_dir>/.cache``) and every epoch reads from it; see
``datamodules.cache`` for the file format, its key and the atomic write. With ``cache=False`` the
images are decoded on the fly by ``num_workers`` loader processes.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset

from datamodules.base import ImageDataModule, UInt8ImageDataset
from datamodules.cache import (
    IMAGE_EXTENSIONS,
    CacheSpec,
    SourceFile,
    describe_bad_files,
    has_images,
    load_or_build,
    scan_images,
    try_decode,
)

log = logging.getLogger(__name__)

# An on-the-fly dataset replaces an unreadable file by the next readable one, trying this many.
MAX_REPLACEMENTS = 100
EXTENSIONS_TEXT = ", ".join(sorted(IMAGE_EXTENSIONS))


@dataclass
class FoundImages:
    """The image files of a dataset, split, as discovered in ``data_dir``."""

    root: Path  # the folder file names are relative to (part of the cache key)
    layout: str  # human-readable, for the log
    train: list[SourceFile]
    val: list[SourceFile] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # non-image files seen next to the images
    val_name: str = "val"  # which split val is, for the cache file name ("test" for CelebA's default)


class ImageFileDataset(Dataset):
    """Image files decoded on every access -> uint8 [3, S, S] (the ``cache=False`` path).

    A file that does not decode is replaced by the next one that does, so one bad file neither
    stops training nor changes the batch size; it is logged once per loader process.
    """

    def __init__(self, paths: Sequence[Path], image_size: int, crop_size: int | None) -> None:
        self.paths = list(paths)
        self.image_size = image_size
        self.crop_size = crop_size
        self._reported: set[Path] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        for offset in range(min(len(self.paths), MAX_REPLACEMENTS)):
            path = self.paths[(index + offset) % len(self.paths)]
            image, reason = try_decode(path, self.image_size, self.crop_size)
            if image is not None:
                return torch.from_numpy(image)
            if path not in self._reported:
                self._reported.add(path)
                log.warning("skipping the unreadable image %s (%s); using the next file instead", path, reason)
        raise ValueError(
            f"{MAX_REPLACEMENTS} image files in a row from {self.paths[index].parent} could not be decoded; "
            "check that the folder holds real images"
        )


def holdout(files: list[SourceFile], fraction: float) -> tuple[list[SourceFile], list[SourceFile]]:
    """Deterministic (train, val) split holding out ``round(fraction * N)`` files (at least one if > 0).

    Files are ranked by a hash of their name, so the split does not depend on listing order and
    adding images moves only the new ones into or out of val.
    """
    if fraction <= 0.0 or len(files) < 2:
        return files, []
    n_val = min(len(files) - 1, max(1, round(fraction * len(files))))
    ranked = sorted(files, key=lambda f: hashlib.sha1(f.name.encode()).hexdigest())
    val_names = {f.name for f in ranked[:n_val]}
    return [f for f in files if f.name not in val_names], [f for f in files if f.name in val_names]


class ImageFolderDataModule(ImageDataModule):
    """Every image under ``data_dir`` (searched recursively, hidden folders skipped) -> uint8 [N, 3, S, S].

    ``val_fraction`` of the files (chosen by a hash of their names) form ``val_dataset``; 0 means
    no held-out split.
    """

    dataset_name = "images"

    def __init__(
        self,
        data_dir: str = "./data",
        image_size: int = 64,
        crop_size: int | None = None,  # centre square side before resizing; None: the shorter side
        val_fraction: float = 0.0,
        batch_size: int = 64,
        num_workers: int = 0,  # 0 suits the cache (one memory-map read per batch); use cores with cache=False
        cache: bool = True,
        cache_dir: str | None = None,  # None: <data_dir>/.cache
    ) -> None:
        super().__init__(data_dir=data_dir, batch_size=batch_size, num_workers=num_workers)
        if image_size < 1:
            raise ValueError(f"data.image_size must be a positive integer, got {image_size}")
        if crop_size is not None and crop_size < 1:
            raise ValueError(f"data.crop_size must be a positive integer or null, got {crop_size}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        self._image_size = image_size
        self.crop_size = crop_size
        self.val_fraction = val_fraction
        self.cache = cache
        self.cache_dir = cache_dir
        self._found: FoundImages | None = None

    @property
    def image_size(self) -> int:
        return self._image_size

    @property
    def num_channels(self) -> int:
        return 3

    @property
    def root(self) -> Path:
        """``data_dir`` with ``~`` expanded (LightningCLI passes YAML strings through unexpanded)."""
        return Path(self.data_dir).expanduser()

    @property
    def cache_root(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else self.root / ".cache"

    def find_images(self) -> FoundImages:
        """Discovers the dataset's files; subclasses implement their layouts here."""
        folder = self.root
        if not folder.is_dir():
            raise FileNotFoundError(
                f"the image folder {folder} does not exist; pass --data.data_dir pointing at a folder of "
                f"images ({EXTENSIONS_TEXT}), searched recursively"
            )
        files, ignored = scan_images(folder)
        if not files:
            raise FileNotFoundError(
                f"no image files ({EXTENSIONS_TEXT}) under {folder} (searched recursively, hidden folders "
                f"skipped{'; found only ' + ', '.join(ignored[:5]) if ignored else ''}); pass --data.data_dir "
                "pointing at a folder of images"
            )
        train, val = holdout(files, self.val_fraction)
        return FoundImages(root=folder, layout="a folder of images", train=train, val=val, ignored=ignored)

    def _discover(self) -> FoundImages:
        if self._found is None:
            self._found = self.find_images()
            found = self._found
            log.info(
                "%s: %s in %s; %d train and %d val images",
                self.dataset_name,
                found.layout,
                found.root,
                len(found.train),
                len(found.val),
            )
            if not found.train:
                raise ValueError(
                    f"{self.dataset_name}: the training split in {found.root} ({found.layout}) holds no images"
                )
        return self._found

    def check_data(self) -> None:
        self._discover()  # the layout, the partition file and one training image at least: listed, not decoded

    def split_sizes(self) -> tuple[int, int | None]:
        found = self._discover()
        return len(found.train), len(found.val) or None

    def _spec(self, split: str, found: FoundImages) -> CacheSpec:
        return CacheSpec(
            cache_dir=self.cache_root,
            dataset=self.dataset_name,
            split=split,
            source=found.root,
            image_size=self.image_size,
            crop_size=self.crop_size,
        )

    def prepare_data(self) -> None:
        # Lightning runs this on one process per node before `setup`: decode once, before DDP starts reading.
        if not self.cache:
            return
        found = self._discover()
        load_or_build(self._spec("train", found), found.train, found.ignored)
        if found.val:
            load_or_build(self._spec(found.val_name, found), found.val)

    def _dataset(self, split: str, files: list[SourceFile], found: FoundImages) -> Dataset:
        if self.cache:
            # Builds here too when `prepare_data` was not called (a notebook, a script); the atomic write
            # makes two processes building the same file safe, only wasteful.
            ignored = found.ignored if split == "train" else []
            return UInt8ImageDataset(load_or_build(self._spec(split, found), files, ignored))
        if found.ignored and split == "train":
            log.warning("%s in %s: %s", self.dataset_name, found.root, describe_bad_files([], found.ignored))
        return ImageFileDataset([f.path for f in files], self.image_size, self.crop_size)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        found = self._discover()
        self.train_dataset = self._dataset("train", found.train, found)
        self.val_dataset = self._dataset(found.val_name, found.val, found) if found.val else None
        if not self.cache and self.num_workers == 0:
            log.info("decoding images on the fly with num_workers=0; set --data.num_workers to the core count")


ANIME_FLAT = ("", "images", "animefacedataset/images", "anime", "anime/images", "anime-faces", "anime_faces")
ANIME_NESTED = ("animeface-character-dataset/thumb", "thumb", "animeface-character-dataset", "")

ANIME_MISSING = """No anime face images were found under {data_dir}.
Looked for image files ({extensions}) in these folders, in order:
  flat:   {flat}
  nested (one subfolder per character, */*.png): {nested}
To get the data, do one of:
  - Kaggle "Anime Face Dataset" (63,632 faces): https://www.kaggle.com/datasets/splcher/animefacedataset
      kaggle datasets download -d splcher/animefacedataset && unzip animefacedataset.zip -d {data_dir}
  - nagadomi's animeface-character-dataset (one folder per character), unpacked into {data_dir}
  - or pass --data.data_dir pointing at the folder that holds the images."""


class AnimeFacesDataModule(ImageFolderDataModule):
    """Anime faces (Kaggle "Anime Face Dataset" or any folder of faces) at 64x64, as in the DCGAN seed.

    ``data_dir`` may be the image folder itself or a folder above it; the folders searched are
    ``ANIME_FLAT`` (images directly inside) then ``ANIME_NESTED`` (one subfolder per character).
    """

    dataset_name = "anime"

    # The constructor is ImageFolderDataModule's: the faces are near-square crops already, so its
    # default crop (the largest centred square) is the right one.

    def find_images(self) -> FoundImages:
        data_dir = self.root
        for sub in ANIME_FLAT:
            if has_images(data_dir / sub):
                files, ignored = scan_images(data_dir / sub, max_depth=0)
                return self._split(data_dir / sub, "a flat folder of images", files, ignored)
        for sub in ANIME_NESTED:
            folder = data_dir / sub
            if folder.is_dir() and any(has_images(d) for d in folder.iterdir() if not d.name.startswith(".")):
                files, ignored = scan_images(folder, max_depth=1)
                return self._split(folder, "one folder per character", files, ignored)
        raise FileNotFoundError(
            ANIME_MISSING.format(
                data_dir=data_dir,
                extensions=EXTENSIONS_TEXT,
                flat=", ".join(str(data_dir / s) for s in ANIME_FLAT),
                nested=", ".join(str(data_dir / s) for s in ANIME_NESTED),
            )
            + _empty_note([data_dir / s for s in ANIME_FLAT])
        )

    def _split(self, root: Path, layout: str, files: list[SourceFile], ignored: list[str]) -> FoundImages:
        train, val = holdout(files, self.val_fraction)
        return FoundImages(root=root, layout=layout, train=train, val=val, ignored=ignored)


def _empty_note(folders: Sequence[Path]) -> str:
    existing = list(dict.fromkeys(str(f) for f in folders if f.is_dir()))
    return f"\n(These folders exist but hold no image files: {', '.join(existing)})" if existing else ""


CELEBA_PARTITIONS = ("list_eval_partition.txt", "list_eval_partition.csv")
CELEBA_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}  # list_eval_partition: 0 train, 1 val, 2 test

CELEBA_MISSING = """CelebA was not found under {data_dir}.
Looked for the aligned 178x218 JPEGs in these layouts, in order:
  torchvision: {data_dir}/celeba/img_align_celeba/*.jpg + {data_dir}/celeba/list_eval_partition.txt
               (or data_dir pointing at the celeba folder itself)
  Kaggle:      {data_dir}/img_align_celeba/img_align_celeba/*.jpg + {data_dir}/list_eval_partition.csv
               (also under {data_dir}/celeba-dataset/)
  plain:       {data_dir}/*.jpg, with list_eval_partition.txt/.csv in that folder or the two above it
               when present (otherwise --data.val_fraction of the files is held out)
To get the data, do one of:
  - Kaggle: kaggle datasets download -d jessicali9530/celeba-dataset && unzip celeba-dataset.zip -d {data_dir}
      (https://www.kaggle.com/datasets/jessicali9530/celeba-dataset)
  - torchvision: python -c "import torchvision; torchvision.datasets.CelebA('{data_dir}', download=True)"
      (downloads from the official Google Drive, which is often over its quota; see
      https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html for the mirrors)
  - or pass --data.data_dir pointing at the folder that holds img_align_celeba."""


def read_partition(path: Path) -> dict[str, int]:
    """list_eval_partition.txt (``000001.jpg 0``) or .csv (``image_id,partition``) -> {file stem: split id}."""
    rows: list[list[str]] = []
    with open(path, newline="") as f:
        if path.suffix == ".csv":
            rows = [row for row in csv.reader(f) if row and row[0] != "image_id"]
        else:
            rows = [line.split() for line in f if line.strip()]
    partition = {}
    for number, row in enumerate(rows, start=1):
        if len(row) != 2 or row[1].strip() not in ("0", "1", "2"):
            raise ValueError(
                f"{path}: entry {number} is {row!r}, expected an image name and a split 0/1/2 "
                "(train/val/test); the file is damaged, download it again"
            )
        partition[Path(row[0].strip()).stem] = int(row[1])
    return partition


class CelebADataModule(ImageFolderDataModule):
    """CelebA aligned faces (Liu et al. 2015), 178x218 centre-cropped to 178x178, resized to ``image_size``.

    With the official ``list_eval_partition`` file, train = split 0 (162,770 images) and val =
    ``val_split`` ("val" = split 1, 19,867; "test" = split 2, 19,962). Without it, ``val_fraction`` of
    the files is held out. Partition entries are matched by file stem, so PNG re-encodings work too.
    """

    dataset_name = "celeba"

    def __init__(
        self,
        data_dir: str = "./data",
        image_size: int = 64,
        crop_size: int | None = 178,  # CelebA's aligned width: the largest centred square
        val_split: Literal["val", "test"] = "test",
        val_fraction: float = 0.0,  # only used when there is no partition file
        batch_size: int = 64,
        num_workers: int = 0,
        cache: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(
            data_dir=data_dir,
            image_size=image_size,
            crop_size=crop_size,
            val_fraction=val_fraction,
            batch_size=batch_size,
            num_workers=num_workers,
            cache=cache,
            cache_dir=cache_dir,
        )
        if val_split not in ("val", "test"):
            raise ValueError(f'data.val_split must be "val" or "test", got {val_split!r}')
        self.val_split = val_split

    def find_images(self) -> FoundImages:
        data_dir = self.root
        for root in (data_dir / "celeba", data_dir, data_dir / "celeba-dataset"):
            for images in (root / "img_align_celeba" / "img_align_celeba", root / "img_align_celeba"):
                if has_images(images):
                    partition = next((root / p for p in CELEBA_PARTITIONS if (root / p).is_file()), None)
                    return self._split(images, partition)
        if has_images(data_dir):
            nearby = (data_dir / p for p in CELEBA_PARTITIONS)
            above = (parent / p for parent in list(data_dir.resolve().parents)[:2] for p in CELEBA_PARTITIONS)
            partition = next((p for p in (*nearby, *above) if p.is_file()), None)
            return self._split(data_dir, partition)
        for root in (data_dir / "celeba", data_dir, data_dir / "celeba-dataset"):
            if (root / "img_align_celeba.zip").is_file():
                raise FileNotFoundError(
                    f"found {root / 'img_align_celeba.zip'} but not the extracted images; run "
                    f"`unzip {root / 'img_align_celeba.zip'} -d {root}`"
                )
        raise FileNotFoundError(CELEBA_MISSING.format(data_dir=data_dir) + _empty_note(self.celeba_folders()))

    def celeba_folders(self) -> list[Path]:
        roots = (self.root / "celeba", self.root, self.root / "celeba-dataset")
        return [r / "img_align_celeba" for r in roots] + [r / "img_align_celeba" / "img_align_celeba" for r in roots]

    def _split(self, images: Path, partition_file: Path | None) -> FoundImages:
        files, ignored = scan_images(images, max_depth=0)
        if partition_file is None:
            train, val = holdout(files, self.val_fraction)
            return FoundImages(images, "a folder without a partition file", train, val, ignored)
        partition = read_partition(partition_file)
        by_split: dict[int, list[SourceFile]] = {0: [], 1: [], 2: []}
        unlisted = []
        for f in files:
            split = partition.get(Path(f.name).stem)
            (unlisted if split is None else by_split[split]).append(f)
        if unlisted:
            shown = ", ".join(f.name for f in unlisted[:5])
            log.warning(
                "celeba: %d images in %s are not in %s and are left out: %s",
                len(unlisted),
                images,
                partition_file.name,
                shown,
            )
        val = by_split[CELEBA_SPLIT_IDS[self.val_split]]
        if not val:
            log.warning("celeba: no image of the %s split is in %s; val_dataset is None", self.val_split, images)
        layout = f"official partition ({partition_file.name}), val = the {self.val_split} split"
        return FoundImages(images, layout, by_split[0], val, ignored, val_name=self.val_split)
