"""The vanilla MLP GAN on MNIST (Goodfellow et al. 2014), as seeds 001 and 003 build it."""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor, nn

from gan_modules.base import GANModule
from gan_modules.layers import (
    Conditioning,
    LabelEmbedding,
    SequentialDiscriminator,
    keras_bn_momentum,
    minibatch_layer,
    require_labels,
)


class VanillaGenerator(nn.Module):
    """z [N, latent_dim] (and labels [N] when ``num_classes`` > 0) -> images [N, C, H, W] in [-1, 1].

    Dense 256-512-1024, LeakyReLU 0.2, BatchNorm. A class-conditional G appends a learned embedding of the label to
    z (``LabelEmbedding``, as wide as z).
    """

    def __init__(
        self,
        latent_dim: int = 100,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        hidden_dims: tuple[int, ...] = (256, 512, 1024),
        dropout: float = 0.0,
        bn_momentum: float = keras_bn_momentum(0.8),  # seed 001: Keras BatchNormalization(momentum=0.8)
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        self.label_embedding = LabelEmbedding(num_classes, latent_dim) if num_classes else None
        layers: list[nn.Module] = []
        width = 2 * latent_dim if num_classes else latent_dim
        for hidden in hidden_dims:
            # Seed 003's order: Dense, LeakyReLU, Dropout, BatchNorm. Keras' BN epsilon is 1e-3.
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            layers.append(nn.BatchNorm1d(hidden, momentum=bn_momentum, eps=1e-3))
            width = hidden
        layers += [nn.Linear(width, math.prod(self.image_shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        x = self.label_embedding(z, require_labels(self, labels)) if self.label_embedding is not None else z
        return self.net(x).view(z.shape[0], *self.image_shape)


class VanillaDiscriminator(SequentialDiscriminator):
    """images [N, C, H, W] (and labels [N] for a projection D) -> logits [N]. Dense 512-256-1 with LeakyReLU 0.2, no
    sigmoid; a class head on the 256 features when ``num_classes`` > 0 (``SequentialDiscriminator``)."""

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        hidden_dims: tuple[int, ...] = (512, 256),
        minibatch: Literal["none", "stddev", "discrimination"] = "none",
        num_classes: int = 0,
        conditioning: Conditioning = "projection",
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(image_shape)
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        layer, width = minibatch_layer(minibatch, width)
        layers += [layer] if layer is not None else []
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.add_class_head(num_classes, conditioning)


class VanillaGAN(GANModule):
    """MLP generator and discriminator; every other option is the base module's (``GANModule``)."""

    def __init__(
        self,
        latent_dim: int = 100,
        image_size: int = 28,
        num_channels: int = 1,
        g_hidden_dims: tuple[int, ...] = (256, 512, 1024),
        d_hidden_dims: tuple[int, ...] = (512, 256),
        dropout: float = 0.0,  # seed 003 uses 0.1
        d_minibatch: Literal["none", "stddev", "discrimination"] = "none",
        num_classes: int = 0,
        conditioning: Conditioning = "projection",
        **kwargs,
    ) -> None:
        """
        Args:
            num_classes: 0 for an unconditional GAN; else the class count of a class-conditional one (the label enters
                G as an embedding appended to z, and D through ``conditioning``; see ``GANModule``).
            conditioning: "projection" (Miyato & Koyama 2018) or "acgan" (Odena et al. 2017).
        """
        image_shape = (num_channels, image_size, image_size)
        super().__init__(
            generator=VanillaGenerator(
                latent_dim=latent_dim,
                image_shape=image_shape,
                hidden_dims=g_hidden_dims,
                dropout=dropout,
                num_classes=num_classes,
            ),
            discriminator=VanillaDiscriminator(
                image_shape=image_shape,
                hidden_dims=d_hidden_dims,
                minibatch=d_minibatch,
                num_classes=num_classes,
                conditioning=conditioning,
            ),
            latent_dim=latent_dim,
            num_classes=num_classes,
            conditioning=conditioning,
            **kwargs,
        )
