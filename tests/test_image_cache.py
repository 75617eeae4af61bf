"""The folder datamodules' preprocessing cache: built once, rebuilt on change, never half-written or reused broken.

The tiny datasets and their helpers come from tests/test_image_datamodules.py.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest
from test_image_datamodules import SIZE, image_ids, make_bad_folder, make_layout, red_of, save_solid

import datamodules.cache as cache
from datamodules.images import CelebADataModule, ImageFolderDataModule


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records every image decode (the cache's and the on-the-fly dataset's)."""
    calls: list[Path] = []
    real = cache.decode_image

    def counting(path: Path, image_size: int, crop_size: int | None, num_channels: int = 3) -> np.ndarray:
        calls.append(path)
        return real(path, image_size, crop_size, num_channels)

    monkeypatch.setattr(cache, "decode_image", counting)
    return calls


def test_cache_is_built_once_and_rebuilt_when_settings_or_files_change(tmp_path: Path, decode_calls: list) -> None:
    make_layout(tmp_path, "torchvision")
    cache_dir = tmp_path / ".cache"

    def setup(**kwargs) -> CelebADataModule:
        dm = CelebADataModule(data_dir=str(tmp_path), **{"image_size": SIZE, **kwargs})
        dm.prepare_data()
        dm.setup()
        return dm

    setup()
    assert len(decode_calls) == 10  # train (8) + test (2); the val split is not needed
    built = {p: p.stat().st_mtime_ns for p in cache_dir.glob("*.npy")}
    assert len(built) == 2
    dm = setup()
    assert len(decode_calls) == 10, "the second run decoded images instead of reading the cache"
    assert isinstance(dm.train_dataset.images, np.memmap)
    assert {p: p.stat().st_mtime_ns for p in cache_dir.glob("*.npy")} == built
    setup(image_size=2 * SIZE)
    assert len(decode_calls) == 20
    setup(crop_size=100)
    assert len(decode_calls) == 30
    assert len(list(cache_dir.glob("*.npy"))) == 6  # other settings keep their own files
    # A changed file (new size and mtime) rebuilds the train split only, and removes the stale file.
    save_solid(tmp_path / "celeba" / "img_align_celeba" / "000003.jpg", (red_of(3), 120, 60), size=(26, 30))
    os.utime(tmp_path / "celeba" / "img_align_celeba" / "000003.jpg", ns=(1, 1))
    setup()
    assert len(decode_calls) == 38
    assert len(list(cache_dir.glob("celeba-train-8px-crop178-*.npy"))) == 1
    # The val and test splits have their own files: switching val_split back and forth builds each once.
    setup(val_split="val")
    setup(val_split="test")
    assert len(decode_calls) == 40
    assert {p.name.split("-")[1] for p in cache_dir.glob("celeba-*-8px-crop178-*.npy")} == {"train", "val", "test"}


def test_interrupted_cache_write_leaves_nothing_usable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_layout(tmp_path, "torchvision")
    real = cache.decode_image
    calls = []

    def interrupted(path: Path, image_size: int, crop_size: int | None, num_channels: int = 3) -> np.ndarray:
        calls.append(path)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(path, image_size, crop_size, num_channels)

    monkeypatch.setattr(cache, "decode_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        CelebADataModule(data_dir=str(tmp_path), image_size=SIZE).prepare_data()
    assert list((tmp_path / ".cache").iterdir()) == []
    monkeypatch.setattr(cache, "decode_image", real)
    dm = CelebADataModule(data_dir=str(tmp_path), image_size=SIZE)
    dm.setup()
    assert image_ids(dm.train_dataset) == list(range(1, 9))


def _build_slowly(data_dir: str) -> None:
    real = cache.decode_image

    def slow(path: Path, image_size: int, crop_size: int | None, num_channels: int = 3) -> np.ndarray:
        time.sleep(0.05)
        return real(path, image_size, crop_size, num_channels)

    cache.decode_image = slow
    CelebADataModule(data_dir=data_dir, image_size=SIZE).prepare_data()


def test_killed_cache_write_is_not_reused(tmp_path: Path) -> None:
    make_layout(tmp_path, "torchvision")
    process = multiprocessing.get_context("fork").Process(target=_build_slowly, args=(str(tmp_path),))
    process.start()
    deadline = time.monotonic() + 20
    while not list((tmp_path / ".cache").glob(".*.tmp*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.kill()  # SIGKILL: no cleanup runs
    process.join()
    assert list((tmp_path / ".cache").glob(".*.tmp*")), "the build finished before it could be killed"
    # Only the hidden temporary file (".<name>.<random>.tmp.npy") is there; no cache under a name a run reads.
    assert [p for p in (tmp_path / ".cache").glob("*.npy") if not p.name.startswith(".")] == []
    dm = CelebADataModule(data_dir=str(tmp_path), image_size=SIZE)
    dm.setup()
    assert image_ids(dm.train_dataset) == list(range(1, 9))


def test_process_pool_build_matches_in_process_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_bad_folder(tmp_path / "imgs")
    serial = ImageFolderDataModule(data_dir=str(tmp_path / "imgs"), image_size=SIZE, cache_dir=str(tmp_path / "a"))
    serial.setup()
    monkeypatch.setattr(cache, "POOL_MIN_FILES", 1)
    monkeypatch.setattr(cache, "available_cpus", lambda: 2)
    pooled = ImageFolderDataModule(data_dir=str(tmp_path / "imgs"), image_size=SIZE, cache_dir=str(tmp_path / "b"))
    pooled.setup()
    assert np.array_equal(serial.train_dataset.images, pooled.train_dataset.images)


def test_unwritable_cache_dir_is_a_clear_error(tmp_path: Path) -> None:
    save_solid(tmp_path / "imgs" / "a.png", (1, 2, 3))
    (tmp_path / "file").write_text("")
    dm = ImageFolderDataModule(data_dir=str(tmp_path / "imgs"), cache_dir=str(tmp_path / "file" / "cache"))
    with pytest.raises(OSError, match="--data.cache_dir.*--data.cache false"):
        dm.setup()
