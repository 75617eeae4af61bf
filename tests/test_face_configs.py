"""The face configs run through the real CLI entry point for two steps, on tiny synthetic data.

Each runs at its own image size with the network widths shrunk; the generic every-config check is
in test_cli.py, these also check that each config's seed settings reach the model.
"""

import csv
from pathlib import Path

import pytest
import torch
import yaml

from gan_modules.cli import cli_main
from gan_modules.commands.common import load_gan

ROOT = Path(__file__).resolve().parents[1]
FACE_CONFIGS = ["dcgan_anime.yaml", "dcgan_celeba.yaml", "facegan_celeba.yaml", "unet_celeba.yaml"]
TINY_MODEL = ["--model.g_channels", "4", "--model.d_channels", "4"]  # the same names in all three variants
# The U-Net at 256 costs ~10 s even this narrow; 32 exercises the same code (the model's depth and
# patch map follow the linked data.image_size), and test_face_gans.py builds the 256 networks.
TEST_SIZE = {"unet_celeba.yaml": 32}


def run_config(tmp_path, config, *extra):
    size = yaml.safe_load((ROOT / "configs" / config).read_text())["data"]["init_args"]["image_size"]
    size = TEST_SIZE.get(config, size)
    args = ["--config", str(ROOT / "configs" / config)]
    args += ["--data", "datamodules.SyntheticDataModule", "--data.image_size", str(size), "--data.num_channels", "3"]
    args += ["--data.num_images", "8", "--data.batch_size", "4", *TINY_MODEL]
    args += ["--trainer.max_steps", "2", "--trainer.log_every_n_steps", "1"]
    args += ["--trainer.logger", "gan_modules.loggers.CSVLogger", "--trainer.default_root_dir", str(tmp_path)]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra]
    return cli_main(args), size


def check_dcgan_anime(cli):
    """Seed 002: G Adam 1.5e-4, D 2e-4, beta1 0.5, noisy labels, BatchNorm momentum 0.5, anime faces at 64."""
    opt_d, opt_g = cli.model.configure_optimizers()
    assert opt_g.param_groups[0]["lr"] == 1.5e-4 and opt_d.param_groups[0]["lr"] == 2e-4
    assert opt_g.param_groups[0]["betas"] == (0.5, 0.999)
    assert (cli.model.objective.real_label, cli.model.objective.fake_label) == ((0.8, 1.0), (0.0, 0.2))
    assert all(m.momentum == 0.5 for m in cli.model.generator.modules() if isinstance(m, torch.nn.BatchNorm2d))
    data = yaml.safe_load((ROOT / "configs" / "dcgan_anime.yaml").read_text())["data"]
    assert data["class_path"].endswith("AnimeFacesDataModule") and data["init_args"]["image_size"] == 64


def check_dcgan_celeba(cli):
    opt_d, opt_g = cli.model.configure_optimizers()
    assert opt_g.param_groups[0]["lr"] == opt_d.param_groups[0]["lr"] == 2e-4
    data = yaml.safe_load((ROOT / "configs" / "dcgan_celeba.yaml").read_text())["data"]
    assert data["class_path"].endswith("CelebADataModule") and data["init_args"]["image_size"] == 64


def check_facegan_celeba(cli):
    """Seed 004: latent 32, RMSprop 1e-4 on both, clipping by value 1.0, label noise 0.05."""
    model = cli.model
    assert model.latent_dim == 32
    for opt in model.optimizers():
        assert isinstance(opt.optimizer, torch.optim.RMSprop) and opt.optimizer.param_groups[0]["lr"] == 1e-4
    hp = model.hparams
    assert (hp.grad_clip_d, hp.grad_clip_g, hp.grad_clip_algorithm) == (1.0, 1.0, "value")
    assert (model.objective.real_label, model.objective.fake_label) == ((0.95, 1.0), (0.0, 0.05))


def check_unet_celeba(cli):
    """Seed 000: colorization pix2pix at 256 (run at 32 here), lambda_l1 100, batch 8; reloads to the same grid."""
    model = cli.model
    assert model.input_transform == "colorize" and model.lambda_l1 == 100.0
    data = yaml.safe_load((ROOT / "configs" / "unet_celeba.yaml").read_text())["data"]["init_args"]
    assert (data["image_size"], data["batch_size"]) == (256, 8)
    assert model.discriminate(model.fixed_real, model.transform(model.fixed_real)).shape[-2:] == (6, 6)  # 32/16 + 4
    rows = list(csv.DictReader((cli.run_dir / "metrics.csv").open()))
    assert float(rows[0]["train/g_l1"]) > 0
    restored = load_gan(cli.run_dir / "checkpoints" / "last.ckpt")
    torch.testing.assert_close(restored.sample_grid(), model.sample_grid(), rtol=0, atol=0)


CHECKS = {
    "dcgan_anime.yaml": check_dcgan_anime,
    "dcgan_celeba.yaml": check_dcgan_celeba,
    "facegan_celeba.yaml": check_facegan_celeba,
    "unet_celeba.yaml": check_unet_celeba,
}


@pytest.mark.parametrize("config", FACE_CONFIGS)
def test_face_config_runs_two_steps_with_its_seed_settings(tmp_path, config):
    cli, size = run_config(tmp_path, config)
    assert cli.trainer.global_step == 2 and cli.model.d_updates == cli.model.g_updates == 1
    assert cli.model.hparams.image_size == size and cli.model.hparams.num_channels == 3
    run = cli.run_dir
    assert run.parent.name == Path(config).stem
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "samples" / "epoch_0000.png").is_file()
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert {"train/d_loss", "train/g_loss"} <= set(rows[0])
    CHECKS[config](cli)


def test_gpu_overlay_composes_with_a_run_config(capsys):
    args = ["--config", str(ROOT / "configs" / "facegan_celeba.yaml")]
    args += ["--config", str(ROOT / "configs" / "trainer" / "gpu.yaml"), "--print_config"]
    with pytest.raises(SystemExit):
        cli_main(args)
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["trainer"]["accelerator"] == "gpu" and config["trainer"]["precision"] == "bf16-mixed"
    assert config["trainer"]["max_steps"] == 40000  # the run config's own trainer settings survive
    assert config["model"]["class_path"] == "gan_modules.FaceGAN"
