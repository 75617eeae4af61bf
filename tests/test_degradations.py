"""The degradations web images go through (JPEG, resizing with several filters, blur) and the detector's training
augmentation built on them (``gan_modules/degradations.py``): each applied with its probability and range, to
real and fake alike, reproducible from what it records."""

import pytest
import torch
from helpers import blobs, noise

from gan_modules.degradations import (
    AUGMENTATIONS,
    RESIZE_FILTERS,
    DetectorAugment,
    gaussian_blur,
    jpeg,
    resample,
    resize_down_up,
)


def test_degradations_keep_shape_and_change_pixels_as_their_strength_says():
    images = blobs(4, 0)
    for out in (jpeg(images, 75), resize_down_up(images, 0.5), gaussian_blur(images, 1.0)):
        assert out.shape == images.shape and out.dtype == torch.uint8
    err = lambda out: (out.float() - images.float()).abs().mean().item()
    assert err(jpeg(images, 100)) < err(jpeg(images, 10))
    assert gaussian_blur(images, 0.0) is images
    rgb = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert jpeg(rgb, 90).shape == rgb.shape
    # Noise loses most of its energy to a down/up resize; smooth blobs barely change.
    noisy = noise(4, 0)
    assert (resize_down_up(noisy, 0.5).float() - noisy.float()).abs().mean() > 5 * err(resize_down_up(images, 0.5))


def test_augmentation_applies_each_degradation_with_its_probability():
    images = noise(16, 3)
    assert torch.equal(DetectorAugment(blur_prob=0, jpeg_prob=0)(images), images)
    for kwargs in ({"blur_prob": 1.0}, {"jpeg_prob": 1.0}, {"resize_prob": 1.0}):
        settings = {"blur_prob": 0.0, "jpeg_prob": 0.0, **kwargs}
        out = DetectorAugment(**settings)(images)
        changed = (out != images).any(dim=(1, 2, 3)).float().mean()
        assert out.shape == images.shape and changed > 0.5  # a blur of tiny sigma may change nothing
    with pytest.raises(ValueError, match="resize_prob must be in"):
        DetectorAugment(resize_prob=2.0)


def test_web_augmentation_treats_both_classes_alike_with_its_probabilities_and_ranges():
    torch.manual_seed(0)
    augment = DetectorAugment(blur_prob=0.3, max_sigma=1.0, jpeg_prob=0.6, min_quality=40, resize_prob=0.5,
                              resize_range=(0.5, 1.5), random_order=True)  # fmt: skip
    images = torch.cat([blobs(1000, 0), noise(1000, 0)])
    labels = torch.cat([torch.zeros(1000), torch.ones(1000)])
    out, record = augment(images, record=True)
    applied, strength = record["applied"], record["strength"]
    for op, p in zip(AUGMENTATIONS, (0.5, 0.3, 0.6)):
        j = AUGMENTATIONS.index(op)
        for kind in (0, 1):  # the same rate for real and fake images, within sampling error (sd about 0.016)
            rate = applied[labels == kind, j].float().mean().item()
            assert abs(rate - p) < 0.06, (op, kind, rate)
        assert strength[~applied[:, j], j].isnan().all()
    factor, sigma, quality = (strength[applied[:, j], j] for j in range(3))
    assert 0.5 <= factor.min() and factor.max() <= 1.5 and factor.max() - factor.min() > 0.9
    assert 0 <= sigma.min() and sigma.max() <= 1.0
    assert quality.min() >= 40 and quality.max() <= 100 and quality.max() - quality.min() > 50
    filters = record["filter"][applied[:, 0]]
    assert torch.bincount(filters, minlength=len(RESIZE_FILTERS)).min() > 100  # every filter drawn
    assert (record["filter"][~applied[:, 0]] == -1).all()
    assert len({tuple(order) for order in record["order"].tolist()}) == 6  # every order of the three
    untouched = ~applied.any(dim=1)
    assert torch.equal(out[untouched], images[untouched]) and out.shape == images.shape
    # One image through the recorded steps by hand gives the same pixels.
    i = int(torch.nonzero(applied.all(dim=1))[0])
    image = images[i : i + 1]
    for op in record["order"][i].tolist():
        if op == 0:
            image = resample(image, float(strength[i, 0]), RESIZE_FILTERS[int(record["filter"][i])])
        else:
            image = gaussian_blur(image, float(strength[i, 1])) if op == 1 else jpeg(image, int(strength[i, 2]))
    assert torch.equal(image, out[i : i + 1])
    with pytest.raises(ValueError, match="resize_range must be"):
        DetectorAugment(resize_range=(1.5, 0.5))
    with pytest.raises(ValueError, match="resize_filters must be"):
        DetectorAugment(resize_filters=("lanczos9",))


def test_log_scale_draws_a_factor_and_its_inverse_equally_often():
    torch.manual_seed(0)
    augment = DetectorAugment(blur_prob=0.0, jpeg_prob=0.0, resize_prob=1.0, resize_range=(0.4, 2.5),
                              resize_scale="log")  # fmt: skip
    _, record = augment(blobs(2000, 0), record=True)
    factor = record["strength"][:, 0]
    assert 0.4 <= factor.min() and factor.max() <= 2.5
    # log-uniform on [0.4, 2.5] = [1/2.5, 2.5]: symmetric about 1 in log, so half below 1, and as many below 0.5
    # as above 2 (each ln(1.25) / ln(6.25) = 12.1% of draws); a uniform draw puts 4.8% below 0.5 and 23.8% above 2.
    assert abs((factor < 1).float().mean().item() - 0.5) < 0.04
    below, above = (factor < 0.5).float().mean().item(), (factor > 2.0).float().mean().item()
    assert abs(below - 0.121) < 0.025 and abs(above - 0.121) < 0.025
    linear = DetectorAugment(blur_prob=0.0, jpeg_prob=0.0, resize_prob=1.0, resize_range=(0.4, 2.5))
    assert (linear(blobs(2000, 0), record=True)[1]["strength"][:, 0] < 0.5).float().mean() < 0.08
    with pytest.raises(ValueError, match="resize_scale must be 'linear' or 'log'"):
        DetectorAugment(resize_scale="exp")


def test_resample_round_trips_any_factor_and_refuses_nonsense():
    images = blobs(4, 1)
    for factor in (0.5, 0.75, 1.5):
        for method in RESIZE_FILTERS:
            out = resample(images, factor, method)
            assert out.shape == images.shape and out.dtype == torch.uint8
    assert resample(images, 1.0) is images
    # Enlarging and shrinking back loses less than shrinking and enlarging back.
    err = lambda out: (out.float() - images.float()).abs().mean().item()
    assert err(resample(images, 1.5)) < err(resample(images, 0.5))
    assert torch.equal(resize_down_up(images, 0.5), resample(images, 0.5, "area"))
    with pytest.raises(ValueError, match="resize filter must be one of"):
        resample(images, 0.5, "lanczos")
