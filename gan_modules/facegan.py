"""The CelebA-128 face GAN of seed 004: a dense start, three x2 transposed convs, wide 5x5 refinement.

No BatchNorm anywhere (the seed's code has none, whatever its prose says), LeakyReLU with Keras'
default slope 0.3, Keras' Glorot-uniform initialisation. Its training settings (RMSprop 1e-4,
gradient clipping by value 1.0, label noise 0.05) live in ``configs/facegan_celeba.yaml``.
"""

from __future__ import annotations

from torch import Tensor, nn

from gan_modules.base import GANModule
from gan_modules.layers import init_glorot_weights

LEAKY_SLOPE = 0.3  # Keras LeakyReLU() default alpha, which the seed uses everywhere
NUM_UPSAMPLINGS = 3  # seed 004: three 4x4 stride-2 transposed convs after the 16x16 start


def facegan_start_size(image_size: int) -> int:
    """The generator's dense start size: ``image_size / 8``, so the seed's three x2 upsamplings reach it.

    128 -> 16 (the seed's 16x16x128 start), 64 -> 8, 32 -> 4, 16 -> 2. The discriminator's four
    stride-2 convs bring the image to ``image_size / 16``, so the size must be a multiple of 16.
    """
    if image_size < 16 or image_size % 16 != 0:
        raise ValueError(
            f"FaceGAN needs image_size to be a multiple of 16 (e.g. 32, 64, 128; the seed uses 128), got "
            f"{image_size}: the generator starts at image_size / 8 and the discriminator ends at image_size / 16"
        )
    return image_size // 2**NUM_UPSAMPLINGS


class FaceGANGenerator(nn.Module):
    """z [N, latent_dim] -> images [N, C, H, W] in [-1, 1].

    Seed 004 at 128x128 with ``base_channels=256``: dense to 16x16x128, 5x5 conv 256, three 4x4
    stride-2 transposed convs 256, two 5x5 convs 512, a 7x7 conv to C channels and tanh; LeakyReLU
    after every layer but the last. Other sizes change only the start size (``facegan_start_size``).
    """

    def __init__(
        self, latent_dim: int = 32, image_size: int = 128, num_channels: int = 3, base_channels: int = 256
    ) -> None:
        super().__init__()
        self.start = facegan_start_size(image_size)
        self.start_channels = base_channels // 2
        self.dense = nn.Sequential(
            nn.Linear(latent_dim, self.start_channels * self.start * self.start), nn.LeakyReLU(LEAKY_SLOPE)
        )
        layers: list[nn.Module] = [
            nn.Conv2d(self.start_channels, base_channels, kernel_size=5, padding=2),
            nn.LeakyReLU(LEAKY_SLOPE),
        ]
        for _ in range(NUM_UPSAMPLINGS):
            layers += [
                nn.ConvTranspose2d(base_channels, base_channels, kernel_size=4, stride=2, padding=1),
                nn.LeakyReLU(LEAKY_SLOPE),
            ]
        layers += [
            nn.Conv2d(base_channels, 2 * base_channels, kernel_size=5, padding=2),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Conv2d(2 * base_channels, 2 * base_channels, kernel_size=5, padding=2),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Conv2d(2 * base_channels, num_channels, kernel_size=7, padding=3),
            nn.Tanh(),
        ]
        self.net = nn.Sequential(*layers)
        init_glorot_weights(self)

    def forward(self, z: Tensor) -> Tensor:
        x = self.dense(z).view(z.shape[0], self.start_channels, self.start, self.start)
        return self.net(x)


class FaceGANDiscriminator(nn.Module):
    """images [N, C, H, W] -> logits [N].

    Seed 004 with ``base_channels=256``: a 3x3 conv, four 4x4 stride-2 convs (all 256 wide, LeakyReLU),
    flatten, dropout 0.4, a dense layer to one logit (the seed's sigmoid is in the loss instead). The
    seed pads 'valid' (128 -> 6x6 at the end); here every conv pads so the map is exactly
    ``image_size / 16`` (128 -> 8x8), which lets the same network run at 32 and 16.
    """

    def __init__(
        self, image_size: int = 128, num_channels: int = 3, base_channels: int = 256, dropout: float = 0.4
    ) -> None:
        super().__init__()
        facegan_start_size(image_size)  # validates the size
        layers: list[nn.Module] = [
            nn.Conv2d(num_channels, base_channels, kernel_size=3, padding=1),
            nn.LeakyReLU(LEAKY_SLOPE),
        ]
        for _ in range(NUM_UPSAMPLINGS + 1):
            layers += [
                nn.Conv2d(base_channels, base_channels, kernel_size=4, stride=2, padding=1),
                nn.LeakyReLU(LEAKY_SLOPE),
            ]
        end = image_size // 2 ** (NUM_UPSAMPLINGS + 1)
        layers += [nn.Flatten(), nn.Dropout(dropout), nn.Linear(base_channels * end * end, 1)]
        self.net = nn.Sequential(*layers)
        init_glorot_weights(self)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images).squeeze(1)


class FaceGAN(GANModule):
    """Seed 004's face GAN at any multiple of 16 (128 in the seed); every other option is ``GANModule``'s."""

    def __init__(
        self,
        latent_dim: int = 32,  # seed 004
        image_size: int = 128,
        num_channels: int = 3,
        g_channels: int = 256,  # seed 004: the 256-wide stages; the dense start is half, the refinement twice
        d_channels: int = 256,  # seed 004
        d_dropout: float = 0.4,  # seed 004
        **kwargs,
    ) -> None:
        super().__init__(
            generator=FaceGANGenerator(
                latent_dim=latent_dim, image_size=image_size, num_channels=num_channels, base_channels=g_channels
            ),
            discriminator=FaceGANDiscriminator(
                image_size=image_size, num_channels=num_channels, base_channels=d_channels, dropout=d_dropout
            ),
            latent_dim=latent_dim,
            **kwargs,
        )
