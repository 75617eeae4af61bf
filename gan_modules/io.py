"""The floor every other module stands on: atomic writes, device choice, grid layout.

Nothing here imports the rest of the project (a test walks the imports), so the datamodules, the models,
the commands and the benchmarks can all use it. Every file or folder the project writes goes through
:func:`atomic_file` or :func:`atomic_folder`: a reader never sees half a file, and an interrupted write
leaves nothing behind under the final name.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yields a fresh temporary path beside ``path``; renames it to ``path`` when the block ends without error.

    The temporary name is ``.<name>.<random>.tmp<suffix>``: hidden, unique (two writers never share it) and
    ending in the final suffix, so PIL, matplotlib and numpy pick the format from it. On an error the
    temporary file is removed and ``path`` is untouched. A block that deletes the temporary file itself
    (it decided there is nothing to write) leaves ``path`` untouched too.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result is as readable as any file the user writes
    try:
        yield tmp
        if tmp.exists():
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Writes ``path`` through ``write(tmp)`` (see :func:`atomic_file`); returns ``path``."""
    with atomic_file(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_text(path: str | Path, text: str) -> Path:
    """Writes ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yields a temporary folder beside ``path``; it becomes ``path`` when the block ends without error.

    ``path`` must not exist or be an empty folder (checked first: ``ValueError`` otherwise, before anything
    is written). On an error the temporary folder and everything in it are removed.
    """
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ValueError(f"{path} already exists and is not an empty folder; choose a new one")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        if path.exists():
            path.rmdir()  # empty (checked above): os.replace needs the name free on every platform
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def resolve_device(device: str) -> torch.device:
    """'auto' -> the GPU when there is one, else the CPU; anything else as torch.device understands it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def grid_rows(n: int) -> int:
    """Images per row for a near-square grid of n images."""
    return max(1, math.ceil(math.sqrt(n)))
