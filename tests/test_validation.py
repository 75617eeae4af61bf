"""Validation metrics as callbacks the model attaches itself: images (FID/KID/PRDC), Pix2Pix's translations, points.

conftest swaps Inception for TinyFeatures, so the direct computations here use TinyFeatures too.
"""

import math

import pytest
import torch
from conftest import TinyFeatures
from helpers import make_trainer

from datamodules import SyntheticDataModule
from datamodules.toy import ToyMixtureDataModule
from gan_modules.dcgan import DCGAN
from gan_modules.metrics import GANMetrics
from gan_modules.metrics.modes import mode_coverage
from gan_modules.metrics.reference import reference_images
from gan_modules.pix2pix import Pix2PixGAN
from gan_modules.toy import ToyGAN
from gan_modules.validation import ImageMetrics, PointMetrics

VAL_KEYS = ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage")


def tiny_dcgan(**kwargs):
    return DCGAN(latent_dim=8, image_size=16, num_channels=3, g_channels=4, d_channels=4, **kwargs)


def tiny_pix2pix(**kwargs):
    return Pix2PixGAN(image_size=32, num_channels=3, g_channels=4, d_channels=4, num_samples=4, **kwargs)


def direct_metrics(datamodule, count: int, fakes: torch.Tensor) -> dict[str, float]:
    """The val/* values computed by hand: the reference split's first ``count`` images against ``fakes``."""
    metrics = GANMetrics(network=TinyFeatures())
    metrics.update(reference_images(datamodule.reference_split()[1], count), real=True)
    metrics.update(fakes, real=False)
    return metrics.compute()


def image_metrics(trainer) -> list[ImageMetrics]:
    return [c for c in trainer.callbacks if isinstance(c, ImageMetrics)]


def test_the_model_attaches_image_metrics_only_at_a_positive_val_num_samples(tmp_path):
    (attached,) = tiny_dcgan(val_num_samples=8, sample_seed=5, val_precision="bf16").configure_callbacks()
    assert isinstance(attached, ImageMetrics)
    assert (attached.num_samples, attached.seed, attached.precision) == (8, 6, "bf16")
    assert tiny_dcgan(val_num_samples=0).configure_callbacks() == []
    assert tiny_pix2pix().configure_callbacks() == []  # Pix2Pix's default stays off

    # A plain Trainer gets it from the model; one the user passed of the same type gives way to the model's.
    data = lambda: SyntheticDataModule(image_size=16, num_channels=3, num_images=32, batch_size=8)  # noqa: E731
    trainer = make_trainer(tmp_path, limit_train_batches=1, callbacks=[ImageMetrics(num_samples=3)])
    trainer.fit(tiny_dcgan(val_num_samples=8), datamodule=data())
    assert [c.num_samples for c in image_metrics(trainer)] == [8]
    assert trainer.callback_metrics["val/num_samples"] == 8
    trainer = make_trainer(tmp_path, limit_train_batches=1)
    trainer.fit(tiny_dcgan(val_num_samples=0), datamodule=data())
    assert image_metrics(trainer) == [] and not any(k.startswith("val/") for k in trainer.callback_metrics)


def test_val_fid_is_the_direct_computation_on_the_fixed_latents(tmp_path):
    data = SyntheticDataModule(image_size=16, num_channels=3, num_images=200, batch_size=16)
    model = tiny_dcgan(val_num_samples=40, sample_seed=3)
    # Two validation batches of 16, then the callback tops up the other 8 fakes.
    trainer = make_trainer(tmp_path, limit_train_batches=2, limit_val_batches=2)
    trainer.fit(model, datamodule=data)
    logged = trainer.callback_metrics
    assert logged["val/num_samples"] == 40
    z = torch.randn(40, 8, generator=torch.Generator().manual_seed(3 + 1))
    expected = direct_metrics(data, 40, torch.cat([model.generate(chunk) for chunk in z.split(256)]))
    assert all(math.isfinite(expected[key]) for key in VAL_KEYS)
    for key in VAL_KEYS:
        assert float(logged[f"val/{key}"]) == pytest.approx(expected[key], rel=1e-5, abs=1e-7), key


def test_pix2pix_logs_val_fid_of_its_translations(tmp_path):
    data = SyntheticDataModule(image_size=32, num_channels=3, num_images=64, batch_size=8)  # 16 reference images
    model = tiny_pix2pix(input_transform="inpaint", val_num_samples=16)
    trainer = make_trainer(tmp_path, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(model, datamodule=data)
    logged = trainer.callback_metrics
    assert logged["val/num_samples"] == 16 and math.isfinite(float(logged["val/fid"]))
    # The fakes are the references' translations (centred holes), compared with the references themselves.
    reference = reference_images(data.reference_split()[1], 16)
    fakes = model.translate(model.transform(reference.float() / 127.5 - 1))
    expected = direct_metrics(data, 16, fakes)
    for key in ("fid", "kid", "precision", "recall"):
        assert float(logged[f"val/{key}"]) == pytest.approx(expected[key], rel=1e-5, abs=1e-7), key


def test_checkpoints_hold_no_callback_state_nor_feature_network(tmp_path):
    data = SyntheticDataModule(image_size=16, num_channels=3, num_images=32, batch_size=8)
    trainer = make_trainer(tmp_path, limit_train_batches=1)
    model = tiny_dcgan(val_num_samples=8)
    trainer.fit(model, datamodule=data)
    assert image_metrics(trainer)[0]._metrics is not None  # the feature network exists, on the callback
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    checkpoint = torch.load(tmp_path / "model.ckpt", weights_only=False)
    assert not any("ImageMetrics" in key for key in checkpoint.get("callbacks", {}))
    assert set(checkpoint["state_dict"]) == set(model.state_dict())
    # A resumed run rebuilds the callback from the model and scores again.
    resumed = make_trainer(tmp_path, max_epochs=2, limit_train_batches=1)
    resumed.fit(tiny_dcgan(val_num_samples=8), datamodule=data, ckpt_path=tmp_path / "model.ckpt")
    assert resumed.callback_metrics["val/num_samples"] == 8


def test_toy_gan_scores_modes_and_draws_its_scatter_through_point_metrics(tmp_path):
    model = ToyGAN(g_hidden_dims=(16, 16), d_hidden_dims=(16,), sample_seed=7)
    (attached,) = model.configure_callbacks()
    assert isinstance(attached, PointMetrics) and (attached.num_samples, attached.seed) == (2500, 8)
    trainer = make_trainer(tmp_path, max_epochs=1)
    trainer.fit(model, datamodule=ToyMixtureDataModule("grid", num_samples=400, batch_size=100))
    points = torch.cat(list(model.sample_batches(2500, 2500, seed=8)))
    expected = mode_coverage(points, "grid")
    logged = trainer.callback_metrics
    assert float(logged["val/modes"]) == expected["modes"]
    assert float(logged["val/high_quality"]) == pytest.approx(expected["high_quality"])
    assert [p.name for p in (tmp_path / "samples").iterdir()] == ["scatter_0000.png"]
