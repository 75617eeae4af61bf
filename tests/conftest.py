import os

import pytest
import torch

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
