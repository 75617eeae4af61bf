"""Mode coverage of generated 2-D points on the PacGAN mixtures (``datamodules.toy``)."""

from __future__ import annotations

from typing import Literal

import torch

from datamodules.toy import MIXTURES, mixture_means


def mode_coverage(samples: torch.Tensor, kind: Literal["ring", "grid"]) -> dict[str, float]:
    """PacGAN's scores for generated points [N, 2]: modes covered and the share of high-quality samples.

    A sample is high quality within 3 sigma of its nearest mode; a mode is covered when at least one
    high-quality sample is nearest to it.
    """
    means = mixture_means(kind).to(samples)
    distances = torch.cdist(samples.float(), means)  # [N, K]
    nearest, mode = distances.min(dim=1)
    good = nearest <= 3 * MIXTURES[kind]
    covered = torch.unique(mode[good]).numel()
    return {"modes": float(covered), "num_modes": float(len(means)), "high_quality": float(good.float().mean())}
