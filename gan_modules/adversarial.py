"""The adversarial update every model with a discriminator trains through: ``GANModule``'s D/G loop and
``FaceSwap``'s PatchGAN term.

StyleGAN2-ADA splits training into networks, a loss and a loop. Here the model is the loop: it decides which
network updates when and what the batch is. ``Adversary`` is the loss side with the update it drives: the
objective, the tricks' hooks in list order (the objective's own regularizers first: WGAN's weight clipping,
WGAN-GP's penalty), the finite-loss check and the clipped, scheduled optimizer step (``ManualSteps``), the
after-step hooks, the update counts and the logged statistics. So every trick, gradient clipping and the
learning-rate decay reach every adversarial model alike.

A model whose one D optimizer updates several discriminators (FaceSwap: one per identity) passes one ``Judge``
per discriminator; their losses and terms are summed into one update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from gan_modules.core import ImageModule
from gan_modules.objectives import Objective
from gan_modules.schedules import planned_batches
from gan_modules.specs import from_spec
from gan_modules.tricks.base import DOut, Step, Trick, TrickHost


def build_tricks(tricks: list | None) -> list[Trick]:
    """``model.tricks`` (objects, or specs from hparams and YAML, rebuilt safely) as tricks, each class at most once."""
    tricks = [from_spec(t, Trick, "model.tricks") for t in tricks or []]
    names = [type(t).__name__ for t in tricks]
    if twice := sorted({name for name in names if names.count(name) > 1}):
        raise ValueError(
            f"model.tricks lists {', '.join(twice)} more than once (a config's own tricks and an overlay may both "
            "add it); keep one, or clear the config's list first with --model.tricks '[]'"
        )
    return tricks


def unique_terms(network: str, per_trick: Iterable[dict[str, Tensor]]) -> dict[str, Tensor]:
    """The tricks' named terms for ``network`` ("D" or "G") in list order; one name twice is an error."""
    terms: dict[str, Tensor] = {}
    for named in per_trick:
        for name, value in named.items():
            if name in terms:
                raise ValueError(f"two tricks both add a {network} term named {name!r}; keep one of them")
            terms[name] = value
    return terms


def loggers_write_now(module: ImageModule) -> bool:
    """Whether the loggers record this step (every ``trainer.log_every_n_steps`` batches).

    ``self.log`` costs about 1 ms per key in Lightning 2.6 (it re-applies ``.to(device)`` over each result's
    state), which is a third of a vanilla-GAN step on a CPU. Step values logged between logger writes are
    dropped by Lightning anyway, so the steps compute and log their statistics only when they will be written.
    """
    connector = getattr(module._trainer, "_logger_connector", None)
    return connector is None or connector.should_update_logs


def _mean(values: list[Tensor]) -> Tensor:
    return values[0] if len(values) == 1 else torch.stack(values).mean()


def _total(results: list[DResult]) -> Tensor:
    d_loss = results[0].loss
    for result in results[1:]:
        d_loss = d_loss + result.loss
    return d_loss


class ManualSteps:
    """The optimizer steps of a manually optimized module: the finite-loss check, backward, gradient clipping that
    sees unscaled gradients, the step, and that optimizer's learning-rate schedule when the run decays them.

    The module's ``on_before_optimizer_step`` calls ``clip``: Lightning calls that hook inside ``optimizer.step()``,
    after it has unscaled 16-mixed gradients; clipped before the step, the GradScaler's scaled gradients would be.
    ``clip`` calls torch's clipping as Lightning's precision plugins do, not ``LightningModule.clip_gradients``:
    that refuses every fused optimizer under mixed precision, bf16 included, where nothing is scaled; the fused
    Adam (``ImageModule.adam``) is never used under a GradScaler.
    """

    def __init__(self, module: ImageModule, clip_algorithm: str = "norm", decay: bool = False) -> None:
        self.module = module
        self.clip_algorithm = clip_algorithm
        self.decay = decay
        self._pending_clip: float | None = None

    def step(self, optimizer, loss: Tensor, clip: float | None, name: str) -> None:
        """One update of ``optimizer`` on ``loss`` (called ``name`` in errors); a NaN or inf stops before it."""
        module = self.module
        module.check_finite(name, loss)
        optimizer.zero_grad(set_to_none=True)
        module.manual_backward(loss)
        self._pending_clip = clip
        try:
            optimizer.step()
        finally:
            self._pending_clip = None
        if self.decay:  # Lightning hands back a lone optimizer and scheduler unwrapped
            optimizers, schedules = module.optimizers(), module.lr_schedulers()
            schedule = schedules[optimizers.index(optimizer)] if isinstance(optimizers, list) else schedules
            schedule.step()

    def clip(self, optimizer) -> None:
        if self._pending_clip is None:
            return
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if self.clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, clip_value=self._pending_clip)
        else:
            torch.nn.utils.clip_grad_norm_(params, self._pending_clip)


@dataclass(frozen=True)
class Judge:
    """One discriminator as an update sees it, on images already through every trick's ``d_input``.

    ``logits`` runs it (and again, for penalties on input gradients); ``features`` (D's ``features_and_logits``)
    gives its trunk's features from the same pass, for the tricks that read them; ``name`` tells several
    discriminators apart ("a", "b") and names their logged losses (``train/d_loss_a``). ``labels``: the class of each
    image of the batch for a class-conditional D (``logits`` and ``features`` already take them), else None.
    """

    logits: Callable[[Tensor], Tensor]
    features: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None
    name: str = ""
    labels: Tensor | None = None


@dataclass
class DResult:
    """One discriminator's part of a D update."""

    name: str
    loss: Tensor  # the objective's D loss plus every D term
    terms: dict[str, Tensor]
    real_logits: Tensor
    fake_logits: Tensor


class Adversary:
    """Objective + tricks + the D update and G's adversarial term, for a host model (see the module docstring).

    The host is an ``ImageModule`` that satisfies ``TrickHost`` (its ``discriminator`` holds every discriminator
    this update trains; it keeps ``d_updates``/``g_updates`` in its checkpoints); ``judges`` is how many
    discriminators each update passes.
    """

    def __init__(
        self, host: TrickHost, objective: Objective, tricks: Iterable[Trick], steps: ManualSteps, judges: int = 1
    ) -> None:
        tricks = list(tricks)
        implied = objective.implied_tricks()
        listed = {type(t).__name__ for t in tricks}
        if twice := sorted(type(t).__name__ for t in implied if type(t).__name__ in listed):
            raise ValueError(
                f"model.tricks lists {', '.join(twice)}, which model.objective {type(objective).__name__} already "
                "applies; remove it from model.tricks"
            )
        if objective.g_needs_real_logits and (
            dropping := [type(t).__name__ for t in [*implied, *tricks] if type(t).g_logits is not Trick.g_logits]
        ):
            raise ValueError(
                f"model.objective {type(objective).__name__} pairs each fake with a real in G's loss, and "
                f"{', '.join(dropping)} chooses which fake logits G's loss sees (the pairs would no longer match): "
                "remove it from model.tricks, or use another objective"
            )
        for trick in implied:
            trick.setup(host)
        self.host = host
        self.objective = objective
        self.tricks: list[Trick] = [*implied, *tricks]  # the objective's first, the order its hooks always ran in
        self.needs_features = any(trick.needs_features for trick in self.tricks)
        self.steps = steps
        self.judges = judges
        # Each judge's reals as its last D step saw them (detached), for G-side tricks (feature matching).
        self._real_seen: dict[str, tuple[Tensor, DOut]] = {}

    def planned_d_updates(self, needed_by: str, instead: str = "null") -> int:
        """The run's planned D updates (one per training batch), counted as the learning-rate decay counts them, for
        a trick whose strength follows a schedule over the run (R1's and R2's ``gamma_end``).

        Read from the host's trainer each time it is asked, so a resumed run plans the same length as long as it is
        given the same ``trainer.max_epochs``/``max_steps``. ``needed_by`` and ``instead`` word the error for a run
        of unknown length (see ``planned_batches``).
        """
        host = self.host
        return planned_batches(
            host.trainer, steps=host.n_critic + 1, per_batches=host.n_critic, needed_by=needed_by, instead=instead
        )

    # ------------------------------------------------------------------ what D sees

    def d_input(self, images: Tensor) -> Tensor:
        """Images as D sees them: each trick's ``d_input`` in list order (identity without tricks)."""
        for trick in self.tricks:
            images = trick.d_input(images, self.host)
        return images

    def d_out(self, judge: Judge, images: Tensor) -> DOut:
        """D's logits for images already through ``d_input``, with its features when a trick needs them."""
        if self.needs_features:
            features, logits = judge.features(images)
            return DOut(logits, features)
        return DOut(judge.logits(images))

    # ------------------------------------------------------------------ the D update

    def d_step(self, optimizer, batches: Sequence[tuple[Judge, Tensor, Tensor]], clip: float | None) -> list[DResult]:
        """One D update on each judge's (real, fake) batch (fakes are detached here), summed into one loss."""
        results = [self._d_result(judge, real, fake) for judge, real, fake in batches]
        self.steps.step(optimizer, _total(results), clip, "train/d_loss")
        for trick in self.tricks:
            trick.after_d_step(self.host)
        self.host.d_updates += 1
        return results

    def _d_result(self, judge: Judge, real: Tensor, fake: Tensor) -> DResult:
        real_in, fake_in = self.d_input(real), self.d_input(fake.detach())
        real_out, fake_out = self.d_out(judge, real_in), self.d_out(judge, fake_in)
        loss = self.objective.d_loss(real_out.logits, fake_out.logits)
        terms: dict[str, Tensor] = {}
        if self.tricks:
            step = Step(self.host, self.host.d_updates, real_in, fake_in, real_out, fake_out, judge.logits, self.judges,
                        labels=judge.labels)  # fmt: skip
            terms = unique_terms("D", [trick.d_terms(step) for trick in self.tricks])
            loss = loss + sum(terms.values()) if terms else loss
            features = real_out.features.detach() if real_out.features is not None else None
            self._real_seen[judge.name] = (real_in.detach(), DOut(real_out.logits.detach(), features))
        return DResult(judge.name, loss, terms, real_out.logits, fake_out.logits)

    @torch.no_grad()
    def d_stats(self, results: list[DResult]) -> dict[str, Tensor]:
        """What a D update logs: its loss (and each named judge's), D's raw scores, and every D term.

        Scores are D's mean raw outputs for every objective; as probabilities (and the accuracy of D's call at 0.5)
        only where the loss is a cross-entropy: a Wasserstein or hinge critic's sigmoid means nothing.
        """
        stats = {"train/d_loss": _total(results).detach()}
        stats.update({f"train/d_loss_{r.name}": r.loss.detach() for r in results if r.name})
        stats["train/d_real_score"] = _mean([r.real_logits.float().mean() for r in results])
        stats["train/d_fake_score"] = _mean([r.fake_logits.float().mean() for r in results])
        if self.objective.probabilistic:
            stats["train/d_real"] = _mean([torch.sigmoid(r.real_logits).mean() for r in results])
            stats["train/d_fake"] = _mean([torch.sigmoid(r.fake_logits).mean() for r in results])
            stats["train/d_acc"] = _mean(
                [0.5 * ((r.real_logits > 0).float().mean() + (r.fake_logits < 0).float().mean()) for r in results]
            )
        for name in dict.fromkeys(name for r in results for name in r.terms):  # summed over the judges
            stats[f"train/d_{name}"] = sum(r.terms[name] for r in results if name in r.terms).detach()
        for trick in self.tricks:
            stats.update({f"train/{name}": torch.tensor(value) for name, value in trick.stats().items()})
        return stats

    # ------------------------------------------------------------------ G's side

    @contextmanager
    def frozen_discriminator(self) -> Iterator[None]:
        """D's weights get no gradient from G's loss: freezing them saves that backward work."""
        discriminator = self.host.discriminator
        discriminator.requires_grad_(False)
        try:
            yield
        finally:
            discriminator.requires_grad_(True)

    def g_loss(self, judge: Judge, fake: Tensor, real: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """(G's adversarial loss on ``fake``, which carries G's graph, through ``judge``; the tricks' G terms).

        Inside ``frozen_discriminator()``. G-side tricks see this batch's reals as the judge's D step saw them. A
        relativistic objective (``g_needs_real_logits``) compares the fakes with D's logits on the same reals from the
        current D, just updated, as R3GAN's G step does: the reals go through ``d_input`` like every image D sees, and
        no gradient flows from them.
        """
        fake_in = self.d_input(fake)
        fake_out = self.d_out(judge, fake_in)
        logits = fake_out.logits
        for trick in self.tricks:
            logits = trick.g_logits(logits, self.host)
        if self.objective.g_needs_real_logits:
            with torch.no_grad():
                real_logits = self.d_out(judge, self.d_input(real.detach())).logits
            adversarial = self.objective.g_loss(logits, real_logits)
        else:
            adversarial = self.objective.g_loss(logits)
        if not self.tricks:
            return adversarial, {}
        real_in, real_out = self._real_seen.get(judge.name) or (self.d_input(real), None)
        step = Step(self.host, self.host.g_updates, real_in, fake_in, real_out, fake_out, judge.logits, self.judges,
                    labels=judge.labels)  # fmt: skip
        return adversarial, unique_terms("G", [trick.g_terms(step) for trick in self.tricks])

    def g_update(self, optimizer, loss: Tensor, clip: float | None, name: str = "train/g_loss") -> None:
        """G's update on ``loss`` (its adversarial loss, G terms and the model's own), then the after-G hooks."""
        self.steps.step(optimizer, loss, clip, name)
        for trick in self.tricks:
            trick.after_g_step(self.host)
        self.host.g_updates += 1
