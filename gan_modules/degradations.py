"""What the web does to images, as uint8 -> uint8 operations, and the detector's training augmentation built on them.

JPEG re-compression, resizing through another size (several resampling filters) and Gaussian blur: the
degradations ``detect.py --jpeg/--resize`` and ``benchmarks/bench_detect.py`` apply to test images, and the
ones ``DetectorAugment`` draws at random for training a fake detector (``gan_modules/detector.py``).
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import Tensor


def jpeg(images: Tensor, quality: int) -> Tensor:
    """uint8 [N, C, H, W] -> the same images JPEG-compressed at ``quality`` (1-100) and decoded (PIL, 4:2:0)."""
    out = torch.empty_like(images)
    mode = "L" if images.shape[1] == 1 else "RGB"
    for i, image in enumerate(images.cpu()):
        array = image.permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(array[..., 0] if mode == "L" else array, mode).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        decoded = torch.from_numpy(np.asarray(Image.open(buffer).convert(mode)).copy())
        out[i] = (decoded.unsqueeze(-1) if mode == "L" else decoded).permute(2, 0, 1)
    return out


RESIZE_FILTERS = ("nearest", "bilinear", "bicubic", "area")  # the resamplers web pipelines use most


def _resample(x: Tensor, size: list[int], method: str) -> Tensor:
    if method == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    if method == "area":  # antialiased bilinear: PIL's and most CDNs' default for downscaling
        return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(x, size=size, mode=method, align_corners=False)


def resample(images: Tensor, factor: float, method: str = "area") -> Tensor:
    """uint8 [N, C, H, W] -> resized by ``factor`` (a web copy at another size) and back to H x W, as uint8.

    The first resize uses ``method`` (one of ``RESIZE_FILTERS``; "area" is antialiased bilinear), the way back
    bilinear (antialiased when it shrinks), so a fixed-size detector can score the copy. Every step is rounded
    to uint8 as a saved image would be.
    """
    if method not in RESIZE_FILTERS:
        raise ValueError(f"resize filter must be one of {RESIZE_FILTERS}, got {method!r}")
    if not factor > 0:
        raise ValueError(f"resize factor must be positive, got {factor}")
    size = list(images.shape[-2:])
    scaled = [max(1, round(s * factor)) for s in size]
    if scaled == size:
        return images
    x = _resample(images.float(), scaled, method).round_().clamp_(0, 255)
    x = F.interpolate(x, size=size, mode="bilinear", antialias=factor > 1, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)


def resize_down_up(images: Tensor, factor: float) -> Tensor:
    """uint8 [N, C, H, W] -> resized by ``factor`` (antialiased bilinear) and back (bilinear): ``resample``."""
    return resample(images, factor, "area")


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """uint8 [N, C, H, W] -> Gaussian-blurred with standard deviation ``sigma`` pixels (0: unchanged)."""
    if sigma <= 0:
        return images
    kernel = 2 * max(1, round(3 * sigma)) + 1
    blurred = torchvision.transforms.functional.gaussian_blur(images.float(), [kernel, kernel], [sigma, sigma])
    return blurred.round_().clamp_(0, 255).to(torch.uint8)


AUGMENTATIONS = ("resize", "blur", "jpeg")


class DetectorAugment:
    """The training augmentation, per image and applied to real and fake alike, so neither is told apart by it.

    CNNDetection's (Wang et al. 2020): Gaussian blur with probability ``blur_prob`` (sigma uniform in
    [0, ``max_sigma``]) and JPEG with probability ``jpeg_prob`` (quality uniform in [``min_quality``, 100]);
    they use 0.5 / sigma up to 3 / quality 30-100 at 256 px. Beyond it, for images as the web serves them
    (Corvi et al. 2023 test with resizing and JPEG 65-100): a resize round trip with probability ``resize_prob``,
    factor in ``resize_range`` (uniform, or with ``resize_scale="log"`` log-uniform: halving as likely as
    doubling, and the strong down-scales a uniform draw makes rare as likely as their inverse up-scales) and a
    resampling filter drawn from ``resize_filters``; and with ``random_order`` the three are applied in a random
    order per image (else resize, blur, JPEG).

    ``augment(images, record=True)`` also returns what was done to each image: ``applied`` [N, 3] (bool, in
    ``AUGMENTATIONS`` order), ``strength`` [N, 3] (factor, sigma, quality; NaN where not applied), ``filter``
    [N] (index into ``resize_filters``, -1 where not resized) and ``order`` [N, 3].
    """

    def __init__(
        self,
        blur_prob: float = 0.5,
        max_sigma: float = 1.0,  # MNIST-sized images: 3 px (the paper's, at 256 px) would erase the strokes
        jpeg_prob: float = 0.5,
        min_quality: int = 30,  # Wang et al. 2020
        resize_prob: float = 0.0,
        resize_range: tuple[float, float] = (0.5, 1.5),
        resize_filters: tuple[str, ...] = RESIZE_FILTERS,
        random_order: bool = False,
        resize_scale: str = "linear",
    ) -> None:
        for name, p in (("blur_prob", blur_prob), ("jpeg_prob", jpeg_prob), ("resize_prob", resize_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"model.{name} must be in [0, 1], got {p}")
        if not 1 <= min_quality <= 100:
            raise ValueError(f"model.min_quality must be in 1..100, got {min_quality}")
        low, high = (float(v) for v in resize_range)
        if not 0 < low <= high:
            raise ValueError(f"model.resize_range must be [low, high] with 0 < low <= high, got {list(resize_range)}")
        bad = [f for f in resize_filters if f not in RESIZE_FILTERS]
        if bad or not resize_filters:
            raise ValueError(f"model.resize_filters must be a non-empty list from {list(RESIZE_FILTERS)}, got "
                             f"{list(resize_filters)}")  # fmt: skip
        self.blur_prob, self.max_sigma, self.jpeg_prob, self.min_quality = blur_prob, max_sigma, jpeg_prob, min_quality
        self.resize_prob, self.resize_range, self.resize_filters = resize_prob, (low, high), tuple(resize_filters)
        if resize_scale not in ("linear", "log"):
            raise ValueError(f"model.resize_scale must be 'linear' or 'log', got {resize_scale!r}")
        self.random_order, self.resize_scale = random_order, resize_scale

    def __call__(self, images: Tensor, record: bool = False):
        images = images.clone()
        n = len(images)
        draw = torch.rand(n, 4)
        # Drawn only when used, so the blur/JPEG stream (and earlier runs) stay the same without them.
        resize = torch.rand(n, 3) if self.resize_prob > 0 else torch.ones(n, 3)
        order = torch.arange(3).repeat(n, 1)
        if self.random_order:
            order = torch.stack([torch.randperm(3) for _ in range(n)])
        applied = torch.stack([resize[:, 0] < self.resize_prob, draw[:, 0] < self.blur_prob,
                               draw[:, 2] < self.jpeg_prob], dim=1)  # fmt: skip
        low, high = self.resize_range
        if self.resize_scale == "log":
            factor = torch.exp(math.log(low) + (math.log(high) - math.log(low)) * resize[:, 1])
        else:
            factor = low + (high - low) * resize[:, 1]
        filters = (resize[:, 2] * len(self.resize_filters)).long().clamp_(max=len(self.resize_filters) - 1)
        sigma = draw[:, 1] * self.max_sigma
        quality = (self.min_quality + (draw[:, 3] * (101 - self.min_quality)).long()).clamp_(max=100)
        for i in range(n):
            image = images[i : i + 1]
            for op in order[i].tolist():
                if not applied[i, op]:
                    continue
                if op == 0:
                    image = resample(image, float(factor[i]), self.resize_filters[int(filters[i])])
                elif op == 1:
                    image = gaussian_blur(image, float(sigma[i]))
                else:
                    image = jpeg(image, int(quality[i]))
            images[i : i + 1] = image
        if not record:
            return images
        strength = torch.stack([factor, sigma, quality.float()], dim=1)
        strength = torch.where(applied, strength, torch.full_like(strength, float("nan")))
        filters = torch.where(applied[:, 0], filters, torch.full_like(filters, -1))
        return images, {"applied": applied, "strength": strength, "filter": filters, "order": order}
