"""The vanilla MLP GAN on MNIST (Goodfellow et al. 2014), as seeds 001 and 003 build it."""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor, nn

from gan_modules.base import GANModule
from gan_modules.layers import SequentialDiscriminator, keras_bn_momentum, minibatch_layer


class VanillaGenerator(nn.Module):
    """z [N, latent_dim] -> images [N, C, H, W] in [-1, 1]. Dense 256-512-1024, LeakyReLU 0.2, BatchNorm."""

    def __init__(
        self,
        latent_dim: int = 100,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        hidden_dims: tuple[int, ...] = (256, 512, 1024),
        dropout: float = 0.0,
        bn_momentum: float = keras_bn_momentum(0.8),  # seed 001: Keras BatchNormalization(momentum=0.8)
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        layers: list[nn.Module] = []
        width = latent_dim
        for hidden in hidden_dims:
            # Seed 003's order: Dense, LeakyReLU, Dropout, BatchNorm. Keras' BN epsilon is 1e-3.
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            layers.append(nn.BatchNorm1d(hidden, momentum=bn_momentum, eps=1e-3))
            width = hidden
        layers += [nn.Linear(width, math.prod(self.image_shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(z.shape[0], *self.image_shape)


class VanillaDiscriminator(SequentialDiscriminator):
    """images [N, C, H, W] -> logits [N]. Dense 512-256-1 with LeakyReLU 0.2, no sigmoid."""

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        hidden_dims: tuple[int, ...] = (512, 256),
        minibatch: Literal["none", "stddev", "discrimination"] = "none",
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
        **kwargs,
    ) -> None:
        image_shape = (num_channels, image_size, image_size)
        super().__init__(
            generator=VanillaGenerator(
                latent_dim=latent_dim, image_shape=image_shape, hidden_dims=g_hidden_dims, dropout=dropout
            ),
            discriminator=VanillaDiscriminator(
                image_shape=image_shape, hidden_dims=d_hidden_dims, minibatch=d_minibatch
            ),
            latent_dim=latent_dim,
            **kwargs,
        )
