"""Real vs generated images for the fake detector: batches of (uint8 images [N, C, H, W], labels [N], 1 = fake).

Real images come from any of the project's image datamodules (``real``: MNIST, CelebA, a folder...); fakes
from ``fakes``, a list whose entries are GAN checkpoints (images generated once at setup, from latent seeds
that differ per split, so the test fakes were never seen in training) or folders of images (split by a hash of
the file names, in proportion to the split sizes). Every split is balanced: as many fakes as reals, shared
equally among the fake sources.

Generated images are quantized to uint8 exactly as a saved PNG would be (``gan_modules.core.to_uint8``):
otherwise a detector could learn to spot unrounded float values instead of anything a generator does.

The data layer does not load models: a checkpoint entry is opened by ``open_generator``, a function that
the layer above hands in (``train.py`` sets ``gan_modules.commands.common.open_generator``; in Python, set
the attribute yourself). Folders of images need nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.base import ImageDataModule
from datamodules.cache import decode_folder, scan_images

SPLITS = ("train", "val", "test")
SEED_OFFSETS = {"train": 1_000, "val": 2_000, "test": 3_000}  # latent seeds per split: disjoint z draws


class LabelledImages(Dataset):
    """uint8 images [N, C, H, W] with labels [N]; ``__getitems__`` fetches a batch with one index op."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]):
        index = torch.as_tensor(indices)
        return self.images[index], self.labels[index]


def _collate(batch):
    if isinstance(batch, tuple):  # already a batch from __getitems__
        return batch
    images, labels = zip(*batch)
    return torch.stack(images), torch.stack(labels)


def load_image_folder(folder: str | Path, image_size: int, num_channels: int) -> tuple[torch.Tensor, list[str]]:
    """Every image under ``folder`` -> (uint8 [N, C, S, S], relative paths), decoded as the image datamodules do
    (``datamodules.cache.decode_image``: centre square, bicubic resize, transparency on white).

    Files that do not decode are skipped; a folder with no decodable image is an error.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist; pass a folder of .png/.jpg images")
    names, images, _ = decode_folder(folder, image_size, num_channels)
    if not images:
        raise ValueError(_NO_IMAGES.format(folder=folder))
    return torch.stack([torch.from_numpy(image) for image in images]), names


_NO_IMAGES = "no image in {folder} could be decoded; it needs .png/.jpg files"


def hash_split(names: list[str], fractions: tuple[float, float]) -> dict[str, list[int]]:
    """Indices per split by a hash of each name: about ``fractions`` = (val, test), the rest train; stable."""
    splits = {split: [] for split in SPLITS}
    for i, name in enumerate(names):
        u = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        split = "val" if u < fractions[0] else "test" if u < fractions[0] + fractions[1] else "train"
        splits[split].append(i)
    return splits


# (checkpoint path, device, image size, channels) -> sample(count, seed) -> uint8 images [count, C, H, W]
GeneratorOpener = Callable[[Path, str, int, int], Callable[[int, int], torch.Tensor]]


class RealFakeDataModule(ImageDataModule):
    """Balanced real-vs-fake splits from a real-image datamodule and GAN checkpoints or image folders.

    Real splits: ``train`` from the real datamodule's training images; ``val`` and ``test`` are the two halves
    of its held-out split (MNIST: the 10k test set), so no real test image is ever trained on. Without a
    held-out split, the last ``num_val + num_test`` training images are held out instead.
    ``open_generator`` turns a checkpoint entry into a sampler (see the module docstring).
    """

    open_generator: GeneratorOpener | None = None

    def __init__(
        self,
        real: ImageDataModule,
        fakes: list[str],
        num_train: int = 20_000,
        num_val: int = 2_000,
        num_test: int = 5_000,
        seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
        device: str = "auto",
    ) -> None:
        """
        Args:
            real: the datamodule of real images (``class_path`` + ``init_args`` in YAML).
            fakes: GAN checkpoints (``.ckpt``: fakes generated at setup), model zoo entries (``zoo:NAME``, e.g.
                ``zoo:vanilla_mnist-seed42``) and/or folders of generated images. An entry with ``*`` takes its
                newest match by name (run folders are time-stamped), e.g. ``runs/dcgan_mnist/*/checkpoints/last.ckpt``.
            num_train: real training images (as many fakes are added).
            num_val: real validation images (the detector's threshold is chosen on this split).
            num_test: real test images.
            seed: seed of the real subset and of the latents (each split adds its own offset).
            batch_size: images per batch, real and fake mixed.
            num_workers: DataLoader workers (the data is in memory: 0 is right).
            device: where the fakes are generated ("auto": the GPU when there is one).
        """
        super().__init__(data_dir=getattr(real, "data_dir", "./data"), batch_size=batch_size, num_workers=num_workers)
        if not fakes:
            raise ValueError("data.fakes is empty: list GAN checkpoints (.ckpt) or folders of generated images")
        for name, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            if value < 1:
                raise ValueError(f"data.{name} must be a positive integer, got {value}")
        self.real = real
        self.fakes = [resolve_source(str(f)) for f in fakes]
        self.counts = {"train": num_train, "val": num_val, "test": num_test}
        self.seed = seed
        self.device = device
        self.datasets: dict[str, LabelledImages] = {}

    @property
    def image_size(self) -> int:
        return self.real.image_size

    @property
    def num_channels(self) -> int:
        return self.real.num_channels

    def prepare_data(self) -> None:
        self.real.prepare_data()

    def check_data(self) -> None:
        """The real datamodule's check, then every split size that is known before images are loaded or
        generated: the real splits (``real.split_sizes()``) and each fake folder's listed files."""
        self.real.check_data()
        if (sizes := self.real.split_sizes()) is not None:
            self._real_pools(*sizes)
        for i, source in enumerate(self.fakes):
            path = Path(source).expanduser()
            if path.is_dir():
                names = [f.name for f in scan_images(path)[0]]  # undecodable files drop out at setup: at most these
                if not names:
                    raise ValueError(_NO_IMAGES.format(folder=path))
                self._folder_shares(path, names, i)
            elif self.open_generator is None:
                raise self._no_opener(path)

    # ------------------------------------------------------------------ real images

    def _real_splits(self) -> dict[str, torch.Tensor]:
        self.real.setup("fit")
        train = self.real.train_dataset
        held_out = self.real.val_dataset
        rng = torch.Generator().manual_seed(self.seed)
        train_pool, held_idx = self._real_pools(len(train), None if held_out is None else len(held_out))
        held_out = train if held_out is None else held_out
        take = lambda dataset, idx: _as_uint8(dataset[idx.tolist()] if hasattr(dataset, "__getitems__") else
                                              torch.stack([dataset[int(i)] for i in idx]))  # fmt: skip
        train_idx = train_pool[torch.randperm(len(train_pool), generator=rng)[: self.counts["train"]]]
        half = self.counts["val"]
        return {
            "train": take(train, train_idx),
            "val": take(held_out, held_idx[:half]),
            "test": take(held_out, held_idx[half : half + self.counts["test"]]),
        }

    def _real_pools(self, num_train: int, num_held_out: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices the training reals are drawn from, indices of the val + test reals) for a real datamodule
        with these split sizes; a ValueError when a split is too small for ``num_train``/``num_val``/``num_test``."""
        need_eval = self.counts["val"] + self.counts["test"]
        if num_held_out is None:  # hold out the end of the training images
            if num_train <= need_eval:
                raise ValueError(
                    f"the real datamodule has {num_train} images and no held-out split: fewer than "
                    f"num_val + num_test = {need_eval}; lower them or add images"
                )
            held_idx = torch.arange(num_train - need_eval, num_train)
            train_pool = torch.arange(num_train - need_eval)
        else:
            held_idx = torch.arange(num_held_out)
            train_pool = torch.arange(num_train)
        if len(held_idx) < need_eval:
            raise ValueError(
                f"the real held-out split has {len(held_idx)} images, fewer than num_val + num_test = {need_eval}; "
                "lower data.num_val / data.num_test"
            )
        if len(train_pool) < self.counts["train"]:
            raise ValueError(
                f"the real training split has {len(train_pool)} images, fewer than data.num_train = "
                f"{self.counts['train']}; lower it"
            )
        return train_pool, held_idx

    # ------------------------------------------------------------------ fake images

    def _folder_shares(self, path: Path, names: list[str], i: int) -> dict[str, list[int]]:
        """Indices of fake source ``i``'s images per split: the folder split by file-name hash in proportion to
        the split sizes, each split cut to the source's share; a ValueError when a split falls short."""
        total = sum(self.counts.values())
        index = hash_split(names, (self.counts["val"] / total, self.counts["test"] / total))
        chosen = {}
        for split in SPLITS:
            share = _shares(self.counts[split], len(self.fakes))[i]
            chosen[split] = index[split][:share]
            if len(chosen[split]) < share:
                raise ValueError(
                    f"{path} has {len(chosen[split])} images in its {split} share (split by file name in "
                    f"proportion to num_train/num_val/num_test), {share} are needed; add images or lower "
                    f"data.num_{split}"
                )
        return chosen

    def _no_opener(self, path: Path) -> ValueError:
        return ValueError(
            f"data.fakes lists the checkpoint {path}, but this RealFakeDataModule has no open_generator to "
            "sample it: train.py sets one; in Python set datamodule.open_generator = "
            "gan_modules.commands.common.open_generator, or list folders of generated images"
        )

    def _fake_splits(self) -> dict[str, torch.Tensor]:
        shares = {split: _shares(count, len(self.fakes)) for split, count in self.counts.items()}
        out: dict[str, list[torch.Tensor]] = {split: [] for split in SPLITS}
        for i, source in enumerate(self.fakes):
            path = Path(source).expanduser()
            if path.is_dir():
                images, names = load_image_folder(path, self.image_size, self.num_channels)
                for split, chosen in self._folder_shares(path, names, i).items():
                    out[split].append(images[chosen])
            else:
                if self.open_generator is None:
                    raise self._no_opener(path)
                sample = self.open_generator(path, self.device, self.image_size, self.num_channels)
                for split in SPLITS:
                    seed = self.seed + SEED_OFFSETS[split] + 100 * i
                    out[split].append(_as_uint8(sample(shares[split][i], seed), f"open_generator({path})"))
        return {split: torch.cat(parts) for split, parts in out.items()}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        real, fake = self._real_splits(), self._fake_splits()
        for split in SPLITS:
            images = torch.cat([real[split], fake[split]])
            labels = torch.cat([torch.zeros(len(real[split])), torch.ones(len(fake[split]))])
            # A fixed interleaving, so every batch (a sanity check's two included) holds both kinds.
            order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed + 1))
            self.datasets[split] = LabelledImages(images[order], labels[order])
        self.train_dataset, self.val_dataset = self.datasets["train"], self.datasets["val"]

    def _loader(self, dataset: Dataset, shuffle: bool, drop_last: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, drop_last=drop_last,
                          num_workers=self.num_workers, collate_fn=_collate)  # fmt: skip

    def val_dataloader(self) -> DataLoader:
        self.setup("validate")
        return self._loader(self.datasets["val"], shuffle=False, drop_last=False)

    def test_dataloader(self) -> DataLoader:
        self.setup("test")
        return self._loader(self.datasets["test"], shuffle=False, drop_last=False)


ZOO_PREFIX = "zoo:"  # a fake source "zoo:NAME" samples the model zoo's entry NAME (no training needed)


def resolve_source(entry: str) -> str:
    """A fake source as given (a zoo entry ``zoo:NAME`` too: ``open_generator`` checks it), or the last match (by
    name: the newest run stamp) of a glob pattern."""
    if entry.startswith(ZOO_PREFIX):
        return entry
    if any(c in entry for c in "*?["):
        root, pattern = (Path("/"), entry.lstrip("/")) if entry.startswith("/") else (Path("."), entry)
        matches = sorted(root.expanduser().glob(pattern))
        if not matches:
            raise FileNotFoundError(
                f"data.fakes pattern {entry} matches nothing; train that GAN first (python train.py --config "
                "configs/<gan>.yaml) or list a checkpoint or image folder that exists"
            )
        return str(matches[-1])
    if not Path(entry).expanduser().exists():
        raise FileNotFoundError(
            f"data.fakes entry {entry} does not exist; list GAN checkpoints (<run>/checkpoints/last.ckpt) "
            "or folders of generated images (python generate.py ... writes them)"
        )
    return entry


def _shares(count: int, sources: int) -> list[int]:
    base, extra = divmod(count, sources)
    return [base + (1 if i < extra else 0) for i in range(sources)]


def _as_uint8(images: torch.Tensor, source: str = "the real datamodule") -> torch.Tensor:
    if images.dtype != torch.uint8:
        raise ValueError(f"{source} must yield uint8 images, got {images.dtype}")
    return images
