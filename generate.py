"""Write images from a trained checkpoint: ``python generate.py --ckpt_path <run>/checkpoints/last.ckpt``."""

import sys

from gan_modules.commands.generate import main

if __name__ == "__main__":
    sys.exit(main())
