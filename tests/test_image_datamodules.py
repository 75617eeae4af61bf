"""Folder datamodules (anime faces, CelebA, any folder): layouts, splits, crop, bad files, loaders.

The preprocessing cache has its own file, tests/test_image_cache.py."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import datamodules.cache as cache
from datamodules.images import (
    AnimeFacesDataModule,
    CelebADataModule,
    ImageFileDataset,
    ImageFolderDataModule,
    holdout,
    read_partition,
)

SIZE = 8  # output resolution for most tests: tiny keeps the whole file fast


def red_of(i: int) -> int:
    """Image number i is painted with this red value, so a split's members can be read off its pixels."""
    return 10 * i


def save_solid(path: Path, color: tuple[int, ...], size: tuple[int, int] = (24, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, quality=95)  # quality is ignored by PNG


def make_celeba_images(folder: Path, n: int = 12) -> None:
    for i in range(1, n + 1):
        save_solid(folder / f"{i:06d}.jpg", (red_of(i), 120, 60))


# Images 1-8 train, 9-10 val, 11-12 test, as list_eval_partition numbers them.
PARTITION = {i: 0 if i <= 8 else 1 if i <= 10 else 2 for i in range(1, 13)}


def write_partition(path: Path) -> None:
    if path.suffix == ".csv":
        lines = ["image_id,partition"] + [f"{i:06d}.jpg,{p}" for i, p in PARTITION.items()]
    else:
        lines = [f"{i:06d}.jpg {p}" for i, p in PARTITION.items()]
    path.write_text("\n".join(lines) + "\n")


def image_ids(dataset) -> list[int]:
    """Image numbers in a dataset, recovered from the red channel."""
    indices = list(range(len(dataset)))
    # __getitems__ is what the DataLoader calls on the cached dataset (one fancy index, a copy).
    images = (
        dataset.__getitems__(indices)
        if hasattr(dataset, "__getitems__")
        else torch.stack([dataset[i] for i in indices])
    )
    return sorted(round(float(r) / 10) for r in images[:, 0].float().mean(dim=(1, 2)))


def make_layout(root: Path, layout: str) -> Path:
    """Builds a tiny CelebA in one of the supported layouts; returns the data_dir to pass."""
    if layout in ("torchvision", "torchvision-celeba-dir"):
        make_celeba_images(root / "celeba" / "img_align_celeba")
        write_partition(root / "celeba" / "list_eval_partition.txt")
        return root if layout == "torchvision" else root / "celeba"
    if layout == "kaggle":
        make_celeba_images(root / "img_align_celeba" / "img_align_celeba")
        write_partition(root / "list_eval_partition.csv")
        return root
    if layout == "kaggle-download-dir":
        make_celeba_images(root / "celeba-dataset" / "img_align_celeba" / "img_align_celeba")
        write_partition(root / "celeba-dataset" / "list_eval_partition.csv")
        return root
    if layout == "kaggle-inner-folder":
        make_celeba_images(root / "img_align_celeba" / "img_align_celeba")
        write_partition(root / "list_eval_partition.csv")
        return root / "img_align_celeba" / "img_align_celeba"
    raise AssertionError(layout)


@pytest.mark.parametrize(
    "layout", ["torchvision", "torchvision-celeba-dir", "kaggle", "kaggle-download-dir", "kaggle-inner-folder"]
)
@pytest.mark.parametrize("cache_on", [True, False])
def test_celeba_layouts_use_the_official_partition(tmp_path: Path, layout: str, cache_on: bool) -> None:
    data_dir = make_layout(tmp_path / "data", layout)
    dm = CelebADataModule(data_dir=str(data_dir), image_size=SIZE, cache=cache_on, cache_dir=str(tmp_path / "c"))
    dm.prepare_data()
    dm.setup("fit")
    assert image_ids(dm.train_dataset) == list(range(1, 9))
    assert image_ids(dm.val_dataset) == [11, 12]  # val_split="test" by default
    assert dm.image_size == SIZE and dm.num_channels == 3
    if cache_on:
        assert isinstance(dm.train_dataset.images, np.memmap)
    else:
        assert isinstance(dm.train_dataset, ImageFileDataset)


def test_celeba_val_split_option(tmp_path: Path) -> None:
    make_layout(tmp_path, "torchvision")
    dm = CelebADataModule(data_dir=str(tmp_path), image_size=SIZE, val_split="val")
    dm.setup()
    assert image_ids(dm.val_dataset) == [9, 10]
    with pytest.raises(ValueError, match="val_split"):
        CelebADataModule(val_split="train")  # type: ignore[arg-type]


def test_celeba_plain_folder_without_partition_holds_out_a_fraction(tmp_path: Path) -> None:
    make_celeba_images(tmp_path / "faces")
    dm = CelebADataModule(data_dir=str(tmp_path / "faces"), image_size=SIZE, val_fraction=0.25)
    dm.setup()
    train, val = image_ids(dm.train_dataset), image_ids(dm.val_dataset)
    assert len(train) == 9 and len(val) == 3 and sorted(train + val) == list(range(1, 13))
    again = CelebADataModule(data_dir=str(tmp_path / "faces"), image_size=SIZE, val_fraction=0.25)
    again.setup()
    assert image_ids(again.val_dataset) == val  # deterministic
    no_val = CelebADataModule(data_dir=str(tmp_path / "faces"), image_size=SIZE)
    no_val.setup()
    assert len(no_val.train_dataset) == 12 and no_val.val_dataset is None


def test_holdout_does_not_depend_on_listing_order(tmp_path: Path) -> None:
    files = [cache.SourceFile(tmp_path / f"{i}.png", f"{i}.png", 1, 1) for i in range(40)]
    train, val = holdout(files, 0.1)
    train_rev, val_rev = holdout(files[::-1], 0.1)
    assert len(val) == 4 and len(train) == 36
    assert {f.name for f in val} == {f.name for f in val_rev}
    assert holdout(files, 0.001)[1] != []  # a positive fraction holds out at least one image


def test_celeba_partition_file_errors_and_subsets(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "list_eval_partition.txt"
    bad.write_text("000001.jpg 0\n000002.jpg seven\n")
    with pytest.raises(ValueError, match="list_eval_partition.txt.*entry 2"):
        read_partition(bad)
    # The CelebA-128 seed trains on the first 10k files: every one is in split 0, none in test.
    make_celeba_images(tmp_path / "celeba" / "img_align_celeba", n=6)
    write_partition(tmp_path / "celeba" / "list_eval_partition.txt")
    save_solid(tmp_path / "celeba" / "img_align_celeba" / "extra.jpg", (0, 0, 0))
    dm = CelebADataModule(data_dir=str(tmp_path), image_size=SIZE)
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert len(dm.train_dataset) == 6 and dm.val_dataset is None
    assert "extra.jpg" in caplog.text and "no image of the test split" in caplog.text


@pytest.mark.parametrize("layout", ["flat", "kaggle-images", "nested-characters", "nested-in-data-dir"])
def test_anime_layouts(tmp_path: Path, layout: str) -> None:
    folders = {
        "flat": [tmp_path],
        "kaggle-images": [tmp_path / "images"],
        "nested-characters": [tmp_path / "animeface-character-dataset" / "thumb" / c for c in ("000_a", "001_b")],
        "nested-in-data-dir": [tmp_path / c for c in ("000_a", "001_b", "002_c")],
    }[layout]
    for folder in folders:
        for i in range(4):
            save_solid(folder / f"{i}.png", (200, 100, 50), size=(30, 30))
    dm = AnimeFacesDataModule(data_dir=str(tmp_path), cache_dir=str(tmp_path / ".c"))
    dm.setup()
    assert len(dm.train_dataset) == 4 * len(folders) and dm.val_dataset is None
    assert dm.image_size == 64 and dm.train_dataset.__getitems__([0]).shape == (1, 3, 64, 64)


def test_image_folder_searches_recursively_and_skips_hidden_folders(tmp_path: Path) -> None:
    for sub in ("a", "a/b/c", ".hidden"):
        save_solid(tmp_path / sub / "x.png", (1, 2, 3))
    dm = ImageFolderDataModule(data_dir=str(tmp_path), image_size=SIZE)
    dm.setup()
    assert len(dm.train_dataset) == 2
    assert (tmp_path / ".cache").is_dir()  # the default cache_dir, itself hidden from the scan


def test_data_dir_expands_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    save_solid(tmp_path / "anime" / "images" / "1.png", (1, 2, 3))
    dm = AnimeFacesDataModule(data_dir="~/anime", image_size=SIZE)
    dm.setup()
    assert len(dm.train_dataset) == 1


def test_celeba_center_crop_removes_top_and_bottom(tmp_path: Path) -> None:
    """A real-size 178x218 face with red 20-row bands top and bottom: the 178x178 centre crop is all green."""
    pixels = np.zeros((218, 178, 3), np.uint8)
    pixels[:] = (0, 255, 0)
    pixels[:20] = pixels[-20:] = (255, 0, 0)
    folder = tmp_path / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    Image.fromarray(pixels).save(folder / "000001.jpg", quality=95, subsampling=0)
    dm = CelebADataModule(data_dir=str(tmp_path), image_size=64)
    dm.setup()
    (face,) = dm.train_dataset.__getitems__([0]).float()
    assert face.shape == (3, 64, 64)
    assert face[0].max() < 40 and face[1].min() > 215, "red bands leaked into the crop"
    # The control: a crop that is not centred (here: no crop, the image squashed) shows the bands.
    squashed = cache.decode_image(folder / "000001.jpg", image_size=64, crop_size=10_000).astype(float)
    squashed_full = np.asarray(Image.open(folder / "000001.jpg").resize((64, 64)), dtype=float)
    assert squashed[0].max() < 40 and squashed_full[..., 0].max() > 200


def test_generic_center_crop_uses_the_shorter_side(tmp_path: Path) -> None:
    pixels = np.zeros((24, 40, 3), np.uint8)
    pixels[:] = (0, 0, 255)
    pixels[:, :8] = pixels[:, -8:] = (255, 255, 0)
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    image = cache.decode_image(tmp_path / "wide.png", image_size=SIZE, crop_size=None)
    assert image.shape == (3, SIZE, SIZE) and image.dtype == np.uint8
    assert (image[2] == 255).all() and (image[:2] == 0).all()


def _png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def make_bad_folder(folder: Path) -> None:
    """4 good JPEGs, 3 undecodable image files, 2 non-image files, 5 odd modes that convert."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        save_solid(folder / f"good{i}.jpg", (50, 60, 70))
    (folder / "corrupt.jpg").write_bytes(np.random.default_rng(0).bytes(500))
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG", quality=95)
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    (folder / "Thumbs.db").write_bytes(b"\x00" * 64)
    Image.new("L", (24, 30), 100).save(folder / "gray.png")
    Image.new("RGBA", (24, 30), (255, 0, 0, 0)).save(folder / "rgba.png")
    palette = Image.new("P", (24, 30), 3)
    palette.putpalette([0, 0, 0] * 3 + [10, 200, 30] + [0, 0, 0] * 252)
    palette.save(folder / "palette.png")
    Image.fromarray(np.full((30, 24), 32896, np.uint16)).save(folder / "gray16.png")
    Image.new("CMYK", (24, 30), (0, 0, 0, 0)).save(folder / "cmyk.jpg")


@pytest.mark.parametrize(
    ("name", "expected_rgb"),
    [
        ("gray.png", (100, 100, 100)),
        ("rgba.png", (255, 255, 255)),  # transparent red composited on white, not red with alpha dropped
        ("palette.png", (10, 200, 30)),
        ("gray16.png", (128, 128, 128)),  # 32896 / 257, not PIL's saturated 255
        ("cmyk.jpg", (255, 255, 255)),
    ],
)
def test_odd_modes_convert_to_rgb(tmp_path: Path, name: str, expected_rgb: tuple[int, int, int]) -> None:
    make_bad_folder(tmp_path)
    image = cache.decode_image(tmp_path / name, image_size=SIZE, crop_size=None)
    assert image.shape == (3, SIZE, SIZE) and image.dtype == np.uint8
    assert np.abs(image.reshape(3, -1).astype(int) - np.array(expected_rgb)[:, None]).max() <= 1


@pytest.mark.parametrize("name", ["gray.png", "gray16.png", "rgba.png", "palette.png"])
def test_one_channel_decode_is_the_luma_of_the_rgb_decode(tmp_path: Path, name: str) -> None:
    make_bad_folder(tmp_path)
    rgb = cache.decode_image(tmp_path / name, image_size=SIZE, crop_size=None).astype(float)
    gray = cache.decode_image(tmp_path / name, image_size=SIZE, crop_size=None, num_channels=1)
    assert gray.shape == (1, SIZE, SIZE) and gray.dtype == np.uint8
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]  # ITU-R 601, PIL's convert("L")
    assert np.abs(gray[0].astype(float) - luma).max() <= 1
    with pytest.raises(ValueError, match="1 or 3 channels"):
        cache.decode_image(tmp_path / name, image_size=SIZE, crop_size=None, num_channels=2)


def test_bad_files_are_skipped_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_bad_folder(tmp_path / "imgs")
    dm = ImageFolderDataModule(data_dir=str(tmp_path / "imgs"), image_size=SIZE, cache_dir=str(tmp_path / "c"))
    with caplog.at_level(logging.WARNING):
        dm.prepare_data()
    dm.setup()
    assert len(dm.train_dataset) == 4 + 5  # good files + converted modes
    warning = caplog.text
    assert "skipped 3 unreadable image file(s)" in warning and "ignored 2 non-image file(s)" in warning
    for name in ("corrupt.jpg", "truncated.jpg", "empty.jpg", "notes.txt", "Thumbs.db"):
        assert name in warning
    # The cache was allocated for 12 images and cut to 9: its header and its size agree.
    (path,) = (tmp_path / "c").glob("*.npy")
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        shape, _, _ = np.lib.format.read_array_header_1_0(f)
        data_offset = f.tell()
    assert shape == (9, 3, SIZE, SIZE)
    assert path.stat().st_size == data_offset + 9 * 3 * SIZE * SIZE
    assert np.load(path, mmap_mode="r").shape == (9, 3, SIZE, SIZE)


def test_bad_files_without_cache_are_replaced_on_the_fly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_bad_folder(tmp_path)
    dataset = ImageFileDataset([tmp_path / "corrupt.jpg", tmp_path / "good0.jpg"], image_size=SIZE, crop_size=None)
    with caplog.at_level(logging.WARNING):
        image = dataset[0]
    assert image.shape == (3, SIZE, SIZE) and image[0].float().mean() == pytest.approx(50, abs=2)
    assert "corrupt.jpg" in caplog.text
    only_bad = ImageFileDataset([tmp_path / "corrupt.jpg", tmp_path / "empty.jpg"], image_size=SIZE, crop_size=None)
    with pytest.raises(ValueError, match="could not be decoded"):
        only_bad[0]


def test_empty_or_unreadable_folders_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files .* under .*empty"):
        ImageFolderDataModule(data_dir=str(tmp_path / "empty")).setup()
    with pytest.raises(FileNotFoundError, match="splcher/animefacedataset"):
        AnimeFacesDataModule(data_dir=str(tmp_path / "empty")).setup()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_bytes(b"")
    (junk / "b.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="none of the 2 image files .*junk could be decoded"):
        ImageFolderDataModule(data_dir=str(junk)).setup()


def test_missing_data_messages_name_layouts_and_sources(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as celeba:
        CelebADataModule(data_dir=str(tmp_path / "nowhere")).setup()
    for text in (
        "celeba/img_align_celeba/*.jpg",
        "list_eval_partition.txt",
        "img_align_celeba/img_align_celeba/*.jpg",
        "list_eval_partition.csv",
        "jessicali9530/celeba-dataset",
        "torchvision.datasets.CelebA",
        "--data.data_dir",
    ):
        assert text in str(celeba.value)
    with pytest.raises(FileNotFoundError) as anime:
        AnimeFacesDataModule(data_dir=str(tmp_path / "nowhere")).setup()
    for text in ("Anime Face Dataset", "splcher/animefacedataset", "*/*.png", "--data.data_dir"):
        assert text in str(anime.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderDataModule(data_dir=str(tmp_path / "nowhere")).setup()
    (tmp_path / "celeba").mkdir()
    (tmp_path / "celeba" / "img_align_celeba.zip").write_bytes(b"PK")
    with pytest.raises(FileNotFoundError, match="unzip"):
        CelebADataModule(data_dir=str(tmp_path)).setup()


def test_invalid_arguments_are_value_errors() -> None:
    with pytest.raises(ValueError, match="image_size"):
        ImageFolderDataModule(image_size=0)
    with pytest.raises(ValueError, match="crop_size"):
        CelebADataModule(crop_size=-1)
    with pytest.raises(ValueError, match="val_fraction"):
        AnimeFacesDataModule(val_fraction=1.0)


@pytest.mark.parametrize(("cache_on", "num_workers"), [(True, 0), (False, 0), (False, 2)])
def test_train_dataloader_yields_uint8_batches(tmp_path: Path, cache_on: bool, num_workers: int) -> None:
    make_layout(tmp_path, "kaggle")
    dm = CelebADataModule(data_dir=str(tmp_path), image_size=16, batch_size=4, num_workers=num_workers, cache=cache_on)
    dm.prepare_data()
    batches = list(dm.train_dataloader())
    assert len(batches) == 2  # 8 train images, drop_last
    for batch in batches:
        assert batch.dtype == torch.uint8 and batch.shape == (4, 3, 16, 16)


def test_lightning_cli_can_build_the_datamodules_from_arguments() -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(CelebADataModule, "data")
    config = parser.parse_args(["--data.image_size=128", "--data.val_split=val", "--data.cache_dir=~/c"])
    dm = CelebADataModule(**config.data)
    assert dm.image_size == 128 and dm.val_split == "val" and dm.cache_root == Path("~/c").expanduser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--data.val_split=train"])
