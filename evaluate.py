"""Evaluate a checkpoint: ``python evaluate.py --ckpt_path <run>/checkpoints/last.ckpt [--num_samples 10000]``.

See ``gan_modules/evaluate.py`` (also installed as ``gan-evaluate``) for the options.
"""

from __future__ import annotations

import sys

from gan_modules.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
