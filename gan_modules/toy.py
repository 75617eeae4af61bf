"""A small MLP GAN for 2-D point sets (the mixtures of datamodules/toy.py): the mode-collapse test bed."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from gan_modules.base import GANModule
from gan_modules.layers import SequentialDiscriminator, minibatch_layer
from gan_modules.validation import PointMetrics


def mlp(sizes: list[int], activation: type[nn.Module], batch_norm: bool = False) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), *([nn.BatchNorm1d(b)] if batch_norm else []), activation()]
    return layers


def component_index(z0: Tensor, components: int) -> Tensor:
    """Which of ``components`` equal-probability bins of N(0, 1) each z0 [N] falls in: indices [N], uniform."""
    u = 0.5 * (1 + torch.erf(z0 / math.sqrt(2)))  # the normal CDF: uniform on [0, 1] for z0 ~ N(0, 1)
    return (u * components).long().clamp_(0, components - 1)


class ToyGenerator(nn.Module):
    """z [N, latent_dim] -> points [N, 2], unbounded (no tanh): the grid spans -4..4.

    With ``components`` K > 0 the latent is not one blob: z's first coordinate only picks one of K
    equal-probability components (``component_index``), which enters G one-hot beside z's other coordinates. A
    continuous G fed one connected latent must put mass between disconnected modes (Tanielian et al. 2020); here
    each component can land on its own mode with no path between them (Khayatkhoei et al. 2018's disconnected
    manifolds, DeLiGAN's mixture latent). Every caller still draws z ~ N(0, I): the split happens inside G.
    """

    def __init__(
        self, latent_dim: int = 2, hidden_dims: tuple[int, ...] = (400, 400, 400, 400), components: int = 0
    ) -> None:
        super().__init__()
        if components < 0 or (components and latent_dim < 2):
            raise ValueError(
                f"components must be 0 (one Gaussian latent) or a count K > 0 with latent_dim >= 2 (z's first "
                f"coordinate picks the component, the rest stay continuous); got components {components}, "
                f"latent_dim {latent_dim}"
            )
        self.components = components
        inputs = latent_dim - 1 + components if components else latent_dim
        self.net = nn.Sequential(*mlp([inputs, *hidden_dims], nn.ReLU, batch_norm=True), nn.Linear(hidden_dims[-1], 2))

    def forward(self, z: Tensor) -> Tensor:
        if self.components:
            one_hot = nn.functional.one_hot(component_index(z[:, 0], self.components), self.components)
            z = torch.cat([one_hot.to(z.dtype), z[:, 1:]], dim=1)
        return self.net(z)


class ToyDiscriminator(SequentialDiscriminator):
    """points [N, 2] (or [N, 2m] packed) -> logits [N]."""

    def __init__(
        self,
        hidden_dims: tuple[int, ...] = (200, 200, 200),
        minibatch: Literal["none", "stddev", "discrimination"] = "none",
    ) -> None:
        super().__init__()
        layers = mlp([2, *hidden_dims], lambda: nn.LeakyReLU(0.2))
        width = hidden_dims[-1]
        layer, width = minibatch_layer(minibatch, width)
        layers += [layer] if layer is not None else []
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))


class ToyGAN(GANModule):
    """MLP GAN on 2-D points. G: 4 x 400 ReLU + BatchNorm (PacGAN's toy generator); D: 3 x 200 LeakyReLU.

    Samples come from the EMA of G (decay 0.999): on the ring it raised the share of samples within
    3 sigma of a mode from 15% to 76-84% at the same 2,000 steps (one seed each, benchmarks/bench_tricks.py).

    Points are not images: ``generate`` returns them unclamped, FID is off (``val_num_samples: 0``), and
    PacGAN's scores replace it (``validation_metrics``: ``gan_modules.validation.PointMetrics``): after every
    epoch trained on a ``datamodules.ToyMixtureDataModule``, 2,500 samples from fixed latents give ``val/modes``
    and ``val/high_quality`` (``checkpoints/best.ckpt`` keeps the best high-quality share) and
    ``<run>/samples/scatter_XXXX.png`` (also to W&B as ``samples``).
    ``python train.py --config configs/toy_mixture.yaml --data.mixture grid`` trains it.
    """

    cpu_bf16_pays = False
    clamp_output = False  # points, not images: the grid spans -4..4
    takes_points = True  # the CLI lets it train on a datamodule with gives_points
    draws_sample_grid = False  # a scatter plot per epoch instead (PointMetrics)
    best_metric = ("val/high_quality", "max")

    def __init__(
        self,
        latent_dim: int = 2,
        g_hidden_dims: tuple[int, ...] = (400, 400, 400, 400),
        d_hidden_dims: tuple[int, ...] = (200, 200, 200),
        d_minibatch: Literal["none", "stddev", "discrimination"] = "none",
        latent_components: int = 0,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        ema_decay: float | None = 0.999,
        val_num_samples: int = 0,
        image_size: int | None = None,
        num_channels: int | None = None,
        **kwargs,
    ) -> None:
        """
        Args:
            latent_dim: size of z (PacGAN: 2).
            g_hidden_dims: widths of G's hidden layers (ReLU + BatchNorm).
            d_hidden_dims: widths of D's hidden layers (LeakyReLU 0.2).
            d_minibatch: "stddev" or "discrimination" adds that layer before D's output.
            latent_components: K > 0 makes z's first coordinate pick one of K components, fed to G one-hot
                (``ToyGenerator``): a latent that is not one blob, so G need not bridge the modes. 0: plain z.
            lr: Adam learning rate of both networks.
            betas: Adam betas.
            ema_decay: decay of G's moving average (samples come from it); None disables it.
            val_num_samples: must stay 0 (points have no FID).
            image_size: set by the CLI from an image datamodule; must be None (this model trains on points).
            num_channels: as ``image_size``.
            **kwargs: the rest of ``GANModule``'s options (objective, tricks, lr_decay, ...).
        """
        if image_size is not None or num_channels is not None:
            raise ValueError(
                f"ToyGAN trains on 2-D points, not images (got a datamodule with image_size {image_size}, "
                f"num_channels {num_channels}); use data: datamodules.ToyMixtureDataModule (configs/toy_mixture.yaml)"
            )
        super().__init__(
            generator=ToyGenerator(latent_dim, g_hidden_dims, latent_components),
            discriminator=ToyDiscriminator(d_hidden_dims, d_minibatch),
            latent_dim=latent_dim,
            lr=lr,
            betas=betas,
            ema_decay=ema_decay,
            val_num_samples=val_num_samples,
            channels_last=False,
            **kwargs,
        )
        self.categorical_latents = 1 if latent_components else 0  # z's first coordinate picks the component

    def validation_metrics(self) -> PointMetrics:
        # One past the sample grid's seed, as the image models' validation latents.
        return PointMetrics(num_samples=2500, seed=self.hparams.sample_seed + 1)  # 2,500: PacGAN's protocol
