"""Reference (real-image) features, computed once per dataset, split, resolution, count and network.

The features of the first ``num_samples`` images of a split are cached under ``cache_dir()`` in a file whose
name carries a sha256 over everything that determines them: the dataset's class, split, resolution and
channels, the sample count, the feature network's checksum, the preprocessing version and the bytes of the
images themselves. A different split, resolution, network or data can never reuse them; the same evaluation
a second time loads them and starts straight away.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from gan_modules.io import atomic_write
from gan_modules.metrics.fid import extract_features
from gan_modules.metrics.inception import cache_dir

log = logging.getLogger(__name__)

# Bump when the image -> feature path changes (uint8 conversion, resize, scaling): old caches then miss.
PREPROCESSING_VERSION = "uint8-tf1bilinear299-v2"  # v2: the resize as two matrix products


def reference_images(dataset, num_samples: int) -> Tensor:
    """The first ``num_samples`` uint8 images [N, C, H, W] of a dataset (in its stored order, no shuffling)."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples}")
    n = min(num_samples, len(dataset))
    take_batch = getattr(dataset, "__getitems__", None)  # UInt8ImageDataset: one fancy index
    images = take_batch(list(range(n))) if take_batch else torch.stack([torch.as_tensor(dataset[i]) for i in range(n)])
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"reference images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
    return images


def reference_key(
    dataset_name: str, split: str, images: Tensor, network_checksum: str, preprocessing: str = PREPROCESSING_VERSION
) -> dict:
    """Everything the cached features depend on, as a JSON-able dict."""
    n, c, h, w = images.shape
    return {
        "dataset": dataset_name,
        "split": split,
        "resolution": [h, w],
        "channels": c,
        "num_samples": n,
        "network_sha256": network_checksum,
        "preprocessing": preprocessing,
        "images_sha256": hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest(),
    }


def reference_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    name = key["dataset"].rsplit(".", 1)[-1]
    h, w = key["resolution"]
    return cache_dir() / "reference" / f"{name}-{key['split']}-{h}x{w}-n{key['num_samples']}-{digest}.pt"


def reference_features(
    network: nn.Module,
    dataset,
    dataset_name: str,
    split: str,
    num_samples: int,
    network_checksum: str,
) -> tuple[Tensor, dict, bool]:
    """(features [N, D] on CPU, cache key, whether they came from the cache) for a split's first N images."""
    images = reference_images(dataset, num_samples)
    key = reference_key(dataset_name, split, images, network_checksum)
    path = reference_path(key)
    if path.is_file():
        cached = torch.load(path, map_location="cpu", weights_only=True)
        if cached.get("key") == key:
            return cached["features"], key, True
        log.warning("reference cache %s does not match its key; recomputing it", path)
    features = extract_features(network, images).cpu()
    atomic_write(path, lambda tmp: torch.save({"key": key, "features": features}, tmp))
    return features, key, False
