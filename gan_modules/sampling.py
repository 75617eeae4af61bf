"""How ``generate.py`` and ``evaluate.py`` draw images from an unconditional GAN: plain, DRS, MH-GAN or JBT, truncated.

- **Truncation** (``truncation=psi``): every latent coordinate with |z| > psi is drawn again from the same seeded
  stream until none is (BigGAN's truncation trick, Brock et al. 2019): fidelity up, diversity down as psi falls.
  Coordinates that pick a category rather than vary smoothly (``GANModule.categorical_latents``: the toy GAN's
  component picker) are left alone, so every category keeps its probability.
  psi = inf draws exactly the latents of ``GANModule.sample_batches``, so the images are the same bit for bit.
- **DRS** (``method="drs"``, Azadi et al. ICLR 2019): each generated proposal is kept with a probability that
  grows with the density ratio p_data / p_g that D's calibrated logit estimates.
- **MH-GAN** (``method="mh"``, Turner et al. ICML 2019): each output image is the last state of an independence
  Metropolis-Hastings chain over ``mh_k`` generated proposals, accepted with the same calibrated D.
- **JBT** (``method="jbt"``, Jacobian-based truncation, Tanielian et al. ICML 2020): a proposal is kept when the
  Frobenius norm of G's Jacobian at its latent is among the ``jbt_keep`` smallest. A continuous G fed a connected
  latent has to cross the empty space between disconnected modes somewhere, and it crosses it fast: the latents it
  sends there are the ones where G stretches most. Needs no discriminator and no real image (a zoo entry works);
  the threshold is the ``jbt_keep`` quantile of the norms of ``calibration_images`` latents drawn first.

Both discriminator-driven samplers first calibrate D (:func:`calibrate`) on real images it never trained on: the
``held_out`` split the caller passes, which the commands take from the datamodule's ``reference_split()`` (its
``val`` split: MNIST's 10k test set, an image folder's ``data.val_fraction``). That is also the split FID is
measured against, so the calibration's real images are among FID's reference images. A datamodule without a
held-out split offers ``train``, and the calibration refuses it. Everything is drawn from one generator seeded
with ``seed`` (calibration latents, proposals, acceptance draws), so the same seed gives the same images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from gan_modules.base import GANModule

SAMPLERS = ("plain", "drs", "mh", "jbt")
NEEDS_DISCRIMINATOR = ("drs", "mh")
DRS_PERCENTILE = 0.95  # Azadi et al. 2019: gamma puts the 95th percentile of F at zero
DRS_EPSILON = 1e-6  # Azadi et al. 2019: keeps log(1 - e^(D - D_M - eps)) finite at the maximum
MH_K = 20  # proposals per output image, each a G and a D pass: longer chains select more sharply, at that cost
CALIBRATION_IMAGES = 2_500  # of each kind: plenty for two parameters, and LBFGS fits them in well under a second
CALIBRATION_STEPS = 200  # LBFGS iterations at most; two parameters converge in far fewer
JBT_KEEP = 0.9  # the share of latents JBT keeps: the 10% where G stretches most are dropped
JBT_PROBES = 8  # latent directions per image for Hutchinson's estimate when z has more continuous coordinates
MAX_PROPOSALS_PER_IMAGE = 100  # DRS stops with an error rather than loop on (a D that rejects everything)


def truncated_normal(
    num_samples: int, latent_dim: int, psi: float, generator: torch.Generator, categorical: int = 0
) -> Tensor:
    """z [num_samples, latent_dim] ~ N(0, I) with every coordinate |z| > psi drawn again from ``generator``, except
    the first ``categorical`` ones (they pick a category through their quantile: truncating them would drop the
    categories in the tails), which keep their N(0, 1) draw.

    With psi = inf this is ``torch.randn(num_samples, latent_dim, generator=generator)`` itself.
    """
    z = torch.randn(num_samples, latent_dim, generator=generator)
    continuous = torch.arange(latent_dim) >= categorical
    outside = (z.abs() > psi) & continuous
    while outside.any():
        z[outside] = torch.randn(int(outside.sum()), generator=generator)
        outside = (z.abs() > psi) & continuous
    return z


def images_and_jacobian_norms(
    model: GANModule, z: Tensor, generator: torch.Generator, probes: int = JBT_PROBES, labels: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(``model.generate(z, labels)``, ||dG(z)/dz||_F^2 per latent [N], float64 on the CPU), the norm over z's
    continuous coordinates (the first ``model.categorical_latents`` pick a category: G is flat in them almost
    everywhere); a class-conditional G's ``labels`` are held fixed.

    Forward-mode products J v, one per direction: exact, with one unit vector per coordinate, when z has at most
    ``probes`` continuous coordinates; else Hutchinson's estimate, the mean of ||J v||^2 over ``probes`` random
    +-1 directions v (drawn from ``generator``), whose expectation is ||J||_F^2.
    """
    categorical = model.categorical_latents
    continuous = z.shape[1] - categorical
    if continuous <= probes:
        directions = torch.eye(z.shape[1])[categorical:, None, :].expand(continuous, len(z), z.shape[1])
    else:
        signs = torch.randint(0, 2, (probes, len(z), continuous), generator=generator).to(z.dtype) * 2 - 1
        directions = F.pad(signs, (categorical, 0))
    with torch.inference_mode(False):  # the commands sample under inference mode; dual tensors need normal ones
        z, norms = z.clone(), torch.zeros(len(z), dtype=torch.float64)
        for v in directions:
            images, jv = torch.func.jvp(lambda z: model.generate(z, labels), (z,), (v.to(z.dtype).clone(),))
            norms += jv.detach().flatten(1).double().pow(2).sum(1).cpu()
    return images.detach(), norms / (1 if continuous <= probes else probes)


@torch.no_grad()
def discriminator_logits(model: GANModule, images: Tensor) -> Tensor:
    """D's logit per image [N] (float64, CPU) for uint8 or [-1, 1] images, D in eval mode.

    A D that answers with a map of logits (a PatchGAN) is averaged per image, as ``fake_probability`` does.
    """
    logits = model.discriminator_outputs(images, ", so DRS and MH-GAN cannot use it")
    if logits.shape[0] != len(images):
        raise ValueError(f"the discriminator answered {logits.shape[0]} logits for {len(images)} images; need one each")
    logits = logits.double().reshape(len(images), -1).mean(1).cpu()
    if not torch.isfinite(logits).all():
        raise ValueError("the discriminator gave a non-finite logit; DRS and MH-GAN need finite ones")
    return logits


def fit_calibration(real_logits: Tensor, fake_logits: Tensor, steps: int = CALIBRATION_STEPS) -> tuple[float, float]:
    """(a, b) such that sigmoid(a * logit + b) is P(real | logit) with real and generated images equally likely.

    Logistic regression (Platt scaling, Platt 1999; MH-GAN's calibration) by LBFGS; each class's mean loss
    weighs one half, so unequal counts do not shift b. Then a * logit + b estimates log p_data(x) / p_g(x).
    """
    with torch.inference_mode(False), torch.enable_grad():  # the commands sample under inference mode
        logits = torch.cat([real_logits, fake_logits]).double().clone()  # clone: a normal tensor, autograd may use it
        labels = torch.cat([torch.ones(len(real_logits)), torch.zeros(len(fake_logits))]).double()
        weights = torch.cat([torch.full((len(real_logits),), 0.5 / len(real_logits)),
                             torch.full((len(fake_logits),), 0.5 / len(fake_logits))]).double()  # fmt: skip
        params = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([params], max_iter=steps, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            optimizer.zero_grad()
            losses = F.binary_cross_entropy_with_logits(params[0] * logits + params[1], labels, reduction="none")
            loss = (weights * losses).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
    a, b = params.detach().tolist()
    return a, b


@dataclass(frozen=True)
class Calibration:
    """D's logit made a log density ratio, ``a * logit + b``, with the calibrated logits of the images it was fit on."""

    a: float
    b: float
    split: str
    real: Tensor  # calibrated logits of the held-out real images [n]
    fake: Tensor  # calibrated logits of the generated images [n]: DRS's burn-in

    def __call__(self, logits: Tensor) -> Tensor:
        return self.a * logits + self.b


def calibrate(
    model: GANModule,
    held_out: tuple[str, Dataset],
    num_images: int,
    batch_size: int,
    latents: Callable[[int], Tensor],
) -> Calibration:
    """Fits :class:`Calibration` on the first ``num_images`` images of ``held_out`` = (split name, dataset) and as
    many generated from ``latents(n)``. Refuses the training split: D has seen those images."""
    split, dataset = held_out
    check_held_out(split)
    n = min(num_images, len(dataset))
    if n < 2:
        raise ValueError(f"the {split!r} split has {len(dataset)} images; calibrating D needs at least 2")
    chunks = torch.arange(n).split(batch_size)
    real = torch.cat([discriminator_logits(model, torch.stack([dataset[i] for i in c.tolist()])) for c in chunks])
    fake = torch.cat([discriminator_logits(model, model.generate(z)) for z in latents(n).split(batch_size)])
    a, b = fit_calibration(real, fake)
    return Calibration(a, b, split, a * real + b, a * fake + b)


def check_held_out(split: str) -> None:
    """Refuses the training split as the real images of D's calibration."""
    if split == "train":
        raise ValueError(
            "DRS and MH-GAN calibrate D on real images it never trained on, but this datamodule offers only its "
            "'train' split; use a dataset with a held-out split (MNIST's test set) or train with one "
            "(--data.val_fraction 0.05 for image folders), or pass --sampler plain"
        )


MIN_PSI = 0.01  # truncated_normal redraws: at psi 0.01 a draw lands inside with probability 0.008


def check_settings(
    method: str, truncation: float, drs_percentile: float, mh_k: int, jbt_keep: float = JBT_KEEP
) -> None:
    """The sampler's settings, refused with the flag to change when they cannot work."""
    if method not in SAMPLERS:
        raise ValueError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {method!r}")
    if not truncation >= MIN_PSI:
        raise ValueError(
            f"--truncation must be a positive psi of at least {MIN_PSI} (inf for none), got {truncation}: below it "
            "the redraw loop keeps under 1% of its draws per pass, and the images barely differ any more"
        )
    if not 0 < drs_percentile <= 1:
        raise ValueError(f"--drs_percentile must be in (0, 1], got {drs_percentile}")
    if mh_k < 1:
        raise ValueError(f"--mh_k must be at least 1 proposal per image, got {mh_k}")
    if not 1 / MAX_PROPOSALS_PER_IMAGE <= jbt_keep <= 1:
        raise ValueError(
            f"--jbt_keep must be a share of latents in [{1 / MAX_PROPOSALS_PER_IMAGE}, 1] (1 keeps all), got {jbt_keep}"
        )


def psi_text(psi: float) -> str:
    """psi as tables and file names write it: ``inf``, or the shortest text that reads back as the same float."""
    return "inf" if math.isinf(psi) else repr(float(psi))


def settings_suffix(
    method: str, truncation: float, drs_percentile: float = DRS_PERCENTILE, mh_k: int = MH_K, jbt_keep: float = JBT_KEEP
) -> str:
    """A file-name part naming the settings: "" for plain untruncated sampling, else e.g. ``_drs_psi0.7``,
    ``_drs-p0.9`` (a percentile other than the default), ``_mh-k50``, ``_jbt-keep0.8``."""
    suffix = ""
    if method == "drs":
        suffix = "_drs" + ("" if drs_percentile == DRS_PERCENTILE else f"-p{drs_percentile!r}")
    elif method == "mh":
        suffix = "_mh" + ("" if mh_k == MH_K else f"-k{mh_k}")
    elif method == "jbt":
        suffix = "_jbt" + ("" if jbt_keep == JBT_KEEP else f"-keep{jbt_keep!r}")
    return suffix + ("" if math.isinf(truncation) else f"_psi{psi_text(truncation)}")


def drs_f(logits: Tensor, d_max: Tensor | float) -> Tensor:
    """Azadi et al.'s F(x) without gamma: D~(x) - D~_M - log(1 - exp(D~(x) - D~_M - eps)), the logit of
    exp(D~(x) - D~_M), the exact rejection sampler's acceptance probability (density ratio over its maximum)."""
    delta = logits - d_max
    return delta - torch.log1p(-torch.exp(delta - DRS_EPSILON))


def mh_chain(start: Tensor, proposals: Tensor, uniforms: Tensor) -> tuple[Tensor, int]:
    """Independence Metropolis-Hastings over calibrated logits: B chains from ``start`` [B] through ``proposals``
    [K, B] with ``uniforms`` [K, B] in [0, 1) -> (index [B] of each chain's last state, -1 = still the start;
    accepted moves).

    A move to x' is accepted with min(1, (1/D(x) - 1) / (1/D(x') - 1)) (Turner et al. 2019, D calibrated), which
    for D = sigmoid(l) is min(1, exp(l' - l)).
    """
    current = start.clone()
    index = torch.full(start.shape, -1, dtype=torch.long)
    accepted = 0
    for k, (proposal, u) in enumerate(zip(proposals, uniforms)):
        move = u < torch.exp((proposal - current).clamp(max=0))
        current = torch.where(move, proposal, current)
        index = torch.where(move, k, index)
        accepted += int(move.sum())
    return index, accepted


class Sampler:
    """Draws images from an unconditional GAN: ``batches(num_samples, batch_size, seed)`` like ``sample_batches``.

    ``method``: "plain" (the latents, truncated at ``truncation``), "drs", "mh" or "jbt" (those latents' images as
    proposals, kept as the module docstring says; DRS and MH-GAN need ``held_out`` = (split name, real images D
    never trained on)).
    After ``batches`` has run, ``proposed`` and ``accepted`` count its proposals and ``describe()`` reports them.

    DRS: D~_M starts at the largest calibrated logit of the calibration's generated images (the burn-in) and rises
    whenever a larger one is seen; gamma is the ``drs_percentile`` quantile of F over that burn-in (the paper's
    shift, computed once so the acceptance rule is the same for the whole run). gamma = 0 is exact rejection
    sampling (acceptance e^(D - D_M)); the paper's positive gamma is stricter, keeping mostly the proposals D rates
    near the top. One departure: when the burn-in's logits are all equal (a D that tells no image from another,
    density ratio 1 everywhere) gamma is 0 and every proposal is kept, as exact rejection sampling keeps it, where
    the shift would keep a random half. (An earlier version capped gamma at 0 always; on the 2-D mixtures that
    made every percentile the same exact rejection sampler: ``benchmarks/results/sampling_mixtures.md``.)
    MH-GAN: each chain starts at a held-out real image, as the paper does to skip burn-in; a chain that accepts
    none of its ``mh_k`` proposals starts again from a generated image and runs ``mh_k`` more, so no real image is
    ever output. JBT: the threshold is fixed before the first proposal, from the calibration's latents.
    """

    def __init__(
        self,
        model: GANModule,
        method: str = "plain",
        truncation: float = math.inf,
        held_out: tuple[str, Dataset] | None = None,
        drs_percentile: float = DRS_PERCENTILE,
        mh_k: int = MH_K,
        calibration_images: int = CALIBRATION_IMAGES,
        jbt_keep: float = JBT_KEEP,
    ) -> None:
        check_settings(method, truncation, drs_percentile, mh_k, jbt_keep)
        if getattr(model, "conditional", False):
            raise ValueError(f"{type(model).__name__} translates images and has no latent space to sample")
        if method == "jbt" and model.latent_dim <= model.categorical_latents:
            raise ValueError(f"--sampler jbt needs continuous latent coordinates; {type(model).__name__} has none")
        if method in NEEDS_DISCRIMINATOR:
            if held_out is None:
                raise ValueError(f"--sampler {method} needs held-out real images to calibrate D")
            check_held_out(held_out[0])
        self.model, self.method, self.truncation = model, method, truncation
        self.held_out, self.drs_percentile, self.mh_k, self.jbt_keep = held_out, drs_percentile, mh_k, jbt_keep
        self.calibration_images = calibration_images
        self.calibration: Calibration | None = None
        self.gamma: float | None = None
        self.jbt_threshold: float | None = None
        self.proposed = self.accepted = 0

    def latents(self, num_samples: int, generator: torch.Generator) -> Tensor:
        return truncated_normal(
            num_samples, self.model.latent_dim, self.truncation, generator, self.model.categorical_latents
        )

    def logits(self, images: Tensor) -> Tensor:
        return self.calibration(discriminator_logits(self.model, images))

    def batches(self, num_samples: int, batch_size: int = 256, seed: int = 0) -> Iterator[Tensor]:
        """Images [<= batch_size, C, H, W] in [-1, 1], ``num_samples`` in all; the same seed gives the same images."""
        generator = torch.Generator().manual_seed(seed)
        self.proposed = self.accepted = 0
        if self.method == "plain":
            for z in self.latents(num_samples, generator).split(batch_size):
                yield self.model.generate(z)
            return
        if self.method == "jbt":
            yield from self._jbt(num_samples, batch_size, generator)
            return
        self.calibration = calibrate(
            self.model, self.held_out, self.calibration_images, batch_size, lambda n: self.latents(n, generator)
        )
        if self.method == "drs":
            yield from self._drs(num_samples, batch_size, generator)
        else:
            for start in range(0, num_samples, batch_size):
                yield self._mh(start, min(batch_size, num_samples - start), generator)

    def _drs(self, num_samples: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
        burn_in = self.calibration.fake
        d_max = burn_in.max()
        informative = bool(burn_in.max() > burn_in.min())
        self.gamma = float(torch.quantile(drs_f(burn_in, d_max), self.drs_percentile)) if informative else 0.0

        def propose() -> tuple[Tensor, Tensor]:
            nonlocal d_max
            images = self.model.generate(self.latents(batch_size, generator))
            logits = self.logits(images)
            running_max = torch.cummax(logits, 0).values.clamp(min=d_max)  # D~_M rises as larger logits appear
            d_max = running_max[-1]
            accept = torch.sigmoid(drs_f(logits, running_max) - self.gamma)
            return images, torch.rand(len(logits), generator=generator, dtype=torch.float64) < accept

        yield from self._kept(
            num_samples, batch_size, propose, "a lower --drs_percentile keeps more (or use --sampler mh)"
        )

    def _jbt(self, num_samples: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
        norms = [images_and_jacobian_norms(self.model, z, generator)[1]
                 for z in self.latents(self.calibration_images, generator).split(batch_size)]  # fmt: skip
        self.jbt_threshold = float(torch.quantile(torch.cat(norms), self.jbt_keep))

        def propose() -> tuple[Tensor, Tensor]:
            images, norms = images_and_jacobian_norms(self.model, self.latents(batch_size, generator), generator)
            return images, norms <= self.jbt_threshold

        yield from self._kept(num_samples, batch_size, propose, "a higher --jbt_keep keeps more")

    def _kept(
        self, num_samples: int, batch_size: int, propose: Callable[[], tuple[Tensor, Tensor]], advice: str
    ) -> Iterator[Tensor]:
        """Batches of ``batch_size`` kept images from ``propose()`` = (proposals, which to keep), ``num_samples`` in
        all; refuses to go on after ``MAX_PROPOSALS_PER_IMAGE`` proposals per image."""
        pending, done = None, 0
        while done < num_samples:
            if self.proposed >= MAX_PROPOSALS_PER_IMAGE * num_samples:
                raise ValueError(
                    f"{self.method.upper()} kept {self.accepted:,} of {self.proposed:,} proposals "
                    f"({self.acceptance_rate:.2%}); {advice}"
                )
            images, keep = propose()
            self.proposed += len(keep)
            self.accepted += int(keep.sum())
            kept = images[keep.to(images.device)]
            pending = kept if pending is None else torch.cat([pending, kept])
            while done < num_samples and len(pending) >= min(batch_size, num_samples - done):
                size = min(batch_size, num_samples - done)
                out, pending = pending[:size], pending[size:]
                done += size
                yield out

    def _chains(self, start: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``len(start)`` chains of ``mh_k`` proposals: (their latents [K, B, latent_dim], last state index [B])."""
        z = self.latents(self.mh_k * len(start), generator).view(self.mh_k, len(start), -1)
        proposals = torch.stack([self.logits(self.model.generate(step)) for step in z])
        uniforms = torch.rand(proposals.shape, generator=generator, dtype=torch.float64)
        index, accepted = mh_chain(start, proposals, uniforms)
        self.proposed += proposals.numel()
        self.accepted += accepted
        return z, index

    def _mh(self, first: int, count: int, generator: torch.Generator) -> Tensor:
        real = self.calibration.real
        z, index = self._chains(real[torch.arange(first, first + count) % len(real)], generator)
        chosen = z[index.clamp(min=0), torch.arange(count)]
        stuck = (index < 0).nonzero().flatten()  # still at the real image: start again from a generated one
        if len(stuck):
            z0 = self.latents(len(stuck), generator)
            z, index = self._chains(self.logits(self.model.generate(z0)), generator)
            chosen[stuck] = torch.where((index >= 0)[:, None], z[index.clamp(min=0), torch.arange(len(stuck))], z0)
        return self.model.generate(chosen)

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted / proposed (DRS, JBT: kept proposals; MH-GAN: accepted moves); None for plain sampling."""
        return self.accepted / self.proposed if self.proposed else None

    def describe(self) -> dict:
        """The settings and, after ``batches``, the acceptance and the calibration, as plain values (JSON)."""
        out: dict = {"name": self.method, "truncation": None if math.isinf(self.truncation) else self.truncation}
        if self.method == "plain":
            return out
        out |= {"proposed": self.proposed, "accepted": self.accepted, "acceptance_rate": self.acceptance_rate}
        if self.method == "drs":
            out |= {"drs_percentile": self.drs_percentile, "drs_gamma": self.gamma}
        elif self.method == "jbt":
            out |= {"jbt_keep": self.jbt_keep, "jbt_threshold": self.jbt_threshold,
                    "calibration_latents": self.calibration_images}  # fmt: skip
        else:
            out["mh_k"] = self.mh_k
        if (cal := self.calibration) is not None:
            out["calibration"] = {"split": cal.split, "real_images": len(cal.real), "generated_images": len(cal.fake),
                                  "a": cal.a, "b": cal.b}  # fmt: skip
        return out


def describe_text(described: dict) -> str:
    """One line for tables and reports: ``drs, psi 0.7: 5,120 of 10,240 proposals accepted (50.0%)``."""
    psi = described["truncation"]
    text = f"{described['name']}, psi {'inf (no truncation)' if psi is None else psi_text(psi)}"
    if described.get("proposed"):
        text += (f": {described['accepted']:,} of {described['proposed']:,} proposals accepted "
                 f"({described['acceptance_rate']:.1%})")  # fmt: skip
    if (cal := described.get("calibration")) is not None:
        text += f", D calibrated on {cal['real_images']:,} {cal['split']!r} images"
    return text
