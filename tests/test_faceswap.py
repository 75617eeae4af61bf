"""The DeepFake face swap model: networks, warp, steps, its adversarial update, checkpoints and swap.py.

The face datamodules, the configs run through the CLI and the measured swap itself are in test_faceswap_data.py.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from helpers import make_trainer
from PIL import Image

from datamodules.faces import FacePose, SyntheticFacesDataModule, render_face, render_faces, sample_poses
from gan_modules.checkpoints import load_model
from gan_modules.commands.common import load_gan
from gan_modules.commands.swap import main as swap_main
from gan_modules.faceswap import FaceSwap, FaceSwapDecoder, FaceSwapEncoder, encoder_stages, random_warp
from gan_modules.objectives import LeastSquares, WassersteinGP
from gan_modules.tricks import (
    DRAGAN,
    R1,
    DiffAugment,
    FeatureMatching,
    GradientPenalty,
    HistoricalAveraging,
    InstanceNoise,
    SpectralNorm,
    TopK,
)

ROOT = Path(__file__).resolve().parents[1]
# test_cli.py checks that every YAML in configs/ is run by some test; these two are run in test_faceswap_data.py.
FACESWAP_CONFIGS = ["faceswap_folders.yaml", "faceswap_synthetic.yaml"]
TINY = dict(base_channels=4, bottleneck_dim=8, decoder_min_channels=4)
CSV_ONLY = ["--trainer.logger", "gan_modules.loggers.CSVLogger", "--trainer.log_every_n_steps", "1"]


def tiny_model(image_size=32, **kwargs) -> FaceSwap:
    return FaceSwap(image_size=image_size, **{**TINY, **kwargs})


def synthetic_faces(image_size=32, num_images=16, val_images=8, batch_size=8, **kwargs) -> SyntheticFacesDataModule:
    return SyntheticFacesDataModule(
        image_size=image_size, num_images=num_images, val_images=val_images, batch_size=batch_size, **kwargs
    )


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def changed(before, module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def save_png(path: Path, image: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)


# ---------------------------------------------------------------------------------------------- networks


@pytest.mark.parametrize(("size", "side", "code_side"), [(32, 4, 8), (64, 4, 8), (128, 4, 8), (96, 6, 12)])
def test_networks_map_faces_to_codes_and_back_at_any_size(size, side, code_side):
    assert encoder_stages(size)[1] == side
    encoder = FaceSwapEncoder(image_size=size, base_channels=4, bottleneck_dim=8)
    decoder = FaceSwapDecoder(image_size=size, code_channels=encoder.out_channels, min_channels=4)
    images = torch.rand(3, 3, size, size) * 2 - 1
    codes = encoder(images)
    assert codes.shape == (3, encoder.out_channels, code_side, code_side)
    assert encoder.bottleneck[0].out_features == 8  # the dense bottleneck every code passes through
    out = decoder(codes)
    assert out.shape == images.shape and out.min() >= -1 and out.max() <= 1


@pytest.mark.parametrize("mode", ["pixelshuffle", "nearest"])
def test_model_swap_and_reconstruct_shapes_and_modes(mode):
    model = tiny_model(upsample=mode)
    model.train()
    faces = render_faces("a", sample_poses(4, 0), 32)  # uint8 in, [-1, 1] out
    for out in (model.swap(faces, to="b"), model.reconstruct(faces, "a")):
        assert out.shape == (4, 3, 32, 32) and out.dtype == torch.float32 and out.abs().max() <= 1
    assert model.training and model.encoder.training  # the call left the training mode alone
    assert not torch.equal(model.swap(faces, to="b"), model.swap(faces, to="a"))  # two decoders
    with pytest.raises(ValueError, match='"a" or "b"'):
        model.swap(faces, to="c")


def test_the_2017_networks_are_the_default():
    model = FaceSwap()  # 64x64: convs 128-256-512-1024, dense 1024, 4x4x1024 -> 8x8x512, decoders 256-128-64
    widths = [m.out_channels for m in model.encoder.convs if isinstance(m, torch.nn.Conv2d)]
    assert widths == [128, 256, 512, 1024] and model.encoder.bottleneck[0].out_features == 1024
    decoder_widths = [
        m.out_channels // 4 for m in model.decoders["a"].blocks.modules() if isinstance(m, torch.nn.Conv2d)
    ]
    assert model.encoder.out_channels == 512 and decoder_widths == [256, 128, 64]
    assert model.discriminators is None and (model.hparams.lr, tuple(model.hparams.betas)) == (5e-5, (0.5, 0.999))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 12}, "image_size >= 16"),
        ({"warp_strength": -1.0}, "warp_strength"),
        ({"flip_prob": 1.5}, "flip_prob"),
        ({"ssim_sigma": 5.0}, "ssim_sigma"),  # a 37-pixel window on 32x32 faces
        ({"lr": 0.0}, "lr must be positive"),
        ({"upsample": "transpose"}, "pixelshuffle"),
        ({"image_size": 40, "adversarial_weight": 1.0}, "divisible by 16"),
    ],
)
def test_bad_arguments_are_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(**kwargs)


# ---------------------------------------------------------------------------------------------- warp


def test_warp_keeps_shape_is_identity_at_strength_zero_and_bends_inputs_more_than_targets():
    images = render_faces("a", sample_poses(6, 1), 32).float() / 127.5 - 1
    inputs, targets = random_warp(images, strength=0.0, flip_prob=0.0)
    torch.testing.assert_close(inputs, images, atol=1e-5, rtol=0)
    torch.testing.assert_close(targets, images, atol=1e-5, rtol=0)

    inputs, targets = random_warp(images, strength=1.0, generator=torch.Generator().manual_seed(0))
    assert inputs.shape == targets.shape == images.shape
    assert (targets - images).abs().mean() > 0.01  # the shared rotation/zoom/shift moved the targets
    assert (inputs - targets).abs().mean() > 0.01  # and the smooth field bent the inputs further
    again, _ = random_warp(images, strength=1.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, inputs)

    flipped_in, flipped = random_warp(images, strength=0.0, flip_prob=1.0)
    torch.testing.assert_close(flipped, images.flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(flipped_in, flipped, atol=1e-5, rtol=0)


def test_warp_is_random_yet_the_identity_in_expectation():
    """Warping a coordinate ramp reads off where each pixel was sampled from: each draw moves it, the mean does not."""
    size = 32
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    ramp = torch.stack([xs, ys]).unsqueeze(0).repeat(400, 1, 1, 1)
    inputs, targets = random_warp(ramp, strength=1.0, generator=torch.Generator().manual_seed(0))
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))  # away from the clamped border
    for warped in (inputs, targets):
        single = (warped - ramp)[inner].abs().mean(dim=(1, 2, 3))
        mean_shift = (warped.mean(0) - ramp[0])[inner[1:]].abs().mean()
        assert single.mean() > 0.02  # a draw moves pixels by about half a pixel or more
        assert mean_shift < 0.15 * single.mean()  # the average draw is (close to) no displacement at all


# ---------------------------------------------------------------------------------------------- steps


def test_without_discriminators_one_update_per_batch_logs_the_losses(tmp_path):
    model = tiny_model()
    enc, dec_a, dec_b = params(model.encoder), params(model.decoders["a"]), params(model.decoders["b"])
    logged = []
    model.log_dict = lambda values, **kwargs: logged.append(dict(values))
    trainer = make_trainer(tmp_path, limit_train_batches=2, limit_val_batches=0)
    trainer.fit(model, datamodule=synthetic_faces())
    assert trainer.global_step == 2
    assert changed(enc, model.encoder) and changed(dec_a, model.decoders["a"]) and changed(dec_b, model.decoders["b"])
    keys = set().union(*logged)
    assert {"train/loss", "train/l1_a", "train/l1_b", "train/ssim_a", "train/ssim_b"} <= keys
    assert int(model.fixed_count) == 8 and model.sample_grid_nrow == 8  # the first batch's faces, for the grid


def test_discriminator_step_changes_only_the_discriminators(tmp_path, monkeypatch):
    model = tiny_model(adversarial_weight=1.0, d_channels=4)
    monkeypatch.setattr(model, "autoencoder_step", lambda inputs, targets, fakes: {})
    ae_before = params(model.encoder) + params(model.decoders)
    d_before = {identity: params(d) for identity, d in model.discriminators.items()}
    make_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0).fit(model, datamodule=synthetic_faces())
    assert changed(d_before["a"], model.discriminators["a"]) and changed(d_before["b"], model.discriminators["b"])
    assert not changed(ae_before, torch.nn.ModuleList([model.encoder, model.decoders]))


def test_autoencoder_step_changes_only_the_autoencoder_through_frozen_discriminators(tmp_path, monkeypatch):
    model = tiny_model(adversarial_weight=1.0, d_channels=4, objective=LeastSquares())
    monkeypatch.setattr(model, "discriminator_step", lambda inputs, targets, fakes: {})
    logged = []
    model.log_dict = lambda values, **kwargs: logged.append(dict(values))
    ae_before, d_before = params(model.encoder) + params(model.decoders), params(model.discriminators)
    make_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0).fit(model, datamodule=synthetic_faces())
    assert changed(ae_before, torch.nn.ModuleList([model.encoder, model.decoders]))
    # BatchNorm's running statistics move in D's forward passes; its parameters must not.
    assert not changed(d_before, model.discriminators)
    assert all(p.grad is None for p in model.discriminators.parameters())  # frozen, not just unstepped
    assert all(p.requires_grad for p in model.discriminators.parameters())  # and unfrozen afterwards
    assert {"train/g_adversarial_a", "train/g_adversarial_b"} <= set().union(*logged)


def test_adversarial_training_makes_two_optimizer_steps_per_batch_and_logs_d(tmp_path):
    model = tiny_model(adversarial_weight=0.5, d_channels=4)
    logged = []
    model.log_dict = lambda values, **kwargs: logged.append(dict(values))
    trainer = make_trainer(tmp_path, limit_train_batches=2, limit_val_batches=0)
    trainer.fit(model, datamodule=synthetic_faces())
    assert trainer.global_step == 4
    assert {"train/d_loss", "train/d_loss_a", "train/d_loss_b", "train/loss"} <= set().union(*logged)


def test_validation_logs_reconstruction_l1_and_ssim_of_unwarped_faces(tmp_path):
    model = tiny_model()
    trainer = make_trainer(tmp_path, limit_train_batches=1)
    dm = synthetic_faces()
    trainer.fit(model, datamodule=dm)
    metrics = trainer.callback_metrics
    assert {"val/l1", "val/ssim", "val/l1_a", "val/l1_b"} <= set(metrics)
    a = dm.images("val", "a").float() / 127.5 - 1
    expected = (model.reconstruct(a, "a") - a).abs().mean()
    torch.testing.assert_close(metrics["val/l1_a"], expected, atol=1e-5, rtol=0)
    assert FaceSwap.best_metric == ("val/l1", "min")


def test_non_finite_loss_stops_training(tmp_path):
    from gan_modules.core import NonFiniteLossError

    model = tiny_model()
    with torch.no_grad():
        model.decoders["a"].out[0].weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="train/loss"):
        make_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0).fit(model, datamodule=synthetic_faces())


# ---------------------------------------------------------------------------------------------- adversarial update
# The PatchGAN term trains through gan_modules.adversarial, as every GAN does: tricks, clipping and decay apply.

FACESWAP_TRICKS = {
    "R1": (lambda: R1(gamma=1.0, every=2), ["train/d_r1"]),
    "InstanceNoise": (lambda: InstanceNoise(std=0.1, anneal_steps=10), []),
    "DRAGAN": (lambda: DRAGAN(), ["train/d_dragan"]),
    "GradientPenalty": (lambda: GradientPenalty(), ["train/d_penalty"]),
    "HistoricalAveraging": (
        lambda: HistoricalAveraging(window=2),
        ["train/d_historical_averaging", "train/g_historical_averaging"],
    ),
    "SpectralNorm": (lambda: SpectralNorm(), []),
    "TopK": (lambda: TopK(gamma=0.5), []),
}


@pytest.mark.parametrize("make, keys", FACESWAP_TRICKS.values(), ids=FACESWAP_TRICKS.keys())
def test_a_trick_trains_the_adversarial_term_with_finite_losses_and_logs_its_term(tmp_path, make, keys):
    model = tiny_model(adversarial_weight=0.5, d_channels=4, tricks=[make()])
    seen = {}
    model.log_dict = lambda values, **_: seen.update({k: float(v) for k, v in values.items()})
    trainer = make_trainer(tmp_path, limit_train_batches=2, limit_val_batches=0)
    trainer.fit(model, datamodule=synthetic_faces())
    assert trainer.global_step == 4 and (model.d_updates, model.g_updates) == (2, 2)
    assert all(np.isfinite(v) for v in seen.values()), seen
    assert {"train/loss", "train/d_loss", "train/d_loss_a", "train/d_loss_b", "train/g_adversarial_a"} <= set(seen)
    assert set(keys) <= set(seen)
    assert model.hparams.tricks[0]["class_path"].startswith("gan_modules.tricks.")  # a plain spec in checkpoints


def test_the_objectives_implied_trick_logs_the_penalty_per_update_not_per_identity(tmp_path):
    model = tiny_model(adversarial_weight=0.5, d_channels=4, objective=WassersteinGP())
    seen = []
    model.log_dict = lambda values, **_: seen.append({k: float(v) for k, v in values.items()})
    make_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0).fit(model, datamodule=synthetic_faces())
    logged = {k: v for values in seen for k, v in values.items()}
    # D's loss per identity holds its penalty; the logged penalty is both identities' together.
    assert "train/d_penalty" in logged and logged["train/d_penalty"] > 0
    assert logged["train/d_loss"] == pytest.approx(logged["train/d_loss_a"] + logged["train/d_loss_b"], rel=1e-5)


def test_update_counts_and_tricks_reload_from_a_checkpoint(tmp_path):
    model = tiny_model(adversarial_weight=0.5, d_channels=4, tricks=[InstanceNoise(std=0.1, anneal_steps=10)])
    trainer = make_trainer(tmp_path, limit_train_batches=3, limit_val_batches=0)
    trainer.fit(model, datamodule=synthetic_faces(num_images=24))
    trainer.save_checkpoint(tmp_path / "last.ckpt", weights_only=False)
    restored = load_model(tmp_path / "last.ckpt", base=FaceSwap)  # weights_only=True: plain values only
    assert (restored.d_updates, restored.g_updates) == (3, 3)  # the schedules go on from the saved counts
    assert isinstance(restored.tricks[0], InstanceNoise) and restored.tricks[0].std == 0.1


def test_gradient_clipping_and_learning_rate_decay_reach_both_optimizers(tmp_path):
    model = tiny_model(adversarial_weight=0.5, d_channels=4, lr=1e-3, grad_clip_d=1e-4, grad_clip_g=2e-4,
                       grad_clip_algorithm="value", lr_decay="linear", lr_decay_start=0.5)  # fmt: skip
    rates = []

    class Rates(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            rates.append([opt.param_groups[0]["lr"] for opt in trainer.optimizers])

    trainer = make_trainer(tmp_path, max_epochs=2, limit_val_batches=0, callbacks=[Rates()])
    trainer.fit(model, datamodule=synthetic_faces())  # 2 batches an epoch: 4 updates of each optimizer
    # Constant for the first half, then linear to 0 (lr_factor: 1, 1, 1, 0.5 at updates 0-3; 0 at the end).
    assert [pytest.approx(pair) for pair in rates] == [[1e-3, 1e-3]] * 3 + [[5e-4, 5e-4]]
    assert [opt.param_groups[0]["lr"] for opt in trainer.optimizers] == [0.0, 0.0]
    # The gradients each optimizer last stepped with were clipped elementwise to its own value.
    d_grads = [p.grad.abs().max() for p in model.discriminators.parameters() if p.grad is not None]
    ae_grads = [p.grad.abs().max() for net in (model.encoder, model.decoders) for p in net.parameters()]
    assert d_grads and max(d_grads) <= 1e-4 + 1e-9 and max(ae_grads) <= 2e-4 + 1e-9
    assert max(ae_grads) > 1e-4  # the autoencoder's own clip, not the discriminators'


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tricks": [R1()]}, "set model.adversarial_weight > 0"),
        ({"grad_clip_d": 1.0}, "set model.adversarial_weight > 0"),
        ({"grad_clip_g": 0.0}, "grad_clip_g must be positive"),
        ({"lr_decay": "step"}, "lr_decay must be"),
        ({"adversarial_weight": 1.0, "tricks": [DiffAugment()]}, "FaceSwap judges image pairs"),
        ({"adversarial_weight": 1.0, "tricks": [FeatureMatching()]}, "FeatureMatching needs D's intermediate"),
        ({"adversarial_weight": 1.0, "objective": WassersteinGP(), "tricks": [GradientPenalty()]}, "already applies"),
    ],
)
def test_adversarial_options_that_cannot_apply_are_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(d_channels=4, **kwargs)


# ---------------------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A FaceSwap (LSGAN discriminators on) trained for two batches, saved as train.py saves it."""
    tmp = tmp_path_factory.mktemp("faceswap_ckpt")
    pl.seed_everything(0, verbose=False)
    model = tiny_model(adversarial_weight=0.1, d_channels=4, objective=LeastSquares(), num_samples=4)
    trainer = make_trainer(tmp, limit_train_batches=2, limit_val_batches=0)
    trainer.fit(model, datamodule=synthetic_faces())
    path = tmp / "last.ckpt"
    trainer.save_checkpoint(path, weights_only=False)
    return path, model


def test_checkpoint_reloads_safely_to_the_same_model(checkpoint):
    path, model = checkpoint
    restored = load_model(path, base=FaceSwap)
    assert type(restored) is FaceSwap and isinstance(restored.objective, LeastSquares)
    assert restored.hparams.objective == {"class_path": "gan_modules.objectives.LeastSquares", "init_args": {}}
    assert restored.sample_grid_nrow == 4
    torch.testing.assert_close(restored.sample_grid(), model.sample_grid(), rtol=0, atol=0)
    faces = render_faces("b", sample_poses(3, 5), 32)
    torch.testing.assert_close(restored.swap(faces, to="a"), model.swap(faces, to="a"), rtol=0, atol=0)
    with pytest.raises(ValueError, match="not a GANModule"):
        load_gan(path)  # generate.py's loader refuses it


def test_sample_grid_rows_are_a_rebuilt_swapped_b_rebuilt_swapped(checkpoint):
    _, model = checkpoint
    grid = model.sample_grid()
    n = int(model.fixed_count)
    assert n == 4 and grid.shape == (6 * n, 3, 32, 32)  # num_samples=4 of the first batch's 8
    rows = grid.split(n)
    torch.testing.assert_close(rows[0], model.fixed_a[:n])
    torch.testing.assert_close(rows[2], model.swap(model.fixed_a[:n], to="b"))
    torch.testing.assert_close(rows[4], model.reconstruct(model.fixed_b, "b"))
    torch.testing.assert_close(rows[5], model.swap(model.fixed_b, to="a"))


# ---------------------------------------------------------------------------------------------- swap.py


def test_swap_command_writes_one_png_per_face_and_a_grid(checkpoint, tmp_path, capsys):
    path, model = checkpoint
    faces = tmp_path / "faces"
    poses = sample_poses(3, 4)
    for i, pose in enumerate(poses[:2]):
        save_png(faces / f"face{i}.png", render_face("a", pose, 32))
    buffer = io.BytesIO()
    Image.fromarray(render_face("a", poses[2], 48).permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=95)
    (faces / "sub").mkdir()
    (faces / "sub" / "big.jpg").write_bytes(buffer.getvalue())  # resized to the model's 32x32
    (faces / "broken.png").write_bytes(b"")
    out, grid = tmp_path / "out", tmp_path / "grids" / "grid.png"
    code = swap_main(["--ckpt_path", str(path), "--input", str(faces), "--out", str(out), "--grid", str(grid)])
    assert code == 0
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "swapped to identity B" in captured.out
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == ["face0.png", "face1.png", "sub/big.png"]
    assert not list(tmp_path.glob(".out.*"))  # the temporary folder was renamed, not left behind
    pixels = torch.from_numpy(np.array(Image.open(out / "face0.png"))).permute(2, 0, 1).float()
    expected = (model.swap(render_face("a", poses[0], 32)[None], to="b")[0] + 1) * 127.5
    assert (pixels - expected).abs().max() <= 1.0
    assert Image.open(grid).size[1] > 32  # three faces in input | reconstruction | swap triplets


def test_swap_command_refuses_to_overwrite_and_writes_nothing(checkpoint, tmp_path, capsys):
    path, _ = checkpoint
    faces = tmp_path / "faces"
    save_png(faces / "f.png", render_face("b", FacePose(), 32))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.png").write_bytes(b"keep me")
    grid = tmp_path / "grid.png"
    args = ["--ckpt_path", str(path), "--input", str(faces), "--to", "a"]
    assert swap_main([*args, "--out", str(out), "--grid", str(grid)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.png"] and not grid.exists()
    grid.write_bytes(b"keep")
    assert swap_main([*args, "--out", str(tmp_path / "new"), "--grid", str(grid)]) == 1
    assert grid.read_bytes() == b"keep" and not (tmp_path / "new").exists()
    assert swap_main([*args, "--out", str(tmp_path / "new2")]) == 0 and (tmp_path / "new2" / "f.png").is_file()


def test_swap_command_errors_are_short_and_clear(checkpoint, tmp_path, capsys):
    path, _ = checkpoint
    assert swap_main(["--ckpt_path", str(path), "--input", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert (
        swap_main(["--ckpt_path", str(path), "--input", str(tmp_path / "empty"), "--grid", str(tmp_path / "g.png")])
        == 1
    )
    assert "no readable face images" in capsys.readouterr().err
    assert swap_main(["--ckpt_path", str(path), "--input", str(tmp_path)]) == 1
    assert "nothing to write" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "g.png").exists()
