"""Swap faces with a trained FaceSwap: ``python swap.py --ckpt_path <last.ckpt> --input DIR --out DIR``."""

import sys

from gan_modules.commands.swap import main

if __name__ == "__main__":
    sys.exit(main())
