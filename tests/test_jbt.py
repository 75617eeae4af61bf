"""Jacobian-based truncation (``gan_modules.sampling``, ``--sampler jbt``) on hand-made generators."""

import json
import math

import pytest
import torch
from PIL import Image
from test_sampling import drawn, hand_made_gan, run_checkpoint  # noqa: F401 (a fixture)

from gan_modules.commands.evaluate import main as evaluate_main
from gan_modules.commands.generate import main as generate_main
from gan_modules.sampling import Sampler, images_and_jacobian_norms, settings_suffix


def tanh_norms(images: torch.Tensor, skip: int = 0) -> torch.Tensor:
    """||d tanh(z) / dz||_F^2 from the images x = tanh(z): the Jacobian is diag(1 - x^2), over coordinates >= skip."""
    return (1 - images.flatten(1)[:, skip:].double() ** 2).pow(2).sum(1)


def test_the_jacobian_norm_is_the_hand_computed_one_exact_and_estimated():
    gan = hand_made_gan()
    z = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    images, norms = images_and_jacobian_norms(gan, z, torch.Generator().manual_seed(1))  # 4 coordinates: exact
    torch.testing.assert_close(images, torch.tanh(z).view(64, 1, 2, 2))
    torch.testing.assert_close(norms, tanh_norms(images))
    # Two +-1 directions for four coordinates: Hutchinson's estimate, exact for a diagonal Jacobian (v_i^2 = 1).
    _, estimated = images_and_jacobian_norms(gan, z, torch.Generator().manual_seed(1), probes=2)
    torch.testing.assert_close(estimated, norms)


def test_hutchinson_estimates_a_full_jacobian_without_bias():
    """G(z) = A z with a dense A: every latent's ||J||_F^2 is sum(A^2); 64 probes of 8 coordinates average to it."""
    gan = hand_made_gan()
    a = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    gan.generator = torch.nn.Sequential(torch.nn.Linear(8, 4, bias=False), torch.nn.Unflatten(1, (1, 2, 2)))
    gan.generator[0].weight.data = a / 4  # small, so no pixel reaches the [-1, 1] clamp
    gan.latent_dim = 8
    z = torch.randn(200, 8, generator=torch.Generator().manual_seed(2)) / 10
    _, norms = images_and_jacobian_norms(gan, z, torch.Generator().manual_seed(3), probes=4)
    exact = float((a / 4).pow(2).sum())
    assert norms.mean().item() == pytest.approx(exact, rel=0.05)
    assert norms.std() > 0  # each latent's estimate is its own draw


def test_a_component_picker_is_held_fixed():
    gan = hand_made_gan()
    gan.categorical_latents = 1
    z = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    images, norms = images_and_jacobian_norms(gan, z, torch.Generator())
    torch.testing.assert_close(norms, tanh_norms(images, skip=1))


def test_jbt_keeps_the_latents_where_g_stretches_least():
    """tanh stretches most around z = 0: keep 0.5 keeps the images whose hand-computed norm is below the median of
    the calibration latents, about half of the proposals, and nothing else."""
    sampler = Sampler(hand_made_gan(), "jbt", jbt_keep=0.5, calibration_images=2000)
    images = drawn(sampler, num_samples=300, batch_size=100)
    assert len(images) == 300
    assert (tanh_norms(images) <= sampler.jbt_threshold + 1e-9).all()
    assert 0.4 < sampler.acceptance_rate < 0.6
    reference = tanh_norms(torch.tanh(torch.randn(20_000, 4, generator=torch.Generator().manual_seed(9))))
    assert sampler.jbt_threshold == pytest.approx(float(reference.median()), rel=0.05)
    described = sampler.describe()
    assert (described["name"], described["jbt_keep"], described["calibration_latents"]) == ("jbt", 0.5, 2000)
    assert described["accepted"] == sampler.accepted and "calibration" not in described  # no D, no real image
    again = Sampler(hand_made_gan(), "jbt", jbt_keep=0.5, calibration_images=2000)
    assert torch.equal(images, drawn(again, num_samples=300, batch_size=100))
    everything = Sampler(hand_made_gan(), "jbt", jbt_keep=1.0, calibration_images=500)
    drawn(everything)
    assert everything.acceptance_rate == 1.0


def test_jbt_settings_that_cannot_work_are_refused():
    for keep in (0.0, 0.001, 1.5, math.nan):
        with pytest.raises(ValueError, match="--jbt_keep must be a share of latents"):
            Sampler(hand_made_gan(), "jbt", jbt_keep=keep)
    gan = hand_made_gan()
    gan.categorical_latents = 4
    with pytest.raises(ValueError, match="needs continuous latent coordinates"):
        Sampler(gan, "jbt")
    assert settings_suffix("jbt", math.inf) == "_jbt"
    assert settings_suffix("jbt", 0.7, jbt_keep=0.8) == "_jbt-keep0.8_psi0.7"


def test_jbt_needs_no_discriminator_so_a_zoo_entry_takes_it(tmp_path, capsys):
    grid, out = tmp_path / "grid.png", tmp_path / "out"
    args = ["--pretrained", "vanilla_mnist-seed42", "--num_images", "4", "--device", "cpu", "--sampler", "jbt"]
    assert generate_main([*args, "--jbt_keep", "0.8", "--grid", str(grid), "--out_dir", str(out)]) == 0
    said = capsys.readouterr().out.splitlines()[-1]
    assert "sampler jbt, psi inf (no truncation): " in said and "proposals accepted" in said
    for png in (grid, *sorted(out.iterdir())):
        assert Image.open(png).text["Sampler"].startswith("jbt, psi inf")


def test_evaluate_names_jbt_and_its_share_in_the_file_name(run_checkpoint, capsys):  # noqa: F811
    args = ["--ckpt_path", str(run_checkpoint), "--num_samples", "10", "--device", "cpu", "--batch_size", "5"]
    assert evaluate_main([*args, "--sampler", "jbt", "--jbt_keep", "0.8"]) == 0
    path = run_checkpoint.with_name("last_metrics_n10_jbt-keep0.8.json")
    sampler = json.loads(path.read_text())["sampler"]
    assert (sampler["name"], sampler["jbt_keep"]) == ("jbt", 0.8) and 0 < sampler["acceptance_rate"] <= 1
    assert "jbt, psi inf (no truncation): " in capsys.readouterr().out


class ScaledTanh(torch.nn.Module):
    """(z [N, 4], labels [N]) -> scale[label] * tanh(z) as [N, 1, 2, 2]: class 1's Jacobian is 10x smaller."""

    scale = torch.tensor([1.0, 0.1])

    def forward(self, z, labels):
        return (self.scale[labels.cpu()].view(-1, 1) * torch.tanh(z)).view(len(z), 1, 2, 2)


def test_a_class_conditional_model_gets_one_threshold_per_class_and_keeps_each_image_s_class():
    """Per-class thresholds: with one global cut, class 1 (norms 100x smaller) would keep everything and class 0
    little. Each class keeps about ``jbt_keep`` of its proposals, and image i stays of class classes[i % 2]."""
    from gan_modules.commands.common import ClassSampler, image_sampler

    gan = hand_made_gan()
    gan.generator, gan.num_classes = ScaledTanh(), 2
    sampler = image_sampler(gan, "jbt", math.inf, [0, 1], jbt_keep=0.5)
    assert isinstance(sampler, ClassSampler)
    sampler.calibration_images = 4000
    images = drawn(sampler, num_samples=301, batch_size=64)
    assert len(images) == 301 and torch.equal(sampler.labels, torch.tensor([0, 1]).repeat(151)[:301])
    scale = ScaledTanh.scale[sampler.labels].double()
    norms = scale**2 * tanh_norms(images / scale.view(-1, 1, 1, 1).float())  # from tanh(z) = image / scale
    reference = tanh_norms(torch.tanh(torch.randn(20_000, 4, generator=torch.Generator().manual_seed(9)))).median()
    for c in (0, 1):
        threshold = sampler.jbt_thresholds[c]
        assert threshold == pytest.approx(float(ScaledTanh.scale[c] ** 2 * reference), rel=0.06)
        assert (norms[sampler.labels == c] <= threshold * (1 + 1e-4)).all()
    assert 0.4 < sampler.acceptance_rate < 0.6
    described = sampler.describe()
    assert described["name"] == "jbt" and set(described["jbt_thresholds"]) == {0, 1}
    again = image_sampler(gan, "jbt", math.inf, [0, 1], jbt_keep=0.5)
    again.calibration_images = 4000
    assert torch.equal(images, drawn(again, num_samples=301, batch_size=64))  # the seed decides every image
    with pytest.raises(ValueError, match="calibrates D's score of images alone"):
        image_sampler(gan, "drs", math.inf, [0, 1])
