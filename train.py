"""Train a GAN: ``python train.py --config configs/vanilla_mnist.yaml [--trainer.max_epochs 5 ...]``.

A thin shim over ``gan_modules.commands.train`` (``fit`` implied; GAN_MODULES_DEBUG=1 for full tracebacks).
"""

import sys

from gan_modules.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
