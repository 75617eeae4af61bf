"""What every image model of this project shares, GAN or not: the small base under ``GANModule``.

The CLI (``train.py``) accepts any ``ImageModule``, and the safe checkpoint loader rebuilds only its
subclasses. The GANs (``GANModule``), the fake-image detector (``detector.py``) and the face swap
(``faceswap.py``) are all ImageModules; only the GANs have the D/G loop.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from gan_modules.validation import ImageMetrics


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or inf; training stops before the bad update is applied."""


def to_unit_range(batch: Tensor) -> Tensor:
    """uint8 images in [0, 255] -> float in [-1, 1]; float input is assumed to be in [-1, 1] already."""
    if batch.dtype == torch.uint8:
        return batch.float().div_(127.5).sub_(1.0)
    return batch


def first_tensor(batch) -> Tensor:
    """The images of a batch that may be ``images`` or ``(images, labels, ...)``."""
    return batch[0] if isinstance(batch, (list, tuple)) else batch


class ImageModule(pl.LightningModule):
    """Base of every image model: layout, the finite-loss check, class path and RNG state in checkpoints, samples.

    A subclass builds its networks, then calls ``choose_memory_format(channels_last)``; it implements
    ``sample_grid()`` (images in [-1, 1] for the per-epoch grid; ``sample_grid_nrow`` images per row) and, to
    be scored during fit, ``validation_metrics()`` or ``validation_inputs``/``validation_fakes``.
    ``best_metric`` names what ``checkpoints/best.ckpt`` keeps the best of.
    """

    # Images per row of the saved sample grid; None makes it near-square.
    sample_grid_nrow: int | None = None
    # Whether the CLI picks bf16-mixed for this model on a CPU with fast bf16 (False keeps fp32 there).
    cpu_bf16_pays: bool = True
    # (metric, "min" or "max") that checkpoints/best.ckpt tracks when it is logged.
    best_metric: tuple[str, str] = ("val/fid", "min")

    memory_format: torch.memory_format | None = None

    def choose_memory_format(self, channels_last: bool | None) -> None:
        """channels_last for networks with 2-D convolutions (faster on CPU and GPU) unless told otherwise."""
        has_conv = any(isinstance(m, nn.Conv2d | nn.ConvTranspose2d) for m in self.modules())
        self.memory_format = torch.channels_last if (has_conv if channels_last is None else channels_last) else None

    def setup(self, stage: str) -> None:
        # Parameters keep their identity (``.data`` changes layout), so optimizers made before or after
        # see the same tensors.
        if self.memory_format is not None:
            self.to(memory_format=self.memory_format)

    def adam(self, params, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
        """Adam, fused (one kernel for all of a network's tensors) wherever torch has it and nothing refuses it.

        torch's default on a CPU is the per-tensor loop: the vanilla MLP G's Adam step took 5.0 ms that way and
        0.49 ms fused on 2 cores, a quarter of its training batch. The update is the same up to rounding
        (tested). Not fused under a GradScaler (16-mixed), where Lightning cannot unscale a fused optimizer's
        gradients before clipping them.
        """
        params = list(params)
        scaler = getattr(getattr(self._trainer, "precision_plugin", None), "scaler", None)
        fused = scaler is None and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=fused or None)

    def images_in(self, batch: Tensor) -> Tensor:
        """A uint8 or [-1, 1] image batch as the networks take it: float in [-1, 1], in the chosen layout."""
        images = to_unit_range(batch)
        if self.memory_format is not None and images.ndim == 4:
            images = images.contiguous(memory_format=self.memory_format)
        return images

    @torch.no_grad()
    def sample_grid(self) -> Tensor:
        """Images [N, C, H, W] in [-1, 1] for the per-epoch sample grid."""
        raise NotImplementedError(f"{type(self).__name__} does not draw a sample grid")

    # ------------------------------------------------------------------ validation metrics (gan_modules.validation)

    def configure_callbacks(self) -> list[pl.Callback]:
        """Lightning's hook: the model brings its validation metrics to any Trainer, through the CLI or not."""
        metrics = self.validation_metrics()
        return [metrics] if metrics is not None else []

    def validation_metrics(self) -> pl.Callback | None:
        """The callback that scores this model during fit: by default FID/KID/PRDC (``ImageMetrics``) at a positive
        ``val_num_samples`` hyperparameter, the fakes made by ``validation_inputs`` and ``validation_fakes``."""
        hp = self.hparams
        if not hp.get("val_num_samples", 0):
            return None
        # One past the sample grid's seed: a fixed set of validation inputs of its own.
        return ImageMetrics(hp.val_num_samples, precision=hp.get("val_precision", "32"), seed=hp.sample_seed + 1)

    def validation_step(self, batch, batch_idx: int) -> None:
        """Nothing here: the validation batches pace ``ImageMetrics``, which makes one fake per real image shown.
        A model with validation of its own (the detector, the face swap) overrides it."""

    def validation_inputs(self, reference: Tensor, seed: int) -> Tensor:
        """One generator input per reference image (uint8 [N, C, H, W]) for ``val/*``, drawn with ``seed``."""
        raise ValueError(f"{type(self).__name__} cannot make validation samples; set model.val_num_samples to 0")

    def validation_fakes(self, inputs: Tensor) -> Tensor:
        """A batch of ``validation_inputs`` -> images [N, C, H, W] in [-1, 1], from the sampling network."""
        raise ValueError(f"{type(self).__name__} cannot make validation samples; set model.val_num_samples to 0")

    # ------------------------------------------------------------------ questions every model answers

    def fake_probability(self, images: Tensor) -> Tensor:
        """Images (uint8, or float in [-1, 1]) [N, C, H, W] -> probability [N] that each is generated.

        ``detect.py`` asks this and nothing else: the detector answers with its classifier, a GAN with its
        discriminator, Pix2Pix with its conditional one. A model that cannot judge says so here.
        """
        raise ValueError(
            f"{type(self).__name__} cannot tell real from generated images; pass a FakeDetector or a GAN checkpoint"
        )

    @property
    def fake_threshold(self) -> float:
        """The probability from which ``detect.py`` calls an image fake (the detector's validation-chosen one)."""
        return 0.5

    @property
    def fake_judge(self) -> str:
        """Who answers ``fake_probability``, for the commands' reports."""
        return type(self).__name__

    def progress_note(self) -> str:
        """Where training stands, for error messages; GANs add their D and G update counts."""
        return f"epoch {self.current_epoch}, global step {self.global_step}"

    def check_finite(self, name: str, loss: Tensor) -> None:
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"{name} became {loss.item()} at {self.progress_note()}. Training stopped before applying "
                "this update; the last checkpoint written is the last good one. Try a lower learning rate "
                "(--model.lr), gradient clipping, or check the data is in range."
            )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["gan_class_path"] = f"{type(self).__module__}.{type(self).__qualname__}"
        # The RNG streams draw z, augmentations and the data order: restoring them makes a resumed
        # run continue exactly as the uninterrupted one would have (on the same hardware).
        checkpoint["gan_rng_state"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        rng = checkpoint.get("gan_rng_state")
        if rng is not None and self._trainer is not None:  # only when resuming a fit, not for inference
            torch.set_rng_state(rng["torch"])
            if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(rng["cuda"])


def to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] images -> uint8 [0, 255], rounded exactly as ``torchvision.utils.save_image`` writes a PNG.

    Generated images are quantized like this wherever they meet real ones (a detector's training data, a
    saved folder): a model must not be able to tell fakes by their unquantized float values.
    """
    return images.float().add(1).mul(127.5).add_(0.5).clamp_(0, 255).to(torch.uint8)
