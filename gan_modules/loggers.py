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
    """``WandbLogger`` whose ``mode`` is auto / online / offline / disabled (see the module docstring).

    ``log_model: auto`` uploads one checkpoint as a model artifact when the run is online: ``best.ckpt``
    (lowest val/fid) when validation ran, else ``last.ckpt``; the periodic snapshots stay local.
    ``true``/``all`` are W&B's own meanings.
    """

    def __init__(
        self,
        project: str = "gan-modules",
        name: str | None = None,
        mode: Literal["auto", "online", "offline", "disabled"] = "auto",
        save_dir: str = ".",
        log_model: Literal["auto", "all"] | bool = "auto",
        **kwargs,
    ) -> None:
        if mode == "auto":
            mode = os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")
        self.mode = mode
        self.model_artifact = log_model == "auto"
        if log_model == "auto":
            log_model = mode == "online"
        super().__init__(
            project=project,
            name=name,
            save_dir=save_dir,
            offline=mode == "offline",
            mode=mode,
            log_model=log_model,
            **kwargs,
        )

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        if not (self.model_artifact and self._log_model is True):
            super().after_save_checkpoint(checkpoint_callback)
            return
        key = getattr(checkpoint_callback, "state_key", "")
        if key in ("BestCheckpoint", "LastCheckpoint"):
            self._checkpoint_callbacks[key] = checkpoint_callback

    def finalize(self, status: str) -> None:
        if self.model_artifact:
            best = self._checkpoint_callbacks.get("BestCheckpoint")
            if best is not None and best.best_model_path:
                self._checkpoint_callbacks.pop("LastCheckpoint", None)
            else:
                self._checkpoint_callbacks.pop("BestCheckpoint", None)
        super().finalize(status)


class CSVLogger(pl_loggers.CSVLogger):
    """Lightning's CSVLogger with defaults that write ``metrics.csv`` straight into the run folder.

    ``--trainer.logger gan_modules.loggers.CSVLogger`` is the CSV-only setup (no W&B).
    """

    def __init__(self, save_dir: str = ".", name: str | None = "", version: int | str | None = "", **kwargs) -> None:
        super().__init__(save_dir=save_dir, name=name, version=version, **kwargs)
