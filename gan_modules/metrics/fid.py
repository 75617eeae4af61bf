"""FID, KID and precision/recall/density/coverage from one pass of Inception features.

Images are converted the way saving a PNG would (clamp, round to uint8), features are extracted once per
batch by ``InceptionV3Features``, and the same features feed torchmetrics' ``FrechetInceptionDistance`` and
``KernelInceptionDistance`` (through a pass-through ``feature=`` module) and ``PrecisionRecallDensityCoverage``.
Real features can therefore come from the on-disk reference cache without touching the network.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from gan_modules.metrics.prdc import NEAREST_K, PrecisionRecallDensityCoverage

KID_SUBSETS = 100  # Binkowski et al. 2018 / torch-fidelity defaults: 100 subsets of up to 1000 samples
KID_SUBSET_SIZE = 1000
FEATURE_BATCH_SIZE = 100


def to_uint8(images: Tensor) -> Tensor:
    """Images in [-1, 1] (float) -> uint8 [0, 255] as a saved PNG holds them: clamped, then rounded.

    torchmetrics' ``normalize=True`` multiplies by 255 and casts, which truncates and wraps values outside
    [0, 1]; a generator's tanh output must not reach it raw. uint8 input is returned unchanged.
    """
    if images.dtype == torch.uint8:
        return images
    if not images.is_floating_point():
        raise ValueError(f"expected float images in [-1, 1] or uint8 images, got {images.dtype}")
    return ((images.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round_().to(torch.uint8)


class PassThrough(nn.Module):
    """The ``feature=`` module torchmetrics gets: features are already extracted, it returns them as they are."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


@torch.inference_mode()
def extract_features(network: nn.Module, images: Tensor, batch_size: int = FEATURE_BATCH_SIZE) -> Tensor:
    """Images (uint8, or float in [-1, 1]) [N, C, H, W] -> float32 features [N, D] on the network's device.

    Batches go to the network's device one at a time, so a whole dataset can be passed from CPU memory.
    """
    tensors = [*network.parameters(), *network.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")
    out = [network(to_uint8(chunk.to(device, non_blocking=True))).float() for chunk in images.split(batch_size)]
    return torch.cat(out) if out else torch.empty(0, getattr(network, "num_features", 0), device=device)


class GANMetrics(nn.Module):
    """Accumulates real and fake features; ``compute()`` returns FID, KID (mean, std) and PRDC.

    ``network`` maps uint8 images to features (``InceptionV3Features`` for the standard numbers; tests use a
    tiny stand-in). Pass ``None`` to feed features only (``update_features``). The metric states sync under
    DDP (sums for FID, concatenated features for KID and PRDC) and ``compute()`` runs on every rank.
    """

    def __init__(
        self,
        network: nn.Module | None,
        num_features: int = 2048,
        kid_subsets: int = KID_SUBSETS,
        kid_subset_size: int = KID_SUBSET_SIZE,
        nearest_k: int = NEAREST_K,
    ) -> None:
        super().__init__()
        self.network = network
        if network is not None:
            num_features = getattr(network, "num_features", num_features)
        self.kid_subset_size = kid_subset_size
        self.fid = FrechetInceptionDistance(feature=PassThrough(num_features), reset_real_features=True)
        with warnings.catch_warnings():
            # KID keeps every feature (2048 floats a sample, 80 MB at 10k): known, and what KID needs.
            warnings.filterwarnings("ignore", message=".*will save all extracted features in buffer")
            self.kid = KernelInceptionDistance(
                feature=PassThrough(num_features), subsets=kid_subsets, subset_size=kid_subset_size
            )
        self.prdc = PrecisionRecallDensityCoverage(k=nearest_k)

    def features(self, images: Tensor) -> Tensor:
        if self.network is None:
            raise ValueError("this GANMetrics has no feature network; pass features to update_features instead")
        return extract_features(self.network, images)

    def update(self, images: Tensor, real: bool) -> Tensor:
        """Adds images (uint8, or float in [-1, 1]) to one side; returns their features."""
        features = self.features(images)
        self.update_features(features, real=real)
        return features

    def update_features(self, features: Tensor, real: bool) -> None:
        device = self.fid.device
        features = features.to(device, dtype=torch.float32)
        self.fid.update(features, real=real)
        self.kid.update(features, real=real)
        self.prdc.update(features, real=real)

    def compute(self) -> dict[str, float]:
        """FID, KID mean and std, precision, recall, density, coverage; NaN where too few samples (FID/KID < 2 per
        side, PRDC <= k) to define a value."""
        real, fake = (int(n) for n in (self.fid.real_features_num_samples, self.fid.fake_features_num_samples))
        results = dict.fromkeys(("fid", "kid", "kid_std", "precision", "recall", "density", "coverage"), float("nan"))
        if min(real, fake) >= 2:
            # KID's subsets may not exceed the smaller set. Up to the standard 1000, half the set: a subset
            # as large as the set is the same every draw, which would report a std of exactly 0.
            n = min(real, fake)
            self.kid.subset_size = self.kid_subset_size if n > self.kid_subset_size else max(2, n // 2)
            with torch.random.fork_rng(devices=[]):  # KID draws random subsets: keep the training RNG untouched
                torch.manual_seed(0)
                kid_mean, kid_std = self.kid.compute()
            results.update(fid=float(self.fid.compute()), kid=float(kid_mean), kid_std=float(kid_std))
        if min(real, fake) > self.prdc.k:
            results.update({name: float(value) for name, value in self.prdc.compute().items()})
        return results

    def reset(self) -> None:
        self.fid.reset()
        self.kid.reset()
        self.prdc.reset()
