"""``benchmarks/results/tricks.md``: the 2-D mixtures (``bench_tricks``) and the MNIST ablation (``bench_ablation``).

Both benchmarks write their own JSON and then render the one markdown file from whatever JSON is there, so the
rendering lives here, below both: it reads results, never runs anything, and imports neither benchmark.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from benchmarks import tables
from benchmarks.machine import header, probe_text

# The 2-D mixtures' configurations (``bench_tricks.CONFIGS`` builds each one), in table order.
TOY_MIXTURE = "toy_mixture.yaml (R1 + lr 1e-3 decayed)"
TOP_K = "toy_mixture.yaml + top-k"
CONFIG_ORDER = ["GAN", "PacGAN2", "PacGAN4", "minibatch stddev", "R1 + PacGAN4", TOY_MIXTURE, TOP_K]
# A configuration built on another is also compared with that one: against the plain GAN alone, the sentence
# would credit it with what its base already did.
EXTENDS = {TOP_K: TOY_MIXTURE}
# Lin et al. 2018, Table 1 (modes, high-quality %), for the same protocol.
PUBLISHED = {
    ("ring", "GAN"): (6.3, 98.2),
    ("ring", "PacGAN4"): (7.8, 95.9),
    ("grid", "GAN"): (17.3, 94.8),
    ("grid", "PacGAN4"): (24.8, 93.6),
}
# The MNIST ablation's reference row: the shipped config unchanged.
BASELINE = "dcgan_mnist.yaml (lazy R1, nearest upsampling)"


def write_markdown(out: Path, command: str) -> None:
    """``tricks.md`` from ``tricks.json`` (2-D mixtures) and ``tricks_mnist.json`` (``bench_ablation``)."""
    toy_path, mnist_path = out / "tricks.json", out / "tricks_mnist.json"
    toy = json.loads(toy_path.read_text()) if toy_path.is_file() else None
    mnist = json.loads(mnist_path.read_text()) if mnist_path.is_file() else None
    lines = header("Training tricks: what each one does", (toy or mnist)["machine"], command)
    if toy is not None:
        lines += toy_section(toy, toy.get("command", "python -m benchmarks.bench_tricks"), toy.get("seeds", 5))
    if mnist is not None:
        lines += ["", *mnist_section(mnist, mnist.get("command", "python -m benchmarks.bench_ablation"))]
    tables.write_markdown(out / "tricks.md", lines)


def summarize(values: list[float]) -> tuple[float, float]:
    """Mean and standard error."""
    mean = statistics.mean(values)
    stderr = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return mean, stderr


def table_keys(results: dict) -> list[tuple[str, str]]:
    """(mixture, configuration) pairs in table order: ring then grid, configurations as in ``CONFIG_ORDER``."""
    pairs = dict.fromkeys((r["mixture"], r["config"]) for r in results["runs"])
    return sorted(
        pairs,
        key=lambda p: (["ring", "grid"].index(p[0]), CONFIG_ORDER.index(p[1]) if p[1] in CONFIG_ORDER else 99),
    )


def verdicts(results: dict) -> list[str]:
    """One sentence per (mixture, configuration): its modes and high-quality share against the plain GAN's,
    and against the configuration it extends (``EXTENDS``) when that one was measured too."""

    def stats(mixture: str, config: str) -> dict[str, tuple[float, float]] | None:
        rows = [r for r in results["runs"] if r["mixture"] == mixture and r["config"] == config]
        if not rows:
            return None
        return {
            "modes": summarize([r["modes"] for r in rows]),
            "hq": summarize([100 * r["high_quality"] for r in rows]),
        }

    def compare(name: str, ours: tuple[float, float], base: tuple[float, float], unit: str) -> str:
        diff, se = ours[0] - base[0], (ours[1] ** 2 + base[1] ** 2) ** 0.5
        if abs(diff) <= 2 * se:
            return f"{name} {ours[0]:.1f}{unit} vs {base[0]:.1f}{unit} (no measurable difference)"
        return f"{name} {ours[0]:.1f}{unit} vs {base[0]:.1f}{unit} ({'better' if diff > 0 else 'worse'})"

    sentences = []
    for mixture, config in table_keys(results):
        base = stats(mixture, "GAN")
        if config == "GAN" or base is None:
            continue
        ours = stats(mixture, config)
        sentence = (
            f"{config} on the {mixture}: {compare('modes', ours['modes'], base['modes'], '')}, "
            f"{compare('high quality', ours['hq'], base['hq'], '%')}"
        )
        parent = stats(mixture, EXTENDS[config]) if config in EXTENDS else None
        if parent is not None:
            sentence += (
                f"; against {EXTENDS[config]}, which it extends: "
                f"{compare('modes', ours['modes'], parent['modes'], '')}, "
                f"{compare('high quality', ours['hq'], parent['hq'], '%')}"
            )
        sentences.append(sentence + ", at this budget.")
    return sentences


def toy_section(results: dict, command: str, seeds: int) -> list[str]:
    """The 2-D mixtures' markdown: the table, PacGAN's published numbers and a sentence per configuration."""
    m = results["model"]
    lines = [
        "## Mode collapse: 2-D mixtures",
        "",
        f"`{command}`. "
        f"PacGAN's protocol (Lin et al. 2018): ring of 8 modes (radius 1, sigma 0.01) and grid of 25 modes "
        f"(means {{-4,-2,0,2,4}}^2, sigma 0.05); {results['num_eval']:,} samples scored per run; a sample is high "
        "quality within 3 sigma of its nearest mode, a mode is covered with at least one high-quality sample. "
        f"Toy MLP GAN (`gan_modules/toy.py`): G {' x '.join(map(str, m['g_hidden_dims']))} ReLU + BatchNorm, "
        f"D {' x '.join(map(str, m['d_hidden_dims']))} LeakyReLU, non-saturating loss, Adam {m['lr']:g} (betas 0.5, "
        f"0.999), samples from the EMA of G (decay {m.get('ema_decay')}), {results['steps']:,} updates of batch "
        f"{results['batch_size']}; mean ± standard error over "
        f"{seeds} seed(s). Published: Lin et al. 2018, Table 1 (their networks and budget, not ours).",
        "",
        "| mixture | configuration | modes | high quality | CPU s per run | published (modes / HQ) |",
        "|---|---|---|---|---|---|",
    ]
    keys = table_keys(results)
    for mixture, config in keys:
        rows = [r for r in results["runs"] if r["mixture"] == mixture and r["config"] == config]
        modes, modes_se = summarize([r["modes"] for r in rows])
        hq, hq_se = summarize([100 * r["high_quality"] for r in rows])
        cpu = statistics.mean(r["cpu_s"] for r in rows)
        total = int(rows[0]["num_modes"])
        published = PUBLISHED.get((mixture, config))
        pub = f"{published[0]} / {published[1]}%" if published else "-"
        lines.append(
            f"| {mixture} | {config} | {modes:.1f} ± {modes_se:.1f} of {total} | {hq:.1f} ± {hq_se:.1f}% | "
            f"{cpu:.0f} | {pub} |"
        )
    earlier = sorted({f"{r['config']}" for r in results["runs"] if "measured" in r})
    if earlier:
        lines += ["", f"Rows kept from an earlier invocation at the same budget and settings: {', '.join(earlier)}."]
    lines += [
        "",
        "What the numbers say, each configuration against the plain GAN on the same mixture, and a configuration "
        "built on another also against that one (a difference counts when it exceeds twice its standard error):",
        "",
    ]
    lines += [f"- {sentence}" for sentence in verdicts(results)]
    lines += ["", "Scatter plots of seed 0 (2,500 samples, modes as crosses, 3-sigma circles): `tricks/`."]
    return lines


def mnist_section(results: dict, command: str) -> list[str]:
    """The MNIST ablation's markdown: the table and a sentence per row against the shipped config."""
    n, epochs = results["num_samples"], results["epochs"]
    names = list(dict.fromkeys(r["name"] for r in results["runs"]))
    seeds = sorted({r["seed"] for r in results["runs"]})
    stats = {}
    for name in names:
        runs = [r for r in results["runs"] if r["name"] == name]
        stats[name] = {
            "fid": tables.spread([r["fid"] for r in runs]),
            "kid": tables.spread([1000 * r["kid"] for r in runs]),
            "precision": statistics.mean(r["precision"] for r in runs),
            "recall": statistics.mean(r["recall"] for r in runs),
            "train_s": statistics.mean(r["train_s"] for r in runs),
            "citation": runs[0]["citation"],
        }
    m = results["machine"]
    lines = [
        "## MNIST: each trick on or off from the DCGAN config",
        "",
        f"Measured {m['date']} on {m['cpu_flags']}, 1-minute load average at the start "
        f"{m['load_average_at_start'][0]}" + probe_text(m, ", host speed ") + f". `{command}`. Each row: "
        "`python train.py --config configs/dcgan_mnist.yaml --seed_everything <seed> "
        f"--trainer.max_epochs {epochs}` plus the row's change ({results['steps']:,} D and G updates of batch 64), "
        f"then FID and KID of the final EMA generator at N = {n:,} (generated vs the first {n:,} MNIST test "
        "images, exact fp32 TF-Inception; FID at this N reads higher than at 10,000, so compare rows only with "
        f"each other). Mean ± half the range over seeds {', '.join(map(str, seeds))}. This budget shows what a "
        "trick does to the first epoch, not where a long run ends.",
        "",
        "| configuration | paper | FID | KID (x1000) | precision | recall | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        s = stats[name]
        lines.append(
            f"| {name} | {s['citation'] or '-'} | {s['fid'][0]:.2f} ± {s['fid'][1]:.2f} | "
            f"{s['kid'][0]:.2f} ± {s['kid'][1]:.2f} | {s['precision']:.3f} | {s['recall']:.3f} | {s['train_s']:.0f} |"
        )
    if BASELINE in stats and len(names) > 1:
        base = stats[BASELINE]
        lines += [
            "",
            "What the numbers say against the shipped config (a difference counts when it exceeds the sum of the "
            "two rows' half-ranges, i.e. when the seeds' intervals do not overlap):",
            "",
        ]
        for name in names:
            if name == BASELINE:
                continue
            s = stats[name]
            diff = s["fid"][0] - base["fid"][0]
            if abs(diff) <= s["fid"][1] + base["fid"][1]:
                verdict = "no measurable difference at this budget"
            else:
                verdict = "better" if diff < 0 else "worse"
            slower = s["train_s"] / base["train_s"] if base["train_s"] else float("nan")
            lines.append(
                f"- **{name}**: FID {s['fid'][0]:.2f} vs {base['fid'][0]:.2f} ({verdict}); "
                f"{slower:.2f}x the shipped config's training time."
            )
    return lines
