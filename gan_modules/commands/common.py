"""What the commands share: a checkpoint loaded as the kind of model a command needs, its run's datamodule, and
the sampler flags of ``generate`` and ``evaluate``.

``checkpoints.load_model`` rebuilds any image model safely; here a command names the base class it needs
(a GAN for ``generate`` and ``evaluate``), so a detector or face-swap checkpoint is refused in one line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml

from datamodules.base import ImageDataModule
from datamodules.realfake import ZOO_PREFIX
from gan_modules import sampling
from gan_modules.base import GANModule
from gan_modules.checkpoints import load_model
from gan_modules.core import to_uint8
from gan_modules.io import resolve_device
from gan_modules.specs import safe_import_class


def load_gan(checkpoint_path: str | Path, map_location: str | torch.device = "cpu") -> GANModule:
    """Rebuilds the GAN variant a checkpoint was trained as; refuses other image models (a detector)."""
    return load_model(checkpoint_path, map_location=map_location, base=GANModule)


def open_generator(
    ckpt_path: str | Path, device: str, image_size: int, num_channels: int
) -> Callable[[int, int], torch.Tensor]:
    """``sample(count, seed)`` -> uint8 images [count, C, H, W] on the CPU from the GAN in ``ckpt_path`` (a
    checkpoint, or ``zoo:NAME`` for a model zoo entry).

    The GAN is refused unless its images are ``num_channels`` x ``image_size`` (the real images' shape). The
    images come from its sampling (EMA) generator and are quantized as a saved PNG would be (``to_uint8``).
    This is the ``open_generator`` that ``train.py`` hands to ``datamodules.RealFakeDataModule``.
    """
    source = str(ckpt_path)
    if source.startswith(ZOO_PREFIX):  # a model zoo entry
        from gan_modules import zoo

        model = zoo.load_entry(source.removeprefix(ZOO_PREFIX), map_location=resolve_device(device))
    else:
        model = load_gan(ckpt_path, map_location=resolve_device(device)).eval()
    shape = (model.hparams.get("num_channels"), model.hparams.get("image_size"))
    if shape != (num_channels, image_size):
        raise ValueError(
            f"{ckpt_path} generates {shape[0]}-channel {shape[1]}px images, but the real images are "
            f"{num_channels}-channel {image_size}px; pair a GAN with the datamodule it was trained on"
        )

    return lambda count, seed: sample_uint8(model, count, seed)


@torch.no_grad()
def sample_uint8(model: GANModule, count: int, seed: int) -> torch.Tensor:
    """``count`` images from a GAN's sampling (EMA) generator, latents seeded by ``seed``, as uint8 on the CPU."""
    return torch.cat([to_uint8(batch).cpu() for batch in model.sample_batches(count, batch_size=500, seed=seed)])


def datamodule_from_run(ckpt_path: Path, data_dir: str | None) -> ImageDataModule:
    """Rebuilds the datamodule from the ``config.yaml`` the CLI saved in the checkpoint's run folder."""
    for folder in (ckpt_path.parent, *ckpt_path.parents):
        config_path = folder / "config.yaml"
        if config_path.is_file():
            break
    else:
        raise FileNotFoundError(
            f"no config.yaml found above {ckpt_path}, so its dataset is unknown; pass a checkpoint inside a run folder "
            "made by train.py (<run>/config.yaml, <run>/checkpoints/*.ckpt)"
        )
    data = (yaml.safe_load(config_path.read_text()) or {}).get("data") or {}
    if "class_path" not in data:
        raise ValueError(f"{config_path} has no data.class_path; cannot tell which dataset the model was trained on")
    init_args = dict(data.get("init_args") or {})
    if data_dir is not None:
        init_args["data_dir"] = data_dir
    # A run folder may come from elsewhere: its config may name only a datamodule, never any other callable.
    return safe_import_class(str(data["class_path"]), pl.LightningDataModule, str(config_path))(**init_args)


def add_sampler_arguments(parser: argparse.ArgumentParser) -> None:
    """``--sampler``, ``--truncation``, ``--drs_percentile``, ``--mh_k``, ``--jbt_keep`` (``gan_modules.sampling``)."""
    parser.add_argument(
        "--sampler",
        choices=sampling.SAMPLERS,
        default="plain",
        help="plain; drs (discriminator rejection sampling, Azadi et al. 2019) or mh (MH-GAN, Turner et al. 2019), "
        "both with D calibrated on the held-out split: they need a checkpoint, not a zoo entry; jbt (Jacobian-based "
        "truncation, Tanielian et al. 2020: drops the latents where G stretches most; needs no D)",
    )
    parser.add_argument(
        "--truncation",
        type=float,
        default=float("inf"),
        metavar="PSI",
        help="redraw every latent coordinate with |z| > PSI (default inf: no truncation)",
    )
    parser.add_argument(
        "--drs_percentile",
        type=float,
        default=sampling.DRS_PERCENTILE,
        help="DRS: gamma puts this quantile of F over the burn-in at zero (the paper's 0.95); lower keeps more",
    )
    parser.add_argument("--mh_k", type=int, default=sampling.MH_K, help="MH-GAN: proposals per output image")
    parser.add_argument(
        "--jbt_keep",
        type=float,
        default=sampling.JBT_KEEP,
        help="JBT: the share of latents kept, those with the smallest Jacobian norms of G",
    )


def check_sampler(
    method: str,
    truncation: float,
    drs_percentile: float,
    mh_k: int,
    pretrained: str | None,
    jbt_keep: float = sampling.JBT_KEEP,
) -> None:
    """Refuses sampler settings that cannot work before anything is loaded: a bad psi, percentile, K or share, or a
    D-driven sampler for a zoo entry (only its generator is stored; its discriminator is untrained)."""
    sampling.check_settings(method, truncation, drs_percentile, mh_k, jbt_keep)
    if pretrained is not None and method in sampling.NEEDS_DISCRIMINATOR:
        raise ValueError(
            f"--sampler {method} needs the trained discriminator, and a zoo entry keeps only its generator; "
            "pass --ckpt_path with the run's checkpoint"
        )


def held_out_split(datamodule: ImageDataModule) -> tuple[str, torch.utils.data.Dataset]:
    """(name, dataset) of the real images D-driven samplers calibrate on: the datamodule's reference split."""
    datamodule.prepare_data()
    datamodule.setup("validate")
    return datamodule.reference_split()


def parse_classes(text: str | None, model: GANModule) -> list[int] | None:
    """``--classes 0,3,7`` as a list of the model's classes; every class when not given; None for an unconditional
    model (which refuses the flag)."""
    num_classes = getattr(model, "num_classes", 0)
    if not num_classes:
        if text is not None:
            raise ValueError(f"--classes is for class-conditional models; this {type(model).__name__} has no classes")
        return None
    if text is None:
        return list(range(num_classes))
    try:
        classes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--classes takes comma-separated class numbers (0,3,7), got {text!r}") from None
    if not classes or any(not 0 <= c < num_classes for c in classes):
        raise ValueError(f"--classes must name classes 0..{num_classes - 1} of this model, got {text!r}")
    return classes


class ClassSampler:
    """Draws images from a class-conditional GAN as ``sampling.Sampler`` does from an unconditional one (``batches``,
    ``describe``): image i is of class ``classes[i % len(classes)]``, from the latents ``GANModule.sample_batches``
    draws with the same seed (every coordinate beyond ``truncation`` drawn again, ``sampling.truncated_normal``).

    ``method`` "jbt" keeps, class by class, the ``jbt_keep`` share of latents with the smallest Jacobian norms of
    G(., class) (``sampling.images_and_jacobian_norms``): each class has its own threshold, the ``jbt_keep``
    quantile of its share of ``calibration_images`` latents drawn first, so every class keeps the same share and
    the class of each image stays ``classes[i % len(classes)]``. DRS and MH-GAN are refused: they calibrate D's
    score of images alone, which a projection D does not give.
    """

    def __init__(
        self,
        model: GANModule,
        classes: list[int] | torch.Tensor,
        truncation: float = float("inf"),
        method: str = "plain",
        jbt_keep: float = sampling.JBT_KEEP,
        calibration_images: int = sampling.CALIBRATION_IMAGES,
    ) -> None:
        if method not in ("plain", "jbt"):
            raise ValueError(f"ClassSampler draws plain or jbt samples, got {method!r}")
        sampling.check_settings(method, truncation, sampling.DRS_PERCENTILE, sampling.MH_K, jbt_keep)
        if method == "jbt" and model.latent_dim <= model.categorical_latents:
            raise ValueError(f"--sampler jbt needs continuous latent coordinates; {type(model).__name__} has none")
        self.model, self.truncation, self.method = model, truncation, method
        self.jbt_keep, self.calibration_images = jbt_keep, calibration_images
        self.classes = torch.as_tensor(classes, dtype=torch.long)
        self.labels: torch.Tensor | None = None  # those of the last ``batches``
        self.jbt_thresholds: dict[int, float] | None = None
        self.proposed = self.accepted = 0

    def labels_for(self, num_samples: int) -> torch.Tensor:
        """The class of each of ``num_samples`` images: ``classes`` over and over."""
        return self.classes.repeat(-(-num_samples // len(self.classes)))[:num_samples]

    def latents(self, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        return sampling.truncated_normal(
            num_samples, self.model.latent_dim, self.truncation, generator, self.model.categorical_latents
        )

    def batches(self, num_samples: int, batch_size: int = 256, seed: int = 0):
        self.labels = self.labels_for(num_samples)
        generator = torch.Generator().manual_seed(seed)
        self.proposed = self.accepted = 0
        if self.method == "jbt":
            yield from self._jbt(num_samples, batch_size, generator)
            return
        for chunk, labels in zip(self.latents(num_samples, generator).split(batch_size), self.labels.split(batch_size)):
            yield self.model.generate(chunk, labels)

    def _norms(self, labels: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.latents(len(labels), generator)
        return sampling.images_and_jacobian_norms(self.model, z, generator, labels=labels.to(self.model.device))

    def _jbt(self, num_samples: int, batch_size: int, generator: torch.Generator):
        present = self.labels.unique()
        calibration = present.repeat(-(-self.calibration_images // len(present)))
        norms = torch.cat([self._norms(y, generator)[1] for y in calibration.split(batch_size)])
        self.jbt_thresholds = {int(c): float(torch.quantile(norms[calibration == c], self.jbt_keep)) for c in present}
        cut = torch.zeros(int(present.max()) + 1, dtype=torch.float64)
        cut[present] = torch.tensor([self.jbt_thresholds[int(c)] for c in present], dtype=torch.float64)
        pools: dict[int, list[torch.Tensor]] = {int(c): [] for c in present}  # kept images of each class, in order
        for chunk in self.labels.split(batch_size):
            need = {int(c): int((chunk == c).sum()) for c in chunk.unique()}
            while short := [c for c, n in need.items() if len(pools[c]) < n]:
                if self.proposed >= sampling.MAX_PROPOSALS_PER_IMAGE * num_samples:
                    raise ValueError(
                        f"JBT kept {self.accepted:,} of {self.proposed:,} proposals; a higher --jbt_keep keeps more"
                    )
                labels = torch.tensor(short).repeat(-(-batch_size // len(short)))[:batch_size]
                images, norms = self._norms(labels, generator)
                keep = norms <= cut[labels]
                self.proposed, self.accepted = self.proposed + len(keep), self.accepted + int(keep.sum())
                for image, label in zip(images[keep.to(images.device)], labels[keep]):
                    pools[int(label)].append(image)
            yield torch.stack([pools[int(c)].pop(0) for c in chunk])

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.proposed if self.proposed else None

    def describe(self) -> dict:
        out: dict = {"name": self.method, "truncation": None if self.truncation == float("inf") else self.truncation}
        if self.method == "jbt":
            out |= {"proposed": self.proposed, "accepted": self.accepted, "acceptance_rate": self.acceptance_rate,
                    "jbt_keep": self.jbt_keep, "jbt_thresholds": self.jbt_thresholds,
                    "calibration_latents": self.calibration_images}  # fmt: skip
        return out


def image_sampler(model: GANModule, method: str, truncation: float, classes: list[int] | torch.Tensor | None, **kwargs):
    """``sampling.Sampler(model, method, truncation, **kwargs)``, or for a class-conditional model (``classes`` not
    None) a ``ClassSampler``, which draws plain, truncated or JBT images."""
    if classes is None:
        return sampling.Sampler(model, method, truncation, **kwargs)
    if method in sampling.NEEDS_DISCRIMINATOR:
        raise ValueError(
            f"--sampler {method} calibrates D's score of images alone, and this class-conditional "
            f"{type(model).__name__}'s D judges (image, class) pairs; use --sampler plain or jbt (--truncation works)"
        )
    return ClassSampler(model, classes, truncation, method, kwargs.get("jbt_keep", sampling.JBT_KEEP))


def generate_in_batches(
    model: GANModule, z: torch.Tensor, labels: torch.Tensor | None, batch_size: int
) -> torch.Tensor:
    """``model.generate`` of z [N, latent_dim] (with labels [N] for a class-conditional model), ``batch_size`` at a
    time, on the CPU."""
    chunks = z.split(batch_size)
    classes = labels.split(batch_size) if labels is not None else [None] * len(chunks)
    return torch.cat([model.generate(chunk, y).cpu() for chunk, y in zip(chunks, classes)])


def rows_by_class(images: torch.Tensor, labels: torch.Tensor, classes: list[int]) -> tuple[torch.Tensor, int]:
    """(tiles, images per row) of a grid with one class per row, in ``classes``' order: each class's images in their
    order, rows padded with blank (black) tiles to the longest. ``images`` in [0, 1]."""
    rows = [images[labels == c] for c in dict.fromkeys(classes)]
    width = max(len(row) for row in rows)
    blank = images.new_zeros(1, *images.shape[1:])
    return torch.cat([torch.cat([row, blank.expand(width - len(row), *images.shape[1:])]) for row in rows]), width
