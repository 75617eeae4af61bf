"""Class-conditional GANs (``num_classes`` > 0): labels reach G and D, the models train, the samples carry classes."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import make_trainer
from PIL import Image
from test_tricks import TRICKS

from datamodules import MNISTDataModule, SyntheticDataModule
from gan_modules import DCGAN, R3GAN, VanillaGAN
from gan_modules.cli import cli_main
from gan_modules.commands import evaluate, generate
from gan_modules.commands.common import rows_by_class
from gan_modules.conditional import grid_layout
from gan_modules.tricks import DOut, PacGAN, Step

ROOT = Path(__file__).resolve().parents[1]
CONDITIONAL_CONFIGS = ["dcgan_mnist_conditional.yaml"]
CLASSES = 3

# Each variant at its smallest, 16x16 grayscale.
TINY = {
    "vanilla": lambda **kw: VanillaGAN(
        latent_dim=8, image_size=16, num_channels=1, g_hidden_dims=(16, 32), d_hidden_dims=(16,), **kw
    ),
    "dcgan": lambda **kw: DCGAN(latent_dim=8, image_size=16, num_channels=1, g_channels=4, d_channels=4, **kw),
    "r3gan": lambda **kw: R3GAN(
        latent_dim=8, image_size=16, num_channels=1, widths=(8, 8, 8), blocks_per_stage=1, group_size=8, **kw
    ),
}


def labelled_data(num_images=8, batch_size=4):
    return SyntheticDataModule(
        image_size=16, num_channels=1, num_images=num_images, batch_size=batch_size, num_classes=CLASSES
    )


@pytest.mark.parametrize("variant", sorted(TINY))
@pytest.mark.parametrize("conditioning", ["projection", "acgan"])
def test_the_networks_take_labels_with_the_right_shapes(variant, conditioning):
    model = TINY[variant](num_classes=CLASSES, conditioning=conditioning, val_num_samples=0)
    z, labels = torch.randn(4, 8), torch.tensor([0, 1, 2, 1])
    fake = model.generator(z, labels)
    assert fake.shape == (4, 1, 16, 16)
    features, logits = model.discriminator.features_and_logits(fake, labels)
    assert logits.shape == (4,) and features.shape[0] == 4
    assert model.discriminator(fake, labels).shape == (4,)
    if conditioning == "acgan":  # a class-free real/fake logit, and a classifier beside it
        assert model.discriminator.class_logits(features).shape == (4, CLASSES)
        torch.testing.assert_close(model.discriminator(fake), logits)
    else:  # the label changes the logit: D judges (image, class) pairs
        assert not torch.equal(model.discriminator(fake, labels.flip(0)), logits)
        with pytest.raises(ValueError, match="pass labels"):
            model.discriminator(fake)
    # G depends on the label (same z, other classes), and refuses to guess one
    assert not torch.equal(model.generator.eval()(z, labels), model.generator(z, (labels + 1) % CLASSES))
    with pytest.raises(ValueError, match="class-conditional"):
        model.generator(z)


def test_the_loop_hands_the_batch_labels_to_g_and_d(tmp_path, monkeypatch):
    model = TINY["dcgan"](num_classes=CLASSES, val_num_samples=0)
    seen = {"g": [], "d": []}
    g_forward, d_forward = model.generator.forward, model.discriminator.forward
    monkeypatch.setattr(model.generator, "forward", lambda z, labels: seen["g"].append(labels) or g_forward(z, labels))
    monkeypatch.setattr(
        model.discriminator, "forward", lambda x, labels: seen["d"].append(labels) or d_forward(x, labels)
    )
    data = labelled_data()
    make_trainer(tmp_path, limit_train_batches=1).fit(model, datamodule=data)
    # One batch: G once; D on the reals, the detached fakes, then G's fakes: all with the reals' labels.
    (g_labels,) = seen["g"]
    assert len(seen["d"]) == 3 and all(torch.equal(d, g_labels) for d in seen["d"])
    assert g_labels.dtype == torch.long and g_labels.shape == (4,)
    assert set(g_labels.tolist()) <= set(range(CLASSES))


@pytest.mark.parametrize(
    "variant, conditioning", [("vanilla", "projection"), ("dcgan", "acgan"), ("r3gan", "projection")]
)
def test_a_conditional_model_trains_with_finite_losses(tmp_path, variant, conditioning):
    model = TINY[variant](num_classes=CLASSES, conditioning=conditioning, val_num_samples=0)
    d = model.discriminator
    before = (d.projection if conditioning == "projection" else d.classifier).weight.detach().clone()
    logged = {}
    model.log_dict = lambda values, **_: logged.update({k: float(v) for k, v in values.items()})
    make_trainer(tmp_path, max_epochs=1).fit(model, datamodule=labelled_data())
    assert (model.d_updates, model.g_updates) == (2, 2)
    assert all(torch.isfinite(torch.tensor(v)) for v in logged.values())
    head = model.discriminator.projection if conditioning == "projection" else model.discriminator.classifier
    assert not torch.equal(head.weight, before)  # D's class head trained with it
    if conditioning == "acgan":  # ACGAN's class terms are in both losses, and logged
        assert logged["train/d_class"] > 0 and logged["train/g_class"] > 0


@pytest.mark.parametrize(
    "make, key", [pytest.param(*t, id=type(t[0]()).__name__) for t in TRICKS if not isinstance(t[0](), PacGAN)]
)
def test_every_trick_but_pacgan_trains_a_conditional_model(tmp_path, make, key):
    model = TINY["dcgan"](num_classes=CLASSES, val_num_samples=0, tricks=[make()])
    logged = {}
    model.log_dict = lambda values, **_: logged.update({k: float(v) for k, v in values.items()})
    make_trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(model, datamodule=labelled_data())
    assert model.g_updates == 2 and all(torch.isfinite(torch.tensor(v)) for v in logged.values())
    assert key is None or key in logged


def test_acgan_class_terms_are_the_cross_entropies_of_the_auxiliary_classifier():
    model = TINY["vanilla"](num_classes=CLASSES, conditioning="acgan", val_num_samples=0)
    (term,) = model.class_terms
    labels = torch.tensor([0, 2, 1])
    real_features, fake_features = torch.randn(3, 16), torch.randn(3, 16)
    step = Step(
        gan=model, update=0, real_in=None, fake_in=None, real_out=DOut(torch.zeros(3), real_features),
        fake_out=DOut(torch.zeros(3), fake_features), d=None, labels=labels,
    )  # fmt: skip
    classify = model.discriminator.classifier
    real_ce = F.cross_entropy(classify(real_features), labels)
    fake_ce = F.cross_entropy(classify(fake_features), labels)
    torch.testing.assert_close(term.d_terms(step)["class"], real_ce + fake_ce)  # D names the class of both
    torch.testing.assert_close(term.g_terms(step)["class"], fake_ce)  # G makes fakes D names right
    # Uniform class logits: each cross-entropy is log(C).
    torch.nn.init.zeros_(classify.weight), torch.nn.init.zeros_(classify.bias)
    torch.testing.assert_close(term.g_terms(step)["class"], torch.tensor(CLASSES).log())


def test_the_grid_shows_one_class_per_row():
    model = TINY["dcgan"](num_classes=CLASSES, num_samples=7, val_num_samples=0)
    rows, per_row = grid_layout(7, CLASSES)
    assert (rows, per_row) == (3, 2) and model.sample_grid_nrow == 2
    grid = model.sample_grid()
    assert grid.shape == (6, 1, 16, 16)
    for row in range(rows):  # row r: class r, the same latents as every other row
        expected = model.generate(model.fixed_z[:per_row], torch.full((per_row,), row))
        torch.testing.assert_close(grid[row * per_row : (row + 1) * per_row], expected)
    assert not torch.equal(grid[:per_row], grid[per_row : 2 * per_row])
    # More classes than images: the first classes, one image each.
    assert grid_layout(4, 10) == (4, 1)


def test_sampling_takes_labels_and_balances_classes_by_default():
    model = TINY["vanilla"](num_classes=CLASSES, val_num_samples=0)
    labels = torch.tensor([2, 2, 0, 1, 0])
    chosen = torch.cat(list(model.sample_batches(5, batch_size=2, seed=3, labels=labels)))
    z = torch.randn(5, 8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(chosen, model.generate(z, labels))
    balanced = torch.cat(list(model.sample_batches(5, batch_size=2, seed=3)))
    torch.testing.assert_close(balanced, model.generate(z, torch.tensor([0, 1, 2, 0, 1])))
    with pytest.raises(ValueError, match="needs each image's class"):
        model.generate(z)
    with pytest.raises(ValueError, match="classes 0..2"):
        model.generate(z, torch.tensor([0, 1, 2, 3, 0]))
    with pytest.raises(ValueError, match="not class-conditional"):
        TINY["vanilla"](val_num_samples=0).generate(z, labels)


def test_validation_inputs_carry_the_reference_classes(tmp_path):
    model = TINY["vanilla"](num_classes=CLASSES, val_num_samples=0)
    trainer = make_trainer(tmp_path)
    data = labelled_data()
    trainer.datamodule = data  # as fit attaches it
    data.setup()
    data.val_labels = torch.tensor([2, 2, 1, 2])  # not the balanced order
    model.trainer = trainer
    inputs = model.validation_inputs(torch.zeros(4, 1, 16, 16, dtype=torch.uint8), seed=1)
    assert inputs.shape == (4, 9)
    assert inputs[:, -1].long().tolist() == [2, 2, 1, 2]
    expected = model.generate(inputs[:, :-1], data.val_labels)
    torch.testing.assert_close(model.validation_fakes(inputs), expected)


def test_the_datamodule_yields_labels_only_when_asked():
    data = labelled_data()
    data.setup()
    assert isinstance(next(iter(data.train_dataloader())), torch.Tensor)
    data.request_labels()
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (4, 1, 16, 16) and labels.dtype == torch.long
    assert torch.equal(data.reference_labels(), data.val_labels)
    with pytest.raises(ValueError, match="no class labels"):
        SyntheticDataModule().request_labels()


def test_unusable_settings_are_refused_with_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="no class labels"):
        make_trainer(tmp_path).fit(
            TINY["dcgan"](num_classes=CLASSES, val_num_samples=0), datamodule=SyntheticDataModule(image_size=16)
        )
    with pytest.raises(ValueError, match="has 3 classes"):
        make_trainer(tmp_path).fit(TINY["dcgan"](num_classes=10, val_num_samples=0), datamodule=labelled_data())
    with pytest.raises(ValueError, match="0 \\(unconditional\\) or at least 2"):
        TINY["dcgan"](num_classes=1)
    with pytest.raises(ValueError, match="'projection' or 'acgan'"):
        TINY["dcgan"](num_classes=CLASSES, conditioning="concat")
    with pytest.raises(ValueError, match="no one class"):
        TINY["dcgan"](num_classes=CLASSES, tricks=[PacGAN()])
    with pytest.raises(ValueError, match="conditional BatchNorm"):
        TINY["dcgan"](num_classes=CLASSES, g_norm="virtual")
    with pytest.raises(ValueError, match="judges \\(image, class\\) pairs"):
        TINY["dcgan"](num_classes=CLASSES).fake_probability(torch.zeros(2, 1, 16, 16))
    # ACGAN's D has a class-free real/fake logit: it judges images alone.
    assert TINY["dcgan"](num_classes=CLASSES, conditioning="acgan").fake_probability(
        torch.zeros(2, 1, 16, 16)
    ).shape == (2,)


def test_unconditional_models_are_unchanged():
    """num_classes 0 builds exactly the networks it built before: the same parameter names and shapes."""
    model = TINY["dcgan"](val_num_samples=0)
    assert model.num_classes == 0 and not any("projection" in k or "label" in k for k in model.state_dict())
    assert isinstance(model.generator.net[1], torch.nn.BatchNorm2d)


def test_generate_puts_one_class_per_row_padding_short_rows():
    images = torch.arange(5.0).view(5, 1, 1, 1).expand(5, 1, 2, 2) / 10 + 0.1
    tiles, per_row = rows_by_class(images, torch.tensor([0, 3, 7, 0, 3]), [0, 3, 7])
    assert per_row == 2
    assert tiles[:, 0, 0, 0].tolist() == pytest.approx([0.1, 0.4, 0.2, 0.5, 0.3, 0.0])  # class 7 has one: a blank


def test_mnist_yields_its_digits_labels_when_asked(tmp_path, monkeypatch):
    digits = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    mnist = (digits, torch.tensor([5, 0, 4, 1, 9, 2]), digits[:2], torch.tensor([7, 2]))
    monkeypatch.setattr("datamodules.mnist.load_labelled_mnist", lambda _: mnist)
    data = MNISTDataModule(data_dir=str(tmp_path), batch_size=6, download=False)
    data.setup()
    assert data.num_classes == 10 and data.reference_labels().tolist() == [7, 2]
    data.request_labels()
    images, labels = next(iter(data.train_dataloader()))
    for image, label in zip(images, labels):  # each image with its own label, whatever the shuffle
        assert label == mnist[1][(digits == image).flatten(1).all(1)].item()


def test_the_config_trains_through_the_cli_and_generate_writes_labelled_files(tmp_path, monkeypatch):
    args = ["--config", str(ROOT / "configs" / CONDITIONAL_CONFIGS[0]), "--data", "datamodules.SyntheticDataModule"]
    args += ["--data.num_images", "16", "--data.batch_size", "8", "--data.num_classes", "10"]
    args += ["--model.g_channels", "4", "--model.d_channels", "4", "--trainer.max_epochs", "1"]
    args += ["--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.logger", "false"]
    cli = cli_main(args)
    assert cli.model.num_classes == 10 and cli.trainer.global_step == 4
    ckpt = cli.run_dir / "checkpoints" / "last.ckpt"
    grid = Image.open(cli.run_dir / "samples" / "epoch_0000.png")
    assert grid.size[1] == 10 * 30 + 2  # ten rows of 28x28 tiles with make_grid's 2-pixel padding

    out = tmp_path / "images"
    code = generate.main(["--ckpt_path", str(ckpt), "--num_images", "5", "--classes", "0,3,7"])
    assert code == 1  # nothing to write
    assert generate.main(["--ckpt_path", str(ckpt), "--num_images", "5", "--classes", "0,3,7", "--out_dir",
                          str(out), "--grid", str(tmp_path / "grid.png")]) == 0  # fmt: skip
    names = sorted(p.name for p in out.iterdir())
    assert names == ["0_class0.png", "1_class3.png", "2_class7.png", "3_class0.png", "4_class3.png"]
    assert Image.open(out / "1_class3.png").text["Class"] == "3"
    assert Image.open(tmp_path / "grid.png").size == (2 * 30 + 2, 3 * 30 + 2)  # a row per class, two wide
    assert generate.main(["--ckpt_path", str(ckpt), "--classes", "10", "--grid", str(tmp_path / "g.png")]) == 1
    drs = ["--ckpt_path", str(ckpt), "--sampler", "drs", "--grid", str(tmp_path / "g.png")]
    assert generate.main(drs) == 1 and not (tmp_path / "g.png").exists()
    jbt = ["--ckpt_path", str(ckpt), "--sampler", "jbt", "--classes", "3,5", "--num_images", "4", "--out_dir"]
    assert generate.main([*jbt, str(tmp_path / "jbt")]) == 0  # JBT class by class: each image keeps its class
    assert sorted(p.name for p in (tmp_path / "jbt").iterdir()) == ["0_class3.png", "1_class5.png", "2_class3.png",
                                                                   "3_class5.png"]  # fmt: skip
    paths = ["--interpolate", str(tmp_path / "interp.png"), "--walk", str(tmp_path / "walk.gif")]
    assert generate.main(["--ckpt_path", str(ckpt), "--classes", "3,5", *paths, "--pairs", "2", "--steps", "3",
                          "--walk_keys", "2"]) == 0  # fmt: skip
    assert Image.open(tmp_path / "interp.png").size == (3 * 30 + 2, 2 * 30 + 2)

    # evaluate.py: the FID images are drawn for the reference images' classes, and the digit classifier scores them.
    monkeypatch.setattr(SyntheticDataModule, "reference_labels", lambda self: torch.tensor([9, 9, 8, 9, 8, 7, 0, 0]))
    results = evaluate.evaluate(ckpt, num_samples=6, batch_size=4)
    assert results["class_conditional"]["num_classes"] == 10 and "'val' split" in results["class_conditional"]["labels"]
    accuracy = results["class_accuracy"]
    assert accuracy["num_samples"] == 6 and sorted(accuracy["per_class"]) == ["7", "8", "9"]
    assert 0.0 <= accuracy["accuracy"] <= 1.0 and "class accuracy" in evaluate.format_table(results)
