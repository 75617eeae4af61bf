"""The benchmarks' results files: every ``.json`` and ``.md`` a benchmark writes goes through here.

Both go through :mod:`gan_modules.io`, so a reader never sees half a table and an interrupted benchmark leaves
the previous results file whole. The one statistic several tables share lives here too, so a report module
needs no benchmark module to render.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path

from gan_modules.io import atomic_text


def write_json(path: str | Path, results: object, indent: int = 2) -> Path:
    """``results`` as indented JSON and a final newline, written atomically; returns ``path``."""
    return atomic_text(path, json.dumps(results, indent=indent) + "\n")


def write_markdown(path: str | Path, lines: Sequence[str]) -> Path:
    """``lines`` joined by newlines, with a final one, written atomically; returns ``path``."""
    return atomic_text(path, "\n".join(lines) + "\n")


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and half the range over seeds (with two seeds, each one's distance from the mean)."""
    return statistics.mean(values), (max(values) - min(values)) / 2
