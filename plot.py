"""Redraw a run's loss and D-output curves: ``python plot.py runs/<name>/<stamp>`` writes training.png."""

import sys

from gan_modules.commands.plot import main

if __name__ == "__main__":
    sys.exit(main())
