"""The model zoo: export a trained run, list it, load it, sample and evaluate it; refuse what does not check out."""

import hashlib
import json
import shutil
import sys

import numpy as np
import pytest
import torch
import yaml
from helpers import fake_metrics
from PIL import Image
from test_cli import CSV_ONLY, fit, run_dirs

from benchmarks import quality
from gan_modules import zoo
from gan_modules.commands.common import load_gan
from gan_modules.commands.evaluate import main as evaluate_main
from gan_modules.commands.generate import main as generate_main

NAME = "tiny_vanilla-seed42"


def fake_results(fid=12.5, n=10_000):
    """An evaluate() result as evaluate.py writes it."""
    return fake_metrics(fid) | {
        "num_fake": n,
        "num_real": n,
        "reference": {"dataset": "datamodules.SyntheticDataModule", "split": "val", "cached": False},
        "feature_network_sha256": "tiny-features-v1",
        "checkpoint": "/somewhere/last.ckpt",
        "seconds": {"total": 42.0},
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A VanillaGAN trained for two batches by the real CLI, exported as zoo entry NAME."""
    tmp = tmp_path_factory.mktemp("zoo")
    fit(tmp, "vanilla_mnist.yaml", *CSV_ONLY, "--model.val_num_samples", "0")
    (run,) = run_dirs(tmp / "runs")
    root = tmp / "zoo"
    zoo.export_run(run, NAME, [fake_results()], root=root, command="python train.py --config tiny.yaml")
    return run, root


@pytest.fixture(autouse=True)
def zoo_root(trained, monkeypatch):
    monkeypatch.setenv("GAN_MODULES_ZOO", str(trained[1]))
    return trained[1]


def copied_entry(root, tmp_path, edit_card=None):
    """A copy of the entry in a zoo of its own (so a test can break it), its card edited by ``edit_card``."""
    other = tmp_path / "other_zoo"
    shutil.copytree(root / NAME, other / NAME)
    if edit_card is not None:
        card = json.loads((other / NAME / "card.json").read_text())
        edit_card(card)
        (other / NAME / "card.json").write_text(json.dumps(card))
    return other


def test_export_writes_weights_and_a_card_that_loads_to_the_same_ema_generator(trained, zoo_root):
    run, _ = trained
    entry = zoo_root / NAME
    assert sorted(p.name for p in entry.iterdir()) == ["README.md", "card.json", "generator.pt"]
    card = json.loads((entry / "card.json").read_text())
    assert card["weights"]["sha256"] == hashlib.sha256((entry / "generator.pt").read_bytes()).hexdigest()
    assert card["weights"]["network"] == "generator_ema"
    assert card["model"]["class_path"] == "gan_modules.vanilla.VanillaGAN"
    assert card["model"]["init_args"]["g_hidden_dims"] == [16, 32] and "_instantiator" not in card["model"]["init_args"]
    assert card["data"] == yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert (card["seed"], card["epochs"], card["training"]["command"]) == (42, 1, "python train.py --config tiny.yaml")
    (metrics,) = card["metrics"]
    assert metrics["num_samples"] == 10_000 and metrics["fid"] == 12.5 and "checkpoint" not in metrics
    # Only the generator travels: no discriminator, no optimizer state.
    weights = torch.load(entry / "generator.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in weights.values()) and not any("disc" in k for k in weights)

    assert [e.name for e in zoo.list_entries()] == [NAME]
    model = zoo.load_entry(NAME)
    assert not model.training
    source = load_gan(run / "checkpoints" / "last.ckpt").eval()
    z = torch.randn(6, model.latent_dim)
    assert torch.equal(model.generate(z), source.generator_ema.module.eval()(z).clamp(-1, 1))
    assert not torch.equal(model.generate(z), source.generator.eval()(z).clamp(-1, 1))  # the EMA, not raw G
    fresh = zoo.build_model(card, "test")
    assert not torch.equal(model.generate(z), fresh.generate(z))  # the weights were loaded, not the init kept


def test_generate_pretrained_writes_the_entrys_images(trained, tmp_path, capsys):
    out = tmp_path / "out"
    assert generate_main(["--pretrained", NAME, "--num_images", "4", "--out_dir", str(out), "--seed", "3"]) == 0
    files = sorted(out.iterdir())
    assert len(files) == 4 and Image.open(files[0]).size == (28, 28)
    assert f"zoo entry {NAME}" in capsys.readouterr().out
    z = torch.randn(4, 100, generator=torch.Generator().manual_seed(3))
    expected = zoo.load_entry(NAME).generate(z)
    pixels = torch.from_numpy(np.array(Image.open(files[0]).convert("L"))).float()
    assert (pixels - (expected[0, 0] + 1) * 127.5).abs().max() <= 1.0
    # Exactly one of a checkpoint and an entry.
    with pytest.raises(SystemExit):
        generate_main(["--pretrained", NAME, "--ckpt_path", "x.ckpt", "--grid", str(tmp_path / "g.png")])
    assert generate_main(["--pretrained", "../escape", "--grid", str(tmp_path / "g.png")]) == 1
    assert "not a zoo entry name" in capsys.readouterr().err
    assert generate_main(["--pretrained", "nope", "--grid", str(tmp_path / "g.png")]) == 1
    assert "no zoo entry 'nope'" in capsys.readouterr().err and not (tmp_path / "g.png").exists()


def test_pretrained_list_prints_each_entry_with_its_fid_and_n(tmp_path, capsys, monkeypatch):
    for main in (generate_main, evaluate_main):
        assert main(["--pretrained", "list"]) == 0
        out = capsys.readouterr().out
        assert "(1 entry)" in out
        (line,) = [line for line in out.splitlines() if line.startswith(NAME)]
        assert line.split() == [NAME, "VanillaGAN", "SyntheticDataModule", "42", "1", "12.50", "(N=10,000)"]
    monkeypatch.setenv("GAN_MODULES_ZOO", str(tmp_path / "empty"))
    assert generate_main(["--pretrained", "list"]) == 0
    assert "has no entries yet" in capsys.readouterr().out


def test_a_card_missing_a_listed_field_is_listed_as_unreadable_not_a_crash(zoo_root, tmp_path):
    def without_fid(card):
        card["metrics"] = [{"num_samples": 10_000}]  # no "fid": an old or hand-edited card

    other = copied_entry(zoo_root, tmp_path, without_fid)
    listing = zoo.format_listing(zoo.list_entries(other), other)
    (line,) = [line for line in listing.splitlines() if line.startswith(NAME)]
    assert "unreadable card: KeyError 'fid'" in line


def test_a_stacked_mnist_entry_shows_its_modes_and_kl_in_the_list_and_its_readme(zoo_root, tmp_path):
    def with_modes(card):
        stacked = {"modes": 1000, "kl": 0.02137, "num_samples": 26_000, "classifier_sha256": "23fb8933609e" + "0" * 52}
        small = {"modes": 412, "kl": 1.5, "num_samples": 2_600, "classifier_sha256": "23fb8933609e" + "0" * 52}
        card["metrics"] = [
            zoo.card_metrics(fake_results(fid=20.0, n=2_000) | {"stacked_mnist": small}),
            zoo.card_metrics(fake_results(fid=12.34) | {"stacked_mnist": stacked}),
        ]

    other = copied_entry(zoo_root, tmp_path, with_modes)
    listing = zoo.format_listing(zoo.list_entries(other), other)
    (line,) = [line for line in listing.splitlines() if line.startswith(NAME)]
    # FID at its largest N, and the modes and KL of the evaluation with the most samples, each with its N.
    assert line.endswith("12.34 (N=10,000); 1000 modes, KL 0.021 (N=26,000)")
    readme = zoo.render_card(zoo.read_card(NAME, other))
    assert "| 26,000 | 1000 | 0.0214 | `23fb8933609e` |" in readme and "| 2,600 | 412 | 1.5000 |" in readme
    # An entry without them (every image model but Stacked MNIST's) shows neither.
    plain = zoo.read_card(NAME, zoo_root)
    assert "modes" not in zoo.format_listing(zoo.list_entries(zoo_root), zoo_root)
    assert "Stacked MNIST" not in zoo.render_card(plain) and "| 10,000 | 12.50 |" in zoo.render_card(plain)


def test_evaluate_pretrained_uses_the_cards_data_and_writes_outside_the_zoo(zoo_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["--pretrained", NAME, "--num_samples", "6", "--device", "cpu"]
    assert evaluate_main(args) == 0
    written = tmp_path / f"{NAME}_metrics_n6.json"
    results = json.loads(written.read_text())
    assert results["pretrained"] == NAME and results["checkpoint"] is None
    assert (results["reference"]["split"], results["num_fake"], results["generator"]) == ("val", 6, "generator_ema")
    assert sorted(p.name for p in (zoo_root / NAME).iterdir()) == ["README.md", "card.json", "generator.pt"]
    # Never over an existing file, never into the zoo.
    before = written.read_bytes()
    assert evaluate_main(args) == 1 and "already exists" in capsys.readouterr().err
    assert written.read_bytes() == before
    assert evaluate_main([*args, "--out", str(zoo_root / NAME / "m.json")]) == 1
    assert "inside the zoo" in capsys.readouterr().err and not (zoo_root / NAME / "m.json").exists()


def test_a_corrupted_weights_file_is_refused_with_both_hashes(zoo_root, tmp_path, monkeypatch, capsys):
    other = copied_entry(zoo_root, tmp_path)
    weights = other / NAME / "generator.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    weights.write_bytes(bytes(data))
    card = json.loads((other / NAME / "card.json").read_text())
    with pytest.raises(ValueError, match="failed its checksum") as err:
        zoo.load_entry(NAME, root=other)
    assert card["weights"]["sha256"] in str(err.value) and hashlib.sha256(data).hexdigest() in str(err.value)
    assert str(weights) in str(err.value)
    monkeypatch.setenv("GAN_MODULES_ZOO", str(other))
    assert generate_main(["--pretrained", NAME, "--grid", str(tmp_path / "g.png")]) == 1
    assert "failed its checksum" in capsys.readouterr().err and not (tmp_path / "g.png").exists()


def test_exporting_onto_an_existing_name_is_refused_and_leaves_it_untouched(trained, zoo_root):
    run, _ = trained
    before = {p.name: p.read_bytes() for p in (zoo_root / NAME).iterdir()}
    with pytest.raises(ValueError, match="already exists"):
        zoo.export_run(run, NAME, [fake_results(fid=1.0)])
    assert {p.name: p.read_bytes() for p in (zoo_root / NAME).iterdir()} == before
    assert sorted(p.name for p in zoo_root.iterdir()) == [NAME]  # no temporary folder left behind
    with pytest.raises(ValueError, match="not a zoo entry name"):
        zoo.export_run(run, "list", [])


def test_an_entry_naming_a_class_outside_the_project_is_refused_unimported(zoo_root, tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "zoo_evil_module.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass EvilGAN: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def evil(card):
        card["model"]["class_path"] = "zoo_evil_module.EvilGAN"

    other = copied_entry(zoo_root, tmp_path, evil)
    with pytest.raises(ValueError, match="zoo_evil_module.EvilGAN.*refused"):
        zoo.load_entry(NAME, root=other)
    assert not marker.exists() and "zoo_evil_module" not in sys.modules

    def not_a_gan(card):
        card["model"]["class_path"] = "gan_modules.detector.FakeDetector"
        card["data"]["class_path"] = "gan_modules.vanilla.VanillaGAN"

    other = copied_entry(zoo_root, tmp_path / "b", not_a_gan)
    with pytest.raises(ValueError, match="not a subclass of gan_modules.base.GANModule"):
        zoo.load_entry(NAME, root=other)
    with pytest.raises(ValueError, match="not a subclass of datamodules.base.ImageDataModule"):
        zoo.entry_datamodule(NAME, root=other)


def test_weights_of_other_shapes_than_the_card_builds_are_refused(zoo_root, tmp_path):
    def wider(card):
        card["model"]["init_args"]["g_hidden_dims"] = [16, 64]

    other = copied_entry(zoo_root, tmp_path, wider)
    with pytest.raises(ValueError, match=r"does not fit the VanillaGAN .*\(64, 16\) vs \(32, 16\)"):
        zoo.load_entry(NAME, root=other)


# ---------------------------------------------------------------------- the quality benchmark and the zoo


def card_for_benchmark(root, fid=4.5, **model_changes):
    """A hand-written zoo entry for dcgan_mnist.yaml seed 42 whose run folder is gone (no weights needed)."""
    config = yaml.safe_load((quality.ROOT / "configs" / "dcgan_mnist.yaml").read_text())
    config["seed_everything"] = 42
    config["model"]["init_args"].update(model_changes)
    card = {
        "format": zoo.FORMAT,
        "name": "dcgan_mnist-seed42",
        "model": {"class_path": "gan_modules.dcgan.DCGAN", "init_args": {}},
        "data": config["data"],
        "weights": {"file": "generator.pt", "sha256": "0" * 64},
        "seed": 42,
        "epochs": 48,
        "metrics": [{"num_samples": 10_000, **fake_results(fid)}],
        "training": {"seconds": 1800.0, "precision": "bf16-mixed", "config": config, "resumed_from": []},
        "machine": {"date": "2026-01-02", "cpu_flags": "Test CPU (2 cores)", "load_average_at_start": [0.5]},
        "source": {"run": "runs/quality/dcgan_mnist-s42/20260101-000000"},
    }
    (root / "dcgan_mnist-seed42").mkdir(parents=True, exist_ok=True)
    (root / "dcgan_mnist-seed42" / "card.json").write_text(json.dumps(card))


@pytest.fixture
def bench(tmp_path, monkeypatch):
    """quality.py pointed at an empty repository copy (configs only: no run folders) and a zoo of its own."""
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "configs").symlink_to(quality.ROOT / "configs")
    monkeypatch.setattr(quality, "ROOT", tmp_path / "repo")
    monkeypatch.setattr(quality, "RESULTS", tmp_path / "results")
    return tmp_path / "bench_zoo"


def test_quality_keeps_a_row_from_its_zoo_card_when_the_run_folder_is_gone(bench, tmp_path, monkeypatch):
    card_for_benchmark(bench)
    monkeypatch.setattr(quality, "train", launch)
    results = quality.run(False, str(tmp_path), "cmd", ["dcgan_mnist.yaml"], [42], False, bench)
    (row,) = results["runs"]
    assert (row["fid"], row["epochs"], row["source"], row["zoo"]) == (4.5, 48, "zoo card", "dcgan_mnist-seed42")
    text = (tmp_path / "results" / "quality.md").read_text()
    assert "| dcgan_mnist.yaml (zoo card) | 42 | 48 | bf16-mixed | 4.50 |" in text
    assert "the row comes from zoo/dcgan_mnist-seed42 (zoo card)" in text and "row written 2026-01-02" in text

    # On request the entry's generator is measured again instead.
    calls = []
    monkeypatch.setattr(quality, "evaluate", lambda *a, **k: calls.append((a, k)) or fake_results(fid=4.0))
    (row,) = quality.run(False, str(tmp_path), "cmd", ["dcgan_mnist.yaml"], [42], False, bench, True)["runs"]
    assert (row["fid"], row["source"]) == (4.0, "zoo entry, re-evaluated")
    assert calls[0][1]["pretrained"] == "dcgan_mnist-seed42" and calls[0][1]["zoo_root"] == bench
    assert calls[0][1]["num_samples"] == 10_000

    # An entry of other settings (the config changed since) does not stand for the row: it is trained.
    shutil.rmtree(bench / "dcgan_mnist-seed42")
    card_for_benchmark(bench, g_channels=16)
    with pytest.raises(Launched):
        quality.run(False, str(tmp_path), "cmd", ["dcgan_mnist.yaml"], [42], False, bench)


def test_quality_exports_a_finished_row_once(trained, bench, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    monkeypatch.setattr(quality, "train", lambda config, seed, extra, root: run)
    monkeypatch.setattr(quality, "evaluate", lambda *a, **k: fake_results(fid=7.25))
    (row,) = quality.run(False, str(tmp_path), "cmd", ["vanilla_mnist.yaml"], [42], False, bench)["runs"]
    card = zoo.read_card("vanilla_mnist-seed42", bench)
    assert card["metrics"][0]["fid"] == 7.25 and card["training"]["seconds"] == row["train_s"]
    assert card["training"]["command"] == "python train.py --config configs/vanilla_mnist.yaml --seed_everything 42"
    assert card["machine"] == row["machine"] and row["zoo"] == "vanilla_mnist-seed42"
    assert "Generator: zoo/vanilla_mnist-seed42." in (tmp_path / "results" / "quality.md").read_text()
    model = zoo.load_entry("vanilla_mnist-seed42", bench)
    z = torch.randn(3, 100)
    assert torch.equal(model.generate(z), zoo.load_entry(NAME).generate(z))  # the same run's EMA generator
    # The same row again: the entry is kept as it is (the run's own), nothing re-exported or replaced.
    before = (bench / "vanilla_mnist-seed42" / "card.json").read_bytes()
    capsys.readouterr()
    (row,) = quality.run(False, str(tmp_path), "cmd", ["vanilla_mnist.yaml"], [42], False, bench)["runs"]
    assert (bench / "vanilla_mnist-seed42" / "card.json").read_bytes() == before
    assert row["zoo"] == "vanilla_mnist-seed42" and "export" not in capsys.readouterr().out
    # Another run of the same row does not replace the entry either; it says so.
    shutil.copytree(run, tmp_path / "run2")
    monkeypatch.setattr(quality, "train", lambda config, seed, extra, root: tmp_path / "run2")
    (row,) = quality.run(False, str(tmp_path), "cmd", ["vanilla_mnist.yaml"], [42], False, bench)["runs"]
    assert "zoo" not in row and "kept, not replaced by" in capsys.readouterr().out
    assert (bench / "vanilla_mnist-seed42" / "card.json").read_bytes() == before


class Launched(Exception):
    """Raised by the stand-in for ``quality.train``: the benchmark would have trained."""


def launch(*args, **kwargs):
    raise Launched(args)


def test_every_shipped_entry_passes_its_checksum_loads_and_draws_its_images():
    """The repository's own zoo: each entry's weights match its card, load into its model and draw finite images
    of its data's shape; its card holds the command that made it and at least one evaluation."""
    from gan_modules import zoo

    entries = zoo.list_entries(zoo.ROOT / "zoo")
    assert entries, "the repository's zoo has no entries"
    for entry in entries:
        assert entry.error is None, entry.error
        model = zoo.load_entry(entry.name, root=zoo.ROOT / "zoo")
        data = entry.card["data"]["init_args"]
        images = next(model.sample_batches(4, 4, seed=0))
        assert images.ndim == 4 and len(images) == 4 and torch.isfinite(images).all(), entry.name
        assert images.abs().max() <= 1 and images.std() > 0.05, f"{entry.name} draws blank or out-of-range images"
        if entry.card["data"]["class_path"].endswith("MNISTDataModule"):  # MNIST and Stacked MNIST: 28x28
            assert images.shape[1:] == (3 if "Stacked" in entry.card["data"]["class_path"] else 1, 28, 28)
        assert data and entry.card["training"]["command"].startswith("python train.py --config configs/")
        assert zoo.best_metrics(entry.card) is not None


def test_a_conditional_entry_draws_the_asked_classes_from_the_zoo(tmp_path, capsys):
    fit(tmp_path, "dcgan_mnist_conditional.yaml", *CSV_ONLY, "--model.val_num_samples", "0", "--data.num_classes", "10")
    (run,) = run_dirs(tmp_path / "runs")
    root = tmp_path / "zoo"
    accuracy = {"accuracy": 0.9974, "per_class": {"0": 1.0, "4": 0.9929, "9": 0.999}, "num_samples": 10_000}
    results = fake_results() | {"class_accuracy": accuracy}
    zoo.export_run(run, "tiny_conditional-seed42", [results], root=root, command="python train.py")
    readme = (root / "tiny_conditional-seed42" / "README.md").read_text()
    assert "asked-for class on 99.74% (lowest class: 4 at 99.29%)" in readme
    model = zoo.load_entry("tiny_conditional-seed42", root=root)
    assert model.hparams.num_classes == 10
    source = load_gan(run / "checkpoints" / "last.ckpt").eval()
    z, labels = torch.randn(4, model.latent_dim), torch.tensor([3, 7, 3, 7])
    assert torch.equal(model.generate(z, labels), source.generate(z, labels))
    out = tmp_path / "out"
    args = ["--pretrained", "tiny_conditional-seed42", "--classes", "3,7", "--num_images", "4", "--out_dir", str(out)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GAN_MODULES_ZOO", str(root))
        assert generate_main(args) == 0
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 4 and [n.split("_class")[1] for n in names] == ["3.png", "7.png", "3.png", "7.png"]
