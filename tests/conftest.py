import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gan_modules.metrics as metrics

# Tests never talk to W&B's servers, whatever the developer's machine is logged into.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def tiny_vanilla_kwargs():
    return dict(latent_dim=8, image_size=8, num_channels=1, g_hidden_dims=(16, 32), d_hidden_dims=(16,))


@pytest.fixture
def tiny_dcgan_kwargs():
    return dict(latent_dim=8, image_size=16, num_channels=3, g_channels=4, d_channels=4)


# FID: caches go to a temporary folder, and the 87 MB Inception is swapped for a tiny stand-in feature
# network except in tests marked ``slow`` (which check the real one).


class TinyFeatures(nn.Module):
    """uint8 images [N, C, H, W] -> [N, 16]: 4x4 average-pooled grey levels. Inception's stand-in in fast tests."""

    num_features = 16
    checksum = "tiny-features-v1"

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(1 / 255))
        self.calls = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images, got {images.dtype}")
        self.calls += 1
        return F.adaptive_avg_pool2d(images.float().mean(1, keepdim=True), 4).flatten(1) * self.scale


@pytest.fixture(autouse=True)
def hermetic_metrics(request, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GAN_MODULES_CACHE", str(tmp_path_factory.getbasetemp() / "gan_modules_cache"))
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setattr(metrics, "feature_network", lambda **_: TinyFeatures())
