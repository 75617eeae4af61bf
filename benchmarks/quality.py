"""The MNIST quality table: train the shipped configs with plain ``train.py``, evaluate with ``evaluate.py``.

For each config and seed: ``python train.py --config configs/<config> --seed_everything <seed>`` (nothing
else changed), then the evaluation of its ``last.ckpt`` (the final EMA generator, no selection on the test
set) on ``N`` fixed-seed samples against the first ``N`` MNIST test images with exact fp32 TF-Inception:
FID, KID, precision/recall and density/coverage. The first row is the floor: the first ``N`` *training*
images against the same test images, the best any generator can score at that ``N``.

Runs are kept under ``runs/quality/<config>-s<seed>/<stamp>/`` and reused: a finished run (its
``last.ckpt`` at the config's last epoch, its ``config.yaml`` holding every setting of the config file) is not
trained again and a stored evaluation is not recomputed, so an interrupted benchmark resumes where it stopped;
a run of an older version of the config is left where it is and not reused. Training time is the run's own
(``config.yaml`` written at the start of fit to the last ``last.ckpt``), plus that of the runs it resumed from
when it was started with ``--ckpt_path`` (a longer config continuing a finished shorter run).

    python -m benchmarks.quality                       # full: 2 seeds x 2 configs, N = 10,000
    python -m benchmarks.quality --quick               # minutes: 1 short vanilla run, N = 500
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import header, machine, probe_text  # noqa: E402
from benchmarks.tables import spread, write_json, write_markdown  # noqa: E402
from datamodules import MNISTDataModule  # noqa: E402
from gan_modules import metrics as gan_metrics  # noqa: E402
from gan_modules.commands.evaluate import evaluate  # noqa: E402
from gan_modules.metrics import GANMetrics  # noqa: E402
from gan_modules.metrics.reference import reference_features  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GOALS = {"dcgan_mnist.yaml": 3.0, "vanilla_mnist.yaml": 15.0}  # FID at N = 10,000 (the goals)
FULL = {"configs": ["dcgan_mnist.yaml", "vanilla_mnist.yaml"], "seeds": [42, 43], "num_samples": 10_000, "extra": []}
QUICK = {
    "configs": ["vanilla_mnist.yaml"],
    "seeds": [42],
    "num_samples": 500,
    "extra": ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "150", "--model.val_num_samples", "0"],
}


def floor(num_samples: int, data_dir: str) -> dict:
    """MNIST train[:N] vs test[:N]: the FID of real images against real images."""
    start = time.perf_counter()
    datamodule = MNISTDataModule(data_dir=data_dir)
    datamodule.prepare_data()
    datamodule.setup("fit")
    network = gan_metrics.feature_network()
    name = f"{type(datamodule).__module__}.{type(datamodule).__qualname__}"
    split, test = datamodule.reference_split()
    common = dict(dataset_name=name, num_samples=num_samples, network_checksum=network.checksum)
    real, _, _ = reference_features(network, test, split=split, **common)
    train, _, _ = reference_features(network, datamodule.train_dataset, split="train", **common)
    metrics = GANMetrics(network=None, num_features=real.shape[1])
    metrics.update_features(real, real=True)
    metrics.update_features(train, real=False)
    return {**metrics.compute(), "num_fake": len(train), "num_real": len(real), "eval_s": time.perf_counter() - start}


def leaves(tree: object, prefix: str = "") -> dict[str, object]:
    """A YAML tree as ``{"model.init_args.lr": 0.0002, "model.init_args.tricks[len]": 1, ...}``."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in leaves(value, f"{prefix}{key}.").items()}
    if isinstance(tree, list):
        out: dict[str, object] = {f"{prefix.rstrip('.')}[len]": len(tree)}
        for i, value in enumerate(tree):
            out.update(leaves(value, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): tree}


def same_value(a: object, b: object) -> bool:
    """Equal, or the same number spelled differently (YAML reads ``1e-3`` as a string, ``1.0e-3`` as a float)."""
    if a == b:
        return True
    try:
        return float(a) == float(b)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def expected_settings(config: dict, seed: int, extra: list[str]) -> dict[str, object] | None:
    """What a run of ``config`` with ``--seed_everything seed`` and the ``extra`` overrides must have saved, as
    ``leaves``; ``None`` when an override has a form this does not follow (the run is then reused unchecked).

    Overrides are applied as the CLI applies them: ``--model.lr`` is the short form of ``model.init_args.lr``,
    a value replaces the whole subtree (``--model.tricks []`` drops the config's tricks) and ``--key+`` appends
    to a list (``--model.tricks+ '{"class_path": ...}'``).
    """
    tree = copy.deepcopy(config)
    tree["seed_everything"] = seed
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        path = flag.removeprefix("--")
        keys = path.removesuffix("+").split(".")
        if keys[0] in ("model", "data") and len(keys) > 1 and keys[1] not in ("init_args", "class_path"):
            keys.insert(1, "init_args")
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                return None
        parsed = yaml.safe_load(value)
        if path.endswith("+"):
            node[keys[-1]] = [*(node.get(keys[-1]) or []), *(parsed if isinstance(parsed, list) else [parsed])]
        else:
            node[keys[-1]] = parsed
    return leaves(tree)


def config_differences(run: Path, expected: dict[str, object]) -> list[str]:
    """Settings of the config (and overrides) that ``run``'s saved ``config.yaml`` does not have."""
    saved_path = run / "config.yaml"
    if not saved_path.is_file():
        return ["no config.yaml"]
    saved = leaves(yaml.safe_load(saved_path.read_text()))
    return [
        f"{key}: run has {saved.get(key, '(unset)')!r}, config has {value!r}"
        for key, value in expected.items()
        if not same_value(saved.get(key), value)
    ]


def finished_run(parent: Path, max_epochs: int, expected: dict[str, object] | None = None) -> Path | None:
    """The newest run under ``parent`` whose last.ckpt reached the config's last epoch and, given ``expected``
    (``expected_settings``), was trained with those settings: a run of an older version of the config is not
    reused for its table row (it is left where it is, and a new run is trained beside it)."""
    for run in sorted(parent.glob("*/"), reverse=True):
        ckpt = run / "checkpoints" / "last.ckpt"
        if not ckpt.is_file() or torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"] + 1 < max_epochs:
            continue
        differences = config_differences(run, expected) if expected is not None else []
        if differences:
            print(f"not reusing {run}: trained with other settings ({'; '.join(differences)})", flush=True)
            continue
        return run
    return None


def train(config: str, seed: int, extra: list[str], root: Path) -> Path:
    """Trains one (config, seed) with train.py unless a finished run exists; returns the run folder."""
    cfg = yaml.safe_load((ROOT / "configs" / config).read_text())
    max_epochs = int(cfg["trainer"]["max_epochs"])
    if "--trainer.max_epochs" in extra:
        max_epochs = int(extra[extra.index("--trainer.max_epochs") + 1])
    parent = root / f"{Path(config).stem}-s{seed}"
    expected = expected_settings(cfg, seed, extra)
    run = finished_run(parent, max_epochs, expected) if parent.is_dir() else None
    if run is not None:
        print(f"reusing {run}", flush=True)
        return run
    command = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / config)]
    command += ["--seed_everything", str(seed), "--run_name", parent.name, "--trainer.default_root_dir", str(root)]
    command += ["--trainer.enable_progress_bar", "false", *extra]
    print("$", " ".join(command), flush=True)
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"), "WANDB_SILENT": "true"}
    subprocess.run(command, check=True, cwd=ROOT, env=env)
    run = finished_run(parent, max_epochs)  # the run just trained: the newest (not re-checked, it is the config's)
    if run is None:
        raise RuntimeError(f"train.py finished but {parent} holds no run at epoch {max_epochs}")
    return run


def shown(path: Path) -> str:
    """A run folder as the results name it: relative to the repository when it lies inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def training_chain(run: Path, config: dict | None = None) -> list[tuple[Path, float]]:
    """``run`` and the runs it resumed from (``--ckpt_path`` into another run folder), newest first, each with
    its own training time (``config.yaml`` written at the start of fit to its last ``last.ckpt``). ``config`` is
    ``run``'s already-read ``config.yaml``, if the caller has it."""
    chain: list[tuple[Path, float]] = []
    while run is not None and run not in (part for part, _ in chain):
        chain.append((run, (run / "checkpoints" / "last.ckpt").stat().st_mtime - (run / "config.yaml").stat().st_mtime))
        if config is None:
            config = yaml.safe_load((run / "config.yaml").read_text())
        resumed, config = config.get("ckpt_path"), None
        parent = (ROOT / resumed).resolve().parents[1] if resumed else None
        run = parent if parent is not None and (parent / "config.yaml").is_file() else None
    return chain


def evaluate_run(run: Path, num_samples: int, data_dir: str) -> dict:
    ckpt = run / "checkpoints" / "last.ckpt"
    stored = run / "checkpoints" / f"last_metrics_n{num_samples}.json"
    if stored.is_file():
        results = json.loads(stored.read_text())
    else:
        results = evaluate(ckpt, num_samples=num_samples, data_dir=data_dir, device="auto")
        write_json(stored, results)
    config = yaml.safe_load((run / "config.yaml").read_text())
    chain = training_chain(run, config)
    epochs = torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"] + 1
    return {
        **{k: results[k] for k in ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage")},
        "num_fake": results["num_fake"],
        "num_real": results["num_real"],
        "eval_s": results["seconds"]["total"],
        "train_s": sum(seconds for _, seconds in chain),
        "resumed_from": [shown(part) for part, _ in chain[1:]],
        "epochs": epochs,
        "train_precision": config["trainer"].get("precision"),
        "run": shown(run),
    }


def run(
    quick: bool,
    data_dir: str,
    command: str,
    configs: list[str] | None = None,
    seeds: list[int] | None = None,
    with_floor: bool = True,
) -> dict:
    plan = dict(QUICK if quick else FULL)
    plan["configs"] = configs or plan["configs"]
    plan["seeds"] = seeds or plan["seeds"]
    n = plan["num_samples"]
    root = ROOT / "runs" / ("quality-quick" if quick else "quality")
    out = RESULTS / "quick" if quick else RESULTS
    results = {"machine": machine(), "num_samples": n, "quick": quick, "runs": []}
    stored = stored_results(out / "quality.json", n, quick)
    planned = {(config, seed) for config in plan["configs"] for seed in plan["seeds"]}
    # Rows measured earlier (possibly on a machine whose run folders are gone) stay in the table unless
    # this invocation measures the same (config, seed) again; each row keeps the machine it was measured on.
    kept = [r for r in stored.get("runs", []) if (r["config"], r["seed"]) not in planned]
    if stored.get("floor") and not with_floor:
        results["floor"] = stored["floor"]
    for config in plan["configs"]:
        for seed in plan["seeds"]:
            folder = train(config, seed, plan["extra"], root)
            row = {"config": config, "seed": seed, **evaluate_run(folder, n, data_dir), "machine": machine()}
            print(f"{config} seed {seed}: FID {row['fid']:.3f}", flush=True)
            results["runs"].append(row)
            write({**results, "runs": sorted(kept + results["runs"], key=row_order)}, out, command)
    results["runs"] = sorted(kept + results["runs"], key=row_order)
    if with_floor:
        results["floor"] = floor(n, data_dir)  # last: its test features are cached by then, only train's are new
        print(f"floor: FID {results['floor']['fid']:.3f}", flush=True)
    write(results, out, command)
    return results


def stored_results(path: Path, num_samples: int, quick: bool) -> dict:
    """The results a previous invocation wrote to ``path``, if they were measured at the same N and mode."""
    if not path.is_file():
        return {}
    stored = json.loads(path.read_text())
    if stored.get("num_samples") != num_samples or stored.get("quick") != quick:
        return {}
    for r in stored.get("runs", []):
        r.setdefault("machine", stored.get("machine"))
    return stored


def row_order(row: dict) -> tuple:
    return row["config"], row["seed"]


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def write(results: dict, out: Path, command: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "quality.json", results)
    n = results["num_samples"]
    lines = header(f"MNIST quality at N = {n:,}", results["machine"], command)
    lines += [
        f"Each row: `python train.py --config configs/<config> --seed_everything <seed>`, then "
        f"`python evaluate.py --ckpt_path <run>/checkpoints/last.ckpt --num_samples {n}`: the final EMA generator, "
        f"{n:,} fixed-seed samples against the first {n:,} MNIST test images, exact fp32 TF-Inception pool3. "
        "The floor row is the first training images against the same test images. Training time is the run's "
        "own (start of fit to the last checkpoint), summed over the runs it resumed from; evaluation time "
        "includes the reference features when they were not cached yet."
        + (" **Quick mode: a short CI-sized run, not the quality claim.**" if results["quick"] else ""),
        "",
        "| model | seed | epochs | precision | FID | KID (x1000) | precision | recall | density | coverage "
        "| train | eval |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    f = results.get("floor") or dict.fromkeys(
        ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage", "eval_s"), float("nan")
    )
    lines.append(
        f"| MNIST train vs test (floor) | - | - | - | {f['fid']:.2f} | "
        f"{1000 * f['kid']:.3f} ± {1000 * f['kid_std']:.3f} | {f['precision']:.3f} | {f['recall']:.3f} | "
        f"{f['density']:.3f} | {f['coverage']:.3f} | - | {minutes(f['eval_s'])} |"
    )
    for r in results["runs"]:
        lines.append(
            f"| {r['config']} | {r['seed']} | {r['epochs']} | {r['train_precision']} | {r['fid']:.2f} | "
            f"{1000 * r['kid']:.3f} ± {1000 * r['kid_std']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"{r['density']:.3f} | {r['coverage']:.3f} | {minutes(r['train_s'])} | {minutes(r['eval_s'])} |"
        )
    measured = [r for r in results["runs"] if r.get("machine")]
    if measured:
        lines += [
            "",
            "Where each row comes from (the machine line is the invocation that wrote the row, which reuses a "
            "finished run; the run folders are named by the time each training started):",
        ]
        lines += [
            f"- {r['config']} seed {r['seed']}: row written {r['machine']['date']} on {r['machine']['cpu_flags']}, "
            f"1-minute load average then {r['machine']['load_average_at_start'][0]}"
            + probe_text(r["machine"], ", host speed ")
            + "."
            + (f" Run: {r['run']}." if r.get("run") and not r.get("resumed_from") else "")
            + (
                f" Trained in {len(r['resumed_from']) + 1} parts (`--ckpt_path` resumes: weights, optimizers, EMA "
                f"and RNG streams restored): {' <- '.join([r['run'], *r['resumed_from']])}; its training time is "
                "the sum."
                if r.get("resumed_from")
                else ""
            )
            for r in measured
        ]
    lines += ["", "| model | FID mean ± spread (half the range) over seeds | goal | met |", "|---|---|---|---|"]
    for config in dict.fromkeys(r["config"] for r in results["runs"]):
        fids = [r["fid"] for r in results["runs"] if r["config"] == config]
        mean, half_range = spread(fids)
        goal = GOALS.get(config) if n == 10_000 else None
        met = "-" if goal is None else ("yes" if max(fids) <= goal else "no")
        lines.append(
            f"| {config} | {mean:.2f} ± {half_range:.2f} ({len(fids)} seeds) | "
            f"{'-' if goal is None else f'<= {goal}'} | {met} |"
        )
    write_markdown(out / "quality.md", lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short vanilla run at N = 500 (minutes)")
    parser.add_argument("--data_dir", default=str(ROOT / "data"))
    parser.add_argument("--configs", nargs="+", default=None, help="a subset of the configs (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="a subset of the seeds (default: 42 43)")
    parser.add_argument("--no_floor", action="store_true", help="skip the real-vs-real floor row")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.quality" + (" --quick" if args.quick else "")
    run(args.quick, args.data_dir, command, args.configs, args.seeds, with_floor=not args.no_floor)


if __name__ == "__main__":
    main()
