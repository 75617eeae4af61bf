"""``python train.py --config configs/<run>.yaml [--trainer.max_epochs 5 ...]`` (also ``gan-train``).

``fit`` is implied; ``validate``, ``test`` and ``predict`` work as LightningCLI subcommands. A user error (a bad
value, a missing dataset, a NaN loss) ends in one ``error:`` line and exit status 1; set
GAN_MODULES_DEBUG=1 to see the full traceback.
"""

from __future__ import annotations

import os
import sys

from gan_modules.cli import cli_main
from gan_modules.core import NonFiniteLossError


def main(argv: list[str] | None = None) -> int:
    try:
        cli_main(argv)
    except (NonFiniteLossError, FileNotFoundError, ValueError) as err:
        if os.environ.get("GAN_MODULES_DEBUG"):
            raise
        print(f"\nerror: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
