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

Every finished row of the full table is exported into the model zoo (``zoo/<config stem>-seed<seed>/``, the
final EMA generator and its card; an existing entry is never replaced). A row whose run folder is gone is kept
from its zoo entry: the card's evaluation at the same N (labelled "zoo card" in the table), or with
``--reevaluate`` a new evaluation of the entry's generator ("zoo entry, re-evaluated"); it is trained again
only when there is no entry of the same settings.

    python -m benchmarks.quality                       # full: 2 seeds x 3 configs, N = 10,000
    python -m benchmarks.quality --reevaluate          # rows from zoo entries measured again, not copied
    python -m benchmarks.quality --quick               # minutes: 1 short vanilla run, N = 500 (no zoo)
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import child  # noqa: E402
from benchmarks.machine import header, machine, probe_text  # noqa: E402
from benchmarks.run_settings import config_differences, expected_settings, settings_differences  # noqa: E402
from benchmarks.tables import goal_table, write_json, write_markdown  # noqa: E402
from datamodules import MNISTDataModule  # noqa: E402
from gan_modules import metrics as gan_metrics  # noqa: E402
from gan_modules import zoo  # noqa: E402
from gan_modules.commands.evaluate import evaluate, metrics_path  # noqa: E402
from gan_modules.metrics import GANMetrics  # noqa: E402
from gan_modules.metrics.reference import reference_features  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# FID at N = 10,000 (the issues' goals): a number, or a config whose mean FID this one's mean must not exceed.
GOALS: dict[str, float | str] = {
    "dcgan_mnist.yaml": 3.0,
    "dcgan_mnist_conditional.yaml": "dcgan_mnist.yaml",  # issue 25: no worse than the unconditional config
    "vanilla_mnist.yaml": 15.0,
    "r3gan_mnist.yaml": 3.0,  # issue 24: the FID goal is for the project's best config; R3GAN-style is a candidate
}
CLASS_ACCURACY_GOAL = 0.99  # issue 25: conditional samples classified as asked, by the shipped digit classifier
FULL = {
    "configs": ["dcgan_mnist.yaml", "dcgan_mnist_conditional.yaml", "r3gan_mnist.yaml", "vanilla_mnist.yaml"],
    "seeds": [42, 43],
    "num_samples": 10_000,
    "extra": [],
}
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


def finished_run(
    parent: Path, max_epochs: int, expected: dict[str, object] | None = None, report: bool = True
) -> Path | None:
    """The newest run under ``parent`` whose last.ckpt reached the config's last epoch and, given ``expected``
    (``expected_settings``), was trained with those settings: a run of an older version of the config is not
    reused for its table row (it is left where it is, and a new run is trained beside it)."""
    for run in sorted(parent.glob("*/"), reverse=True):
        ckpt = run / "checkpoints" / "last.ckpt"
        if not ckpt.is_file() or torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"] + 1 < max_epochs:
            continue
        differences = config_differences(run, expected) if expected is not None else []
        if differences:
            if report:
                print(f"not reusing {run}: trained with other settings ({'; '.join(differences)})", flush=True)
            continue
        return run
    return None


def run_plan(config: str, seed: int, extra: list[str], root: Path) -> tuple[Path, int, dict[str, object] | None]:
    """The folder of (config, seed)'s runs, the epoch a finished run reaches and the settings it must have."""
    cfg = yaml.safe_load((ROOT / "configs" / config).read_text())
    max_epochs = int(cfg["trainer"]["max_epochs"])
    if "--trainer.max_epochs" in extra:
        max_epochs = int(extra[extra.index("--trainer.max_epochs") + 1])
    return root / f"{Path(config).stem}-s{seed}", max_epochs, expected_settings(cfg, seed, extra)


def run_root(quick: bool) -> Path:
    return ROOT / "runs" / ("quality-quick" if quick else "quality")


def existing_run(config: str, seed: int, extra: list[str], root: Path) -> Path | None:
    """The finished run ``train`` would reuse, without training or reporting anything."""
    parent, max_epochs, expected = run_plan(config, seed, extra, root)
    return finished_run(parent, max_epochs, expected, report=False) if parent.is_dir() else None


def train(config: str, seed: int, extra: list[str], root: Path) -> Path:
    """Trains one (config, seed) with train.py unless a finished run exists; returns the run folder."""
    parent, max_epochs, expected = run_plan(config, seed, extra, root)
    run = finished_run(parent, max_epochs, expected) if parent.is_dir() else None
    if run is not None:
        print(f"reusing {run}", flush=True)
        return run
    command = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / config)]
    command += ["--seed_everything", str(seed), "--run_name", parent.name, "--trainer.default_root_dir", str(root)]
    command += ["--trainer.enable_progress_bar", "false", *extra]
    print("$", " ".join(command), flush=True)
    child.run_child(command)
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
    """``evaluate.py``'s figures for ``run``'s last.ckpt at ``num_samples`` (stored beside it and reused), with
    the run's training time, epochs and precision; Stacked MNIST runs also carry their ``stacked_mnist`` modes."""
    ckpt = run / "checkpoints" / "last.ckpt"
    stored = metrics_path(ckpt, num_samples)
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
        **{k: results[k] for k in ("stacked_mnist", "class_accuracy") if k in results},
        "num_fake": results["num_fake"],
        "num_real": results["num_real"],
        "eval_s": results["seconds"]["total"],
        "train_s": sum(seconds for _, seconds in chain),
        "resumed_from": [shown(part) for part, _ in chain[1:]],
        "epochs": epochs,
        "train_precision": config["trainer"].get("precision"),
        "run": shown(run),
    }


def zoo_name(config: str, seed: int) -> str:
    return f"{Path(config).stem}-seed{seed}"


def zoo_row(
    config: str, seed: int, n: int, extra: list[str], zoo_root: Path, reevaluate: bool, data_dir: str,
    name: str | None = None,
) -> dict | None:  # fmt: skip
    """The row of (config, seed) from its zoo entry ``name`` (default ``<config stem>-seed<seed>``; the run
    folder being gone): the card's evaluation at ``n``, or with ``reevaluate`` a new one of the entry's
    generator. None without an entry of the same settings."""
    name = name or zoo_name(config, seed)
    try:
        card = zoo.read_card(name, zoo_root)
    except FileNotFoundError:
        return None
    saved, expected = (card.get("training") or {}).get("config"), run_plan(config, seed, extra, Path())[2]
    differences = ["its card holds no run config"] if not saved else []
    differences += settings_differences(saved, expected) if saved and expected is not None else []
    if differences:
        print(f"not using zoo entry {name}: trained with other settings ({'; '.join(differences)})", flush=True)
        return None
    if reevaluate:
        results = evaluate(None, num_samples=n, data_dir=data_dir, device="auto", pretrained=name, zoo_root=zoo_root)
        source, measured_on = "zoo entry, re-evaluated", machine()
    else:
        results, source = zoo.best_metrics(card, n), "zoo card"
        measured_on = card.get("machine") if "load_average_at_start" in (card.get("machine") or {}) else None
        if results is None:
            print(f"zoo entry {name} has no evaluation at N = {n:,}; --reevaluate measures it", flush=True)
            return None
    training = card["training"]
    print(f"{config} seed {seed}: no finished run folder; the row comes from zoo entry {name} ({source})", flush=True)
    return {
        "config": config,
        "seed": seed,
        **{k: results[k] for k in ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage")},
        **{k: results[k] for k in ("num_fake", "num_real")},
        **{k: results[k] for k in ("stacked_mnist", "class_accuracy") if k in results},
        "eval_s": results["seconds"]["total"],
        "train_s": training.get("seconds"),
        "resumed_from": training.get("resumed_from") or [],
        "epochs": card.get("epochs"),
        "train_precision": training.get("precision"),
        "run": (card.get("source") or {}).get("run"),
        "zoo": name,
        "source": source,
        "machine": measured_on,
    }


def export_row(folder: Path, row: dict, n: int, extra: list[str], zoo_root: Path, name: str | None = None) -> None:
    """Keeps a finished row's final EMA generator as zoo entry ``name`` (default ``<config stem>-seed<seed>``);
    never replaces one."""
    name = name or zoo_name(row["config"], row["seed"])
    try:
        if (zoo_root / name).exists():
            kept = (zoo.read_card(name, zoo_root).get("source") or {}).get("run")
            if kept == row["run"]:
                row["zoo"] = name
            else:
                print(f"zoo entry {name} (from {kept}) kept, not replaced by {row['run']}", flush=True)
            return
        results = json.loads(metrics_path(folder / "checkpoints" / "last.ckpt", n).read_text())
        trained = " ".join(["python train.py --config", f"configs/{row['config']}", f"--seed_everything {row['seed']}"])
        command = " ".join([trained, shlex.join(extra)]).strip()
        path = zoo.export_run(
            folder, name, [results], root=zoo_root, command=command, train_seconds=row["train_s"],
            machine=row["machine"], training={"resumed_from": row["resumed_from"]},
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as err:
        print(f"{row['config']} seed {row['seed']}: not exported to the zoo ({err})", flush=True)
        return
    row["zoo"] = name
    print(f"exported {path}", flush=True)


def run(
    quick: bool,
    data_dir: str,
    command: str,
    configs: list[str] | None = None,
    seeds: list[int] | None = None,
    with_floor: bool = True,
    zoo_root: Path | None = None,
    reevaluate: bool = False,
) -> dict:
    """The table; with ``zoo_root`` rows are exported into that zoo and kept from it (``zoo_row``, ``export_row``)."""
    plan = dict(QUICK if quick else FULL)
    plan["configs"] = configs or plan["configs"]
    plan["seeds"] = seeds or plan["seeds"]
    n = plan["num_samples"]
    root = run_root(quick)
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
            row = None
            if zoo_root is not None and existing_run(config, seed, plan["extra"], root) is None:
                row = zoo_row(config, seed, n, plan["extra"], zoo_root, reevaluate, data_dir)
            if row is None:
                folder = train(config, seed, plan["extra"], root)
                row = {"config": config, "seed": seed, **evaluate_run(folder, n, data_dir), "machine": machine()}
                if zoo_root is not None:
                    export_row(folder, row, n, plan["extra"], zoo_root)
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


def class_accuracy_text(row: dict) -> str:
    """A class-conditional row's class accuracy (the digit classifier on its samples), else "-"."""
    accuracy = row.get("class_accuracy")
    return "-" if accuracy is None else f"{100 * accuracy['accuracy']:.2f}%"


def minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


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
        "Class accuracy (class-conditional models): the shipped digit classifier's agreement with the asked-for "
        "class over the same samples, drawn with the test set's class balance.",
        "",
        "| model | seed | epochs | training dtype | FID | KID (x1000) | precision | recall | density | coverage "
        "| class acc. | train | eval |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    f = results.get("floor") or dict.fromkeys(
        ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage", "eval_s"), float("nan")
    )
    lines.append(
        f"| MNIST train vs test (floor) | - | - | - | {f['fid']:.2f} | "
        f"{1000 * f['kid']:.3f} ± {1000 * f['kid_std']:.3f} | {f['precision']:.3f} | {f['recall']:.3f} | "
        f"{f['density']:.3f} | {f['coverage']:.3f} | - | - | {minutes(f['eval_s'])} |"
    )
    for r in results["runs"]:
        label = f"{r['config']} ({r['source']})" if r.get("source") else r["config"]  # a row kept from the zoo
        lines.append(
            f"| {label} | {r['seed']} | {r['epochs']} | {r['train_precision']} | {r['fid']:.2f} | "
            f"{1000 * r['kid']:.3f} ± {1000 * r['kid_std']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"{r['density']:.3f} | {r['coverage']:.3f} | {class_accuracy_text(r)} | {minutes(r['train_s'])} "
            f"| {minutes(r['eval_s'])} |"
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
                f" Its run folder is gone; the row comes from zoo/{r['zoo']} ({r['source']})."
                if r.get("source")
                else ""
            )
            + (f" Generator: zoo/{r['zoo']}." if r.get("zoo") and not r.get("source") else "")
            + (
                f" Trained in {len(r['resumed_from']) + 1} parts (`--ckpt_path` resumes: weights, optimizers, EMA "
                f"and RNG streams restored): {' <- '.join([r['run'], *r['resumed_from']])}; its training time is "
                "the sum."
                if r.get("resumed_from")
                else ""
            )
            for r in measured
        ]
    full = n == 10_000
    lines += goal_table(results["runs"], GOALS if full else {}, CLASS_ACCURACY_GOAL if full else None)
    write_markdown(out / "quality.md", lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short vanilla run at N = 500 (minutes)")
    parser.add_argument("--data_dir", default=str(ROOT / "data"))
    parser.add_argument("--configs", nargs="+", default=None, help="a subset of the configs (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="a subset of the seeds (default: 42 43)")
    parser.add_argument("--no_floor", action="store_true", help="skip the real-vs-real floor row")
    parser.add_argument(
        "--reevaluate", action="store_true", help="measure rows kept from zoo entries again instead of copying cards"
    )
    parser.add_argument("--no_zoo", action="store_true", help="neither export rows to the zoo nor keep rows from it")
    args = parser.parse_args(argv)
    if args.reevaluate and (args.quick or args.no_zoo):
        parser.error("--reevaluate re-measures zoo entries: it needs the zoo (not --quick, not --no_zoo)")
    command = "python -m benchmarks.quality" + (" --quick" if args.quick else "")
    zoo_root = None if args.quick or args.no_zoo else zoo.zoo_root()
    run(args.quick, args.data_dir, command, args.configs, args.seeds, not args.no_floor, zoo_root, args.reevaluate)


if __name__ == "__main__":
    main()
