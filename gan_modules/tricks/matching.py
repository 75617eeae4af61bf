"""Terms that compare with statistics rather than fool D: feature matching and historical averaging."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from gan_modules.tricks.base import Step, Trick, TrickHost


class FeatureMatching(Trick):
    """weight * ||E[f(x)] - E[f(G(z))]||^2 added to G's loss, f = D's last hidden layer (Salimans et al. 2016).

    G matches the statistics of real data in D's feature space instead of only maximizing D's output,
    which keeps G from over-training on the current D. The real features come from the same batch's D
    step (no extra D pass); the fake ones from G's own pass through D.
    """

    needs_features = True

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        if weight <= 0:
            raise ValueError(f"FeatureMatching: weight must be positive, got {weight}")
        self.weight = weight

    def g_terms(self, step: Step) -> dict[str, Tensor]:
        real = step.real_out.features.float().mean(0)
        fake = step.fake_out.features.float().mean(0)
        return {"feature_matching": self.weight * (real - fake).pow(2).sum()}


class HistoricalAveraging(Trick):
    """weight * ||theta - mean of past theta||^2 on G's and/or D's parameters (Salimans et al. 2016).

    Penalizes moving away from where a network has been, which damps the oscillations of the
    two-player game. ``window: null`` averages every past value (the paper's online form, one copy of the
    parameters); ``window: T`` the last T values (T copies). The averages are buffers: checkpoints hold
    them and a resumed run continues exactly.
    """

    def __init__(self, weight: float = 1e-3, networks: Literal["g", "d", "both"] = "both", window: int | None = None):
        super().__init__()
        if weight <= 0:
            raise ValueError(f"HistoricalAveraging: weight must be positive, got {weight}")
        if window is not None and window < 1:
            raise ValueError(f"HistoricalAveraging: window must be >= 1 or null (all past values), got {window}")
        self.weight = weight
        self.networks = networks
        self.window = window

    def setup(self, gan: TrickHost) -> None:
        super().setup(gan)
        for side, net in (("g", gan.generator), ("d", gan.discriminator)):
            if self.networks not in (side, "both"):
                continue
            flat = torch.cat([p.detach().flatten() for p in net.parameters()]).float()
            history = flat.repeat(self.window, 1) if self.window else flat.clone()
            self.register_buffer(f"{side}_history", history)
            self.register_buffer(f"{side}_count", torch.ones((), dtype=torch.long))

    def _penalty(self, side: str, net) -> Tensor:
        flat = torch.cat([p.flatten() for p in net.parameters()]).float()
        history = getattr(self, f"{side}_history")
        if self.window:
            count = int(getattr(self, f"{side}_count").clamp(max=self.window))
            average = history[:count].mean(0)
        else:
            average = history
        return self.weight * (flat - average).pow(2).sum()

    def _record(self, side: str, net) -> None:
        flat = torch.cat([p.detach().flatten() for p in net.parameters()]).float()
        history, count = getattr(self, f"{side}_history"), getattr(self, f"{side}_count")
        if self.window:
            history[int(count) % self.window] = flat  # ring buffer; slot 0 held the initial weights
        else:
            history.add_((flat - history) / (count + 1))  # running mean over every value so far
        count.add_(1)

    def d_terms(self, step: Step) -> dict[str, Tensor]:
        if self.networks == "g":
            return {}
        return {"historical_averaging": self._penalty("d", step.gan.discriminator) / step.judges}

    def g_terms(self, step: Step) -> dict[str, Tensor]:
        if self.networks == "d":
            return {}
        return {"historical_averaging": self._penalty("g", step.gan.generator) / step.judges}

    def after_d_step(self, gan: TrickHost) -> None:
        if self.networks != "g":
            self._record("d", gan.discriminator)

    def after_g_step(self, gan: TrickHost) -> None:
        if self.networks != "d":
            self._record("g", gan.generator)
