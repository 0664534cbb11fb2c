"""Parquet datasets on object stores (``s3://``): staged part files published under a manifest.

An object store has no rename of a folder, so the local scheme (a version directory, then one
link switch) cannot be copied. What it does have: a single object appears whole or not at all
(PUT and server-side copy). A dataset ``<name>/`` is therefore:

* part files ``<name>/[<col>=<value>/]part-<write id>-....parquet``, each written once under a
  name no other write uses, and
* ``<name>/_dp_manifest.json``, one object listing the part files that make up the dataset.

A store writes its part files into a staging prefix beside the dataset
(``.<name>.tmp-<id>/``, hidden from readers of the parent), copies them into ``<name>/`` (new
names: nothing the current manifest lists is touched), then PUTs the manifest: that single PUT
is the commit point. ``replace`` then deletes the objects the old dataset had; ``append`` lists
the old parts and the new ones. A failure before the manifest deletes the copied parts and the
staging prefix: the dataset is as it was. :meth:`FileSystemStorage.retrieve` reads exactly the
parts the manifest lists, so it sees the old dataset or the new one, never a mix. Readers that
list the prefix themselves (Spark, globs) may, while a store publishes, see new parts beside the
old ones (never a partial object).
"""

from __future__ import annotations

import contextlib
import json
import posixpath
from typing import Any

__all__ = [
    "MANIFEST",
    "Manifest",
    "dataset_schema",
    "publish",
    "read_dataset",
    "read_manifest",
    "staged_parts",
]

MANIFEST = "_dp_manifest.json"

Manifest = dict[str, Any]


def read_manifest(fs: Any, dataset: str) -> Manifest | None:
    """The manifest of the dataset at ``dataset`` (a path of ``fs``), or None: not a dataset."""
    try:
        raw = fs.cat_file(f"{dataset}/{MANIFEST}")
    except FileNotFoundError:
        return None
    manifest = json.loads(raw)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("parts"), list):
        raise ValueError(f"{dataset}/{MANIFEST} is not a dataset manifest")
    return manifest


def staged_parts(fs: Any, staging: str) -> list[str]:
    """The Parquet part files under ``staging``, relative to it (Spark's ``_SUCCESS``,
    ``_temporary/`` and hidden files left out)."""
    fs.invalidate_cache()  # s3fs caches listings; Spark wrote behind its back
    parts = []
    for path in sorted(fs.find(staging)):
        rel = path[len(staging.rstrip("/")) + 1 :]
        if rel.endswith(".parquet") and not any(
            piece.startswith(("_", ".")) for piece in rel.split("/")
        ):
            parts.append(rel)
    return parts


def footer_rows(fs: Any, path: str) -> int:
    """Rows of one Parquet object, from its footer (a range read, not the data)."""
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as handle:
        return int(pq.ParquetFile(handle).metadata.num_rows)


def publish(
    fs: Any,
    staging: str,
    parts: list[str],
    dataset: str,
    *,
    token: str,
    if_exists: str,
    old: Manifest | None,
    single: str | None,
    rows: int,
) -> tuple[list[str], list[str]]:
    """Copy ``parts`` (relative to ``staging``) into ``dataset`` under names of this write, then
    PUT the manifest (the commit). ``old``: the dataset's manifest before, ``single``: a single
    object ``<name>.parquet`` the dataset takes the place of (copied in for an append).

    Returns the manifest's parts and the objects removed after the commit. A failure before the
    commit removes what was copied and raises; after it, a failed delete leaves an object the
    manifest does not list (a later ``replace`` removes it)."""
    fs.invalidate_cache()
    before = [p for p in fs.find(dataset) if not p.endswith("/" + MANIFEST)] if old else []
    copied: list[str] = []
    new: list[str] = []
    try:
        if if_exists == "append" and single is not None:
            name = f"part-{token[:12]}-single.parquet"
            fs.copy(single, f"{dataset}/{name}")
            copied.append(f"{dataset}/{name}")
            new.append(name)
        for rel in parts:
            head, leaf = posixpath.split(rel)
            name = posixpath.join(head, f"part-{token[:12]}-{leaf}")
            fs.copy(f"{staging}/{rel}", f"{dataset}/{name}")
            copied.append(f"{dataset}/{name}")
            new.append(name)
        listed = [*old["parts"], *new] if old and if_exists == "append" else new
        total = rows + (int(old.get("rows", 0)) if old and if_exists == "append" else 0)
        manifest = {"format": "parquet", "write": token, "rows": total, "parts": listed}
        fs.pipe_file(f"{dataset}/{MANIFEST}", json.dumps(manifest, indent=1).encode())  # commit
    except BaseException:
        for path in copied:
            with contextlib.suppress(Exception):
                fs.rm_file(path)
        raise
    removed = []
    doomed = [] if if_exists == "append" else before
    if single is not None:
        doomed.append(single)
    for path in doomed:
        with contextlib.suppress(Exception):
            fs.rm_file(path)
            removed.append(path)
    return listed, removed


def dataset_schema(fs: Any, dataset: str) -> Any:
    """The Arrow schema of the dataset (partition columns included), from the listed parts'
    footers: no rows are read."""
    import pyarrow.dataset as ds

    manifest = read_manifest(fs, dataset)
    if manifest is None:
        raise FileNotFoundError(f"{dataset}/{MANIFEST}")
    paths = [f"{dataset}/{p}" for p in manifest["parts"]]
    return ds.dataset(
        paths, filesystem=fs, format="parquet", partitioning="hive", partition_base_dir=dataset
    ).schema


def read_dataset(fs: Any, dataset: str, *, attempts: int = 3) -> Any:
    """The rows of the parts the manifest lists, with hive partition columns, as a
    ``pyarrow.Table``. A part deleted by a ``replace`` between reading the manifest and the
    part means a newer manifest: it is read again (``attempts`` times in all)."""
    import pyarrow.dataset as ds

    for attempt in range(attempts):
        fs.invalidate_cache()
        manifest = read_manifest(fs, dataset)
        if manifest is None:
            raise FileNotFoundError(f"{dataset}/{MANIFEST}")
        paths = [f"{dataset}/{p}" for p in manifest["parts"]]
        try:
            return ds.dataset(
                paths,
                filesystem=fs,
                format="parquet",
                partitioning="hive",
                partition_base_dir=dataset,
            ).to_table()
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
