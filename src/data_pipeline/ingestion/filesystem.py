"""FileSystemSource: CSV, Parquet, JSON, JSON Lines, Arrow IPC and Excel files, local or remote.

Local files are scanned lazily by polars (``scan_csv``, ``scan_parquet``, ``scan_ndjson``,
``scan_ipc``), so ``output: lazy`` stays lazy and large CSVs are read in parallel in Rust. Remote
URLs (``s3://``, ``gs://``, ``http://``, ``memory://``, any fsspec protocol) are opened with fsspec.
"""

from __future__ import annotations

import codecs
import glob as globlib
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from data_pipeline.core.errors import (
    ConfigError,
    InputNotFoundError,
    ParseError,
    UnsupportedOperationError,
)
from data_pipeline.ingestion._common import StateStore, check_dtype_name, json_to_frame, parse_dtype
from data_pipeline.ingestion.base import DataSource, SourceConfig

if TYPE_CHECKING:
    import polars as pl

__all__ = ["FileSystemConfig", "FileSystemSource"]

Format = Literal[
    "auto", "csv", "tsv", "parquet", "json", "jsonl", "ndjson", "ipc", "arrow", "feather", "excel"
]

_EXTENSIONS = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".ipc": "ipc",
    ".arrow": "ipc",
    ".feather": "ipc",
    ".xlsx": "excel",
}
_COMPRESSIONS = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2"}
_CANONICAL = {"ndjson": "jsonl", "arrow": "ipc", "feather": "ipc", "tsv": "csv"}
_UTF8 = {"utf-8", "utf8", "utf-8-sig", "utf_8", "utf_8_sig"}


class FileSystemConfig(SourceConfig):
    """Config of :class:`FileSystemSource`."""

    path: str | list[str]
    """A file, a directory, a glob (``data/**/*.csv``) or an fsspec URL; or a list of those."""
    format: Format = "auto"
    """``auto`` picks the format from the extension (after a compression suffix)."""
    compression: Literal["auto", "none", "gzip", "zstd", "bz2"] = "auto"
    delimiter: str = ","
    quote_char: str | None = '"'
    has_header: bool = True
    encoding: str = "utf-8"
    """Any Python codec: ``utf-8`` (a BOM is skipped), ``latin-1``, ``cp1252``, ..."""
    null_values: str | list[str] | None = None
    schema_overrides: dict[str, str] = Field(default_factory=dict)
    """Column -> type name (``int64``, ``float64``, ``string``, ``date``, ``decimal(10,2)``, ...)."""
    skip_rows: int = Field(default=0, ge=0)
    comment_prefix: str | None = None
    infer_schema_length: int | None = Field(default=10_000, ge=0)
    try_parse_dates: bool = False
    data_selector: str | None = None
    """For JSON objects: a dotted path to the list of records (``data.items``)."""
    flatten: bool = False
    """Unnest struct columns into ``parent__child`` columns."""
    source_file_column: str | None = None
    """Add a column holding the file each row came from."""
    hive_partitioning: bool | None = None
    sheet_name: str | None = None
    on_bad_rows: Literal["error", "skip", "reject"] = "error"
    """CSV rows with the wrong number of fields or unparsable values: fail, drop, or write to ``reject_path``."""
    reject_path: str | None = None
    incremental: bool = False
    """Read only files that are new or changed (size or modification time) since the last run."""
    state_path: str | None = None
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, value: str) -> str:
        if value == "\\t":
            value = "\t"
        if len(value.encode()) != 1:
            raise ValueError("must be a single one-byte character, e.g. ',' ';' '\\t' '|'")
        return value

    @field_validator("quote_char")
    @classmethod
    def _quote(cls, value: str | None) -> str | None:
        if value is not None and len(value.encode()) != 1:
            raise ValueError("must be a single one-byte character or null")
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(
                "unknown encoding; use e.g. utf-8, utf-8-sig, latin-1, cp1252"
            ) from None
        return value

    @field_validator("schema_overrides")
    @classmethod
    def _dtypes(cls, value: dict[str, str]) -> dict[str, str]:
        return {k: check_dtype_name(v) for k, v in value.items()}

    @model_validator(mode="after")
    def _consistent(self) -> FileSystemConfig:
        if isinstance(self.path, list) and not self.path:
            raise ValueError("path: give at least one path")
        return self


class FileSystemSource(DataSource):
    """Data source for file systems: one file, a directory, a glob or a remote URL.

    Example:
        >>> from data_pipeline.ingestion import FileSystemSource
        >>> source = FileSystemSource(name="sales", config={
        ...     "path": "data/sales_*.csv.gz",      # format and compression from the extension
        ...     "delimiter": ";",
        ...     "encoding": "latin-1",
        ...     "null_values": ["NA", ""],
        ...     "schema_overrides": {"zip": "string"},
        ...     "source_file_column": "source_file",
        ...     "on_bad_rows": "reject",
        ...     "reject_path": "rejects/sales.csv",
        ...     "output": "lazy",
        ... })
    """

    config_model = FileSystemConfig
    settings: FileSystemConfig

    # -- files --------------------------------------------------------------------------------

    def resolve_files(self) -> list[str]:
        """The files the configured path names, sorted; InputNotFoundError when there are none."""
        paths = self.settings.path if isinstance(self.settings.path, list) else [self.settings.path]
        files: list[str] = []
        for path in paths:
            found = self._remote_files(path) if _is_remote(path) else self._local_files(path)
            if not found:
                raise InputNotFoundError(
                    f"no file found at {path!r}"
                    + (" (the glob matched nothing)" if globlib.has_magic(path) else ""),
                    component=self.label,
                    hint="check the 'path' in the config; a glob must match at least one file",
                )
            files.extend(f for f in found if f not in files)
        return files

    def _local_files(self, path: str) -> list[str]:
        if path.startswith("file://"):
            path = path[len("file://") :]
        path = os.path.expanduser(path)
        if globlib.has_magic(path):
            return sorted(p for p in globlib.glob(path, recursive=True) if os.path.isfile(p))
        if os.path.isdir(path):
            wanted = self._wanted_format()
            found = []
            for p in sorted(Path(path).rglob("*")):
                rel = p.relative_to(path)
                if p.is_file() and not any(part.startswith((".", "_")) for part in rel.parts):
                    fmt = _format_of(str(p))
                    if fmt is not None and (wanted is None or _CANONICAL.get(fmt, fmt) == wanted):
                        found.append(str(p))
            return found
        return [path] if os.path.isfile(path) else []

    def _remote_files(self, url: str) -> list[str]:
        fs, fs_path = self._fs(url)
        if globlib.has_magic(fs_path):
            matches = sorted(fs.glob(fs_path))
        elif fs.isdir(fs_path):
            matches = sorted(p for p in fs.find(fs_path) if _format_of(p) is not None)
        else:
            matches = [fs_path] if fs.exists(fs_path) else []
        return [fs.unstrip_protocol(m) for m in matches]

    def _fs(self, url: str) -> tuple[Any, str]:
        from data_pipeline.core.deps import import_optional

        fsspec = import_optional("fsspec", extra="s3", feature="Remote file URLs")
        fs, fs_path = fsspec.core.url_to_fs(url, **self.settings.storage_options)
        return fs, fs_path

    def _wanted_format(self) -> str | None:
        fmt = self.settings.format
        if fmt == "auto":
            return None
        return _CANONICAL.get(fmt, fmt)

    def _format_for(self, files: list[str]) -> str:
        if self.settings.format != "auto":
            return _CANONICAL.get(self.settings.format, self.settings.format)
        formats = {_CANONICAL.get(f, f) if f else None for f in map(_format_of, files)}
        if None in formats or len(formats) != 1:
            unknown = [f for f in files if _format_of(f) is None][:3]
            raise ConfigError(
                f"cannot tell the file format of {unknown or files[:3]}"
                if None in formats
                else f"the path matches files of several formats: {sorted(f for f in formats if f)}",
                component=self.label,
                hint="set 'format' to one of csv, tsv, parquet, json, jsonl, ipc, excel, "
                "or narrow the glob",
            )
        return str(formats.pop())

    def _compression_of(self, file: str) -> str:
        if self.settings.compression != "auto":
            return self.settings.compression
        return _COMPRESSIONS.get(Path(file.split("?")[0]).suffix.lower(), "none")

    def _bytes(self, file: str) -> bytes:
        """The decompressed bytes of one file (local or remote)."""
        if _is_remote(file):
            fs, fs_path = self._fs(file)
            with fs.open(fs_path, "rb") as handle:
                raw: bytes = handle.read()
        else:
            raw = Path(file).read_bytes()
        kind = self._compression_of(file)
        if kind == "gzip":
            import gzip

            return gzip.decompress(raw)
        if kind == "bz2":
            import bz2

            return bz2.decompress(raw)
        if kind == "zstd":
            import pyarrow as pa

            with pa.input_stream(pa.py_buffer(raw), compression="zstd") as stream:
                return bytes(stream.read())
        return raw

    def _native_ok(self, file: str, *, csv: bool = False) -> bool:
        """Whether polars can scan ``file`` directly (lazily, in parallel)."""
        if _is_remote(file) or self._compression_of(file) == "bz2":
            return False
        return not (csv and self.settings.encoding.lower().replace("_", "-") not in _UTF8)

    # -- reading ------------------------------------------------------------------------------

    def _read(self, **options: Any) -> Any:
        import polars as pl

        if options:
            raise ConfigError(
                f"ingest() got unexpected options {sorted(options)}",
                component=self.label,
                hint="FileSystemSource takes its settings from the config",
            )
        files = self.resolve_files()
        state: StateStore | None = None
        seen: dict[str, Any] = {}
        if self.settings.incremental:
            state = StateStore.for_source(self.name, self.settings.state_path)
            files, seen = self._changed_files(files, state)
            self.current_operation.details["files_skipped_unchanged"] = len(seen.get("skipped", []))
            if not files:
                if state is not None:
                    state.save({"files": seen["files"]})
                return pl.DataFrame()
        fmt = self._format_for(files)
        op = self.current_operation
        op.details["files"] = len(files)
        op.details["format"] = fmt
        self.logger.debug("%s: reading %d %s file(s)", self.label, len(files), fmt)
        if fmt in ("csv", "jsonl") and self.settings.on_bad_rows != "error":
            from data_pipeline.ingestion._badrows import read_checked

            frame: Any = read_checked(self, files, fmt)
        elif self.settings.on_bad_rows != "error":
            raise UnsupportedOperationError(
                f"on_bad_rows={self.settings.on_bad_rows!r} is supported for CSV and JSON Lines "
                f"files, not {fmt}",
                component=self.label,
                hint="use on_bad_rows: error for this format",
            )
        else:
            frame = self._scan(files, fmt)
            if self.settings.output == "lazy" and fmt in ("csv", "jsonl"):  # rows can be bad
                frame = self._checked_lazy(frame, files, fmt)
            elif self.settings.output != "lazy":
                frame = self._collect(frame, files, fmt)
        if state is not None:
            state.save({"files": seen["files"]})
        return frame

    def _collect(self, frame: pl.LazyFrame, files: list[str], fmt: str) -> pl.DataFrame:
        try:  # the engine polars.read_csv / read_parquet use for an eager read
            return frame.collect(engine="in-memory")
        except Exception as exc:
            error = self._parse_error(exc, files, fmt)
            if error is None:
                raise
            raise error from exc

    def _parse_error(self, exc: Exception, files: list[str], fmt: str) -> ParseError | None:
        """Our ParseError (file, line, reason) for polars' error while reading ``files``."""
        import polars as pl

        if not isinstance(
            exc,
            pl.exceptions.ComputeError
            | pl.exceptions.SchemaError
            | pl.exceptions.InvalidOperationError,
        ):
            return None
        where = ""
        if fmt in ("csv", "jsonl"):
            from data_pipeline.ingestion._badrows import first_bad_row

            where = first_bad_row(self, files, fmt) or ""
        return ParseError(
            f"cannot parse {fmt} {_shown(files)}: {where or str(exc).splitlines()[0]}",
            component=self.label,
            hint="fix the file, or set schema_overrides / null_values"
            + (", or on_bad_rows: skip or reject" if fmt in ("csv", "jsonl") else ""),
        )

    def _checked_lazy(self, frame: pl.LazyFrame, files: list[str], fmt: str) -> pl.LazyFrame:
        """``frame`` as a lazy source whose read errors surface as our ParseError at collect.

        The scan stays lazy and its pushdowns stay in polars: the projection, the predicate and
        the row limit polars hands the source are applied to the inner scan, and batches are
        passed through as polars reads them. Only the error changes: polars' own ComputeError
        (which names neither file nor line) becomes the ParseError an eager read raises.
        """
        from polars.io.plugins import register_io_source

        try:
            schema = frame.collect_schema()
        except Exception as exc:  # schema inference reads the first rows already
            error = self._parse_error(exc, files, fmt)
            if error is None:
                raise
            raise error from exc

        def batches(
            with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, _: Any
        ) -> Any:
            scan = frame
            if with_columns is not None:
                scan = scan.select(with_columns)
            if predicate is not None:
                scan = scan.filter(predicate)
            if n_rows is not None:
                scan = scan.head(n_rows)
            try:
                yield from scan.collect_batches()
            except Exception as exc:
                error = self._parse_error(exc, files, fmt)
                if error is None:
                    raise
                raise error from exc

        return register_io_source(batches, schema=schema)

    def _scan(self, files: list[str], fmt: str) -> pl.LazyFrame:
        import polars as pl

        column = self.settings.source_file_column
        if fmt == "csv":
            if all(self._native_ok(f, csv=True) for f in files):
                frame = pl.scan_csv(files, **self.csv_options(), include_file_paths=column)
            else:
                frame = self._concat(
                    files, lambda f: pl.scan_csv(self._utf8(f), **self.csv_options())
                )
        elif fmt == "parquet":
            if all(self._native_ok(f) for f in files):
                target: Any = files
                plain = self.settings.path
                if isinstance(plain, str) and not globlib.has_magic(plain) and os.path.isdir(plain):
                    target = plain
                frame = pl.scan_parquet(
                    target,
                    hive_partitioning=self.settings.hive_partitioning,
                    include_file_paths=column,
                )
            else:
                frame = self._concat(
                    files, lambda f: pl.read_parquet(io.BytesIO(self._bytes(f))).lazy()
                )
        elif fmt == "ipc":
            if all(self._native_ok(f) and self._compression_of(f) == "none" for f in files):
                frame = pl.scan_ipc(
                    files,
                    hive_partitioning=self.settings.hive_partitioning,
                    include_file_paths=column,
                )
            else:
                frame = self._concat(
                    files, lambda f: pl.read_ipc(io.BytesIO(self._bytes(f))).lazy()
                )
        elif fmt == "jsonl":
            if all(self._native_ok(f) for f in files):
                frame = pl.scan_ndjson(
                    files,
                    infer_schema_length=self.settings.infer_schema_length,
                    include_file_paths=column,
                )
            else:
                frame = self._concat(
                    files,
                    lambda f: pl.scan_ndjson(
                        self._bytes(f), infer_schema_length=self.settings.infer_schema_length
                    ),
                )
        elif fmt == "json":
            frame = self._concat(
                files,
                lambda f: json_to_frame(
                    self._bytes(f),
                    data_selector=self.settings.data_selector,
                    flatten=False,
                    where=f"file {f!r}",
                    component=self.label,
                ).lazy(),
            )
        elif fmt == "excel":
            frame = self._concat(files, self._excel)
        else:  # pragma: no cover - the config model forbids other values
            raise ConfigError(f"unknown format {fmt!r}", component=self.label)
        if self.settings.flatten:
            frame = _flatten_lazy(frame)
        if fmt != "csv" and self.settings.schema_overrides:
            frame = frame.with_columns(
                pl.col(c).cast(parse_dtype(t)) for c, t in self.settings.schema_overrides.items()
            )
        return frame

    def _excel(self, file: str) -> pl.LazyFrame:
        import polars as pl

        from data_pipeline.core.deps import import_optional

        import_optional("fastexcel", extra="excel", feature="Reading Excel files")
        source: Any = io.BytesIO(self._bytes(file)) if _is_remote(file) else file
        if self.settings.sheet_name:
            frame: pl.DataFrame = pl.read_excel(source, sheet_name=self.settings.sheet_name)
        else:
            frame = pl.read_excel(source)
        return frame.lazy()

    def _concat(self, files: list[str], read: Any) -> pl.LazyFrame:
        import polars as pl

        column = self.settings.source_file_column
        frames: list[pl.LazyFrame] = []
        for file in files:
            frame: pl.LazyFrame = read(file)
            if column:
                frame = frame.with_columns(pl.lit(file, dtype=pl.String).alias(column))
            frames.append(frame)
        if len(frames) == 1:
            return frames[0]
        combined: pl.LazyFrame = pl.concat(frames, how="diagonal_relaxed")
        return combined

    def csv_options(self, *, strings: bool = False) -> dict[str, Any]:
        """Keyword arguments for ``polars.scan_csv`` from the config."""
        s = self.settings
        delimiter = "\t" if s.format == "tsv" and s.delimiter == "," else s.delimiter
        if s.format == "auto" and s.delimiter == ",":
            first = s.path[0] if isinstance(s.path, list) else s.path
            if _format_of(first) == "tsv":
                delimiter = "\t"
        options: dict[str, Any] = {
            "separator": delimiter,
            "quote_char": s.quote_char,
            "has_header": s.has_header,
            "skip_rows": s.skip_rows,
            "comment_prefix": s.comment_prefix,
            "null_values": s.null_values,
            "infer_schema_length": s.infer_schema_length,
            "try_parse_dates": s.try_parse_dates,
        }
        if strings:
            options["infer_schema"] = False
            options.pop("infer_schema_length")
            options.pop("try_parse_dates")
        elif s.schema_overrides:
            options["schema_overrides"] = {c: parse_dtype(t) for c, t in s.schema_overrides.items()}
        return options

    def _utf8(self, file: str) -> bytes:
        """The file's bytes, decompressed and transcoded to UTF-8 (for polars)."""
        raw = self._bytes(file)
        encoding = self.settings.encoding
        if encoding.lower().replace("_", "-") in _UTF8:
            return raw
        try:
            return raw.decode(encoding).encode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ParseError(
                f"file {file!r} is not valid {encoding} at byte {exc.start} (line {line})",
                component=self.label,
                hint="set 'encoding' to the file's encoding (e.g. latin-1, cp1252, utf-8)",
            ) from None

    def _changed_files(
        self, files: list[str], state: StateStore
    ) -> tuple[list[str], dict[str, Any]]:
        previous = state.load().get("files", {})
        current: dict[str, list[int]] = {}
        changed: list[str] = []
        skipped: list[str] = []
        for file in files:
            stamp = self._stamp(file)
            current[file] = stamp
            if previous.get(file) == stamp:
                skipped.append(file)
            else:
                changed.append(file)
        merged = {**previous, **current}
        return changed, {"files": merged, "skipped": skipped}

    def _stamp(self, file: str) -> list[Any]:
        if _is_remote(file):
            fs, fs_path = self._fs(file)
            info = fs.info(fs_path)
            return [
                str(info.get("mtime") or info.get("LastModified") or info.get("created")),
                info.get("size"),
            ]
        st = os.stat(file)
        return [st.st_mtime_ns, st.st_size]


def _flatten_lazy(frame: pl.LazyFrame) -> pl.LazyFrame:
    import polars as pl

    while True:
        schema = frame.collect_schema()
        structs = [n for n, t in schema.items() if isinstance(t, pl.Struct)]
        if not structs:
            return frame
        frame = frame.unnest(structs, separator="__")


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _format_of(file: str) -> str | None:
    suffixes = [s.lower() for s in Path(file.split("?")[0]).suffixes]
    if suffixes and suffixes[-1] in _COMPRESSIONS:
        suffixes = suffixes[:-1]
    return _EXTENSIONS.get(suffixes[-1]) if suffixes else None


def _shown(files: list[str]) -> str:
    if len(files) == 1:
        return repr(files[0])
    return f"{len(files)} files ({files[0]!r}, ...)"
