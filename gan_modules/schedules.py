"""What changes over a run: the learning-rate decay and the generator's moving average (EMA)."""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import Tensor

LR_DECAYS = ("none", "linear", "cosine")


def check_lr_decay(lr_decay: str, lr_decay_start: float) -> None:
    """The ``model.lr_decay``/``model.lr_decay_start`` checks every model with a decay makes."""
    if lr_decay not in LR_DECAYS:
        raise ValueError(f"model.lr_decay must be 'none', 'linear' or 'cosine', got {lr_decay!r}")
    if not 0.0 <= lr_decay_start < 1.0:
        raise ValueError(f"model.lr_decay_start is a fraction of the run in [0, 1), got {lr_decay_start}")


def lr_factor(kind: str, start: float, total: int, step: int) -> float:
    """The learning-rate multiplier after ``step`` of ``total`` updates: 1 until ``start * total``, then a linear
    or cosine fall to 0 at ``total`` (and 0 after it)."""
    begin = start * total
    if step <= begin:
        return 1.0
    progress = min(1.0, (step - begin) / max(1.0, total - begin))
    if kind == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def planned_batches(
    trainer, steps: int = 1, per_batches: int = 1, needed_by: str = "model.lr_decay", instead: str = "'none'"
) -> int:
    """The run's length in training batches, for a learning-rate decay (or another schedule over the run).

    ``trainer.max_steps`` counts optimizer steps, and a manually optimized module makes ``steps`` of them every
    ``per_batches`` batches (a GAN with ``n_critic`` k: k + 1 every k; the face swap with discriminators: 2 every 1).
    ``needed_by`` names the setting that asked, and ``instead`` its value that needs no run length, for the error.
    """
    batches = trainer.estimated_stepping_batches if trainer.max_epochs not in (None, -1) else math.inf
    if trainer.max_steps not in (None, -1):
        batches = min(batches, trainer.max_steps * per_batches / steps)
    if not math.isfinite(batches):
        raise ValueError(
            f"{needed_by} needs a run of known length: set trainer.max_epochs or trainer.max_steps, "
            f"or set {needed_by} to {instead}"
        )
    return max(1, int(batches))


def decay_schedules(kind: str, start: float, totals: list[tuple[torch.optim.Optimizer, int]]) -> list:
    """One ``LambdaLR`` per (optimizer, its planned updates), stepped once per update of that optimizer."""
    return [torch.optim.lr_scheduler.LambdaLR(opt, partial(lr_factor, kind, start, total)) for opt, total in totals]


def ema_multi_avg_fn(decay: float):
    """EMA update for ``AveragedModel`` with the usual warm-up: decay_t = min(decay, (1 + t) / (10 + t)).

    The warm-up (as in TF's ExponentialMovingAverage with num_updates) lets the average follow the
    fast-moving early weights instead of dragging the random initialisation along for ~1/(1-decay) steps.
    """

    @torch.no_grad()
    def update(ema_params: list[Tensor], params: list[Tensor], num_averaged: Tensor) -> None:
        n = int(num_averaged)
        beta = min(decay, (1 + n) / (10 + n))
        float_pairs = [(e, p) for e, p in zip(ema_params, params) if e.is_floating_point()]
        if float_pairs:
            ema_float, float_params = zip(*float_pairs)
            torch._foreach_lerp_(list(ema_float), list(float_params), 1.0 - beta)
        for e, p in zip(ema_params, params):
            if not e.is_floating_point():  # e.g. BatchNorm's num_batches_tracked
                e.copy_(p)

    return update
