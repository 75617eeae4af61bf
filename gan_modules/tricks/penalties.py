"""D regularizers: penalties on input gradients (R1 with StyleGAN2's lazy interval, DRAGAN, WGAN-GP's gradient
penalty) and WGAN's weight clipping. The last two are what ``Wasserstein`` and ``WassersteinGP`` imply: the
objective names them (``Objective.implied_tricks``) and the loop runs them through the same hooks as any trick."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gan_modules.tricks.base import Step, Trick, TrickHost


def gradient_penalty(discriminator: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor) -> Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] on random interpolates x_hat (Gulrajani et al. 2017)."""
    alpha = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device, dtype=real.dtype)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    logits = discriminator(x_hat)
    (grad,) = torch.autograd.grad(outputs=logits.sum(), inputs=x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


def input_gradients(d, images: Tensor) -> Tensor:
    """d/dx of sum(D(x)) at ``images`` (detached copies), kept in the graph so the penalty trains D."""
    x = images.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(outputs=d(x).float().sum(), inputs=x, create_graph=True)
    return grad


class R1(Trick):
    """R1 = gamma / 2 * E_real[||grad_x D(x)||^2] added to D's loss (Mescheder et al. 2018).

    Penalizes D's gradient on real data only, which makes the game locally convergent. ``every = k`` is
    the lazy form of Karras et al. 2020 (StyleGAN2): computed on every k-th D update with weight
    ``k * gamma``, about k times cheaper at the same average strength (they use k = 16). The penalty is
    taken on D's inputs as D sees them (after any augmentation), in an extra D pass on those steps.
    """

    def __init__(self, gamma: float = 10.0, every: int = 1) -> None:
        super().__init__(every=every)
        if gamma <= 0:
            raise ValueError(f"R1: gamma must be positive, got {gamma}")
        self.gamma = gamma

    def d_terms(self, step: Step) -> dict[str, Tensor]:
        if not self.due(step.update):
            return {}
        grad = input_gradients(step.d, step.real_in)
        return {"r1": self.every * self.gamma / 2 * grad.flatten(1).pow(2).sum(1).mean()}


class DRAGAN(Trick):
    """DRAGAN's penalty: weight * E[(||grad D(x_p)||_2 - 1)^2] around the real data (Kodali et al. 2017).

    x_p is a point between each real image x and a noisy copy x + c * std(x) * U[0, 1]: the penalty keeps
    D smooth near the data, where mode collapse starts, instead of on WGAN-GP's real-fake lines.
    """

    def __init__(self, weight: float = 10.0, c: float = 0.5, every: int = 1) -> None:
        super().__init__(every=every)
        if weight <= 0 or c <= 0:
            raise ValueError(f"DRAGAN: weight and c must be positive, got {weight} and {c}")
        self.weight = weight
        self.c = c

    def d_terms(self, step: Step) -> dict[str, Tensor]:
        if not self.due(step.update):
            return {}
        x = step.real_in.detach()
        noisy = x + self.c * x.std() * torch.rand_like(x)
        alpha = torch.rand(x.shape[0], *([1] * (x.ndim - 1)), device=x.device, dtype=x.dtype)
        grad = input_gradients(step.d, x + alpha * (noisy - x))
        return {"dragan": self.every * self.weight * (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()}


class GradientPenalty(Trick):
    """WGAN-GP's penalty, weight * E[(||grad D(x_hat)||_2 - 1)^2] on real-fake interpolates (Gulrajani et al. 2017).

    ``WassersteinGP`` implies it (with its ``gp_weight``); listed in ``model.tricks`` it adds the same penalty to any
    objective. Logged as ``train/d_penalty``, the key WGAN-GP runs have always logged.
    """

    def __init__(self, weight: float = 10.0, every: int = 1) -> None:  # Gulrajani et al. 2017, lambda = 10
        super().__init__(every=every)
        if weight < 0:
            raise ValueError(f"GradientPenalty: weight must be >= 0, got {weight}")
        self.weight = weight

    def d_terms(self, step: Step) -> dict[str, Tensor]:
        if not self.due(step.update):
            return {}
        return {"penalty": self.every * self.weight * gradient_penalty(step.d, step.real_in, step.fake_in)}


class WeightClipping(Trick):
    """Clamps every D parameter to [-clip_value, clip_value] after each D update (Arjovsky et al. 2017, Algorithm 1).

    What ``Wasserstein`` implies: a crude way to keep the critic roughly 1-Lipschitz.
    """

    def __init__(self, clip_value: float = 0.01) -> None:  # Arjovsky et al. 2017, Algorithm 1
        super().__init__()
        if clip_value <= 0:
            raise ValueError(f"WeightClipping: clip_value must be positive, got {clip_value}")
        self.clip_value = clip_value

    @torch.no_grad()
    def after_d_step(self, gan: TrickHost) -> None:
        for p in gan.discriminator.parameters():
            p.clamp_(-self.clip_value, self.clip_value)

    def extra_repr(self) -> str:
        return f"clip_value={self.clip_value}"
