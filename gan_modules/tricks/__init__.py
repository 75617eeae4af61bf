"""Training tricks as YAML list items (``model.tricks``); see ``base.py`` for the hooks and docs/tricks.md."""

from gan_modules.tricks.augment import DiffAugment, InstanceNoise
from gan_modules.tricks.base import DOut, Step, Trick, TrickHost
from gan_modules.tricks.matching import FeatureMatching, HistoricalAveraging
from gan_modules.tricks.network import PacGAN, SpectralNorm
from gan_modules.tricks.penalties import DRAGAN, R1, R2, GradientPenalty, WeightClipping
from gan_modules.tricks.selection import TopK

__all__ = [
    "DOut",
    "DRAGAN",
    "DiffAugment",
    "FeatureMatching",
    "GradientPenalty",
    "HistoricalAveraging",
    "InstanceNoise",
    "PacGAN",
    "R1",
    "R2",
    "SpectralNorm",
    "Step",
    "TopK",
    "Trick",
    "TrickHost",
    "WeightClipping",
]
