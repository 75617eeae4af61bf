"""What the progress bar costs: ms per batch of train.py's main job (vanilla MNIST, fp32) with Rich, TQDM, none.

    python -m benchmarks.bench_progress_bar          # 600 batches per setting, 4 rounds, about 5 minutes

Batches 100..600 of one epoch are timed (the first 100 warm up), validation off, CSV logger only, so that
the difference between the settings is the bar's own cost. Writes benchmarks/results/progress_bar.md.
"""

from __future__ import annotations

import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import header, machine  # noqa: E402
from benchmarks.tables import write_json, write_markdown  # noqa: E402
from gan_modules.cli import cli_main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WARMUP, BATCHES = 100, 600
SETTINGS = {
    "Rich (default)": [],
    "TQDM": [
        "--trainer.callbacks+=pytorch_lightning.callbacks.TQDMProgressBar",
        "--trainer.callbacks.refresh_rate",
        "20",
    ],
    "no bar": ["--trainer.enable_progress_bar", "false"],
}


class BatchTimer(pl.Callback):
    """Milliseconds per batch over batches WARMUP..BATCHES of the first epoch."""

    last_ms: float = float("nan")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == WARMUP:
            BatchTimer.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        BatchTimer.last_ms = 1000 * (time.perf_counter() - BatchTimer.start) / (BATCHES - WARMUP)


def main(rounds: int = 4) -> None:
    results: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for _ in range(rounds):
        for name, extra in SETTINGS.items():
            args = ["--config", str(ROOT / "configs" / "vanilla_mnist.yaml"), "--trainer.max_epochs", "1"]
            args += ["--trainer.limit_train_batches", str(BATCHES), "--model.val_num_samples", "0"]
            args += ["--trainer.logger", "gan_modules.loggers.CSVLogger", "--trainer.enable_model_summary", "false"]
            args += ["--trainer.default_root_dir", tempfile.mkdtemp(), *extra]
            args += ["--trainer.callbacks+=benchmarks.bench_progress_bar.BatchTimer"]
            cli_main(args)
            # The CLI imports the callback by class path: under ``python -m`` that is not this __main__ module.
            timer = importlib.import_module("benchmarks.bench_progress_bar").BatchTimer
            results[name].append(timer.last_ms)
            print(f"{name}: {timer.last_ms:.3f} ms per batch", flush=True)
    m = machine()
    out = ROOT / "benchmarks" / "results"
    write_json(out / "progress_bar.json", {"machine": m, "ms_per_batch": results})
    write(m, results, out)


def write(m: dict, results: dict[str, list[float]], out: Path) -> None:
    rounds = len(next(iter(results.values())))
    median = {name: statistics.median(values) for name, values in results.items()}
    lines = header("Progress bar cost (vanilla MNIST, train.py)", m, "python -m benchmarks.bench_progress_bar")
    lines += [
        f"ms per batch over batches {WARMUP}-{BATCHES} of `configs/vanilla_mnist.yaml` (fp32, batch 64, one D and one "
        f"G step per batch), validation off, CSV logger only; the median of {rounds} rounds, the settings "
        "interleaved within each round (every value in the JSON). Both bars redraw every 20 batches; Rich shows "
        "the last logged D and G loss.",
        "",
        "| progress bar | ms per batch (median) | vs no bar | range over rounds |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {ms:.3f} | {ms / median['no bar']:.3f}x | {min(results[name]):.2f}-{max(results[name]):.2f} |"
        for name, ms in median.items()
    ]
    write_markdown(out / "progress_bar.md", lines)


if __name__ == "__main__":
    main()
