"""Train a GAN: ``python train.py --config configs/vanilla_mnist.yaml [--trainer.max_epochs 5 ...]``.

``fit`` is implied; ``validate``, ``test`` and ``predict`` work as LightningCLI subcommands.
Set GAN_MODULES_DEBUG=1 to see full tracebacks for the user errors this script summarizes.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    from gan_modules.base import NonFiniteLossError
    from gan_modules.cli import cli_main

    try:
        cli_main()
    except (NonFiniteLossError, FileNotFoundError, ValueError) as err:
        if os.environ.get("GAN_MODULES_DEBUG"):
            raise
        print(f"\nerror: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
