"""D regularizers: penalties on input gradients (R1 and R2 with StyleGAN2's lazy interval and R3GAN's gamma
schedule, DRAGAN, WGAN-GP's gradient penalty) and WGAN's weight clipping. The last two are what ``Wasserstein`` and
``WassersteinGP`` imply: the objective names them (``Objective.implied_tricks``) and the loop runs them through the
same hooks as any trick."""

from __future__ import annotations

import math
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


class _ZeroCenteredPenalty(Trick):
    """gamma / 2 * E[||grad_x D(x)||^2] on the real (R1) or the fake (R2) images D saw; see ``R1``."""

    term = ""  # logged as train/d_<term>

    def __init__(self, gamma: float = 10.0, every: int = 1, gamma_end: float | None = None) -> None:
        super().__init__(every=every)
        kind = type(self).__name__
        if gamma <= 0:
            raise ValueError(f"{kind}: gamma must be positive, got {gamma}")
        if gamma_end is not None and gamma_end < 0:
            raise ValueError(f"{kind}: gamma_end must be >= 0, or null for a constant gamma, got {gamma_end}")
        self.gamma = gamma
        self.gamma_end = gamma_end
        self._gamma_now: float | None = None  # the scheduled gamma of the last update that computed the penalty

    def gamma_at(self, update: int, total: int) -> float:
        """gamma on D update ``update`` (0-based) of a run of ``total``: ``gamma`` on the first, ``gamma_end`` on
        the last and after it, half a cosine between (R3GAN's ``cosine_decay_with_warmup`` without the warm-up)."""
        if self.gamma_end is None:
            return self.gamma
        progress = min(1.0, update / max(1, total - 1))
        return self.gamma_end + (self.gamma - self.gamma_end) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def samples(self, step: Step) -> Tensor:
        raise NotImplementedError

    def stats(self) -> dict[str, float]:
        """A scheduled gamma as ``<term>_gamma`` (train/r1_gamma), once the penalty has been computed."""
        return {} if self._gamma_now is None else {f"{self.term}_gamma": self._gamma_now}

    def d_terms(self, step: Step) -> dict[str, Tensor]:
        if not self.due(step.update):
            return {}
        gamma = self.gamma
        if self.gamma_end is not None:  # the run's length, from the host's trainer (counted as the lr decay counts)
            total = step.gan.adversary.planned_d_updates(needed_by=f"{type(self).__name__}'s gamma_end")
            gamma = self._gamma_now = self.gamma_at(step.update, total)
        grad = input_gradients(step.d, self.samples(step))
        return {self.term: self.every * gamma / 2 * grad.flatten(1).pow(2).sum(1).mean()}


class R1(_ZeroCenteredPenalty):
    """R1 = gamma / 2 * E_real[||grad_x D(x)||^2] added to D's loss (Mescheder et al. 2018); logged as train/d_r1.

    Penalizes D's gradient on real data only, which makes the game locally convergent. ``every = k`` is
    the lazy form of Karras et al. 2020 (StyleGAN2): computed on every k-th D update with weight
    ``k * gamma``, about k times cheaper at the same average strength (they use k = 16). The penalty is
    taken on D's inputs as D sees them (after any augmentation), in an extra D pass on those steps.

    ``gamma_end`` makes gamma fall along a cosine from ``gamma`` on the first D update to ``gamma_end`` on the
    run's last (R3GAN's presets, Huang et al. 2024: 0.05 -> 0.005 on CIFAR-10, 2 -> 0.2 on FFHQ-64), logged as
    train/r1_gamma (train/r2_gamma for ``R2``). The run's
    length is its planned D updates, from ``trainer.max_epochs``/``max_steps`` as the learning-rate decay counts
    them, and gamma is a function of the checkpointed D update count, so a resumed run follows the same schedule.
    None (the default) keeps gamma constant.
    """

    term = "r1"

    def samples(self, step: Step) -> Tensor:
        return step.real_in


class R2(_ZeroCenteredPenalty):
    """R2 = gamma / 2 * E_fake[||grad_x D(x)||^2] on the fakes D judged in this update; logged as train/d_r2.

    Mescheder et al. 2018's penalty on the generated data. R3GAN (Huang et al. 2024) adds it to R1 with the same
    gamma: with the relativistic pairing loss (``objectives.RelativisticPairing``) the two together make training
    locally convergent. Lazy with ``every`` and scheduled with ``gamma_end`` exactly as ``R1``.
    """

    term = "r2"

    def samples(self, step: Step) -> Tensor:
        return step.fake_in


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
