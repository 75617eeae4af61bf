"""generate.py: images and grids from a checkpoint, EMA generator, nothing overwritten."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml
from PIL import Image

from datamodules import SyntheticDataModule
from gan_modules import VanillaGAN
from gan_modules.commands.common import datamodule_from_run
from gan_modules.commands.generate import generate_images, main
from gan_modules.specs import UnsafeClassError
from gan_modules.visualize import interpolation_latents, slerp


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ckpt")
    model = VanillaGAN(latent_dim=8, image_size=8, num_channels=1, g_hidden_dims=(16,), d_hidden_dims=(16,))
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(model, datamodule=SyntheticDataModule(image_size=8, num_images=16, batch_size=8))
    path = tmp / "last.ckpt"
    trainer.save_checkpoint(path, weights_only=False)  # a full checkpoint, as train.py writes
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
    pixels = torch.from_numpy(np.array(Image.open(files[0]).convert("L"))).float()
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


@pytest.mark.parametrize(
    "outputs, message",
    [
        (["--grid", "{t}/x.png", "--interpolate", "{t}/x.png"], "--grid and --interpolate name the same file"),
        (["--out_dir", "{t}/out", "--interpolate", "{t}/out/i.png"], "--interpolate {t}/out/i.png is inside --out_dir"),
        (["--out_dir", "{t}/out", "--grid", "{t}/out/00.png"], "--grid {t}/out/00.png is inside --out_dir"),
        (["--out_dir", "{t}/a_file"], "is a file, not a folder"),
    ],
)
def test_output_paths_that_would_clash_are_refused_before_anything_is_written(
    checkpoint, tmp_path, capsys, outputs, message
):
    path, _ = checkpoint
    (tmp_path / "a_file").write_bytes(b"keep")
    before = sorted(p.name for p in tmp_path.iterdir())
    args = [arg.format(t=tmp_path) for arg in outputs]
    assert main(["--ckpt_path", str(path), "--num_images", "4", *args]) == 1
    assert message.format(t=tmp_path) in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before and (tmp_path / "a_file").read_bytes() == b"keep"


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["--ckpt_path", str(tmp_path / "nope.ckpt"), "--grid", str(tmp_path / "g.png")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_interpolation_grid_and_latent_walk(checkpoint, tmp_path, capsys):
    path, model = checkpoint
    interp, walk = tmp_path / "interp.png", tmp_path / "walk.gif"
    args = ["--ckpt_path", str(path), "--interpolate", str(interp), "--pairs", "3", "--steps", "5"]
    assert main([*args, "--walk", str(walk), "--walk_keys", "3"]) == 0
    # make_grid: 5 columns and 3 rows of 8x8 images with 2-pixel padding.
    assert Image.open(interp).size == (5 * 10 + 2, 3 * 10 + 2)
    gif = Image.open(walk)
    assert gif.n_frames == 3 * 12 and gif.size == (8, 8)
    # The grid's first and last columns are the two endpoint latents' images.
    z = interpolation_latents(8, 3, 5)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g)
    torch.testing.assert_close(z.view(3, 5, 8)[:, 0], a)
    torch.testing.assert_close(z.view(3, 5, 8)[:, -1], b)
    # A second run refuses to overwrite either file.
    before = interp.read_bytes()
    assert main(args) == 1 and "already exists" in capsys.readouterr().err
    assert interp.read_bytes() == before
    assert main(["--ckpt_path", str(path), "--interpolate", str(tmp_path / "x.png"), "--steps", "1"]) == 1
    assert "--steps >= 2, got 8 and 1" in capsys.readouterr().err and not (tmp_path / "x.png").exists()


def test_slerp_stays_on_the_sphere_between_its_ends():
    a, b = torch.randn(4, 16), torch.randn(4, 16)
    b = b / b.norm(dim=1, keepdim=True) * a.norm(dim=1, keepdim=True)  # equal norms: slerp keeps them
    path = slerp(a, b, torch.linspace(0, 1, 7))
    torch.testing.assert_close(path[:, 0], a)
    torch.testing.assert_close(path[:, -1], b)
    torch.testing.assert_close(path.norm(dim=2), a.norm(dim=1, keepdim=True).expand(4, 7))
    # The straight line dips through the middle of the ball; slerp's midpoint does not.
    assert ((a + b) / 2).norm(dim=1).lt(path[:, 3].norm(dim=1)).all()
    # (Anti)parallel ends fall back to the straight line instead of dividing by zero.
    assert torch.isfinite(slerp(a, 2 * a, torch.linspace(0, 1, 3))).all()


@pytest.mark.parametrize("class_path", ["os.system", "subprocess.Popen", "gan_modules.VanillaGAN"])
def test_a_run_folders_config_can_name_only_a_datamodule(tmp_path, class_path):
    """DRS/MH (generate.py) and evaluate.py rebuild the dataset from <run>/config.yaml; a run folder from elsewhere
    must not make them call anything else (here: a shell command that would leave a marker file)."""
    marker = tmp_path / "ran"
    args = {"command": f"touch {marker}"} if class_path == "os.system" else {"args": ["touch", str(marker)]}
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"data": {"class_path": class_path, "init_args": args}}))
    with pytest.raises(UnsafeClassError, match="not a subclass of .*LightningDataModule: refused"):
        datamodule_from_run(tmp_path / "checkpoints" / "last.ckpt", None)
    assert not marker.exists()


def test_a_run_folders_datamodule_is_rebuilt_with_the_data_dir_override(tmp_path):
    config = {"data": {"class_path": "datamodules.SyntheticDataModule", "init_args": {"num_images": 8}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    data = datamodule_from_run(tmp_path / "checkpoints" / "last.ckpt", str(tmp_path / "elsewhere"))
    assert isinstance(data, SyntheticDataModule) and data.num_images == 8
    assert data.data_dir == str(tmp_path / "elsewhere")
