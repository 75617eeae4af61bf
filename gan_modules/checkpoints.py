"""Reading checkpoints without trusting them.

A ``.ckpt`` file is a pickle, and unpickling an arbitrary file can run arbitrary code. Every place in
this project that reads a checkpoint goes through :func:`read_checkpoint`, which unpickles with
``torch.load(weights_only=True)``: tensors, numbers, strings, lists and dicts only, which is all a
checkpoint written by ``train.py`` holds. The model class a checkpoint names is imported only when it
resolves to a subclass of the project's image-model base class (:func:`gan_class`), and only from this project's
packages or from a module the user has already imported (their own subclass), so naming a module in a
checkpoint cannot make the loader import it.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any

import torch

from gan_modules.core import ImageModule
from gan_modules.specs import UnsafeClassError, safe_import_class


class UnsafeCheckpointError(ValueError):
    """The checkpoint holds (or names) something this project will not load."""


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint at ``path`` as a dict, unpickled with ``weights_only=True``; nothing in it is run."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; pass a .ckpt file such as <run>/checkpoints/last.ckpt"
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        named = [line for line in lines if "Unsupported global" in line or "GLOBAL" in line]
        reason = (named or lines or [type(err).__name__])[0]
        raise UnsafeCheckpointError(
            f"{path} was refused: it holds Python objects other than tensors and plain values ({reason}). "
            "Checkpoints written by train.py never do; nothing in the file was run. Load only checkpoints "
            "you trust; for one you wrote yourself, re-save its state_dict and hyper-parameters as plain values"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"{path} is not a readable checkpoint ({err}); was it written completely?") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path} is not a Lightning checkpoint (no state_dict); pass a .ckpt written by train.py")
    return checkpoint


def checkpoint_class_path(checkpoint: dict[str, Any]) -> str | None:
    """The model class a checkpoint says it was trained as (saved by the module and by the CLI)."""
    path = checkpoint.get("gan_class_path") or checkpoint.get("hyper_parameters", {}).get("_class_path")
    return path if isinstance(path, str) else None


def import_class(class_path: str) -> type:
    """The class at ``module.Name``; raises ImportError/AttributeError/ValueError as Python does."""
    module_name, _, name = class_path.rpartition(".")
    if not module_name:
        raise ValueError(f"{class_path!r} is not a class path of the form package.module.Class")
    return getattr(importlib.import_module(module_name), name)


def gan_class(class_path: str, base: type = ImageModule, source: str = "the checkpoint") -> type:
    """The class ``class_path`` names, if it is a subclass of ``base``; refuses anything else, unimported.

    Modules of this project are imported on demand; any other module must already be imported (a user's own
    subclass: import it before loading), so a checkpoint cannot make the loader run a module's code.
    """
    try:
        return safe_import_class(class_path, base, source)
    except UnsafeClassError as err:
        raise UnsafeCheckpointError(str(err)) from None


def load_model(
    checkpoint_path: str | Path, map_location: str | torch.device = "cpu", base: type = ImageModule
) -> ImageModule:
    """Rebuilds the model a checkpoint was trained as (any ``base`` subclass), safely (see the module docstring)."""
    path = Path(checkpoint_path).expanduser()
    checkpoint = read_checkpoint(path, map_location="cpu")
    class_path = checkpoint_class_path(checkpoint)
    if class_path is None:
        raise ValueError(f"{path} has no saved model class; it was not written by train.py")
    cls = gan_class(class_path, base=ImageModule, source=str(path))
    if not issubclass(cls, base):
        raise ValueError(
            f"{path} holds a {cls.__name__}, not a {base.__name__}; this command needs a {base.__name__} checkpoint"
        )
    return cls.load_from_checkpoint(path, map_location=map_location, weights_only=True)


def state_shapes(state_dict: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state_dict.items() if isinstance(v, torch.Tensor)}


def shape_mismatches(expected: dict[str, Any], found: dict[str, Any], limit: int = 3) -> list[str]:
    """Up to ``limit`` readable differences between two state dicts' keys and shapes."""
    a, b = state_shapes(expected), state_shapes(found)
    # An empty buffer is filled after construction (a model's fixed sample images) and sized on load: any shape fits.
    problems = [f"{k}: {a[k]} vs {b[k]}" for k in a.keys() & b.keys() if a[k] != b[k] and 0 not in a[k]]
    problems += [f"{k}: missing from the checkpoint" for k in a.keys() - b.keys()]
    problems += [f"{k}: only in the checkpoint" for k in b.keys() - a.keys()]
    return sorted(problems)[:limit] + ([f"and {len(problems) - limit} more"] if len(problems) > limit else [])
