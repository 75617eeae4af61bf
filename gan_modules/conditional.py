"""Class-conditional GANs: the labels' way from the data through ``GANModule``'s loop to the samples.

A GAN with ``num_classes`` > 0 trains on (images, labels) batches: its datamodule yields them once the model asks
(``ImageDataModule.request_labels``, in the model's ``setup``). The loop hands G ``LabelledLatents`` (z with the
batch's labels) and gives D the same labels for every image of the batch, real or generated. Sampling takes labels
explicitly (``GANModule.generate(z, labels)``), or draws every class equally often (``balanced_labels``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class LabelledLatents(NamedTuple):
    """A class-conditional generator's input: z [N, latent_dim] and the class of each row [N] (int64)."""

    z: Tensor
    labels: Tensor


def balanced_labels(num_samples: int, num_classes: int) -> Tensor:
    """[num_samples] int64: 0, 1, ..., C - 1, 0, 1, ...: every class equally often (give or take one)."""
    return torch.arange(num_samples) % num_classes


def grid_layout(num_samples: int, num_classes: int) -> tuple[int, int]:
    """(rows, images per row) of a sample grid of at most ``num_samples`` images with one class per row: the first
    ``min(num_classes, num_samples)`` classes. 100 images of 10 classes: 10 x 10; 64: 10 x 6."""
    rows = min(num_classes, num_samples)
    return rows, max(1, num_samples // rows)


def check_labels(labels, count: int, num_classes: int) -> Tensor:
    """``labels`` as int64 [count], each in 0..num_classes - 1; a ValueError saying what is wrong otherwise."""
    labels = torch.as_tensor(labels).long()
    if labels.shape != (count,):
        raise ValueError(f"labels must hold one class per image ({count}), got shape {tuple(labels.shape)}")
    if count and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be classes 0..{num_classes - 1}, got {int(labels.min())}..{int(labels.max())}")
    return labels


def labels_for(num_classes: int, labels, count: int, model_name: str, balanced: bool = False) -> Tensor | None:
    """The labels a model with ``num_classes`` classes generates ``count`` images for: None for an unconditional model
    (which refuses labels); ``labels`` checked, or with ``balanced`` and no labels every class equally often."""
    if not num_classes:
        if labels is not None:
            raise ValueError(f"this {model_name} is not class-conditional (model.num_classes 0); it takes no labels")
        return None
    if labels is None and not balanced:
        raise ValueError(f"this class-conditional {model_name} needs each image's class (labels, 0..{num_classes - 1})")
    return balanced_labels(count, num_classes) if labels is None else check_labels(labels, count, num_classes)


def reference_labels(datamodule, count: int, num_classes: int) -> Tensor:
    """The classes of the first ``count`` images of the datamodule's reference split (FID's reference) when it knows
    them (``ImageDataModule.reference_labels``), so generated images match its class balance; else balanced."""
    known = datamodule.reference_labels() if hasattr(datamodule, "reference_labels") else None
    if known is None or len(known) < count:
        return balanced_labels(count, num_classes)
    return check_labels(known[:count], count, num_classes)


def batch_labels(batch, num_classes: int, device: torch.device) -> Tensor:
    """The labels [N] (int64, on ``device``) of an (images, labels) training batch of a class-conditional model."""
    if not isinstance(batch, (list, tuple)) or len(batch) < 2:
        raise ValueError(
            f"a class-conditional model (model.num_classes {num_classes}) trains on (images, labels) batches, and this "
            "batch holds images only; train on a datamodule with classes (datamodules.MNISTDataModule), which yields "
            "them when the model asks"
        )
    return batch[1].to(device, dtype=torch.long, non_blocking=True)


def check_class_networks(num_classes: int, generator, discriminator, model_name: str) -> None:
    """Refuses ``num_classes`` > 0 for a variant whose networks were not built with as many classes."""
    built = (getattr(generator, "num_classes", 0), getattr(discriminator, "num_classes", 0))
    if num_classes and built != (num_classes, num_classes):
        raise ValueError(
            f"model.num_classes is {num_classes}, but {model_name}'s networks are not class-conditional; VanillaGAN, "
            "DCGAN and R3GAN are"
        )


def check_class_data(num_classes: int, datamodule, model_name: str) -> None:
    """Refuses a datamodule whose class count is not the model's ``num_classes`` (none when it has no labels)."""
    if not num_classes:
        return
    found = getattr(datamodule, "num_classes", None)
    if found != num_classes:
        what = f"has {found} classes" if found else "has no class labels"
        raise ValueError(
            f"model.num_classes is {num_classes}, but the data ({type(datamodule).__name__}) {what}; train a "
            f"class-conditional {model_name} on labelled data of as many classes (MNISTDataModule: 10), or set "
            f"model.num_classes to {found or 0}"
        )
