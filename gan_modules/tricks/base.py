"""The extension points every training trick is an instance of.

A ``Trick`` is a small ``nn.Module`` chosen in YAML as a list item (``model.tricks``, each a ``class_path``
with typed ``init_args``). The adversarial update (``gan_modules/adversarial.py``, which ``GANModule`` and
``FaceSwap`` both train through) calls its hooks and nothing else, so the loop has no branch per trick. An
objective's own regularizers (WGAN's weight clipping, WGAN-GP's penalty) are tricks too, run ahead of the list:

- ``setup(gan)``: once, when the GAN is built (before the EMA copy and the optimizers): check that the
  variant can take the trick (raise ``ValueError`` with what to do), register state as buffers (saved in
  checkpoints, moved with the model, identical on every DDP rank).
- ``d_input(images, gan)``: transforms every image D sees, real and fake, in D's and in G's passes
  (instance noise, DiffAugment).
- ``d_terms(step)`` / ``g_terms(step)``: named loss terms added to D's or G's loss and logged as
  ``train/d_<name>`` / ``train/g_<name>`` (R1, DRAGAN, feature matching, historical averaging).
  ``step`` carries the batch, D's outputs (with D's intermediate features when a trick asks for them,
  from the same forward pass) and a function to run D again where a penalty needs input gradients.
- ``g_logits(logits, gan)``: the fake logits G's adversarial loss averages over (top-k training keeps the
  fakes D scores most real).
- ``after_d_step(gan)`` / ``after_g_step(gan)``: after each optimizer step (running averages).
- ``stats()``: values that are not loss terms, logged beside D's statistics as ``train/<name>`` (a scheduled
  penalty weight: ``train/r1_gamma``).

``every = k`` makes a term lazy (Karras et al. 2020, StyleGAN2): computed on every k-th update only, and
scaled by k so its average strength does not change.

A model with several discriminators (``FaceSwap``: one per identity, one optimizer) calls ``d_input``,
``d_terms``, ``g_logits`` and ``g_terms`` once per discriminator and sums the terms, as it sums the objective's
losses; ``setup`` and the after-step hooks run once per update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor, nn


class TrickHost(Protocol):
    """What a trick may use of its model; ``GANModule`` and ``FaceSwap`` are hosts (tricks never import them).

    ``setup`` may also register buffers on it and replace its ``discriminator`` (spectral norm, packing).
    """

    generator: nn.Module
    discriminator: nn.Module
    d_updates: int  # D updates made so far
    g_updates: int
    n_critic: int
    current_epoch: int

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None: ...

    def __getattr__(self, name: str) -> Any: ...  # a trick may read what its own variant adds


@dataclass
class DOut:
    """What D returned for one batch: raw logits, and its trunk's features when a trick asked for them."""

    logits: Tensor
    features: Tensor | None = None


@dataclass
class Step:
    """One D or G update as the tricks see it.

    ``real_in``/``fake_in`` are the images as D saw them (after every ``d_input``); ``d`` runs D on such
    images again (for penalties on input gradients). ``real_out`` is None in G's step unless a trick needs
    real features, which then come from this batch's D step (computed before D's update, detached). ``labels`` is
    the class of each row [N] in a class-conditional model (the reals and the fakes of a batch share them), else None.
    """

    gan: TrickHost
    update: int  # this network's update count before the step (d_updates or g_updates)
    real_in: Tensor
    fake_in: Tensor
    real_out: DOut | None
    fake_out: DOut
    d: Callable[[Tensor], Tensor]
    # How many discriminators this update sums terms over: a term that does not depend on the batch (historical
    # averaging) divides itself by it, so that the sum is the term once.
    judges: int = 1
    labels: Tensor | None = None


class Trick(nn.Module):
    """Base class of every trick; see the module docstring. Subclasses override only the hooks they use."""

    # Whether d_terms/g_terms read DOut.features (D must then return its trunk's features).
    needs_features: bool = False

    def __init__(self, every: int = 1) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"{type(self).__name__}: every must be >= 1 (1 = every update), got {every}")
        self.every = every

    def setup(self, gan: TrickHost) -> None:
        if self.needs_features and not hasattr(gan.discriminator, "features_and_logits"):
            raise ValueError(
                f"{type(self).__name__} needs D's intermediate features, which {type(gan).__name__}'s "
                f"{type(gan.discriminator).__name__} does not expose (features_and_logits); use it with VanillaGAN "
                "or DCGAN"
            )

    def due(self, update: int) -> bool:
        return update % self.every == 0

    def d_input(self, images: Tensor, gan: TrickHost) -> Tensor:
        return images

    def d_terms(self, step: Step) -> dict[str, Tensor]:
        return {}

    def g_terms(self, step: Step) -> dict[str, Tensor]:
        return {}

    def g_logits(self, logits: Tensor, gan: TrickHost) -> Tensor:
        return logits

    def after_d_step(self, gan: TrickHost) -> None:
        pass

    def after_g_step(self, gan: TrickHost) -> None:
        pass

    def stats(self) -> dict[str, float]:
        return {}

    def extra_repr(self) -> str:
        return f"every={self.every}" if self.every != 1 else ""
