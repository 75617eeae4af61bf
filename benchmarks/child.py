"""The train.py runs the benchmarks start: W&B offline and quiet, and stopped with the benchmark.

Kept apart from the benchmarks' heavy imports (torch, Lightning) so that a test can start a benchmark-like parent
in a fraction of a second.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def train_env() -> dict[str, str]:
    """The environment of a benchmark's train.py run: W&B offline (unless set) and quiet."""
    return {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"), "WANDB_SILENT": "true"}


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_child(command: list[str]) -> None:
    """Runs ``command`` (a train.py run) in ``train_env()`` from the repository root to the end; an error if it
    fails. A SIGTERM to the benchmark (``kill``, ``pkill -f``) stops the child with it: Python's default would end
    the benchmark at once and leave train.py training on, unseen, beside whatever runs next (``subprocess.run``
    kills its child only when an exception reaches it, which the handler raises)."""
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        subprocess.run(command, check=True, cwd=ROOT, env=train_env())
    finally:
        signal.signal(signal.SIGTERM, previous)
