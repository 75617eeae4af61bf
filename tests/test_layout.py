"""The project's layout holds: no import cycles, no module importing a layer above its own, no file too long.

The imports are read with ``ast`` (nothing is imported), every one of them: at module level, inside
functions (the lazy imports that hid the old cycles) and under ``TYPE_CHECKING``. Tests are outside the graph.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gan_modules", "datamodules", "benchmarks")
SCRIPTS = ("train.py", "generate.py", "evaluate.py", "detect.py", "swap.py", "plot.py")
MAX_LINES = 450

# Lowest first. A module may import its own layer and those below it, never one above. A prefix names a
# package and everything in it; the longest matching prefix decides.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("floor", ("gan_modules.io", "gan_modules.specs", "gan_modules.accel")),
    ("data", ("datamodules",)),
    (
        "parts",
        (
            "gan_modules.layers",
            "gan_modules.objectives",
            "gan_modules.tricks",
            "gan_modules.metrics",
            "gan_modules.visualize",
            "gan_modules.degradations",
        ),
    ),  # fmt: skip
    (
        "loop",
        (
            "gan_modules.core",
            "gan_modules.base",
            "gan_modules.conditional",
            "gan_modules.checkpoints",
            "gan_modules.validation",
            "gan_modules.adversarial",
            "gan_modules.schedules",
            "gan_modules.sampling",
        ),
    ),  # fmt: skip
    (
        "models",
        (
            "gan_modules.vanilla",
            "gan_modules.dcgan",
            "gan_modules.facegan",
            "gan_modules.pix2pix",
            "gan_modules.toy",
            "gan_modules.r3gan",
            "gan_modules.detector",
            "gan_modules.faceswap",
        ),
    ),  # fmt: skip
    (
        "commands",
        ("gan_modules", "gan_modules.callbacks", "gan_modules.loggers", "gan_modules.cli", "gan_modules.commands"),
    ),  # fmt: skip
    ("benchmarks", ("benchmarks",)),
    ("scripts", tuple(Path(s).stem for s in SCRIPTS)),
]


def module_files() -> dict[str, Path]:
    files = {Path(s).stem: ROOT / s for s in SCRIPTS}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            files[name] = path
    return files


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer of tests/test_layout.py's LAYERS: add it where it belongs")
    return best


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules ``path`` imports: ``from a.b import c`` is ``a.b.c`` when that is a module, else ``a.b``."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: imported_modules(path, name, known) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (a package's ``__init__`` re-exporting its own modules counts)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # A package facade importing its own submodules is the usual re-export, not a cycle.
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if state.get(nxt) is None and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None and (cycle := visit(node)):
            return cycle
    return None


def test_the_project_imports_form_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_a_layer_above_its_own():
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in import_graph().items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_the_data_layer_does_not_import_the_models():
    graph = import_graph()
    data = {m: {t for t in targets if t.startswith("gan_modules") and t != "gan_modules.io"}
            for m, targets in graph.items() if m.startswith("datamodules")}  # fmt: skip
    assert not any(data.values()), {m: t for m, t in data.items() if t}


def test_the_walker_sees_a_cycle_and_an_upward_import(tmp_path):
    """The checks above can fail: a lazy import inside a function makes a cycle, and it is also a back-arrow."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("import b\n")
    b.write_text("def f():\n    from a import x\n")
    known = {"a", "b"}
    graph = {"a": imported_modules(a, "a", known), "b": imported_modules(b, "b", known)}
    assert find_cycle(graph) in (["a", "b", "a"], ["b", "a", "b"])
    lazy = tmp_path / "datamodules_lazy.py"
    lazy.write_text("def load():\n    from gan_modules.base import GANModule\n")
    assert imported_modules(lazy, "datamodules.lazy", {"datamodules.lazy", "gan_modules.base"}) == {"gan_modules.base"}
    assert layer_of("gan_modules.base") > layer_of("datamodules.lazy")


def test_command_modules_do_not_share_a_name_with_a_model_module():
    commands = {p.stem for p in (ROOT / "gan_modules" / "commands").glob("*.py")}
    others = {p.stem for p in (ROOT / "gan_modules").glob("*.py")}
    assert not (commands & others) - {"__init__"}, commands & others


@pytest.mark.parametrize("root", ["gan_modules", "datamodules", "benchmarks", "tests"])
def test_no_project_file_is_over_the_line_limit(root):
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted((ROOT / root).rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"over {MAX_LINES} lines (split by job, as README's 'How it fits together' says): {long}"


def test_ruff_passes_on_the_whole_repository():
    """The lint the project commits to (pyproject's [tool.ruff], ruff pinned in the dev extra) holds on every file.

    In pytest so that CI, which runs the README's test command, catches a lint error too.
    """
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"`ruff check .` failed (fix, or `ruff check --fix .`):\n{done.stdout}{done.stderr}"
