"""R3GAN's networks (Huang et al. 2024) and its configs: shapes at 28/32/64, identity blocks at init, no
normalization, interpolation resampling, the D/G step split, training, reloading, and every r3gan YAML via the CLI."""

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import yaml
from helpers import make_trainer
from torch import nn

from datamodules import SyntheticDataModule
from gan_modules import R3GAN
from gan_modules.cli import cli_main
from gan_modules.commands.common import load_gan
from gan_modules.layers import MinibatchDiscrimination, MinibatchStdDev, VirtualBatchNorm2d
from gan_modules.objectives import RelativisticPairing
from gan_modules.r3gan import (
    LEAKY_GAIN,
    Downsample,
    R3GANDiscriminator,
    R3GANGenerator,
    ResidualBlock,
    Upsample,
    r3gan_stages,
)
from gan_modules.tricks import R1, R2, FeatureMatching, PacGAN, SpectralNorm

ROOT = Path(__file__).resolve().parents[1]
R3GAN_CONFIGS = ["r3gan_mnist.yaml", "r3gan_folder32.yaml", "r3gan_anime.yaml", "stacked_mnist_r3gan.yaml"]
# Tiny G widths (from the base resolution up) per image size; D takes them reversed.
TINY_WIDTHS = {28: (16, 8, 8), 32: (16, 8, 8, 8), 64: (16, 16, 8, 8, 8)}
TINY = dict(latent_dim=8, blocks_per_stage=1, expansion=2, group_size=4)


def tiny_networks(size, channels, blocks=1):
    widths = TINY_WIDTHS[size]
    kwargs = dict(blocks_per_stage=blocks, expansion=2, group_size=4)
    g = R3GANGenerator(latent_dim=8, image_size=size, num_channels=channels, widths=widths, **kwargs)
    d = R3GANDiscriminator(image_size=size, num_channels=channels, widths=widths[::-1], **kwargs)
    return g, d


def tiny_model(size=28, channels=1, **kwargs):
    defaults = dict(
        image_size=size,
        num_channels=channels,
        widths=TINY_WIDTHS[size],
        objective=RelativisticPairing(),
        tricks=[R1(gamma=0.1), R2(gamma=0.1)],
        val_num_samples=0,
        **TINY,
    )
    return R3GAN(**{**defaults, **kwargs})


def data(size=28, channels=1, **kwargs):
    return SyntheticDataModule(image_size=size, num_channels=channels, **{"num_images": 16, "batch_size": 4, **kwargs})


@pytest.mark.parametrize("size, expected", [(28, (7, 2)), (32, (4, 3)), (64, (4, 4)), (48, (6, 3)), (4, (4, 0))])
def test_stages_start_at_a_base_of_4_to_7(size, expected):
    assert r3gan_stages(size) == expected


@pytest.mark.parametrize("size", [3, 9, 36, 100])
def test_sizes_without_such_a_base_are_refused(size):
    with pytest.raises(ValueError, match="s \\* 2\\^k"):
        r3gan_stages(size)


@pytest.mark.parametrize("size, channels", [(28, 1), (28, 3), (32, 1), (32, 3), (64, 3)])
def test_shapes_and_range(size, channels):
    g, d = tiny_networks(size, channels)
    z = torch.randn(5, 8) * 3
    raw = g(z)  # training mode: linear, as R3GAN's G, so that D teaches G the range
    images = g.eval()(z)
    assert images.shape == raw.shape == (5, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1 and images.std() > 0.05
    assert raw.abs().max() > 1  # N(0, 1)-scaled at init: some values beyond the range ...
    torch.testing.assert_close(images, raw.clamp(-1, 1))  # ... which eval mode clamps, and nothing else differs
    logits = d(images)
    assert logits.shape == (5,) and torch.isfinite(logits).all()
    features, same_logits = d.features_and_logits(images)  # what feature matching reads
    assert features.shape == (5, TINY_WIDTHS[size][0])  # one value per channel of D's last stage
    torch.testing.assert_close(same_logits, logits)


def test_the_resolutions_and_widths_follow_the_image_size():
    g, d = tiny_networks(28, 1)
    sizes, x = [], g.basis.unsqueeze(0)
    for stage in g.stages:
        x = stage(x)
        sizes.append((x.shape[1], x.shape[2]))
    assert sizes == [(16, 7), (8, 14), (8, 28)]
    depthwise = d.net[-3]
    assert isinstance(depthwise, nn.Conv2d) and depthwise.kernel_size == (7, 7) and depthwise.groups == 16


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(image_size=32, widths=(8, 8, 8)), "4 positive widths at 32x32"),
        (dict(image_size=28, widths=(8, 8, 0)), "3 positive widths"),
        (dict(image_size=28, widths=(8, 8, 6), group_size=8), "multiple of group_size"),
    ],
)
def test_bad_sizes_say_what_to_change(kwargs, match):
    with pytest.raises(ValueError, match=match):
        R3GANGenerator(**{"latent_dim": 8, "group_size": 4, **kwargs})


@pytest.mark.parametrize("size", [28, 32, 64])
def test_every_residual_branch_starts_at_zero_so_each_block_is_the_identity(size):
    g, d = tiny_networks(size, 3, blocks=2)
    for net, x in ((g, torch.randn(4, 8)), (d, torch.rand(4, 3, size, size) * 2 - 1)):
        blocks = [m for m in net.modules() if isinstance(m, ResidualBlock)]
        assert len(blocks) == 2 * len(TINY_WIDTHS[size])
        for block in blocks:
            assert torch.count_nonzero(block.project.weight) == 0
            h = torch.randn(2, block.expand.in_channels, 5, 5)
            torch.testing.assert_close(block(h), h, rtol=0, atol=0)
        # The whole network equals its skip path: the same output with every block taken out.
        out = net(x)
        for parent in list(net.modules()):
            for name, child in parent.named_children():
                if isinstance(child, ResidualBlock):
                    setattr(parent, name, nn.Identity())
        torch.testing.assert_close(net(x), out, rtol=0, atol=0)


def test_inner_branch_layers_are_scaled_down_with_depth():
    """Fixup (Zhang et al. 2019) as R3GAN: the branch's He gain times L^(-1/4) for L blocks and 3 layers."""
    g = R3GANGenerator(latent_dim=8, image_size=32, widths=(64, 64, 64, 64), blocks_per_stage=4, group_size=16)
    blocks = [m for m in g.modules() if isinstance(m, ResidualBlock)]
    expected_gain = LEAKY_GAIN * len(blocks) ** (-1 / 4)  # 16 blocks: halved
    for block in blocks:
        for layer in (block.expand, block.conv):
            fan_in = layer.weight[0].numel()
            assert layer.weight.std().item() == pytest.approx(expected_gain / math.sqrt(fan_in), rel=0.1)
            assert torch.count_nonzero(layer.bias) == 0
        assert block.conv.groups == block.conv.in_channels // 16  # 16 channels per group, R3GAN's presets


NORMALIZATIONS = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    VirtualBatchNorm2d,
    MinibatchStdDev,
    MinibatchDiscrimination,
)


@pytest.mark.parametrize("size", [28, 32, 64])
def test_no_normalization_minibatch_layers_or_strided_convs(size):
    g, d = tiny_networks(size, 3)
    for net in (g, d):
        assert not [m for m in net.modules() if isinstance(m, NORMALIZATIONS)]
        assert not [m for m in net.modules() if isinstance(m, nn.ConvTranspose2d)]
        assert all(m.stride == (1, 1) for m in net.modules() if isinstance(m, nn.Conv2d))  # resampling interpolates
    # Without batch statistics, each sample's output depends on that sample only.
    z = torch.randn(6, 8)
    torch.testing.assert_close(g(z)[:2], g(z[:2]))
    x = torch.rand(6, 3, size, size)
    torch.testing.assert_close(d(x)[:2], d(x[:2]))


def test_resampling_is_bilinear_low_pass_interpolation():
    x = torch.randn(2, 4, 8, 8)
    down = Downsample(4, 4)(x)
    assert down.shape == (2, 4, 4, 4)
    reference = F.interpolate(x, size=(4, 4), mode="bilinear", antialias=True)  # [1, 3, 3, 1] with stride 2
    torch.testing.assert_close(down[..., 1:-1, 1:-1], reference[..., 1:-1, 1:-1])
    flat = torch.full((1, 4, 8, 8), 0.5)
    torch.testing.assert_close(Downsample(4, 4)(flat)[..., 1:-1, 1:-1], flat[..., :2, :2])  # unit gain
    up = Upsample(4, 4)(x)
    assert up.shape == (2, 4, 16, 16)
    torch.testing.assert_close(up[..., 1::2, 1::2][..., :-1, :-1], 0.75**2 * x[..., :-1, :-1] + 0.1875 * (
        x[..., 1:, :-1] + x[..., :-1, 1:]) + 0.0625 * x[..., 1:, 1:])  # fmt: skip
    widen = Upsample(4, 6)
    assert widen.conv is not None and widen(x).shape == (2, 6, 16, 16)


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def changed(before, module):
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_a_d_step_changes_only_d(tmp_path):
    model = tiny_model(n_critic=2)  # the first batch makes a D update and no G update
    g_before, d_before = params(model.generator), params(model.discriminator)
    make_trainer(tmp_path, limit_train_batches=1).fit(model, datamodule=data())
    assert (model.d_updates, model.g_updates) == (1, 0)
    assert changed(d_before, model.discriminator) and not changed(g_before, model.generator)


def test_a_g_step_changes_only_g(tmp_path, monkeypatch):
    model = tiny_model()
    monkeypatch.setattr(model, "discriminator_step", lambda real, fake, gen_input: {})
    g_before, d_before = params(model.generator), params(model.discriminator)
    make_trainer(tmp_path, limit_train_batches=1).fit(model, datamodule=data())
    assert model.g_updates == 1
    assert changed(g_before, model.generator) and not changed(d_before, model.discriminator)
    # RpGAN's G loss runs D on the reals too; D stayed frozen throughout.
    assert all(p.grad is None for p in model.discriminator.parameters())


class Losses(pl.Callback):
    def __init__(self):
        self.seen = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        keys = ("train/d_loss", "train/g_loss", "train/d_r1", "train/d_r2")
        self.seen.append({k: float(trainer.callback_metrics[k]) for k in keys})


@pytest.mark.parametrize("size, channels", [(28, 3), (32, 3)])
def test_a_tiny_r3gan_trains_and_reloads_to_the_same_ema_samples(tmp_path, size, channels):
    model = tiny_model(size, channels)
    losses = Losses()
    trainer = make_trainer(tmp_path, limit_train_batches=3, callbacks=[losses])
    trainer.fit(model, datamodule=data(size, channels))
    assert (model.d_updates, model.g_updates) == (3, 3)
    assert len(losses.seen) == 3
    assert all(math.isfinite(v) for step in losses.seen for v in step.values())
    assert all(step["train/d_r1"] > 0 and step["train/d_r2"] > 0 for step in losses.seen)
    opt_d, opt_g = model.configure_optimizers()
    assert opt_g.param_groups[0]["betas"] == opt_d.param_groups[0]["betas"] == (0.0, 0.99)  # R3GAN's Adam
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    restored = load_gan(path)  # the safe loader: weights_only, class from this package
    assert type(restored) is R3GAN and tuple(restored.hparams.widths) == TINY_WIDTHS[size]
    restored.to(memory_format=restored.memory_format)  # the layout fit() trains in (channels_last): the same kernels
    expected = model.generate(model.fixed_z)
    torch.testing.assert_close(restored.generate(restored.fixed_z), expected, rtol=0, atol=0)
    assert not torch.equal(expected, model.generator.eval()(model.fixed_z).clamp(-1, 1))  # EMA, not G


def test_d_takes_the_tricks_that_reach_into_it(tmp_path):
    """PacGAN widens D's input conv (net[0]); feature matching reads D's features (features_and_logits)."""
    model = tiny_model(32, 3, tricks=[FeatureMatching(), PacGAN(m=2)])
    first = model.discriminator.net[0]
    assert isinstance(first, nn.Conv2d) and first.in_channels == 6
    packed = model.d_input(torch.rand(4, 3, 32, 32))
    assert packed.shape == (2, 6, 32, 32) and model.discriminator(packed).shape == (2,)
    make_trainer(tmp_path, limit_train_batches=1).fit(model, datamodule=data(32, 3))
    assert model.g_updates == 1


def test_spectral_norm_is_refused_with_the_reason():
    """Spectral norm divides each weight by its largest singular value: 0 for the zero-initialized branch convs."""
    with pytest.raises(ValueError, match="SpectralNorm.*R1 \\+ R2"):
        tiny_model(tricks=[SpectralNorm()])


def run_config(tmp_path, config):
    """The YAML through the real CLI for one D and one G step on synthetic data of its size, with tiny widths."""
    data_args = yaml.safe_load((ROOT / "configs" / config).read_text())["data"]
    size = data_args.get("init_args", {}).get("image_size", 28)
    channels = 1 if data_args["class_path"].split(".")[-1] == "MNISTDataModule" else 3  # Stacked MNIST: 3
    args = ["--config", str(ROOT / "configs" / config)]
    args += ["--data", "datamodules.SyntheticDataModule", "--data.image_size", str(size)]
    args += ["--data.num_channels", str(channels), "--data.num_images", "8", "--data.batch_size", "4"]
    args += ["--model.widths", str(list(TINY_WIDTHS[size])), "--model.group_size", "4"]
    args += ["--trainer.max_steps", "2", "--trainer.log_every_n_steps", "1"]
    args += ["--trainer.logger", "gan_modules.loggers.CSVLogger", "--trainer.default_root_dir", str(tmp_path)]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    return cli_main(args), size, channels


@pytest.mark.parametrize("config", R3GAN_CONFIGS)
def test_r3gan_config_runs_with_the_paper_recipe(tmp_path, config):
    cli, size, channels = run_config(tmp_path, config)
    model = cli.model
    assert type(model) is R3GAN and (model.hparams.image_size, model.hparams.num_channels) == (size, channels)
    assert cli.trainer.global_step == 2 and model.d_updates == model.g_updates == 1
    assert isinstance(model.objective, RelativisticPairing)
    assert {type(t) for t in model.tricks} == {R1, R2}  # R3GAN: R1 and R2 with one gamma
    assert len({(t.gamma, t.gamma_end, t.every) for t in model.tricks}) == 1
    assert all(opt.optimizer.param_groups[0]["betas"] == (0.0, 0.99) for opt in model.optimizers())  # R3GAN's Adam
    assert not [m for m in model.modules() if isinstance(m, NORMALIZATIONS)]
    run = cli.run_dir
    assert run.parent.name == Path(config).stem and (run / "checkpoints" / "last.ckpt").is_file()
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/d_loss", "train/g_loss", "train/d_r1", "train/d_r2"} <= set(header)
