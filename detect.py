"""Score images as real or generated: ``python detect.py --ckpt_path <ckpt> --images DIR --out scores.csv``."""

import sys

from gan_modules.commands.detect import main

if __name__ == "__main__":
    sys.exit(main())
