"""Conditional image-to-image GAN (pix2pix, Isola et al. 2017) with seed 000's U-Net and PatchGAN.

Seed 000 feeds the U-Net a noise image and pulls its output towards an unrelated real batch with
L1, which cannot learn a mapping. Here the generator's input is derived from the real image
(``input_transform``: its grayscale, a 4x down-up copy, or the image with a square hole) and the L1
term compares the output with that same image, so G learns colorization, super-resolution or
inpainting; the discriminator is conditional and sees (input, image) stacked on channels.
"""

from __future__ import annotations

from typing import Literal, NoReturn

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.functional import rgb_to_grayscale

from gan_modules.base import GANModule, to_unit_range
from gan_modules.layers import UNetDown, UNetUp, init_dcgan_weights

InputTransform = Literal["colorize", "super_resolution", "inpaint", "noise"]
MAX_UNET_DOWNS = 7  # seed 000: seven encoder blocks take 256x256 to a 2x2 bottleneck
NO_LATENT_SPACE = "Pix2PixGAN translates images and has no latent space: call translate(inputs)"


def unet_num_downs(image_size: int) -> int:
    """Encoder depth for ``image_size``: halve down to a 2x2 bottleneck, at most 7 times.

    256 -> 7 (the seed's 2x2 bottleneck), 128 -> 6, 64 -> 5, 32 -> 4, 16 -> 3; 512 -> 7 (4x4).
    """
    size, downs = image_size, 0
    while downs < MAX_UNET_DOWNS and size % 2 == 0 and size // 2 >= 2:
        size //= 2
        downs += 1
    if downs < 2:
        raise ValueError(
            f"the U-Net needs image_size divisible by 4 and at least 8 (e.g. 32, 64, 256), got {image_size}"
        )
    return downs


class UNetGenerator(nn.Module):
    """input images [N, C_in, H, W] -> images [N, C_out, H, W] in [-1, 1].

    Seed 000 at 256 with ``base_channels=64``: seven down blocks 64-128-256-512-512-512-512 (4x4
    stride-2 conv, BatchNorm except the first, LeakyReLU 0.2) to a 2x2 bottleneck; seven up blocks
    512-512-512-512-256-128-64 (4x4 stride-2 transposed conv, BatchNorm, dropout 0.5 in the first three,
    ReLU), each but the last concatenated with the encoder output of its size (the skip connections);
    a 3x3 conv to C_out and tanh. Smaller images use fewer blocks (``unet_num_downs``).
    """

    def __init__(
        self,
        image_size: int = 256,
        in_channels: int = 3,
        out_channels: int = 3,
        base_channels: int = 64,
        num_downs: int | None = None,
        dropout: float = 0.5,  # Isola et al. 2017, in the three innermost up blocks
    ) -> None:
        super().__init__()
        num_downs = unet_num_downs(image_size) if num_downs is None else num_downs
        if num_downs < 1 or image_size % 2**num_downs != 0:
            raise ValueError(f"num_downs must be >= 1 with image_size divisible by 2^num_downs, got {num_downs}")
        widths = [base_channels * min(2**i, 8) for i in range(num_downs)]  # 64, 128, 256, 512, 512, ...
        self.downs = nn.ModuleList(
            UNetDown(in_channels if i == 0 else widths[i - 1], widths[i], norm=i > 0) for i in range(num_downs)
        )
        # Up block j takes level num_downs-1-j up one size; from the second on its input is the
        # previous up block's output concatenated with the encoder output of the same size.
        self.ups = nn.ModuleList()
        for j in range(num_downs):
            level = num_downs - 1 - j
            in_width = widths[-1] if j == 0 else widths[level + 1] + widths[level]
            self.ups.append(UNetUp(in_width, widths[level], dropout=dropout if j < min(3, num_downs - 1) else 0.0))
        self.out = nn.Sequential(nn.Conv2d(widths[0], out_channels, kernel_size=3, padding=1), nn.Tanh())
        init_dcgan_weights(self)  # N(0, 0.02), as pix2pix and the seed

    def forward(self, inputs: Tensor) -> Tensor:
        skips = []
        x = inputs
        for down in self.downs:
            x = down(x)
            skips.append(x)
        skips.pop()  # the bottleneck feeds the first up block directly
        for j, up in enumerate(self.ups):
            if j > 0:
                x = torch.cat([x, skips.pop()], dim=1)
            x = up(x)
        return self.out(x)


class PatchGANDiscriminator(nn.Module):
    """(inputs [N, C_in, H, W], images [N, C, H, W]) -> patch logits [N, 1, H/16 + 4, W/16 + 4].

    Seed 000's PatchGAN: four down blocks 64-128-256-512 (4x4 stride-2 conv, BatchNorm except the
    first, LeakyReLU 0.2), then pad 1, a 4x4 stride-1 transposed conv 512 with BatchNorm and
    LeakyReLU, pad 1, and a 4x4 conv to one logit per patch: 20x20 patches at 256, 6x6 at 32.
    Conditional: it judges the image together with the generator input it should correspond to.
    """

    def __init__(
        self, image_size: int = 256, in_channels: int = 6, base_channels: int = 64, num_layers: int = 4
    ) -> None:
        super().__init__()
        if num_layers < 1 or image_size % 2**num_layers != 0:
            raise ValueError(
                f"the PatchGAN needs image_size divisible by 2^num_layers = {2**num_layers}, got {image_size}"
            )
        widths = [base_channels * min(2**i, 8) for i in range(num_layers)]
        layers: list[nn.Module] = [
            UNetDown(in_channels if i == 0 else widths[i - 1], widths[i], norm=i > 0) for i in range(num_layers)
        ]
        layers += [
            nn.ZeroPad2d(1),
            nn.ConvTranspose2d(widths[-1], widths[-1], kernel_size=4, stride=1, bias=False),
            nn.BatchNorm2d(widths[-1]),
            nn.LeakyReLU(0.2),
            nn.ZeroPad2d(1),
            nn.Conv2d(widths[-1], 1, kernel_size=4),
        ]
        self.net = nn.Sequential(*layers)
        init_dcgan_weights(self)

    def forward(self, inputs: Tensor, images: Tensor) -> Tensor:
        return self.net(torch.cat([inputs, images], dim=1))

    @torch.no_grad()
    def detect(self, inputs: Tensor, images: Tensor) -> Tensor:
        """Probability [N] that each image is fake: 1 - sigmoid(mean patch logit). Call in eval mode."""
        return 1.0 - torch.sigmoid(self(inputs, images).mean(dim=(1, 2, 3)))


class Pix2PixGAN(GANModule):
    """Conditional U-Net + PatchGAN trained with ``adversarial + lambda_l1 * |G(x) - y|`` (Isola et al. 2017).

    ``input_transform`` picks the task; the generator input x is made from the real image y:

    - ``colorize``: y's luma (ITU-R 601, torchvision's ``rgb_to_grayscale``) repeated on 3 channels,
      so input and output have the same shape and the sample grid shows it as a gray image.
    - ``super_resolution``: y area-downsampled by ``sr_factor`` and nearest-upsampled back.
    - ``inpaint``: y with a square hole (side ``inpaint_size`` x image side) set to 0 (mid-gray):
      at a random position per sample in training, centred in the sample grid and ``detect``.
    - ``noise``: seed 000's mode, kept for comparison: x ~ N(0, I) independent of y, so the L1 term
      pulls every output towards the mean image; it cannot learn a mapping.

    ``translate(inputs)`` is the inference API; there is no latent space, so ``generate(z)`` and
    ``sample_batches`` raise (``fixed_z`` is unused).
    The per-epoch grid shows rows of input | output | target for the first training batch's first
    ``num_samples`` images, kept in the ``fixed_real`` buffer (and so in checkpoints).
    ``detect(images)`` uses the discriminator as a fake-image detector, as seed 000 intends.
    ``val/*`` (``val_num_samples`` > 0) compares the reference images with their translations
    ``translate(transform(reference))``: a conditional FID of how well outputs match the real images.
    """

    sample_grid_nrow = 3  # input | output | target
    conditional = True

    def __init__(
        self,
        image_size: int = 256,
        num_channels: int = 3,
        input_transform: InputTransform = "colorize",
        g_channels: int = 64,  # seed 000 and Isola et al. 2017
        d_channels: int = 64,
        num_downs: int | None = None,
        lambda_l1: float = 100.0,  # Isola et al. 2017; seed 000's loss_weights=[100, 1]
        sr_factor: int = 4,
        inpaint_size: float = 0.5,  # Pathak et al. 2016 cut the central half of the side
        num_samples: int = 8,
        val_num_samples: int = 0,
        **kwargs,
    ) -> None:
        if input_transform not in ("colorize", "super_resolution", "inpaint", "noise"):
            raise ValueError(
                f"model.input_transform must be colorize, super_resolution, inpaint or noise, got {input_transform!r}"
            )
        if input_transform == "colorize" and num_channels != 3:
            raise ValueError(f"input_transform colorize needs RGB data (num_channels 3), got {num_channels} channels")
        if sr_factor < 2 or image_size % sr_factor != 0:
            raise ValueError(f"model.sr_factor must be >= 2 and divide image_size {image_size}, got {sr_factor}")
        if not 0.0 < inpaint_size < 1.0:
            raise ValueError(f"model.inpaint_size must be in (0, 1), got {inpaint_size}")
        kwargs.pop("latent_dim", None)  # the base's hyperparameters (hence checkpoints) record its 1
        if lambda_l1 < 0:
            raise ValueError(f"model.lambda_l1 must be >= 0, got {lambda_l1}")
        super().__init__(
            generator=UNetGenerator(
                image_size=image_size,
                in_channels=num_channels,
                out_channels=num_channels,
                base_channels=g_channels,
                num_downs=num_downs,
            ),
            discriminator=PatchGANDiscriminator(
                image_size=image_size, in_channels=2 * num_channels, base_channels=d_channels
            ),
            latent_dim=1,  # no latent space; keeps the base's fixed_z a harmless [num_samples, 1]
            num_samples=num_samples,
            val_num_samples=val_num_samples,
            **kwargs,
        )
        self.input_transform = input_transform
        self.lambda_l1 = lambda_l1
        self.sr_factor = sr_factor
        self.hole_size = max(1, round(inpaint_size * image_size))
        self.register_buffer("fixed_real", torch.empty(0, num_channels, image_size, image_size))

    # ------------------------------------------------------------------ the conditioning

    def transform(self, real: Tensor, random_hole: bool = False, seed: int | None = None) -> Tensor:
        """The generator input made from ``real`` [N, C, H, W] in [-1, 1] by ``input_transform``.

        ``random_hole`` places each inpainting hole at random (training) instead of the centre;
        ``seed`` makes the noise input reproducible (sample grids).
        """
        if self.input_transform == "colorize":
            return rgb_to_grayscale(real, num_output_channels=3)
        if self.input_transform == "super_resolution":
            low = F.interpolate(real, scale_factor=1 / self.sr_factor, mode="area")
            return F.interpolate(low, size=real.shape[-2:], mode="nearest")
        if self.input_transform == "inpaint":
            return real * (1 - self.hole_mask(real, random_hole))
        if seed is None:
            return torch.randn_like(real)
        return torch.randn(real.shape, generator=torch.Generator().manual_seed(seed)).to(real)

    def hole_mask(self, real: Tensor, random_hole: bool) -> Tensor:
        """[N, 1, H, W] with 1 inside each sample's square hole and 0 elsewhere."""
        n, _, h, w = real.shape
        side = self.hole_size
        if random_hole:
            top = torch.randint(0, h - side + 1, (n, 1, 1, 1), device=real.device)
            left = torch.randint(0, w - side + 1, (n, 1, 1, 1), device=real.device)
        else:
            top = torch.full((n, 1, 1, 1), (h - side) // 2, device=real.device)
            left = torch.full((n, 1, 1, 1), (w - side) // 2, device=real.device)
        rows = torch.arange(h, device=real.device).view(1, 1, h, 1)
        cols = torch.arange(w, device=real.device).view(1, 1, 1, w)
        inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
        return inside.to(real.dtype)

    def generator_input(self, real: Tensor) -> Tensor:
        return self.transform(real, random_hole=self.training)

    def discriminate(self, images: Tensor, gen_input: Tensor) -> Tensor:
        return self.discriminator(gen_input, images)

    def generator_extra_losses(self, fake: Tensor, real: Tensor, gen_input: Tensor) -> dict[str, Tensor]:
        # L1 rather than L2: less blurring (Isola et al. 2017, sec. 3.1); logged as train/g_l1.
        return {"l1": self.lambda_l1 * (fake - real).abs().mean()}

    # ------------------------------------------------------------------ inference and samples

    @torch.no_grad()
    def translate(self, inputs: Tensor) -> Tensor:
        """Generator inputs [N, C, H, W] (see ``transform``) -> outputs [N, C, H, W] in [-1, 1], eval mode."""
        return super().generate(inputs)

    def generate(self, z: Tensor) -> NoReturn:
        raise ValueError(NO_LATENT_SPACE)

    def sample_batches(self, num_samples: int, batch_size: int = 256, seed: int = 0) -> NoReturn:
        raise ValueError(NO_LATENT_SPACE)

    def validation_inputs(self, reference: Tensor, seed: int) -> Tensor:
        """The reference images themselves: each fake is the translation of its own real image's input."""
        return reference

    def validation_fakes(self, inputs: Tensor) -> Tensor:
        """uint8 reference images -> their translations of ``transform`` (centred holes, seeded noise)."""
        real = self.images_in(inputs.to(self.device)).float()
        return self.translate(self.transform(real, seed=self.hparams.sample_seed))

    @torch.no_grad()
    def detect(self, images: Tensor) -> Tensor:
        """Probability [N] that each image in [-1, 1] is fake, from the discriminator in eval mode.

        The condition is made from the image itself (a centred hole for inpainting), so this asks
        whether the image is a plausible output for its own input, e.g. whether its colours fit its grayscale.
        """
        images = images.to(self.device)
        was_training = self.discriminator.training
        self.discriminator.eval()
        try:
            return self.discriminator.detect(self.transform(images, seed=self.hparams.sample_seed), images)
        finally:
            self.discriminator.train(was_training)

    def fake_probability(self, images: Tensor) -> Tensor:
        """``detect`` on uint8 or [-1, 1] images: the conditional discriminator, not the base's unconditional call."""
        return self.detect(self.images_in(images).float())

    def set_fixed_images(self, images: Tensor) -> None:
        """Uses ``images`` [N, C, H, W] in [-1, 1] (the first ``num_samples``) for the sample grid."""
        self.fixed_real = images[: self.hparams.num_samples].detach().clone().to(self.fixed_real)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.fixed_real.shape[0] == 0:
            real = batch[0] if isinstance(batch, (list, tuple)) else batch
            self.set_fixed_images(to_unit_range(real))

    @torch.no_grad()
    def sample_grid(self) -> Tensor:
        """[3 * n, C, H, W] in [-1, 1]: input, output, target of each fixed image in turn (rows of 3)."""
        if self.fixed_real.shape[0] == 0:
            raise RuntimeError("Pix2PixGAN has no fixed images yet: train one batch or call set_fixed_images first")
        target = self.fixed_real
        inputs = self.transform(target, seed=self.hparams.sample_seed)
        outputs = self.translate(inputs)
        return torch.stack([inputs.clamp(-1, 1), outputs, target], dim=1).flatten(0, 1)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # The fixed images are filled after construction: size the buffer as saved before it is loaded.
        saved = checkpoint.get("state_dict", {}).get("fixed_real")
        if saved is not None:
            self.fixed_real = torch.empty_like(saved, device=self.fixed_real.device)
        super().on_load_checkpoint(checkpoint)
