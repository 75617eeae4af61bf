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


def seeds(count: int) -> str:
    """'1 seed', '2 seeds'."""
    return f"{count} seed{'' if count == 1 else 's'}"


def goal_table(runs: list[dict], goals: dict[str, float | str], class_accuracy_goal: float | None = None) -> list[str]:
    """Markdown lines: each config's FID mean ± half the range over its seeds, against its goal: a number every
    seed must reach, or another config whose mean this one's mean must not exceed; then, with
    ``class_accuracy_goal``, each class-conditional config's class accuracy against it (every seed)."""
    lines = ["", "| model | FID mean ± spread (half the range) over seeds | goal | met |", "|---|---|---|---|"]
    fids: dict[str, list[float]] = {}
    for run in runs:
        fids.setdefault(run["config"], []).append(run["fid"])
    means = {config: spread(values) for config, values in fids.items()}  # (mean, half range)
    for config, (mean, half_range) in means.items():
        goal = goals.get(config)
        if isinstance(goal, str):
            goal_text = f"mean <= {goal}'s mean" + (f" ({means[goal][0]:.2f})" if goal in means else " (not measured)")
            met = "-" if goal not in means else ("yes" if mean <= means[goal][0] else "no")
        else:
            goal_text = "-" if goal is None else f"<= {goal}"
            met = "-" if goal is None else ("yes" if max(fids[config]) <= goal else "no")
        lines.append(f"| {config} | {mean:.2f} ± {half_range:.2f} ({seeds(len(fids[config]))}) | {goal_text} | {met} |")
    accuracies: dict[str, list[float]] = {}
    for run in runs:
        if run.get("class_accuracy") is not None:
            accuracies.setdefault(run["config"], []).append(run["class_accuracy"]["accuracy"])
    if accuracies and class_accuracy_goal is not None:
        lines.append("")
        for config, values in accuracies.items():
            met = "yes" if min(values) >= class_accuracy_goal else "no"
            shown = ", ".join(f"{100 * v:.2f}%" for v in values)
            lines.append(
                f"Class accuracy of {config} (goal >= {100 * class_accuracy_goal:.0f}% in every seed): {shown} "
                f"({seeds(len(values))}): **{met}**."
            )
    return lines
