"""Objects as plain ``{"class_path", "init_args"}`` specs, the form LightningCLI writes in YAML.

GAN modules keep their objective and tricks in ``hparams`` in this form even when built from Python
objects, so every checkpoint holds plain values only (it loads with ``weights_only=True``) and
``load_from_checkpoint`` rebuilds the same objects. A spec's class is imported only from this project's
packages or from a module already imported, and must subclass the expected base.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Any

PROJECT_PACKAGES = ("gan_modules", "datamodules")


class UnsafeClassError(ValueError):
    """A class path that the loader will not import or use."""


def safe_import_class(class_path: str, base: type, source: str = "the checkpoint") -> type:
    """The class ``class_path`` names, if it subclasses ``base``; refused (and never imported) otherwise.

    Modules of this project are imported on demand; any other module must already be imported (a user's
    own subclass: import it first), so a class path cannot make the loader run a module's code.
    """
    module_name, _, name = class_path.rpartition(".")
    allowed_import = bool(module_name) and (module_name.split(".")[0] in PROJECT_PACKAGES or module_name in sys.modules)
    cls = None
    if allowed_import:
        try:
            cls = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError, ValueError):
            cls = None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        hint = "" if allowed_import else "; if it is your own subclass, import its module before loading"
        raise UnsafeClassError(
            f"{source} names the class {class_path!r}, which is not a subclass of "
            f"{base.__module__}.{base.__qualname__}: refused{hint}"
        )
    return cls


def to_spec(obj: Any) -> Any:
    """``{"class_path", "init_args"}`` for an object whose constructor arguments are kept as attributes of
    the same names (the project's objectives and tricks); anything else is returned unchanged."""
    if obj is None or isinstance(obj, (dict, str, int, float, bool)):
        return obj
    init_args = {}
    for name, param in inspect.signature(type(obj).__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if not hasattr(obj, name):
            return obj  # cannot be rebuilt from its attributes: leave it as it is
        value = getattr(obj, name)
        init_args[name] = list(value) if isinstance(value, tuple) else value
    return {"class_path": f"{type(obj).__module__}.{type(obj).__qualname__}", "init_args": init_args}


def from_spec(spec: Any, base: type, source: str = "model hyper-parameters") -> Any:
    """The object a spec describes (an instance of ``base``); objects and None pass through."""
    if not isinstance(spec, dict):
        return spec
    if "class_path" not in spec:
        raise ValueError(f"{source}: expected {{class_path, init_args}} for a {base.__name__}, got {spec!r}")
    cls = safe_import_class(str(spec["class_path"]), base, source)
    return cls(**dict(spec.get("init_args") or {}))
