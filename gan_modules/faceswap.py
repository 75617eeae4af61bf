"""DeepFake face swap (seed 001): one shared encoder, one decoder per identity, trained on warped faces.

Each identity's decoder learns to rebuild that identity's faces from the shared encoder's code of a randomly
warped copy (``random_warp``), so the encoder has to describe *how* a face is posed and lit in a form both
decoders read, while each decoder stores *whose* face it is. Swapping is decoding A's code with B's decoder.

The networks follow the 2017 deepfakes Keras code that seed 001 describes (64x64 faces, the encoder's
5x5 stride-2 convs 128-256-512-1024 with LeakyReLU 0.1, a dense 1024 bottleneck, dense back to 4x4x1024,
one conv + PixelShuffle upscale to 8x8x512; decoders upscale 256-128-64 and end in a 5x5 conv; Adam 5e-5,
betas 0.5/0.999) at any size; the loss adds SSIM to that code's L1, and an optional PatchGAN per identity.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch
from torch import Tensor, nn
from torchmetrics.functional.image import structural_similarity_index_measure

from gan_modules.adversarial import Adversary, Judge, ManualSteps, build_tricks, loggers_write_now
from gan_modules.core import ImageModule, to_unit_range
from gan_modules.layers import init_glorot_weights, upsample_2x
from gan_modules.objectives import NonSaturating, Objective
from gan_modules.pix2pix import PatchGANDiscriminator
from gan_modules.schedules import check_lr_decay, decay_schedules, planned_batches
from gan_modules.specs import from_spec, to_spec
from gan_modules.tricks.augment import random_warp
from gan_modules.tricks.base import Trick

IDENTITIES = ("a", "b")
MAX_WIDTH_FACTOR = 8  # widths double per stage up to 8x base_channels (1024 for the 2017 code's 128)


def encoder_stages(image_size: int) -> tuple[int, int]:
    """(stride-2 convs, side of the bottleneck's feature map) for ``image_size``: halve while the side stays >= 4.

    64 -> (4, 4) as the 2017 code; 32 -> (3, 4); 128 -> (5, 4); 96 -> (4, 6).
    """
    side, downs = image_size, 0
    while side % 2 == 0 and side // 2 >= 4:
        side //= 2
        downs += 1
    if downs < 2:
        raise ValueError(
            f"the face swap needs image_size >= 16 with two factors of 2 (e.g. 32, 64, 128), got {image_size}"
        )
    return downs, side


def ssim_window(sigma: float) -> int:
    """Side of torchmetrics' Gaussian SSIM window for ``sigma`` (11 for Wang et al.'s 1.5)."""
    return int(3.5 * sigma + 0.5) * 2 + 1


def _upscale(in_channels: int, out_channels: int, mode: str) -> nn.Module:
    """[N, C_in, H, W] -> [N, C_out, 2H, 2W]: the 2017 code's upscale block (conv, LeakyReLU 0.1, PixelShuffle)."""
    return nn.Sequential(upsample_2x(in_channels, out_channels, mode=mode, bias=True), nn.LeakyReLU(0.1))


class FaceSwapEncoder(nn.Module):
    """images [N, C, S, S] -> codes [N, W / 2, 2s, 2s] (s: ``encoder_stages``; W: the widest conv).

    Stride-2 5x5 convs (LeakyReLU 0.1) down to s x s, flattened through a dense bottleneck of
    ``bottleneck_dim`` and back (both linear, as the 2017 code), reshaped and upscaled once.
    """

    def __init__(
        self,
        image_size: int = 64,
        in_channels: int = 3,
        base_channels: int = 128,
        bottleneck_dim: int = 1024,
        upsample: str = "pixelshuffle",
    ) -> None:
        super().__init__()
        downs, self.side = encoder_stages(image_size)
        widths = [base_channels * min(2**i, MAX_WIDTH_FACTOR) for i in range(downs)]
        layers: list[nn.Module] = []
        for i, width in enumerate(widths):
            layers += [
                nn.Conv2d(in_channels if i == 0 else widths[i - 1], width, 5, stride=2, padding=2),
                nn.LeakyReLU(0.1),
            ]
        self.convs = nn.Sequential(*layers)
        self.width = widths[-1]
        flat = self.width * self.side * self.side
        self.bottleneck = nn.Sequential(nn.Linear(flat, bottleneck_dim), nn.Linear(bottleneck_dim, flat))
        self.out_channels = max(1, self.width // 2)
        self.upscale = _upscale(self.width, self.out_channels, upsample)
        init_glorot_weights(self)  # Keras' defaults, as the 2017 code

    def forward(self, images: Tensor) -> Tensor:
        x = self.bottleneck(self.convs(images).flatten(1))
        return self.upscale(x.view(-1, self.width, self.side, self.side))


class FaceSwapDecoder(nn.Module):
    """codes [N, C_code, 2s, 2s] -> images [N, C, S, S] in [-1, 1].

    Upscale blocks halving the width (not below ``min_channels``) up to S, then a 5x5 conv and tanh (the 2017
    code ends in a sigmoid for [0, 1] images; this project's images are in [-1, 1]).
    """

    def __init__(
        self,
        image_size: int = 64,
        code_channels: int = 512,
        out_channels: int = 3,
        min_channels: int = 64,
        upsample: str = "pixelshuffle",
    ) -> None:
        super().__init__()
        downs, _ = encoder_stages(image_size)
        blocks: list[nn.Module] = []
        width = code_channels
        for _ in range(downs - 1):
            blocks.append(_upscale(width, max(min_channels, width // 2), upsample))
            width = max(min_channels, width // 2)
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Sequential(nn.Conv2d(width, out_channels, kernel_size=5, padding=2), nn.Tanh())
        init_glorot_weights(self)

    def forward(self, codes: Tensor) -> Tensor:
        return self.out(self.blocks(codes))


class FaceSwap(ImageModule):
    """DeepFake autoencoder: a shared ``encoder``, ``decoders["a"]`` and ``decoders["b"]``; swap by crossing them.

    Training (manual optimization): each batch ``(a_images, b_images)`` is warped (``random_warp``); each
    identity's decoder rebuilds its targets from the code of its warped inputs with
    ``L1 + ssim_weight * (1 - SSIM)``. With ``adversarial_weight > 0`` one PatchGAN per identity
    (``discriminators``, conditioned on the warped input as pix2pix's) judges rebuilt against real faces
    through ``objective``, D step first, then the autoencoder step: the same adversarial update as every GAN's
    (``gan_modules.adversarial``), so ``tricks``, gradient clipping and the learning-rate decay apply to it.
    ``trainer.global_step`` counts optimizer steps: one per batch, two with the discriminators.

    Inference: ``swap(images, to="b")`` and ``reconstruct(images, identity)``. The sample grid shows six rows of
    ``num_samples`` fixed faces (from the first training batch): A, A rebuilt, A as B, B, B rebuilt, B as A.
    Validation logs ``val/l1`` and ``val/ssim`` of the unwarped held-out faces' reconstructions, and
    ``checkpoints/best.ckpt`` keeps the lowest ``val/l1``.
    """

    best_metric = ("val/l1", "min")
    # What tricks read of their host (TrickHost): D judges (input, face) pairs; one autoencoder update per batch.
    conditional = True
    n_critic = 1

    def __init__(
        self,
        image_size: int = 64,
        num_channels: int = 3,
        base_channels: int = 128,  # the 2017 code's encoder: 128-256-512-1024
        bottleneck_dim: int = 1024,  # the 2017 code's ENCODER_DIM
        decoder_min_channels: int = 64,  # the 2017 code's last upscale width
        upsample: Literal["pixelshuffle", "nearest"] = "pixelshuffle",  # the 2017 code: PixelShuffler
        lr: float = 5e-5,  # the 2017 code
        lr_d: float | None = None,
        betas: tuple[float, float] = (0.5, 0.999),  # the 2017 code
        warp_strength: float = 1.0,
        flip_prob: float = 0.4,  # the 2017 code's random_flip
        ssim_weight: float = 1.0,  # the setting of every measurement in benchmarks/results/faceswap.md
        ssim_sigma: float = 1.5,  # Wang et al. 2004: a Gaussian window of sigma 1.5 (11x11)
        adversarial_weight: float = 0.0,
        objective: Objective | None = None,
        d_channels: int = 64,
        num_samples: int = 8,
        channels_last: bool | None = None,
        tricks: list[Trick] | None = None,
        grad_clip_g: float | None = None,
        grad_clip_d: float | None = None,
        grad_clip_algorithm: Literal["norm", "value"] = "norm",
        lr_decay: Literal["none", "linear", "cosine"] = "none",
        lr_decay_start: float = 0.0,
    ) -> None:
        """
        Args:
            image_size: side of the square face crops (linked from the datamodule): 16 or more, with two factors
                of 2 (32, 64, 128, 256, 96, ...).
            num_channels: image channels (linked from the datamodule).
            base_channels: width of the first encoder conv; the widths double per stage up to 8x.
            bottleneck_dim: width of the dense bottleneck every code passes through (the 2017 code: 1024 numbers
                for 12,288 pixel values).
            decoder_min_channels: the decoders' widths halve per upscale but not below this.
            upsample: "pixelshuffle" (conv + sub-pixel shuffle, the 2017 code) or "nearest" (nearest + conv).
            lr: learning rate of the autoencoder's Adam (and the discriminators' unless ``lr_d`` is set).
            lr_d: the discriminators' learning rate when it differs from ``lr``.
            betas: Adam betas of both optimizers.
            warp_strength: scales the training warp (rotation, zoom, shift, smooth bending); 0 turns it off
                (benchmarks/results/faceswap.md compares the two on the synthetic faces).
            flip_prob: probability of mirroring a training face (input and target alike).
            ssim_weight: weight of ``1 - SSIM`` beside the L1 term. At 1 SSIM leads early on: an untrained
                decoder has L1 about 0.2 and 1 - SSIM about 0.9 on the synthetic faces.
            ssim_sigma: standard deviation of SSIM's Gaussian window, in pixels; the window's side is
                ``2 * round(3.5 * sigma) + 1`` (torchmetrics' rule) and must be smaller than image_size.
            adversarial_weight: weight of the adversarial term per identity; 0 (the default, as the 2017 code)
                builds no discriminators.
            objective: the GAN loss pair for the adversarial term; NonSaturating() when not given.
            d_channels: width of the PatchGAN discriminators' first conv.
            num_samples: fixed faces per identity in the sample grid.
            channels_last: the channels_last memory layout; None chooses it (the networks are convolutional).
            tricks: GANModule's training tricks, on the adversarial term per discriminator (adversarial_weight > 0).
            grad_clip_g: clip the autoencoder's gradients to this norm/value; None disables.
            grad_clip_d: clip the discriminators' gradients to this norm/value; None disables.
            grad_clip_algorithm: "norm" (total L2 norm) or "value" (elementwise).
            lr_decay: "linear" or "cosine" takes both learning rates to 0 by the end of the run, as GANModule's.
            lr_decay_start: the fraction of the run (in [0, 1)) after which the decay begins.
        """
        super().__init__()
        self.save_hyperparameters()
        # As GANModule does: hparams keep the objective and tricks as {class_path, init_args}: plain values only.
        self.hparams["objective"] = to_spec(objective)
        self.hparams["tricks"] = [to_spec(t) for t in tricks] if tricks is not None else None
        objective = from_spec(objective, Objective, "model.objective")
        tricks = build_tricks(tricks)
        encoder_stages(image_size)  # a clear error for an unsupported size before anything is built
        check_lr_decay(lr_decay, lr_decay_start)
        for name, value in (("lr", lr), ("lr_d", lr_d), ("grad_clip_g", grad_clip_g), ("grad_clip_d", grad_clip_d)):
            if value is not None and not value > 0:
                raise ValueError(f"model.{name} must be positive, got {value}")
        if adversarial_weight == 0 and (tricks or grad_clip_d is not None):
            raise ValueError(
                "model.tricks and model.grad_clip_d act on the discriminators: set model.adversarial_weight > 0"
            )
        checks = [
            ("num_channels", num_channels >= 1, num_channels),
            ("base_channels", base_channels >= 1, base_channels),
            ("bottleneck_dim", bottleneck_dim >= 1, bottleneck_dim),
            ("decoder_min_channels", decoder_min_channels >= 1, decoder_min_channels),
            ("warp_strength", warp_strength >= 0, warp_strength),
            ("flip_prob", 0.0 <= flip_prob <= 1.0, flip_prob),
            ("ssim_weight", ssim_weight >= 0, ssim_weight),
            ("ssim_sigma", 0 < ssim_sigma and ssim_window(ssim_sigma) < image_size, ssim_sigma),
            ("adversarial_weight", adversarial_weight >= 0, adversarial_weight),
            ("num_samples", num_samples >= 1, num_samples),
        ]
        for name, ok, value in checks:
            if not ok:
                raise ValueError(f"model.{name} is out of range: {value} (see FaceSwap's argument docs)")
        if upsample not in ("pixelshuffle", "nearest"):
            raise ValueError(f'model.upsample must be "pixelshuffle" or "nearest", got {upsample!r}')
        self.automatic_optimization = False
        self.encoder = FaceSwapEncoder(image_size, num_channels, base_channels, bottleneck_dim, upsample)
        decoder = dict(
            image_size=image_size,
            code_channels=self.encoder.out_channels,
            out_channels=num_channels,
            min_channels=decoder_min_channels,
            upsample=upsample,
        )
        self.decoders = nn.ModuleDict({identity: FaceSwapDecoder(**decoder) for identity in IDENTITIES})
        self.discriminators: nn.ModuleDict | None = None
        if adversarial_weight > 0:
            if image_size % 16 != 0:
                raise ValueError(f"the PatchGAN discriminators need image_size divisible by 16, got {image_size}")
            patch = dict(image_size=image_size, in_channels=2 * num_channels, base_channels=d_channels)
            self.discriminators = nn.ModuleDict({identity: PatchGANDiscriminator(**patch) for identity in IDENTITIES})
        self.objective = objective if objective is not None else NonSaturating()
        self.d_updates, self.g_updates = 0, 0  # update counts, for the tricks' schedules (kept in checkpoints)
        self.tricks = nn.ModuleList(tricks)
        for trick in self.tricks:
            trick.setup(self)
        self.steps = ManualSteps(self, grad_clip_algorithm, decay=lr_decay != "none")
        self._log_now = True  # whether this step's statistics reach the loggers (set by training_step)
        self.adversary: Adversary | None = None  # plain objects, not submodules: the state_dict keys stay as they were
        if self.discriminators is not None:
            self.adversary = Adversary(self, self.objective, self.tricks, self.steps, judges=len(IDENTITIES))
        # Full-size buffers and a count of those in use (0 until the first batch fills them): a checkpoint's
        # shapes never depend on whether the faces were set, so a resumed run's shapes always match.
        self.register_buffer("fixed_a", torch.zeros(num_samples, num_channels, image_size, image_size))
        self.register_buffer("fixed_b", torch.zeros(num_samples, num_channels, image_size, image_size))
        self.register_buffer("fixed_count", torch.zeros((), dtype=torch.long))
        self.choose_memory_format(channels_last)

    # ------------------------------------------------------------------ inference

    @property
    def sample_grid_nrow(self) -> int:
        return max(1, int(self.fixed_count))

    def _check_identity(self, identity: str) -> None:
        if identity not in IDENTITIES:
            raise ValueError(f'identity must be "a" or "b", got {identity!r}')

    @torch.no_grad()
    def reconstruct(self, images: Tensor, identity: str) -> Tensor:
        """Faces [N, C, S, S] (uint8, or float in [-1, 1]) -> decoded by ``identity``'s decoder, in [-1, 1].

        Eval mode and fp32 whatever the training precision, as ``GANModule.generate``.
        """
        self._check_identity(identity)
        networks = (self.encoder, self.decoders[identity])
        modes = [net.training for net in networks]
        for net in networks:
            net.eval()
        try:
            with torch.autocast(self.device.type, enabled=False):
                x = self.images_in(images.to(self.device)).float()
                return self.decoders[identity](self.encoder(x)).float().clamp(-1, 1)
        finally:
            for net, mode in zip(networks, modes):
                net.train(mode)

    @torch.no_grad()
    def swap(self, images: Tensor, to: str = "b") -> Tensor:
        """Faces [N, C, S, S] of the other identity -> the same faces with ``to``'s identity, in [-1, 1]."""
        return self.reconstruct(images, to)

    def set_fixed_images(self, a_images: Tensor, b_images: Tensor) -> None:
        """Uses the first ``num_samples`` of ``a_images`` and ``b_images`` (uint8 or [-1, 1]) for the sample grid."""
        n = min(self.hparams.num_samples, len(a_images), len(b_images))
        self.fixed_a[:n] = to_unit_range(a_images[:n]).detach().to(self.fixed_a)
        self.fixed_b[:n] = to_unit_range(b_images[:n]).detach().to(self.fixed_b)
        self.fixed_count.fill_(n)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if int(self.fixed_count) == 0:
            self.set_fixed_images(batch[0], batch[1])

    @torch.no_grad()
    def sample_grid(self) -> Tensor:
        """[6 n, C, S, S] in [-1, 1]: rows of n faces: A, A rebuilt, A as B, B, B rebuilt, B as A."""
        n = int(self.fixed_count)
        if n == 0:
            raise RuntimeError("FaceSwap has no fixed faces yet: train one batch or call set_fixed_images first")
        a, b = self.fixed_a[:n], self.fixed_b[:n]
        rows = [a, self.reconstruct(a, "a"), self.swap(a, to="b"), b, self.reconstruct(b, "b"), self.swap(b, to="a")]
        return torch.cat([row.float() for row in rows])

    # ------------------------------------------------------------------ training

    @property
    def generator(self) -> nn.Module:
        """The autoencoder as the tricks see G (TrickHost): the encoder and both decoders."""
        return nn.ModuleList([self.encoder, self.decoders])

    @property
    def discriminator(self) -> nn.ModuleDict | None:
        """Both discriminators as the tricks see D (TrickHost): one optimizer, one update."""
        return self.discriminators

    def configure_optimizers(self):
        hp = self.hparams
        opt_ae = self.adam([*self.encoder.parameters(), *self.decoders.parameters()], hp.lr, hp.betas)
        optimizers = [opt_ae]
        if self.discriminators is not None:
            optimizers = [self.adam(self.discriminators.parameters(), hp.lr_d or hp.lr, hp.betas), opt_ae]
        if hp.get("lr_decay", "none") == "none":
            return optimizers if len(optimizers) > 1 else opt_ae
        total = planned_batches(self.trainer, steps=len(optimizers))  # one update of each optimizer per batch
        return optimizers, decay_schedules(hp.lr_decay, hp.lr_decay_start, [(opt, total) for opt in optimizers])

    def on_before_optimizer_step(self, optimizer) -> None:
        self.steps.clip(optimizer)  # where Lightning has unscaled 16-mixed gradients (ManualSteps)

    def warp(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(inputs, targets) of ``random_warp`` with this model's settings, in fp32 and the chosen layout."""
        with torch.autocast(images.device.type, enabled=False):
            inputs, targets = random_warp(images.float(), self.hparams.warp_strength, self.hparams.flip_prob)
        if self.memory_format is not None:
            inputs, targets = (x.contiguous(memory_format=self.memory_format) for x in (inputs, targets))
        return inputs, targets

    def reconstruction_loss(self, fake: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(L1 + ssim_weight * (1 - SSIM), L1, SSIM), in fp32 (SSIM's variances cancel badly in bf16)."""
        with torch.autocast(fake.device.type, enabled=False):
            fake, target = fake.float(), target.float()
            l1 = (fake - target).abs().mean()
            ssim = structural_similarity_index_measure(fake, target, data_range=2.0, sigma=self.hparams.ssim_sigma)
            return l1 + self.hparams.ssim_weight * (1 - ssim), l1, ssim

    def _judge(self, identity: str, inputs: dict) -> Judge:
        """``identity``'s PatchGAN as the adversarial update sees it: conditioned on that identity's warped input."""
        return Judge(lambda x, d=self.discriminators[identity], c=inputs[identity]: d(c, x), name=identity)

    def discriminator_step(self, inputs: dict, targets: dict, fakes: dict) -> dict[str, Tensor]:
        """One update of both discriminators: real = (warped input, target), fake = (warped input, rebuilt face)."""
        batches = [(self._judge(identity, inputs), targets[identity], fakes[identity]) for identity in IDENTITIES]
        results = self.adversary.d_step(self.optimizers()[0], batches, self.hparams.grad_clip_d)
        return self.adversary.d_stats(results) if self._log_now else {}

    def autoencoder_step(self, inputs: dict, targets: dict, fakes: dict) -> dict[str, Tensor]:
        """One update of the encoder and both decoders on both identities' reconstruction (+ adversarial) losses."""
        adversary = self.adversary
        loss, stats, g_terms = 0.0, {}, {}
        with adversary.frozen_discriminator() if adversary is not None else contextlib.nullcontext():
            for identity in IDENTITIES:
                term, l1, ssim = self.reconstruction_loss(fakes[identity], targets[identity])
                stats[f"train/l1_{identity}"], stats[f"train/ssim_{identity}"] = l1.detach(), ssim.detach()
                if adversary is not None:
                    judge = self._judge(identity, inputs)
                    adversarial, terms = adversary.g_loss(judge, fakes[identity], targets[identity])
                    term = term + self.hparams.adversarial_weight * adversarial + sum(terms.values())  # tricks' terms
                    stats[f"train/g_adversarial_{identity}"] = adversarial.detach()
                    for name, value in terms.items():
                        g_terms[name] = g_terms.get(name, 0) + value.detach()
                loss = loss + term
            if adversary is not None:  # the step, the tricks' after-G hooks and G's update count
                adversary.g_update(self.optimizers()[-1], loss, self.hparams.grad_clip_g, name="train/loss")
            else:
                self.steps.step(self.optimizers(), loss, self.hparams.grad_clip_g, name="train/loss")
        stats.update({f"train/g_{name}": value for name, value in g_terms.items()})  # summed over the identities
        stats["train/loss"] = loss.detach()
        return stats

    def training_step(self, batch, batch_idx: int) -> None:
        self._log_now = loggers_write_now(self)
        real = {"a": self.images_in(batch[0]), "b": self.images_in(batch[1])}
        inputs, targets = {}, {}
        for identity, images in real.items():
            inputs[identity], targets[identity] = self.warp(images)
        # One encoder pass for both identities: the same weights see A's and B's faces in each update.
        codes = self.encoder(torch.cat([inputs["a"], inputs["b"]])).split([len(real["a"]), len(real["b"])])
        fakes = {identity: self.decoders[identity](code) for identity, code in zip(IDENTITIES, codes)}

        stats = {}
        # Discriminators: push (input, target) up and (input, rebuilt face) down.
        if self.discriminators is not None:
            stats.update(self.discriminator_step(inputs, targets, fakes))
        # Autoencoder: rebuild each identity's targets, and fool its discriminator.
        stats.update(self.autoencoder_step(inputs, targets, fakes))
        if self._log_now:
            shown = {k: stats.pop(k) for k in ("train/loss", "train/d_loss") if k in stats}
            batch_size = len(real["a"])
            self.log_dict(shown, prog_bar=True, on_step=True, on_epoch=False, batch_size=batch_size)
            self.log_dict(stats, prog_bar=False, on_step=True, on_epoch=False, batch_size=batch_size)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["update_counts"] = {"d_updates": self.d_updates, "g_updates": self.g_updates}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        counts = checkpoint.get("update_counts", {})  # none in checkpoints from before the tricks
        self.d_updates, self.g_updates = counts.get("d_updates", 0), counts.get("g_updates", 0)

    # ------------------------------------------------------------------ validation

    def validation_step(self, batch, batch_idx: int) -> None:
        stats = {}
        for identity, images in zip(IDENTITIES, batch):
            real = self.images_in(images).float()
            _, l1, ssim = self.reconstruction_loss(self.reconstruct(real, identity), real)
            stats[f"val/l1_{identity}"], stats[f"val/ssim_{identity}"] = l1, ssim
        stats["val/l1"] = (stats["val/l1_a"] + stats["val/l1_b"]) / 2
        stats["val/ssim"] = (stats["val/ssim_a"] + stats["val/ssim_b"]) / 2
        self.log_dict(stats, prog_bar=False, on_step=False, on_epoch=True, batch_size=len(batch[0]))
