"""Validation metrics as callbacks, which a model brings to any Trainer through ``configure_callbacks``.

A model chooses its suite in ``ImageModule.validation_metrics()``:

- ``ImageMetrics``: FID, KID and precision/recall/density/coverage of ``num_samples`` generated images against
  as many reference images (``val/*``), every validation epoch. The model answers two questions:
  ``validation_inputs(reference, seed)`` (one generator input per reference image: a GAN's seeded latents,
  Pix2Pix's reference images themselves) and ``validation_fakes(inputs)`` (a batch of them -> images in [-1, 1]).
- ``PointMetrics``: PacGAN's mode coverage of 2-D points and their scatter plot, after every training epoch.
- ``DigitModes``: Stacked MNIST's digit-triple coverage and KL of generated images, after every training epoch
  (``GANModule``'s ``val_modes_num_samples``; ``digit_modes_num_samples`` decides when it applies).

The callbacks keep no state a checkpoint needs (``state_dict`` stays empty), and the Inception weights and the
digit classifier live on the callbacks, outside the model's module tree: no checkpoint holds them and a resumed
run does not depend on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor

FAKE_BATCH_SIZE = 256  # generated images per forward pass: bounded memory at any val_num_samples
# A tenth of VEEGAN's and PacGAN's 26,000 (gan_modules.metrics.digits.NUM_SAMPLES): a few seconds per epoch on
# 2 CPU cores. KL's floor at this N is about 999 / (2 * 2600) = 0.19 for a perfectly uniform generator.
VAL_MODES_NUM_SAMPLES = 2_600


class ImageMetrics(pl.Callback):
    """Logs ``val/fid``, ``val/kid``, ``val/kid_std``, ``val/precision``, ``val/recall``, ``val/density``,
    ``val/coverage`` and ``val/num_samples`` at the end of every validation epoch but the sanity check's.

    Real features come from the on-disk reference cache (``gan_modules.metrics.reference_features``; rank 0
    computes them first, the other ranks then read them). Each rank embeds its share ``[rank::world]`` of the
    references and of the model's fixed validation inputs, one fake per real image the validation loop shows
    it, topped up at the epoch's end when ``limit_val_batches`` cut the loop short; the metric states then sync
    across ranks into one value over every rank's share.
    """

    def __init__(self, num_samples: int, precision: Literal["32", "bf16"] = "32", seed: int = 1) -> None:
        """
        Args:
            num_samples: reference images, and as many fakes, behind each value (FID depends on it).
            precision: "32" or "bf16" for the Inception features (``gan_modules.metrics.feature_network``).
            seed: seed of the model's validation inputs: the same every epoch, so val/fid moves with G, not with z.
        """
        if num_samples < 1:
            raise ValueError(f"ImageMetrics needs num_samples >= 1, got {num_samples}")
        self.num_samples = num_samples
        self.precision = precision
        self.seed = seed
        self._metrics = None  # GANMetrics with its feature network, made at the first validation
        self._real: Tensor | None = None  # reference features [N, D] on the CPU
        self._inputs: Tensor | None = None  # this rank's share of the model's validation inputs
        self._seen = 0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._real = self._inputs = None  # another fit may bring other data or another model

    def _enabled(self, trainer: pl.Trainer) -> bool:
        # The sanity check only proves the loop runs: it must not cost a FID pass.
        return not trainer.sanity_checking

    def _load_reference(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Reference features (on-disk cache, rank 0 computes them once) and this rank's validation inputs."""
        from gan_modules.metrics.reference import reference_features, reference_images

        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "reference_split"):
            raise ValueError(
                "val/fid needs an ImageDataModule (its reference_split); pass datamodule=... to the Trainer "
                "or set model.val_num_samples to 0"
            )
        split, dataset = datamodule.reference_split()
        network = self._metrics.network
        kwargs = {
            "network": network,
            "dataset": dataset,
            "dataset_name": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}",
            "split": split,
            "num_samples": self.num_samples,
            "network_checksum": network.checksum,
        }
        if trainer.is_global_zero:
            features, _, _ = reference_features(**kwargs)
        trainer.strategy.barrier("val_reference")
        if not trainer.is_global_zero:
            features, _, _ = reference_features(**kwargs)  # written by rank 0 just now: a cache hit
        inputs = pl_module.validation_inputs(reference_images(dataset, self.num_samples), self.seed)
        if len(inputs) != len(features):
            raise ValueError(
                f"{type(pl_module).__name__}.validation_inputs gave {len(inputs)} inputs for {len(features)} "
                "reference images; it must give one per reference image"
            )
        self._real = features
        self._inputs = inputs[trainer.global_rank :: trainer.world_size]
        rank_zero_info(
            f"val/fid and val/kid: {len(features)} generated vs {len(features)} '{split}' images "
            "(FID depends on N; compare runs only at equal model.val_num_samples)"
        )

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._seen = 0
        if not self._enabled(trainer):
            return
        import gan_modules.metrics as metrics  # at call time: tests swap in a tiny feature network

        if self._metrics is None:
            # Each validation embeds N fakes (and N reals the first time): compile only when that pays.
            network = metrics.feature_network(precision=self.precision, num_images=self.num_samples)
            self._metrics = metrics.GANMetrics(network=network)
        self._metrics.to(pl_module.device).reset()
        if self._real is None:
            self._load_reference(trainer, pl_module)
        self._metrics.update_features(self._real[trainer.global_rank :: trainer.world_size], real=True)

    def _add_fakes(self, pl_module: pl.LightningModule, count: int) -> None:
        """Generates and embeds up to ``count`` more of this rank's fakes."""
        for inputs in self._inputs[self._seen : self._seen + count].split(FAKE_BATCH_SIZE):
            self._metrics.update(pl_module.validation_fakes(inputs), real=False)
            self._seen += len(inputs)

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int, dataloader_idx=0
    ) -> None:
        if self._enabled(trainer):
            real = batch[0] if isinstance(batch, (list, tuple)) else batch  # images, or (images, labels, ...)
            self._add_fakes(pl_module, len(real))

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled(trainer):
            return
        self._add_fakes(pl_module, len(self._inputs))  # top up when limit_val_batches cut the loop short
        results = self._metrics.compute()  # syncs the metric states across ranks; runs on every rank
        self._metrics.reset()
        # The generated images behind these values, summed over ranks: one FID over every rank's share.
        seen = torch.tensor(float(self._seen), device=pl_module.device)
        results["num_samples"] = float(trainer.strategy.reduce(seen, reduce_op="sum"))
        pl_module.log_dict({f"val/{name}": value for name, value in results.items()}, sync_dist=True)


class PointMetrics(pl.Callback):
    """Logs ``val/modes`` and ``val/high_quality`` (PacGAN's scores, ``gan_modules.metrics.modes``) after every
    training epoch on a ``datamodules.ToyMixtureDataModule``, and draws ``<run>/samples/scatter_XXXX.png``
    (also to W&B as ``samples``). The points come from ``model.sample_batches(num_samples, ..., seed)``.
    """

    def __init__(self, num_samples: int = 2500, seed: int = 1) -> None:  # 2,500: PacGAN's protocol
        self.num_samples = num_samples
        self.seed = seed

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from gan_modules.metrics.modes import mode_coverage

        mixture = getattr(trainer.datamodule, "mixture", None)
        if mixture is None:  # trained on some other point set: nothing to score against
            return
        points = torch.cat(list(pl_module.sample_batches(self.num_samples, self.num_samples, seed=self.seed)))
        score = mode_coverage(points, mixture)
        if trainer.is_global_zero:
            path = Path(trainer.default_root_dir) / "samples" / f"scatter_{trainer.current_epoch:04d}.png"
            plot_epoch_scatter(points, mixture, score, path, trainer.current_epoch)
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_image(key="samples", images=[str(path)], step=trainer.global_step)
        pl_module.log_dict({"val/modes": score["modes"], "val/high_quality": score["high_quality"]})


def plot_epoch_scatter(points: Tensor, mixture: str, score: dict[str, float], path: Path, epoch: int) -> None:
    """The scatter of ``points`` over the mixture's modes at ``path`` (written atomically), titled with ``score``."""
    from datamodules.toy import MIXTURES, mixture_means
    from gan_modules.visualize import plot_points

    title = (f"epoch {epoch + 1}: {score['modes']:.0f}/{score['num_modes']:.0f} modes, "
             f"{100 * score['high_quality']:.1f}% high quality")  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_points(points, mixture_means(mixture), path, title, MIXTURES[mixture])


def digit_modes_num_samples(option: int | None, trainer: pl.Trainer | None, model: pl.LightningModule) -> int:
    """What ``model.val_modes_num_samples`` comes to for this fit: the images behind ``val/modes``, 0 for none.

    None is ``VAL_MODES_NUM_SAMPLES`` when the trainer's datamodule is a ``StackedMNISTDataModule`` and the model
    draws images from latents, else 0. A positive count is kept, and refused (ValueError) for a model that draws no
    images from latents, or for a trainer whose datamodule is not Stacked MNIST; without a trainer (a model asked
    outside a fit) there is no datamodule to check, and the count stands.
    """
    from datamodules.stacked_mnist import StackedMNISTDataModule

    datamodule = getattr(trainer, "datamodule", None)
    stacked = isinstance(datamodule, StackedMNISTDataModule)
    from_latents = not getattr(model, "conditional", False)  # Pix2Pix translates images; sample_batches refuses
    if option is None:
        return VAL_MODES_NUM_SAMPLES if stacked and from_latents else 0
    if option > 0 and not from_latents:
        raise ValueError(
            f"model.val_modes_num_samples is {option}, but {type(model).__name__} draws no images from latents to "
            "count digit triples in; set model.val_modes_num_samples to 0"
        )
    if option > 0 and trainer is not None and not stacked:
        found = "no datamodule" if datamodule is None else type(datamodule).__name__
        raise ValueError(
            f"model.val_modes_num_samples is {option}, but val/modes and val/kl count Stacked MNIST's digit triples "
            f"and this fit's data is {found}; train on datamodules.StackedMNISTDataModule, or set "
            "model.val_modes_num_samples to 0 (off) or null (on for Stacked MNIST only)"
        )
    return option


class DigitModes(pl.Callback):
    """Logs ``val/modes`` (how many of the 1,000 digit triples the samples reach), ``val/kl`` (their distribution's
    KL to uniform, nats) and ``val/modes_num_samples`` after every training epoch on Stacked MNIST
    (``gan_modules.metrics.digits.StackedMNISTModes``). The images come from ``model.sample_batches(num_samples,
    ..., seed)``: the same latents every epoch, so the values move with G, not with z.

    Every rank scores the same images (same weights, same latents) with counts of its own (no sum across ranks);
    all ranks log, so the values stay in step wherever they are reduced.
    """

    def __init__(self, num_samples: int = VAL_MODES_NUM_SAMPLES, seed: int = 1) -> None:
        """
        Args:
            num_samples: generated images behind each value (KL depends on it; ``evaluate.py`` uses 26,000).
            seed: seed of the latents.
        """
        if num_samples < 1:
            raise ValueError(f"DigitModes needs num_samples >= 1, got {num_samples}")
        self.num_samples = num_samples
        self.seed = seed
        self._metric = None  # StackedMNISTModes with the shipped classifier, loaded at the first epoch's end

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from gan_modules.metrics.digits import StackedMNISTModes

        if self._metric is None:
            self._metric = StackedMNISTModes(sync_on_compute=False)
        metric = self._metric.to(pl_module.device)
        # Scored in eval mode; each module then gets back its own mode (a frozen part may have been in eval).
        was_training = {module: module.training for module in pl_module.modules()}
        pl_module.eval()
        try:
            with torch.inference_mode():
                metric.reset()
                for images in pl_module.sample_batches(self.num_samples, FAKE_BATCH_SIZE, seed=self.seed):
                    metric.update(images)
                result = metric.compute()
        finally:
            for module, training in was_training.items():
                module.train(training)
        metric.reset()
        values = {"val/modes": result["modes"], "val/kl": result["kl"], "val/modes_num_samples": result["num_samples"]}
        pl_module.log_dict(values, sync_dist=True)
