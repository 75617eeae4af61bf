"""The fake detector's robustness matrix (``benchmarks/detect_matrix.py``): every (trained on, tested on,
degradation) measured, earlier rows kept, goals read from the figures, and finished detectors reused only while
their settings and config are the same."""

import json
from types import SimpleNamespace

from benchmarks import quality


class Brightness:
    """A hand 'detector': probability fake = mean brightness, so every figure is known in advance."""

    thresholds = {"real": 0.5, "val": 0.45}
    hparams = SimpleNamespace(target_fpr=0.05, arch="nodown")

    def eval(self):
        return self

    def fake_probability(self, images):
        return images.float().mean(dim=(1, 2, 3)) / 255


def hand_matrix(monkeypatch, tmp_path) -> tuple[dict, list]:
    """The matrix wired to hand-made parts: dark reals, bright "vanilla" and dim "dcgan" fakes, the Brightness
    detector, results under ``tmp_path``. Returns (the fakes, which a test may change; the (config, source,
    trained_on) of every detector the matrix asked for)."""
    import torch

    from benchmarks import detect_matrix

    g = torch.Generator().manual_seed(0)
    real = torch.randint(0, 100, (30, 1, 28, 28), generator=g, dtype=torch.uint8)
    fakes = {"vanilla": torch.randint(160, 256, (30, 1, 28, 28), generator=g, dtype=torch.uint8),
             "dcgan": torch.randint(90, 140, (30, 1, 28, 28), generator=g, dtype=torch.uint8)}  # fmt: skip
    monkeypatch.setattr(quality, "RESULTS", tmp_path)
    monkeypatch.setattr(detect_matrix, "fake_source", lambda name: f"zoo:{name}-seed1")
    trained = []
    record = lambda config, source, on, quick: trained.append((config, source, on)) or tmp_path / on
    monkeypatch.setattr(detect_matrix, "train_detector", record)
    monkeypatch.setattr(detect_matrix, "test_sets", lambda names, s, n, d: (real, {k: fakes[k] for k in names}))
    monkeypatch.setattr(detect_matrix, "load_model", lambda path: Brightness())
    return fakes, trained


def test_detect_matrix_measures_every_pair_and_degradation_keeps_earlier_rows_and_reads_goals(tmp_path, monkeypatch):
    from benchmarks import detect_matrix

    fakes, trained = hand_matrix(monkeypatch, tmp_path)
    results = detect_matrix.run(["vanilla", "dcgan"], ["detect_mnist_web.yaml"], False, str(tmp_path), "cmd")
    assert trained == [
        ("detect_mnist_web.yaml", "zoo:vanilla-seed1", "vanilla"),
        ("detect_mnist_web.yaml", "zoo:dcgan-seed1", "dcgan"),
    ]
    row = results["rows"]["detect_mnist_web.yaml|vanilla"]
    assert set(row["tests"]) == {"vanilla", "dcgan"} and set(row["tests"]["dcgan"]) == set(detect_matrix.DEGRADATIONS)
    clean = row["tests"]["vanilla"]["clean"]
    assert clean["auroc"] == 1.0 and clean["fpr"] == 0.0 and clean["tpr"] == 1.0  # brightness >= 0.5 is fake
    assert row["tests"]["dcgan"]["clean"]["tpr"] < 0.5  # dim fakes fall under the real-only cut
    text = (tmp_path / "detect_matrix.md").read_text()
    assert "| detect_mnist_web | vanilla | vanilla (same) | 1.0000 |" in text and "Generators: the model zoo's" in text
    assert "- AUROC >= 0.95 after resize 0.5 on the training generator: **yes**" in text
    assert "- accuracy >= 0.9 there at the real-only threshold: **no**" in text
    assert (tmp_path / "detect_matrix.png").is_file()
    # A later piece measures one generator again: the other row stays.
    fakes["dcgan"] = fakes["vanilla"]
    again = detect_matrix.run(["dcgan"], ["detect_mnist_web.yaml"], False, str(tmp_path), "cmd")
    assert set(again["rows"]) == {"detect_mnist_web.yaml|vanilla", "detect_mnist_web.yaml|dcgan"}
    assert again["rows"]["detect_mnist_web.yaml|dcgan"]["tests"]["dcgan"]["clean"]["tpr"] == 1.0
    assert again["rows"]["detect_mnist_web.yaml|vanilla"] == json.loads(json.dumps(row))


def test_detect_matrix_reuses_a_finished_detector_only_while_its_config_settings_are_unchanged(tmp_path, monkeypatch):
    from benchmarks import detect_matrix

    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "det.yaml"
    config.write_text("model: {resize_prob: 0.5}\n")
    monkeypatch.setattr(detect_matrix, "ROOT", tmp_path)
    runs = []

    def fake_train(command, check, cwd, env):  # what train.py leaves: a run folder with best.ckpt
        best = tmp_path / "runs" / "det-on_x" / f"2026120{len(runs)}-000000" / "checkpoints" / "best.ckpt"
        best.parent.mkdir(parents=True)
        best.write_bytes(b"ckpt")
        runs.append(command)

    monkeypatch.setattr(detect_matrix.child.subprocess, "run", fake_train)
    first = detect_matrix.train_config("zoo:x", "det-on_x", (), tmp_path / "runs", "det.yaml")
    assert detect_matrix.train_config("zoo:x", "det-on_x", (), tmp_path / "runs", "det.yaml") == first
    assert len(runs) == 1  # the same arguments and parsed config: reused
    config.write_text("# a comment\nmodel:\n  resize_prob: 0.5  # the same setting, laid out anew\n")
    assert detect_matrix.train_config("zoo:x", "det-on_x", (), tmp_path / "runs", "det.yaml") == first
    assert len(runs) == 1  # comments and layout are not settings: still reused
    config.write_text("model: {resize_prob: 0.7}\n")  # the file edited under the same name: trained again
    second = detect_matrix.train_config("zoo:x", "det-on_x", (), tmp_path / "runs", "det.yaml")
    assert len(runs) == 2 and second != first and first.is_file()


def test_every_matrix_generator_is_a_shipped_zoo_entry():
    """The matrix trains no GAN: each generator is a zoo entry present in a fresh clone."""
    from benchmarks import detect_matrix
    from gan_modules import zoo

    shipped = {entry.name for entry in zoo.list_entries() if entry.card is not None}
    for name, spec in detect_matrix.GENERATORS.items():
        assert detect_matrix.fake_source(name) == f"zoo:{spec['zoo']}"
        assert spec["zoo"] in shipped, f"{name}: zoo entry {spec['zoo']} is not in zoo/"


def test_leave_one_out_trains_on_all_the_other_generators_and_judges_the_held_out_one_as_unseen(tmp_path, monkeypatch):
    import pytest

    from benchmarks import detect_matrix

    assert detect_matrix.training_plans(["a", "b", "c"], True) == [
        ("all but a", ["b", "c"]), ("all but b", ["a", "c"]), ("all but c", ["a", "b"])]  # fmt: skip
    with pytest.raises(ValueError, match="at least two generators"):
        detect_matrix.training_plans(["a"], True)
    _, trained = hand_matrix(monkeypatch, tmp_path)
    detect_matrix.run(["vanilla", "dcgan"], ["detect_mnist_web.yaml"], False, str(tmp_path), "cmd")
    results = detect_matrix.run(["vanilla", "dcgan"], ["detect_mnist_web.yaml"], False, str(tmp_path), "cmd", True)
    assert len(results["rows"]) == 4  # the one-generator rows stay beside the leave-one-out ones
    assert [(source, on) for _, source, on in trained[2:]] == [
        ("zoo:dcgan-seed1", "all but vanilla"), ("zoo:vanilla-seed1", "all but dcgan")]  # fmt: skip
    assert results["rows"]["detect_mnist_web.yaml|all but vanilla"]["seen"] == ["dcgan"]
    text = (tmp_path / "detect_matrix.md").read_text()
    assert "| detect_mnist_web | all but vanilla | dcgan (seen) |" in text
    assert "| detect_mnist_web | all but vanilla | vanilla | 1.0000 |" in text  # bright fakes: caught unseen
    # The held-out dcgan's dim fakes fall under the real-only cut: the leave-one-out accuracy goal is missed.
    assert "- clean AUROC >= 0.97 on every unseen generator (leave-one-out detectors): **yes**" in text
    loo = text.split("(leave-one-out detectors)")[1].splitlines()[1]
    assert loo.startswith("- accuracy >= 0.9 there at the real-only threshold: **no**")
