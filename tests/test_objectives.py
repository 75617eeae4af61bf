import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from gan_modules.objectives import (
    Hinge,
    LeastSquares,
    Minimax,
    NonSaturating,
    Wasserstein,
    WassersteinGP,
    gradient_penalty,
)
from gan_modules.tricks import GradientPenalty, Step, WeightClipping

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
    ],
)
def test_objectives_at_zero_logits(objective, d_expected, g_expected):
    real, fake = zeros()
    assert objective.d_loss(real, fake).item() == pytest.approx(d_expected, abs=1e-6)
    assert objective.g_loss(fake).item() == pytest.approx(g_expected, abs=1e-6)


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
