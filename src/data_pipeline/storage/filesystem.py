"""FileSystemStorage: Parquet, CSV, JSON Lines and Arrow IPC files under one base path.

Every write is atomic. A single file is written to a hidden temporary file beside the target and
renamed over it with :func:`os.replace`, so a reader (or a crash) sees the old file or the new one,
never part of one. A hive-partitioned dataset is written to a hidden version directory; the
dataset's name is a symbolic link that is swapped to the new version in one rename, so a dataset
appears whole or not at all, and ``replace`` never leaves it missing.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from data_pipeline.core.config import ConfigModel, validate_config
from data_pipeline.core.errors import (
    ConfigError,
    InputNotFoundError,
    StorageError,
    StorageSchemaError,
    UnsupportedOperationError,
)
from data_pipeline.core.files import fix_csv_header, resolve_inside, target_lock
from data_pipeline.core.frames import to_polars
from data_pipeline.core.spark_names import spark_col
from data_pipeline.storage._common import (
    ColumnList,
    already_exists_error,
    check_columns_match,
    not_found_error,
    reject_unknown_options,
)
from data_pipeline.storage._values import Holds, check_holdable
from data_pipeline.storage.base import StorageSystem, StoreResult

if TYPE_CHECKING:
    import polars as pl

    from data_pipeline.core.checkpoint import Checkpoint

__all__ = ["FileSystemStorage", "FileSystemStorageConfig"]

FileFormat = Literal["parquet", "csv", "jsonl", "ipc"]
EXTENSIONS: dict[str, str] = {
    "parquet": ".parquet",
    "csv": ".csv",
    "jsonl": ".jsonl",
    "ipc": ".arrow",
}
_FORMAT_ALIASES = {
    "ndjson": "jsonl",
    "json_lines": "jsonl",
    "jsonlines": "jsonl",
    "arrow": "ipc",
    "feather": "ipc",
    "pq": "parquet",
}
COMPRESSIONS: dict[str, tuple[str, ...]] = {
    "parquet": ("uncompressed", "snappy", "gzip", "lz4", "zstd", "brotli"),
    "csv": ("uncompressed", "gzip", "zstd"),
    "jsonl": ("uncompressed", "gzip", "zstd"),
    "ipc": ("uncompressed", "lz4", "zstd"),
}
DEFAULT_COMPRESSION = {
    "parquet": "zstd",
    "csv": "uncompressed",
    "jsonl": "uncompressed",
    "ipc": "uncompressed",
}
_TEXT_SUFFIX = {"gzip": ".gz", "zstd": ".zst"}
# Text formats keep values, not types: what their readers cannot give back is refused.
TEXT_HOLDS = {
    "csv": Holds(
        "CSV files",
        time_unit="us",  # readers parse timestamps to microseconds
        clock_unit="us",
        binary=False,
        duration=False,
        decimal_as_float=True,
        nested=False,
    ),
    "jsonl": Holds("JSON Lines files", nan_inf=False, binary=False, duration=False),
}
_DRIVE = re.compile(r"^[A-Za-z]:")
_FILE_MODES = "'replace' or 'append', or choose another name"


class FileSystemStorageConfig(ConfigModel):
    """Config of :class:`FileSystemStorage`."""

    base_path: str = "data"
    """The folder every table name is relative to (created when missing), or an fsspec URL
    (``s3://bucket/prefix``, ``memory://x``). Names cannot leave it (no absolute names, no
    ``..``)."""
    format: FileFormat = "parquet"
    """The file format written: ``parquet`` (default, ``pq``), ``csv``, ``jsonl``
    (``ndjson``) or ``ipc`` (``arrow``, ``feather``); it sets the extension. CSV and JSON Lines
    cannot hold every type: a column they would not give back as stored is refused."""
    compression: str | None = None
    """Codec of the files written. Parquet: ``snappy``, ``gzip``, ``lz4``, ``zstd`` (default),
    ``brotli``; Arrow IPC: ``lz4``, ``zstd``; CSV and JSON Lines: ``gzip``, ``zstd`` (the file
    gets ``.gz``/``.zst``). ``none``/``uncompressed``: none, the default except for Parquet."""
    compression_level: int | None = None
    """The codec's level (e.g. zstd 1-22, gzip 0-9; higher: smaller and slower); absent: the
    codec's default. Arrow IPC files ignore it."""
    row_group_size: int | None = Field(default=None, gt=0)
    """Parquet only: rows per row group (a reader skips whole row groups by their
    statistics); absent: polars' default."""
    partition_by: ColumnList = None
    """Parquet or IPC only: write a table as a hive-partitioned folder
    ``<name>/<col>=<value>/...`` by these column(s): a local ``base_path``, or an object store
    (``s3://``) when Spark's executors write the frame. ``append`` adds part files, ``replace``
    swaps the whole folder."""
    default_table: str | None = None
    """The file name (without extension) ``store()`` writes and ``retrieve()`` reads when
    called without one; absent: a name must be given on each call."""
    default_if_exists: Literal["fail", "replace", "append"] = "replace"
    """What ``store()`` does when the file exists and the call gives no ``if_exists``:
    ``replace`` (default; atomic rename), ``fail``, or ``append`` (a single file is rewritten
    with old and new rows, so it costs the whole file; no ``upsert``)."""
    storage_options: dict[str, Any] | None = None
    """Options of the fsspec file system of a remote ``base_path`` (s3fs: ``key``,
    ``secret``, ``endpoint_url``, ``client_kwargs``; gcsfs: ``token``, ``project``); ignored for
    a local folder."""
    fsync: bool = False
    """``true``: flush each file (and its folder) to disk before ``store()`` returns, so a
    power loss cannot lose a stored file (slower). Renames are atomic either way; a
    transaction always flushes."""

    @field_validator("format", mode="before")
    @classmethod
    def _alias_format(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower().lstrip(".")
            return _FORMAT_ALIASES.get(value, value)
        return value

    @model_validator(mode="after")
    def _check_compression(self) -> FileSystemStorageConfig:
        if self.compression is None:
            self.compression = DEFAULT_COMPRESSION[self.format]
        else:
            self.compression = self.compression.lower()
            if self.compression in ("none", "uncompressed", ""):
                self.compression = "uncompressed"
        if self.partition_by and self.format not in ("parquet", "ipc"):
            raise ValueError(
                f"partition_by needs format 'parquet' or 'ipc' (hive-partitioned {self.format} "
                "cannot be read back with its partition columns)"
            )
        allowed = COMPRESSIONS[self.format]
        if self.compression not in allowed:
            raise ValueError(
                f"compression {self.compression!r} is not available for {self.format}; "
                f"allowed: {', '.join(allowed)}"
            )
        return self


class FileSystemStorage(StorageSystem):
    """Storage system for file systems: Parquet (default), CSV, JSON Lines or Arrow IPC files.

    ``store(data, "sales")`` writes ``<base_path>/sales.parquet`` (or, with ``partition_by``, a
    hive-partitioned directory ``<base_path>/sales/region=EU/...``) atomically. Names are
    relative to ``base_path``: absolute names and ``..`` are rejected, so nothing is written
    outside it. ``if_exists`` is ``replace`` (default), ``fail`` or ``append`` (a single file is
    rewritten with the new rows added; a partitioned dataset gets new part files). ``base_path``
    may also be an fsspec URL (``s3://bucket/prefix``, ``memory://x``): single files are written
    to a temporary name and moved, which is atomic only where the file system's move is. A Spark
    frame stored as Parquet to ``s3://`` is written by the executors as a dataset ``<name>/``
    published under a manifest (storage/_objects.py; docs/storage.md, Object-store datasets).

    Raises:
        ConfigError: a compression the format does not offer, ``partition_by`` with CSV or JSON
            Lines, a name that leaves ``base_path``, ``if_exists: upsert``, or an unknown
            ``store()`` option.
        DependencyError: fsspec (s3fs, gcsfs) is not installed, for a remote ``base_path``.
        ColumnNotFoundError: a ``partition_by`` column is not in the data.
        StorageSchemaError: a type the format cannot give back (CSV, JSON Lines), or an ``append``
            whose columns or types differ from the file's.
        InputNotFoundError: ``retrieve()`` of a file that does not exist.
        UnsupportedOperationError: ``partition_by`` or a transaction with a remote ``base_path``, or
            bound ``params`` in a file query.
        StorageError: ``if_exists: fail`` and the file exists, or any other write failure.

    Example:
        >>> storage = FileSystemStorage(name="lake", config={
        ...     "base_path": "data/lake",
        ...     "format": "parquet",          # parquet | csv | jsonl | ipc
        ...     "compression": "zstd",
        ...     "row_group_size": 500_000,
        ...     "partition_by": ["region"],   # optional hive partitioning
        ... })
    """

    config_model = FileSystemStorageConfig
    settings: FileSystemStorageConfig
    supported_if_exists = ("fail", "replace", "append")

    _OPTIONS = frozenset(
        {"format", "compression", "compression_level", "row_group_size", "partition_by"}
    )

    # -- paths ------------------------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        base = self.settings.base_path
        return "://" not in base or base.startswith("file://")

    def _local_base(self) -> str:
        base = self.settings.base_path
        if base.startswith("file://"):
            base = base[len("file://") :]
        return os.path.abspath(os.path.expanduser(base))

    def _relative(self, name: str, fmt: str, compression: str) -> str:
        """The validated relative name without extension; rejects anything leaving base_path."""
        if not isinstance(name, str) or not name.strip() or "\x00" in name:
            raise ConfigError(
                f"invalid file name {name!r}",
                component=self.label,
                hint="pass a relative name like 'sales'",
            )
        text = name.replace("\\", "/")
        path = PurePosixPath(text)
        if path.is_absolute() or _DRIVE.match(text) or "://" in text or ".." in path.parts:
            raise ConfigError(
                f"file name {name!r} points outside base_path {self.settings.base_path!r}",
                component=self.label,
                hint="use a relative name without '..' (e.g. 'sales' or 'year=2024/sales')",
            )
        rel = str(path)
        for ext in (self._extension(fmt, compression), EXTENSIONS[fmt]):
            if rel.endswith(ext) and len(rel) > len(ext):
                rel = rel[: -len(ext)]
                break
        if rel in ("", "."):
            raise ConfigError(
                f"invalid file name {name!r}", component=self.label, hint="pass e.g. 'sales'"
            )
        return rel

    @staticmethod
    def _extension(fmt: str, compression: str) -> str:
        ext = EXTENSIONS[fmt]
        if fmt in ("csv", "jsonl"):
            ext += _TEXT_SUFFIX.get(compression, "")
        return ext

    def _inside_base(self, path: str) -> str:
        base = os.path.realpath(self._local_base())
        real = os.path.realpath(path)
        if real != base and not real.startswith(base + os.sep):
            raise ConfigError(
                f"{path!r} resolves outside base_path {self.settings.base_path!r}",
                component=self.label,
                hint="a symbolic link inside base_path points elsewhere; use another name",
            )
        return path

    def _effective(self, options: dict[str, Any]) -> FileSystemStorageConfig:
        reject_unknown_options(
            options,
            tuple(self._OPTIONS),
            hint=f"store() accepts {', '.join(sorted(self._OPTIONS))}",
            component=self.label,
        )
        if not options:
            return self.settings
        raw = self.settings.model_dump()
        if "format" in options and "compression" not in options:
            raw["compression"] = None
        raw.update(options)
        return validate_config(FileSystemStorageConfig, raw, component=self.label, prefix="options")

    # -- store ------------------------------------------------------------------------------

    def _store(self, data: Any, target: str, if_exists: str, **options: Any) -> StoreResult:
        cfg = self._effective(options)
        assert cfg.compression is not None
        rel = self._relative(target, cfg.format, cfg.compression)
        if self._spark_writes_with(data, cfg):
            if not self.is_local:
                return self._store_spark_objects(data, rel, if_exists, cfg)
            return self._store_spark(data, rel, if_exists, cfg)
        frame = self._frame(data)
        if cfg.format in TEXT_HOLDS:  # text formats are written from a collected frame anyway
            import polars as pl

            if isinstance(frame, pl.LazyFrame):
                frame = frame.collect()
            check_holdable(frame, TEXT_HOLDS[cfg.format], component=self.label)
        if cfg.partition_by:
            from data_pipeline.core.frames import require_columns

            require_columns(frame, cfg.partition_by, component=self.label, what="partition column")
            if not self.is_local:
                raise UnsupportedOperationError(
                    "partitioned datasets are written to local paths only (or to object stores "
                    "by Spark's executors)",
                    component=self.label,
                    hint="use a local base_path or engine: spark, or drop partition_by for "
                    "fsspec URLs",
                )
            return self._store_dataset(frame, rel, if_exists, cfg)
        if not self.is_local:
            return self._store_remote(frame, rel, if_exists, cfg)
        if cfg.format == "parquet" and os.path.islink(os.path.join(self._local_base(), rel)):
            # a dataset directory (Spark's executors wrote it): a new version of it, never a
            # file beside it (reads would take the file, an append would lose the dataset's rows)
            return self._store_dataset(frame, rel, if_exists, cfg)
        return self._store_file(frame, rel, if_exists, cfg)

    # -- Spark: the executors write the files ---------------------------------------------------

    def writes_spark(self, if_exists: str | None = None) -> bool:
        return self.settings.format == "parquet" and self._spark_reaches()

    def _spark_reaches(self) -> bool:
        """Spark's executors can write under base_path: a local folder, or a URL Spark has a
        file system for (``s3://`` as ``s3a://``, ``gs://``, ``abfss://``; not ``memory://``)."""
        if self.is_local:
            return True
        from data_pipeline._spark import spark_path

        return spark_path(self.settings.base_path) is not None

    def _spark_writes_with(self, data: Any, cfg: FileSystemStorageConfig) -> bool:
        from data_pipeline.core.engines import is_spark

        return is_spark(data) and cfg.format == "parquet" and self._spark_reaches()

    def _store_spark_objects(
        self, frame: Any, rel: str, if_exists: str, cfg: FileSystemStorageConfig
    ) -> StoreResult:
        """A Spark DataFrame on an object store (``s3://``): the executors write Parquet part
        files (hive partitions with ``partition_by``) into a staging prefix beside the target,
        then the driver publishes them as the dataset ``<rel>/`` under a new manifest
        (storage/_objects.py says the guarantee). Rows come from the written footers."""
        from data_pipeline._spark import hadoop_options, write_parquet_files
        from data_pipeline.core.frames import require_columns
        from data_pipeline.storage._objects import footer_rows, staged_parts

        assert cfg.compression is not None
        if cfg.partition_by:
            require_columns(frame, cfg.partition_by, component=self.label, what="partition column")
        fs, dataset, single, old, has_single = self._object_target(rel, cfg, if_exists)
        if if_exists == "append" and (old is not None or has_single):
            names = self._object_columns(fs, dataset, old, single)
            check_columns_match(names, list(frame.columns), target=dataset, component=self.label)
            frame = frame.select(*[spark_col(n) for n in names])
        options = hadoop_options(self.settings.base_path, self.settings.storage_options or {})
        compression = cfg.compression

        def write(staging: str) -> tuple[list[str], int, int]:
            write_parquet_files(
                frame,
                self._url(staging),
                compression=compression,
                partition_by=cfg.partition_by,
                options=options,
                component=self.label,
            )
            parts = staged_parts(fs, staging)
            rows = sum(footer_rows(fs, f"{staging}/{p}") for p in parts)
            size = sum(int(fs.size(f"{staging}/{p}") or 0) for p in parts)
            return parts, rows, size

        return self._publish_staged(
            fs, dataset, write, if_exists, old, single if has_single else None, cfg, "spark"
        )

    def _object_target(
        self, rel: str, cfg: FileSystemStorageConfig, if_exists: str
    ) -> tuple[Any, str, str, Any, bool]:
        """fs, the dataset path, the single-object path, the dataset's manifest (or None) and
        whether the single object exists; ``if_exists: fail`` raises when either exists."""
        from data_pipeline.storage._objects import read_manifest

        assert cfg.compression is not None
        fs, root = self._fs()
        fs.invalidate_cache()
        dataset = f"{root.rstrip('/')}/{rel}"
        single = dataset + self._extension(cfg.format, cfg.compression)
        old = read_manifest(fs, dataset)
        has_single = bool(fs.exists(single))
        if (old is not None or has_single) and if_exists == "fail":
            raise already_exists_error(
                repr(self._url(dataset)), component=self.label, modes="'replace' or 'append'"
            )
        return fs, dataset, single, old, has_single

    def _object_columns(self, fs: Any, dataset: str, old: Any, single: str) -> list[str]:
        """The columns of the stored dataset (partition columns included) or single object."""
        import pyarrow.parquet as pq

        from data_pipeline.storage._objects import dataset_schema

        if old is not None:
            return list(dataset_schema(fs, dataset).names)
        with fs.open(single, "rb") as handle:
            return list(pq.read_schema(handle).names)

    @staticmethod
    def _staging(dataset: str, token: str) -> str:
        parent, leaf = dataset.rsplit("/", 1)
        return f"{parent}/.{leaf}.tmp-{token}"

    def _url(self, path: str) -> str:
        """An fsspec path of base_path's file system as a URL (``bucket/x`` -> ``s3://bucket/x``)."""
        if "://" in path:
            return path
        return f"{self.settings.base_path.split('://', 1)[0]}://{path.lstrip('/')}"

    def _publish_staged(
        self,
        fs: Any,
        dataset: str,
        write: Callable[[str], tuple[list[str], int, int]],
        if_exists: str,
        old: Any,
        single: str | None,
        cfg: FileSystemStorageConfig,
        engine: str,
    ) -> StoreResult:
        """``write`` fills a new staging prefix beside ``dataset`` (returns its part files, rows
        and bytes); they are published under a new manifest (storage/_objects.py); the staging
        prefix goes either way."""
        from data_pipeline.storage._objects import publish

        token = uuid.uuid4().hex
        staging = self._staging(dataset, token)
        try:
            parts, rows, size = write(staging)
            listed, removed = publish(
                fs,
                staging,
                parts,
                dataset,
                token=token,
                if_exists=if_exists,
                old=old,
                single=single,
                rows=rows,
            )
        finally:
            with contextlib.suppress(Exception):
                fs.rm(staging, recursive=True)
            with contextlib.suppress(Exception):
                fs.invalidate_cache()
        return StoreResult(
            target=self._url(dataset),
            rows=rows,
            bytes=size,
            details={
                "format": cfg.format,
                "if_exists": if_exists,
                "partition_by": cfg.partition_by,
                "engine": engine,
                "parts": len(listed),
                "objects_removed": len(removed),
            },
        )

    def _store_spark(
        self, frame: Any, rel: str, if_exists: str, cfg: FileSystemStorageConfig
    ) -> StoreResult:
        """A Spark DataFrame written by the executors as a dataset directory ``<rel>/`` (part
        files; hive partitions with ``partition_by``), with the guarantee of
        :meth:`_store_dataset`: a new version directory, then one link switch. A single file
        ``<rel>.parquet`` left by a single-machine run is taken into an ``append`` and removed
        after the switch (until then readers see it, never a partial dataset)."""
        from data_pipeline.core.frames import require_columns

        if cfg.partition_by:
            require_columns(frame, cfg.partition_by, component=self.label, what="partition column")
        base = self._local_base()
        head, leaf = os.path.split(rel)
        parent = str(resolve_inside(base, head or ".", component=self.label))
        link = os.path.join(parent, leaf)
        single = link + self._extension(cfg.format, cfg.compression or "zstd")
        os.makedirs(parent, exist_ok=True)
        with target_lock(parent):
            exists = os.path.lexists(link) or os.path.isfile(single)
            if exists and if_exists == "fail":
                raise already_exists_error(
                    f"dataset {link!r}", component=self.label, modes=_FILE_MODES
                )
            result = self._store_dataset_locked(frame, link, if_exists, cfg, spark_single=single)
            if os.path.isfile(single) and self._open_tx() is None:
                os.remove(single)  # now inside the dataset (append) or replaced by it
            return result

    def _frame(self, data: Any) -> pl.DataFrame | pl.LazyFrame:
        import polars as pl

        if isinstance(data, (pl.DataFrame, pl.LazyFrame)):
            return data
        return to_polars(data)

    def _store_file(
        self,
        frame: pl.DataFrame | pl.LazyFrame,
        rel: str,
        if_exists: str,
        cfg: FileSystemStorageConfig,
    ) -> StoreResult:
        assert cfg.compression is not None
        base = self._local_base()
        # symbolic links resolved (and refused if they leave base_path) before anything is made
        path = str(
            resolve_inside(
                base, rel + self._extension(cfg.format, cfg.compression), component=self.label
            )
        )
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        leaf = os.path.basename(path)
        with target_lock(parent):  # writers in this folder wait for each other
            leftovers = _sweep(parent, leaf, keep=None, protected=self._pending_files())
            exists = os.path.lexists(path)
            if exists and if_exists == "fail":
                raise already_exists_error(repr(path), component=self.label, modes=_FILE_MODES)
            tmp = os.path.join(parent, f".{leaf}.tmp-{uuid.uuid4().hex}")
            try:
                if exists and if_exists == "append":
                    rows = self._append_file(frame, path, tmp, cfg)
                else:
                    rows = _write(frame, tmp, cfg)
                if cfg.fsync or self._open_tx() is not None:
                    _fsync(tmp)
                size = os.path.getsize(tmp)
                self._replace(tmp, path)
                if cfg.fsync:
                    _fsync_dir(parent)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.remove(tmp)
                raise
        return StoreResult(
            target=path,
            rows=rows,
            bytes=size,
            details={"format": cfg.format, "if_exists": if_exists, "leftovers_removed": leftovers},
        )

    def _append_file(
        self, frame: pl.DataFrame | pl.LazyFrame, path: str, tmp: str, cfg: FileSystemStorageConfig
    ) -> int:
        """Old rows plus new rows into ``tmp`` (renamed over ``path`` by the caller)."""
        import polars as pl

        if cfg.format in ("csv", "jsonl"):
            if cfg.format == "csv":
                existing = fix_csv_header(pl.read_csv(path, n_rows=0).columns)
                names = frame.collect_schema().names()
                check_columns_match(existing, names, target=path, component=self.label)
                frame = frame.select(existing)
            shutil.copyfile(path, tmp)
            new = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
            comp: Any = cfg.compression
            with open(tmp, "ab") as handle:
                if cfg.format == "csv":
                    new.write_csv(
                        handle,
                        include_header=False,
                        compression=comp,
                        compression_level=cfg.compression_level,
                        check_extension=False,
                    )
                else:
                    new.write_ndjson(
                        handle,
                        compression=comp,
                        compression_level=cfg.compression_level,
                        check_extension=False,
                    )
            return int(new.height)
        old = pl.scan_parquet(path) if cfg.format == "parquet" else pl.scan_ipc(path)
        schema = old.collect_schema()
        new_lazy = frame.lazy() if isinstance(frame, pl.DataFrame) else frame
        check_columns_match(
            schema.names(), new_lazy.collect_schema().names(), target=path, component=self.label
        )
        new_lazy = _cast_to(
            new_lazy.select(schema.names()), schema, target=path, component=self.label
        )
        count = _count(new_lazy) if isinstance(frame, pl.LazyFrame) else frame.height
        _write(pl.concat([old, new_lazy], how="vertical"), tmp, cfg)
        return count

    def _store_dataset(
        self,
        frame: pl.DataFrame | pl.LazyFrame,
        rel: str,
        if_exists: str,
        cfg: FileSystemStorageConfig,
    ) -> StoreResult:
        """A hive-partitioned directory: build a new version, then swap the name's link to it."""

        base = self._local_base()
        head, leaf = os.path.split(rel)
        parent = str(resolve_inside(base, head or ".", component=self.label))
        link = os.path.join(parent, leaf)
        os.makedirs(parent, exist_ok=True)
        with target_lock(parent):
            result = self._store_dataset_locked(frame, link, if_exists, cfg)
            assert cfg.compression is not None
            single = link + self._extension(cfg.format, cfg.compression)
            if not cfg.partition_by and os.path.isfile(single) and self._open_tx() is None:
                os.remove(single)  # a file a killed Spark write left beside its dataset
            return result

    def _store_dataset_locked(
        self,
        frame: Any,
        link: str,
        if_exists: str,
        cfg: FileSystemStorageConfig,
        *,
        spark_single: str | None = None,
    ) -> StoreResult:
        """``frame`` (polars; or Spark, with ``spark_single``: the single-file name of the same
        target) as a new version of the dataset ``link``."""
        import polars as pl

        parent, leaf = os.path.split(link)
        current = None
        if os.path.islink(link):
            current = os.path.realpath(link)
            if os.path.dirname(current) != os.path.realpath(parent) or not os.path.basename(
                current
            ).startswith(f".{leaf}.v-"):
                raise ConfigError(
                    f"dataset {link!r} is a symbolic link to {current!r}, which this storage "
                    "did not write",
                    component=self.label,
                    hint="remove the link or choose another name",
                )
        leftovers = _sweep(parent, leaf, keep=current, protected=self._pending_files())
        exists = os.path.lexists(link)
        if exists and if_exists == "fail":
            raise already_exists_error(f"dataset {link!r}", component=self.label, modes=_FILE_MODES)
        if exists and not os.path.isdir(link):
            raise StorageError(
                f"{link!r} exists and is not a dataset directory",
                component=self.label,
                hint="remove it or choose another name",
            )
        token = uuid.uuid4().hex
        version = os.path.join(parent, f".{leaf}.v-{token}")
        scratch = os.path.join(parent, f".{leaf}.in-{token}")
        old_version: str | None = None
        if exists:
            old_version = os.path.realpath(link)
        if spark_single is not None:
            try:
                rows = self._spark_version(
                    frame, link, exists, if_exists, cfg, version, scratch, spark_single, token
                )
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            df = None
        else:
            df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        try:
            if df is None:
                pass  # Spark wrote the version
            elif exists and if_exists == "append":
                names = self._dataset_scan(link, cfg.format).collect_schema().names()
                check_columns_match(names, df.columns, target=link, component=self.label)
                schema = self._dataset_scan(link, cfg.format).collect_schema()
                df = _cast_to(
                    df.lazy().select(names), schema, target=link, component=self.label
                ).collect()
                _copy_tree_links(old_version or link, version)
                _write_partitioned(df, scratch, cfg)
                _merge_tree(scratch, version, prefix=token[:12])
            else:
                _write_partitioned(df, version, cfg)
            if cfg.fsync:
                _fsync_dir(version)
            self._swap_link(link, version, exists)
        except BaseException:
            shutil.rmtree(version, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if (
            old_version
            and os.path.realpath(old_version) != os.path.realpath(version)
            and self._open_tx() is None  # in a transaction the next write sweeps it
        ):
            shutil.rmtree(old_version, ignore_errors=True)
        size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(version) for f in fs)
        return StoreResult(
            target=link,
            rows=int(df.height) if df is not None else rows,
            bytes=size,
            details={
                "format": cfg.format,
                "if_exists": if_exists,
                "partition_by": cfg.partition_by,
                "leftovers_removed": leftovers,
            },
        )

    def _spark_version(
        self,
        frame: Any,
        link: str,
        exists: bool,
        if_exists: str,
        cfg: FileSystemStorageConfig,
        version: str,
        scratch: str,
        single: str,
        token: str,
    ) -> int:
        """Write ``version`` from Spark's executors (an append: the old parts hard-linked in,
        the new ones merged beside them); returns the rows written."""
        from data_pipeline._spark import write_parquet_version

        assert cfg.compression is not None
        try:
            if if_exists == "append" and (exists or os.path.isfile(single)):
                old = link if os.path.lexists(link) else single
                scan = self._dataset_scan(old, "parquet") if old == link else None
                import polars as pl

                names = (
                    (scan if scan is not None else pl.scan_parquet(old)).collect_schema().names()
                )
                check_columns_match(names, list(frame.columns), target=link, component=self.label)
                frame = frame.select(*[spark_col(n) for n in names])
                if old == link:
                    _copy_tree_links(os.path.realpath(link), version)
                else:
                    os.makedirs(version)
                    os.link(single, os.path.join(version, f"part-{token[:12]}-0.parquet"))
                rows = write_parquet_version(
                    frame, scratch, compression=cfg.compression, partition_by=cfg.partition_by
                )
                _merge_tree(scratch, version, prefix=token[:12])
                return rows
            return write_parquet_version(
                frame, version, compression=cfg.compression, partition_by=cfg.partition_by
            )
        except BaseException:
            shutil.rmtree(version, ignore_errors=True)
            raise

    def _swap_link(self, link: str, version: str, exists: bool) -> None:
        parent, leaf = os.path.split(link)
        if exists and not os.path.islink(link) and self._open_tx() is not None:
            raise UnsupportedOperationError(
                f"{link!r} is a plain directory; it cannot be replaced inside a transaction",
                component=self.label,
                hint="store it once outside a transaction (it becomes a versioned dataset)",
            )
        if exists and not os.path.islink(link):
            # A plain directory (not made by us): move it aside, then link; restore on failure.
            aside = os.path.join(parent, f".{leaf}.old-{uuid.uuid4().hex}")
            os.replace(link, aside)
            try:
                os.symlink(os.path.basename(version), link)
            except BaseException:
                os.replace(aside, link)
                raise
            shutil.rmtree(aside, ignore_errors=True)
            return
        tmp_link = os.path.join(parent, f".{leaf}.lnk-{uuid.uuid4().hex}")
        os.symlink(os.path.basename(version), tmp_link)
        try:
            self._replace(tmp_link, link)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp_link)
            raise

    def _store_remote(
        self,
        frame: pl.DataFrame | pl.LazyFrame,
        rel: str,
        if_exists: str,
        cfg: FileSystemStorageConfig,
    ) -> StoreResult:
        import polars as pl

        fs, root = self._fs()
        assert cfg.compression is not None
        if cfg.format == "parquet":
            from data_pipeline.storage._objects import read_manifest

            fs.invalidate_cache()
            if read_manifest(fs, f"{root.rstrip('/')}/{rel}") is not None:
                return self._store_object_part(frame, rel, if_exists, cfg)
        path = f"{root.rstrip('/')}/{rel}{self._extension(cfg.format, cfg.compression)}"
        exists = fs.exists(path)
        if exists and if_exists == "fail":
            raise already_exists_error(
                repr(path), component=self.label, modes="'replace' or 'append'"
            )
        df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        rows = int(df.height)
        if exists and if_exists == "append":
            with fs.open(path, "rb") as handle:
                old = _read(handle, cfg.format)
            check_columns_match(old.columns, df.columns, target=path, component=self.label)
            df = pl.concat([old, df.select(old.columns).cast(old.schema)], how="vertical")  # type: ignore[arg-type]
        parent, leaf = path.rsplit("/", 1) if "/" in path else ("", path)
        tmp = (
            f"{parent}/.{leaf}.tmp-{uuid.uuid4().hex}"
            if parent
            else f".{leaf}.tmp-{uuid.uuid4().hex}"
        )
        if parent:
            fs.makedirs(parent, exist_ok=True)
        try:
            with fs.open(tmp, "wb") as handle:
                _write(df, handle, cfg)
            fs.mv(tmp, path)
        except BaseException:
            with contextlib.suppress(Exception):
                fs.rm(tmp)
            raise
        size = fs.size(path)
        return StoreResult(
            target=self._display(path),
            rows=rows,
            bytes=int(size) if size is not None else None,
            details={"format": cfg.format, "if_exists": if_exists},
        )

    def _store_object_part(
        self,
        frame: pl.DataFrame | pl.LazyFrame,
        rel: str,
        if_exists: str,
        cfg: FileSystemStorageConfig,
    ) -> StoreResult:
        """A driver-side frame stored to a name that is an object-store dataset (Spark's
        executors wrote it): one part file, staged and published as :meth:`_store_spark_objects`
        publishes, so the name stays one dataset."""
        import polars as pl

        from data_pipeline.storage._objects import dataset_schema

        fs, dataset, single, old, has_single = self._object_target(rel, cfg, if_exists)
        df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        if if_exists == "append" and old is not None:
            schema = to_polars(dataset_schema(fs, dataset).empty_table()).schema
            check_columns_match(schema.names(), df.columns, target=dataset, component=self.label)
            df = _cast_to(
                df.lazy().select(schema.names()), schema, target=dataset, component=self.label
            ).collect()

        def write(staging: str) -> tuple[list[str], int, int]:
            with fs.open(f"{staging}/part-0.parquet", "wb") as handle:
                _write(df, handle, cfg)
            return (
                ["part-0.parquet"],
                int(df.height),
                int(fs.size(f"{staging}/part-0.parquet") or 0),
            )

        return self._publish_staged(
            fs, dataset, write, if_exists, old, single if has_single else None, cfg, "driver"
        )

    def _fs(self) -> tuple[Any, str]:
        from data_pipeline.core.deps import import_optional

        fsspec = import_optional("fsspec", extra="s3", feature="Remote file storage")
        fs, root = fsspec.core.url_to_fs(
            self.settings.base_path, **(self.settings.storage_options or {})
        )
        return fs, str(root)

    def _display(self, path: str) -> str:
        base = self.settings.base_path
        scheme = base.split("://", 1)[0]
        return (
            path
            if "://" in path
            else f"{scheme}://{path.lstrip('/')}"
            if scheme == "memory"
            else path
        )

    # -- retrieve ---------------------------------------------------------------------------

    def _retrieve(
        self,
        target: str | None,
        *,
        query: str | None,
        params: Any,
        columns: list[str] | None = None,
        format: str | None = None,
        **options: Any,
    ) -> Any:
        import polars as pl

        reject_unknown_options(
            options,
            (),
            hint="retrieve() accepts table, query, columns, format, output",
            component=self.label,
        )
        if target is None:
            raise ConfigError(
                "no file name given and no default_table configured",
                component=self.label,
                hint="call retrieve('name') or set default_table",
            )
        cfg = self._effective({"format": format}) if format else self.settings
        assert cfg.compression is not None
        rel = self._relative(target, cfg.format, cfg.compression)
        frame = self._scan(rel, cfg)
        if columns:
            from data_pipeline.core.frames import require_columns

            require_columns(frame, columns, component=self.label)
            frame = frame.select(columns)
        if query is not None:
            if params:
                raise UnsupportedOperationError(
                    "bound params are not supported for file queries",
                    component=self.label,
                    hint="filter the result, or load the files into DataWarehouseStorage (DuckDB)",
                )
            leaf = PurePosixPath(rel).name
            context = pl.SQLContext(frames={leaf: frame, rel: frame, "data": frame})
            return context.execute(query)
        return frame

    def _scan(self, rel: str, cfg: FileSystemStorageConfig) -> pl.LazyFrame:
        import polars as pl

        assert cfg.compression is not None
        ext = self._extension(cfg.format, cfg.compression)
        if not self.is_local:
            fs, root = self._fs()
            if cfg.format == "parquet":  # a dataset the executors wrote: the manifest's parts
                from data_pipeline.storage._objects import read_dataset, read_manifest

                fs.invalidate_cache()
                dataset = f"{root.rstrip('/')}/{rel}"
                if read_manifest(fs, dataset) is not None:
                    return to_polars(read_dataset(fs, dataset)).lazy()
            path = f"{root.rstrip('/')}/{rel}{ext}"
            if not fs.exists(path):
                raise InputNotFoundError(
                    f"{self._display(path)!r} does not exist",
                    component=self.label,
                    hint="check the name and the format in the config",
                )
            with fs.open(path, "rb") as handle:
                return _read(handle, cfg.format).lazy()
        base = self._local_base()
        dataset = os.path.join(base, rel)
        path = dataset + ext
        if os.path.isfile(path):
            self._inside_base(path)
            if cfg.format == "parquet":
                return pl.scan_parquet(path)
            if cfg.format == "ipc":
                return pl.scan_ipc(path)
            with open(path, "rb") as handle:  # compressed text is read eagerly
                if cfg.compression != "uncompressed":
                    return _read(handle, cfg.format).lazy()
            if cfg.format == "csv":
                return _named(pl.scan_csv(path, try_parse_dates=True))
            return pl.scan_ndjson(path)
        if os.path.isdir(dataset):
            self._inside_base(dataset)
            return self._dataset_scan(dataset, cfg.format)
        raise not_found_error(
            f"{path!r} does not exist",
            self.list_stored(),
            kind="stored names",
            empty="nothing is stored here yet",
            component=self.label,
        )

    @staticmethod
    def _dataset_scan(path: str, fmt: str) -> pl.LazyFrame:
        import polars as pl

        real = os.path.realpath(path)
        if fmt == "parquet":
            return pl.scan_parquet(real, hive_partitioning=True)
        return pl.scan_ipc(os.path.join(real, "**", "*.arrow"), hive_partitioning=True)

    # -- transactions and checkpoints (core/checkpoint.py) ---------------------------------------

    def supports_transactions(self) -> bool:
        return self.is_local

    def _open_tx(self) -> Any:
        return getattr(getattr(self, "_tx_local", None), "tx", None)

    def _checkpoints(self) -> str:
        return os.path.join(self._local_base(), ".dp_checkpoints")

    def _pending_files(self) -> set[str]:
        """Temporary files and versions that are not leftovers: staged by this thread's open
        transaction, or by a committed transaction whose renames a crash interrupted (those are
        finished first, as the next transaction would)."""
        tx = self._open_tx()
        if tx is None:
            if os.path.isdir(self._checkpoints()):
                from data_pipeline.core.checkpoint import StagedTransaction, apply_rename

                StagedTransaction.recover(self._checkpoints(), apply_rename)
            return set()
        pending: set[str] = set()
        for operation in tx.operations:
            staged = str(operation.get("from", ""))
            pending.update({os.path.abspath(staged), os.path.realpath(staged)})
        return pending

    def _replace(self, staged: str, final: str) -> None:
        """Move a written file (or link) into place: now, or at the commit of the open
        transaction."""
        tx = self._open_tx()
        if tx is None:
            os.replace(staged, final)
        else:
            tx.stage({"kind": "rename", "from": staged, "to": final}, final)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """Local files: every ``store()`` of this thread inside the block writes its file under
        a temporary name; at the end one manifest (with the checkpoint, when one is saved) is
        renamed into place under ``<base_path>/.dp_checkpoints`` (the commit), then the files
        are renamed over their targets. After a crash the next transaction (or checkpoint
        load) finishes the renames a committed manifest lists. An error in the block removes
        the temporary files: nothing changed."""
        import threading

        from data_pipeline.core.checkpoint import StagedTransaction, apply_rename

        if not self.is_local:
            raise UnsupportedOperationError(
                "transactions are supported on local base paths only (an object store has no "
                "atomic rename)",
                component=self.label,
                hint="use a local base_path, or keep the checkpoint in a folder",
            )
        if self._open_tx() is not None:
            raise ConfigError(
                "a transaction is already open on this storage",
                component=self.label,
                hint="do not nest transaction() blocks",
            )
        if getattr(self, "_tx_local", None) is None:
            self._tx_local = threading.local()
        folder = self._checkpoints()
        StagedTransaction.recover(folder, apply_rename)
        tx = StagedTransaction(folder, apply_rename)
        self._tx_local.tx = tx
        try:
            yield tx
        except BaseException:
            self._tx_local.tx = None
            for operation in tx.operations:  # nothing was renamed: drop what was staged
                with contextlib.suppress(OSError):
                    os.remove(operation["from"])
            raise
        self._tx_local.tx = None
        tx.commit()

    def recover_checkpoint(self, name: str) -> None:
        """Finish what a committed manifest lists (a crash after the commit point)."""
        from data_pipeline.core.checkpoint import StagedTransaction, apply_rename

        if self.is_local:
            StagedTransaction.recover(self._checkpoints(), apply_rename)

    def load_checkpoint(self, name: str) -> Checkpoint | None:
        """The checkpoint ``name`` committed with this storage's files (None: none yet)."""
        from data_pipeline.core.checkpoint import Manifest

        if not self.is_local:
            return None
        self.recover_checkpoint(name)
        return Manifest(self._checkpoints(), name).load()

    def list_stored(self) -> list[str]:
        """Names stored under base_path in the configured format (datasets included)."""
        if not self.is_local:
            return []
        base = self._local_base()
        if not os.path.isdir(base):
            return []
        assert self.settings.compression is not None
        ext = self._extension(self.settings.format, self.settings.compression)
        names = []
        for root, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if not d.startswith(".") and "=" not in d]
            rel_root = os.path.relpath(root, base)
            for f in files:
                if f.endswith(ext) and not f.startswith("."):
                    names.append(os.path.normpath(os.path.join(rel_root, f[: -len(ext)])))
            for d in list(dirs):
                if os.path.islink(os.path.join(root, d)):
                    names.append(os.path.normpath(os.path.join(rel_root, d)))
        return sorted(names)


# -- writers ----------------------------------------------------------------------------------


def _write(frame: pl.DataFrame | pl.LazyFrame, target: Any, cfg: FileSystemStorageConfig) -> int:
    """Write one file (path or binary handle); returns the rows written."""
    import polars as pl

    comp: Any = cfg.compression
    level = cfg.compression_level
    if isinstance(frame, pl.LazyFrame):
        if cfg.format == "parquet" and isinstance(target, str):
            frame.sink_parquet(
                target, compression=comp, compression_level=level, row_group_size=cfg.row_group_size
            )
            return _count(pl.scan_parquet(target))
        frame = frame.collect()
    if cfg.format == "parquet":
        frame.write_parquet(
            target, compression=comp, compression_level=level, row_group_size=cfg.row_group_size
        )
    elif cfg.format == "csv":
        frame.write_csv(target, compression=comp, compression_level=level, check_extension=False)
    elif cfg.format == "jsonl":
        frame.write_ndjson(target, compression=comp, compression_level=level, check_extension=False)
    else:
        frame.write_ipc(target, compression=comp)
    return int(frame.height)


def _write_partitioned(df: pl.DataFrame, directory: str, cfg: FileSystemStorageConfig) -> None:
    import polars as pl

    comp: Any = cfg.compression
    level = cfg.compression_level
    os.makedirs(directory, exist_ok=False)
    if not cfg.partition_by:  # a dataset of part files without partitions (as Spark writes)
        _write(df, os.path.join(directory, "part-0" + EXTENSIONS[cfg.format]), cfg)
        return
    if cfg.format == "parquet":
        df.write_parquet(
            directory,
            partition_by=cfg.partition_by,
            compression=comp,
            compression_level=level,
            row_group_size=cfg.row_group_size,
        )
        return
    df.lazy().sink_ipc(
        pl.PartitionBy(directory, key=cfg.partition_by), compression=comp, mkdir=True
    )
    # polars may name IPC parts *.ipc; keep one extension so that scans find them.
    for root, _, files in os.walk(directory):
        for f in files:
            if not f.endswith(".arrow"):
                os.replace(
                    os.path.join(root, f), os.path.join(root, os.path.splitext(f)[0] + ".arrow")
                )


def _read(handle: Any, fmt: str) -> pl.DataFrame:
    import polars as pl

    if fmt == "parquet":
        return pl.read_parquet(handle)
    if fmt == "ipc":
        return pl.read_ipc(handle)
    if fmt == "csv":
        frame = pl.read_csv(handle, try_parse_dates=True)
        return frame.rename(dict(zip(frame.columns, fix_csv_header(frame.columns), strict=True)))
    return pl.read_ndjson(handle)


def _named(frame: pl.LazyFrame) -> pl.LazyFrame:
    """A CSV scan with the header's names as written (see :func:`fix_csv_header`)."""
    names = frame.collect_schema().names()
    fixed = fix_csv_header(names)
    return frame if fixed == names else frame.rename(dict(zip(names, fixed, strict=True)))


def _count(frame: pl.LazyFrame) -> int:
    import polars as pl

    return int(frame.select(pl.len()).collect().item())


def _cast_to(frame: pl.LazyFrame, schema: Any, *, target: str, component: str) -> pl.LazyFrame:
    """Cast new rows to the existing file's types; a type that differs and cannot cast is an error."""
    new_schema = frame.collect_schema()
    differing = {
        c: (new_schema[c], schema[c]) for c in schema.names() if new_schema[c] != schema[c]
    }
    if not differing:
        return frame
    import polars as pl

    bad = [
        f"{c!r} ({new} -> {old})"
        for c, (new, old) in differing.items()
        if not (
            new == pl.Null
            or (new.is_numeric() and old.is_numeric())
            or (new.is_temporal() and old.is_temporal())
        )
    ]
    if bad:
        raise StorageSchemaError(
            f"column types differ from {target!r}: {', '.join(bad)}",
            component=component,
            hint="cast the columns to the stored types, or store with if_exists='replace'",
        )
    return frame.cast({c: old for c, (_, old) in differing.items()})


def _copy_tree_links(source: str, dest: str) -> None:
    """Recreate ``source``'s files under ``dest`` as hard links (copies where links fail)."""
    for root, _, files in os.walk(source):
        rel = os.path.relpath(root, source)
        out = os.path.normpath(os.path.join(dest, rel))
        os.makedirs(out, exist_ok=True)
        for f in files:
            src, dst = os.path.join(root, f), os.path.join(out, f)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)


def _merge_tree(source: str, dest: str, *, prefix: str) -> None:
    """Move every file of ``source`` into the same relative folder of ``dest`` under a unique name."""
    for root, _, files in os.walk(source):
        rel = os.path.relpath(root, source)
        out = os.path.normpath(os.path.join(dest, rel))
        os.makedirs(out, exist_ok=True)
        for f in files:
            os.replace(os.path.join(root, f), os.path.join(out, f"part-{prefix}-{f}"))


def _sweep(
    parent: str, leaf: str, *, keep: str | None, protected: set[str] | None = None
) -> list[str]:
    """Remove what killed writers left beside ``leaf`` (temporary files, unused versions).

    Called with the target's lock held (:func:`target_lock`): every writer of this target holds
    it while its temporary files exist, so any found now belong to a writer that is gone, except
    ``protected`` ones (staged by an open transaction of this storage).
    Returns the names removed (reported in the store's metadata).
    """
    prefix = f".{leaf}."
    markers = (".tmp-", ".v-", ".in-", ".lnk-", ".old-")
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    removed = []
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix) or not any(m in name[len(prefix) - 1 :] for m in markers):
            continue
        try:
            if keep is not None and os.path.realpath(entry.path) == keep:
                continue
            if protected and (
                os.path.abspath(entry.path) in protected
                or os.path.realpath(entry.path) in protected
            ):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.remove(entry.path)
            removed.append(name)
        except OSError:
            continue
    return sorted(removed)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        _fsync(path)
