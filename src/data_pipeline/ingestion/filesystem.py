"""FileSystemSource: CSV, Parquet, ORC, JSON, JSON Lines, Arrow IPC and Excel files, local or remote.

Local files are scanned lazily by polars (``scan_csv``, ``scan_parquet``, ``scan_ndjson``,
``scan_ipc``), so ``output: lazy`` stays lazy and large CSVs are read in parallel in Rust. Remote
URLs (``s3://``, ``gs://``, ``http(s)://``, ``memory://``, any fsspec protocol) are listed with
fsspec; ``s3://`` and range-capable ``http(s)://`` files are then scanned lazily by polars' own
cloud reader (only the row groups and columns a query needs are fetched), every other remote file
is read through fsspec. Errors of s3fs, gcsfs, aiohttp and polars' object store are translated into
the framework's errors, naming the URL without credentials.
"""

from __future__ import annotations

import codecs
import glob as globlib
import io
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from data_pipeline.core.errors import (
    ConfigError,
    DataPipelineError,
    IngestionAuthenticationError,
    IngestionConnectionError,
    IngestionError,
    IngestionTimeoutError,
    InputNotFoundError,
    ParseError,
    UnsupportedOperationError,
)
from data_pipeline.core.secrets import DATA_KEYS, redact_text, redact_url, register_secrets_in
from data_pipeline.ingestion._common import (
    MixedTypes,
    StateStore,
    check_dtype_name,
    json_to_frame,
    parse_dtype,
    records_to_frame,
)
from data_pipeline.ingestion.base import DataSource, SourceConfig

if TYPE_CHECKING:
    import polars as pl

    from data_pipeline.core.cursor import MemoryState

__all__ = ["FileSystemConfig", "FileSystemSource"]

Format = Literal[
    "auto",
    "csv",
    "tsv",
    "parquet",
    "orc",
    "json",
    "jsonl",
    "ndjson",
    "ipc",
    "arrow",
    "feather",
    "excel",
]

_EXTENSIONS = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".orc": "orc",
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
    """``auto`` picks the format from the extension (after a compression suffix: ``.csv``,
    ``.tsv``, ``.parquet``, ``.orc``, ``.json``, ``.jsonl``, ``.arrow``, ``.xlsx``, ...). ORC files
    are read with pyarrow (one file at a time; ``engine: spark`` reads them on the executors)."""
    compression: Literal["auto", "none", "gzip", "zstd", "bz2"] = "auto"
    """Whole-file compression: ``auto`` reads it from the file suffix (``.gz``/``.gzip``,
    ``.zst``/``.zstd``, ``.bz2``; none otherwise); a named kind applies to every file. Not the
    internal compression of Parquet or Arrow IPC, which their readers handle themselves."""
    delimiter: str = ","
    """CSV field separator, one one-byte character (``\\t`` is accepted for tab). The default
    ``,`` becomes a tab for ``format: tsv`` or, with ``format: auto``, when the first path ends in
    ``.tsv``/``.tab``."""
    quote_char: str | None = '"'
    """CSV quoting character (one byte); a doubled quote inside quotes is a literal quote.
    ``null`` turns quoting off, so every quote is data."""
    has_header: bool = True
    """Whether the first CSV line (after ``skip_rows``) holds the column names; ``false`` reads
    it as data and polars gives the columns positional names (``column_<n>``)."""
    encoding: str = "utf-8"
    """Any Python codec: ``utf-8`` (a BOM is skipped), ``latin-1``, ``cp1252``, ..."""
    null_values: str | list[str] | None = None
    """CSV field values read as null (``["NA", ""]``), besides an empty unquoted field, which is
    always null. Other formats carry their own nulls and ignore this key."""
    schema_overrides: Annotated[dict[str, str], DATA_KEYS] = Field(default_factory=dict)
    """Column -> type name (``int64``, ``float64``, ``string``, ``date``, ``decimal(10,2)``, ...)."""
    skip_rows: int = Field(default=0, ge=0)
    """Number of CSV lines to drop at the top of each file, before the header line."""
    comment_prefix: str | None = None
    """CSV lines starting with this text (e.g. ``#``) are skipped, wherever they appear."""
    infer_schema_length: int | None = Field(default=10_000, ge=0)
    """How many rows polars reads to infer the column types of CSV and JSON Lines files: ``0``
    reads every CSV column as a string, ``null`` scans the whole file (slower, never wrong).
    Columns named in ``schema_overrides`` are not inferred."""
    try_parse_dates: bool = False
    """CSV only: read columns whose values all look like ISO dates or datetimes as ``Date`` /
    ``Datetime`` instead of strings."""
    data_selector: str | None = None
    """For JSON objects: a dotted path to the list of records (``data.items``)."""
    flatten: bool = False
    """Unnest struct columns into ``parent__child`` columns."""
    source_file_column: str | None = None
    """Add a column holding the file each row came from."""
    hive_partitioning: bool | None = None
    """Parquet and Arrow IPC: add the ``key=value`` folder names of a partitioned path
    (``sales/year=2024/...``) as columns. ``null`` leaves it to polars (on when ``path`` is one
    directory of Parquet files); files read through fsspec (``gs://``, ``memory://``, bz2) never get them."""
    sheet_name: str | None = None
    """Excel only: the sheet to read; ``null`` reads the first sheet."""
    on_bad_rows: Literal["error", "skip", "reject"] = "error"
    """CSV rows with too few or too many fields or unparsable values, JSON Lines lines that are
    not objects or mix kinds: fail, drop, or write to ``reject_path``."""
    mixed_types: MixedTypes = "error"
    """JSON / JSON Lines: a key holding values of different kinds (an object and a number, a
    boolean and a number) fails naming the file, record and key; ``json`` keeps that key's
    values as JSON text instead."""
    reject_path: str | None = None
    """Where ``on_bad_rows: reject`` writes the rejected rows, as CSV with columns ``file``,
    ``line``, ``reason``, ``raw``. Appended to by each read that rejects rows (the header once,
    when the file is new or empty; a file with other columns is an error), so earlier runs'
    rejects are kept. Default ``.data_pipeline/rejects/<source name>.csv`` (beside the
    pipeline file when one runs)."""
    incremental: bool = False
    """Read only files that are new or changed (size or modification time) since the last run."""
    state_path: str | None = None
    """With ``incremental``: the JSON file keeping each file's size, modification time (or
    ETag) and the schema delivered. Default ``.data_pipeline/state/<source name>.json``; a
    pipeline with a checkpoint keeps the state there instead. Delete it to read everything
    again."""
    storage_options: dict[str, Any] = Field(default_factory=dict)
    """Options of the fsspec file system of remote URLs, e.g. for ``s3://`` ``key``,
    ``secret``, ``endpoint_url``, ``client_kwargs: {region_name: ...}``, ``anon``; for ``gs://``
    ``token``, ``project``. Ignored for local paths; their secret values never appear in
    messages. S3 options polars understands keep the read native and lazy; others read through
    s3fs."""

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

    Raises:
        ConfigError: an invalid config (a delimiter that is not one byte, an unknown encoding, ...),
            files of several or unknown formats under ``format: auto``, ``storage_options`` the
            file system does not take, or a ``reject_path`` file that holds other columns.
        DependencyError: fsspec / s3fs / gcsfs (remote URLs) or fastexcel (Excel) is not installed.
        InputNotFoundError: nothing matches ``path`` (a glob that matches no file, a missing
            object).
        IngestionAuthenticationError: a remote server refused the credentials (401/403).
        IngestionConnectionError: a remote server could not be reached.
        IngestionTimeoutError: a remote read timed out.
        ParseError: a file cannot be parsed (file, line and reason are named) or is not valid in its
            ``encoding``; with ``on_bad_rows: skip`` or ``reject`` bad rows are set aside instead.
        UnsupportedOperationError: ``on_bad_rows`` other than ``error`` for a format other than CSV
            and JSON Lines.

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

    def __init__(self, name: str, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, config)
        _register_option_secrets(self.settings.storage_options)
        self._remote_info: dict[str, dict[str, Any]] = {}
        self._ranges: dict[str, bool] = {}

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
        """The files a remote URL names: one object, a glob, or every data file under a prefix.

        One listing request per path; the listing's details (size, modification time, ETag) are
        kept for ``incremental``, so no further request per file is needed.
        """
        fs, fs_path = self._fs(url)
        wanted = self._wanted_format()
        found: dict[str, Any] = {}
        with self._remote_errors(url):
            fs.invalidate_cache()  # a listing cached by an earlier run would hide new objects
            if globlib.has_magic(fs_path):
                found = fs.glob(fs_path, detail=True)
            else:
                info = None if fs_path.endswith("/") else _info_or_none(fs, fs_path)
                if info is not None and not _is_listing(info, fs_path):
                    found = {fs_path: info}
                elif info is not None or fs_path.endswith("/") or fs.isdir(fs_path):
                    root = fs_path.rstrip("/")
                    found = {
                        p: i
                        for p, i in fs.find(root, detail=True).items()
                        if _is_data_file(p, p[len(root) :], wanted)
                    }
        files: list[str] = []
        for path in sorted(found):
            info = found[path]
            if isinstance(info, dict) and info.get("type", "file") != "file":
                continue
            full = fs.unstrip_protocol(path)
            self._remote_info[full] = info if isinstance(info, dict) else {}
            files.append(full)
        return files

    def _fs(self, url: str) -> tuple[Any, str]:
        """The fsspec file system of ``url`` (built from ``storage_options``) and the path in it."""
        from data_pipeline.core.deps import import_optional

        fsspec = import_optional("fsspec", extra="s3", feature="Remote file URLs")
        protocol = _protocol(url)
        module = _FSSPEC_MODULES.get(protocol)
        if module is not None:
            import_optional(module, extra="s3", feature=f"{protocol}:// URLs")
        options = dict(self.settings.storage_options)
        try:
            if protocol in _GCS and _gcs_emulated(options):
                # gcsfs' default class asks a gRPC control plane for the bucket type, which an
                # emulator does not serve (each call would wait 60 s); the JSON API one suffices.
                gcsfs_core = import_optional("gcsfs.core", extra="s3", feature="gs:// URLs")
                fs: Any = gcsfs_core.GCSFileSystem(**options)
                return fs, fs._strip_protocol(url)
            fs, fs_path = fsspec.core.url_to_fs(url, **options)
        except TypeError as exc:
            raise ConfigError(
                f"storage_options {sorted(options)} are not valid for {redact_url(url)}: "
                f"{redact_text(str(exc))}",
                component=self.label,
                hint=f"use the options of the fsspec file system for {protocol}:// "
                "(s3fs: key, secret, token, endpoint_url, client_kwargs, anon; "
                "gcsfs: token, project, endpoint_url)",
            ) from None
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
                hint="set 'format' to one of csv, tsv, parquet, orc, json, jsonl, ipc, excel, "
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
            with self._remote_errors(file):
                raw: bytes = fs.cat_file(fs_path)
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
        if self._compression_of(file) == "bz2":
            return False
        if csv and self.settings.encoding.lower().replace("_", "-") not in _UTF8:
            return False
        return not _is_remote(file) or self._native_options([file]) is not None

    def _native_options(self, files: list[str]) -> dict[str, Any] | None:
        """Extra keyword arguments for a polars ``scan_*`` of ``files``; None when it cannot.

        Local files need none. Remote files can be scanned natively when they share one protocol
        polars reads (``s3://``; ``http(s)://`` from a server that serves byte ranges) and the
        ``storage_options`` translate to polars' object-store form.
        """
        remote = [f for f in files if _is_remote(f)]
        if not remote:
            return {}
        protocols = {_protocol(f) for f in files}
        if len(remote) != len(files) or len(protocols) != 1:
            return None
        protocol = protocols.pop()
        options = _polars_storage_options(protocol, self.settings.storage_options)
        if options is None:
            return None
        if protocol in _HTTP and not all(self._serves_ranges(f) for f in files):
            return None
        return {"storage_options": options or None}

    def _serves_ranges(self, url: str) -> bool:
        """Whether the HTTP server of ``url`` answers byte-range requests (polars' reader needs
        them). Asked once per server (one HEAD request), not once per file."""
        import urllib.parse

        parts = urllib.parse.urlsplit(url)
        server = f"{parts.scheme}://{parts.netloc}"
        if server not in self._ranges:
            import urllib.request

            request = urllib.request.Request(url, method="HEAD")
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    ranges = str(response.headers.get("Accept-Ranges", "")).lower()
                self._ranges[server] = ranges == "bytes"
            except Exception:  # reading through fsspec then reports the real error
                self._ranges[server] = False
        return self._ranges[server]

    @contextmanager
    def _remote_errors(self, url: str) -> Iterator[None]:
        """Translate an s3fs / gcsfs / aiohttp / botocore error about ``url`` (see ``_remote_error``)."""
        try:
            yield
        except DataPipelineError:
            raise
        except Exception as exc:
            raise self._remote_error(exc, url) from exc

    def _remote_error(self, exc: BaseException, url: str) -> DataPipelineError:
        """The framework error for a failure reading ``url``, naming it without credentials."""
        shown = redact_url(url)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = redact_text(f"{type(exc).__name__}: {first}"[:300])
        status = _http_status(exc)
        if isinstance(exc, FileNotFoundError) or status == 404:
            return InputNotFoundError(
                f"{shown} does not exist ({reason})",
                component=self.label,
                hint="check the bucket, the object name and the endpoint in 'path' and "
                "'storage_options'",
            )
        if isinstance(exc, PermissionError) or status in (401, 403):
            return IngestionAuthenticationError(
                f"access to {shown} was refused ({reason})",
                component=self.label,
                hint="check the credentials in 'storage_options' (s3: key and secret; gs: token) "
                "and that they may read this bucket",
            )
        if isinstance(exc, TimeoutError) or _named(exc, ("TimeoutError", "ReadTimeoutError")):
            return IngestionTimeoutError(
                f"reading {shown} timed out ({reason})",
                component=self.label,
                hint="check the network and the server, then retry",
            )
        if _is_connection_error(exc):
            return IngestionConnectionError(
                f"cannot connect to the server of {shown} ({reason})",
                component=self.label,
                hint="check that the server is up and the endpoint_url in 'storage_options'",
            )
        return IngestionError(
            f"reading {shown} failed ({reason})",
            component=self.label,
            hint="check the URL and 'storage_options'",
            transient=status is not None and (status >= 500 or status == 429),
        )

    def _translate_error(self, exc: BaseException, operation: str) -> BaseException | None:
        """Remote read errors raised by polars' cloud reader name the URL; others as usual."""
        if isinstance(exc, Exception) and not isinstance(exc, DataPipelineError):
            text = str(exc)
            url = _url_in(text) or (
                self._remote_path() if text.startswith("object-store error") else None
            )
            if url is not None:
                return self._remote_error(exc, url)
        return super()._translate_error(exc, operation)

    def _remote_path(self) -> str | None:
        paths = self.settings.path if isinstance(self.settings.path, list) else [self.settings.path]
        remote = [p for p in paths if _is_remote(p)]
        return remote[0] if remote else None

    def peek_columns(self) -> list[str] | None:
        """The columns a read would give, known cheaply (file headers and schemas of local
        CSV, Parquet, Arrow IPC and JSON Lines files), or None; used to check a pipeline file's
        column names before it runs."""
        files = self.resolve_files()
        if any(_is_remote(f) for f in files):
            return None
        fmt = self._format_for(files)
        if fmt not in ("csv", "parquet", "ipc", "jsonl") or self.settings.mixed_types == "json":
            return None
        return list(self._scan(files, fmt).collect_schema().names())

    # -- reading ------------------------------------------------------------------------------

    def _read(self, **options: Any) -> Any:

        if options:
            raise ConfigError(
                f"ingest() got unexpected options {sorted(options)}",
                component=self.label,
                hint="FileSystemSource takes its settings from the config",
            )
        files = self.resolve_files()
        state: StateStore | MemoryState | None = None
        seen: dict[str, Any] = {}
        if self.settings.incremental:
            # the state file, or the checkpoint once one restored this source
            state = self.state_store(self.settings.state_path)
            files, seen = self._changed_files(files, state)
            self.current_operation.details["files_skipped_unchanged"] = len(seen.get("skipped", []))
            if not files:  # nothing new: 0 rows with the columns of what was delivered
                previous = state.load()
                empty = self._empty_increment(previous, seen.get("skipped", []))
                state.save({**previous, "files": seen["files"]})
                return empty.lazy() if self.settings.output == "lazy" else empty
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
            schema = frame.collect_schema() if hasattr(frame, "collect_schema") else frame.schema
            state.save({"files": seen["files"], "schema": _schema_text(schema)})
        return frame

    def spark_unsupported(self) -> str | None:
        from data_pipeline._spark import files_unsupported

        return files_unsupported(self)

    def _read_spark(self, session: Any) -> Any:
        from data_pipeline._spark import read_files

        return read_files(self, session)

    def _empty_increment(self, state: Mapping[str, Any], unchanged: list[str]) -> pl.DataFrame:
        """An incremental run that finds no new file returns 0 rows with the source's schema
        (kept in the state by the last run that read rows; else read from an unchanged file),
        so that stores, processors and charts downstream see the same columns."""
        import polars as pl

        text = state.get("schema")
        if isinstance(text, str):
            try:
                return pl.DataFrame(schema=_schema_from_text(text))
            except Exception:  # a state written by another version: read the schema again
                pass
        if unchanged:
            fmt = self._format_for(unchanged[:1])
            if fmt not in ("csv", "jsonl") or self.settings.on_bad_rows == "error":
                return self._scan(unchanged[:1], fmt).head(0).collect()
        return pl.DataFrame()

    def _collect(self, frame: pl.LazyFrame, files: list[str], fmt: str) -> pl.DataFrame:
        try:  # the engine polars.read_csv / read_parquet use for an eager read
            result = frame.collect(engine="in-memory")
        except Exception as exc:
            error = self._parse_error(exc, files, fmt)
            if error is None:
                raise
            raise error from exc
        if fmt == "csv":
            self._check_short_rows(result, files)
        return result

    def _last_csv_column(self, columns: list[str]) -> str | None:
        names = [c for c in columns if c != self.settings.source_file_column]
        return names[-1] if len(names) > 1 else None

    def _check_short_rows(
        self, frame: pl.DataFrame, files: list[str], last: str | None = None
    ) -> None:
        """polars pads a CSV row that has too few fields with nulls; such a row is a bad row.

        A short row always leaves the last column null, so the files are checked field by
        field only when that column has nulls (usually never).
        """
        last = last or self._last_csv_column(frame.columns)
        if last is None or not frame.get_column(last).null_count():
            return
        from data_pipeline.ingestion._badrows import first_misshapen_row

        where = first_misshapen_row(self, files)
        if where is not None:
            raise ParseError(
                f"cannot parse csv {_shown(files)}: {where}",
                component=self.label,
                hint="fix the file, or set on_bad_rows: skip or reject",
            )

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
        passed through as polars reads them (a CSV file's rows are read whole, every column, so
        that a row with too many or too few fields is found as in an eager read; the projection
        is applied to each batch). Only the error changes: polars' own ComputeError (which
        names neither file nor line) becomes the ParseError an eager read raises.
        """
        from polars.io.plugins import register_io_source

        try:
            schema = frame.collect_schema()
        except Exception as exc:  # schema inference reads the first rows already
            error = self._parse_error(exc, files, fmt)
            if error is None:
                raise
            raise error from exc

        last = self._last_csv_column(schema.names()) if fmt == "csv" else None

        def batches(
            with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, _: Any
        ) -> Any:
            scan = frame
            # CSV: whole rows are read, then the columns asked for are kept: polars' reader of
            # a projection stops at the last column it needs, so a row with too many fields
            # would pass unseen (and a short row is found from the last column)
            if with_columns is not None and fmt != "csv":
                scan = scan.select(with_columns)
            if predicate is not None:
                scan = scan.filter(predicate)
            if n_rows is not None:
                scan = scan.head(n_rows)
            checked = False
            try:
                for batch in scan.collect_batches():
                    if last is not None and not checked and batch.get_column(last).null_count():
                        self._check_short_rows(batch, files, last)
                        checked = True
                    yield batch.select(with_columns) if with_columns is not None else batch
            except Exception as exc:
                error = self._parse_error(exc, files, fmt)
                if error is None:
                    raise
                raise error from exc

        return register_io_source(batches, schema=schema)

    def _scan(self, files: list[str], fmt: str) -> pl.LazyFrame:
        import polars as pl

        column = self.settings.source_file_column
        # {} for local files, polars' storage_options for remote ones, None: read through fsspec
        native = self._native_options(files) if fmt in ("csv", "parquet", "ipc", "jsonl") else None
        if fmt == "csv":
            if native is not None and all(self._native_ok(f, csv=True) for f in files):
                frame = pl.scan_csv(
                    files, **self.csv_options(), include_file_paths=column, **native
                )
            else:
                frame = self._concat(
                    files, lambda f: pl.scan_csv(self._utf8(f), **self.csv_options())
                )
        elif fmt == "parquet":
            if native is not None and all(self._native_ok(f) for f in files):
                target: Any = files
                plain = self.settings.path
                if isinstance(plain, str) and not globlib.has_magic(plain) and os.path.isdir(plain):
                    target = plain
                frame = pl.scan_parquet(
                    target,
                    hive_partitioning=self.settings.hive_partitioning,
                    include_file_paths=column,
                    **native,
                )
            else:
                frame = self._concat(
                    files, lambda f: pl.read_parquet(io.BytesIO(self._bytes(f))).lazy()
                )
        elif fmt == "ipc":
            if native is not None and all(
                self._native_ok(f) and self._compression_of(f) == "none" for f in files
            ):
                frame = pl.scan_ipc(
                    files,
                    hive_partitioning=self.settings.hive_partitioning,
                    include_file_paths=column,
                    **native,
                )
            else:
                frame = self._concat(
                    files, lambda f: pl.read_ipc(io.BytesIO(self._bytes(f))).lazy()
                )
        elif fmt == "jsonl":
            if self.settings.mixed_types == "json":  # keys that mix kinds become JSON text
                frame = self._concat(files, lambda f: self._jsonl_records(f).lazy())
            elif native is not None and all(self._native_ok(f) for f in files):
                frame = pl.scan_ndjson(
                    files,
                    infer_schema_length=self.settings.infer_schema_length,
                    include_file_paths=column,
                    **native,
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
                    where=f"file {redact_url(f)!r}",
                    component=self.label,
                    mixed_types=self.settings.mixed_types,
                ).lazy(),
            )
        elif fmt == "orc":  # pyarrow's ORC reader, one file at a time
            frame = self._concat(files, self._orc)
        elif fmt == "excel":
            frame = self._concat(files, self._excel)
        else:  # pragma: no cover - the config model forbids other values
            raise ConfigError(f"unknown format {fmt!r}", component=self.label)
        shown = {f: redact_url(f) for f in files}
        if column and any(f != shown[f] for f in files):  # a URL's token is not data
            frame = frame.with_columns(pl.col(column).replace(shown))
        if self.settings.flatten:
            frame = _flatten_lazy(frame)
        if fmt != "csv" and self.settings.schema_overrides:
            frame = frame.with_columns(
                pl.col(c).cast(parse_dtype(t)) for c, t in self.settings.schema_overrides.items()
            )
        return frame

    def _jsonl_records(self, file: str) -> pl.DataFrame:
        """A JSON Lines file decoded line by line (``mixed_types: json``)."""
        import json

        records = [json.loads(line) for line in self._bytes(file).split(b"\n") if line.strip()]
        return records_to_frame(
            records,
            where=f"file {redact_url(file)!r}",
            component=self.label,
            mixed_types=self.settings.mixed_types,
            unit="record",
        )

    def _orc(self, file: str) -> pl.LazyFrame:
        import polars as pl
        import pyarrow.orc as orc

        source: Any = io.BytesIO(self._bytes(file)) if _is_remote(file) else file
        frame: Any = pl.from_arrow(orc.read_table(source))
        return frame.lazy()  # type: ignore[no-any-return]

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
                frame = frame.with_columns(pl.lit(redact_url(file), dtype=pl.String).alias(column))
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
        self, files: list[str], state: StateStore | MemoryState
    ) -> tuple[list[str], dict[str, Any]]:
        previous = state.load().get("files", {})
        current: dict[str, list[int]] = {}
        changed: list[str] = []
        skipped: list[str] = []
        for file in files:
            stamp = self._stamp(file)
            key = redact_url(file)  # the state file never holds a URL's password or token
            current[key] = stamp
            if previous.get(key) == stamp:
                skipped.append(file)
            else:
                changed.append(file)
        merged = {**previous, **current}
        return changed, {"files": merged, "skipped": skipped}

    def _stamp(self, file: str) -> list[Any]:
        if _is_remote(file):
            info = self._remote_info.get(file)
            if not info or _remote_stamp(info)[0::2] == ["None", "None"]:  # e.g. an HTML link
                fs, fs_path = self._fs(file)
                with self._remote_errors(file):
                    info = fs.info(fs_path)
            return _remote_stamp(info)
        st = os.stat(file)
        return [st.st_mtime_ns, st.st_size]


def _schema_text(schema: Any) -> str:
    import base64

    from data_pipeline.core.files import schema_bytes

    return base64.b64encode(schema_bytes(schema)).decode()


def _schema_from_text(text: str) -> Any:
    import base64

    from data_pipeline.core.files import schema_from_bytes

    return schema_from_bytes(base64.b64decode(text))


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


# -- remote files ------------------------------------------------------------------------------

_S3 = ("s3", "s3a")
_GCS = ("gs", "gcs")
_HTTP = ("http", "https")
_FSSPEC_MODULES = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "http": "aiohttp",
    "https": "aiohttp",
}
_S3_OPTIONS = {  # s3fs option -> polars (object_store) option
    "key": "aws_access_key_id",
    "secret": "aws_secret_access_key",
    "token": "aws_session_token",
    "endpoint_url": "aws_endpoint_url",
    "region_name": "aws_region",
}
_NOT_SECRET_OPTIONS = {"anon", "google_default", "cache", "cloud", "browser"}
_URL_IN_TEXT = re.compile(r"\(path: ([a-zA-Z][a-zA-Z0-9+.-]*://[^\s)]+)\)")


def _protocol(url: str) -> str:
    return url.split("://", 1)[0].lower()


def _polars_storage_options(protocol: str, options: Mapping[str, Any]) -> dict[str, str] | None:
    """fsspec ``storage_options`` in polars' object-store form; None when they do not translate.

    s3: ``key``, ``secret``, ``token``, ``endpoint_url``, ``anon`` and ``client_kwargs``
    (``endpoint_url``, ``region_name``) translate; anything else (a profile, requester_pays, ...)
    keeps the read on s3fs. http(s): only URLs without options. gs: never (gcsfs reads it).
    """
    if protocol in _HTTP:
        return {} if not options else None
    if protocol not in _S3:
        return None
    flat: dict[str, Any] = {}
    for key, value in options.items():
        if key == "client_kwargs" and isinstance(value, Mapping):
            if set(value) - {"endpoint_url", "region_name"}:
                return None
            flat.update(value)
        elif key in _S3_OPTIONS or key == "anon":
            flat[key] = value
        else:
            return None
    out = {_S3_OPTIONS[k]: str(v) for k, v in flat.items() if k in _S3_OPTIONS and v is not None}
    if flat.get("anon"):
        out["aws_skip_signature"] = "true"
    endpoint = out.get("aws_endpoint_url", "")
    if endpoint.startswith("http://"):
        out["aws_allow_http"] = "true"
    if endpoint and "aws_region" not in out:
        out["aws_region"] = "us-east-1"  # S3-compatible servers (MinIO, moto, ...) ignore it
    return out


def _gcs_emulated(options: Mapping[str, Any]) -> bool:
    endpoint = str(options.get("endpoint_url") or os.environ.get("STORAGE_EMULATOR_HOST") or "")
    return bool(endpoint) and "googleapis.com" not in endpoint


def _register_option_secrets(options: Mapping[str, Any]) -> None:
    """Remember credential values in ``storage_options`` so no message or metadata shows them.

    s3fs names the access key id just ``key``, which the generic secret-key pattern does not
    catch; here it is secret, as are ``secret``, ``token`` and ``password``. Settings that
    share those keys but are not credentials (gcsfs ``token: anon``) are left out.
    """
    credentials = {
        k: v for k, v in options.items() if not (isinstance(v, str) and v in _NOT_SECRET_OPTIONS)
    }
    register_secrets_in(credentials, secret_keys=("key", "secret", "token", "password"))


def _info_or_none(fs: Any, path: str) -> dict[str, Any] | None:
    try:
        info: dict[str, Any] = fs.info(path)
    except FileNotFoundError:
        return None
    return info


def _is_listing(info: Mapping[str, Any], path: str) -> bool:
    """A directory: an object-store prefix, or an HTML index page an HTTP server made."""
    if info.get("type") == "directory":
        return True
    return info.get("mimetype") == "text/html" and _format_of(path) is None


def _is_data_file(path: str, relative: str, wanted: str | None) -> bool:
    """A file under a listed directory: a known format, not hidden (``.x``, ``_SUCCESS``)."""
    fmt = _format_of(path)
    if fmt is None or (wanted is not None and _CANONICAL.get(fmt, fmt) != wanted):
        return False
    return not any(part.startswith((".", "_")) for part in relative.strip("/").split("/"))


def _remote_stamp(info: Mapping[str, Any]) -> list[Any]:
    """What tells a changed object: its modification time, size and version tag."""
    modified = next(
        (
            info[k]
            for k in ("LastModified", "mtime", "updated", "Last-Modified", "created")
            if info.get(k)
        ),
        None,
    )
    version = next(
        (info[k] for k in ("ETag", "etag", "generation", "md5Hash") if info.get(k)), None
    )
    return [str(modified), info.get("size"), str(version)]


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status of an aiohttp / gcsfs / botocore error, when it carries one."""
    for attr in ("status", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(status, int):
            return status
    return None


def _named(exc: BaseException, names: tuple[str, ...]) -> bool:
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError) or _named(
        exc,
        (
            "EndpointConnectionError",
            "ConnectionClosedError",
            "ClientConnectionError",
            "ClientConnectorError",
            "ServerDisconnectedError",
        ),
    ):
        return True
    text = str(exc)
    return any(
        marker in text
        for marker in ("error sending request", "Connection refused", "tcp connect error")
    )


def _url_in(text: str) -> str | None:
    """The URL polars' object store names in an error (``... (path: s3://bucket/key)``)."""
    match = _URL_IN_TEXT.search(text)
    return match.group(1) if match else None


def _format_of(file: str) -> str | None:
    suffixes = [s.lower() for s in Path(file.split("?")[0]).suffixes]
    if suffixes and suffixes[-1] in _COMPRESSIONS:
        suffixes = suffixes[:-1]
    return _EXTENSIONS.get(suffixes[-1]) if suffixes else None


def _shown(files: list[str]) -> str:
    if len(files) == 1:
        return repr(files[0])
    return f"{len(files)} files ({files[0]!r}, ...)"
