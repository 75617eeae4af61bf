import math
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from helpers import Linear, make_trainer, step_with
from torch import nn

from datamodules import SyntheticDataModule
from gan_modules import DCGAN
from gan_modules.objectives import (
    Hinge,
    LeastSquares,
    Minimax,
    NonSaturating,
    Objective,
    RelativisticPairing,
    Wasserstein,
    WassersteinGP,
    gradient_penalty,
)
from gan_modules.tricks import R1, R2, GradientPenalty, Step, TopK, WeightClipping

LOG2 = math.log(2.0)


def zeros():
    return torch.zeros(4), torch.zeros(4)


@pytest.mark.parametrize(
    "objective, d_expected, g_expected",
    [
        (Minimax(), 2 * LOG2, -LOG2),  # -log(1/2) - log(1/2); log(1 - 1/2)
        (NonSaturating(), 2 * LOG2, LOG2),  # -log(1/2)
        (LeastSquares(), 0.5, 0.5),  # 0.5 * ((0 - 1)^2 + 0^2); 0.5 * (0 - 1)^2
        (Wasserstein(), 0.0, 0.0),
        (WassersteinGP(), 0.0, 0.0),
        (Hinge(), 2.0, 0.0),  # relu(1 - 0) + relu(1 + 0)
        (RelativisticPairing(), LOG2, LOG2),  # softplus(-(0 - 0)) on both sides
    ],
)
def test_objectives_at_zero_logits(objective, d_expected, g_expected):
    real, fake = zeros()
    assert objective.d_loss(real, fake).item() == pytest.approx(d_expected, abs=1e-6)
    g_args = (real,) if objective.g_needs_real_logits else ()
    assert objective.g_loss(fake, *g_args).item() == pytest.approx(g_expected, abs=1e-6)


def test_objectives_on_hand_computed_logits():
    real = torch.tensor([2.0, -1.0])
    fake = torch.tensor([0.5, -3.0])
    sig = lambda x: 1 / (1 + math.exp(-x))
    # Non-saturating / minimax D: mean(-log sig(r)) + mean(-log(1 - sig(f)))
    d_bce = -(math.log(sig(2.0)) + math.log(sig(-1.0))) / 2 - (math.log(1 - sig(0.5)) + math.log(1 - sig(-3.0))) / 2
    assert NonSaturating().d_loss(real, fake).item() == pytest.approx(d_bce, rel=1e-6)
    assert Minimax().d_loss(real, fake).item() == pytest.approx(d_bce, rel=1e-6)
    assert NonSaturating().g_loss(fake).item() == pytest.approx(
        -(math.log(sig(0.5)) + math.log(sig(-3.0))) / 2, rel=1e-6
    )
    assert Minimax().g_loss(fake).item() == pytest.approx(
        (math.log(1 - sig(0.5)) + math.log(1 - sig(-3.0))) / 2, rel=1e-6
    )
    # LSGAN: 0.5 * (mean((r - 1)^2) + mean(f^2)); G: 0.5 * mean((f - 1)^2)
    assert LeastSquares().d_loss(real, fake).item() == pytest.approx(0.5 * ((1 + 4) / 2 + (0.25 + 9) / 2))
    assert LeastSquares().g_loss(fake).item() == pytest.approx(0.5 * (0.25 + 16) / 2)
    # WGAN: mean(f) - mean(r); G: -mean(f)
    assert Wasserstein().d_loss(real, fake).item() == pytest.approx(-1.25 - 0.5)
    assert Wasserstein().g_loss(fake).item() == pytest.approx(1.25)
    # Hinge: mean(relu(1 - r)) + mean(relu(1 + f)); G: -mean(f)
    assert Hinge().d_loss(real, fake).item() == pytest.approx((0 + 2) / 2 + (1.5 + 0) / 2)
    assert Hinge().g_loss(fake).item() == pytest.approx(1.25)


def test_label_noise_draws_targets_in_range():
    torch.manual_seed(0)
    noisy = NonSaturating(real_label=(0.8, 1.0), fake_label=(0.0, 0.2))
    exact = NonSaturating()
    big = torch.full((20000,), 3.0)
    # With targets t in [0.8, 1], BCE(3, t) = softplus(3) - 3 t; its mean uses E[t] = 0.9.
    expected_real = math.log1p(math.exp(3.0)) - 3.0 * 0.9
    expected_fake = math.log1p(math.exp(3.0)) - 3.0 * 0.1
    assert noisy.d_loss(big, big).item() == pytest.approx(expected_real + expected_fake, rel=1e-2)
    assert exact.d_loss(big, big).item() == pytest.approx(math.log1p(math.exp(-3.0)) + math.log1p(math.exp(3.0)))


def test_label_range_is_validated():
    with pytest.raises(ValueError, match="real_label"):
        NonSaturating(real_label=(1.0, 0.8))


def test_weight_clipping_after_d_step():
    d = nn.Linear(3, 1)
    with torch.no_grad():
        d.weight.fill_(0.5)
    (clipping,) = Wasserstein(clip_value=0.01).implied_tricks()  # the loop runs it after every D step
    assert isinstance(clipping, WeightClipping)
    clipping.after_d_step(SimpleNamespace(discriminator=d))
    assert d.weight.abs().max().item() == pytest.approx(0.01)


def test_gradient_penalty_of_a_linear_critic():
    # D(x) = w . x has gradient w everywhere: the penalty is (|w| - 1)^2 exactly.
    w = torch.tensor([3.0, 4.0])
    critic = lambda x: x.flatten(1) @ w
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx((5.0 - 1.0) ** 2)
    (penalty,) = WassersteinGP(gp_weight=10.0).implied_tricks()  # the loop adds its term to D's loss
    assert isinstance(penalty, GradientPenalty)
    step = Step(gan=None, update=0, real_in=real, fake_in=fake, real_out=None, fake_out=None, d=critic)
    assert penalty.d_terms(step)["penalty"].item() == pytest.approx(160.0)  # logged as train/d_penalty
    assert {type(t) for o in (Minimax(), NonSaturating(), LeastSquares(), Hinge()) for t in o.implied_tricks()} == set()


def test_gradient_penalty_is_differentiable_wrt_critic():
    d = nn.Linear(2, 1)
    penalty = gradient_penalty(lambda x: d(x).squeeze(1), torch.randn(8, 2), torch.randn(8, 2))
    penalty.backward()
    assert d.weight.grad is not None and d.weight.grad.abs().sum() > 0


def test_relativistic_pairing_on_hand_computed_logits():
    real = torch.tensor([2.0, -1.0, 0.5])
    fake = torch.tensor([0.5, -3.0, 1.5])
    softplus = lambda x: math.log1p(math.exp(x))
    # D: mean over pairs of softplus(-(r - f)); G: mean of softplus(-(f - r)). Pairs by position, not all-vs-all.
    d_expected = (softplus(-1.5) + softplus(-2.0) + softplus(1.0)) / 3
    g_expected = (softplus(1.5) + softplus(2.0) + softplus(-1.0)) / 3
    objective = RelativisticPairing()
    assert objective.d_loss(real, fake).item() == pytest.approx(d_expected, rel=1e-6)
    assert objective.g_loss(fake, real).item() == pytest.approx(g_expected, rel=1e-6)
    # It is the non-saturating loss on the differences: shifting both sides alike changes nothing.
    assert objective.d_loss(real + 7, fake + 7).item() == pytest.approx(d_expected, rel=1e-5)
    assert objective.g_loss(fake - 7, real - 7).item() == pytest.approx(g_expected, rel=1e-5)
    # D's gradient pushes each real above its own fake and G's each fake above its own real.
    r, f = real.clone().requires_grad_(True), fake.clone().requires_grad_(True)
    objective.d_loss(r, f).backward()
    assert (r.grad < 0).all() and (f.grad > 0).all()  # descending raises reals, lowers fakes
    torch.testing.assert_close(r.grad, -f.grad)
    assert objective.g_needs_real_logits and not objective.probabilistic  # a critic of differences, not log-odds


def test_relativistic_pairing_refuses_unpaired_logits():
    with pytest.raises(ValueError, match="compares fakes with reals"):
        RelativisticPairing().g_loss(torch.zeros(4))
    # [4, 1] against [4] would broadcast to 16 all-vs-all "pairs".
    with pytest.raises(ValueError, match=r"must have one shape, got \(4, 1\) \(real\) and \(4,\) \(fake\)"):
        RelativisticPairing().d_loss(torch.zeros(4, 1), torch.zeros(4))


def test_only_a_relativistic_objective_asks_for_real_logits_in_gs_step():
    """The loop passes D's real logits to G's loss only for an objective that asks (``g_needs_real_logits``)."""
    assert not Objective.g_needs_real_logits
    for objective in (Minimax(), NonSaturating(), LeastSquares(), Wasserstein(), WassersteinGP(), Hinge()):
        assert not objective.g_needs_real_logits


# ---------------------------------------------------------------- R3GAN's loss: RpGAN with R1 and R2 on a schedule


def tiny_dcgan(**kwargs):
    return DCGAN(latent_dim=8, image_size=16, num_channels=1, g_channels=4, d_channels=4, **kwargs)


def test_r2_is_half_gamma_times_the_squared_input_gradient_on_the_fakes():
    w = torch.full((12,), 0.5)
    real, fake = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    step = Step(gan=None, update=0, real_in=real, fake_in=fake, real_out=None, fake_out=None, d=Linear(w))
    # A linear D's input gradient is w for every sample: gamma / 2 * ||w||^2, lazily scaled by k as R1 is.
    torch.testing.assert_close(R2(gamma=10.0).d_terms(step)["r2"], torch.tensor(10.0 / 2 * 12 * 0.25))
    assert R2(gamma=10.0, every=4).d_terms(step_with(Linear(w), real, update=3)) == {}
    torch.testing.assert_close(R2(gamma=10.0, every=4).d_terms(step)["r2"], torch.tensor(4 * 10.0 / 2 * 12 * 0.25))
    # D(x) = ||x||^2 / 2 has gradient x: R1 measures it on the reals, R2 on the fakes.
    square = lambda x: x.flatten(1).pow(2).sum(1) / 2  # noqa: E731
    step = Step(gan=None, update=0, real_in=real, fake_in=fake, real_out=None, fake_out=None, d=square)
    torch.testing.assert_close(R1(gamma=2.0).d_terms(step)["r1"], real.flatten(1).pow(2).sum(1).mean())
    torch.testing.assert_close(R2(gamma=2.0).d_terms(step)["r2"], fake.flatten(1).pow(2).sum(1).mean())


def test_r1_and_r2_gamma_fall_along_a_cosine_from_the_first_to_the_last_planned_update():
    for trick in (R1(gamma=2.0, gamma_end=0.2), R2(gamma=0.05, gamma_end=0.005)):  # R3GAN's FFHQ-64, CIFAR-10
        start, end = trick.gamma, trick.gamma_end
        assert trick.gamma_at(0, 11) == pytest.approx(start)
        assert trick.gamma_at(5, 11) == pytest.approx((start + end) / 2)  # half-way down the cosine
        assert trick.gamma_at(10, 11) == pytest.approx(end)  # the last update
        assert trick.gamma_at(50, 11) == pytest.approx(end)  # a run extended past its plan stays at the end
        assert trick.gamma_at(2, 11) == pytest.approx(end + (start - end) * (1 + math.cos(math.pi * 0.2)) / 2)
    assert [R1(gamma=3.0).gamma_at(t, 11) for t in (0, 5, 10)] == [3.0, 3.0, 3.0]  # gamma_end None: constant
    # The term uses the gamma of its update, over the length the host's update plans (here 11 D updates).
    host = SimpleNamespace(adversary=SimpleNamespace(planned_d_updates=lambda needed_by: 11))
    w, real = torch.ones(4), torch.randn(2, 4)
    term = lambda trick, update: float(  # noqa: E731
        trick.d_terms(Step(host, update, real, real, None, None, Linear(w)))[trick.term]
    )
    assert term(R1(gamma=2.0, gamma_end=0.2), 0) == pytest.approx(2.0 / 2 * 4)
    assert term(R2(gamma=2.0, gamma_end=0.2), 10) == pytest.approx(0.2 / 2 * 4)
    assert term(R2(gamma=2.0, gamma_end=0.2, every=5), 10) == pytest.approx(5 * 0.2 / 2 * 4)
    # The scheduled gamma is logged beside the term (train/r1_gamma): the one the last computed term used.
    scheduled = R1(gamma=2.0, gamma_end=0.2)
    assert scheduled.stats() == {}  # nothing computed yet
    term(scheduled, 5)
    assert scheduled.stats() == {"r1_gamma": pytest.approx(1.1)}
    constant = R2(gamma=2.0)
    term(constant, 5)
    assert constant.stats() == {}  # a constant gamma is in the config, not worth a curve
    with pytest.raises(ValueError, match="gamma_end must be >= 0"):
        R2(gamma_end=-1.0)


def test_r1_and_r2_terms_reach_ds_weights():
    torch.manual_seed(0)
    d = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(0))
    real, fake = torch.randn(6, 4), torch.randn(6, 4)
    step = Step(gan=None, update=0, real_in=real, fake_in=fake, real_out=None, fake_out=None, d=d)
    for trick in (R1(gamma=1.0), R2(gamma=1.0)):
        d.zero_grad(set_to_none=True)
        (value,) = trick.d_terms(step).values()
        value.backward()
        assert d[0].weight.grad.abs().sum() > 0 and d[2].weight.grad.abs().sum() > 0, type(trick).__name__


class _RecordGamma(pl.Callback):
    """The gamma each R1/R2 term used, per D update; stops after ``stop_after_epoch`` when given."""

    def __init__(self, stop_after_epoch=None):
        self.gammas, self.stop_after_epoch = [], stop_after_epoch

    def on_train_batch_start(self, trainer, gan, *args):
        total = gan.adversary.planned_d_updates(needed_by="test")
        self.gammas.append([trick.gamma_at(gan.d_updates, total) for trick in gan.tricks])

    def on_train_epoch_end(self, trainer, gan):
        trainer.should_stop = trainer.current_epoch == self.stop_after_epoch


def rpgan_r3(**kwargs):
    tricks = [R1(gamma=1.0, gamma_end=0.1), R2(gamma=1.0, gamma_end=0.1, every=2)]
    return tiny_dcgan(objective=RelativisticPairing(), tricks=tricks, betas=(0.0, 0.99), **kwargs)


def test_rpgan_with_scheduled_r1_and_r2_trains_and_resumes_on_the_same_schedule(tmp_path):
    """R3GAN's loss: the relativistic pairing objective, R1 and R2 with gamma falling over the planned run."""
    data = lambda: SyntheticDataModule(image_size=16, num_channels=1, num_images=32, batch_size=8)  # noqa: E731

    def run(callback, ckpt_path=None, save=None):
        pl.seed_everything(7)
        gan, seen = rpgan_r3(), {}
        gan.log_dict = lambda values, **_: seen.update({k: float(v) for k, v in values.items()})
        trainer = make_trainer(tmp_path, max_epochs=2, callbacks=[callback])
        trainer.fit(gan, datamodule=data(), ckpt_path=ckpt_path)
        if save:
            trainer.save_checkpoint(save, weights_only=False)
        return gan, seen

    whole = _RecordGamma()
    straight, seen = run(whole)
    assert straight.d_updates == 8 and {"train/d_r1", "train/d_r2", "train/g_loss"} <= set(seen)
    assert 0.1 <= seen["train/r1_gamma"] <= 1.0 and 0.1 <= seen["train/r2_gamma"] <= 1.0  # the schedule, on W&B
    assert all(math.isfinite(v) for v in seen.values()) and "train/d_real" not in seen
    assert straight.optimizers()[0].param_groups[0]["betas"] == (0.0, 0.99)
    # 8 D updates planned: gamma 1 on the first, 0.1 on the last, for both penalties.
    assert whole.gammas[0] == pytest.approx([1.0, 1.0]) and whole.gammas[-1] == pytest.approx([0.1, 0.1])
    assert all(a[0] > b[0] for a, b in zip(whole.gammas, whole.gammas[1:]))
    first, rest = _RecordGamma(stop_after_epoch=0), _RecordGamma()
    run(first, save=tmp_path / "half.ckpt")
    resumed, _ = run(rest, ckpt_path=tmp_path / "half.ckpt")
    assert first.gammas + rest.gammas == whole.gammas  # the schedule's position is the checkpointed D update count
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    with pytest.raises(ValueError, match="R1's gamma_end needs a run of known length.*set R1's gamma_end to null"):
        make_trainer(tmp_path, max_epochs=-1, max_steps=-1).fit(rpgan_r3(), datamodule=data())


def test_gs_relativistic_loss_sees_the_reals_through_the_updated_frozen_d(tmp_path):
    class Spy(RelativisticPairing):
        def g_loss(self, fake_logits, real_logits=None):
            seen.append(real_logits)
            return super().g_loss(fake_logits, real_logits)

    seen, reals = [], []
    gan = tiny_dcgan(objective=Spy(), ema_decay=None)
    g_loss = gan.adversary.g_loss
    gan.adversary.g_loss = lambda judge, fake, real: reals.append(real) or g_loss(judge, fake, real)
    make_trainer(tmp_path, max_epochs=1, limit_train_batches=1).fit(
        gan, datamodule=SyntheticDataModule(image_size=16, num_channels=1, num_images=8, batch_size=8)
    )
    (real_logits,), (real,) = seen, reals
    assert not real_logits.requires_grad  # no gradient to D from G's loss
    torch.testing.assert_close(real_logits, gan.discriminator(real))  # D as updated by this batch's D step
    before_update, _ = gan.recent_d_outputs[-1]
    assert not torch.allclose(real_logits, before_update)
    with pytest.raises(ValueError, match="RelativisticPairing pairs each fake with a real.*TopK"):
        tiny_dcgan(objective=RelativisticPairing(), tricks=[TopK()])


def test_r3gans_loss_adam_with_beta1_zero_and_gamma_schedules_are_set_from_yaml_and_the_command_line(tmp_path):
    from test_cli import CSV_ONLY, ROOT, fit

    overlays = ["--config", str(ROOT / "configs/tricks/r1.yaml"), "--config", str(ROOT / "configs/tricks/r2.yaml")]
    cli = fit(tmp_path, "vanilla_mnist.yaml", *CSV_ONLY, *overlays,
              "--model.objective", "gan_modules.objectives.RelativisticPairing", "--model.betas", "[0.0, 0.99]",
              "--model.tricks.gamma_end", "0.5")  # fmt: skip
    assert isinstance(cli.model.objective, RelativisticPairing)
    assert [opt.param_groups[0]["betas"] for opt in cli.model.optimizers(use_pl_optimizer=False)] == [(0.0, 0.99)] * 2
    r1, r2 = cli.model.tricks
    assert (type(r1), r1.gamma_end, type(r2), r2.gamma, r2.gamma_end) == (R1, None, R2, 10.0, 0.5)  # the last item's
    saved = (cli.run_dir / "config.yaml").read_text()
    assert "gan_modules.objectives.RelativisticPairing" in saved and "gamma_end: 0.5" in saved
    logged = (cli.run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/d_r1", "train/d_r2"} <= set(logged) and "train/d_real" not in logged
