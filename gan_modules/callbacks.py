"""Callbacks the CLI adds to every run: the sample grid and its GIF, the training plot, the bar, the checkpoints."""

from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torchvision.utils import make_grid, save_image

from gan_modules.io import atomic_write, grid_rows


class RichProgressBar(pl.callbacks.RichProgressBar):
    """Lightning's Rich bar, with its count and metrics handed over only as often as Rich redraws them.

    Lightning's updates the task and re-reads the progress-bar metrics after every batch although Rich draws
    ``refresh_rate`` times a second: 0.2 ms a batch, 1.5% of a vanilla-GAN batch on 2 CPU cores. Here a
    batch updates the bar when ``1 / refresh_rate`` seconds have passed since the last update, and the
    epoch's last batch always does, so the bar shows what it showed before, at the rate it is drawn.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._last_update = -float("inf")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        now = time.monotonic()
        last = batch_idx + 1 >= self.total_train_batches
        if last or self.is_disabled or now - self._last_update >= 1.0 / self.refresh_rate:
            self._last_update = now
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class SampleGrid(pl.Callback):
    """Saves ``<run>/samples/epoch_XXXX.png`` from the fixed latents after every ``every_n_epochs`` epochs.

    The same latents every time, so the grids show the generator's progress; the EMA generator is
    used when there is one. The grid also goes to W&B (key ``samples``), and ``progress.gif``
    strings the grids together when training ends (as seed 002 does).
    """

    def __init__(self, every_n_epochs: int = 1, make_gif: bool = True) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"samples.every_n_epochs must be >= 1, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs
        self.make_gif = make_gif

    def sample_dir(self, trainer: pl.Trainer) -> Path:
        return Path(trainer.default_root_dir) / "samples"

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or (trainer.current_epoch + 1) % self.every_n_epochs != 0:
            return
        if trainer.sanity_checking or not getattr(pl_module, "draws_sample_grid", True):
            return
        images = pl_module.sample_grid()
        nrow = getattr(pl_module, "sample_grid_nrow", None) or grid_rows(len(images))
        grid = make_grid(images.float().cpu(), nrow=nrow, normalize=True, value_range=(-1, 1))
        path = self.sample_dir(trainer) / f"epoch_{trainer.current_epoch:04d}.png"
        atomic_write(path, lambda tmp: save_image(grid, tmp))
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="samples", images=[grid], step=trainer.global_step)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not (self.make_gif and trainer.is_global_zero):
            return
        frames = sorted(self.sample_dir(trainer).glob("epoch_*.png"))
        if len(frames) < 2:
            return
        images = [Image.open(f).convert("P", palette=Image.Palette.ADAPTIVE) for f in frames]
        atomic_write(
            self.sample_dir(trainer) / "progress.gif",
            lambda tmp: images[0].save(tmp, save_all=True, append_images=images[1:], duration=400, loop=0),
        )


class TrainingPlot(pl.Callback):
    """Draws ``<run>/training.png`` (D/G loss, D outputs, val/FID) from ``metrics.csv`` when training ends.

    Also after a run stopped by an error (a NaN loss), when the curves matter most. A plot that cannot be
    drawn (no CSV logger) is a warning, never a failed run. ``python plot.py <run>`` redraws it any time.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def _draw(self, trainer: pl.Trainer) -> None:
        if not (self.enabled and trainer.is_global_zero):
            return
        csv_loggers = [logger for logger in trainer.loggers if isinstance(logger, CSVLogger)]
        if not csv_loggers:
            return
        for logger in csv_loggers:
            logger.save()  # flush the rows still buffered
        from gan_modules.visualize import plot_training

        metrics = Path(csv_loggers[0].log_dir) / "metrics.csv"
        if not metrics.is_file():
            return  # stopped (or ended) before the first logged step: nothing to draw
        try:
            path = plot_training(metrics.parent)
        except ValueError as err:  # a run shorter than one logging interval: nothing to draw yet
            rank_zero_info(f"training plot not drawn: {err}")
            return
        except OSError as err:
            rank_zero_warn(f"training plot not drawn: {err}")
            return
        rank_zero_info(f"training curves: {path}")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._draw(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._draw(trainer)


class DiscriminatorHistogram(pl.Callback):
    """Histograms of D's raw outputs (logits) on real and on fake images, to W&B after every epoch.

    From the epoch's last D updates (up to 8 batches, ``GANModule.recent_d_outputs``), as the step saw them (no extra
    forward pass). Two well-separated humps mean D wins easily; two overlapping ones, a balanced game.
    Does nothing without a W&B logger.
    """

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        recent = getattr(pl_module, "recent_d_outputs", None)
        if not (loggers and recent and trainer.is_global_zero):
            return
        import wandb

        real = torch.cat([r for r, _ in recent]).float().flatten().cpu().numpy()
        fake = torch.cat([f for _, f in recent]).float().flatten().cpu().numpy()
        values = {"d_outputs/real": wandb.Histogram(real), "d_outputs/fake": wandb.Histogram(fake)}
        for logger in loggers:
            logger.log_metrics(values, step=trainer.global_step)
        recent.clear()  # the next histogram holds only the next epoch's batches


class LastCheckpoint(ModelCheckpoint):
    """``checkpoints/last.ckpt`` after every training epoch, the file ``--ckpt_path`` resumes from."""

    def __init__(self, dirpath: str | None = None) -> None:
        # save_on_train_epoch_end: Lightning otherwise saves after validation only, so with
        # check_val_every_n_epoch > 1 last.ckpt would lag up to that many epochs behind.
        super().__init__(
            dirpath=dirpath,
            filename="last",
            save_top_k=1,
            every_n_epochs=1,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        )

    @property
    def state_key(self) -> str:  # distinct from the periodic ModelCheckpoint's key in checkpoints
        return "LastCheckpoint"


class BestCheckpoint(ModelCheckpoint):
    """``checkpoints/best.ckpt``: the checkpoint with the lowest ``val/fid`` so far, kept beside ``last.ckpt``.

    Saves nothing while ``val/fid`` is not logged (``model.val_num_samples: 0``, or a datamodule without
    validation) instead of failing the run.
    """

    def __init__(self, dirpath: str | None = None, monitor: str = "val/fid", mode: str = "min") -> None:
        super().__init__(
            dirpath=dirpath, filename="best", monitor=monitor, mode=mode, save_top_k=1, enable_version_counter=False
        )

    @property
    def state_key(self) -> str:
        return "BestCheckpoint"

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.monitor in trainer.callback_metrics:
            super().on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.monitor in trainer.callback_metrics:
            super().on_train_epoch_end(trainer, pl_module)
