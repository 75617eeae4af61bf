"""What a run of a config must have saved to stand for that config: the quality benchmark (and the benchmarks
built on it) reuse a finished run folder, or a zoo entry's run config, only when these settings match.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml


def leaves(tree: object, prefix: str = "") -> dict[str, object]:
    """A YAML tree as ``{"model.init_args.lr": 0.0002, "model.init_args.tricks[len]": 1, ...}``."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in leaves(value, f"{prefix}{key}.").items()}
    if isinstance(tree, list):
        out: dict[str, object] = {f"{prefix.rstrip('.')}[len]": len(tree)}
        for i, value in enumerate(tree):
            out.update(leaves(value, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): tree}


def same_value(a: object, b: object) -> bool:
    """Equal, or the same number spelled differently (YAML reads ``1e-3`` as a string, ``1.0e-3`` as a float)."""
    if a == b:
        return True
    try:
        return float(a) == float(b)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def expected_settings(config: dict, seed: int, extra: list[str]) -> dict[str, object] | None:
    """What a run of ``config`` with ``--seed_everything seed`` and the ``extra`` overrides must have saved, as
    ``leaves``; ``None`` when an override has a form this does not follow (the run is then reused unchecked).

    Overrides are applied as the CLI applies them: ``--model.lr`` is the short form of ``model.init_args.lr``,
    a value replaces the whole subtree (``--model.tricks []`` drops the config's tricks) and ``--key+`` appends
    to a list (``--model.tricks+ '{"class_path": ...}'``).
    """
    tree = copy.deepcopy(config)
    tree["seed_everything"] = seed
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        path = flag.removeprefix("--")
        keys = path.removesuffix("+").split(".")
        if keys[0] in ("model", "data") and len(keys) > 1 and keys[1] not in ("init_args", "class_path"):
            keys.insert(1, "init_args")
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                return None
        parsed = yaml.safe_load(value)
        if path.endswith("+"):
            node[keys[-1]] = [*(node.get(keys[-1]) or []), *(parsed if isinstance(parsed, list) else [parsed])]
        else:
            node[keys[-1]] = parsed
    return leaves(tree)


def config_differences(run: Path, expected: dict[str, object]) -> list[str]:
    """Settings of the config (and overrides) that ``run``'s saved ``config.yaml`` does not have."""
    saved_path = run / "config.yaml"
    if not saved_path.is_file():
        return ["no config.yaml"]
    return settings_differences(yaml.safe_load(saved_path.read_text()), expected)


def settings_differences(saved_config: dict, expected: dict[str, object]) -> list[str]:
    """Settings of ``expected`` (``expected_settings``) that a saved run config does not have."""
    saved = leaves(saved_config)
    return [
        f"{key}: run has {saved.get(key, '(unset)')!r}, config has {value!r}"
        for key, value in expected.items()
        if not same_value(saved.get(key), value)
    ]
