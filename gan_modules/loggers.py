"""A Weights & Biases logger that works with no account and no network.

``mode: auto`` (the default) goes online when the user is logged in (``WANDB_API_KEY`` or a
``wandb login`` entry in ~/.netrc) and otherwise writes an offline run folder under the run
directory, which ``wandb sync <run>/wandb/offline-run-*`` uploads later. ``WANDB_MODE`` in the
environment still wins, as W&B documents.
"""

from __future__ import annotations

import netrc
import os
from typing import Literal
from urllib.parse import urlparse

from pytorch_lightning import loggers as pl_loggers
from pytorch_lightning.loggers import WandbLogger


def wandb_logged_in() -> bool:
    """True when W&B has credentials: WANDB_API_KEY or a netrc entry for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


class AutoWandbLogger(WandbLogger):
    """``WandbLogger`` whose ``mode`` is auto / online / offline / disabled (see the module docstring)."""

    def __init__(
        self,
        project: str = "gan-modules",
        name: str | None = None,
        mode: Literal["auto", "online", "offline", "disabled"] = "auto",
        save_dir: str = ".",
        **kwargs,
    ) -> None:
        if mode == "auto":
            mode = os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")
        self.mode = mode
        super().__init__(project=project, name=name, save_dir=save_dir, offline=mode == "offline", mode=mode, **kwargs)


class CSVLogger(pl_loggers.CSVLogger):
    """Lightning's CSVLogger with defaults that write ``metrics.csv`` straight into the run folder.

    ``--trainer.logger gan_modules.loggers.CSVLogger`` is the CSV-only setup (no W&B).
    """

    def __init__(self, save_dir: str = ".", name: str | None = "", version: int | str | None = "", **kwargs) -> None:
        super().__init__(save_dir=save_dir, name=name, version=version, **kwargs)
