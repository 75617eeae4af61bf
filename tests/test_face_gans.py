"""The face GANs: seed 004's FaceGAN and seed 000's U-Net + PatchGAN as a conditional pix2pix."""

import pytest
import pytorch_lightning as pl
import torch
from helpers import make_trainer
from PIL import Image
from torch import nn

from datamodules import SyntheticDataModule
from gan_modules import (
    FaceGAN,
    FaceGANDiscriminator,
    FaceGANGenerator,
    PatchGANDiscriminator,
    Pix2PixGAN,
    UNetGenerator,
)
from gan_modules.callbacks import SampleGrid
from gan_modules.facegan import facegan_start_size
from gan_modules.pix2pix import unet_num_downs


def data(**kwargs):
    defaults = dict(image_size=32, num_channels=3, num_images=16, batch_size=8)
    defaults.update(kwargs)
    return SyntheticDataModule(**defaults)


def tiny_pix2pix(**kwargs):
    defaults = dict(image_size=32, num_channels=3, g_channels=4, d_channels=4, num_samples=4)
    defaults.update(kwargs)
    return Pix2PixGAN(**defaults)


def images(n=4, size=32, channels=3):
    return torch.rand(n, channels, size, size) * 2 - 1


# ---------------------------------------------------------------------- FaceGAN (seed 004)


@pytest.mark.parametrize("size, start", [(16, 2), (32, 4), (64, 8), (128, 16), (256, 32)])
def test_facegan_start_size_is_an_eighth(size, start):
    assert facegan_start_size(size) == start


@pytest.mark.parametrize("size", [8, 24, 28, 100])
def test_facegan_rejects_sizes_it_cannot_build(size):
    with pytest.raises(ValueError, match="multiple of 16"):
        facegan_start_size(size)
    with pytest.raises(ValueError, match="multiple of 16"):
        FaceGAN(image_size=size)


@pytest.mark.parametrize("size", [16, 32])
def test_facegan_shapes_and_range(size):
    g = FaceGANGenerator(latent_dim=8, image_size=size, num_channels=3, base_channels=8)
    d = FaceGANDiscriminator(image_size=size, num_channels=3, base_channels=4)
    fake = g(torch.randn(5, 8) * 10)
    assert fake.shape == (5, 3, size, size)
    assert fake.min() >= -1 and fake.max() <= 1
    logits = d(fake)
    assert logits.shape == (5,)


def test_facegan_matches_the_seed_architecture():
    g = FaceGANGenerator()
    assert (g.start, g.start_channels) == (16, 128)
    assert g.dense[0].out_features == 16 * 16 * 128 and g.dense[0].in_features == 32
    convs = [(type(m).__name__, m.out_channels, m.kernel_size[0], m.stride[0]) for m in g.net if hasattr(m, "stride")]
    assert convs == [
        ("Conv2d", 256, 5, 1),
        ("ConvTranspose2d", 256, 4, 2),
        ("ConvTranspose2d", 256, 4, 2),
        ("ConvTranspose2d", 256, 4, 2),
        ("Conv2d", 512, 5, 1),
        ("Conv2d", 512, 5, 1),
        ("Conv2d", 3, 7, 1),
    ]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in g.modules())
    d = FaceGANDiscriminator()
    d_convs = [(m.out_channels, m.kernel_size[0], m.stride[0]) for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert d_convs == [(256, 3, 1)] + [(256, 4, 2)] * 4
    dropout = next(m for m in d.modules() if isinstance(m, nn.Dropout))
    assert dropout.p == 0.4
    assert d.net[-1].in_features == 256 * 8 * 8  # 128 / 16
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())


def test_facegan_trains_and_writes_samples(tmp_path):
    model = FaceGAN(latent_dim=8, image_size=32, g_channels=8, d_channels=4, num_samples=9)
    trainer = make_trainer(tmp_path, limit_train_batches=2, callbacks=[SampleGrid(make_gif=False)])
    trainer.fit(model, datamodule=data())
    assert (model.d_updates, model.g_updates) == (2, 2)
    assert trainer.global_step == 4
    grid = Image.open(tmp_path / "samples" / "epoch_0000.png")
    assert grid.size == (3 * 34 + 2, 3 * 34 + 2)  # 9 samples, near-square: 3 x 3 with 2 px padding


# ---------------------------------------------------------------------- U-Net and PatchGAN (seed 000)


@pytest.mark.parametrize("size, downs", [(256, 7), (128, 6), (64, 5), (32, 4), (16, 3), (512, 7)])
def test_unet_depth_reaches_a_2x2_bottleneck(size, downs):
    assert unet_num_downs(size) == downs


@pytest.mark.parametrize("size", [4, 6, 7])
def test_unet_rejects_sizes_it_cannot_build(size):
    with pytest.raises(ValueError, match="image_size"):
        unet_num_downs(size)


def test_unet_matches_the_seed_at_256():
    g = UNetGenerator()
    assert [block.net[0].out_channels for block in g.downs] == [64, 128, 256, 512, 512, 512, 512]
    assert [block.net[0].out_channels for block in g.ups] == [512, 512, 512, 512, 256, 128, 64]
    # Each up block after the first reads its predecessor and the same-size encoder output.
    assert [block.net[0].in_channels for block in g.ups] == [512, 1024, 1024, 1024, 768, 384, 192]
    dropouts = [any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in block.modules()) for block in g.ups]
    assert dropouts == [True, True, True, False, False, False, False]
    assert isinstance(g.downs[0].net[1], nn.Identity)  # no BatchNorm on the first block


def test_unet_shape_and_range():
    g = UNetGenerator(image_size=32, in_channels=3, out_channels=3, base_channels=4)
    out = g(images(3) * 10)
    assert out.shape == (3, 3, 32, 32)
    assert out.min() >= -1 and out.max() <= 1


def test_unet_skip_connections_carry_the_input():
    g = UNetGenerator(image_size=32, base_channels=4).eval()
    # Cut the bottleneck path: the innermost up block now outputs zeros whatever the input.
    with torch.no_grad():
        g.ups[0].net[0].weight.zero_()
    x = images(2)
    detail = x.clone()
    detail[:, :, 10, 10] += 0.5  # one pixel of fine detail
    with torch.no_grad():
        assert torch.equal(g.ups[0](torch.randn(2, 32, 2, 2)), torch.zeros(2, 32, 4, 4))
        out, out_detail = g(x), g(detail)
    assert not torch.allclose(out, out_detail)  # only the skips can have carried the change
    # ...and the change stays local: the full-resolution skip keeps it near the pixel.
    changed = (out - out_detail).abs().sum(dim=(0, 1)) > 1e-6
    assert changed[10, 10] and not changed[0, 31] and not changed[31, 0]


@pytest.mark.parametrize("size, patches", [(256, 20), (32, 6), (16, 5)])
def test_patchgan_returns_a_patch_map(size, patches):
    d = PatchGANDiscriminator(image_size=size, in_channels=6, base_channels=4)
    logits = d(images(2, size), images(2, size))
    assert logits.shape == (2, 1, patches, patches)


def test_patchgan_detect_is_one_minus_mean_patch_probability():
    d = PatchGANDiscriminator(image_size=32, in_channels=6, base_channels=4).eval()
    x, y = images(3), images(3)
    p_fake = d.detect(x, y)
    assert p_fake.shape == (3,)
    torch.testing.assert_close(p_fake, 1 - torch.sigmoid(d(x, y).mean(dim=(1, 2, 3))))
    assert ((p_fake >= 0) & (p_fake <= 1)).all()


# ---------------------------------------------------------------------- input transforms


def test_colorize_input_is_the_gray_image_on_every_channel():
    model = tiny_pix2pix(input_transform="colorize")
    real = images()
    gray = model.generator_input(real)
    assert gray.shape == real.shape
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    luma = 0.2989 * real[:, 0] + 0.587 * real[:, 1] + 0.114 * real[:, 2]  # ITU-R 601, as torchvision rounds it
    torch.testing.assert_close(gray[:, 0], luma, rtol=0, atol=1e-5)


def test_super_resolution_input_has_no_detail_finer_than_a_quarter():
    model = tiny_pix2pix(input_transform="super_resolution")
    real = images()
    low = model.generator_input(real)
    assert low.shape == real.shape
    torch.testing.assert_close(model.generator_input(low), low)  # its own down-up: nothing left to remove
    blocks = low.unfold(2, 4, 4).unfold(3, 4, 4)  # [N, C, 8, 8, 4, 4]
    assert torch.equal(blocks, blocks[..., :1, :1].expand_as(blocks))  # constant on each 4x4 block
    torch.testing.assert_close(blocks[..., 0, 0], real.unfold(2, 4, 4).unfold(3, 4, 4).mean(dim=(-1, -2)))


def test_inpaint_input_has_a_constant_square_and_the_rest_unchanged():
    model = tiny_pix2pix(input_transform="inpaint").eval()  # eval: the centred hole of the sample grid
    real = images()
    masked = model.generator_input(real)
    hole = torch.zeros(32, 32, dtype=torch.bool)
    hole[8:24, 8:24] = True  # inpaint_size 0.5 of 32, centred
    assert (masked[..., hole] == 0).all()
    assert torch.equal(masked[..., ~hole], real[..., ~hole])


def test_inpaint_holes_move_during_training():
    model = tiny_pix2pix(input_transform="inpaint").train()
    real = images(16)
    masks = model.hole_mask(real, random_hole=True)
    assert (masks.sum(dim=(1, 2, 3)) == 16 * 16).all()  # one whole square per sample
    assert len({tuple(m.nonzero()[0].tolist()) for m in masks}) > 1  # at different places
    masked = model.generator_input(real)  # training mode: a random hole per sample
    assert ((masked == 0).flatten(1).sum(dim=1) >= 3 * 16 * 16).all()
    assert not torch.equal(masked == 0, model.eval().generator_input(real) == 0)


def test_noise_input_ignores_the_image():
    model = tiny_pix2pix(input_transform="noise")
    real = images()
    noise = model.generator_input(real)
    assert noise.shape == real.shape and not torch.allclose(noise, real)
    assert torch.equal(model.transform(real, seed=3), model.transform(torch.zeros_like(real), seed=3))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(input_transform="sketch"), "input_transform"),
        (dict(num_channels=1), "colorize needs RGB"),
        (dict(sr_factor=3), "sr_factor"),
        (dict(inpaint_size=1.5), "inpaint_size"),
        (dict(lambda_l1=-1.0), "lambda_l1"),
        (dict(val_num_samples=-1), "val_num_samples"),
    ],
)
def test_pix2pix_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_pix2pix(**kwargs)


# ---------------------------------------------------------------------- Pix2PixGAN training


@pytest.fixture(scope="module")
def trained_pix2pix(tmp_path_factory):
    """A tiny colorization pix2pix after two batches, its trainer and its run folder."""
    tmp_path = tmp_path_factory.mktemp("pix2pix")
    pl.seed_everything(0)
    model = tiny_pix2pix()
    trainer = make_trainer(tmp_path, limit_train_batches=2, callbacks=[SampleGrid(make_gif=False)])
    trainer.fit(model, datamodule=data(batch_size=8))
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    return model, trainer, tmp_path


def test_pix2pix_trains_and_logs_the_l1_term(trained_pix2pix):
    model, trainer, _ = trained_pix2pix
    assert (model.d_updates, model.g_updates) == (2, 2) and trainer.global_step == 4
    metrics = trainer.callback_metrics
    assert metrics["train/g_l1"] > 0
    torch.testing.assert_close(metrics["train/g_loss"], metrics["train/g_adversarial"] + metrics["train/g_l1"])
    # The fixed images are the first batch's first num_samples, in [-1, 1].
    assert model.fixed_real.shape == (4, 3, 32, 32)
    assert model.fixed_real.min() >= -1 and model.fixed_real.max() <= 1 and model.fixed_real.std() > 0


def test_pix2pix_sample_grid_shows_input_output_target_rows(trained_pix2pix):
    model, _, tmp_path = trained_pix2pix
    grid = model.sample_grid()
    assert grid.shape == (3 * 4, 3, 32, 32)
    target = model.fixed_real
    torch.testing.assert_close(grid[0::3], model.transform(target))
    torch.testing.assert_close(grid[1::3], model.translate(model.transform(target)))
    torch.testing.assert_close(grid[2::3], target)
    png = Image.open(tmp_path / "samples" / "epoch_0000.png")
    assert png.size == (3 * 34 + 2, 4 * 34 + 2)  # rows of three (sample_grid_nrow), one per image


def test_pix2pix_checkpoint_reload_gives_identical_sample_grid(trained_pix2pix):
    model, _, tmp_path = trained_pix2pix
    restored = Pix2PixGAN.load_from_checkpoint(tmp_path / "model.ckpt")
    assert torch.equal(restored.fixed_real, model.fixed_real)
    torch.testing.assert_close(restored.sample_grid(), model.sample_grid(), rtol=0, atol=0)


def test_pix2pix_has_no_latent_sampling_and_detect_gives_probabilities(trained_pix2pix):
    model, _, _ = trained_pix2pix
    inputs = model.transform(model.fixed_real)
    for sample in (lambda: model.generate(inputs), lambda: model.sample_batches(4)):
        with pytest.raises(ValueError, match=r"no latent space: call translate\(inputs\)"):
            sample()
    assert model.translate(inputs).shape == inputs.shape
    p_fake = model.detect(model.fixed_real)
    assert p_fake.shape == (4,) and ((p_fake >= 0) & (p_fake <= 1)).all()
    assert model.discriminator.training  # detect restores the mode it found


def test_pix2pix_sample_grid_needs_a_batch_first():
    with pytest.raises(RuntimeError, match="no fixed images yet"):
        tiny_pix2pix().sample_grid()


@pytest.mark.parametrize("transform", ["super_resolution", "inpaint", "noise"])
def test_pix2pix_trains_with_every_input_transform(tmp_path, transform):
    model = tiny_pix2pix(input_transform=transform)
    trainer = make_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0)
    trainer.fit(model, datamodule=data())
    assert model.g_updates == 1 and trainer.callback_metrics["train/g_l1"] > 0
    assert model.sample_grid().shape == (12, 3, 32, 32)
