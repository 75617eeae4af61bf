"""The loop itself: phases, counters, EMA, non-finite losses, checkpoints and exact resume."""

import pytest
import pytorch_lightning as pl
import torch
from helpers import make_trainer

from datamodules import SyntheticDataModule
from gan_modules import DCGAN, NonFiniteLossError, VanillaGAN
from gan_modules.commands.common import load_gan
from gan_modules.objectives import WassersteinGP


def data(**kwargs):
    defaults = dict(image_size=8, num_channels=1, num_images=32, batch_size=8)
    defaults.update(kwargs)
    return SyntheticDataModule(**defaults)


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def changed(before, module):
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_discriminator_phase_changes_only_d(tmp_path, tiny_vanilla_kwargs):
    # n_critic = 2: the first batch makes a D update and no G update.
    model = VanillaGAN(**tiny_vanilla_kwargs, n_critic=2)
    g_before, d_before = params(model.generator), params(model.discriminator)
    make_trainer(tmp_path, limit_train_batches=1).fit(model, datamodule=data())
    assert (model.d_updates, model.g_updates) == (1, 0)
    assert changed(d_before, model.discriminator)
    assert not changed(g_before, model.generator)


def test_generator_phase_changes_only_g(tmp_path, tiny_vanilla_kwargs, monkeypatch):
    model = VanillaGAN(**tiny_vanilla_kwargs)
    monkeypatch.setattr(model, "discriminator_step", lambda real, fake, gen_input: {})
    g_before, d_before = params(model.generator), params(model.discriminator)
    make_trainer(tmp_path, limit_train_batches=1).fit(model, datamodule=data())
    assert model.g_updates == 1
    assert changed(g_before, model.generator)
    assert not changed(d_before, model.discriminator)
    assert all(p.grad is None for p in model.discriminator.parameters())  # D was frozen, not just unstepped


@pytest.mark.parametrize("n_critic", [1, 3])
def test_step_counts(tmp_path, tiny_vanilla_kwargs, n_critic):
    model = VanillaGAN(**tiny_vanilla_kwargs, n_critic=n_critic)
    trainer = make_trainer(tmp_path, max_epochs=2)
    trainer.fit(model, datamodule=data(num_images=48))  # 6 batches per epoch, 12 in all
    assert model.d_updates == 12
    assert model.g_updates == 12 // n_critic
    # Lightning counts every optimizer step: D and G together.
    assert trainer.global_step == model.d_updates + model.g_updates


def test_ema_follows_generator(tmp_path, tiny_vanilla_kwargs):
    model = VanillaGAN(**tiny_vanilla_kwargs, ema_decay=0.5)
    make_trainer(tmp_path, limit_train_batches=3).fit(model, datamodule=data())
    assert int(model.generator_ema.n_averaged) == 3
    ema = dict(model.generator_ema.module.named_parameters())
    for name, p in model.generator.named_parameters():
        assert not ema[name].requires_grad
        assert not torch.equal(ema[name], p)  # an average, not a copy


def test_without_ema_samples_come_from_generator(tiny_vanilla_kwargs):
    model = VanillaGAN(**tiny_vanilla_kwargs, ema_decay=None)
    assert model.generator_ema is None and model.sampling_generator is model.generator
    assert model.sample_grid().shape == (64, 1, 8, 8)


def test_wgan_gp_trains_with_penalty_logged(tmp_path, tiny_dcgan_kwargs):
    model = DCGAN(**tiny_dcgan_kwargs, d_norm="none", objective=WassersteinGP(), n_critic=2)
    trainer = make_trainer(tmp_path, limit_train_batches=2)
    trainer.fit(model, datamodule=data(image_size=16, num_channels=3))
    assert "train/d_penalty" in trainer.callback_metrics
    assert model.g_updates == 1


def test_non_finite_loss_stops_before_the_update(tmp_path, tiny_vanilla_kwargs):
    model = VanillaGAN(**tiny_vanilla_kwargs)
    with torch.no_grad():
        model.discriminator.net[-1].bias.fill_(float("nan"))
    d_before = params(model.discriminator)
    with pytest.raises(NonFiniteLossError, match=r"train/d_loss became nan at epoch 0, global step 0"):
        make_trainer(tmp_path, limit_train_batches=2).fit(model, datamodule=data())
    assert model.d_updates == 0
    for before, after in zip(d_before, model.discriminator.parameters()):
        torch.testing.assert_close(after, before, equal_nan=True, rtol=0, atol=0)


def test_invalid_arguments_are_rejected(tiny_vanilla_kwargs):
    with pytest.raises(ValueError, match="n_critic"):
        VanillaGAN(**tiny_vanilla_kwargs, n_critic=0)
    with pytest.raises(ValueError, match="ema_decay"):
        VanillaGAN(**tiny_vanilla_kwargs, ema_decay=1.5)
    with pytest.raises(ValueError, match="lr"):
        VanillaGAN(**tiny_vanilla_kwargs, lr=-1.0)


def test_separate_learning_rates_and_other_optimizers(tiny_vanilla_kwargs):
    model = VanillaGAN(**tiny_vanilla_kwargs, lr=1.5e-4, lr_d=2e-4)
    opt_d, opt_g = model.configure_optimizers()
    assert opt_d.param_groups[0]["lr"] == 2e-4 and opt_g.param_groups[0]["lr"] == 1.5e-4
    assert opt_d.param_groups[0]["betas"] == (0.5, 0.999)
    model = VanillaGAN(**tiny_vanilla_kwargs, optimizer_d=lambda p: torch.optim.RMSprop(p, lr=1e-4))
    opt_d, opt_g = model.configure_optimizers()
    assert isinstance(opt_d, torch.optim.RMSprop) and isinstance(opt_g, torch.optim.Adam)


def test_default_adam_is_fused_except_under_a_grad_scaler(tiny_vanilla_kwargs):
    """Fused Adam (one kernel per network) by default; per-tensor under 16-mixed's GradScaler, which Lightning
    cannot unscale before clipping when the optimizer unscales inside its own step."""
    from types import SimpleNamespace

    model = VanillaGAN(**tiny_vanilla_kwargs)
    assert all(opt.defaults["fused"] for opt in model.configure_optimizers())
    model._trainer = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=torch.amp.GradScaler("cpu")))
    assert not any(opt.defaults["fused"] for opt in model.configure_optimizers())


def test_fused_adam_takes_the_same_steps_as_the_per_tensor_one(tiny_vanilla_kwargs):
    torch.manual_seed(0)
    model = VanillaGAN(**tiny_vanilla_kwargs)
    copy = VanillaGAN(**tiny_vanilla_kwargs)
    copy.load_state_dict(model.state_dict())
    start = params(model.generator)
    fused = model.adam(model.generator.parameters(), 1e-3, (0.5, 0.999))
    loop = torch.optim.Adam(copy.generator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    assert fused.defaults["fused"] and not loop.defaults["fused"]
    for _ in range(10):  # the same gradients into both, so only the optimizers can differ
        for a, b in zip(model.generator.parameters(), copy.generator.parameters()):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        fused.step()
        loop.step()
    moved = max((a - b).abs().max().item() for a, b in zip(model.generator.parameters(), start))
    assert moved > 5e-3  # 10 steps of about lr each
    for a, b in zip(model.generator.parameters(), copy.generator.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_gradient_clipping_by_value(tmp_path, tiny_vanilla_kwargs):
    model = VanillaGAN(**tiny_vanilla_kwargs, grad_clip_d=1e-3, grad_clip_algorithm="value", lr=1.0)
    d_before = params(model.discriminator)
    # No validation: it zeroes the gradients (Lightning's on_validation_model_zero_grad) this test reads.
    make_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0).fit(model, datamodule=data())
    # The gradients D's optimizer stepped with were clipped elementwise to the value.
    assert any(p.grad is not None for p in model.discriminator.parameters())
    assert all(p.grad is None or p.grad.abs().max() <= 1e-3 + 1e-9 for p in model.discriminator.parameters())
    assert changed(d_before, model.discriminator)


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_gradient_clipping_works_under_bf16_mixed_with_the_fused_adam(tmp_path, tiny_vanilla_kwargs, algorithm):
    """Lightning's clip_gradients refuses fused optimizers under any mixed precision; bf16 scales nothing."""
    model = VanillaGAN(**tiny_vanilla_kwargs, grad_clip_d=1e-3, grad_clip_g=1e-3, grad_clip_algorithm=algorithm)
    trainer = make_trainer(tmp_path, precision="bf16-mixed", limit_train_batches=1, limit_val_batches=0)
    trainer.fit(model, datamodule=data())
    assert all(opt.defaults["fused"] for opt in trainer.optimizers)
    for net in (model.discriminator, model.generator):
        grads = torch.cat([p.grad.float().flatten() for p in net.parameters()])
        size = grads.abs().max() if algorithm == "value" else grads.norm()
        assert 0 < size <= 1e-3 * (1 + 1e-5)


def test_checkpoint_reload_gives_identical_ema_samples(tmp_path, tiny_vanilla_kwargs):
    model = VanillaGAN(**tiny_vanilla_kwargs)
    trainer = make_trainer(tmp_path, limit_train_batches=3)
    trainer.fit(model, datamodule=data())
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    restored = VanillaGAN.load_from_checkpoint(path)
    torch.testing.assert_close(restored.generate(restored.fixed_z), model.generate(model.fixed_z), rtol=0, atol=0)
    assert (restored.d_updates, restored.g_updates) == (3, 3)


def test_resume_continues_exactly(tmp_path, tiny_vanilla_kwargs):
    """Two epochs in one go == one epoch, a checkpoint, and a resumed second epoch."""

    def run(max_epochs, ckpt_path=None, save=None):
        pl.seed_everything(7)
        model = VanillaGAN(**tiny_vanilla_kwargs)
        trainer = make_trainer(tmp_path, max_epochs=max_epochs)
        trainer.fit(model, datamodule=data(), ckpt_path=ckpt_path)
        if save:
            trainer.save_checkpoint(save)
        return model, trainer

    straight, straight_trainer = run(2)
    run(1, save=tmp_path / "epoch1.ckpt")
    resumed, resumed_trainer = run(2, ckpt_path=tmp_path / "epoch1.ckpt")
    assert resumed_trainer.global_step == straight_trainer.global_step == 16
    assert (resumed.d_updates, resumed.g_updates) == (8, 8)
    torch.testing.assert_close(resumed.generate(resumed.fixed_z), straight.generate(straight.fixed_z))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_seeding_gives_identical_first_losses(tmp_path, tiny_dcgan_kwargs):
    def first_losses():
        pl.seed_everything(123)
        model = DCGAN(**tiny_dcgan_kwargs)
        trainer = make_trainer(tmp_path, limit_train_batches=1)
        trainer.fit(model, datamodule=data(image_size=16, num_channels=3))
        return trainer.callback_metrics["train/d_loss"].item(), trainer.callback_metrics["train/g_loss"].item()

    assert first_losses() == first_losses()


def test_load_gan_rejects_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_gan(tmp_path / "nope.ckpt")
