"""Local files written safely: one place for paths under a base directory, names made safe for
file names, and the per-target lock that lets a load remove what a killed load left behind.

* :func:`resolve_inside` resolves a path under a base directory (symbolic links first, before
  anything is created) and refuses one that ends up outside it.
* :func:`safe_file_name` turns a component or source name into one file name component
  (``../x`` -> ``.._x`` cannot climb); :func:`check_file_name` refuses a name that is not one.
* :func:`schema_bytes` / :func:`schema_from_bytes`: a polars schema as bytes (an empty Arrow
  IPC stream), exact for every type, for a schema kept in a file or a state record.
* :func:`local_path` is where a component keeps its default files (state, rejects, local logs):
  ``.data_pipeline/...`` under the working directory, or under the folder that
  :func:`local_root` sets while a pipeline file runs (the YAML file's folder).
* :func:`target_lock` holds an exclusive lock for the duration of a load (``fcntl.flock`` on
  the folder that holds the target, so no lock file is left behind). Writers in that folder
  wait for each other; the lock dies with its process, so a load that holds it knows that every
  temporary file it finds was left by a writer that is gone, and removes it.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_pipeline.core.errors import ConfigError

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "check_file_name",
    "fix_csv_header",
    "local_path",
    "local_root",
    "resolve_inside",
    "safe_file_name",
    "schema_bytes",
    "schema_from_bytes",
    "target_lock",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_ROOT: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "data_pipeline_root", default=None
)


@contextlib.contextmanager
def local_root(folder: str | os.PathLike[str] | None) -> Iterator[None]:
    """Within the block, default local files go under ``folder`` (a pipeline file's folder)."""
    token = _ROOT.set(Path(folder) if folder is not None else None)
    try:
        yield
    finally:
        _ROOT.reset(token)


def local_path(*parts: str) -> Path:
    """``.data_pipeline/<parts>``: under :func:`local_root`'s folder when one is set, else
    relative to the working directory."""
    root = _ROOT.get()
    relative = Path(".data_pipeline", *parts)
    return root / relative if root is not None else relative


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


def schema_bytes(schema: Any) -> bytes:
    """A polars schema as bytes (an empty Arrow IPC stream): exact for every type."""
    import polars as pl

    buffer = io.BytesIO()
    pl.DataFrame(schema=schema).write_ipc_stream(buffer)
    return buffer.getvalue()


def schema_from_bytes(data: bytes) -> pl.Schema:
    import polars as pl

    return pl.read_ipc_stream(io.BytesIO(data)).schema
