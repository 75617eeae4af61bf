"""Truncation, DRS and MH-GAN (``gan_modules.sampling``) on hand-made networks, and their flags in the commands."""

import json
import math

import pytest
import pytorch_lightning as pl
import torch
import yaml
from PIL import Image
from torch import nn

from datamodules import SyntheticDataModule
from datamodules.base import UInt8ImageDataset
from gan_modules import VanillaGAN
from gan_modules.base import GANModule
from gan_modules.commands.evaluate import main as evaluate_main
from gan_modules.commands.generate import main as generate_main
from gan_modules.sampling import (
    Sampler,
    calibrate,
    discriminator_logits,
    drs_f,
    fit_calibration,
    mh_chain,
    settings_suffix,
    truncated_normal,
)
from gan_modules.toy import ToyGAN, component_index


class Tanh(nn.Module):
    """z [N, 4] -> images [N, 1, 2, 2] = tanh(z): each pixel shows its latent coordinate."""

    def forward(self, z):
        return torch.tanh(z).view(len(z), 1, 2, 2)


class Judge(nn.Module):
    """images [N, 1, 2, 2] -> the logits [N, 1] that ``rule(images)`` [N] says."""

    def __init__(self, rule):
        super().__init__()
        self.rule = rule

    def forward(self, x):
        return self.rule(x).reshape(len(x), 1)


def hand_made_gan(rule=lambda x: torch.zeros(len(x))):
    return GANModule(generator=Tanh(), discriminator=Judge(rule), latent_dim=4, ema_decay=None, val_num_samples=0)


def held_out(count=64, high=256, split="val"):
    """(split, uint8 images [count, 1, 2, 2]) with values below ``high``."""
    images = torch.randint(0, high, (count, 1, 2, 2), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    return split, UInt8ImageDataset(images)


def certainly_fake_when_first_pixel_is_positive(x):
    return torch.where(x[:, 0, 0, 0] > 0, -1e4, 0.0)


def drawn(sampler, num_samples=100, batch_size=32, seed=0):
    return torch.cat(list(sampler.batches(num_samples, batch_size, seed)))


# ----------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("psi", [0.3, 1.0, 2.0])
def test_truncation_keeps_every_coordinate_within_psi(psi):
    z = truncated_normal(4000, 8, psi, torch.Generator().manual_seed(0))
    assert z.abs().max() <= psi
    assert z.std() > psi / 3  # redrawn, not clamped: a clamp would pile the mass at +-psi
    images = drawn(Sampler(hand_made_gan(), truncation=psi), num_samples=500)
    assert images.shape == (500, 1, 2, 2) and images.abs().max() <= math.tanh(psi)


def test_psi_infinity_is_plain_sampling_bit_for_bit(tiny_vanilla_kwargs):
    z = truncated_normal(50, 8, math.inf, torch.Generator().manual_seed(3))
    assert torch.equal(z, torch.randn(50, 8, generator=torch.Generator().manual_seed(3)))
    model = VanillaGAN(**tiny_vanilla_kwargs).eval()
    plain = torch.cat(list(model.sample_batches(50, 16, 3)))
    assert torch.equal(drawn(Sampler(model), num_samples=50, batch_size=16, seed=3), plain)
    assert not torch.equal(drawn(Sampler(model, truncation=0.5), num_samples=50, batch_size=16, seed=3), plain)


def test_truncation_leaves_a_component_picker_alone():
    """The toy GAN's z[:, 0] picks one of K components by its quantile: truncating it would drop the outer
    components (psi 1 keeps only the middle 68%); only the continuous coordinates are truncated."""
    z = truncated_normal(20_000, 3, 1.0, torch.Generator().manual_seed(0), categorical=1)
    assert z[:, 1:].abs().max() <= 1.0 and z[:, 0].abs().max() > 3.0
    model = ToyGAN(latent_dim=2, g_hidden_dims=(8,), d_hidden_dims=(8,), latent_components=10, ema_decay=None)
    assert model.categorical_latents == 1 and ToyGAN(latent_dim=2, g_hidden_dims=(8,)).categorical_latents == 0
    drawn_z = Sampler(model, truncation=0.5).latents(20_000, torch.Generator().manual_seed(1))
    assert drawn_z[:, 1].abs().max() <= 0.5
    counts = torch.bincount(component_index(drawn_z[:, 0], 10), minlength=10)
    assert counts.min() > 1_700 and counts.max() < 2_300, counts  # every component, each about 2,000 times


def test_sampler_settings_that_cannot_work_are_refused():
    gan = hand_made_gan()
    for kwargs, message in [
        ({"truncation": 0.0}, "--truncation must be a positive psi"),
        ({"truncation": -1.0}, "--truncation must be a positive psi"),
        ({"truncation": math.nan}, "--truncation must be a positive psi"),
        ({"truncation": 1e-9}, "--truncation must be a positive psi of at least 0.01"),
        ({"method": "drs", "drs_percentile": 0.0, "held_out": held_out()}, "--drs_percentile"),
        ({"method": "mh", "mh_k": 0, "held_out": held_out()}, "--mh_k"),
        ({"method": "drs"}, "needs held-out real images"),
    ]:
        with pytest.raises(ValueError, match=message):
            Sampler(gan, **kwargs)


# ----------------------------------------------------------------------------- D's logits and their calibration


def test_a_patch_map_is_one_logit_per_image_and_a_packing_d_is_refused():
    patches = GANModule(generator=Tanh(), discriminator=nn.Identity(), latent_dim=4, ema_decay=None)
    images = torch.tensor([[-0.5, 0.5, 1.0, 0.0], [0.0, 0.0, 0.0, 0.4]]).view(2, 1, 2, 2)
    torch.testing.assert_close(discriminator_logits(patches, images), torch.tensor([0.25, 0.1], dtype=torch.float64))
    packing = GANModule(generator=Tanh(), discriminator=nn.Linear(8, 1), latent_dim=4, ema_decay=None)
    with pytest.raises(ValueError, match="cannot score single images"):
        discriminator_logits(packing, images.flatten(1))


def test_calibration_recovers_a_known_density_ratio():
    """D's logit l is a quarter of x, real x ~ N(1, 1), fake x ~ N(-1, 1): log p_data / p_g = 2x = 8 l."""
    gen = torch.Generator().manual_seed(0)
    real, fake = (torch.randn(4000, generator=gen) + 1) / 4, (torch.randn(6000, generator=gen) - 1) / 4
    with torch.inference_mode():  # as the commands call it
        a, b = fit_calibration(real, fake)
    assert a == pytest.approx(8.0, rel=0.1) and b == pytest.approx(0.0, abs=0.1)


def test_the_calibration_refuses_training_images():
    gan = hand_made_gan()
    for method in ("drs", "mh"):
        with pytest.raises(ValueError, match="offers only its 'train' split.*--sampler plain"):
            Sampler(gan, method, held_out=held_out(split="train"))
    with pytest.raises(ValueError, match="'train' split"):
        calibrate(gan, held_out(split="train"), 64, 32, lambda n: torch.randn(n, 4))


# ----------------------------------------------------------------------------- DRS


def test_drs_accepts_everything_when_d_is_constant():
    sampler = Sampler(hand_made_gan(), "drs", held_out=held_out(), calibration_images=64)
    images = drawn(sampler)
    assert len(images) == 100 and sampler.accepted == sampler.proposed
    assert sampler.acceptance_rate == 1.0 and sampler.gamma == 0.0
    assert sampler.calibration.b == pytest.approx(0.0, abs=1e-9)  # one logit for all: P(real) = 1/2


def test_drs_rejects_a_sample_d_scores_as_certainly_fake():
    """D: real-looking (logit 0) when the first pixel is <= 0, certainly fake (-1e4) otherwise. The held-out real
    images all have a first pixel <= 0 (uint8 below 128), so calibration sees half the fakes as certainly fake."""
    gan = hand_made_gan(certainly_fake_when_first_pixel_is_positive)
    sampler = Sampler(gan, "drs", held_out=held_out(high=128), calibration_images=64)
    images = drawn(sampler, num_samples=200)
    assert len(images) == 200 and (images[:, 0, 0, 0] <= 0).all()
    # Half the proposals score as certainly fake and are never kept; the paper's gamma (the 95th percentile of F,
    # here F at D_M itself) keeps each of the others with probability 1/2: a quarter of all proposals.
    assert sampler.accepted >= 200 and 0.2 < sampler.acceptance_rate < 0.3  # the last batch may keep extras
    assert sampler.gamma == pytest.approx(float(drs_f(torch.tensor([0.0], dtype=torch.float64), 0.0)))
    assert torch.sigmoid(drs_f(sampler.calibration(torch.tensor([-1e4])), 0.0) - sampler.gamma).item() == 0.0
    described = sampler.describe()
    assert (described["name"], described["accepted"]) == ("drs", sampler.accepted)
    assert described["calibration"]["split"] == "val"
    assert torch.equal(images, drawn(Sampler(gan, "drs", held_out=held_out(high=128), calibration_images=64), 200))


# ----------------------------------------------------------------------------- MH-GAN


def test_the_mh_chain_accepts_by_the_calibrated_odds_ratio():
    """Three chains, four proposals each; a move is accepted when u < min(1, exp(l' - l))."""
    start = torch.tensor([0.0, 5.0, 10.0], dtype=torch.float64)
    proposals = torch.tensor([[1.0, 1.0, 0.0], [-1.0, -1.0, 0.0], [3.0, 3.0, 0.0], [2.0, 2.0, 0.0]]).double()
    uniforms = torch.tensor([[0.99, 0.01, 0.9], [0.1, 0.5, 0.9], [0.5, 0.2, 0.9], [0.5, 0.5, 0.9]]).double()
    # Chain 0: e^1 -> yes, e^-2 = 0.135 > 0.1 -> yes, e^4 -> yes, e^-1 = 0.368 < 0.5 -> no.
    # Chain 1: e^-4 = 0.018 > 0.01 -> yes, e^-2 < 0.5 -> no, e^2 -> yes, e^-1 < 0.5 -> no. Chain 2: never.
    index, accepted = mh_chain(start, proposals, uniforms)
    assert index.tolist() == [2, 2, -1] and accepted == 5
    # The ratio is MH-GAN's (1/D(x) - 1) / (1/D(x') - 1) with D = sigmoid(logit).
    d, d_new = torch.sigmoid(torch.tensor(0.0)), torch.sigmoid(torch.tensor(-2.0))
    assert ((1 / d - 1) / (1 / d_new - 1)).item() == pytest.approx(math.exp(-2.0))


def test_mh_accepts_every_move_when_d_is_constant():
    sampler = Sampler(hand_made_gan(), "mh", held_out=held_out(), mh_k=5, calibration_images=64)
    images = drawn(sampler, num_samples=50, batch_size=16)
    assert len(images) == 50 and sampler.proposed == 5 * 50 and sampler.acceptance_rate == 1.0


def test_mh_never_outputs_the_real_image_it_starts_from():
    """D scores the held-out images (all pixels -1) as certainly real and every fake alike: no chain leaves its
    real start, so each restarts from a generated image and then accepts all its moves; half of all proposals."""
    gan = hand_made_gan(lambda x: torch.where((x == -1).flatten(1).all(1), 1e4, 0.0))
    real = ("val", UInt8ImageDataset(torch.zeros(16, 1, 2, 2, dtype=torch.uint8)))
    sampler = Sampler(gan, "mh", held_out=real, mh_k=4, calibration_images=16)
    images = drawn(sampler, num_samples=20, batch_size=8)
    assert len(images) == 20 and not (images == -1).flatten(1).all(1).any()
    assert (sampler.proposed, sampler.accepted) == (2 * 4 * 20, 4 * 20)
    described = sampler.describe()
    assert (described["name"], described["mh_k"], described["acceptance_rate"]) == ("mh", 4, 0.5)


def test_mh_is_deterministic_under_the_seed_and_keeps_to_real_looking_images():
    make = lambda: Sampler(
        hand_made_gan(certainly_fake_when_first_pixel_is_positive), "mh", held_out=held_out(high=128), mh_k=10
    )
    sampler = make()
    images = drawn(sampler, num_samples=40, batch_size=16, seed=5)
    assert (images[:, 0, 0, 0] <= 0).all() and 0.3 < sampler.acceptance_rate < 0.7
    assert torch.equal(images, drawn(make(), num_samples=40, batch_size=16, seed=5))
    assert not torch.equal(images, drawn(make(), num_samples=40, batch_size=16, seed=6))


# ----------------------------------------------------------------------------- the commands


def test_file_names_tell_every_setting_apart():
    settings = [("plain", math.inf), ("plain", 0.7), ("drs", math.inf), ("drs", 0.7), ("mh", math.inf), ("mh", 0.7)]
    suffixes = [settings_suffix(method, psi) for method, psi in settings]
    assert suffixes == ["", "_psi0.7", "_drs", "_drs_psi0.7", "_mh", "_mh_psi0.7"]
    assert settings_suffix("drs", math.inf, drs_percentile=0.9) == "_drs-p0.9"
    assert settings_suffix("mh", 1.5, mh_k=50) == "_mh-k50_psi1.5"


@pytest.fixture(scope="module")
def run_checkpoint(tmp_path_factory):
    """A one-step VanillaGAN in a run folder whose config.yaml names a synthetic dataset (8 held-out images)."""
    run = tmp_path_factory.mktemp("run")
    data = {"image_size": 8, "num_channels": 1, "num_images": 16, "batch_size": 8}
    config = {"data": {"class_path": "datamodules.SyntheticDataModule", "init_args": data}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    model = VanillaGAN(latent_dim=8, image_size=8, num_channels=1, g_hidden_dims=(16,), d_hidden_dims=(16,))
    trainer = pl.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(model, datamodule=SyntheticDataModule(**data))
    path = run / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.mark.parametrize("method", ["drs", "mh"])
def test_generate_labels_every_image_with_its_sampler_and_psi(run_checkpoint, tmp_path, capsys, method):
    grid, out = tmp_path / "grid.png", tmp_path / "out"
    args = ["--ckpt_path", str(run_checkpoint), "--num_images", "6", "--device", "cpu", "--grid", str(grid)]
    # A 2-step GAN's D calibrated on 8 images: the paper's gamma (95th percentile) can keep under 1% of proposals.
    args += ["--mh_k", "3", "--drs_percentile", "0.5"]
    assert generate_main([*args, "--out_dir", str(out), "--sampler", method, "--truncation", "0.7"]) == 0
    said = capsys.readouterr().out.splitlines()[-1]
    assert f"sampler {method}, psi 0.7: " in said and "proposals accepted" in said and "8 'val' images" in said
    for png in (grid, *sorted(out.iterdir())):
        assert Image.open(png).text["Sampler"].startswith(f"{method}, psi 0.7: ")
    assert len(list(out.iterdir())) == 6


def test_the_commands_refuse_what_cannot_work_in_one_line(run_checkpoint, tmp_path, capsys):
    grid = ["--grid", str(tmp_path / "g.png")]
    ckpt = ["--ckpt_path", str(run_checkpoint)]
    cases = [
        (generate_main, ["--pretrained", "any_entry", "--sampler", "drs", *grid], "zoo entry keeps only its generator"),
        (evaluate_main, ["--pretrained", "any_entry", "--sampler", "mh"], "zoo entry keeps only its generator"),
        (generate_main, [*ckpt, "--truncation", "0", *grid], "positive psi"),
        (evaluate_main, [*ckpt, "--truncation", "-0.5"], "positive psi"),
        (generate_main, [*ckpt, "--sampler", "mh", "--walk", str(tmp_path / "w.gif")], "--out_dir and --grid"),
    ]  # fmt: skip
    for main, args, message in cases:
        assert main(args) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "g.png").exists()


def test_evaluate_names_the_sampler_and_psi_in_its_table_json_and_file_name(run_checkpoint, capsys):
    args = ["--ckpt_path", str(run_checkpoint), "--num_samples", "10", "--device", "cpu", "--batch_size", "5"]
    assert evaluate_main([*args, "--sampler", "mh", "--truncation", "0.7", "--mh_k", "3"]) == 0
    table = capsys.readouterr().out
    path = run_checkpoint.with_name("last_metrics_n10_mh-k3_psi0.7.json")
    results = json.loads(path.read_text())
    assert results["sampler"]["name"] == "mh" and results["sampler"]["truncation"] == 0.7
    proposed = results["sampler"]["proposed"]  # K per image, K more per chain restarted from a generated image
    assert 30 <= proposed <= 60 and proposed % 3 == 0
    assert 0 <= results["sampler"]["acceptance_rate"] <= 1 and results["sampler"]["calibration"]["split"] == "val"
    assert "mh, psi 0.7: " in table and f"wrote {path}" in table
    assert evaluate_main([*args, "--truncation", "0.7"]) == 0
    plain = json.loads(run_checkpoint.with_name("last_metrics_n10_psi0.7.json").read_text())
    assert plain["sampler"] == {"name": "plain", "truncation": 0.7}
    assert "plain, psi 0.7" in capsys.readouterr().out
