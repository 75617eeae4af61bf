"""The sampling benchmark (``benchmarks/bench_truncation.py``): FID, precision and recall against truncation psi
and with DRS / MH-GAN, its table, its stored rows, and its section of ``python -m benchmarks``."""

import json
from types import SimpleNamespace

import pytest
from helpers import fake_metrics

from benchmarks import machine, quality


def test_truncation_table_names_the_sampler_and_every_psi(tmp_path):
    from benchmarks import bench_truncation

    rows = [
        {"psi": psi, **fake_metrics(fid), "sampler": {"name": "plain", "truncation": psi}, "eval_s": 30.0}
        for psi, fid in ((0.5, 9.0), (1.0, 4.25), (None, 3.5))
    ]
    results = {"machine": machine.machine(), "model": "runs/x/checkpoints/last.ckpt", "num_samples": 10_000,
               "reference": {"split": "val"}, "sampler": "plain", "rows": rows, "seconds": 90.0}  # fmt: skip
    bench_truncation.write(results, tmp_path, "cmd")
    text = (tmp_path / "truncation.md").read_text()
    assert "Samplers: plain (no other sampler)" in text and "`runs/x/checkpoints/last.ckpt`" in text
    assert "| plain | 0.5 | 9.000 | 1.000 | 0.7000 | 0.6000 | 0.9000 | 0.8000 | - | 30 s |" in text
    assert "| plain | inf | 3.500 |" in text
    assert json.loads((tmp_path / "truncation.json").read_text())["rows"][2]["psi"] is None
    assert (tmp_path / "truncation.png").stat().st_size > 0

    drs = {"name": "drs", "truncation": None, "proposed": 40_000, "accepted": 10_000, "acceptance_rate": 0.25,
           "drs_percentile": 0.95, "drs_gamma": 1.5}  # fmt: skip
    results["rows"].append({"psi": None, **fake_metrics(3.25), "sampler": drs, "eval_s": 60.0})
    bench_truncation.write(results, tmp_path, "cmd")
    text = (tmp_path / "truncation.md").read_text()
    assert "Samplers: plain sampling at every psi, drs without truncation" in text
    assert "| drs | inf | 3.250 | 1.000 | 0.7000 | 0.6000 | 0.9000 | 0.8000 | 25.0% | 60 s |" in text
    assert "- drs, psi inf (no truncation): 10,000 of 40,000 proposals accepted (25.0%)" in text


def test_truncation_benchmark_refuses_d_driven_samplers_for_a_zoo_entry(tmp_path):
    from benchmarks import bench_truncation

    with pytest.raises(ValueError, match="zoo entry keeps only its generator"):
        bench_truncation.run(
            ckpt_path=None, pretrained="vanilla_mnist-seed42", psis=(1.0,), num_samples=100, data_dir=None,
            device="cpu", out=tmp_path, command="cmd", samplers=("drs",),
        )  # fmt: skip
    assert not list(tmp_path.iterdir())  # nothing evaluated, nothing written


def test_truncation_benchmark_takes_jbt_for_a_zoo_entry(tmp_path, monkeypatch):
    """JBT needs no D, so a zoo entry (a generator alone) gets its row."""
    from benchmarks import bench_truncation

    def evaluate(ckpt_path, *, pretrained, truncation, sampler, **kwargs):
        described = {"name": sampler, "truncation": None, **({"proposed": 10, "accepted": 9, "acceptance_rate": 0.9}
                                                             if sampler == "jbt" else {})}  # fmt: skip
        return {**fake_metrics(4.0 if sampler == "plain" else 3.5), "sampler": described,
                "reference": {"split": "val"}, "seconds": {"total": 5.0}}  # fmt: skip

    monkeypatch.setattr(bench_truncation, "evaluate", evaluate)
    results = bench_truncation.run(
        ckpt_path=None, pretrained="vanilla_mnist-seed42", psis=(float("inf"),), num_samples=100, data_dir=None,
        device="cpu", out=tmp_path, command="cmd", samplers=("jbt",),
    )  # fmt: skip
    assert [row["sampler"]["name"] for row in results["rows"]] == ["plain", "jbt"]
    text = (tmp_path / "truncation.md").read_text()
    assert "| jbt | inf | 3.500 |" in text and "90.0%" in text and "Samplers: plain sampling at every psi, jbt" in text


def test_truncation_benchmark_stores_each_row_reuses_it_and_lists_a_refused_sampler(tmp_path, monkeypatch):
    from benchmarks import bench_truncation

    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    measured = []

    def evaluate(ckpt_path, *, num_samples, truncation, sampler, **kwargs):
        measured.append((sampler, truncation))
        if sampler == "mh":
            raise ValueError("MH-GAN needs a D that scores single images")
        described = {"name": sampler, "truncation": None if truncation == float("inf") else truncation}
        return {**fake_metrics(4.0 if sampler == "plain" else 3.0), "sampler": described,
                "reference": {"split": "val"}, "seconds": {"total": 5.0}}  # fmt: skip

    monkeypatch.setattr(bench_truncation, "evaluate", evaluate)
    settings = dict(ckpt_path=str(ckpt), pretrained=None, psis=(0.7, float("inf")), num_samples=100, data_dir=None,
                    device="cpu", out=tmp_path / "out", command="cmd", samplers=("drs", "mh"))  # fmt: skip
    results = bench_truncation.run(**settings)
    assert [(r["sampler"]["name"], r["psi"]) for r in results["rows"]] == [
        ("plain", 0.7),
        ("plain", None),
        ("drs", None),
    ]
    assert results["refused"] == [{"sampler": "mh", "reason": "MH-GAN needs a D that scores single images"}]
    text = (tmp_path / "out" / "truncation.md").read_text()
    assert "- mh: MH-GAN needs a D that scores single images" in text and "| drs | inf | 3.000 |" in text
    stored = sorted(p.name for p in ckpt.parent.glob("*.json"))  # evaluate.py's own names, beside the checkpoint
    assert stored == ["last_metrics_n100.json", "last_metrics_n100_drs.json", "last_metrics_n100_psi0.7.json"]
    measured.clear()
    assert bench_truncation.run(**settings)["rows"] == results["rows"]
    assert measured == [("mh", float("inf"))]  # every stored row reused; only the refused one is tried again


def test_truncation_section_uses_the_quality_run_with_d_else_the_zoo_entry_without(tmp_path, monkeypatch):
    import inspect

    from benchmarks import bench_truncation

    calls, looked_up = [], []
    signature = inspect.signature(bench_truncation.run)
    monkeypatch.setattr(bench_truncation, "run", lambda *a, **k: calls.append(signature.bind(*a, **k).arguments))

    def existing_run(config, seed, extra, root):
        looked_up.append((config, seed, extra, root))
        return tmp_path / f"{config}-{seed}"

    monkeypatch.setattr(quality, "existing_run", existing_run)
    bench_truncation.run_for_quality_table(False, "data", "cmd")
    assert looked_up[-1] == ("dcgan_mnist.yaml", 42, quality.FULL["extra"], quality.run_root(False))
    call = calls[-1]
    assert call["ckpt_path"] == str(tmp_path / "dcgan_mnist.yaml-42" / "checkpoints" / "last.ckpt")
    assert call["pretrained"] is None and call["samplers"] == ("drs", "mh")  # the run has D: both samplers
    assert call["num_samples"] == 10_000 and call["psis"] == bench_truncation.PSIS  # the table's N: its row reused

    bench_truncation.run_for_quality_table(True, "data", "cmd")
    assert looked_up[-1] == ("vanilla_mnist.yaml", 42, quality.QUICK["extra"], quality.run_root(True))
    assert calls[-1]["num_samples"] == quality.QUICK["num_samples"] and calls[-1]["out"].name == "quick"

    monkeypatch.setattr(quality, "existing_run", lambda *args: None)  # run folders gone
    entry = SimpleNamespace(name="dcgan_mnist-seed42", card={})
    monkeypatch.setattr(bench_truncation.zoo, "list_entries", lambda: [entry])
    bench_truncation.run_for_quality_table(False, "data", "cmd")
    assert calls[-1]["pretrained"] == "dcgan_mnist-seed42" and calls[-1]["ckpt_path"] is None
    assert "samplers" not in calls[-1]  # psi rows only: a zoo entry has no D
    with pytest.raises(SystemExit, match="run the quality section first"):
        bench_truncation.run_for_quality_table(True, "data", "cmd")  # quick never reads the zoo
    monkeypatch.setattr(bench_truncation.zoo, "list_entries", lambda: [])
    with pytest.raises(SystemExit, match="run the quality section first"):
        bench_truncation.run_for_quality_table(False, "data", "cmd")
