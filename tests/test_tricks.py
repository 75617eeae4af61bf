"""Training tricks: each one trains, does its math, keeps its state across a checkpoint, and says no clearly."""

import pytest
import torch
from helpers import Linear, make_trainer, step_with
from torch import nn

from datamodules import SyntheticDataModule
from gan_modules import DCGAN, Pix2PixGAN, VanillaGAN
from gan_modules.layers import MinibatchDiscrimination, MinibatchStdDev
from gan_modules.tricks import (
    DRAGAN,
    R1,
    R2,
    DiffAugment,
    DOut,
    FeatureMatching,
    GradientPenalty,
    HistoricalAveraging,
    InstanceNoise,
    PacGAN,
    SpectralNorm,
    Step,
    TopK,
    WeightClipping,
)

# Every trick, the loss term it logs (None: it only changes D's inputs) and the network it adds it to.
TRICKS = [
    (lambda: InstanceNoise(std=0.2, anneal_steps=10), None),
    (lambda: DiffAugment(), None),
    (lambda: R1(gamma=1.0, every=2), "train/d_r1"),
    (lambda: R2(gamma=1.0, every=2, gamma_end=0.1), "train/d_r2"),
    (lambda: DRAGAN(), "train/d_dragan"),
    (lambda: FeatureMatching(), "train/g_feature_matching"),
    (lambda: HistoricalAveraging(window=3), "train/d_historical_averaging"),
    (lambda: SpectralNorm(), None),
    (lambda: PacGAN(m=2), None),
    (lambda: TopK(gamma=0.5), None),
    (lambda: GradientPenalty(weight=1.0), "train/d_penalty"),
    (lambda: WeightClipping(clip_value=0.05), None),
]
# Network options of the variants (the catalogue's layer tricks), trained the same way.
OPTIONS = [dict(g_upsample="nearest"), dict(g_upsample="pixelshuffle"), dict(d_minibatch="stddev"),
           dict(d_minibatch="discrimination"), dict(g_norm="virtual")]  # fmt: skip


def tiny_dcgan(**kwargs):
    return DCGAN(latent_dim=8, image_size=16, num_channels=1, g_channels=4, d_channels=4, **kwargs)


@pytest.mark.parametrize("make, key", TRICKS, ids=lambda x: getattr(x, "__name__", str(x)))
def test_every_trick_trains_with_finite_losses_and_logs_its_term(tmp_path, make, key):
    model = tiny_dcgan(tricks=[make()])
    seen = {}
    model.log_dict = lambda values, **_: seen.update({k: float(v) for k, v in values.items()})
    trainer = make_trainer(tmp_path, max_epochs=1)
    trainer.fit(model, datamodule=SyntheticDataModule(image_size=16, num_channels=1, num_images=32, batch_size=8))
    assert (model.d_updates, model.g_updates) == (4, 4)
    assert all(torch.isfinite(torch.tensor(v)) for v in seen.values())
    assert {"train/d_loss", "train/g_loss"} <= set(seen)
    if key is not None:
        assert key in seen


def test_tricks_compose_in_one_list_and_see_real_and_fake_alike(tmp_path):
    calls = []

    class Spy(InstanceNoise):
        def d_input(self, images, gan):
            calls.append(images.requires_grad)
            return super().d_input(images, gan)

    model = tiny_dcgan(tricks=[Spy(std=0.0), DiffAugment(policy=["translation"]), R1(gamma=1.0)])
    make_trainer(tmp_path, max_epochs=1, limit_train_batches=1).fit(
        model, datamodule=SyntheticDataModule(image_size=16, num_channels=1, num_images=8, batch_size=8)
    )
    # One batch: D sees the reals and the detached fakes, then G's fakes (which carry G's graph).
    assert calls == [False, False, True]


def test_instance_noise_anneals_to_zero_with_the_saved_update_count():
    trick = InstanceNoise(std=0.2, anneal_steps=100)
    assert [trick.current_std(t) for t in (0, 50, 100, 500)] == [0.2, 0.1, 0.0, 0.0]
    gan = tiny_dcgan(tricks=[trick])
    gan.d_updates = 50
    x = torch.zeros(64, 1, 16, 16)
    assert abs(float(gan.d_input(x).std()) - 0.1) < 0.01
    gan.d_updates = 100
    assert torch.equal(gan.d_input(x), x)
    assert InstanceNoise(std=0.3, anneal_steps=0).current_std(10**6) == 0.3


def test_diffaugment_translates_cuts_out_and_lets_gradients_through():
    torch.manual_seed(0)
    gan = tiny_dcgan()
    x = torch.zeros(16, 1, 16, 16)
    x[:, :, 8, 8] = 1.0
    moved = DiffAugment(policy=["translation"], translation_ratio=0.125).d_input(x, gan)
    rows, cols = (moved[:, 0] == 1).nonzero()[:, 1], (moved[:, 0] == 1).nonzero()[:, 2]
    assert len(rows) == 16 and (rows - 8).abs().max() <= 2 and (cols - 8).abs().max() <= 2  # 0.125 * 16 = 2
    assert (rows != 8).any() or (cols != 8).any()
    ones = torch.ones(8, 1, 16, 16)
    cut = DiffAugment(policy=["cutout"], cutout_ratio=0.5).d_input(ones, gan)
    zeros = (cut == 0).flatten(1).sum(1)
    assert zeros.le(64).all() and zeros.gt(0).all()  # one 8x8 square per image, clipped at the edges
    y = torch.randn(4, 1, 16, 16, requires_grad=True)
    DiffAugment().d_input(y, gan).sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown policy \\['blur'\\]"):
        DiffAugment(policy=["color", "blur"])


def test_r1_is_half_gamma_times_the_squared_input_gradient_and_lazy_steps_scale_by_k():
    w = torch.full((12,), 0.5)
    real = torch.randn(4, 3, 2, 2)
    (value,) = R1(gamma=10.0).d_terms(step_with(Linear(w), real)).values()
    torch.testing.assert_close(value, torch.tensor(10.0 / 2 * 12 * 0.25))
    lazy = R1(gamma=10.0, every=4)
    assert lazy.d_terms(step_with(Linear(w), real, update=1)) == {}
    torch.testing.assert_close(lazy.d_terms(step_with(Linear(w), real, update=4))["r1"], 4 * value)


def test_dragan_is_zero_for_a_unit_gradient_and_grows_with_its_distance_from_one():
    real = torch.randn(4, 1, 3, 3)
    unit = torch.zeros(9)
    unit[0] = 1.0
    assert float(DRAGAN(weight=10.0).d_terms(step_with(Linear(unit), real))["dragan"]) == pytest.approx(0, abs=1e-6)
    double = DRAGAN(weight=10.0).d_terms(step_with(Linear(2 * unit), real))["dragan"]
    assert float(double) == pytest.approx(10.0)


def test_feature_matching_is_the_squared_distance_of_d_feature_means():
    gan = tiny_dcgan(tricks=[FeatureMatching(weight=2.0)])
    real, fake = torch.randn(6, 1, 16, 16), torch.randn(6, 1, 16, 16)
    real_out, fake_out = gan.d_out(real, None), gan.d_out(fake, None)
    assert real_out.features.shape[0] == 6 and real_out.logits.shape == (6,)
    torch.testing.assert_close(real_out.logits, gan.discriminator(real))  # the same pass gives both
    step = Step(gan, 0, real, fake, real_out, fake_out, gan.discriminator)
    expected = 2.0 * (real_out.features.mean(0) - fake_out.features.mean(0)).pow(2).sum()
    torch.testing.assert_close(gan.tricks[0].g_terms(step)["feature_matching"], expected)


def test_historical_averaging_tracks_the_mean_of_past_weights_and_resumes_exactly(tmp_path):
    gan = tiny_dcgan(tricks=[HistoricalAveraging(weight=1.0, networks="d", window=2)])
    trick = gan.tricks[0]
    params = lambda: torch.cat([p.detach().flatten() for p in gan.discriminator.parameters()])
    first = params().clone()
    with torch.no_grad():
        for p in gan.discriminator.parameters():
            p.add_(1.0)
    trick.after_d_step(gan)  # history: [initial, initial + 1]
    with torch.no_grad():
        for p in gan.discriminator.parameters():
            p.add_(1.0)
    # theta = initial + 2, average of the window = initial + 0.5 -> 1.5^2 per parameter.
    value = trick.d_terms(Step(gan, 0, None, None, None, None, None))["historical_averaging"]
    torch.testing.assert_close(value, torch.tensor(2.25 * first.numel()))
    trick.after_d_step(gan)  # the ring now holds initial + 2 and initial + 1
    restored = tiny_dcgan(tricks=[HistoricalAveraging(weight=1.0, networks="d", window=2)])
    restored.load_state_dict(gan.state_dict())
    torch.testing.assert_close(restored.tricks[0].d_history, trick.d_history)
    assert int(restored.tricks[0].d_count) == 3
    running = HistoricalAveraging(weight=1.0, networks="g")
    running.setup(tiny_dcgan())
    assert not hasattr(running, "d_history") and running.g_history.ndim == 1


def test_a_term_of_the_weights_alone_is_split_over_several_discriminators():
    """FaceSwap sums each D term over its two discriminators: historical averaging must still count once."""
    gan = tiny_dcgan(tricks=[HistoricalAveraging(weight=1.0, networks="d")])
    with torch.no_grad():
        for p in gan.discriminator.parameters():
            p.add_(1.0)
    one = gan.tricks[0].d_terms(Step(gan, 0, None, None, None, None, None))["historical_averaging"]
    two = gan.tricks[0].d_terms(Step(gan, 0, None, None, None, None, None, judges=2))["historical_averaging"]
    torch.testing.assert_close(2 * two, one)


def test_an_objectives_regularizer_runs_as_a_trick_ahead_of_the_list(tmp_path):
    from gan_modules.objectives import Wasserstein, WassersteinGP

    gan = tiny_dcgan(objective=Wasserstein(clip_value=0.01), tricks=[HistoricalAveraging(networks="d")])
    assert [type(t).__name__ for t in gan.adversary.tricks] == ["WeightClipping", "HistoricalAveraging"]
    assert len(gan.tricks) == 1  # not a module of the GAN: checkpoints keep the listed tricks' keys (tricks.0...)
    initial = gan.tricks[0].d_history.clone()
    make_trainer(tmp_path, max_epochs=1, limit_train_batches=1).fit(
        gan, datamodule=SyntheticDataModule(image_size=16, num_channels=1, num_images=8, batch_size=8)
    )
    weights = torch.cat([p.detach().flatten() for p in gan.discriminator.parameters()])
    assert weights.abs().max() <= 0.01 and gan.d_updates == 1
    # Historical averaging recorded D after the clipping: the running mean of the initial and the clipped weights.
    torch.testing.assert_close(gan.tricks[0].d_history, (initial + weights) / 2)
    with pytest.raises(ValueError, match="GradientPenalty, which model.objective WassersteinGP already applies"):
        tiny_dcgan(objective=WassersteinGP(), tricks=[GradientPenalty()])


def test_top_k_gives_no_gradient_to_the_fakes_d_scores_least_real_and_shrinks_k_per_epoch():
    trick = TopK(gamma=0.5, min_fraction=0.25)
    assert [trick.k(8, epochs) for epochs in (0, 0.5, 1, 2, 3)] == [8, 6, 4, 2, 2]  # 8 * max(0.25, 0.5 ** epochs)
    gan = VanillaGAN(latent_dim=4, image_size=4, num_channels=1, g_hidden_dims=(8,), d_hidden_dims=(8,),
                     tricks=[trick])  # fmt: skip
    fake = torch.randn(8, 1, 4, 4, requires_grad=True)
    logits = gan.discriminator(fake)
    gan.objective.g_loss(gan.tricks[0].g_logits(logits, gan)).backward()
    assert fake.grad.flatten(1).abs().sum(1).gt(0).all()  # epoch 0: k = B, every fake learns
    gan._trainer = type("Trainer", (), {"num_training_batches": 10})()
    gan.g_updates = 10  # one epoch of 10 batches: k = 4
    fake.grad = None
    logits = gan.discriminator(fake)
    gan.objective.g_loss(gan.tricks[0].g_logits(logits, gan)).backward()
    learns = fake.grad.flatten(1).abs().sum(1).gt(0)
    assert learns.sum() == 4 and torch.equal(learns, logits.detach() >= logits.detach().sort().values[4])
    # Several logits per sample (a PatchGAN): a sample is kept or dropped whole, by its mean logit.
    patches = torch.tensor([[[[0.0, 9.0]]], [[[1.0, 1.0]]], [[[5.0, 5.0]]], [[[-3.0, 4.0]]]])
    kept = TopK(gamma=0.5).g_logits(patches, gan)
    assert torch.equal(kept, patches[[2, 0]])  # means 4.5, 1, 5, 0.5: the best two, best first
    with pytest.raises(ValueError, match="min_fraction must be in"):
        TopK(min_fraction=0.0)


def test_variants_that_cannot_take_a_trick_say_so_at_construction():
    with pytest.raises(ValueError, match="FeatureMatching needs D's intermediate features.*Pix2PixGAN"):
        Pix2PixGAN(image_size=32, num_channels=3, g_channels=4, d_channels=4, tricks=[FeatureMatching()])
    with pytest.raises(ValueError, match="DiffAugment augments images D judges alone"):
        Pix2PixGAN(image_size=32, num_channels=3, g_channels=4, d_channels=4, tricks=[DiffAugment()])
    with pytest.raises(ValueError, match="every must be >= 1"):
        R1(every=0)
    VanillaGAN(latent_dim=4, image_size=8, num_channels=1, g_hidden_dims=(8,), d_hidden_dims=(8,),
               tricks=[FeatureMatching()])  # fmt: skip
    assert isinstance(DOut(torch.zeros(1)).features, type(None))


def test_yaml_overlays_and_command_line_appends_compose_tricks(tmp_path):
    from test_cli import CSV_ONLY, ROOT, fit

    overlays = ["--config", str(ROOT / "configs/tricks/r1.yaml"), "--config", str(ROOT / "configs/tricks/dragan.yaml")]
    cli = fit(tmp_path / "a", "vanilla_mnist.yaml", *CSV_ONLY, *overlays,
              "--model.tricks+=gan_modules.tricks.InstanceNoise", "--model.tricks.std", "0.3")  # fmt: skip
    r1, dragan, noise = cli.model.tricks
    assert isinstance(r1, R1) and (r1.gamma, r1.every) == (10.0, 16)
    assert isinstance(dragan, DRAGAN) and isinstance(noise, InstanceNoise) and noise.std == 0.3
    saved = (cli.run_dir / "config.yaml").read_text()
    assert all(f"gan_modules.tricks.{name}" in saved for name in ("R1", "DRAGAN", "InstanceNoise"))
    # The DCGAN config's own R1 and an overlay's DiffAugment stack ('tricks+:' appends).
    cli = fit(tmp_path / "c", "dcgan_mnist.yaml", *CSV_ONLY, "--config", str(ROOT / "configs/tricks/diffaugment.yaml"))
    assert [type(t).__name__ for t in cli.model.tricks] == ["R1", "DiffAugment"]
    # A later file that writes 'tricks:' would replace the earlier list (jsonargparse): the CLI stops instead.
    replacing = tmp_path / "replacing.yaml"
    replacing.write_text("model:\n  init_args:\n    tricks:\n      - class_path: gan_modules.tricks.DRAGAN\n")
    with pytest.raises(ValueError, match="replaces the tricks of .*r1.yaml.*tricks\\+:.*--model.tricks.gamma"):
        fit(tmp_path / "b", "vanilla_mnist.yaml", *CSV_ONLY, overlays[0], overlays[1], "--config", str(replacing))
    assert not (tmp_path / "b").exists()
    # The message's way to tune the config's own trick instead: a command-line value for the last listed trick.
    cli = fit(tmp_path / "e", "dcgan_mnist.yaml", *CSV_ONLY, "--model.tricks.gamma", "0.25")
    assert [(type(t).__name__, t.gamma, t.every) for t in cli.model.tricks] == [("R1", 0.25, 16)]
    # The same trick twice (the config's R1 and the R1 overlay) is refused at start-up.
    with pytest.raises(ValueError, match="lists R1 more than once"):
        fit(tmp_path / "d", "dcgan_mnist.yaml", *CSV_ONLY, *overlays[:2])


@pytest.mark.parametrize(
    "overlay",
    sorted(p.name for p in (__import__("pathlib").Path(__file__).parents[1] / "configs" / "tricks").glob("*.yaml")),
)
def test_every_trick_overlay_trains_through_the_cli(tmp_path, overlay):
    from test_cli import CSV_ONLY, ROOT, fit

    # The DCGAN config trains with its own R1: cleared first, so each overlay is tried alone.
    overlay_args = ["--model.tricks", "[]", "--config", str(ROOT / "configs" / "tricks" / overlay)]
    cli = fit(tmp_path, "dcgan_mnist.yaml", *CSV_ONLY, *overlay_args)
    assert len(cli.model.tricks) == 1 and cli.trainer.global_step == 4
    assert (cli.run_dir / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_every_network_option_trains(tmp_path, options):
    model = tiny_dcgan(**options)
    trainer = make_trainer(tmp_path, max_epochs=1)
    trainer.fit(model, datamodule=SyntheticDataModule(image_size=16, num_channels=1, num_images=16, batch_size=8))
    assert model.g_updates == 2 and model.generator(torch.randn(3, 8)).shape == (3, 1, 16, 16)


def test_minibatch_stddev_appends_the_group_std_and_sees_a_collapsed_batch():
    layer = MinibatchStdDev(group_size=2)
    x = torch.randn(4, 3, 2, 2)
    out = layer(x)
    assert out.shape == (4, 4, 2, 2) and torch.equal(out[:, :3], x)
    # Groups pair sample i with sample i + 2 (Karras et al.'s reshape); the stat is their std, averaged.
    expected = ((x[:2] - x[2:]).abs() / 2).flatten(1).mean(1)
    torch.testing.assert_close(out[:, 3, 0, 0], expected.repeat(2), atol=1e-4, rtol=1e-4)
    collapsed = layer(x[:1].expand(4, 3, 2, 2).contiguous())
    assert collapsed[:, 3].abs().max() < 1e-3


def test_minibatch_discrimination_scores_alike_samples_high():
    layer = MinibatchDiscrimination(in_features=6, num_kernels=4, kernel_dim=3)
    same = layer(torch.ones(5, 6))
    assert same.shape == (5, 10)
    torch.testing.assert_close(same[:, 6:], torch.full((5, 4), 4.0))  # exp(0) from each of the 4 others
    spread = layer(torch.randn(5, 6) * 100)
    assert spread[:, 6:].max() < 0.01


def test_upsampling_modes_keep_the_image_size():
    for mode, layer in (("nearest", nn.Upsample), ("pixelshuffle", nn.PixelShuffle), ("transpose", nn.ConvTranspose2d)):
        g = tiny_dcgan(g_upsample=mode).generator
        assert any(isinstance(m, layer) for m in g.modules())
        assert g(torch.randn(2, 8)).shape == (2, 1, 16, 16)


def test_pacgan_packs_m_samples_along_channels_and_widens_ds_input():
    gan = tiny_dcgan(tricks=[PacGAN(m=2)])
    first = next(m for m in gan.discriminator.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 2
    x = torch.arange(5 * 16 * 16, dtype=torch.float32).view(5, 1, 16, 16)
    packed = gan.d_input(x)
    assert packed.shape == (2, 2, 16, 16)  # 5 -> 4 images -> 2 packs of 2
    torch.testing.assert_close(packed[1, 1], x[3, 0])
    assert gan.d_out(packed, None).logits.shape == (2,)


def test_spectral_norm_wraps_every_d_layer_and_bounds_its_gain():
    from torch.nn.utils import parametrize

    gan = tiny_dcgan(tricks=[SpectralNorm()])
    layers = [m for m in gan.discriminator.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    linear = layers[-1]
    for _ in range(20):  # power iterations run in training mode
        linear(torch.randn(1, linear.in_features))
    assert torch.linalg.matrix_norm(linear.weight.detach(), ord=2) == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize(
    "objective, probabilities",
    [("NonSaturating", True), ("Hinge", False), ("WassersteinGP", False), ("RelativisticPairing", False)],
)
def test_d_outputs_are_logged_as_raw_scores_and_as_probabilities_only_for_cross_entropy(
    tmp_path, objective, probabilities
):
    import gan_modules.objectives as objectives

    model = tiny_dcgan(objective=getattr(objectives, objective)())
    seen = {}
    model.log_dict = lambda values, **_: seen.update(values)
    make_trainer(tmp_path, max_epochs=1, limit_train_batches=1).fit(
        model, datamodule=SyntheticDataModule(image_size=16, num_channels=1, num_images=8, batch_size=8)
    )
    assert {"train/d_real_score", "train/d_fake_score"} <= set(seen)
    assert ({"train/d_real", "train/d_fake", "train/d_acc"} <= set(seen)) is probabilities
    if not probabilities:
        assert not {"train/d_real", "train/d_fake", "train/d_acc"} & set(seen)


def test_virtual_batch_norm_makes_a_samples_output_independent_of_its_batch_mates():
    z = torch.randn(6, 8)
    for norm, independent in (("virtual", True), ("batch", False)):
        generator = tiny_dcgan(g_norm=norm).generator.train()
        alone, in_batch = generator(z[:1])[0], generator(z)[0]
        assert torch.allclose(alone, in_batch, atol=1e-5) is independent
    # The reference batch is a buffer: saved in checkpoints, identical after a reload.
    gan = tiny_dcgan(g_norm="virtual")
    restored = tiny_dcgan(g_norm="virtual")
    restored.load_state_dict(gan.state_dict())
    torch.testing.assert_close(restored.generate(z), gan.generate(z))


@pytest.mark.parametrize(
    "make",
    [
        lambda: dict(tricks=[HistoricalAveraging(window=3), InstanceNoise(std=0.2, anneal_steps=6)]),
        lambda: dict(tricks=[R1(gamma=1.0, every=3), DiffAugment(), PacGAN(m=2)]),
        lambda: dict(g_norm="virtual", d_minibatch="discrimination"),
    ],
    ids=["historical+noise", "r1+diffaugment+pacgan", "vbn+minibatch"],
)
def test_stateful_tricks_resume_bit_exactly(tmp_path, make):
    """Two epochs in one go == one epoch, a checkpoint, and a resumed second epoch, tricks' state included."""
    import pytorch_lightning as pl

    def run(max_epochs, ckpt_path=None, save=None):
        pl.seed_everything(7)
        model = tiny_dcgan(**make())
        trainer = make_trainer(tmp_path, max_epochs=max_epochs)
        trainer.fit(model, datamodule=SyntheticDataModule(image_size=16, num_channels=1, num_images=32, batch_size=8),
                    ckpt_path=ckpt_path)  # fmt: skip
        if save:
            trainer.save_checkpoint(save, weights_only=False)
        return model

    straight = run(2)
    run(1, save=tmp_path / "epoch1.ckpt")
    resumed = run(2, ckpt_path=tmp_path / "epoch1.ckpt")
    assert resumed.d_updates == straight.d_updates == 8
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
