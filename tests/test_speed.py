"""The fast paths keep the numbers: compiled/channels_last features, the TF1 resize, bf16 and channels_last
training, and the precision chosen from the CPU's flags."""

import logging

import pytest
import torch
from helpers import make_trainer
from test_cli import CSV_ONLY, ROOT, fit
from torch import nn

import gan_modules.accel as accel
from datamodules import SyntheticDataModule
from gan_modules import DCGAN, VanillaGAN
from gan_modules.accel import CompiledWithFallback, cpu_bf16_is_fast
from gan_modules.metrics.inception import resize_like_tf1


def tiny_convnet() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2))
    return net.eval()


# ---------------------------------------------------------------------- features: compiled, fallback, resize


def test_compiled_channels_last_features_equal_eager_fp32():
    net = tiny_convnet()
    x = torch.randn(5, 3, 32, 32)
    with torch.inference_mode():
        eager = net(x)
        fast_net = tiny_convnet().to(memory_format=torch.channels_last)
        runner = CompiledWithFallback(lambda t: fast_net(t.contiguous(memory_format=torch.channels_last)), "test")
        fast = runner(x)
    assert runner.is_compiled, runner.fallback_reason  # the compiler works on the test machines
    assert (fast - eager).abs().max() < 1e-4


def test_compile_failure_falls_back_to_eager_with_one_line(monkeypatch, caplog):
    net = tiny_convnet()
    x = torch.randn(2, 3, 16, 16)

    def broken_compile(fn, **kwargs):
        def fails(*args):
            raise RuntimeError("no C++ compiler found\nlong backend traceback")

        return fails

    monkeypatch.setattr(torch, "compile", broken_compile)
    with caplog.at_level(logging.WARNING, logger="gan_modules.accel"), torch.inference_mode():
        runner = CompiledWithFallback(net, "Inception features")
        first, second = runner(x), runner(x)
        expected = net(x)
    assert torch.equal(first, expected) and torch.equal(second, expected)
    assert not runner.is_compiled and "no C++ compiler found" in runner.fallback_reason
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "running eager" in warnings[0] and "traceback" not in warnings[0]


def test_compile_can_be_switched_off(monkeypatch):
    monkeypatch.setenv(accel.COMPILE_ENV, "0")
    assert not CompiledWithFallback(tiny_convnet(), "x", enabled=accel.compile_enabled()).is_compiled
    assert accel.compile_enabled(True)


@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (2, 3, 64, 64), (2, 3, 17, 40), (1, 3, 320, 300)])
def test_matrix_resize_equals_torch_fidelity_tf1_bilinear(shape):
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    x = torch.randint(0, 256, shape, dtype=torch.uint8).float()
    ours = resize_like_tf1(x)
    theirs = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    # On the 0..255 scale; Inception sees (x - 128) / 128, so this is below 1e-4 there.
    assert (ours - theirs).abs().max() < 0.0128


# ---------------------------------------------------------------------- precision from the CPU's flags


@pytest.mark.parametrize(
    ("vendor", "flags", "fast"),
    [
        ("GenuineIntel", {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, True),
        ("AuthenticAMD", {"avx512f", "avx512_bf16"}, True),
        ("GenuineIntel", {"avx512f", "avx512_bf16"}, False),  # measured slower than fp32 on such Xeons
        ("GenuineIntel", {"avx2"}, False),
    ],
)
def test_bf16_default_follows_the_cpu_flags(vendor, flags, fast):
    chosen, reason = cpu_bf16_is_fast({"model": "x", "vendor": vendor, "flags": flags, "cores": 2})
    assert chosen is fast and reason


@pytest.mark.parametrize("fast", [True, False])
def test_cli_states_and_uses_the_cpu_precision(tmp_path, monkeypatch, caplog, fast):
    import gan_modules.cli as cli

    monkeypatch.setattr(cli, "cpu_bf16_is_fast", lambda: (fast, "test CPU"))
    with caplog.at_level(logging.INFO):
        run = fit(tmp_path, "dcgan_mnist.yaml", *CSV_ONLY, "--trainer.accelerator", "cpu")
    expected = "bf16-mixed" if fast else "32-true"
    assert run.trainer.precision == expected
    assert any(f"precision: {expected} on this CPU (test CPU" in r.getMessage() for r in caplog.records)


def test_mlp_trains_bf16_on_a_fast_bf16_cpu(tmp_path, monkeypatch):
    import gan_modules.cli as cli

    monkeypatch.setattr(cli, "cpu_bf16_is_fast", lambda: (True, "test CPU"))
    run = fit(tmp_path, "vanilla_mnist.yaml", *CSV_ONLY, "--trainer.accelerator", "cpu")
    assert run.trainer.precision == "bf16-mixed"


def test_a_model_that_opts_out_stays_fp32_on_a_fast_bf16_cpu(monkeypatch, caplog):
    """The detector and the toy GAN set ``cpu_bf16_pays = False``: fp32 on every CPU, said at start-up."""
    import gan_modules.cli as cli
    from gan_modules.detector import FakeDetector
    from gan_modules.toy import ToyGAN

    monkeypatch.setattr(cli, "cpu_bf16_is_fast", lambda: (True, "test CPU"))
    with caplog.at_level(logging.INFO):
        assert cli.GANCLI._default_precision("cpu", ToyGAN) == "32-true"
        assert cli.GANCLI._default_precision("auto", FakeDetector) == "32-true"
        assert cli.GANCLI._default_precision("cpu", DCGAN) == "bf16-mixed"
    assert any("ToyGAN keeps fp32 on a CPU" in r.getMessage() for r in caplog.records)


def test_an_explicit_precision_is_kept(tmp_path, monkeypatch):
    import gan_modules.cli as cli

    monkeypatch.setattr(cli, "cpu_bf16_is_fast", lambda: (True, "test CPU"))
    args = [*CSV_ONLY, "--config", str(cli_config("trainer/cpu_fp32.yaml"))]
    assert fit(tmp_path, "dcgan_mnist.yaml", *args).trainer.precision == "32-true"


def cli_config(name):
    return ROOT / "configs" / name


# ---------------------------------------------------------------------- training: bf16-mixed, channels_last


def test_bf16_mixed_cpu_training_steps_both_networks(tmp_path, tiny_dcgan_kwargs):
    model = DCGAN(**tiny_dcgan_kwargs)
    g_before = [p.detach().clone() for p in model.generator.parameters()]
    d_before = [p.detach().clone() for p in model.discriminator.parameters()]
    losses = []

    trainer = make_trainer(tmp_path, precision="bf16-mixed", limit_train_batches=3)
    original = model.discriminator_step

    def recording_d_step(real, fake, gen_input):
        stats = original(real, fake, gen_input)
        losses.append((float(stats["train/d_loss"]), real.dtype, fake.dtype))
        return stats

    model.discriminator_step = recording_d_step
    trainer.fit(model, datamodule=SyntheticDataModule(image_size=16, num_channels=3, num_images=24, batch_size=8))
    assert (model.d_updates, model.g_updates) == (3, 3)
    assert all(torch.isfinite(torch.tensor(loss)) for loss, _, _ in losses)
    assert losses[0][2] == torch.bfloat16  # G really ran under bf16 autocast
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert any(not torch.equal(a, b) for a, b in zip(g_before, model.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d_before, model.discriminator.parameters()))
    logged = trainer.callback_metrics
    assert torch.isfinite(logged["train/g_loss"]) and torch.isfinite(logged["train/d_loss"])


def test_channels_last_is_chosen_for_conv_nets_and_trains_the_same(tmp_path, tiny_dcgan_kwargs, tiny_vanilla_kwargs):
    assert DCGAN(**tiny_dcgan_kwargs).memory_format == torch.channels_last
    assert VanillaGAN(**tiny_vanilla_kwargs).memory_format is None
    results = []
    for channels_last in (True, False):
        torch.manual_seed(1)
        model = DCGAN(**tiny_dcgan_kwargs, channels_last=channels_last)
        torch.manual_seed(2)
        data = SyntheticDataModule(image_size=16, num_channels=3, num_images=16, batch_size=8)
        make_trainer(tmp_path, limit_train_batches=2).fit(model, datamodule=data)
        conv = model.generator.net[0].weight
        assert conv.is_contiguous(memory_format=torch.channels_last) == channels_last
        results.append(model.generate(model.fixed_z[:4]))
    torch.testing.assert_close(results[0], results[1], atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_real_inception_compiled_channels_last_equals_eager_nchw_and_bf16_is_close():
    from gan_modules.metrics.inception import InceptionV3Features

    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    reference = InceptionV3Features(channels_last=False, compile=False, batch_size=6)
    fast = InceptionV3Features(batch_size=4)  # 6 images: one full batch, one padded
    bf16 = InceptionV3Features(precision="bf16", compile=False, batch_size=6)
    with torch.inference_mode():
        exact, compiled, approx = reference(images), fast(images), bf16(images)
    assert fast.is_compiled, fast._runner.fallback_reason
    assert (compiled - exact).abs().max() < 1e-4
    relative = (approx - exact).norm() / exact.norm()
    assert 0 < relative < 0.05
    assert bf16.checksum == reference.checksum + "-bf16"  # bf16 features never share the fp32 reference cache


@pytest.mark.parametrize("scaled", [False, True])
def test_gradient_clipping_sees_unscaled_gradients_under_a_grad_scaler(tmp_path, tiny_dcgan_kwargs, scaled):
    # 16-mixed on a GPU steps through a GradScaler; this runs the same plugin on the CPU with a CPU scaler.
    # Clip by value 1e-3 with SGD(lr=1): the largest D weight change must be the clip itself, not clip / scale.
    from functools import partial

    from pytorch_lightning.plugins import MixedPrecision

    model = DCGAN(
        **tiny_dcgan_kwargs,
        optimizer_d=partial(torch.optim.SGD, lr=1.0),
        grad_clip_d=1e-3,
        grad_clip_algorithm="value",
        val_num_samples=0,
        channels_last=False,
    )
    model.generator.requires_grad_(False)  # G only feeds D here
    model.generator_step = lambda real, fake, gen_input: {}
    before = [p.detach().clone() for p in model.discriminator.parameters()]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10) if scaled else None
    plugins = [MixedPrecision("16-mixed", "cpu", scaler=scaler)] if scaled else []
    trainer = make_trainer(tmp_path, plugins=plugins, limit_train_batches=1)
    trainer.fit(model, datamodule=SyntheticDataModule(image_size=16, num_channels=3, num_images=8, batch_size=8))
    if scaled:
        assert trainer.strategy.precision_plugin.scaler is scaler and scaler.get_scale() == 2.0**10  # stepped
    change = max(float((a - b.detach()).abs().max()) for a, b in zip(before, model.discriminator.parameters()))
    assert change == pytest.approx(1e-3, rel=1e-3)


def test_small_feature_jobs_are_not_compiled(monkeypatch):
    from gan_modules.metrics import inception

    monkeypatch.setattr(inception, "InceptionV3Features", lambda **kwargs: kwargs)
    assert inception.feature_network(num_images=500)["compile"] is False  # val/fid at N=500: eager
    assert inception.feature_network(num_images=10_000)["compile"] is None  # evaluate.py: compiled where it works
    assert inception.feature_network(num_images=500, compile=True)["compile"] is True
