"""The GAN training loop every variant shares: manual optimization, D phase then G phase.

The loop decides which network updates when and on what; what an update is made of (the objective, the tricks'
hooks, the clipped and scheduled optimizer step, the logged statistics) is ``gan_modules.adversarial.Adversary``,
which the face swap's PatchGANs train through too.

Counting steps: Lightning's ``trainer.global_step`` counts *optimizer steps*, and this module makes
two per batch (one D, one G) when ``n_critic == 1``; with ``n_critic = k`` it makes k D steps per G
step. So ``--trainer.max_steps N`` stops after N optimizer steps in total, i.e. ``N / 2`` batches at
``n_critic = 1``. Prefer ``max_epochs``; the true update counts are logged as ``train/d_updates`` and
``train/g_updates``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import OptimizerCallable
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from gan_modules.adversarial import Adversary, Judge, ManualSteps, build_tricks, loggers_write_now
from gan_modules.conditional import (
    LabelledLatents,
    batch_labels,
    check_class_data,
    check_class_networks,
    grid_layout,
    labels_for,
    reference_labels,
)
from gan_modules.core import ImageModule, NonFiniteLossError, first_tensor, to_unit_range  # noqa: F401 (re-exported)
from gan_modules.layers import Conditioning, check_conditioning
from gan_modules.objectives import NonSaturating, Objective
from gan_modules.schedules import (  # noqa: F401 (ema_multi_avg_fn and lr_factor re-exported for older imports)
    check_lr_decay,
    decay_schedules,
    ema_multi_avg_fn,
    lr_factor,
    planned_batches,
)
from gan_modules.specs import from_spec, to_spec
from gan_modules.tricks.base import DOut, Trick
from gan_modules.tricks.conditional import AuxiliaryClassifier
from gan_modules.validation import DigitModes, digit_modes_num_samples


class GANModule(ImageModule):
    """Base of every GAN variant: owns the loop, the optimizers, the EMA generator and the fixed latents.

    A variant builds its ``generator`` and ``discriminator`` and passes them here with the
    remaining keyword arguments. Conditional variants override ``generator_input``,
    ``discriminate``, ``generator_extra_losses`` and ``sample_grid`` (and may set ``sample_grid_nrow``).

    Class-conditional GANs (``num_classes`` > 0; ``gan_modules.conditional``) need no hook: the variant builds
    networks that take labels (G ``(z, labels)``, D ``(images, labels)`` with a class head), and this loop carries
    each batch's labels from the data to both, the fakes drawn for the classes of the reals beside them.
    """

    # True for image-to-image variants, whose generator consumes images rather than latents.
    conditional: bool = False
    # Generated images are clamped to [-1, 1]; a model of unbounded outputs (2-D points) says False.
    clamp_output: bool = True
    # Leading latent coordinates that pick a category (toy GAN components): truncation leaves them alone.
    categorical_latents: int = 0

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
        val_modes_num_samples: int | None = None,
        channels_last: bool | None = None,
        tricks: list[Trick] | None = None,
        num_classes: int = 0,
        conditioning: Conditioning = "projection",
        acgan_weight: float = 1.0,  # Odena et al. 2017: L_S and L_C weigh the same
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
            val_num_samples: generated (and reference) images behind ``val/fid``, ``val/kid`` and ``val/precision``/
                ``val/recall`` each validation epoch (``gan_modules.validation``); 0 turns the metrics off. FID is
                biased by N: compare values only at equal N (``evaluate.py`` uses 10,000).
            val_precision: "32" (exact, the default) or "bf16" for the Inception features behind ``val/*``:
                faster on GPUs and on CPUs with fast bf16, about 1-2% feature error (its effect on FID is
                measured in ``benchmarks/results/fid.md``). ``evaluate.py`` always uses exact fp32.
            val_modes_num_samples: generated images behind ``val/modes`` and ``val/kl``, Stacked MNIST's digit-triple
                coverage (``gan_modules.validation.DigitModes``), after every training epoch. None: 2,600 when the
                datamodule is a ``StackedMNISTDataModule``, else off; 0 turns it off; a positive count requires
                Stacked MNIST. KL is biased by N: compare only at equal N (``evaluate.py`` uses 26,000).
            channels_last: train in the channels_last memory layout (faster convolutions on CPU and GPU);
                None chooses it for networks with 2-D convolutions.
            tricks: training tricks (``gan_modules.tricks``: instance noise, DiffAugment, R1, DRAGAN,
                feature matching, historical averaging), each a ``class_path`` item in YAML; applied in
                list order. See docs/tricks.md.
            num_classes: 0 (unconditional) or the class count of a class-conditional GAN (VanillaGAN, DCGAN, R3GAN),
                trained on (images, labels) batches (``gan_modules.conditional``). Each fake is drawn for the class of
                the real image beside it: the fakes follow the data's class balance, and every pass of D over a batch
                (penalties on mixes of reals and fakes too) has one label per row. The grid shows a class per row.
            conditioning: how D takes the label: "projection" adds <embed(y), phi(x)> to its logit (Miyato & Koyama
                2018); "acgan" gives it an auxiliary classifier, trained on reals and fakes, whose cross-entropy on
                the fakes G lowers (Odena et al. 2017; logged as ``train/d_class`` and ``train/g_class``).
            acgan_weight: the weight of ACGAN's class terms in both losses.
        """
        super().__init__()
        self.save_hyperparameters(ignore=["generator", "discriminator"])
        # hparams hold the objective and tricks as {class_path, init_args} (as LightningCLI writes them), so a
        # checkpoint is plain values only and load_from_checkpoint rebuilds them through from_spec below.
        self.hparams["objective"] = to_spec(objective)
        self.hparams["tricks"] = [to_spec(t) for t in tricks] if tricks is not None else None
        objective = from_spec(objective, Objective, "model.objective")
        tricks = build_tricks(tricks)
        if n_critic < 1:
            raise ValueError(f"model.n_critic must be >= 1, got {n_critic}")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"model.ema_decay must be in (0, 1) or null to disable the EMA, got {ema_decay}")
        check_lr_decay(lr_decay, lr_decay_start)
        if val_num_samples < 0:
            raise ValueError(f"model.val_num_samples must be >= 0 (0 disables val/fid), got {val_num_samples}")
        if val_modes_num_samples is not None and val_modes_num_samples < 0:
            raise ValueError(
                "model.val_modes_num_samples must be null (Stacked MNIST's default), 0 (off) or positive, got "
                f"{val_modes_num_samples}"
            )
        check_conditioning(num_classes, conditioning)
        check_class_networks(num_classes, generator, discriminator, type(self).__name__)
        for name, value in (("lr", lr), ("lr_d", lr_d), ("grad_clip_g", grad_clip_g), ("grad_clip_d", grad_clip_d)):
            if value is not None and not value > 0:
                raise ValueError(f"model.{name} must be positive, got {value}")
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        # Tricks see the networks before the EMA copy and the optimizers exist (they may check or wrap them).
        self.tricks = nn.ModuleList(tricks)
        # ACGAN's class terms go through the tricks' hooks, after model.tricks (a plain list: no state to save).
        self.class_terms = [AuxiliaryClassifier(acgan_weight)] if num_classes and conditioning == "acgan" else []
        for trick in [*self.tricks, *self.class_terms]:
            trick.setup(self)
        self.objective = objective if objective is not None else NonSaturating()
        # The D update and G's adversarial term (objective, tricks, clipped steps); plain objects, not submodules.
        self.steps = ManualSteps(self, grad_clip_algorithm, decay=lr_decay != "none")
        self.adversary = Adversary(self, self.objective, [*self.tricks, *self.class_terms], self.steps)
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
        if num_classes:  # the grid: one class per row, the same latent down each column
            self.sample_grid_nrow = grid_layout(num_samples, num_classes)[1]
        # True update counts; global_step counts both optimizers' steps (see the module docstring).
        self.d_updates = 0
        self.g_updates = 0
        # D's logits on the last few real and fake batches, for the W&B histogram (references, no copies).
        self.recent_d_outputs: deque[tuple[Tensor, Tensor]] = deque(maxlen=8)
        # Whether this step's values reach the loggers (set by training_step); the steps return statistics only then.
        self._log_now = True
        self.choose_memory_format(channels_last)

    # ------------------------------------------------------------------ hooks a variant may override

    def generator_input(self, real: Tensor) -> Tensor:
        """What the generator consumes for this batch: z ~ N(0, I) [N, latent_dim] by default."""
        return torch.randn(real.shape[0], self.latent_dim, device=real.device, dtype=real.dtype)

    def discriminate(self, images: Tensor, gen_input: Tensor) -> Tensor:
        """D's logits for ``images``; a conditional variant also looks at ``gen_input`` (here: the labels)."""
        if isinstance(gen_input, LabelledLatents):
            return self.discriminator(images, gen_input.labels)
        return self.discriminator(images)

    def _judge(self, gen_input: Tensor) -> Judge:
        """D as this batch's update sees it: ``discriminate`` given ``gen_input``, and D's features when a trick
        reads them (from the same forward pass: the discriminator's ``features_and_logits``)."""
        features = getattr(self.discriminator, "features_and_logits", None)
        if not isinstance(gen_input, LabelledLatents):
            return Judge(lambda x: self.discriminate(x, gen_input), features)
        labels = gen_input.labels
        return Judge(lambda x: self.discriminate(x, gen_input), lambda x: features(x, labels), labels=labels)

    @staticmethod
    def run_generator(net: nn.Module, gen_input: Tensor | LabelledLatents) -> Tensor:
        """``net`` (G, or its EMA copy) on ``gen_input``: z, or z and labels for a class-conditional model."""
        return net(*gen_input) if isinstance(gen_input, LabelledLatents) else net(gen_input)

    def d_input(self, images: Tensor) -> Tensor:
        """Images as D sees them: each trick's ``d_input`` in list order (identity without tricks)."""
        return self.adversary.d_input(images)

    def d_out(self, images: Tensor, gen_input: Tensor) -> DOut:
        """D's logits for images already passed through ``d_input``, with D's features when a trick needs them."""
        return self.adversary.d_out(self._judge(gen_input), images)

    def generator_extra_losses(self, fake: Tensor, real: Tensor, gen_input: Tensor) -> dict[str, Tensor]:
        """Terms added to the adversarial G loss (e.g. ``{"l1": 100 * |fake - real|}``); logged by name."""
        return {}

    @torch.no_grad()
    def fake_probability(self, images: Tensor) -> Tensor:
        """1 - sigmoid(D(x)) from the discriminator in eval mode: a probability for cross-entropy objectives, a
        monotone score for a Wasserstein or hinge critic (AUROC holds, the 0.5 threshold does not)."""
        discriminator = self.discriminator
        if getattr(discriminator, "conditioning", None) == "projection":
            raise ValueError(
                f"the projection discriminator of this class-conditional {type(self).__name__} judges (image, class) "
                "pairs, not images alone; train a FakeDetector instead"
            )
        logits = self.discriminator_outputs(images, ". Train a FakeDetector instead")
        return torch.sigmoid(-logits.float().reshape(len(images), -1).mean(1))  # D's logit says real

    @torch.no_grad()
    def discriminator_outputs(self, images: Tensor, refusal: str) -> Tensor:
        """D's raw output for uint8 or [-1, 1] ``images``, from the discriminator in eval mode (its mode restored).

        A D that cannot score single images (PacGAN's packs) raises a ValueError ending in ``refusal`` (what the
        caller's user can do instead)."""
        discriminator = self.discriminator
        was_training = discriminator.training
        discriminator.eval()
        try:
            return discriminator(self.images_in(images.to(self.device)).float())
        except RuntimeError as err:
            raise ValueError(
                f"the discriminator of this {type(self).__name__} cannot score single images ({err}); "
                f"a PacGAN discriminator judges packs of images{refusal}"
            ) from None
        finally:
            discriminator.train(was_training)

    @property
    def fake_judge(self) -> str:
        return f"discriminator of a {type(self).__name__}"

    @property
    def sampling_generator(self) -> nn.Module:
        """The EMA generator when there is one (Karras et al. 2018, Yazici et al. 2019), else G."""
        return self.generator_ema.module if self.generator_ema is not None else self.generator

    @torch.no_grad()
    def sample_grid(self) -> Tensor:
        """Images [num_samples, C, H, W] in [-1, 1] from the fixed latents, for the per-epoch grid; a class-conditional
        model's grid has one class per row (the first ``min(num_classes, num_samples)`` classes), the same latent down
        each column, and ``sample_grid_nrow`` images per row."""
        if not self.num_classes:
            return self.generate(self.fixed_z)
        rows, per_row = grid_layout(len(self.fixed_z), self.num_classes)
        labels = torch.arange(rows).repeat_interleave(per_row)
        return self.generate(self.fixed_z[:per_row].repeat(rows, 1), labels)

    def sample_batches(
        self, num_samples: int, batch_size: int = 256, seed: int = 0, labels: Tensor | None = None
    ) -> Iterator[Tensor]:
        """Images in [-1, 1] from ``num_samples`` latents drawn with ``seed``, ``batch_size`` at a time.

        The same seed gives the same images (and the same latents whatever the labels); batches keep memory flat for
        large sample counts. A class-conditional model draws image i of class ``labels[i]``, by default every class
        equally often (0, 1, ..., C - 1, 0, ...).
        """
        z = torch.randn(num_samples, self.latent_dim, generator=torch.Generator().manual_seed(seed))
        labels = labels_for(self.num_classes, labels, num_samples, type(self).__name__, balanced=True)
        classes = labels.split(batch_size) if labels is not None else [None] * len(z.split(batch_size))
        for chunk, chunk_labels in zip(z.split(batch_size), classes):
            yield self.generate(chunk, chunk_labels)

    @torch.no_grad()
    def generate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """z [N, latent_dim] (and, for a class-conditional model, labels [N]) -> images [N, C, H, W] in [-1, 1], from
        the sampling generator in eval mode.

        Always fp32, whatever the training precision (autocast is switched off): sample grids, ``val/*`` and
        ``evaluate.py`` see the same images for the same weights.
        """
        labels = labels_for(self.num_classes, labels, len(z), type(self).__name__)
        net = self.sampling_generator
        was_training = net.training
        net.eval()
        try:
            with torch.autocast(self.device.type, enabled=False):
                z = z.to(self.device)
                out = (net(z) if labels is None else net(z, labels.to(self.device))).float()
                return out.clamp(-1, 1) if self.clamp_output else out
        finally:
            net.train(was_training)

    def validation_inputs(self, reference: Tensor, seed: int) -> Tensor:
        """One latent per reference image, drawn with ``seed``: the fixed latents behind ``val/*``. A class-conditional
        model appends each one's class as a last column: the reference image's own class when the datamodule knows
        it (so the fakes have the reference's class balance), else every class equally often."""
        z = torch.randn(len(reference), self.latent_dim, generator=torch.Generator().manual_seed(seed))
        if not self.num_classes:
            return z
        labels = reference_labels(getattr(self._trainer, "datamodule", None), len(z), self.num_classes)
        return torch.cat([z, labels[:, None].to(z.dtype)], dim=1)

    def validation_fakes(self, inputs: Tensor) -> Tensor:
        if not self.num_classes:
            return self.generate(inputs)
        return self.generate(inputs[:, :-1], inputs[:, -1].long())

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = getattr(self._trainer, "datamodule", None)
        if self.num_classes and datamodule is not None:  # without one, the batches must bring their labels
            check_class_data(self.num_classes, datamodule, type(self).__name__)
            datamodule.request_labels()  # the training batches become (images, labels)

    def configure_callbacks(self) -> list[pl.Callback]:
        """The image metrics, and Stacked MNIST's modes and KL when ``val_modes_num_samples`` resolves to a count
        for the fit's datamodule (known once a Trainer holds the model; without one, only a forced count)."""
        callbacks = super().configure_callbacks()
        # hparams.get: checkpoints older than the option do not hold it; they get its default.
        num_samples = digit_modes_num_samples(self.hparams.get("val_modes_num_samples"), self._trainer, self)
        if num_samples:
            # One past the sample grid's seed, as ImageMetrics' latents: the same images every epoch.
            callbacks.append(DigitModes(num_samples, seed=self.hparams.sample_seed + 1))
        return callbacks

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
        # The run's length in D updates (one per batch); max_steps counts both optimizers' steps (module docstring).
        d_total = planned_batches(self.trainer, steps=self.n_critic + 1, per_batches=self.n_critic)
        g_total = max(1, d_total // self.n_critic)
        return [opt_d, opt_g], decay_schedules(hp.lr_decay, hp.lr_decay_start, [(opt_d, d_total), (opt_g, g_total)])

    def progress_note(self) -> str:
        return f"{super().progress_note()} (D update {self.d_updates}, G update {self.g_updates})"

    def on_before_optimizer_step(self, optimizer) -> None:
        self.steps.clip(optimizer)  # where Lightning has unscaled 16-mixed gradients (ManualSteps)

    def discriminator_step(self, real: Tensor, fake: Tensor, gen_input: Tensor) -> dict[str, Tensor]:
        """One D update on a real batch and a (detached) fake batch; returns the values to log."""
        batches = [(self._judge(gen_input), real, fake)]
        (result,) = results = self.adversary.d_step(self.optimizers()[0], batches, self.hparams.grad_clip_d)
        self.recent_d_outputs.append((result.real_logits.detach(), result.fake_logits.detach()))  # W&B histogram
        # The statistics are a dozen small ops: only on the steps that log them.
        return self.adversary.d_stats(results) if self._log_now else {}

    def generator_step(self, real: Tensor, fake: Tensor, gen_input: Tensor) -> dict[str, Tensor]:
        """One G update through a frozen D on ``fake`` (which must carry G's graph)."""
        with self.adversary.frozen_discriminator():
            adversarial, terms = self.adversary.g_loss(self._judge(gen_input), fake, real)
            extras = {**self.generator_extra_losses(fake, real, gen_input), **terms}
            g_loss = adversarial + sum(extras.values()) if extras else adversarial
            self.adversary.g_update(self.optimizers()[1], g_loss, self.hparams.grad_clip_g)
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
        self._log_now = loggers_write_now(self)
        real = self.images_in(first_tensor(batch))
        gen_input = self.generator_input(real)
        if self.num_classes:  # the fakes are drawn for the classes of the reals
            gen_input = LabelledLatents(gen_input, batch_labels(batch, self.num_classes, self.device))
        # One generator forward serves both phases when a G update follows this D update (as in
        # the PyTorch DCGAN example): D sees it detached, G then backpropagates through it.
        g_turn = (self.d_updates + 1) % self.n_critic == 0
        with torch.set_grad_enabled(g_turn):
            fake = self.run_generator(self.generator, gen_input)

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

    # ------------------------------------------------------------------ checkpoint state

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)  # class path and RNG state
        checkpoint["gan_update_counts"] = {"d_updates": self.d_updates, "g_updates": self.g_updates}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        counts = checkpoint.get("gan_update_counts", {})
        self.d_updates = counts.get("d_updates", 0)
        self.g_updates = counts.get("g_updates", 0)
