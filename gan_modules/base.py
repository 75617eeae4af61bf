"""The GAN training loop every variant shares: manual optimization, D phase then G phase.

Counting steps: Lightning's ``trainer.global_step`` counts *optimizer steps*, and this module makes
two per batch (one D, one G) when ``n_critic == 1``; with ``n_critic = k`` it makes k D steps per G
step. So ``--trainer.max_steps N`` stops after N optimizer steps in total, i.e. ``N / 2`` batches at
``n_critic = 1``. Prefer ``max_epochs``; the true update counts are logged as ``train/d_updates`` and
``train/g_updates``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Literal

import torch
from pytorch_lightning.cli import OptimizerCallable
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from gan_modules.core import ImageModule, NonFiniteLossError, first_tensor, to_unit_range  # noqa: F401 (re-exported)
from gan_modules.objectives import NonSaturating, Objective
from gan_modules.specs import from_spec, to_spec
from gan_modules.tricks.base import DOut, Step, Trick


def lr_factor(kind: str, start: float, total: int, step: int) -> float:
    """The learning-rate multiplier after ``step`` of ``total`` updates: 1 until ``start * total``, then a linear
    or cosine fall to 0 at ``total`` (and 0 after it)."""
    begin = start * total
    if step <= begin:
        return 1.0
    progress = min(1.0, (step - begin) / max(1.0, total - begin))
    if kind == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def ema_multi_avg_fn(decay: float):
    """EMA update for ``AveragedModel`` with the usual warm-up: decay_t = min(decay, (1 + t) / (10 + t)).

    The warm-up (as in TF's ExponentialMovingAverage with num_updates) lets the average follow the
    fast-moving early weights instead of dragging the random initialisation along for ~1/(1-decay) steps.
    """

    @torch.no_grad()
    def update(ema_params: list[Tensor], params: list[Tensor], num_averaged: Tensor) -> None:
        n = int(num_averaged)
        beta = min(decay, (1 + n) / (10 + n))
        float_pairs = [(e, p) for e, p in zip(ema_params, params) if e.is_floating_point()]
        if float_pairs:
            ema_float, float_params = zip(*float_pairs)
            torch._foreach_lerp_(list(ema_float), list(float_params), 1.0 - beta)
        for e, p in zip(ema_params, params):
            if not e.is_floating_point():  # e.g. BatchNorm's num_batches_tracked
                e.copy_(p)

    return update


class GANModule(ImageModule):
    """Base of every GAN variant: owns the loop, the optimizers, the EMA generator and the fixed latents.

    A variant builds its ``generator`` and ``discriminator`` and passes them here with the
    remaining keyword arguments. Conditional variants override ``generator_input``,
    ``discriminate``, ``generator_extra_losses`` and ``sample_grid`` (and may set ``sample_grid_nrow``).
    """

    # True for image-to-image variants, whose generator consumes images rather than latents.
    conditional: bool = False
    # Generated images are clamped to [-1, 1]; a model of unbounded outputs (2-D points) says False.
    clamp_output: bool = True

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        latent_dim: int,
        objective: Objective | None = None,
        lr: float = 2e-4,  # Radford et al. 2016
        lr_d: float | None = None,
        betas: tuple[float, float] = (0.5, 0.999),  # Radford et al. 2016: beta1 0.9 oscillates
        optimizer_g: OptimizerCallable | None = None,
        optimizer_d: OptimizerCallable | None = None,
        n_critic: int = 1,
        grad_clip_g: float | None = None,
        grad_clip_d: float | None = None,
        grad_clip_algorithm: Literal["norm", "value"] = "norm",
        ema_decay: float | None = 0.999,
        lr_decay: Literal["none", "linear", "cosine"] = "none",
        lr_decay_start: float = 0.0,
        num_samples: int = 64,
        sample_seed: int = 0,
        val_num_samples: int = 500,  # CPU-sized (about a minute of Inception on 2 cores); 10000 on a GPU
        val_precision: Literal["32", "bf16"] = "32",
        channels_last: bool | None = None,
        tricks: list[Trick] | None = None,
    ) -> None:
        """
        Args:
            generator: the generator network (built by the variant).
            discriminator: the discriminator network, returning raw logits (built by the variant).
            latent_dim: size of z.
            objective: the loss pair; NonSaturating() when not given.
            lr: learning rate of the default Adam optimizers (both networks unless ``lr_d`` is set).
            lr_d: the discriminator's learning rate when it differs from ``lr`` (TTUR, Heusel et al. 2017).
            betas: Adam betas of the default optimizers.
            optimizer_g: another optimizer for G (``class_path`` + ``init_args`` in YAML); overrides lr/betas.
            optimizer_d: another optimizer for D; overrides lr/lr_d/betas.
            n_critic: discriminator updates per generator update (5 for WGAN).
            grad_clip_g: clip G's gradients to this norm/value; None disables.
            grad_clip_d: clip D's gradients to this norm/value; None disables.
            grad_clip_algorithm: "norm" (total L2 norm) or "value" (elementwise, Keras' clipvalue).
            ema_decay: decay of the generator's exponential moving average; None disables the EMA.
            lr_decay: "linear" or "cosine" takes both learning rates to 0 by the end of the run (per update,
                over ``trainer.max_epochs`` or ``max_steps``; pix2pix's linear decay, Isola et al. 2017); "none"
                keeps them constant. Applies to ``optimizer_g``/``optimizer_d`` too.
            lr_decay_start: the fraction of the run (in [0, 1)) after which the decay begins; 0.5 halves
                the run into a constant and a decaying part, as pix2pix does.
            num_samples: how many fixed latents make the sample grid.
            sample_seed: seed of the fixed latents, independent of the training seed.
            val_num_samples: generated (and reference) images behind ``val/fid``, ``val/kid`` and
                ``val/precision``/``val/recall`` each validation epoch; 0 turns the metrics off. FID is
                biased by N: compare values only at equal N (``evaluate.py`` uses 10,000).
            val_precision: "32" (exact, the default) or "bf16" for the Inception features behind ``val/*``:
                faster on GPUs and on CPUs with fast bf16, about 1-2% feature error (its effect on FID is
                measured in ``benchmarks/results/fid.md``). ``evaluate.py`` always uses exact fp32.
            channels_last: train in the channels_last memory layout (faster convolutions on CPU and GPU);
                None chooses it for networks with 2-D convolutions.
            tricks: training tricks (``gan_modules.tricks``: instance noise, DiffAugment, R1, DRAGAN,
                feature matching, historical averaging), each a ``class_path`` item in YAML; applied in
                list order. See docs/tricks.md.
        """
        super().__init__()
        self.save_hyperparameters(ignore=["generator", "discriminator"])
        # hparams hold the objective and tricks as {class_path, init_args} (as LightningCLI writes them), so a
        # checkpoint is plain values only and load_from_checkpoint rebuilds them through from_spec below.
        self.hparams["objective"] = to_spec(objective)
        self.hparams["tricks"] = [to_spec(t) for t in tricks] if tricks is not None else None
        objective = from_spec(objective, Objective, "model.objective")
        tricks = [from_spec(t, Trick, "model.tricks") for t in tricks] if tricks is not None else None
        names = [type(t).__name__ for t in tricks or []]
        if twice := sorted({name for name in names if names.count(name) > 1}):
            raise ValueError(
                f"model.tricks lists {', '.join(twice)} more than once (a config's own tricks and an overlay may both "
                "add it); keep one, or clear the config's list first with --model.tricks '[]'"
            )
        if n_critic < 1:
            raise ValueError(f"model.n_critic must be >= 1, got {n_critic}")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"model.ema_decay must be in (0, 1) or null to disable the EMA, got {ema_decay}")
        if lr_decay not in ("none", "linear", "cosine"):
            raise ValueError(f"model.lr_decay must be 'none', 'linear' or 'cosine', got {lr_decay!r}")
        if not 0.0 <= lr_decay_start < 1.0:
            raise ValueError(f"model.lr_decay_start is a fraction of the run in [0, 1), got {lr_decay_start}")
        if val_num_samples < 0:
            raise ValueError(f"model.val_num_samples must be >= 0 (0 disables val/fid), got {val_num_samples}")
        for name, value in (("lr", lr), ("lr_d", lr_d), ("grad_clip_g", grad_clip_g), ("grad_clip_d", grad_clip_d)):
            if value is not None and not value > 0:
                raise ValueError(f"model.{name} must be positive, got {value}")
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = latent_dim
        # Tricks see the networks before the EMA copy and the optimizers exist (they may check or wrap them).
        self.tricks = nn.ModuleList(tricks or [])
        for trick in self.tricks:
            trick.setup(self)
        self._features_needed = any(trick.needs_features for trick in self.tricks)
        self._real_seen_by_d: tuple[Tensor, DOut] | None = None  # this batch's D-step reals, for G-step tricks
        self.objective = objective if objective is not None else NonSaturating()
        # The callables themselves: under LightningCLI ``hparams`` holds their config dicts instead.
        self.optimizer_g_factory = optimizer_g
        self.optimizer_d_factory = optimizer_d
        self.n_critic = n_critic
        self.generator_ema: AveragedModel | None = None
        if ema_decay is not None:
            self.generator_ema = AveragedModel(generator, multi_avg_fn=ema_multi_avg_fn(ema_decay), use_buffers=True)
            self.generator_ema.requires_grad_(False)
        fixed_z = torch.randn(num_samples, latent_dim, generator=torch.Generator().manual_seed(sample_seed))
        self.register_buffer("fixed_z", fixed_z)
        # True update counts; global_step counts both optimizers' steps (see the module docstring).
        self.d_updates = 0
        self.g_updates = 0
        # D's logits on the last few real and fake batches, for the W&B histogram (references, no copies).
        self.recent_d_outputs: deque[tuple[Tensor, Tensor]] = deque(maxlen=8)
        # Whether this step's values reach the loggers (set by training_step); the steps return statistics only then.
        self._log_now = True
        # Validation metrics live outside the module tree (object.__setattr__): the Inception weights
        # stay out of every checkpoint and a resume never depends on them.
        object.__setattr__(self, "_val_metrics", None)
        object.__setattr__(self, "_val_reference", None)
        self._val_seen = 0
        self.choose_memory_format(channels_last)

    # ------------------------------------------------------------------ hooks a variant may override

    def generator_input(self, real: Tensor) -> Tensor:
        """What the generator consumes for this batch: z ~ N(0, I) [N, latent_dim] by default."""
        return torch.randn(real.shape[0], self.latent_dim, device=real.device, dtype=real.dtype)

    def discriminate(self, images: Tensor, gen_input: Tensor) -> Tensor:
        """D's logits for ``images``; a conditional variant also looks at ``gen_input``."""
        return self.discriminator(images)

    def d_input(self, images: Tensor) -> Tensor:
        """Images as D sees them: each trick's ``d_input`` in list order (identity without tricks)."""
        for trick in self.tricks:
            images = trick.d_input(images, self)
        return images

    def d_out(self, images: Tensor, gen_input: Tensor) -> DOut:
        """D's logits for images already passed through ``d_input``, with D's features when a trick needs them
        (from the same forward pass: the discriminator's ``features_and_logits``)."""
        if self._features_needed:
            features, logits = self.discriminator.features_and_logits(images)
            return DOut(logits, features)
        return DOut(self.discriminate(images, gen_input))

    def _trick_terms(self, kind: str, step: Step) -> dict[str, Tensor]:
        terms: dict[str, Tensor] = {}
        for trick in self.tricks:
            for name, value in getattr(trick, f"{kind}_terms")(step).items():
                if name in terms:
                    raise ValueError(f"two tricks both add a {kind.upper()} term named {name!r}; keep one of them")
                terms[name] = value
        return terms

    def generator_extra_losses(self, fake: Tensor, real: Tensor, gen_input: Tensor) -> dict[str, Tensor]:
        """Terms added to the adversarial G loss (e.g. ``{"l1": 100 * |fake - real|}``); logged by name."""
        return {}

    @property
    def sampling_generator(self) -> nn.Module:
        """The EMA generator when there is one (Karras et al. 2018, Yazici et al. 2019), else G."""
        return self.generator_ema.module if self.generator_ema is not None else self.generator

    @torch.no_grad()
    def sample_grid(self) -> Tensor:
        """Images [num_samples, C, H, W] in [-1, 1] from the fixed latents, for the per-epoch grid."""
        return self.generate(self.fixed_z)

    def sample_batches(self, num_samples: int, batch_size: int = 256, seed: int = 0) -> Iterator[Tensor]:
        """Images in [-1, 1] from ``num_samples`` latents drawn with ``seed``, ``batch_size`` at a time.

        The same seed gives the same images; batches keep memory flat for large sample counts.
        """
        z = torch.randn(num_samples, self.latent_dim, generator=torch.Generator().manual_seed(seed))
        for chunk in z.split(batch_size):
            yield self.generate(chunk)

    @torch.no_grad()
    def generate(self, z: Tensor) -> Tensor:
        """z [N, latent_dim] -> images [N, C, H, W] in [-1, 1], from the sampling generator in eval mode.

        Always fp32, whatever the training precision (autocast is switched off): sample grids, ``val/*`` and
        ``evaluate.py`` see the same images for the same weights.
        """
        net = self.sampling_generator
        was_training = net.training
        net.eval()
        try:
            with torch.autocast(self.device.type, enabled=False):
                out = net(z.to(self.device)).float()
                return out.clamp(-1, 1) if self.clamp_output else out
        finally:
            net.train(was_training)

    # ------------------------------------------------------------------ optimization

    def configure_optimizers(self):
        hp = self.hparams
        if self.optimizer_d_factory is not None:
            opt_d = self.optimizer_d_factory(self.discriminator.parameters())
        else:
            opt_d = self.adam(self.discriminator.parameters(), hp.lr_d or hp.lr, hp.betas)
        if self.optimizer_g_factory is not None:
            opt_g = self.optimizer_g_factory(self.generator.parameters())
        else:
            opt_g = self.adam(self.generator.parameters(), hp.lr, hp.betas)
        if hp.get("lr_decay", "none") == "none":
            return [opt_d, opt_g]
        d_total = self._planned_d_updates()
        g_total = max(1, d_total // self.n_critic)
        schedules = [
            torch.optim.lr_scheduler.LambdaLR(opt, partial(lr_factor, hp.lr_decay, hp.lr_decay_start, total))
            for opt, total in ((opt_d, d_total), (opt_g, g_total))
        ]
        return [opt_d, opt_g], schedules

    def _planned_d_updates(self) -> int:
        """The run's length in D updates (one per batch), for the learning-rate decay."""
        trainer = self.trainer
        batches = trainer.estimated_stepping_batches if trainer.max_epochs not in (None, -1) else math.inf
        if trainer.max_steps not in (None, -1):  # max_steps counts both optimizers' steps (module docstring)
            batches = min(batches, trainer.max_steps * self.n_critic / (self.n_critic + 1))
        if not math.isfinite(batches):
            raise ValueError(
                "model.lr_decay needs a run of known length: set trainer.max_epochs or trainer.max_steps, "
                "or set model.lr_decay to 'none'"
            )
        return max(1, int(batches))

    def progress_note(self) -> str:
        return f"{super().progress_note()} (D update {self.d_updates}, G update {self.g_updates})"

    def _optimizer_step(self, optimizer, loss: Tensor, clip: float | None) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        # Clipping waits for on_before_optimizer_step, which Lightning calls inside step() after it has
        # unscaled 16-mixed gradients: clipped here, the GradScaler's scaled gradients would be clipped.
        self._pending_clip = clip
        try:
            optimizer.step()
        finally:
            self._pending_clip = None
        if self.hparams.get("lr_decay", "none") != "none":
            self.lr_schedulers()[self.optimizers().index(optimizer)].step()

    def on_before_optimizer_step(self, optimizer) -> None:
        clip = getattr(self, "_pending_clip", None)
        if clip is not None:
            self.clip_gradients(
                optimizer, gradient_clip_val=clip, gradient_clip_algorithm=self.hparams.grad_clip_algorithm
            )

    def discriminator_step(self, real: Tensor, fake: Tensor, gen_input: Tensor) -> dict[str, Tensor]:
        """One D update on a real batch and a (detached) fake batch; returns the values to log."""
        opt_d = self.optimizers()[0]
        fake = fake.detach()
        real_in, fake_in = self.d_input(real), self.d_input(fake)
        real_out, fake_out = self.d_out(real_in, gen_input), self.d_out(fake_in, gen_input)
        real_logits, fake_logits = real_out.logits, fake_out.logits
        d_loss = self.objective.d_loss(real_logits, fake_logits)
        penalty = self.objective.d_penalty(lambda x: self.discriminate(x, gen_input), real_in, fake_in)
        if penalty is not None:
            d_loss = d_loss + penalty
        terms = {}
        if self.tricks:
            d = lambda x: self.discriminate(x, gen_input)
            terms = self._trick_terms("d", Step(self, self.d_updates, real_in, fake_in, real_out, fake_out, d))
            d_loss = d_loss + sum(terms.values()) if terms else d_loss
            features = real_out.features.detach() if real_out.features is not None else None
            self._real_seen_by_d = (real_in.detach(), DOut(real_logits.detach(), features))
        self.check_finite("train/d_loss", d_loss)
        self._optimizer_step(opt_d, d_loss, self.hparams.grad_clip_d)
        self.objective.after_d_step(self.discriminator)
        for trick in self.tricks:
            trick.after_d_step(self)
        self.d_updates += 1
        self.recent_d_outputs.append((real_logits.detach(), fake_logits.detach()))  # for the W&B histogram
        if not self._log_now:  # the statistics below are a dozen small ops: only on the steps that log them
            return {}
        with torch.no_grad():
            # D's raw scores for every objective; as probabilities (and the accuracy of D's call at 0.5)
            # only where the loss is a cross-entropy: a Wasserstein or hinge critic's sigmoid means nothing.
            stats = {
                "train/d_loss": d_loss.detach(),
                "train/d_real_score": real_logits.float().mean(),
                "train/d_fake_score": fake_logits.float().mean(),
            }
            if self.objective.probabilistic:
                stats["train/d_real"] = torch.sigmoid(real_logits).mean()
                stats["train/d_fake"] = torch.sigmoid(fake_logits).mean()
                stats["train/d_acc"] = 0.5 * ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean())
            if penalty is not None:
                stats["train/d_penalty"] = penalty.detach()
            stats.update({f"train/d_{name}": value.detach() for name, value in terms.items()})
        return stats

    def generator_step(self, real: Tensor, fake: Tensor, gen_input: Tensor) -> dict[str, Tensor]:
        """One G update through a frozen D on ``fake`` (which must carry G's graph)."""
        opt_g = self.optimizers()[1]
        # D's weights get no gradient from the G loss: freezing them saves that backward work.
        self.discriminator.requires_grad_(False)
        try:
            fake_in = self.d_input(fake)
            fake_out = self.d_out(fake_in, gen_input)
            logits = fake_out.logits
            for trick in self.tricks:
                logits = trick.g_logits(logits, self)
            adversarial = self.objective.g_loss(logits)
            extras = self.generator_extra_losses(fake, real, gen_input)
            if self.tricks:
                real_in, real_out = self._real_seen_by_d or (self.d_input(real), None)
                d = lambda x: self.discriminate(x, gen_input)
                step = Step(self, self.g_updates, real_in, fake_in, real_out, fake_out, d)
                extras = {**extras, **self._trick_terms("g", step)}
            g_loss = adversarial + sum(extras.values()) if extras else adversarial
            self.check_finite("train/g_loss", g_loss)
            self._optimizer_step(opt_g, g_loss, self.hparams.grad_clip_g)
        finally:
            self.discriminator.requires_grad_(True)
        for trick in self.tricks:
            trick.after_g_step(self)
        self.g_updates += 1
        if self.generator_ema is not None:
            self.generator_ema.update_parameters(self.generator)
        if not self._log_now:
            return {}
        stats = {"train/g_loss": g_loss.detach()}
        if extras:
            stats["train/g_adversarial"] = adversarial.detach()
            stats.update({f"train/g_{name}": value.detach() for name, value in extras.items()})
        return stats

    def training_step(self, batch, batch_idx: int) -> None:
        self._log_now = self._loggers_write_this_step()
        real = self.images_in(first_tensor(batch))
        gen_input = self.generator_input(real)
        # One generator forward serves both phases when a G update follows this D update (as in
        # the PyTorch DCGAN example): D sees it detached, G then backpropagates through it.
        g_turn = (self.d_updates + 1) % self.n_critic == 0
        with torch.set_grad_enabled(g_turn):
            fake = self.generator(gen_input)

        # Discriminator: push real logits up and fake logits down.
        stats = self.discriminator_step(real, fake, gen_input)
        # Generator: push D's logits on fakes up, every n_critic D updates.
        if g_turn:
            stats.update(self.generator_step(real, fake, gen_input))
        if self._log_now:
            stats["train/d_updates"] = float(self.d_updates)
            stats["train/g_updates"] = float(self.g_updates)
            shown = {k: stats.pop(k) for k in ("train/d_loss", "train/g_loss") if k in stats}  # on the progress bar
            self.log_dict(shown, prog_bar=True, on_step=True, on_epoch=False, batch_size=real.shape[0])
            self.log_dict(stats, prog_bar=False, on_step=True, on_epoch=False, batch_size=real.shape[0])

    def _loggers_write_this_step(self) -> bool:
        """Whether the loggers record this step (every ``trainer.log_every_n_steps`` batches).

        ``self.log`` costs about 1 ms per key in Lightning 2.6 (it re-applies ``.to(device)`` over each
        result's state), which is a third of a vanilla-GAN step on a CPU. Step values logged between
        logger writes are dropped by Lightning anyway, so they are only logged when they will be written.
        """
        connector = getattr(self._trainer, "_logger_connector", None)
        return connector is None or connector.should_update_logs

    # ------------------------------------------------------------------ validation: FID, KID, PRDC

    def _val_enabled(self) -> bool:
        # The sanity check only proves the loop runs: it must not cost a FID pass.
        return bool(self.hparams.val_num_samples) and not self.trainer.sanity_checking

    def _reference(self) -> Tensor:
        """Reference-split features for val/fid, from the on-disk cache (rank 0 computes them once)."""
        from gan_modules.metrics.reference import reference_features

        if self._val_reference is None:
            datamodule = self.trainer.datamodule
            if datamodule is None or not hasattr(datamodule, "reference_split"):
                raise ValueError(
                    "val/fid needs an ImageDataModule (its reference_split); pass datamodule=... to the Trainer "
                    "or set model.val_num_samples to 0"
                )
            split, dataset = datamodule.reference_split()
            kwargs = {
                "network": self._val_metrics.network,
                "dataset": dataset,
                "dataset_name": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}",
                "split": split,
                "num_samples": self.hparams.val_num_samples,
                "network_checksum": self._val_metrics.network.checksum,
            }
            if self.trainer.is_global_zero:
                features, _, _ = reference_features(**kwargs)
            self.trainer.strategy.barrier("val_reference")
            if not self.trainer.is_global_zero:
                features, _, _ = reference_features(**kwargs)  # written by rank 0 just now: a cache hit
            object.__setattr__(self, "_val_reference", features)
            rank_zero_info(
                f"val/fid and val/kid: {len(features)} generated vs {len(features)} '{split}' images "
                "(FID depends on N; compare runs only at equal model.val_num_samples)"
            )
        return self._val_reference

    def on_validation_epoch_start(self) -> None:
        self._val_seen = 0
        if not self._val_enabled():
            return
        from gan_modules.metrics import GANMetrics, feature_network

        if self._val_metrics is None:
            # Each validation embeds N fakes (and N reals the first time): compile only when that pays.
            network = feature_network(precision=self.hparams.val_precision, num_images=self.hparams.val_num_samples)
            object.__setattr__(self, "_val_metrics", GANMetrics(network=network))
        self._val_metrics.to(self.device).reset()
        real = self._reference()
        rank, world = self.global_rank, self.trainer.world_size
        self._val_metrics.update_features(real[rank::world], real=True)
        # This rank's share of a fixed latent set, the same every epoch: val/fid moves with G, not with z.
        seed = torch.Generator().manual_seed(self.hparams.sample_seed + 1)
        object.__setattr__(self, "_val_z", torch.randn(len(real), self.latent_dim, generator=seed)[rank::world])

    def _validation_fakes(self, count: int) -> None:
        """Generates and embeds up to ``count`` more of this rank's fakes."""
        for z in self._val_z[self._val_seen : self._val_seen + count].split(256):
            self._val_metrics.update(self.generate(z), real=False)
            self._val_seen += len(z)

    def validation_step(self, batch, batch_idx: int) -> None:
        if self._val_enabled():
            self._validation_fakes(len(first_tensor(batch)))

    def on_validation_epoch_end(self) -> None:
        if not self._val_enabled():
            return
        self._validation_fakes(len(self._val_reference))  # top up when limit_val_batches cut the loop short
        results = self._val_metrics.compute()  # syncs the metric states across ranks; runs on every rank
        self._val_metrics.reset()
        # The generated images behind these values, summed over ranks: one FID over every rank's share.
        seen = torch.tensor(float(self._val_seen), device=self.device)
        results["num_samples"] = float(self.trainer.strategy.reduce(seen, reduce_op="sum"))
        self.log_dict({f"val/{name}": value for name, value in results.items()}, sync_dist=True)

    # ------------------------------------------------------------------ checkpoint state

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)  # class path and RNG state
        checkpoint["gan_update_counts"] = {"d_updates": self.d_updates, "g_updates": self.g_updates}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        counts = checkpoint.get("gan_update_counts", {})
        self.d_updates = counts.get("d_updates", 0)
        self.g_updates = counts.get("g_updates", 0)


def grid_rows(n: int) -> int:
    """Images per row for a near-square grid of n images."""
    return max(1, math.ceil(math.sqrt(n)))


def resolve_device(device: str) -> torch.device:
    """'auto' -> the GPU when there is one, else the CPU; anything else as torch.device understands it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_gan(checkpoint_path: str | Path, map_location: str | torch.device = "cpu") -> GANModule:
    """Rebuilds the GAN variant a checkpoint was trained as; see :func:`gan_modules.checkpoints.load_gan`."""
    from gan_modules.checkpoints import load_gan as safe_load_gan

    return safe_load_gan(checkpoint_path, map_location=map_location)
