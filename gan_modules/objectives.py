"""GAN objectives: small stateless objects chosen in YAML by ``class_path``.

Each has ``d_loss(real_logits, fake_logits)`` and ``g_loss(fake_logits)`` on raw discriminator
logits (higher = more real), both means over the batch. A relativistic objective's G loss also compares the
fakes with reals: it says ``g_needs_real_logits = True`` and is called as ``g_loss(fake_logits, real_logits)``,
with D's logits on this batch's reals from the current (just updated, frozen) D. An objective defined with a D
regularizer (WGAN's weight clipping, WGAN-GP's gradient penalty) names it in ``implied_tricks``: the loop runs it
ahead of ``model.tricks`` through the same hooks, so there is one way to regularize D.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gan_modules.tricks.base import Trick
from gan_modules.tricks.penalties import GradientPenalty, WeightClipping, gradient_penalty  # noqa: F401 (re-exported)


def _targets(logits: Tensor, label_range: tuple[float, float]) -> Tensor:
    low, high = label_range
    if low == high:
        return torch.full_like(logits, low)
    return torch.empty_like(logits).uniform_(low, high)


class Objective:
    """The interface every objective implements; see the module docstring."""

    # True when D's logits are log-odds of "real" (a cross-entropy loss): sigmoid(logit) is then D's
    # probability, logged as train/d_real and train/d_fake. Critics (Wasserstein, hinge, least squares) say False.
    probabilistic: bool = False
    # True when G's loss compares fakes with reals (relativistic losses): the loop then runs the current D on this
    # batch's reals in G's step (no gradient to D) and passes ``g_loss(fake_logits, real_logits)``. Objectives that
    # say False are called as ``g_loss(fake_logits)`` and need not take ``real_logits``.
    g_needs_real_logits: bool = False

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits: Tensor, real_logits: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def implied_tricks(self) -> list[Trick]:
        """The D regularizers this objective is defined with; the loop runs them first, then ``model.tricks``."""
        return []

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class _CrossEntropyObjective(Objective):
    """D is a real/fake classifier trained with binary cross-entropy on (optionally noisy) targets.

    ``real_label`` and ``fake_label`` are ranges targets are drawn from uniformly per sample:
    (0.9, 0.9) is one-sided label smoothing (Salimans et al. 2016); real (0.8, 1.0) with fake
    (0.0, 0.2) is the noisy labels of seed 002. The defaults are the exact 1/0 targets.
    """

    probabilistic = True

    def __init__(self, real_label: tuple[float, float] = (1.0, 1.0), fake_label: tuple[float, float] = (0.0, 0.0)):
        for name, (low, high) in (("real_label", real_label), ("fake_label", fake_label)):
            if not 0.0 <= low <= high <= 1.0:
                raise ValueError(f"{name} must be a range (low, high) with 0 <= low <= high <= 1, got {(low, high)}")
        self.real_label = tuple(real_label)
        self.fake_label = tuple(fake_label)

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        # -[t log D(x) + (1 - t) log(1 - D(x))] on both sides; with exact labels this is
        # softplus(-real) + softplus(fake), i.e. -log D(x) - log(1 - D(G(z))).
        real = F.binary_cross_entropy_with_logits(real_logits, _targets(real_logits, self.real_label))
        fake = F.binary_cross_entropy_with_logits(fake_logits, _targets(fake_logits, self.fake_label))
        return real + fake


class Minimax(_CrossEntropyObjective):
    """The original minimax game (Goodfellow et al. 2014): G minimizes log(1 - D(G(z))).

    Saturates early in training when D rejects fakes confidently; kept for reproduction.
    """

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return -F.softplus(fake_logits).mean()  # log(1 - sigmoid(x)) = -softplus(x)


class NonSaturating(_CrossEntropyObjective):
    """Non-saturating GAN (Goodfellow et al. 2014, sec. 3): G maximizes log D(G(z)). The default."""

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return F.softplus(-fake_logits).mean()  # -log(sigmoid(x))


class LeastSquares(Objective):
    """LSGAN (Mao et al. 2017) with the 0-1 coding: D pushes real to 1, fake to 0; G pushes fake to 1."""

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return 0.5 * ((real_logits - 1).pow(2).mean() + fake_logits.pow(2).mean())

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return 0.5 * (fake_logits - 1).pow(2).mean()


class Wasserstein(Objective):
    """WGAN critic loss (Arjovsky et al. 2017) with weight clipping to keep D roughly 1-Lipschitz.

    Pair it with ``n_critic: 5`` and RMSprop lr 5e-5 as the paper does.
    """

    def __init__(self, clip_value: float = 0.01) -> None:  # Arjovsky et al. 2017, Algorithm 1
        if clip_value <= 0:
            raise ValueError(f"clip_value must be positive, got {clip_value}")
        self.clip_value = clip_value

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return -fake_logits.mean()

    def implied_tricks(self) -> list[Trick]:
        return [WeightClipping(self.clip_value)]


class WassersteinGP(Objective):
    """WGAN-GP (Gulrajani et al. 2017): the critic loss plus a gradient penalty instead of clipping.

    Use a discriminator without BatchNorm (the penalty is per-sample); ``n_critic: 5``, Adam
    lr 1e-4 betas (0.0, 0.9) are the paper's settings.
    """

    def __init__(self, gp_weight: float = 10.0) -> None:  # Gulrajani et al. 2017, lambda = 10
        if gp_weight < 0:
            raise ValueError(f"gp_weight must be >= 0, got {gp_weight}")
        self.gp_weight = gp_weight

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return -fake_logits.mean()

    def implied_tricks(self) -> list[Trick]:
        return [GradientPenalty(self.gp_weight)]  # logged as train/d_penalty


class Hinge(Objective):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018): D = relu(1 - real) + relu(1 + fake), G = -fake."""

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return -fake_logits.mean()


class RelativisticPairing(Objective):
    """RpGAN, the relativistic pairing loss (Jolicoeur-Martineau 2019; R3GAN, Huang et al. 2024).

    Each real is paired with the fake at its batch position: D minimizes softplus(-(D(x_r) - D(x_f))), G minimizes
    softplus(-(D(x_f) - D(x_r))), both means over the pairs. D judges which of the two is more real, not each one
    alone; the loss landscape then has no mode-dropping basins, which the non-saturating loss has (Sun et al. 2020).
    With R1 and R2 (``gan_modules.tricks.R1``, ``R2``) it is locally convergent: R3GAN's regularized loss.

    D's raw output is a score whose differences matter, not log-odds of "real": ``probabilistic`` is False, so the
    loop logs D's raw scores (``train/d_real_score``, ``train/d_fake_score``) and no sigmoid of them.
    """

    g_needs_real_logits = True

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        _check_pairs(real_logits, fake_logits)
        return F.softplus(fake_logits - real_logits).mean()  # softplus(-(real - fake))

    def g_loss(self, fake_logits: Tensor, real_logits: Tensor | None = None) -> Tensor:
        if real_logits is None:
            raise ValueError("RelativisticPairing's G loss compares fakes with reals: pass real_logits as well")
        _check_pairs(real_logits, fake_logits)
        return F.softplus(real_logits - fake_logits).mean()  # softplus(-(fake - real))


def _check_pairs(real_logits: Tensor, fake_logits: Tensor) -> None:
    # Logits of different shapes would broadcast ([N, 1] against [N] makes N x N "pairs") instead of pairing.
    if real_logits.shape != fake_logits.shape:
        raise ValueError(
            f"RelativisticPairing pairs each real with a fake: D's logits on them must have one shape, got "
            f"{tuple(real_logits.shape)} (real) and {tuple(fake_logits.shape)} (fake); give D as many fakes as reals"
        )
