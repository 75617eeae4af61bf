"""generate.py: images and grids from a checkpoint, EMA generator, nothing overwritten."""

import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from datamodules import SyntheticDataModule
from gan_modules import VanillaGAN
from gan_modules.generate import generate_images, main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ckpt")
    model = VanillaGAN(latent_dim=8, image_size=8, num_channels=1, g_hidden_dims=(16,), d_hidden_dims=(16,))
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(model, datamodule=SyntheticDataModule(image_size=8, num_images=16, batch_size=8))
    path = tmp / "last.ckpt"
    trainer.save_checkpoint(path)
    return path, model


def test_writes_images_and_grid_from_the_ema_generator(checkpoint, tmp_path, capsys):
    path, model = checkpoint
    assert main(["--ckpt_path", str(path), "--num_images", "12", "--out_dir", str(tmp_path / "out"),
                 "--grid", str(tmp_path / "grid.png"), "--seed", "3"]) == 0  # fmt: skip
    files = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in files] == [f"{i:02d}.png" for i in range(12)]
    assert Image.open(files[0]).size == (8, 8)
    assert Image.open(tmp_path / "grid.png").size[0] > 8 * 3
    assert "EMA generator" in capsys.readouterr().out
    # The files hold the EMA generator's output for seed 3, rounded to 8 bits.
    expected = generate_images(model, 12, 5, 3)
    z = torch.randn(12, 8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(expected, model.generator_ema.module.eval()(z).clamp(-1, 1))
    pixels = torch.tensor(list(Image.open(files[0]).convert("L").getdata()), dtype=torch.float32).view(8, 8)
    assert (pixels - (expected[0, 0] + 1) * 127.5).abs().max() <= 1.0


def test_refuses_to_overwrite(checkpoint, tmp_path, capsys):
    path, _ = checkpoint
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "00.png").write_bytes(b"keep me")
    assert main(["--ckpt_path", str(path), "--out_dir", str(tmp_path / "out")]) == 1
    assert "already has files" in capsys.readouterr().err
    assert (tmp_path / "out" / "00.png").read_bytes() == b"keep me"
    (tmp_path / "grid.png").write_bytes(b"keep")
    assert main(["--ckpt_path", str(path), "--grid", str(tmp_path / "grid.png")]) == 1
    assert (tmp_path / "grid.png").read_bytes() == b"keep"


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["--ckpt_path", str(tmp_path / "nope.ckpt"), "--grid", str(tmp_path / "g.png")]) == 1
    assert "does not exist" in capsys.readouterr().err
