"""Does the face swap swap? The synthetic config trained for its budget, its swaps measured against the ideal.

The cartoon faces (``datamodules/faces.py``) are drawn from known poses, so the ideal swap of an A face is B
drawn in the same pose. For each direction (A->B, B->A) on the 64 held-out faces per identity, the swap's
identity is read from its colour (the angle between its mean colour offset from the background and the
target's / the input's) and its pose from its face mask (centroid and long-axis angle against the ideal's),
beside a baseline that gets the identity right and the pose wrong: the target identity drawn in random poses.
Reconstruction L1 and SSIM are those of ``val/l1`` and ``val/ssim`` (unwarped held-out faces).

    python -m benchmarks.bench_faceswap                    # the config's budget, and the no-warp ablation
    python -m benchmarks.bench_faceswap --epochs 5 --no-ablation

Writes ``benchmarks/results/faceswap.md`` (+ ``.json``) and ``faceswap_grid.png``: held-out faces in rows
A, A rebuilt, A as B, B, B rebuilt, B as A (enlarged 3x, nearest neighbour).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml
from torchmetrics.functional.image import structural_similarity_index_measure
from torchvision.utils import make_grid, save_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import header, machine  # noqa: E402
from benchmarks.tables import write_json, write_markdown  # noqa: E402
from datamodules.faces import SyntheticFacesDataModule  # noqa: E402
from gan_modules.cli import quiet_known_warnings  # noqa: E402
from gan_modules.faceswap import FaceSwap  # noqa: E402
from gan_modules.io import atomic_write  # noqa: E402
from gan_modules.metrics.swap_quality import measure_swap  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CONFIG = ROOT / "configs" / "faceswap_synthetic.yaml"
# name -> model settings changed from the config's
VARIANTS = {"config": {}, "no warp": {"warp_strength": 0.0, "flip_prob": 0.0}}


def run_one(variant: str, epochs: int, precision: str, grid: Path | None) -> dict:
    config = yaml.safe_load(CONFIG.read_text())
    data_args = config["data"]["init_args"]
    model_args = {**config["model"]["init_args"], **VARIANTS[variant]}
    pl.seed_everything(config["seed_everything"], verbose=False)
    dm = SyntheticFacesDataModule(**data_args)
    model = FaceSwap(image_size=dm.image_size, num_channels=dm.num_channels, **model_args)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(
            accelerator="cpu", max_epochs=epochs, precision=precision, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp, num_sanity_val_steps=0,
            limit_val_batches=0,
        )  # fmt: skip
        start, cpu_start = time.perf_counter(), time.process_time()
        trainer.fit(model, datamodule=dm)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    row = {"variant": variant, "epochs": epochs, "steps": trainer.global_step, "wall_s": wall, "cpu_s": cpu}
    row["params"] = sum(p.numel() for p in model.parameters())
    for source, target in (("a", "b"), ("b", "a")):
        poses = dm.poses("val", source)
        row[f"{source}_to_{target}"] = measure_swap(
            lambda x, t=target: model.swap(x, to=t), source, poses, dm.image_size
        )
        row[f"{source}_rebuilt"] = measure_swap(
            lambda x, s=source: model.reconstruct(x, s), source, poses, dm.image_size, target=source
        )
        real = dm.images("val", source).float() / 127.5 - 1
        rebuilt = model.reconstruct(real, source)
        row[f"val_l1_{source}"] = (rebuilt - real).abs().mean().item()
        row[f"val_ssim_{source}"] = structural_similarity_index_measure(rebuilt, real, data_range=2.0).item()
    if grid is not None:
        model.set_fixed_images(dm.images("val", "a"), dm.images("val", "b"))
        image = make_grid(model.sample_grid(), nrow=model.sample_grid_nrow, normalize=True, value_range=(-1, 1))
        image = torch.nn.functional.interpolate(image[None], scale_factor=3, mode="nearest")[0]
        atomic_write(grid, lambda tmp: save_image(image, tmp))
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the config's)")
    parser.add_argument("--precision", default="32-true", help="Lightning precision of the training runs")
    parser.add_argument("--ablation", action=argparse.BooleanOptionalAction, default=True,
                        help="also train without the warp (and flips), at the same budget")  # fmt: skip
    parser.add_argument("--note", default="", help="a sentence on how this run was made, for the results file")
    parser.add_argument("--out", default=str(RESULTS), help="folder for faceswap.md, .json and _grid.png")
    args = parser.parse_args(argv)
    quiet_known_warnings()
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    config = yaml.safe_load(CONFIG.read_text())
    epochs = args.epochs or config["trainer"]["max_epochs"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine(), "config": str(CONFIG.relative_to(ROOT)), "precision": args.precision}
    results.update({"note": args.note, "data": config["data"]["init_args"], "model": config["model"]["init_args"]})
    results["runs"] = []
    for variant in VARIANTS if args.ablation else ["config"]:
        row = run_one(variant, epochs, args.precision, out / "faceswap_grid.png" if variant == "config" else None)
        results["runs"].append(row)
        print(f"{variant}: {row['steps']} steps in {row['wall_s']:.0f} s; " + "; ".join(summary(row)), flush=True)
    command = shlex.join(["python", "-m", "benchmarks.bench_faceswap", *(sys.argv[1:] if argv is None else argv)])
    write(results, out, command)


def summary(row: dict) -> list[str]:
    """One phrase per swap direction: identity and pose against the random-pose baseline."""
    phrases = []
    for key, name in (("a_to_b", "A->B"), ("b_to_a", "B->A")):
        m = row[key]
        phrases.append(
            f"{name}: colour {m['colour_angle_to_target']:.1f} deg from the target's vs "
            f"{m['colour_angle_to_source']:.1f} from the input's, centroid {m['centroid_error_px']:.2f} px vs "
            f"{m['centroid_error_px_random']:.2f} random, axis {m['axis_error_deg']:.1f} vs "
            f"{m['axis_error_deg_random']:.1f} deg random"
        )
    return phrases


def write(results: dict, out: Path, command: str) -> None:
    write_json(out / "faceswap.json", results)
    lines = header("Face swap on synthetic faces: identity and pose of the swap", results["machine"], command)
    data, model = results["data"], results["model"]
    first = results["runs"][0]
    lines += [
        f"`{results['config']}`: FaceSwap (base {model['base_channels']} channels, bottleneck "
        f"{model['bottleneck_dim']}, {first['params'] / 1e6:.2f}M parameters, lr {model['lr']:g}) on "
        f"{data['image_size']}x{data['image_size']} cartoon faces, {data['num_images']} per identity, batch "
        f"{data['batch_size']}, {first['epochs']} epochs ({first['steps']} steps), precision {results['precision']}. "
        f"Measured on the {data['val_images']} held-out faces per identity (poses never trained on) against the ideal "
        "swap, the target identity drawn in the input's pose (`gan_modules.metrics.swap_quality.measure_swap`). "
        "Identity: the angle between the mean colour offsets from the background of output and target (and of "
        "output and input); it does not change when a face is blurred into the background. Pose: the face mask's "
        "centroid and long-axis angle against the ideal's. Random-pose baseline: the target identity drawn in "
        "other poses of the same distribution, i.e. right identity, pose ignored. L1 in [-1, 1] units against the "
        "ideal image.",
        "",
    ]
    if results.get("note"):
        lines += [results["note"], ""]
    lines += [
        "| run | swap | colour angle to target / to input (deg) | identity right | centroid error px "
        "(random pose) | axis error deg (random pose) | L1 to ideal (random pose) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["runs"]:
        for key, name in (("a_to_b", "A -> B"), ("b_to_a", "B -> A"), ("a_rebuilt", "A rebuilt"),
                          ("b_rebuilt", "B rebuilt")):  # fmt: skip
            m = row[key]
            rebuilt = key.endswith("rebuilt")  # the input is the target: one colour angle, no identity to get right
            colour = f"{m['colour_angle_to_target']:.1f}" + ("" if rebuilt else f" / {m['colour_angle_to_source']:.1f}")
            right = "-" if rebuilt else f"{100 * m['identity_accuracy']:.0f}%"
            lines.append(
                f"| {row['variant']} | {name} | {colour} | {right} | {m['centroid_error_px']:.2f} "
                f"({m['centroid_error_px_random']:.2f}) | {m['axis_error_deg']:.1f} ({m['axis_error_deg_random']:.1f}) "
                f"| {m['l1']:.3f} ({m['l1_random']:.3f}) |"
            )
    lines += [
        "",
        "| run | val L1 A / B | val SSIM A / B | training steps | wall s | CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["runs"]:
        lines.append(
            f"| {row['variant']} | {row['val_l1_a']:.4f} / {row['val_l1_b']:.4f} | {row['val_ssim_a']:.3f} / "
            f"{row['val_ssim_b']:.3f} | {row['steps']} | {row['wall_s']:.0f} | {row['cpu_s']:.0f} |"
        )
    lines += ["", "What the numbers say:", ""]
    lines += [f"- {sentence}" for sentence in verdicts(results)]
    lines += ["", "Held-out faces, rows A, A rebuilt, A as B, B, B rebuilt, B as A: `faceswap_grid.png`."]
    write_markdown(out / "faceswap.md", lines)


def verdicts(results: dict) -> list[str]:
    """Sentences computed from the runs: does each swap carry the target's identity and the input's pose."""
    sentences = []
    for row in results["runs"]:
        for key, name in (("a_to_b", "A -> B"), ("b_to_a", "B -> A")):
            m = row[key]
            identity = "carries" if m["identity_accuracy"] >= 0.9 else "does not reliably carry"
            pose_ratio = max(m["centroid_error_px"] / m["centroid_error_px_random"],
                             m["axis_error_deg"] / m["axis_error_deg_random"])  # fmt: skip
            pose = "keeps" if pose_ratio < 0.5 else "loses much of"
            sentences.append(
                f"{row['variant']}, {name}: {identity} the target's identity ({100 * m['identity_accuracy']:.0f}% of "
                f"faces nearer its colour, {m['colour_angle_to_target']:.1f} deg off it) and {pose} the input's pose "
                f"(errors at most {pose_ratio:.2f}x those of a random pose)."
            )
    by_variant = {row["variant"]: row for row in results["runs"]}
    if "config" in by_variant and "no warp" in by_variant:

        def mean(row: dict, kind: str, key: str) -> float:
            pairs = (("a_to_b", "b_to_a"), ("a_rebuilt", "b_rebuilt"))[kind == "rebuilt"]
            return (row[pairs[0]][key] + row[pairs[1]][key]) / 2

        def gap(row: dict) -> str:
            swap, rebuilt = mean(row, "swap", "l1"), mean(row, "rebuilt", "l1")
            return f"{swap:.3f} vs {rebuilt:.3f} ({swap / rebuilt:.1f}x)"

        warp, plain = by_variant["config"], by_variant["no warp"]
        centroid = [mean(row, "swap", "centroid_error_px") for row in (warp, plain)]
        axis = [mean(row, "swap", "axis_error_deg") for row in (warp, plain)]
        sentences.append(
            f"Warp on vs off (one seed each, the same budget): swap centroid error {centroid[0]:.2f} vs "
            f"{centroid[1]:.2f} px, axis error {axis[0]:.1f} vs {axis[1]:.1f} deg. L1 to the ideal image, swap vs "
            f"reconstruction: {gap(warp)} with the warp, {gap(plain)} without it. The cartoon identities share one "
            "face layout exactly, which two real people do not."
        )
    return sentences


if __name__ == "__main__":
    main()
