"""Tricks that choose which fakes G learns from: top-k training."""

from __future__ import annotations

import math

from torch import Tensor

from gan_modules.tricks.base import Trick, TrickHost


class TopK(Trick):
    """G's adversarial loss over only the k fakes D scores most real (Sinha et al. 2020, "Top-k Training of GANs").

    The fakes D scores least real get no gradient in G's update: their gradients point across the space
    between modes and can pull samples that already sit on a mode away from it. k starts at the whole batch
    and shrinks with the epochs trained, ``k = B * max(min_fraction, gamma ** epochs)``; the paper uses gamma
    0.99 and min_fraction 0.5 to 0.75 on image datasets. ``epochs`` counts G's updates in epochs (fractional,
    so a one-epoch run decays too; whole epochs give the paper's schedule) from the checkpointed update
    count, so a resumed run keeps the same k. With several logits per sample (a PatchGAN) a sample's score
    is its mean logit; with PacGAN the packs are the samples. Costs nothing: the same D pass, a sort.
    """

    def __init__(self, gamma: float = 0.99, min_fraction: float = 0.5) -> None:
        super().__init__()
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"TopK: gamma must be in (0, 1] (the per-epoch decay of k), got {gamma}")
        if not 0.0 < min_fraction <= 1.0:
            raise ValueError(
                f"TopK: min_fraction must be in (0, 1] (the smallest k as a share of the batch), got {min_fraction}"
            )
        self.gamma = gamma
        self.min_fraction = min_fraction

    def fraction(self, epochs: float) -> float:
        """The share of the batch G learns from after ``epochs`` epochs of training."""
        return max(self.min_fraction, self.gamma**epochs)

    def k(self, batch: int, epochs: float) -> int:
        return max(1, math.ceil(batch * self.fraction(epochs)))

    @staticmethod
    def epochs(gan: TrickHost) -> float:
        """Epochs trained so far, from G's update count and the trainer's batches per epoch."""
        batches = getattr(gan._trainer, "num_training_batches", None)
        if not batches or math.isinf(batches):  # no trainer, or an iterable without a length
            return float(gan.current_epoch)
        return gan.g_updates * gan.n_critic / batches

    def g_logits(self, logits: Tensor, gan: TrickHost) -> Tensor:
        k = self.k(logits.shape[0], self.epochs(gan))
        if k >= logits.shape[0]:
            return logits
        scores = logits.detach().flatten(1).mean(1) if logits.ndim > 1 else logits.detach()
        return logits[scores.topk(k).indices]

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, min_fraction={self.min_fraction}"
