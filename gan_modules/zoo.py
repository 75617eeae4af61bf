"""The model zoo: finished generators kept in the repository, each with a card that says how it was made.

An entry is a folder ``<zoo>/<name>/`` holding

- ``generator.pt``: the sampling generator's state dict (the EMA generator when the run had one), tensors only,
  written with ``torch.save`` and read with ``torch.load(weights_only=True)``;
- ``card.json``: the model class and its hyper-parameters (plain values, as a checkpoint keeps them), the
  datamodule config as the run's ``config.yaml`` had it, seed, epochs, the evaluations with their N, the
  machine, the training command and time, and the sha256 of ``generator.pt``;
- ``README.md``: the card rendered for people.

The zoo is ``zoo/`` at the repository root, or the folder ``$GAN_MODULES_ZOO`` names. Entries are written once,
atomically (:func:`export_run`), and never overwritten. :func:`load_entry` refuses a weights file whose sha256
differs from its card's and imports the card's classes only through ``gan_modules.specs.safe_import_class``.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import pickle
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from datamodules.base import ImageDataModule
from gan_modules.accel import cpu_summary
from gan_modules.base import GANModule
from gan_modules.checkpoints import checkpoint_class_path, gan_class, read_checkpoint, shape_mismatches
from gan_modules.io import atomic_folder
from gan_modules.specs import safe_import_class

FORMAT = "gan-modules-zoo/1"
WEIGHTS = "generator.pt"
CARD = "card.json"
ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
RESERVED = {"list"}  # ``--pretrained list`` prints the zoo


@dataclass
class Entry:
    """One folder of the zoo: its card, or why the card could not be read."""

    name: str
    path: Path
    card: dict[str, Any] | None
    error: str | None = None


def zoo_root(root: str | Path | None = None) -> Path:
    """``root`` if given, else ``$GAN_MODULES_ZOO``, else the repository's ``zoo/``."""
    return Path(root or os.environ.get("GAN_MODULES_ZOO") or ROOT / "zoo").expanduser()


def entry_path(name: str, root: str | Path | None = None) -> Path:
    if not NAME.fullmatch(name) or name in RESERVED:
        raise ValueError(
            f"{name!r} is not a zoo entry name: use letters, digits, '.', '_' and '-' (not starting with one of "
            f"the last three), e.g. dcgan_mnist-seed42; {sorted(RESERVED)} are reserved"
        )
    return zoo_root(root) / name


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_card(name: str, root: str | Path | None = None) -> dict[str, Any]:
    """The card of entry ``name``; FileNotFoundError when there is no such entry, ValueError when it is unreadable."""
    path = entry_path(name, root) / CARD
    if not path.is_file():
        raise FileNotFoundError(
            f"no zoo entry {name!r} (no {path}); `python generate.py --pretrained list` lists the entries"
        )
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        found = card.get("format") if isinstance(card, dict) else type(card).__name__
        raise ValueError(f"{path} is not a zoo card of format {FORMAT!r} (found {found!r})")
    for key, field in (("model", "class_path"), ("data", "class_path"), ("weights", "sha256")):
        if not isinstance(card.get(key), dict) or not isinstance(card[key].get(field), str):
            raise ValueError(f"{path} has no {key}.{field}; re-export the entry with gan_modules.zoo.export_run")
    return card


def list_entries(root: str | Path | None = None) -> list[Entry]:
    """Every entry of the zoo, by name; a folder whose card cannot be read is listed with the reason."""
    folder = zoo_root(root)
    if not folder.is_dir():
        return []
    entries = []
    for path in sorted(p for p in folder.iterdir() if p.is_dir() and NAME.fullmatch(p.name)):
        try:
            entries.append(Entry(path.name, path, read_card(path.name, folder)))
        except (FileNotFoundError, ValueError) as err:
            entries.append(Entry(path.name, path, None, str(err)))
    return entries


def best_metrics(card: dict[str, Any], num_samples: int | None = None) -> dict[str, Any] | None:
    """The card's evaluation at ``num_samples`` (None: at the largest N it has), or None when it has none."""
    evaluations = [m for m in card.get("metrics") or [] if isinstance(m, dict) and "num_samples" in m]
    if num_samples is not None:
        evaluations = [m for m in evaluations if m["num_samples"] == num_samples]
    return max(evaluations, key=lambda m: m["num_samples"], default=None)


def stacked_mnist_results(card: dict[str, Any]) -> list[dict[str, Any]]:
    """The card's Stacked MNIST modes and KL (``evaluate()``'s ``stacked_mnist``), one per evaluation holding them."""
    return [m["stacked_mnist"] for m in card.get("metrics") or [] if isinstance(m, dict) and m.get("stacked_mnist")]


def format_modes(stacked: dict[str, Any]) -> str:
    """``1000 modes, KL 0.021 (N=26,000)``: the digit triples reached, KL to uniform and the samples behind both."""
    return f"{stacked['modes']:.0f} modes, KL {stacked['kl']:.3f} (N={int(stacked['num_samples']):,})"


def listing_row(name: str, card: dict[str, Any]) -> tuple[str, ...]:
    """One entry's row of ``format_listing``; a card missing a field it needs raises KeyError or TypeError."""
    metrics = best_metrics(card)
    fid = "-" if metrics is None else f"{metrics['fid']:.2f} (N={metrics['num_samples']:,})"
    # KL depends on N as FID does: the modes of the evaluation with the most samples.
    modes = max(stacked_mnist_results(card), key=lambda m: m["num_samples"], default=None)
    if modes is not None:
        fid += f"; {format_modes(modes)}"
    model, data = (card[key]["class_path"].rpartition(".")[2] for key in ("model", "data"))
    return (name, model, data, str(card.get("seed", "-")), str(card.get("epochs", "-")), fid)


def format_listing(entries: list[Entry], root: Path) -> str:
    """The table ``--pretrained list`` prints: name, model, data, epochs and FID with its N; for a Stacked MNIST model
    also its modes and KL with their N (``12.34 (N=10,000); 1000 modes, KL 0.021 (N=26,000)``)."""
    if not entries:
        return f"the zoo at {root} has no entries yet (zoo/README.md says how entries are made)"
    rows = [("name", "model", "data", "seed", "epochs", "FID (N)")]
    for entry in entries:
        card = entry.card
        if card is None:
            rows.append((entry.name, f"unreadable: {entry.error}", "", "", "", ""))
            continue
        try:
            rows.append(listing_row(entry.name, card))
        except (KeyError, TypeError, ValueError, AttributeError) as err:  # one bad card must not hide the others
            rows.append((entry.name, f"unreadable card: {type(err).__name__} {err}", "", "", "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([f"zoo: {root} ({len(entries)} {'entry' if len(entries) == 1 else 'entries'})", *lines])


# ---------------------------------------------------------------------------------------------------- loading


def load_weights(model: GANModule, weights: dict[str, Any], source: str) -> None:
    """Loads ``weights`` into the model's sampling generator (the EMA one when it has one), strictly."""
    target = model.sampling_generator
    problems = shape_mismatches(target.state_dict(), weights, limit=5)
    if problems:
        raise ValueError(f"{source} does not fit the {type(model).__name__} its card builds: {'; '.join(problems)}")
    target.load_state_dict(weights, strict=True)


def build_model(card: dict[str, Any], source: str) -> GANModule:
    """The card's GAN class (a ``GANModule`` subclass of this project, or one already imported) from its hparams."""
    cls = safe_import_class(str(card["model"]["class_path"]), GANModule, source)
    init_args = dict(card["model"].get("init_args") or {})
    try:
        return cls(**init_args)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: its hyper-parameters do not build a {cls.__name__} ({err})") from None


def read_weights(path: Path, expected_sha256: str) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` if its sha256 is ``expected_sha256``; refused, unread, otherwise."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the zoo entry is incomplete")
    data = path.read_bytes()
    found = sha256(data)
    if found != expected_sha256:
        raise ValueError(
            f"{path} failed its checksum: sha256 {found}, but its card says {expected_sha256}. The file is corrupt "
            "or was changed after export; nothing was loaded (restore it, e.g. `git checkout -- <file>`)"
        )
    try:
        weights = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(f"{path} is not a weights_only state dict ({err})") from None
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise ValueError(f"{path} is not a state dict of tensors")
    return weights


def load_entry(name: str, root: str | Path | None = None, map_location: str | torch.device = "cpu") -> GANModule:
    """The GAN of zoo entry ``name`` in eval mode, its sampling generator holding the entry's weights.

    The weights are checked against the card's sha256 before they are unpickled (``weights_only``). Only the
    sampling generator is loaded: the discriminator (and the raw generator of an EMA model) keep their
    initial weights, so the model is for sampling and evaluation, not for resuming training.
    """
    folder = entry_path(name, root)
    card = read_card(name, root)
    source = f"zoo entry {name!r} ({folder / CARD})"
    weights = read_weights(folder / WEIGHTS, card["weights"]["sha256"])
    model = build_model(card, source)
    load_weights(model, weights, str(folder / WEIGHTS))
    return model.to(map_location).eval()


def build_datamodule(card: dict[str, Any], data_dir: str | None = None, source: str = "zoo card") -> ImageDataModule:
    """The datamodule of the card's data config (``data_dir`` replacing its folder), for the reference split."""
    cls = safe_import_class(str(card["data"]["class_path"]), ImageDataModule, source)
    init_args = dict(card["data"].get("init_args") or {})
    if data_dir is not None:
        init_args["data_dir"] = data_dir
    return cls(**init_args)


def entry_datamodule(name: str, data_dir: str | None = None, root: str | Path | None = None) -> ImageDataModule:
    """The datamodule entry ``name`` was trained on (its card's data config); ``evaluate.py --pretrained`` uses it."""
    return build_datamodule(read_card(name, root), data_dir, source=f"zoo entry {name!r} ({CARD})")


# ---------------------------------------------------------------------------------------------------- export


def run_config(checkpoint: Path) -> tuple[Path | None, dict[str, Any] | None]:
    """The run folder above ``checkpoint`` (the first holding a ``config.yaml``) and that config."""
    for folder in checkpoint.parents:
        if (folder / "config.yaml").is_file():
            return folder, yaml.safe_load((folder / "config.yaml").read_text()) or {}
    return None, None


def card_metrics(results: dict[str, Any]) -> dict[str, Any]:
    """An ``evaluate()`` result as a card keeps it: every value but the local checkpoint path and cache state."""
    if not isinstance(results, dict) or "fid" not in results or "num_fake" not in results:
        raise ValueError("each metrics item must be an evaluate() result (evaluate.py's JSON) with fid and num_fake")
    kept = {k: v for k, v in results.items() if k != "checkpoint"}
    if isinstance(kept.get("reference"), dict):
        kept["reference"] = {k: v for k, v in kept["reference"].items() if k != "cached"}
    return {"num_samples": results["num_fake"], **kept}


def this_machine() -> dict[str, Any]:
    """A short description of the machine, for cards exported outside the benchmarks (which pass their own)."""
    return {
        "date": datetime.date.today().isoformat(),
        "cpu_flags": cpu_summary(),
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def shown(path: Path) -> str:
    """A path as a card names it: relative to the repository when it lies inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def export_run(
    source: str | Path,
    name: str,
    metrics: dict[str, Any] | list[dict[str, Any]] | None = None,
    *,
    root: str | Path | None = None,
    command: str | None = None,
    train_seconds: float | None = None,
    machine: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> Path:
    """Writes zoo entry ``name`` from a run folder (its ``checkpoints/last.ckpt``) or a checkpoint; returns it.

    ``metrics``: ``evaluate()`` results (one or a list, each at its N). ``command``: how the run was trained.
    ``train_seconds``: its training time (default: from the run folder's ``config.yaml`` to the checkpoint's
    time stamps). ``data``: the datamodule's ``{class_path, init_args}`` when no ``config.yaml`` lies above the
    checkpoint. ``training``: further plain values for the card's training section. The entry is written
    atomically and only under a new name: an existing entry is never replaced.
    """
    folder = entry_path(name, root)
    if folder.exists():
        raise ValueError(f"zoo entry {folder} already exists; entries are never overwritten: choose another name")
    source = Path(source).expanduser()
    checkpoint_path = source / "checkpoints" / "last.ckpt" if source.is_dir() else source
    checkpoint = read_checkpoint(checkpoint_path)
    run, config = run_config(checkpoint_path.resolve())
    data = data or (config or {}).get("data")
    if not isinstance(data, dict) or "class_path" not in data:
        raise ValueError(
            f"no data config for {checkpoint_path}: it lies in no run folder with a config.yaml; pass "
            "data={'class_path': ..., 'init_args': {...}} so evaluate.py --pretrained can rebuild the reference split"
        )
    class_path = checkpoint_class_path(checkpoint)
    if class_path is None:
        raise ValueError(f"{checkpoint_path} has no saved model class; it was not written by train.py")
    gan_class(class_path, base=GANModule, source=str(checkpoint_path))
    hparams = {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if not k.startswith("_")}
    state = checkpoint["state_dict"]
    network = "generator_ema" if any(k.startswith("generator_ema.module.") for k in state) else "generator"
    prefix = f"{network}.module." if network == "generator_ema" else "generator."
    weights = {k.removeprefix(prefix): v.detach().cpu().contiguous() for k, v in state.items() if k.startswith(prefix)}
    card: dict[str, Any] = {"format": FORMAT, "name": name, "model": {"class_path": class_path, "init_args": hparams}}
    model = build_model(card, f"{checkpoint_path}'s hyper-parameters")
    load_weights(model, weights, str(checkpoint_path))  # the entry will load: checked before anything is written
    if train_seconds is None and run is not None:
        train_seconds = round(checkpoint_path.stat().st_mtime - (run / "config.yaml").stat().st_mtime, 1)
    evaluations = [card_metrics(m) for m in ([metrics] if isinstance(metrics, dict) else metrics or [])]

    with atomic_folder(folder) as tmp:
        torch.save(weights, tmp / WEIGHTS)
        blob = (tmp / WEIGHTS).read_bytes()
        card |= {
            "data": data,
            "weights": {
                "file": WEIGHTS,
                "sha256": sha256(blob),
                "bytes": len(blob),
                "parameters": sum(p.numel() for p in model.sampling_generator.parameters()),
                "network": network,
            },
            "seed": (config or {}).get("seed_everything"),
            "epochs": int(checkpoint.get("epoch", -1)) + 1,
            "metrics": evaluations,
            "training": {
                "command": command,
                "seconds": train_seconds,
                "precision": ((config or {}).get("trainer") or {}).get("precision"),
                "config": config,
                **(training or {}),
            },
            "machine": machine or this_machine(),
            "source": {"run": shown(run) if run else None, "checkpoint": shown(checkpoint_path)},
            "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        }
        (tmp / CARD).write_text(json.dumps(card, indent=2) + "\n")
        (tmp / "README.md").write_text(render_card(card))
    return folder


def render_card(card: dict[str, Any]) -> str:
    """The card as Markdown, the entry's ``README.md``."""
    name, training, weights = card["name"], card["training"], card["weights"]
    minutes = "-" if training.get("seconds") is None else f"{training['seconds'] / 60:.1f} min"
    machine = card.get("machine") or {}
    lines = [
        f"# {name}",
        "",
        f"`{card['model']['class_path']}` trained on `{card['data']['class_path']}`, seed {card.get('seed')}, "
        f"{card.get('epochs')} epochs; training time {minutes} ({training.get('precision') or 'default precision'}) "
        f"on {machine.get('cpu_flags') or machine.get('cpu') or 'an unrecorded machine'}"
        + (f", GPU {machine['gpu']}" if machine.get("gpu") else "")
        + ".",
        "",
        f"Trained with: `{training.get('command') or 'not recorded'}`",
        "",
        "| N | FID | KID (x1000) | precision | recall | density | coverage | reference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in card.get("metrics") or []:
        ref = m.get("reference") or {}
        lines.append(
            f"| {m['num_samples']:,} | {m['fid']:.2f} | {1000 * m.get('kid', float('nan')):.3f} | "
            + " | ".join(f"{m.get(k, float('nan')):.3f}" for k in ("precision", "recall", "density", "coverage"))
            + f" | {m.get('num_real', '?')} {ref.get('split', '')} images |"
        )
    if stacked := stacked_mnist_results(card):
        lines += [
            "",
            "Stacked MNIST: how many of the 1,000 digit triples the samples reach, and the KL (nats) of their "
            "distribution to uniform, which depends on N (a perfectly uniform generator scores about 999 / (2N)):",
            "",
            "| N | modes (of 1000) | KL | digit classifier (sha256) |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {int(m['num_samples']):,} | {m['modes']:.0f} | {m['kl']:.4f} | "
            f"`{str(m.get('classifier_sha256') or '?')[:12]}` |"
            for m in stacked
        ]
    for m in card.get("metrics") or []:
        if accuracy := m.get("class_accuracy"):
            per_class = accuracy.get("per_class") or {}
            lines += [
                "",
                f"Class accuracy (N = {m['num_samples']:,}, samples drawn with the test set's class balance): the "
                f"shipped digit classifier agrees with the asked-for class on {100 * accuracy['accuracy']:.2f}% "
                + (f"(lowest class: {min(per_class, key=per_class.get)} at {100 * min(per_class.values()):.2f}%)."
                   if per_class else "."),
            ]  # fmt: skip
    lines += [
        "",
        f"`{weights['file']}`: the {weights['network']} state dict ({weights['parameters']:,} parameters, "
        f"{weights['bytes']:,} bytes), sha256 `{weights['sha256']}`.",
        "",
        "```bash",
        f"python generate.py --pretrained {name} --grid {name}.png",
        f"python evaluate.py --pretrained {name}",
        "```",
        "",
        "Everything else (hyper-parameters, data config, the run's whole config, the evaluations' details) is in "
        "`card.json`.",
    ]
    return "\n".join(lines) + "\n"


def metrics_out_path(name: str, num_samples: int, out: str | None = None, suffix: str = "") -> Path:
    """Where ``evaluate.py --pretrained NAME`` writes its JSON: ``--out``, else ``./NAME_metrics_n<N><suffix>.json``.

    Never inside the zoo (entries are written once, by :func:`export_run`) and never over an existing file.
    """
    return new_output_file(Path(out).expanduser() if out else Path(f"{name}_metrics_n{num_samples}{suffix}.json"))


def new_output_file(path: Path) -> Path:
    """``path``, refused when it lies inside the zoo or already exists (``evaluate.py``'s ``--out``)."""
    if path.resolve().is_relative_to(zoo_root().resolve()):
        raise ValueError(f"{path} lies inside the zoo ({zoo_root()}), whose entries never change; pass --out elsewhere")
    if path.exists():
        raise ValueError(f"{path} already exists; pass --out with a new file name so nothing is overwritten")
    return path
