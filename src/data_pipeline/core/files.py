"""Local files written safely: one place for paths under a base directory, names made safe for
file names, and the per-target lock that lets a load remove what a killed load left behind.

* :func:`resolve_inside` resolves a path under a base directory (symbolic links first, before
  anything is created) and refuses one that ends up outside it.
* :func:`safe_file_name` turns a component or source name into one file name component
  (``../x`` -> ``.._x`` cannot climb); :func:`check_file_name` refuses a name that is not one.
* :func:`target_lock` holds an exclusive lock for the duration of a load (``fcntl.flock`` on
  the folder that holds the target, so no lock file is left behind). Writers in that folder
  wait for each other; the lock dies with its process, so a load that holds it knows that every
  temporary file it finds was left by a writer that is gone, and removes it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from data_pipeline.core.errors import ConfigError

__all__ = [
    "check_file_name",
    "fix_csv_header",
    "resolve_inside",
    "safe_file_name",
    "target_lock",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_file_name(name: str) -> str:
    """``name`` as one safe file name component: runs of characters other than letters, digits,
    ``_ . -`` become ``_``; a name of dots only (``.``, ``..``) or a leading dot gets a ``_``."""
    safe = _UNSAFE.sub("_", name) or "_"
    if safe.startswith("."):
        safe = "_" + safe
    return safe


def check_file_name(name: str, *, what: str, component: str | None) -> str:
    """Refuse a name that is not one plain file name component (no ``/``, ``\\``, NUL, not
    ``.``/``..``, no leading dot: those are our hidden files)."""
    if (
        not isinstance(name, str)
        or not name
        or any(c in name for c in "/\\\x00")
        or name.startswith(".")
        or re.match(r"^[A-Za-z]:", name)
    ):
        raise ConfigError(
            f"invalid {what} name {name!r}: it must be one plain name, not a path",
            component=component,
            hint=f"use a {what} name without '/', '\\', a leading '.' or a drive letter",
        )
    return name


def resolve_inside(base: str | os.PathLike[str], relative: str, *, component: str | None) -> Path:
    """``base / relative`` with every symbolic link resolved, refused unless it stays under the
    resolved ``base``. Nothing is created: call it before ``mkdir``."""
    root = Path(base).expanduser().resolve()
    path = (root / relative).resolve()
    if path != root and root not in path.parents:
        raise ConfigError(
            f"{relative!r} resolves to {str(path)!r}, outside {str(root)!r}",
            component=component,
            hint="a symbolic link under the base directory points elsewhere, or the name "
            "climbs out with '..'; use another name",
        )
    return path


@contextlib.contextmanager
def target_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a file, created if missing, or a directory) while the
    block runs. On systems without ``fcntl`` (Windows) the block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    if os.path.isdir(path):
        fd = os.open(path, os.O_RDONLY)
    else:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def fix_csv_header(names: list[str]) -> list[str]:
    """Column names as written: polars' CSV reader keeps the doubled quotes of a quoted header
    field (``"a""b"`` is read as ``a""b``); undo that."""
    return [n.replace('""', '"') for n in names]
