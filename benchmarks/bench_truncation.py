"""FID, precision and recall against the truncation psi, and with D-driven sampling, for one checkpoint or zoo entry.

    python -m benchmarks.bench_truncation --ckpt_path runs/quality/dcgan_mnist-s42/<stamp>/checkpoints/last.ckpt
    python -m benchmarks.bench_truncation --pretrained dcgan_mnist-seed42 --num_samples 10000   # psi rows only

For each psi of ``--psi`` (default 0.5 0.7 1.0 1.5 inf) the model is evaluated as ``evaluate.py --truncation psi``
does it (plain sampler: every latent coordinate beyond psi drawn again, ``gan_modules.sampling``): ``N`` fixed-seed
samples against the first ``N`` images of the reference split, exact fp32 TF-Inception. The reference features are
cached, so every psi after the first only generates and embeds its fakes. Fidelity (precision) should rise and
diversity (recall) fall as psi shrinks; FID says where the trade is best. ``--samplers drs mh`` (the default with
a checkpoint, which holds D; zoo entries are generators only) adds one row per D-driven sampler without truncation:
Discriminator Rejection Sampling and MH-GAN as ``evaluate.py --sampler`` runs them, D calibrated on held-out images,
with the acceptance rate. ``--samplers jbt`` adds Jacobian-based truncation (no D: zoo entries take it too).
Writes ``truncation.json``, ``truncation.md`` and ``truncation.png`` to ``benchmarks/results/`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import quality  # noqa: E402
from benchmarks.machine import header, machine  # noqa: E402
from benchmarks.tables import write_json, write_markdown  # noqa: E402
from gan_modules import zoo  # noqa: E402
from gan_modules.commands.common import check_sampler  # noqa: E402
from gan_modules.commands.evaluate import DEFAULT_NUM_SAMPLES, evaluate, metrics_path  # noqa: E402
from gan_modules.io import atomic_write  # noqa: E402
from gan_modules.sampling import (  # noqa: E402
    DRS_PERCENTILE,
    MH_K,
    NEEDS_DISCRIMINATOR,
    SAMPLERS,
    describe_text,
    psi_text,
    settings_suffix,
)

RESULTS = Path(__file__).resolve().parent / "results"
PSIS = (0.5, 0.7, 1.0, 1.5, math.inf)
D_SAMPLERS = NEEDS_DISCRIMINATOR  # need D: a checkpoint, not a zoo entry
OTHER_SAMPLERS = tuple(name for name in SAMPLERS if name != "plain")
METRICS = ("fid", "kid", "precision", "recall", "density", "coverage")


def row_metrics(
    ckpt_path: str | None, pretrained: str | None, num_samples: int, data_dir: str | None, device: str,
    sampler: str, psi: float,
) -> dict:  # fmt: skip
    """``evaluate``'s results for one row. A checkpoint's are stored beside it under ``evaluate.py``'s own file name
    (``last_metrics_n10000_drs.json``) and reused, so the plain psi = inf row the quality table measured, or a
    row of an interrupted run, is not measured again."""
    stored = None
    if ckpt_path is not None:
        stored = metrics_path(ckpt_path, num_samples, settings_suffix(sampler, psi))
        if stored.is_file():
            print(f"reusing {stored}", flush=True)
            return json.loads(stored.read_text())
    result = evaluate(
        ckpt_path, num_samples=num_samples, data_dir=data_dir, device=device, pretrained=pretrained,
        truncation=psi, sampler=sampler,
    )  # fmt: skip
    if stored is not None:
        write_json(stored, result)
    return result


def run(
    ckpt_path: str | None,
    pretrained: str | None,
    psis: tuple[float, ...],
    num_samples: int,
    data_dir: str | None,
    device: str,
    out: Path,
    command: str,
    samplers: tuple[str, ...] = (),
) -> dict:
    """One row per psi (plain sampling), then one per other sampler without truncation; the files are written
    after every row. A sampler the model refuses (a class-conditional or PacGAN D, too few acceptances)
    is listed as refused, with the reason, and the other rows stand."""
    for sampler in samplers:  # before any row: a zoo entry has no D, an unknown name is a typo
        check_sampler(sampler, math.inf, DRS_PERCENTILE, MH_K, pretrained)
    start = time.perf_counter()
    results = {
        "machine": machine(),
        "model": pretrained if pretrained is not None else zoo.shown(Path(ckpt_path)),  # repo-relative
        "num_samples": num_samples,
        "sampler": "plain" + "".join(f", {s}" for s in samplers),
        "rows": [],
        "refused": [],
    }
    for sampler, psi in [*(("plain", psi) for psi in psis), *((s, math.inf) for s in samplers)]:
        print(f"== {sampler}, psi {psi_text(psi)}", flush=True)
        try:
            result = row_metrics(ckpt_path, pretrained, num_samples, data_dir, device, sampler, psi)
        except ValueError as err:
            if sampler == "plain":
                raise
            print(f"{sampler}: refused ({err})", flush=True)
            results["refused"].append({"sampler": sampler, "reason": str(err)})
            continue
        results["reference"] = result["reference"]
        results["rows"].append({"psi": None if math.isinf(psi) else psi, **{m: result[m] for m in METRICS},
                                "sampler": result["sampler"], "eval_s": result["seconds"]["total"]})  # fmt: skip
        print(f"{sampler}, psi {psi_text(psi)}: FID {result['fid']:.3f}, precision {result['precision']:.4f}, "
              f"recall {result['recall']:.4f}", flush=True)  # fmt: skip
        write({**results, "seconds": time.perf_counter() - start}, out, command)
    results["seconds"] = time.perf_counter() - start
    write(results, out, command)
    return results


def run_for_quality_table(quick: bool, data_dir: str, command: str) -> dict:
    """``python -m benchmarks``' section: the quality table's DCGAN (seed 42; quick: its vanilla run) at every psi
    and with DRS and MH-GAN, from the run folder the quality section left, at the table's N (so its plain row is
    reused); where only the full table's zoo entry is left (no D), the psi rows alone."""
    config = "vanilla_mnist.yaml" if quick else "dcgan_mnist.yaml"
    plan = quality.QUICK if quick else quality.FULL
    root = quality.run_root(quick)
    run_folder = quality.existing_run(config, 42, plan["extra"], root)
    settings = dict(psis=(0.7, math.inf) if quick else PSIS, num_samples=plan["num_samples"], data_dir=data_dir,
                    device="auto", out=RESULTS / "quick" if quick else RESULTS, command=command)  # fmt: skip
    if run_folder is not None:
        ckpt = str(run_folder / "checkpoints" / "last.ckpt")
        return run(ckpt_path=ckpt, pretrained=None, samplers=D_SAMPLERS, **settings)
    name = quality.zoo_name(config, 42)
    if quick or name not in {entry.name for entry in zoo.list_entries() if entry.card is not None}:
        raise SystemExit(
            f"truncation: no finished {config} seed-42 run under {root} and no zoo entry {name}: run the quality "
            "section first (python -m benchmarks --only quality)"
        )
    print(f"truncation: {config} seed 42's run folder is gone; zoo entry {name} has no D, so psi rows only", flush=True)
    return run(ckpt_path=None, pretrained=name, **settings)


def write(results: dict, out: Path, command: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "truncation.json", results)
    n, split = results["num_samples"], results["reference"]["split"]
    lines = header(f"FID, precision and recall against truncation psi at N = {n:,}", results["machine"], command)
    others = [row for row in results["rows"] if row["sampler"]["name"] != "plain"]
    names = " and ".join(row["sampler"]["name"] for row in others)
    samplers = f"plain sampling at every psi, {names} without truncation" if others else "plain (no other sampler)"
    lines += [
        f"Model: `{results['model']}`. Samplers: {samplers}; truncation draws every latent coordinate with "
        f"|z| > psi again (psi = inf: no truncation). Each row: {n:,} fixed-seed samples against the first "
        f"{n:,} images of the {split!r} split, exact fp32 TF-Inception pool3. Plot: `truncation.png`. "
        f"Total time {results['seconds'] / 60:.1f} min.",
        "",
        "| sampler | psi | FID | KID (x1000) | precision | recall | density | coverage | acceptance | eval |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        psi = "inf" if row["psi"] is None else psi_text(row["psi"])
        rate = row["sampler"].get("acceptance_rate")
        lines.append(
            f"| {row['sampler']['name']} | {psi} | {row['fid']:.3f} | {row['kid'] * 1000:.3f} | {row['precision']:.4f} "
            f"| {row['recall']:.4f} | {row['density']:.4f} | {row['coverage']:.4f} "
            f"| {'-' if rate is None else f'{rate:.1%}'} | {row['eval_s']:.0f} s |"
        )
    if others:
        lines += ["", "Other samplers, as run (DRS, JBT: kept proposals; MH-GAN: accepted moves):"]
        lines += [f"- {describe_text(row['sampler'])}" for row in others]
    if results.get("refused"):
        lines += ["", "Refused for this model:"]
        lines += [f"- {r['sampler']}: {r['reason']}" for r in results["refused"]]
    write_markdown(out / "truncation.md", lines)
    plot(results, out / "truncation.png")
    print(f"wrote {out / 'truncation.md'}", flush=True)


def plot(results: dict, path: Path) -> None:
    """FID (left axis) and precision / recall (right axis) against psi; psi = inf drawn one step right of the rest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in results["rows"] if row["sampler"]["name"] == "plain"]
    rows.sort(key=lambda row: float("inf") if row["psi"] is None else row["psi"])  # lines join psi in order
    others = [row for row in results["rows"] if row["sampler"]["name"] != "plain"]
    finite = [row["psi"] for row in rows if row["psi"] is not None]
    inf_at = (max(finite) + 0.5) if finite else 1.0
    x = [inf_at if row["psi"] is None else row["psi"] for row in rows]
    fig, ax = plt.subplots(figsize=(5.6, 3.6), constrained_layout=True)
    ax.plot(x, [row["fid"] for row in rows], marker="o", color="C0", label="FID")
    ax.set_xlabel("truncation psi")
    ax.set_ylabel("FID (lower is better)")
    ax.set_xticks(x, ["inf" if row["psi"] is None else psi_text(row["psi"]) for row in rows])
    right = ax.twinx()
    right.plot(x, [row["precision"] for row in rows], marker="s", linestyle="--", color="C1", label="precision")
    right.plot(x, [row["recall"] for row in rows], marker="^", linestyle="--", color="C2", label="recall")
    for i, row in enumerate(others):  # the other samplers: FID as a labelled point at psi = inf
        ax.plot([inf_at], [row["fid"]], marker="*", markersize=10, linestyle="none", color=f"C{3 + i}",
                label=f"FID, {row['sampler']['name']}")  # fmt: skip
    right.set_ylabel("precision, recall")
    right.set_ylim(0, 1.02)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], frameon=False, fontsize=8, loc="center left")
    measured = ", ".join(dict.fromkeys(row["sampler"]["name"] for row in results["rows"]))  # what ran, not asked
    ax.set_title(f"{measured}, N = {results['num_samples']:,}: {results['model']}", fontsize=8)
    ax.grid(alpha=0.3)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt_path", help="a checkpoint written by train.py")
    source.add_argument("--pretrained", metavar="NAME", help="an entry of the model zoo")
    parser.add_argument("--psi", type=float, nargs="+", default=list(PSIS), help="truncation values (inf: none)")
    parser.add_argument(
        "--samplers", nargs="*", choices=OTHER_SAMPLERS, default=None,
        help="samplers to add as rows (default with --ckpt_path: drs mh; zoo entries have no D: none; jbt needs no D)",
    )  # fmt: skip
    parser.add_argument("--num_samples", type=int, default=DEFAULT_NUM_SAMPLES, help="generated (and real) images")
    parser.add_argument("--data_dir", default=None, help="dataset folder (default: the run's or the card's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the results files")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.bench_truncation " + " ".join(sys.argv[1:] if argv is None else argv)
    samplers = args.samplers if args.samplers is not None else (list(D_SAMPLERS) if args.ckpt_path else [])
    try:
        run(
            ckpt_path=args.ckpt_path, pretrained=args.pretrained, psis=tuple(args.psi), num_samples=args.num_samples,
            data_dir=args.data_dir, device=args.device, out=args.out, command=command.strip(), samplers=tuple(samplers),
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
