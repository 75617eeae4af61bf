"""``python plot.py <run folder>``: draws ``<run>/training.png`` from ``<run>/metrics.csv``."""

from __future__ import annotations

import argparse
import sys

from gan_modules.visualize import plot_training


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="plot.py", description="Draws <run>/training.png from <run>/metrics.csv.")
    parser.add_argument("run_dir", help="a run folder written by train.py, e.g. runs/vanilla_mnist/20260101-120000")
    parser.add_argument("--out", default=None, help="PNG to write (default: <run>/training.png)")
    args = parser.parse_args(argv)
    try:
        path = plot_training(args.run_dir, args.out)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
