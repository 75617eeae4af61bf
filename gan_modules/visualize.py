"""Pictures of a run: loss and D-output curves from ``metrics.csv``, and latent interpolations.

``python plot.py <run folder>`` (``gan_modules.commands.plot``) redraws ``<run>/training.png`` on demand; the
CLI draws it when training ends. matplotlib is imported lazily with the Agg backend (no display needed).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor

from gan_modules.io import atomic_write

TRAIN_KEYS = ("train/d_loss", "train/g_loss")
VAL_KEYS = ("val/fid", "val/kid")


def read_metrics(path: str | Path) -> dict[str, list[tuple[float, float]]]:
    """``metrics.csv`` as {key: [(step, value), ...]}, empty cells skipped; ``val/*`` keyed by epoch."""
    series: dict[str, list[tuple[float, float]]] = {}
    with Path(path).open(newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key in ("epoch", "step") or value in (None, ""):
                    continue
                x = row["epoch"] if key.startswith("val/") else row["step"]
                series.setdefault(key, []).append((float(x), float(value)))
    return series


def _smooth(values: list[float], window: int) -> list[float]:
    if window <= 1:
        return values
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_training(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draws D/G loss, D(x) vs D(G(z)) over steps and val/FID, KID over epochs; returns the PNG's path.

    Raw values are drawn faint with a moving average on top (GAN losses are noisy by nature).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    run_dir = Path(run_dir).expanduser()
    metrics = run_dir / "metrics.csv"
    if not metrics.is_file():
        raise FileNotFoundError(
            f"{metrics} does not exist: pass a run folder written by train.py with the CSV logger (the default)"
        )
    series = read_metrics(metrics)
    gan = any(k in series for k in TRAIN_KEYS)
    # Models without a D/G game (the detector, the face swap): their own train/* curves and val/* values.
    other_train = [k for k in series if k.startswith("train/") and k != "train/d_updates" and k != "train/g_updates"]
    if not gan and not other_train:
        raise ValueError(f"{metrics} holds no training losses yet ({', '.join(TRAIN_KEYS)} or other train/* keys)")
    val = [k for k in VAL_KEYS if k in series] if gan else [k for k in series if k.startswith("val/")]
    panels = (3 if gan else 2) if val else (2 if gan else 1)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4), constrained_layout=True, squeeze=False)
    axes = axes[0]
    if gan:
        groups = [
            (axes[0], ("train/d_loss", "train/g_loss"), "loss"),
            (axes[1], ("train/d_real", "train/d_fake"), "mean D(x), D(G(z))"),
        ]
        if "train/d_real" not in series:  # a critic (Wasserstein, hinge, LS): its raw scores instead
            groups[1] = (axes[1], ("train/d_real_score", "train/d_fake_score"), "mean D score")
    else:
        groups = [(axes[0], tuple(other_train), "training")]
    labels = {
        "train/d_real": "D(x), real",
        "train/d_fake": "D(G(z)), fake",
        "train/d_real_score": "real",
        "train/d_fake_score": "fake",
    }
    for ax, keys, ylabel in groups:
        for key in keys:
            if key not in series:
                continue
            steps, values = zip(*series[key])
            window = max(1, len(values) // 50)
            (line,) = ax.plot(steps, values, alpha=0.25, linewidth=0.8)
            ax.plot(steps, _smooth(list(values), window), color=line.get_color(), label=labels.get(key, key[6:]))
        ax.set_xlabel("optimizer step")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k" if abs(x) >= 1000 else f"{x:g}"))
        ax.set_ylabel(ylabel)
        ax.legend(frameon=False)
        ax.grid(alpha=0.3)
    if val:
        # GANs: val/fid on the left axis, val/kid (another scale) on a twin axis; others share one axis.
        ax = axes[-1]
        handles = []
        for i, key in enumerate(val):
            target = ax if i == 0 or not gan else ax.twinx()
            epochs, values = zip(*series[key])
            color = f"C{i + 2}"
            label = f"{key} (last: {values[-1]:.4g})"
            handles += target.plot([e + 1 for e in epochs], values, marker="o", color=color, label=label)
            target.set_ylabel(key if gan else "validation", color=color if gan else "black")
        ax.legend(handles=handles, frameon=False)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.suptitle(f"{run_dir.parent.name}/{run_dir.name}", fontsize=10)
    out = atomic_write(out if out is not None else run_dir / "training.png", lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return out


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation between latents a, b [N, D] at fractions t [T]: [N, T, D].

    For Gaussian latents the straight line passes through the low-norm middle of the ball, which the
    generator rarely saw in training; slerp keeps the norm on the shell where samples live (White 2016).
    Falls back to the straight line where a and b are (anti)parallel.
    """
    a_n, b_n = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(1).clamp(-1, 1))[:, None, None]  # [N, 1, 1]
    t = t[None, :, None]
    so = torch.sin(omega)
    spherical = (torch.sin((1 - t) * omega) * a[:, None] + torch.sin(t * omega) * b[:, None]) / so.clamp_min(1e-7)
    linear = (1 - t) * a[:, None] + t * b[:, None]
    return torch.where(so.abs() < 1e-6, linear, spherical)


def interpolation_latents(latent_dim: int, pairs: int, steps: int, seed: int = 0) -> Tensor:
    """[pairs * steps, latent_dim]: row i walks by slerp from one seeded latent to another in ``steps`` steps."""
    if pairs < 1 or steps < 2:
        raise ValueError(f"an interpolation needs pairs >= 1 and steps >= 2, got {pairs} and {steps}")
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(pairs, latent_dim, generator=g), torch.randn(pairs, latent_dim, generator=g)
    return slerp(a, b, torch.linspace(0, 1, steps)).reshape(pairs * steps, latent_dim)


def save_gif(frames: Iterable[Tensor], path: str | Path, duration_ms: int = 80) -> Path:
    """Frames [C, H, W] in [0, 1] -> an endless GIF at ``path`` (written to a temporary name first)."""
    from PIL import Image

    images = []
    for frame in frames:
        array = frame.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).squeeze(-1).numpy()
        images.append(Image.fromarray(array).convert("P", palette=Image.Palette.ADAPTIVE))
    if not images:
        raise ValueError("no frames to write")
    return atomic_write(
        path, lambda tmp: images[0].save(tmp, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    )


def walk_frames(model, num_keys: int, steps: int, seed: int = 0, label: int | None = None) -> Tensor:
    """A closed walk through ``num_keys`` seeded latents (slerp, ``steps`` per leg): images [K*steps, C, H, W]; every
    frame of class ``label`` for a class-conditional model."""
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(num_keys, model.latent_dim, generator=g)
    t = torch.linspace(0, 1, steps + 1)[:-1]
    z = slerp(keys, keys.roll(-1, 0), t).reshape(-1, model.latent_dim)
    labels = (lambda n: None) if label is None else (lambda n: torch.full((n,), label, dtype=torch.long))
    return torch.cat([model.generate(chunk, labels(len(chunk))).cpu() for chunk in z.split(256)])


def plot_points(samples: Tensor, means: Tensor, path: str | Path, title: str = "", sigma: float | None = None) -> Path:
    """Scatter of generated 2-D points over the mixture's modes (circles of 3 sigma: the high-quality zone)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.6, 3.6), constrained_layout=True)
    points = samples.detach().float().cpu()
    ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.35, color="C0", linewidths=0)
    centres = means.detach().float().cpu()
    ax.scatter(centres[:, 0], centres[:, 1], s=14, marker="x", color="C3")
    if sigma is not None:
        for cx, cy in centres.tolist():
            ax.add_patch(matplotlib.patches.Circle((cx, cy), 3 * sigma, fill=False, color="C3", linewidth=0.6))
    span = float(centres.abs().max()) * 1.5 + 0.2
    ax.set_xlim(-span, span)
    ax.set_ylim(-span, span)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    path = atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)
    return path
