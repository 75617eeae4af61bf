"""Two identities of faces as paired uint8 batches ``(a_images, b_images)``, for the face swap (``FaceSwap``).

- ``FaceSwapDataModule``: two folders of aligned face crops (any size; centre-cropped to a square and
  resized to ``image_size``), decoded, cached and checked for bad files by the same machinery as
  ``ImageFolderDataModule`` (``datamodules.cache``), with ``val_fraction`` of each folder held out.
- ``SyntheticFacesDataModule``: cartoon faces of two identities drawn with PIL, each image in a seeded
  random *pose* (head position, tilt, mouth opening) from one distribution shared by both identities;
  the *identity* (skin colour, eye shape, hair colour and shape) is fixed per identity. Because every
  pose is known, ``render_face(identity, pose, size)`` draws what an ideal swap should output, and
  ``measure_swap`` scores a swap's identity and pose against it.

A and B are paired at random and independently every epoch (``RandomPairSampler``): the two losses are
separate, so which B image meets which A image only sets the batches' composition.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from datamodules.base import ImageDataModule, UInt8ImageDataset
from datamodules.images import EXTENSIONS_TEXT, ImageFolderDataModule

log = logging.getLogger(__name__)

Identity = Literal["a", "b"]
IDENTITIES: tuple[str, str] = ("a", "b")


# ---------------------------------------------------------------------------------------------- pairing


class PairedFaces(Dataset):
    """Two image datasets -> ``(a_images, b_images)`` for index pairs ``(i_a, i_b)``.

    Its length is the larger side's; a plain index ``i`` (the validation loader's sequential order) is the pair
    ``(i mod len(a), i mod len(b))``, so held-out batches are paired and deterministic.
    """

    def __init__(self, a: Dataset, b: Dataset) -> None:
        if len(a) == 0 or len(b) == 0:
            raise ValueError(f"both identities need images, got {len(a)} A and {len(b)} B")
        self.a, self.b = a, b

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def _pair(self, index: int | Sequence[int]) -> tuple[int, int]:
        if isinstance(index, (int, np.integer)):
            return int(index) % len(self.a), int(index) % len(self.b)
        return int(index[0]), int(index[1])

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[Tensor, Tensor]:
        i_a, i_b = self._pair(index)
        return self.a[i_a], self.b[i_b]

    def __getitems__(self, indices: list) -> tuple[Tensor, Tensor]:
        pairs = [self._pair(i) for i in indices]
        return _take(self.a, [p[0] for p in pairs]), _take(self.b, [p[1] for p in pairs])


def _take(dataset: Dataset, indices: list[int]) -> Tensor:
    """A batch from a dataset: one fancy index where it has ``__getitems__`` (the cache), else stacked items."""
    if hasattr(dataset, "__getitems__"):
        return dataset.__getitems__(indices)
    return torch.stack([dataset[i] for i in indices])


class RandomPairSampler(Sampler):
    """Index pairs ``(i_a, i_b)``: every A and every B image once per pass, in independent random orders.

    ``length`` pairs per epoch (default ``len(dataset)``); each side is repeated in fresh permutations to fill
    them. Seeded from torch's global generator each epoch, as ``RandomSampler`` is, so ``seed_everything``
    fixes it.
    """

    def __init__(self, dataset: PairedFaces, length: int | None = None) -> None:
        self.sizes = (len(dataset.a), len(dataset.b))
        self.length = len(dataset) if length is None else length

    def __len__(self) -> int:
        return self.length

    def _order(self, size: int, generator: torch.Generator) -> Tensor:
        repeats = math.ceil(self.length / size)
        return torch.cat([torch.randperm(size, generator=generator) for _ in range(repeats)])[: self.length]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        seed = int(torch.empty((), dtype=torch.int64).random_().item())
        generator = torch.Generator().manual_seed(seed)
        a, b = (self._order(size, generator) for size in self.sizes)
        return iter(zip(a.tolist(), b.tolist()))


def collate_pairs(batch: tuple[Tensor, Tensor] | list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Identity for the ``(a, b)`` batches ``__getitems__`` already stacked; stacks a list of pairs otherwise."""
    if isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[0], Tensor) and batch[0].ndim == 4:
        return batch
    return torch.stack([a for a, _ in batch]), torch.stack([b for _, b in batch])


def paired_loader(
    datamodule: ImageDataModule, dataset: PairedFaces, shuffle: bool, drop_last: bool, length: int | None = None
) -> DataLoader:
    """Batches of ``(a, b)``: random pairs (``length`` per epoch) when ``shuffle``, else the dataset's order."""
    return DataLoader(
        dataset,
        batch_size=datamodule.batch_size,
        sampler=RandomPairSampler(dataset, length) if shuffle else None,
        drop_last=drop_last,
        num_workers=datamodule.num_workers,
        collate_fn=collate_pairs,
        persistent_workers=datamodule.num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


# ---------------------------------------------------------------------------------------------- real faces

FACES_MISSING = """{problem}
The face swap needs two folders of face crops, one per identity:
  {a}/   images of person A (.jpg, .png, ...; subfolders are searched)
  {b}/   images of person B
Each image should be one face, cropped to a square around it and aligned the same way in both folders
(eyes at the same height); a few hundred images per person, of varied expressions and head poses.
docs/faceswap.md shows how to extract and align crops from photos or videos. Set the folders with
--data.data_dir (their parent) and --data.a_dir / --data.b_dir (names inside it, or absolute paths).
Image extensions: {extensions}."""


class FaceSwapDataModule(ImageDataModule):
    """Aligned face crops of identity A (``a_dir``) and B (``b_dir``) -> ``(a, b)`` uint8 [N, 3, S, S] batches.

    Each folder is read as ``ImageFolderDataModule`` reads one (recursive search, centred square crop,
    antialiased resize, unreadable files skipped and reported, decoded once into a cache); ``val_fraction``
    of each folder (chosen by a hash of the file names) is held out for ``val/l1`` and ``val/ssim``.
    An epoch is ``pairs_per_epoch`` random (A, B) pairs, by default as many as the larger folder has images.
    """

    def __init__(
        self,
        data_dir: str = "./data/faceswap",
        a_dir: str = "a",  # inside data_dir, or an absolute path
        b_dir: str = "b",
        image_size: int = 64,
        crop_size: int | None = None,  # centre square side before resizing; None: the shorter side
        val_fraction: float = 0.05,
        batch_size: int = 16,
        num_workers: int = 0,
        cache: bool = True,
        cache_dir: str | None = None,  # None: a .cache folder inside each identity's folder
        pairs_per_epoch: int | None = None,  # None: the larger folder's image count
    ) -> None:
        super().__init__(data_dir=data_dir, batch_size=batch_size, num_workers=num_workers)
        if pairs_per_epoch is not None and pairs_per_epoch < batch_size:
            raise ValueError(
                f"data.pairs_per_epoch must be at least data.batch_size ({batch_size}) or null, got {pairs_per_epoch}"
            )
        self.pairs_per_epoch = pairs_per_epoch
        self.a_dir, self.b_dir = a_dir, b_dir
        self.folders = {
            identity: ImageFolderDataModule(
                data_dir=str(self.identity_dir(identity)),
                image_size=image_size,
                crop_size=crop_size,
                val_fraction=val_fraction,
                batch_size=batch_size,
                cache=cache,
                cache_dir=None if cache_dir is None else str(Path(cache_dir).expanduser() / identity),
            )
            for identity in IDENTITIES
        }
        for identity, folder in self.folders.items():
            folder.dataset_name = f"faces_{identity}"  # names the cache files and the log lines
        self._checked = False

    @property
    def image_size(self) -> int:
        return self.folders["a"].image_size

    @property
    def num_channels(self) -> int:
        return 3

    def identity_dir(self, identity: str) -> Path:
        return Path(self.data_dir).expanduser() / Path({"a": self.a_dir, "b": self.b_dir}[identity]).expanduser()

    def _check_folders(self) -> None:
        """Both folders exist and hold images, or one FileNotFoundError that shows the expected layout."""
        if self._checked:
            return
        for identity, folder in self.folders.items():
            try:
                folder._discover()
            except (FileNotFoundError, ValueError):
                path = self.identity_dir(identity)
                found = "no image files under" if path.is_dir() else "no folder"
                raise FileNotFoundError(
                    FACES_MISSING.format(
                        problem=f"identity {identity.upper()}: {found} {path}",
                        a=self.identity_dir("a"),
                        b=self.identity_dir("b"),
                        extensions=EXTENSIONS_TEXT,
                    )
                ) from None
        self._checked = True

    def check_data(self) -> None:
        self._check_folders()

    def prepare_data(self) -> None:
        self._check_folders()
        for folder in self.folders.values():
            folder.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        self._check_folders()
        for folder in self.folders.values():
            folder.setup(stage)
        a, b = self.folders["a"], self.folders["b"]
        self.train_dataset = PairedFaces(a.train_dataset, b.train_dataset)
        if a.val_dataset is not None and b.val_dataset is not None:
            self.val_dataset = PairedFaces(a.val_dataset, b.val_dataset)
        elif self.folders["a"].val_fraction > 0:
            log.warning("faceswap: one folder has too few images to hold any out; no val/l1 this run")

    def _loader(self, dataset: Dataset, shuffle: bool, drop_last: bool) -> DataLoader:
        return paired_loader(self, dataset, shuffle, drop_last, self.pairs_per_epoch if shuffle else None)


# ---------------------------------------------------------------------------------------------- cartoon faces


@dataclass(frozen=True)
class FacePose:
    """Where and how a synthetic face is drawn, shared by both identities' distributions.

    ``x``, ``y``: the head's centre as fractions of the image side; ``tilt``: degrees, counter-clockwise;
    ``mouth``: 0 closed to 1 wide open.
    """

    x: float = 0.5
    y: float = 0.5
    tilt: float = 0.0
    mouth: float = 0.5


# Pose ranges: wide enough that position, tilt and mouth are plainly visible at 32x32, narrow enough that
# the whole head stays inside the frame.
POSE_RANGES = {"x": (0.36, 0.64), "y": (0.44, 0.58), "tilt": (-20.0, 20.0), "mouth": (0.0, 1.0)}
BACKGROUND = (112, 124, 136)  # one mid grey-blue for both identities: identity lives in the face only


@dataclass(frozen=True)
class CartoonIdentity:
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    curly: bool  # curls along the hairline, else a smooth cap with straight bangs
    eye_size: tuple[float, float]  # half-width, half-height as fractions of the image side
    eye_whites: bool  # round eyes with whites and pupils, else dark almond eyes


# Two looks on one face layout, as aligned crops of two people are: what differs is colour and detail, not the
# silhouette. The palettes' mean offsets from the background point about 60 degrees apart, so that the colour
# of a face names its identity even where it is blurred into the background (see ``face_measurements``).
CARTOON_IDENTITIES = {
    "a": CartoonIdentity(skin=(250, 200, 205), hair=(40, 40, 70), curly=False, eye_size=(0.055, 0.055),
                         eye_whites=True),
    "b": CartoonIdentity(skin=(205, 150, 95), hair=(110, 45, 25), curly=True, eye_size=(0.07, 0.025),
                         eye_whites=False),
}  # fmt: skip


def sample_poses(n: int, seed: int) -> list[FacePose]:
    """``n`` poses drawn uniformly from ``POSE_RANGES`` with ``seed`` (the same seed, the same poses)."""
    rng = np.random.default_rng(seed)
    columns = {name: rng.uniform(low, high, n) for name, (low, high) in POSE_RANGES.items()}
    return [FacePose(**{name: float(values[i]) for name, values in columns.items()}) for i in range(n)]


def render_face(identity: str, pose: FacePose, image_size: int, supersample: int = 4) -> Tensor:
    """A cartoon face of ``identity`` ("a" or "b") in ``pose`` -> uint8 [3, image_size, image_size].

    Drawn at ``supersample`` times the size and box-filtered down, so edges are antialiased.
    """
    if identity not in CARTOON_IDENTITIES:
        raise ValueError(f"identity must be one of {', '.join(CARTOON_IDENTITIES)}, got {identity!r}")
    if image_size < 8 or supersample < 1:
        raise ValueError(f"image_size must be >= 8 and supersample >= 1, got {image_size} and {supersample}")
    look = CARTOON_IDENTITIES[identity]
    side = image_size * supersample
    c = side / 2  # the face is drawn upright around the canvas centre, then rotated and moved into its pose

    def box(cx: float, cy: float, rx: float, ry: float) -> tuple[float, float, float, float]:
        return (c + (cx - rx) * side, c + (cy - ry) * side, c + (cx + rx) * side, c + (cy + ry) * side)

    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    draw.ellipse(box(0.0, 0.0, 0.25, 0.31), fill=look.skin)
    draw.chord(box(0.0, -0.1, 0.265, 0.23), start=180, end=360, fill=look.hair)  # the hair over the crown
    if look.curly:
        for k in range(-3, 4):  # a row of curls along the hairline and over the top
            angle = math.radians(-90 + 26 * k)
            draw.ellipse(box(0.24 * math.cos(angle), -0.1 + 0.24 * math.sin(angle), 0.055, 0.055), fill=look.hair)
    else:
        draw.rectangle(box(0.0, -0.14, 0.2, 0.05), fill=look.hair)  # straight bangs
    ex, ey = look.eye_size
    for sx in (-1, 1):
        if look.eye_whites:
            draw.ellipse(box(sx * 0.1, 0.0, ex, ey), fill=(250, 250, 250))
            draw.ellipse(box(sx * 0.1, 0.0, ex * 0.5, ey * 0.5), fill=(30, 30, 60))
        else:
            draw.ellipse(box(sx * 0.1, 0.0, ex, ey), fill=(35, 25, 25))
    draw.ellipse(box(0.0, 0.17, 0.09, 0.014 + 0.07 * pose.mouth), fill=(130, 30, 45))

    moved = layer.rotate(
        pose.tilt,
        resample=Image.Resampling.BICUBIC,
        center=(c, c),
        translate=((pose.x - 0.5) * side, (pose.y - 0.5) * side),
    )
    canvas = Image.new("RGBA", (side, side), (*BACKGROUND, 255))
    canvas.alpha_composite(moved)
    rgb = canvas.convert("RGB").reduce(supersample)  # box filter: each output pixel averages its block
    return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy())


def render_faces(identity: str, poses: Sequence[FacePose], image_size: int, supersample: int = 4) -> Tensor:
    """``render_face`` for each pose -> uint8 [N, 3, S, S]."""
    return torch.stack([render_face(identity, pose, image_size, supersample) for pose in poses])


class SyntheticFacesDataModule(ImageDataModule):
    """Cartoon faces of identities A and B (``render_face``) in seeded random poses -> ``(a, b)`` uint8 batches.

    ``num_images`` training images per identity and ``val_images`` held-out ones, each identity with its own
    poses drawn from the same distribution (``sample_poses``); the validation poses come from other seeds
    than the training ones. ``poses(split, identity)`` returns the poses image by image.
    """

    def __init__(
        self,
        data_dir: str = "./data",  # unused; accepted so any config's data_dir override still parses
        image_size: int = 32,
        num_images: int = 512,
        val_images: int = 64,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        supersample: int = 4,
    ) -> None:
        super().__init__(data_dir=data_dir, batch_size=batch_size, num_workers=num_workers)
        if image_size < 8 or num_images < 1 or val_images < 0 or supersample < 1:
            raise ValueError(
                "data.image_size must be >= 8, data.num_images >= 1, data.val_images >= 0 and data.supersample "
                f">= 1; got {image_size}, {num_images}, {val_images} and {supersample}"
            )
        self._image_size = image_size
        self.num_images = num_images
        self.val_images = val_images
        self.seed = seed
        self.supersample = supersample

    @property
    def image_size(self) -> int:
        return self._image_size

    @property
    def num_channels(self) -> int:
        return 3

    def poses(self, split: Literal["train", "val"], identity: str) -> list[FacePose]:
        """The poses of the ``split`` images of ``identity``, in dataset order."""
        if split not in ("train", "val") or identity not in IDENTITIES:
            raise ValueError(f"split must be train or val and identity a or b, got {split!r} and {identity!r}")
        count = self.num_images if split == "train" else self.val_images
        # One seed per (split, identity): A and B get different poses from the same distribution.
        seed = self.seed * 4 + 2 * (split == "val") + IDENTITIES.index(identity)
        return sample_poses(count, seed)

    def images(self, split: Literal["train", "val"], identity: str) -> Tensor:
        """The ``split`` images of ``identity`` as uint8 [N, 3, S, S]."""
        return render_faces(identity, self.poses(split, identity), self.image_size, self.supersample)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        train = [UInt8ImageDataset(self.images("train", identity)) for identity in IDENTITIES]
        self.train_dataset = PairedFaces(*train)
        if self.val_images:
            self.val_dataset = PairedFaces(*(UInt8ImageDataset(self.images("val", i)) for i in IDENTITIES))

    def _loader(self, dataset: Dataset, shuffle: bool, drop_last: bool) -> DataLoader:
        return paired_loader(self, dataset, shuffle, drop_last)


# ---------------------------------------------------------------------------------------------- measuring a swap
