"""The class term of a class-conditional GAN whose D has an auxiliary classifier (ACGAN, Odena et al. 2017).

``GANModule`` adds it itself for ``conditioning: acgan`` (after ``model.tricks``); it is not listed in YAML.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from gan_modules.tricks.base import Step, Trick, TrickHost


class AuxiliaryClassifier(Trick):
    """ACGAN's log-likelihood of the right class, L_C (Odena et al. 2017, eq. 2), as a cross-entropy on D's auxiliary
    classifier (``discriminator.class_logits``, on D's features from the same pass as its logits).

    D is trained to name the class of the real and of the generated images (``train/d_class``: the two
    cross-entropies summed), G to make images D names as the class they were drawn for (``train/g_class``). Each is
    added to the adversarial loss with ``weight`` (the paper's is 1: D maximizes L_S + L_C, G maximizes L_C - L_S).
    """

    needs_features = True

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        if not weight > 0:
            raise ValueError(f"model.acgan_weight must be positive, got {weight}")
        self.weight = weight

    def setup(self, gan: TrickHost) -> None:
        super().setup(gan)
        if getattr(gan.discriminator, "conditioning", None) != "acgan":
            raise ValueError(f"{type(gan.discriminator).__name__} has no auxiliary classifier (conditioning acgan)")

    def _loss(self, step: Step, features: Tensor) -> Tensor:
        return F.cross_entropy(step.gan.discriminator.class_logits(features).float(), step.labels)

    def d_terms(self, step: Step) -> dict[str, Tensor]:
        real, fake = step.real_out.features, step.fake_out.features
        return {"class": self.weight * (self._loss(step, real) + self._loss(step, fake))}

    def g_terms(self, step: Step) -> dict[str, Tensor]:
        return {"class": self.weight * self._loss(step, step.fake_out.features)}

    def extra_repr(self) -> str:
        return f"weight={self.weight}"
