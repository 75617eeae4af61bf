"""The benchmark command's plumbing: results files name the machine and hold what was measured."""

import json
from pathlib import Path

import pytest
from helpers import fake_metrics

from benchmarks import machine, quality


def test_quality_table_states_floor_runs_goals_and_machine(tmp_path):
    m = machine.machine()
    runs = [
        {"config": "dcgan_mnist.yaml", "seed": s, "epochs": 24, "train_precision": "bf16-mixed", **fake_metrics(f)}
        | {"train_s": 1500.0, "eval_s": 480.0}
        for s, f in ((42, 2.5), (43, 3.5))
    ]
    results = {"machine": m, "num_samples": 10_000, "quick": False, "runs": runs}
    results["floor"] = {**fake_metrics(1.64), "eval_s": 500.0}
    quality.write(results, tmp_path, "python -m benchmarks")
    text = (tmp_path / "quality.md").read_text()
    assert m["cpu"] in text and m["torch"] in text and m["date"] in text
    assert "| MNIST train vs test (floor) | - | - | - | 1.64 |" in text
    assert "| dcgan_mnist.yaml | 42 | 24 | bf16-mixed | 2.50 |" in text
    # Mean ± half the range over the two seeds, and the goal is missed because one seed is above 3.0.
    assert "| dcgan_mnist.yaml | 3.00 ± 0.50 (2 seeds) | <= 3.0 | no |" in text
    quality.write({**results, "runs": runs[:1]}, tmp_path / "one", "python -m benchmarks")
    assert "| dcgan_mnist.yaml | 2.50 ± 0.00 (1 seed) | <= 3.0 | yes |" in (tmp_path / "one" / "quality.md").read_text()
    assert (tmp_path / "quality.json").is_file()
    assert "| 0.600 | 0.900 | 0.800 | - | 25.0 min | 8.0 min |" in text  # unconditional: no class accuracy

    # The conditional goal compares means: one seed above the unconditional mean (3.4) does not fail it.
    conditional = [
        {**runs[0], "config": "dcgan_mnist_conditional.yaml", "seed": s, "fid": f, "class_accuracy": {"accuracy": a}}
        for s, f, a in ((42, 2.5, 0.9922), (43, 3.4, 0.9871))
    ]
    quality.write({**results, "runs": [*runs, *conditional]}, tmp_path, "python -m benchmarks")
    text = (tmp_path / "quality.md").read_text()
    assert "| dcgan_mnist_conditional.yaml | 42 | 24 | bf16-mixed | 2.50 |" in text
    assert "| 0.800 | 99.22% | 25.0 min | 8.0 min |" in text and "| 98.71% |" in text
    assert (
        "Class accuracy of dcgan_mnist_conditional.yaml (goal >= 99% in every seed): 99.22%, 98.71% (2 seeds): **no**."
        in text
    )
    assert (
        "| dcgan_mnist_conditional.yaml | 2.95 ± 0.45 (2 seeds) | mean <= dcgan_mnist.yaml's mean (3.00) | yes |"
        in text
    )
    worse = [{**r, "fid": r["fid"] + 0.1} for r in conditional]
    quality.write({**results, "runs": [*runs, *worse]}, tmp_path, "python -m benchmarks")
    assert (
        "| 3.05 ± 0.45 (2 seeds) | mean <= dcgan_mnist.yaml's mean (3.00) | no |"
        in (tmp_path / "quality.md").read_text()
    )
    quality.write({**results, "runs": conditional}, tmp_path, "python -m benchmarks")
    assert "| mean <= dcgan_mnist.yaml's mean (not measured) | - |" in (tmp_path / "quality.md").read_text()
    quality.write({**results, "runs": conditional[:1]}, tmp_path, "python -m benchmarks")
    assert "(goal >= 99% in every seed): 99.22% (1 seed): **yes**." in (tmp_path / "quality.md").read_text()


def test_headers_state_the_host_speed_probe_and_older_results_still_render(tmp_path):
    """Every header carries the probe's three figures; rows stored before the probe existed render without it."""
    m = machine.machine()
    probe = m["speed_probe"]
    assert set(probe) == {"matmul_gflops", "conv_step_ms", "copy_gb_per_s"}
    assert all(0 < value < float("inf") for value in probe.values())
    line = " ".join(machine.header("t", m, "cmd"))
    assert f"fp32 matmul {probe['matmul_gflops']} GFLOP/s" in line and f"{probe['conv_step_ms']} ms" in line
    older = {key: value for key, value in m.items() if key != "speed_probe"}
    assert "Host speed" not in " ".join(machine.header("t", older, "cmd"))
    runs = [
        {"config": "vanilla_mnist.yaml", "seed": s, "epochs": 30, "train_precision": "32-true", **fake_metrics(14.0)}
        | {"train_s": 400.0, "eval_s": 700.0, "machine": mach, "run": f"runs/x{s}"}
        for s, mach in ((42, older), (43, m))
    ]
    quality.write({"machine": m, "num_samples": 10_000, "quick": False, "runs": runs}, tmp_path, "cmd")
    text = (tmp_path / "quality.md").read_text()
    assert f"load average then {older['load_average_at_start'][0]}. Run: runs/x42." in text
    assert f"host speed fp32 matmul {probe['matmul_gflops']} GFLOP/s" in text


@pytest.mark.parametrize(("extra", "epochs"), [([], 48), (["--trainer.max_epochs", "1"], 1)])
def test_quality_reuses_only_a_finished_run(tmp_path, monkeypatch, extra, epochs):
    import torch

    parent = tmp_path / "dcgan_mnist-s42"
    run = parent / "20260101-000000"
    (run / "checkpoints").mkdir(parents=True)
    saved_config(run, 42, extra)
    torch.save({"epoch": epochs - 1}, run / "checkpoints" / "last.ckpt")
    launched = []
    monkeypatch.setattr(quality.child.subprocess, "run", lambda *a, **k: launched.append(a))
    assert quality.train("dcgan_mnist.yaml", 42, extra, tmp_path) == run
    assert not launched
    torch.save({"epoch": epochs - 2}, run / "checkpoints" / "last.ckpt")  # an interrupted run: trained again
    with pytest.raises(RuntimeError, match="holds no run"):
        quality.train("dcgan_mnist.yaml", 42, extra, tmp_path)
    assert len(launched) == 1


def saved_config(run: Path, seed: int, extra: list[str], **model_changes) -> None:
    """A config.yaml as train.py saves it for dcgan_mnist.yaml: every setting resolved, defaults filled in."""
    import yaml

    config = yaml.safe_load((quality.ROOT / "configs" / "dcgan_mnist.yaml").read_text())
    config["seed_everything"] = seed
    config["trainer"].update(precision="bf16-mixed", default_root_dir=str(run.parent.parent), enable_progress_bar=False)
    config["model"]["init_args"].update(d_norm="batch", **model_changes)
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        section, key = flag.removeprefix("--").split(".", 1)
        target = config[section]["init_args"] if section in ("model", "data") else config.setdefault(section, {})
        target[key] = yaml.safe_load(value)
    (run / "config.yaml").write_text(yaml.safe_dump(config))


def test_quality_does_not_reuse_a_run_of_other_settings(tmp_path, monkeypatch, capsys):
    """A finished run trained before the config changed (or with other overrides) is left alone, not reused."""
    import torch

    parent = tmp_path / "dcgan_mnist-s42"
    run = parent / "20260101-000000"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"epoch": 47}, run / "checkpoints" / "last.ckpt")
    monkeypatch.setattr(quality.child.subprocess, "run", launch)
    for seed, extra, changes in [
        (42, [], {"g_channels": 16}),  # the config's width changed since
        (42, [], {"tricks": []}),  # a trick removed
        (43, [], {}),  # another seed's run in this folder
        (42, ["--model.val_num_samples", "1000"], {}),  # an override the run did not have
    ]:
        saved_config(run, seed, [], **changes)
        with pytest.raises(Launched):
            quality.train("dcgan_mnist.yaml", 42, extra, tmp_path)
        assert "not reusing" in capsys.readouterr().out
    saved_config(run, 42, ["--model.val_num_samples", "1000"])  # the same override, the CLI's short form
    assert quality.train("dcgan_mnist.yaml", 42, ["--model.val_num_samples", "1000"], tmp_path) == run
    assert (run / "checkpoints" / "last.ckpt").is_file()


class Launched(Exception):
    """Raised by the stand-in for ``subprocess.run``: the benchmark started a training run."""


def launch(*args, **kwargs):
    raise Launched(args)


def test_quality_reuse_follows_the_ablations_list_overrides(tmp_path, monkeypatch):
    """bench_ablation's rows replace the trick list (``--model.tricks []``) or append to it (``tricks+``)."""
    import torch

    from benchmarks.bench_ablation import trick

    r1 = {"class_path": "gan_modules.tricks.R1", "init_args": {"gamma": 0.1, "every": 16}}
    sn = {"class_path": "gan_modules.tricks.SpectralNorm", "init_args": {"power_iterations": 1}}
    run = tmp_path / "dcgan_mnist-s42" / "20260101-000000"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"epoch": 0}, run / "checkpoints" / "last.ckpt")
    monkeypatch.setattr(quality.child.subprocess, "run", launch)
    common = ["--trainer.max_epochs", "1", "--checkpoint.every_n_epochs", "1000000"]
    cases = [  # (the run's saved tricks, the row's overrides, reused)
        ([], ["--model.tricks", "[]"], True),
        ([r1], ["--model.tricks", "[]"], False),
        ([r1, sn], trick("SpectralNorm"), True),  # defaults filled in by the CLI do not matter
        ([r1], trick("SpectralNorm"), False),
        ([sn], trick("SpectralNorm"), False),  # appended to the config's R1, not in place of it
    ]
    for saved_tricks, extra, reused in cases:
        saved_config(run, 42, common, tricks=saved_tricks)
        if reused:
            assert quality.train("dcgan_mnist.yaml", 42, [*common, *extra], tmp_path) == run, extra
        else:
            with pytest.raises(Launched):
                quality.train("dcgan_mnist.yaml", 42, [*common, *extra], tmp_path)


def test_quality_keeps_rows_measured_earlier_and_replaces_rerun_ones(tmp_path, monkeypatch):
    """A run of one (config, seed) keeps the other stored rows (their run folders may be gone)."""
    earlier = {**machine.machine(), "date": "2026-01-01 00:00"}
    stored = {
        "machine": earlier,
        "num_samples": 10_000,
        "quick": False,
        "runs": [
            {"config": c, "seed": 42, "epochs": 24, "train_precision": "32-true", **fake_metrics(f)}
            | {"train_s": 600.0, "eval_s": 700.0}
            for c, f in (("dcgan_mnist.yaml", 8.0), ("vanilla_mnist.yaml", 14.0))
        ],
        "floor": {**fake_metrics(1.64), "eval_s": 500.0},
    }
    (tmp_path / "quality.json").write_text(json.dumps(stored))
    monkeypatch.setattr(quality, "RESULTS", tmp_path)
    monkeypatch.setattr(quality, "train", lambda config, seed, extra, root: tmp_path / f"{config}-{seed}")
    new = {"epochs": 30, "train_precision": "32-true", "train_s": 600.0, "eval_s": 700.0, "run": "x"}
    monkeypatch.setattr(quality, "evaluate_run", lambda folder, n, d: {**fake_metrics(12.0), **new})
    results = quality.run(False, str(tmp_path), "cmd", ["vanilla_mnist.yaml"], [42, 43], with_floor=False)
    rows = {(r["config"], r["seed"]): r["fid"] for r in results["runs"]}
    assert rows == {("dcgan_mnist.yaml", 42): 8.0, ("vanilla_mnist.yaml", 42): 12.0, ("vanilla_mnist.yaml", 43): 12.0}
    assert results["floor"]["fid"] == 1.64
    text = (tmp_path / "quality.md").read_text()
    assert "| MNIST train vs test (floor) | - | - | - | 1.64 |" in text
    assert "- dcgan_mnist.yaml seed 42: row written 2026-01-01 00:00 on" in text
    assert "| vanilla_mnist.yaml | 12.00 ± 0.00 (2 seeds) | <= 15.0 | yes |" in text


def test_detect_table_states_curve_goals_and_robustness(tmp_path):
    from benchmarks import bench_detect

    def m(auroc):
        return {"auroc": auroc, "ap": auroc, "acc": 0.9, "acc_0.5": 0.8, "threshold": 0.4}

    clean_only = {"clean": m(0.97)}
    degraded = {d: m(a) for d, a in zip(bench_detect.DEGRADATIONS, (0.995, 0.99, 0.85, 0.9))}
    results = {
        "machine": machine.machine(),
        "quick": False,
        "num_test": 5000,
        "seconds": 600.0,
        "runs": {"dcgan": "runs/quality/dcgan_mnist-s43/x", "vanilla": "runs/quality/vanilla_mnist-s43/y"},
        "curve": {"dcgan": [{"epoch": 5, "checkpoint": "epoch_0004.ckpt", **m(0.9), "detector_auroc": 0.999}]},
        "detectors": {
            "dcgan": {
                "checkpoint": "runs/detect/on_dcgan/z/checkpoints/best.ckpt",
                "threshold": 0.4,
                "rows": {"dcgan last (same generator)": degraded, "vanilla last (other generator)": clean_only},
            }
        },
        "d_robust": {"dcgan": degraded},
    }
    bench_detect.write(results, tmp_path, "python -m benchmarks.bench_detect")
    text = (tmp_path / "detect.md").read_text()
    assert "| dcgan | 5 | 0.9000 | 0.9000 | 0.800 | 0.9990 |" in text
    assert "| dcgan | dcgan last (same generator) | 0.9950 | 0.9950 | 0.900 | 0.800 | 0.400 | >= 0.99: yes |" in text
    assert "| dcgan | vanilla last (other generator) | 0.9700 | 0.9700 | 0.900 | 0.800 | 0.400 | >= 0.95: yes |" in text
    assert "| detector on dcgan | dcgan last (same generator) | 0.9950 | 0.9900 | 0.8500 | 0.9000 |" in text
    assert machine.machine()["cpu"] in text
    assert (tmp_path / "detect_auroc.png").is_file() and (tmp_path / "detect.json").is_file()


def test_quality_training_time_sums_the_runs_a_resumed_run_continued(tmp_path, monkeypatch):
    """A 48-epoch run resumed (--ckpt_path) from a finished 24-epoch run reports both parts' training time."""
    import os

    import yaml

    monkeypatch.setattr(quality, "ROOT", tmp_path)

    def make_run(name: str, start: float, end: float, ckpt_path: str | None) -> Path:
        run = tmp_path / "runs" / "dcgan_mnist-s42" / name
        (run / "checkpoints").mkdir(parents=True)
        (run / "config.yaml").write_text(yaml.safe_dump({"ckpt_path": ckpt_path}))
        (run / "checkpoints" / "last.ckpt").write_bytes(b"")
        os.utime(run / "config.yaml", (start, start))
        os.utime(run / "checkpoints" / "last.ckpt", (end, end))
        return run

    first = make_run("20260101-000000", 1000.0, 2100.0, None)
    second = make_run("20260101-010000", 5000.0, 6000.0, "runs/dcgan_mnist-s42/20260101-000000/checkpoints/last.ckpt")
    chain = quality.training_chain(second)
    assert [run for run, _ in chain] == [second, first]
    assert [seconds for _, seconds in chain] == [1000.0, 1100.0]
    assert quality.training_chain(first) == [(first, 1100.0)]
    # A checkpoint from outside any run folder (no config.yaml beside it) ends the chain.
    (second / "config.yaml").write_text(yaml.safe_dump({"ckpt_path": "elsewhere/model.ckpt"}))
    assert [run for run, _ in quality.training_chain(second)] == [second]


def test_quality_takes_the_run_it_just_trained_without_rechecking(tmp_path, monkeypatch):
    """The check decides what to reuse; a run train.py has just made is the config's by construction, so an
    override form the check does not model cannot fail the benchmark after a whole training run."""
    import torch

    def train_py(*args, **kwargs):
        run = tmp_path / "dcgan_mnist-s42" / "20260101-000000"
        (run / "checkpoints").mkdir(parents=True)
        saved_config(run, 42, [], g_channels=16)  # as if the check misread an override
        torch.save({"epoch": 47}, run / "checkpoints" / "last.ckpt")

    monkeypatch.setattr(quality.child.subprocess, "run", train_py)
    run = quality.train("dcgan_mnist.yaml", 42, [], tmp_path)
    assert run == tmp_path / "dcgan_mnist-s42" / "20260101-000000"


def test_a_terminated_benchmark_stops_its_training_child(tmp_path):
    """``kill <benchmark>`` used to end the benchmark alone: its train.py went on training, unseen, beside the
    next job. The child here records its pid and sleeps; after SIGTERM to the parent, both are gone."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    parent = f"from benchmarks import child; child.run_child([{sys.executable!r}, '-c', {child!r}])"
    bench = subprocess.Popen([sys.executable, "-c", parent], cwd=quality.ROOT)
    child_pid = None
    try:
        deadline = time.monotonic() + 120
        while not (pid_file.is_file() and pid_file.read_text()) and bench.poll() is None:
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.1)
        child_pid = int(pid_file.read_text())
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=30) == 128 + signal.SIGTERM
        with pytest.raises(ProcessLookupError):  # killed and reaped by the benchmark, not left running
            os.kill(child_pid, 0)
    finally:
        bench.kill()
        if child_pid is not None:  # a failing run leaves no sleeper behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(child_pid, signal.SIGKILL)


def stacked_row(row, seed, modes, kl, train_s=3000.0):
    from benchmarks import stacked_mnist

    config, args, label = stacked_mnist.ROWS[row]
    stats = {"modes": modes, "kl": kl, "num_samples": 26_000}
    return {"row": row, "label": label, "args": args, "config": config, "seed": seed, "epochs": 4,
            **fake_metrics(20.0), "stacked_mnist": stats, "train_s": train_s, "eval_s": 300.0}  # fmt: skip


def test_stacked_mnist_table_states_modes_published_rows_and_the_goal(tmp_path):
    from benchmarks import stacked_mnist

    m = machine.machine()
    runs = [stacked_row("dcgan", 42, 640, 1.2345), stacked_row("r3gan", 42, 1000, 0.0211)]
    stacked_mnist.write({"machine": m, "num_samples": 10_000, "quick": False, "runs": runs}, tmp_path, "cmd")
    text = (tmp_path / "stacked_mnist.md").read_text()
    assert "| R3GAN-style (RpGAN + R1 + R2) | stacked_mnist_r3gan.yaml | 42 | 4 | 1000 | 0.0211 | 20.00 |" in text
    assert "| DCGAN (dcgan_mnist.yaml's tuned settings) | stacked_mnist_dcgan.yaml | 42 | 4 | 640 | 1.2345 |" in text
    assert "| PacDCGAN2 | 1000 | 0.06 | PacGAN (Lin et al. 2018), Table 2 |" in text
    assert "**so far (1 of 2 seeds measured, each meets it)**" in text
    # A second seed that misses the KL, or one that took more than the hour, fails the goal.
    for late in (stacked_row("r3gan", 43, 1000, 0.05), stacked_row("r3gan", 43, 1000, 0.02, train_s=3700.0)):
        assert stacked_mnist.goal_met([*runs, late]) == "no (2 of 2 seeds measured)"
    assert stacked_mnist.goal_met([*runs, stacked_row("r3gan", 43, 1000, 0.02)]) == "yes (2 seeds)"
    assert stacked_mnist.goal_met(runs[:1]) == "not measured"


def test_stacked_mnist_rows_train_their_own_change_in_their_own_folder_and_keep_earlier_rows(tmp_path, monkeypatch):
    from benchmarks import stacked_mnist

    stored = {"machine": machine.machine(), "num_samples": 10_000, "quick": False,
              "runs": [stacked_row("dcgan", 42, 500, 2.0), stacked_row("r3gan", 42, 990, 0.1)]}  # fmt: skip
    (tmp_path / "stacked_mnist.json").write_text(json.dumps(stored))
    monkeypatch.setattr(quality, "RESULTS", tmp_path)
    trained = []

    def train(config, seed, extra, root):
        trained.append((config, seed, extra, root))
        return tmp_path / "run"

    monkeypatch.setattr(quality, "train", train)
    stats = {"modes": 1000, "kl": 0.02, "num_samples": 26_000}
    new = {"epochs": 4, "train_precision": "bf16-mixed", "train_s": 3500.0, "eval_s": 300.0, "run": "x"}
    monkeypatch.setattr(quality, "evaluate_run", lambda f, n, d: {**fake_metrics(9.0), "stacked_mnist": stats, **new})
    results = stacked_mnist.run(False, str(tmp_path), "cmd", ["dcgan-pacgan2", "r3gan"], [42])
    config, seed, extra, root = trained[0]
    assert (config, seed, extra) == ("stacked_mnist_dcgan.yaml", 42, stacked_mnist.PACGAN2)
    assert root.name == "dcgan-pacgan2" and trained[1][3] == root.parent  # plain rows share runs/stacked_mnist
    assert [(r["row"], r["stacked_mnist"]["modes"]) for r in results["runs"]] == [
        ("dcgan", 500), ("dcgan-pacgan2", 1000), ("r3gan", 1000)  # the stored r3gan row was measured again
    ]  # fmt: skip
    assert stacked_mnist.zoo_name("dcgan-pacgan2", 42) == "stacked_mnist_dcgan-pacgan2-seed42"
    assert stacked_mnist.zoo_name("r3gan", 43) == "stacked_mnist_r3gan-seed43"
    assert json.loads((tmp_path / "stacked_mnist.json").read_text())["runs"] == results["runs"]


def test_mixture_sampling_benchmark_trains_the_recipe_of_the_config_it_names():
    """bench_sampling restates configs/toy_mixture_components.yaml in Python (it trains without the CLI, in
    seconds); an edit to either side must be made to both, or the table describes a recipe nobody ran."""
    import yaml

    from benchmarks import bench_sampling, bench_tricks

    cfg = yaml.safe_load((quality.ROOT / "configs" / "toy_mixture_components.yaml").read_text())
    model, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    assert bench_sampling.COMPONENTS == model["latent_components"]
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in bench_sampling.MODEL_ARGS.items()} == {
        k: model[k] for k in bench_sampling.MODEL_ARGS
    }
    assert bench_sampling.BATCH_SIZE == data["batch_size"]
    assert bench_sampling.STEPS == cfg["trainer"]["max_epochs"] * data["num_samples"] // data["batch_size"]
    recipe = bench_tricks.CONFIGS[bench_sampling.CONFIG]()
    assert {k: recipe[k] for k in ("lr", "lr_decay", "lr_decay_start")} == {
        k: model[k] for k in ("lr", "lr_decay", "lr_decay_start")
    }
    (r1,) = recipe["tricks"]
    (trick,) = model["tricks"]
    assert trick["class_path"].endswith("." + type(r1).__name__)
    assert (r1.gamma, r1.every) == (trick["init_args"]["gamma"], trick["init_args"]["every"])


def test_mixture_sampling_benchmark_scores_every_sampler_on_the_same_generator(tmp_path):
    from benchmarks import bench_sampling

    results = bench_sampling.run(
        ["ring"], seeds=1, steps=100, out=tmp_path, command="cmd", batch_size=100, components=4
    )
    assert [r["latent"] for r in results["runs"][:: len(bench_sampling.SAMPLERS)]] == ["one Gaussian", "4 components"]
    rows = {r["sampler"]: r for r in results["runs"] if r["latent"] == "one Gaussian"}
    assert list(rows) == list(bench_sampling.SAMPLERS)
    assert len({r["train_cpu_s"] for r in rows.values()}) == 1  # one trained generator per (mixture, latent, seed)
    assert rows["plain"]["described"]["name"] == "plain" and "acceptance_rate" not in rows["plain"]["described"]
    for name in ("DRS", "MH-GAN, k 20"):
        assert 0 < rows[name]["described"]["acceptance_rate"] <= 1
        assert rows[name]["described"]["calibration"]["split"] == "val"
    text = (tmp_path / "sampling_mixtures.md").read_text()
    assert "| ring | one Gaussian | plain | " in text and "| ring | 4 components | MH-GAN, k 100 | " in text
    assert (tmp_path / "sampling" / "ring_DRS.png").is_file()
    assert (tmp_path / "sampling" / "ring_4_components_DRS.png").is_file()
    # The goal needs every mode and >= 95% HQ in the worst seed, and under a CPU-minute a run.
    row = {"modes": 8.0, "num_modes": 8.0, "high_quality": 0.96, "cpu_s": 30.0, "described": {"name": "plain"}}
    assert bench_sampling.meets_goal(bench_sampling.summary([row, {**row, "high_quality": 0.97}]))
    assert not bench_sampling.meets_goal(bench_sampling.summary([row, {**row, "high_quality": 0.94}]))
    assert not bench_sampling.meets_goal(bench_sampling.summary([row, {**row, "modes": 7.0}]))
    assert not bench_sampling.meets_goal(bench_sampling.summary([{**row, "cpu_s": 61.0}]))
    # A seed where DRS refused (it kept under 1% of its proposals) is a miss, and the table says so.
    refused = {"mixture": "ring", "latent": "one Gaussian", "sampler": "DRS", "seed": 1, "refused": "DRS kept 3"}
    s = bench_sampling.summary([row, refused])
    assert (s["seeds"], s["refused"]) == (1, 1) and not bench_sampling.meets_goal(s)
    results["runs"].append(refused)
    bench_sampling.write(results, tmp_path, "cmd")
    assert "(refused in 1 of 2 seeds)" in (tmp_path / "sampling_mixtures.md").read_text()


def test_the_full_stacked_table_runs_the_main_rows_and_the_gamma_variant_only_when_named():
    import json

    from benchmarks import stacked_mnist

    assert stacked_mnist.FULL["rows"] == ["dcgan", "dcgan-pacgan2", "r3gan"]
    assert "r3gan-gamma4" in stacked_mnist.ROWS and stacked_mnist.GOAL["row"] == "r3gan"
    flag, tricks = stacked_mnist.ROWS["r3gan-gamma4"][1]
    assert flag == "--model.tricks" and [t["class_path"].rsplit(".", 1)[1] for t in json.loads(tricks)] == ["R1", "R2"]
    assert all((t["init_args"]["gamma"], t["init_args"]["gamma_end"]) == (4.0, 0.4) for t in json.loads(tricks))
    assert stacked_mnist.zoo_name("r3gan-gamma4", 42) == "stacked_mnist_r3gan-gamma4-seed42"
