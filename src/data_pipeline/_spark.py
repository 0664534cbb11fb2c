"""``engine: spark``: what the executors do, and the guard rails around the driver.

With ``engine: spark`` a pipeline hands Spark the work itself, not the data:

* **sources**: :class:`~data_pipeline.ingestion.FileSystemSource` becomes ``spark.read``
  (:func:`read_files`) and :class:`~data_pipeline.ingestion.DatabaseSource` becomes a JDBC read
  (:func:`read_jdbc`), partitioned, with the incremental predicate pushed down to the database;
  what they cannot express goes the single-machine way (read on the driver, sent as Arrow),
  and the run log says why;
* **storage**: :class:`~data_pipeline.storage.FileSystemStorage` (Parquet, local or shared paths)
  writes ``df.write`` into a new version directory and switches the dataset to it
  (:func:`write_parquet_version`); :class:`~data_pipeline.storage.RelationalDBStorage`
  (PostgreSQL, MySQL/MariaDB) writes ``df.write.jdbc`` into a staging table that the driver
  merges into the target in one transaction (:func:`write_jdbc`); a Delta
  :class:`~data_pipeline.storage.DataWarehouseStorage` has every partition write its Parquet
  files and commits them all in one Delta commit (:func:`write_delta_files`);
* **guard rails**: moving a driver-side frame into Spark and collecting a Spark frame to the
  driver are checked against ``spark.max_driver_bytes`` (:func:`check_driver_size`); Java
  out-of-memory errors and Py4J / Spark Connect failures become our errors with a hint
  (:func:`translate`).

Nothing here imports pyspark at module import time.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from data_pipeline.core.engines import spark_from_arrow, to_polars
from data_pipeline.core.errors import (
    ConfigError,
    DataPipelineError,
    UnsupportedOperationError,
)
from data_pipeline.core.spark_names import spark_col

if TYPE_CHECKING:
    from data_pipeline.ingestion.database import DatabaseSource
    from data_pipeline.ingestion.filesystem import FileSystemSource
    from data_pipeline.storage.base import StoreResult
    from data_pipeline.storage.relational import RelationalDBStorage

logger = logging.getLogger("data_pipeline.spark")

__all__ = [
    "check_driver_size",
    "hadoop_options",
    "read_files",
    "read_jdbc",
    "spark_path",
    "translate",
    "write_jdbc",
    "write_parquet_files",
]

#: default of ``spark.max_driver_bytes``: larger frames moved between the driver and Spark warn
DEFAULT_MAX_DRIVER_BYTES = 256 * 1024 * 1024


# -- paths and Hadoop settings -----------------------------------------------------------------

_SPARK_SCHEMES = ("file", "hdfs", "s3a", "abfs", "abfss", "gs", "wasb", "wasbs")


def spark_path(path: str) -> str | None:
    """``path`` as Spark's file systems name it (``s3://`` -> ``s3a://``, a local path made
    absolute), or None for a scheme Spark has no file system for (``http://``, ``memory://``)."""
    if "://" not in path:
        return "file://" + os.path.abspath(os.path.expanduser(path))
    scheme, rest = path.split("://", 1)
    scheme = scheme.lower()
    if scheme in ("s3", "s3n"):
        return "s3a://" + rest
    if scheme == "gcs":
        return "gs://" + rest
    return path if scheme in _SPARK_SCHEMES else None


_S3A = {  # s3fs storage option -> Hadoop S3A setting
    "key": "fs.s3a.access.key",
    "secret": "fs.s3a.secret.key",
    "token": "fs.s3a.session.token",
    "endpoint_url": "fs.s3a.endpoint",
    "region_name": "fs.s3a.endpoint.region",
}

#: gcsfs ``storage_options`` -> the GCS connector's settings
_GS = {"endpoint_url": "fs.gs.storage.root.url", "project": "fs.gs.project.id"}


def _is_key_file(value: Any) -> bool:
    """``value`` is the path of a file ending .json (a service account key; never read here)."""
    return (
        isinstance(value, (str, os.PathLike))
        and str(value).endswith(".json")
        and (os.path.isfile(value))
    )


def hadoop_options(url: str, storage_options: Mapping[str, Any]) -> dict[str, str]:
    """fsspec ``storage_options`` of ``url`` as Hadoop settings, passed as read options (Spark
    hands a file source's options to its Hadoop configuration).

    s3 (``key``, ``secret``, ``token``, ``endpoint_url``, ``region_name``, also under
    ``client_kwargs``, and ``anon``) -> ``fs.s3a.*``; an endpoint turns on path-style access (as
    MinIO and other S3 servers need). Keys that are already Hadoop settings (``fs.*``) pass as
    they are. gs/gcs (gcsfs's ``endpoint_url``, ``project``, ``token``: ``"anon"`` or the path of
    a service account JSON key file) -> ``fs.gs.*``. Anything else is a ConfigError naming the
    key.

    >>> sorted(hadoop_options("s3://b/k", {"key": "K", "endpoint_url": "http://127.0.0.1:9000"}).items())
    [('fs.s3a.access.key', 'K'), ('fs.s3a.endpoint', 'http://127.0.0.1:9000'), ('fs.s3a.path.style.access', 'true')]
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else "file"
    out: dict[str, str] = {}
    flat = dict(storage_options)
    flat.update(flat.pop("client_kwargs", None) or {})
    for key, value in flat.items():
        if key.startswith("fs."):
            out[key] = str(value)
        elif scheme in ("s3", "s3a", "s3n") and key in _S3A:
            out[_S3A[key]] = str(value)
        elif scheme in ("s3", "s3a", "s3n") and key == "anon":
            if value:
                out["fs.s3a.aws.credentials.provider"] = (
                    "org.apache.hadoop.fs.s3a.AnonymousAWSCredentialsProvider"
                )
        elif scheme in ("gs", "gcs") and key in _GS:
            out[_GS[key]] = str(value)
        elif scheme in ("gs", "gcs") and key == "token" and value == "anon":
            out["fs.gs.auth.null.enable"] = "true"
            out["fs.gs.auth.service.account.enable"] = "false"
        elif scheme in ("gs", "gcs") and key == "token" and _is_key_file(value):
            out["fs.gs.auth.service.account.json.keyfile"] = str(value)
        else:
            raise ConfigError(
                f"storage option {key!r} has no Spark (Hadoop) equivalent for {scheme}:// here",
                component="engine: spark",
                hint="give the Hadoop setting itself (a key starting with 'fs.'), "
                "or set it in spark.conf as spark.hadoop.<key>",
            )
    if "fs.s3a.endpoint" in out:
        out.setdefault("fs.s3a.path.style.access", "true")
    return out


# -- guard rails -------------------------------------------------------------------------------


def check_driver_size(
    nbytes: int | None,
    what: str,
    *,
    limit: int | None,
    refuse: bool,
    setting: str,
) -> None:
    """Warn (or, with ``refuse``, raise) when ``nbytes`` moving through the driver exceed
    ``limit`` (None: no limit). ``what`` says which data and which way; ``setting`` the knob."""
    if limit is None or nbytes is None or nbytes <= limit:
        return
    text = f"{what}: about {_mb(nbytes)} pass through the Spark driver (limit {_mb(limit)})"
    hint = (
        f"let the executors do it ({setting}), or raise spark.max_driver_bytes "
        "(and spark.driver.memory)"
    )
    if refuse:
        raise UnsupportedOperationError(text, component="engine: spark", hint=hint)
    logger.warning("%s; %s", text, hint)


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1_048_576:.0f} MB"


def plan_bytes(frame: Any) -> int | None:
    """Spark's estimate of the size of ``frame`` (the optimized plan's statistics), or None
    where it is not known (Spark Connect, or an estimate Spark itself calls unknown)."""
    try:
        stats = frame._jdf.queryExecution().optimizedPlan().stats()
        # a java.math.BigInteger, which Py4J hands over as a Python int (so no .toString())
        size = int(str(stats.sizeInBytes()))
    except Exception:  # Spark Connect has no _jdf; a plan without statistics
        return None
    return size if 0 < size < 2**62 else None


_OOM = re.compile(r"OutOfMemoryError|Java heap space|GC overhead limit|Container killed.*memory")


def translate(exc: BaseException, what: str, *, component: str | None = None) -> BaseException:
    """A Spark failure as our error: Java out-of-memory with what was running and which setting
    to raise; other Py4J / Spark / Spark Connect errors with the failure's own line (the Java
    exception under Py4J's "An error occurred while calling o68.load", the last line of a Python
    worker's traceback) and, for S3A and class-path failures, a hint. Registered secret values
    are masked in the text. Our own errors and anything not from Spark come back unchanged."""
    if isinstance(exc, DataPipelineError):
        return exc
    kind = type(exc).__module__ + "." + type(exc).__name__
    if not (kind.startswith(("py4j", "pyspark")) or "grpc" in kind.lower()):
        return exc
    from data_pipeline.core.secrets import redact_text

    text = str(exc)
    first = redact_text(_first_line(text) or type(exc).__name__)
    if _OOM.search(text):
        return DataPipelineError(
            f"{what}: Spark ran out of memory ({first[:300]})",
            component=component or "engine: spark",
            hint="raise spark.driver.memory (collecting or building frames on the driver) or "
            "spark.executor.memory (reading, shuffles), or more spark.sql.shuffle.partitions; "
            "keep data that does not fit on the driver on the executors (file and JDBC sources, "
            "Parquet and JDBC storage)",
        )
    hint = next((h for pattern, h in _HINTS if pattern.search(text)), None)
    return DataPipelineError(
        f"{what}: Spark failed: {first[:500]}",
        component=component or "engine: spark",
        hint=(hint + "; " if hint else "") + "the Spark driver log has the whole trace",
    )


def _first_line(text: str) -> str | None:
    """The line of a Spark error that says what failed."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    first = lines[0].strip()
    if first.startswith("An error occurred while calling") and len(lines) > 1:
        cause = lines[1].strip()
        if cause.startswith(":"):  # Py4J: the Java exception's own toString()
            return cause.lstrip(": ").strip()
    if "Traceback (most recent call last)" in text:  # a Python worker: its exception's line
        tail = text[text.rindex("Traceback (most recent call last)") :].splitlines()
        raised = [line for line in tail[1:] if line.strip() and not line[0].isspace()]
        if raised:
            return f"{first.rstrip(':.')}: {raised[0].strip()}"
    return first


_HINTS = [
    (
        re.compile(
            r"NoAwsCredentials|AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|"
            r"Status Code: 403|ExpiredToken"
        ),
        "S3 refused the credentials: check the storage_options key and secret (Hadoop "
        "fs.s3a.access.key / fs.s3a.secret.key) and fs.s3a.aws.credentials.provider",
    ),
    (
        re.compile(r"S3AFileSystem not found|No FileSystem for scheme \"s3a\""),
        "Spark has no S3A file system: add hadoop-aws and its AWS SDK bundle to spark.jars "
        "(docs/spark.md, S3)",
    ),
    (
        re.compile(r"NumberFormatException: For input string: \"\d+[a-z]+\""),
        "a hadoop-aws older than Spark's Hadoop reads durations as plain numbers: set the "
        "fs.s3a.* settings docs/spark.md lists, or use the hadoop-aws of Spark's Hadoop version",
    ),
    (
        re.compile(r"s3a.*(Connection refused|UnknownHost|Unable to execute HTTP request)"),
        "the S3 endpoint cannot be reached: check storage_options endpoint_url (fs.s3a.endpoint)",
    ),
]


@contextmanager
def translated(what: str, component: str | None = None) -> Iterator[None]:
    """Run a Spark action; its failure raises as :func:`translate` says."""
    try:
        yield
    except Exception as exc:
        error = translate(exc, what, component=component)
        if error is exc:
            raise
        raise error from exc


# -- files: spark.read -------------------------------------------------------------------------

_SPARK_FORMATS = {"csv": "csv", "parquet": "parquet", "jsonl": "json", "json": "json", "orc": "orc"}


def files_unsupported(source: FileSystemSource) -> str | None:
    """Why ``spark.read`` cannot read this source the way the driver would, or None."""
    s = source.settings
    paths = s.path if isinstance(s.path, list) else [s.path]
    if any(spark_path(p) is None for p in paths):
        return "a URL scheme Spark has no file system for"
    if s.format in ("ipc", "arrow", "feather", "excel"):
        return f"format {s.format}"
    if s.on_bad_rows == "reject":
        return "on_bad_rows: reject (rejected rows are written by the driver)"
    if s.data_selector or s.flatten or s.mixed_types == "json" or s.sheet_name:
        return "data_selector / flatten / mixed_types: json"
    if s.encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        return f"encoding {s.encoding}"
    if s.skip_rows or s.comment_prefix or s.compression == "zstd":
        return "skip_rows / comment_prefix / zstd"
    if isinstance(s.null_values, list) and len(s.null_values) > 1:
        return "several null_values"
    return None


def read_files(source: FileSystemSource, session: Any) -> Any:
    """The source as a ``spark.read`` DataFrame: executors open the files.

    The driver lists the files (for ``incremental``, the new and changed ones; for a glob, the
    matches) and, for CSV and JSON Lines, reads the types from the first rows of the first file
    as Polars would, so both engines give the same schema; Spark gets them as ``.schema()``.
    """
    import glob as globlib

    from data_pipeline.ingestion.filesystem import _CANONICAL, _schema_text

    s = source.settings
    paths = s.path if isinstance(s.path, list) else [s.path]
    options: dict[str, str] = {}
    for p in paths:
        options.update(hadoop_options(p, s.storage_options))
    state = None
    seen: dict[str, Any] = {}
    files = source.resolve_files()
    if s.incremental:
        state = source.state_store(s.state_path)
        files, seen = source._changed_files(files, state)
        if not files:
            return None  # nothing new: the driver's empty frame with the known schema
    fmt = source._format_for(files)
    if fmt not in _SPARK_FORMATS:
        return None
    targets: list[str]
    plain = paths[0] if len(paths) == 1 else None
    if (
        plain is not None
        and not s.incremental
        and "://" not in plain
        and not globlib.has_magic(plain)
        and os.path.isdir(plain)
        and s.hive_partitioning is not False
    ):
        targets = [spark_path(plain) or plain]  # a directory: Spark finds its hive partitions
    else:
        targets = [spark_path(f) or f for f in files]
    reader = session.read.options(**options)
    schema = None
    if fmt in ("csv", "jsonl"):
        from pyspark.sql.types import StringType, StructField, StructType

        schema = _first_file_schema(source, files[0], fmt)
        if s.source_file_column:
            schema.pop(s.source_file_column, None)
        # malformed records land in a column of their own; _checked_rows() fails on them or
        # sets them aside (Spark's FAILFAST / DROPMALFORMED judge only the columns a query
        # uses, so their result would depend on the query)
        fields = [*spark_schema(schema).fields, StructField(_BAD, StringType(), True)]
        reader = reader.schema(StructType(fields)).option("mode", "PERMISSIVE")
        reader = reader.option("columnNameOfCorruptRecord", _BAD)
    if fmt == "csv":
        reader = reader.option("header", str(s.has_header).lower()).option("sep", s.delimiter)
        reader = reader.option("quote", s.quote_char if s.quote_char else "\u0000")
        reader = reader.option("escape", s.quote_char or "\\")
        null = s.null_values[0] if isinstance(s.null_values, list) else s.null_values
        if null is not None:
            reader = reader.option("nullValue", null)
        reader = reader.option("dateFormat", "yyyy-MM-dd")
    if fmt == "json":
        # the first file's columns in its own order and types, as the driver reads it (Spark's
        # inference would sort the columns by name)
        first = source._scan(files[:1], fmt).collect_schema()
        if s.source_file_column:
            first.pop(s.source_file_column, None)
        reader = reader.schema(spark_schema(first)).option("multiLine", "true")
    if fmt in ("parquet", "orc") and s.hive_partitioning is False:
        reader = reader.option("recursiveFileLookup", "true")
    with translated(f"reading {len(targets)} {fmt} path(s) with Spark", source.label):
        frame = reader.format(_SPARK_FORMATS[_CANONICAL.get(fmt, fmt)]).load(targets)
    if s.source_file_column:
        from pyspark.sql import functions as F

        path = F.col("_metadata.file_path")
        if all("://" not in f for f in files):  # local files: the path as the driver names it
            path = F.regexp_replace(path, r"^file:(//)?", "")
        else:  # s3:// read as s3a:// (gcs:// as gs://): the scheme the source names
            schemes = {f.split("://", 1)[0] for f in files}
            if len(schemes) == 1:
                named = schemes.pop()
                spark_scheme = (spark_path(files[0]) or files[0]).split("://", 1)[0]
                if spark_scheme != named:
                    path = F.regexp_replace(path, f"^{re.escape(spark_scheme)}://", named + "://")
        frame = frame.withColumn(s.source_file_column, path)
    if schema is not None:
        frame = _checked_rows(source, frame, list(schema), fmt)
    if s.schema_overrides and fmt not in ("csv", "jsonl"):
        from data_pipeline.ingestion._common import parse_dtype

        frame = frame.withColumns(
            {
                c: frame[f"`{c}`"].cast(spark_type(parse_dtype(t)))
                for c, t in s.schema_overrides.items()
            }
        )
    op = source.current_operation
    op.details.update({"files": len(files), "format": fmt, "engine": "spark"})
    if state is not None:
        import polars as pl

        known = schema if schema is not None else pl.from_arrow(frame.limit(0).toArrow()).schema  # type: ignore[union-attr]
        state.save({"files": seen["files"], "schema": _schema_text(known)})
    return frame


def _first_file_schema(source: FileSystemSource, file: str, fmt: str) -> Any:
    """The column types the driver's read gives a CSV / JSON Lines source, from the first rows
    of the first file (``infer_schema_length``). When those rows hold a malformed record and
    ``on_bad_rows`` is not ``error``, from that file's well-formed records (the driver reads
    that one file)."""
    try:
        return source._scan([file], fmt).collect_schema()
    except Exception as exc:
        if source.settings.on_bad_rows == "error":
            error = source._parse_error(exc, [file], fmt)
            if error is None:
                raise
            raise error from exc
    from data_pipeline.ingestion._badrows import _check_file, _check_jsonl

    good, _ = _check_file(source, file) if fmt == "csv" else _check_jsonl(source, file)
    return good.schema


#: the column that holds a CSV / JSON Lines record Spark could not parse
_BAD = "_dp_malformed_record"


def _checked_rows(source: FileSystemSource, frame: Any, columns: list[str], fmt: str) -> Any:
    """``on_bad_rows`` on the executors, judging every column of each record (as the driver's
    read does), whatever columns the pipeline uses later.

    ``error``: one job looks for a malformed record (every column parsed) and raises our
    ParseError naming its file and text; ``skip``: the parsed rows are cached on the executors
    (memory, then disk) so that the judgement is made once over whole records, the rejected ones
    are counted (``rows_rejected``, as the driver's read counts them) and left out.
    """
    from pyspark.sql import functions as F

    from data_pipeline.core.errors import ParseError
    from data_pipeline.core.secrets import redact_url

    bad = F.col(_BAD)
    every = [frame[f"`{c}`"] for c in columns]
    if source.settings.on_bad_rows == "error":
        with translated(f"checking the {fmt} records of {source.label}", source.label):
            found = (
                frame.where(bad.isNotNull())
                .select(bad, F.col("_metadata.file_path").alias("_dp_file"), *every)
                .limit(1)
                .collect()
            )
        if found:
            file = re.sub(r"^file:(//)?", "", str(found[0]["_dp_file"]))
            raise ParseError(
                f"cannot parse {fmt} {redact_url(file)!r}: malformed record "
                f"{str(found[0][_BAD])[:200]!r} (wrong number of fields, a value that is not "
                "of its column's type, or not a JSON object)",
                component=source.label,
                hint="fix the file, or set on_bad_rows: skip (or reject, read on the driver)",
            )
        return frame.drop(_BAD)
    kept = frame.cache()
    with translated(f"counting the malformed {fmt} records of {source.label}", source.label):
        counts = kept.agg(
            F.count_if(bad.isNotNull()).alias("bad"), F.count(every[0]).alias("_any")
        ).collect()[0]
    source.current_operation.rows_rejected = int(counts["bad"])
    return kept.where(bad.isNull()).drop(_BAD)


def spark_schema(schema: Any) -> Any:
    """A polars schema as a Spark StructType (through Arrow)."""
    import polars as pl
    from pyspark.sql.types import StructField, StructType

    empty = pl.DataFrame(schema=schema).to_arrow()
    return StructType([StructField(f.name, _arrow_to_spark(f.type), True) for f in empty.schema])


def spark_type(dtype: Any) -> Any:
    """A polars data type as a Spark one."""
    import polars as pl

    return _arrow_to_spark(pl.Series("x", [], dtype=dtype).to_arrow().type)


def _arrow_to_spark(arrow_type: Any) -> Any:
    import pyarrow as pa
    from pyspark.sql.pandas.types import from_arrow_type

    if pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        arrow_type = pa.string()
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_timestamp(arrow_type) and arrow_type.tz is None:
        from pyspark.sql.types import TimestampNTZType

        return TimestampNTZType()
    return from_arrow_type(arrow_type)


# -- databases: JDBC ----------------------------------------------------------------------------


def jdbc_unsupported(source: DatabaseSource) -> str | None:
    """Why a JDBC read cannot stand in for the driver's read of this source, or None."""
    s = source.settings
    if source.target.dialect not in ("postgresql", "mysql"):
        return f"{source.target.label} (JDBC reads are for PostgreSQL and MySQL/MariaDB)"
    if s.params:
        return "params (Spark's JDBC reader cannot bind parameters; values are never inlined)"
    return None


#: Spark's ``spark.sql.redaction.string.regex`` piece that masks a secret option in the text of
#: a plan: ``key: "password" value: "..."`` (the protobuf text of a Spark Connect plan, which the
#: Connect server writes into the event log as the operation's ``statementText``; Spark's key
#: based ``spark.redaction.regex`` does not reach that text)
PLAN_SECRET_REGEX = (
    r'(?i:key: "[^"]*(?:password|passwd|pwd|secret|token|credential)[^"]*"\s*'
    r'value: "(?:[^"\\]|\\.)*")'
)
_STRING_REDACTION = "spark.sql.redaction.string.regex"


def redact_secret_options(session: Any) -> None:
    """Make ``session`` mask secret options (a JDBC ``password``) in the plan text it logs.

    Over Spark Connect the options of a read or a write travel in the plan, and the server
    writes the plan's text into its event log (``SparkListenerConnectOperationStarted``) with
    only ``spark.sql.redaction.string.regex`` applied, which is unset by default. This adds
    :data:`PLAN_SECRET_REGEX` to that setting (beside any pattern already set), once per session.
    """
    try:
        current = session.conf.get(_STRING_REDACTION, None)
    except Exception:  # a session whose settings cannot be read: set ours alone
        current = None
    if current and PLAN_SECRET_REGEX in current:
        return
    value = f"(?:{current})|{PLAN_SECRET_REGEX}" if current else PLAN_SECRET_REGEX
    try:
        session.conf.set(_STRING_REDACTION, value)
    except Exception as exc:  # a managed session may refuse the setting: say so, carry on
        logger.warning(
            "spark: could not set %s (%s); over Spark Connect the server may log the JDBC "
            "password in the plan text of its event log",
            _STRING_REDACTION,
            type(exc).__name__,
        )


def spark_jdbc(target: Any) -> tuple[str, dict[str, str]]:
    """The JDBC URL and properties of a SQL target, for Spark. A MariaDB URL is given with the
    ``jdbc:mysql:`` scheme (and ``permitMysqlScheme`` for Connector/J 3): Spark picks its MySQL
    dialect, which quotes names with backticks, by that scheme only; the driver stays MariaDB's."""
    url, props = target.jdbc()
    props = {k: str(v) for k, v in props.items() if v is not None}
    if url.startswith("jdbc:mariadb:"):
        url = "jdbc:mysql:" + url[len("jdbc:mariadb:") :]
        url += ("&" if "?" in url else "?") + "permitMysqlScheme"
    return url, props


def _base_sql(source: DatabaseSource) -> str:
    """The source's query without the incremental condition (Spark adds it as a filter)."""
    s = source.settings
    if s.query:
        return s.query.strip().rstrip(";").rstrip()
    quote = source.dialect.quote
    cols = ", ".join(quote(c) for c in s.columns) if s.columns else "*"
    assert s.table is not None
    table = source.dialect.qualified(s.table, s.schema_name)
    sql = f"SELECT {cols} FROM {table}"  # noqa: S608 - identifiers quoted
    return sql + (f" WHERE ({s.where})" if s.where else "")


def read_jdbc(source: DatabaseSource, session: Any) -> Any:
    """The source as a Spark JDBC read: executors query the database, in ``num_partitions``
    ranges of ``partition_column`` when one is given.

    Incremental: the cursor (:class:`~data_pipeline.core.cursor.IncrementalCursor`) gives the
    lower end; the driver asks the database once for the cursor's current maximum, and the read
    takes ``lower < cursor <= maximum`` as a filter Spark pushes down into each partition's
    query. The state advances to that maximum, so rows committed during the read are read by the
    next run, never twice. Bounds of ``partition_column`` not given come from one
    ``SELECT MIN, MAX`` query over the same rows.
    """
    from data_pipeline.core.sql import read_arrow
    from data_pipeline.core.sql_errors import INGESTION

    s = source.settings
    spec = s.spark
    url, props = spark_jdbc(source.target)
    sql = _base_sql(source)
    quote = source.dialect.quote
    conditions: list[str] = []
    params: dict[str, Any] = {}
    tracker = source.incremental_cursor()
    low = high = None
    inclusive = False
    late = None  # with primary_key: the lookback window's rows not delivered yet (driver-read)
    if tracker is not None:
        assert s.incremental is not None
        column = quote(s.incremental.cursor_column)
        low, inclusive = tracker.start()
        if tracker.keys and tracker.last is not None:
            late = _late_rows(source, sql, column, low, tracker)
            low, inclusive = tracker.last, False  # the executors read above the last value
        if low is not None:
            conditions.append(f"{column} {'>=' if inclusive else '>'} :_dp_low")
            params["_dp_low"] = low
    bounds = (
        [f"MAX({quote(s.incremental.cursor_column)}) AS _dp_high"]
        if tracker is not None and s.incremental is not None
        else []
    )
    part = spec.partition_column if spec is not None else None
    if part and (spec is not None and (spec.lower_bound is None or spec.upper_bound is None)):
        bounds += [f"MIN({quote(part)}) AS _dp_min", f"MAX({quote(part)}) AS _dp_max"]
    found: dict[str, Any] = {}
    if bounds:  # one query on the driver, parameters bound
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        probe = f"SELECT {', '.join(bounds)} FROM ({sql}) AS _dp_src{where}"  # noqa: S608
        table = read_arrow(
            source.target, probe, params, path="auto", classes=INGESTION, component=source.label
        )
        found = table.to_pylist()[0]  # type: ignore[union-attr]
    options: dict[str, str] = {"url": url, "dbtable": f"({sql}) _dp_src", **props}
    # timestamps without a zone (PostgreSQL timestamp, MySQL DATETIME) stay naive, as the
    # driver's read gives them
    options.setdefault("preferTimestampNTZ", "true")
    if spec is not None and spec.fetchsize:
        options["fetchsize"] = str(spec.fetchsize)
    if part and spec is not None:
        lower = spec.lower_bound if spec.lower_bound is not None else found.get("_dp_min")
        upper = spec.upper_bound if spec.upper_bound is not None else found.get("_dp_max")
        if lower is not None and upper is not None:
            options.update(
                partitionColumn=part,
                lowerBound=str(lower),
                upperBound=str(upper),
                numPartitions=str(spec.num_partitions),
            )
    redact_secret_options(session)
    frame = session.read.format("jdbc").options(**options).load()
    op = source.current_operation
    op.details.update({"engine": "spark-jdbc", "target": source.where()})
    if part and "partitionColumn" in options:
        op.details["partitions"] = int(options["numPartitions"])
    if tracker is not None and s.incremental is not None:
        high = found.get("_dp_high")
        col = frame[f"`{s.incremental.cursor_column}`"]
        if high is None:  # no row above the last value
            frame = frame.limit(0)
        else:
            if low is not None:
                frame = frame.filter(col >= _lit(low) if inclusive else col > _lit(low))
            frame = frame.filter(col <= _lit(high))
        if late is not None and late.height:
            extra = spark_from_arrow(session, late.to_arrow())
            frame = frame.unionByName(extra.select(*[spark_col(c) for c in frame.columns]))
            op.details["late_rows"] = late.height
        recent = None
        if tracker.keys:  # the keys of the rows in the new lookback window, collected small
            top = high if high is not None else tracker.last
            if top is not None:
                from data_pipeline.core.cursor import minus

                edge = minus(top, s.incremental.lookback)
                recent = to_polars(  # the one conversion: UTC labels as everywhere
                    frame.filter(col >= _lit(edge)).select(
                        *[spark_col(c) for c in dict.fromkeys([*tracker.keys, tracker.cursor])]
                    )
                )
        tracker.advance(high, recent)
        if tracker.dropped:
            op.details["duplicates_dropped"] = tracker.dropped
        op.details["cursor"] = str(tracker.last)
    return frame


def _late_rows(source: DatabaseSource, sql: str, column: str, low: Any, tracker: Any) -> Any:
    """The rows of the lookback window (``low <= cursor <= last``) that were not delivered
    before, read on the driver (a window is small) and checked against the delivered keys."""
    import polars as pl

    from data_pipeline.core.sql import read_arrow
    from data_pipeline.core.sql_errors import INGESTION

    window = (
        f"SELECT * FROM ({sql}) AS _dp_src WHERE {column} >= :_dp_low AND {column} <= :_dp_last"  # noqa: S608
    )
    table = read_arrow(
        source.target,
        window,
        {"_dp_low": low, "_dp_last": tracker.last},
        path="auto",
        classes=INGESTION,
        component=source.label,
    )
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    if tracker.delivered is not None and len(tracker.delivered) and frame.height:
        frame, dropped = tracker.delivered.drop_delivered(frame)
        tracker.dropped += dropped
    return frame


def _lit(value: Any) -> Any:
    """A Spark literal of a cursor value; a naive datetime stays naive (``TIMESTAMP_NTZ``)."""
    from datetime import datetime

    from pyspark.sql import functions as F

    if isinstance(value, datetime) and value.tzinfo is None:
        return F.lit(value.isoformat(sep=" ")).cast("timestamp_ntz")
    return F.lit(value)


def write_jdbc(
    storage: RelationalDBStorage,
    frame: Any,
    table: str,
    if_exists: str,
    key: list[str] | None = None,
    *,
    not_null: set[str] | None = None,
) -> StoreResult:
    """``df.write.jdbc`` from the executors into a staging table, then one transaction on the
    driver moves the rows into ``table`` (append, replace, upsert keep their guarantees: a
    failed or killed write leaves the target as it was). ``not_null`` columns are ``NOT NULL``
    in the staging table, so in a table it creates or replaces."""
    url, props = spark_jdbc(storage.target)
    redact_secret_options(frame.sparkSession)
    schema = spark_to_polars_schema(frame)
    with storage.staging_table(table, schema, primary_key=key, not_null=not_null) as stage:
        with translated(f"writing {table!r} through JDBC", storage.label):
            frame.select(*[spark_col(c) for c in schema]).write.jdbc(
                url, storage._backend.qualified(stage), mode="append", properties=props
            )
        result = storage.merge_staging(stage, table, if_exists=if_exists, primary_key=key)
    result.details["engine"] = "spark-jdbc"
    return result


def arrow_schema(frame: Any) -> Any:
    """The Arrow schema of a Spark frame's rows (timestamps labelled with the session's zone,
    as Spark's own Arrow batches are)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    zone = frame.sparkSession.conf.get("spark.sql.session.timeZone")
    return to_arrow_schema(frame.schema, timezone=zone)


def spark_to_polars_schema(frame: Any) -> Any:
    """A Spark frame's schema as a polars schema (through Arrow; UTC labels as everywhere)."""
    return to_polars(arrow_schema(frame).empty_table()).schema


# -- files: df.write ----------------------------------------------------------------------------

_CODECS = {"uncompressed": "none", "lz4": "lz4_raw"}


def write_parquet_files(
    frame: Any,
    url: str,
    *,
    compression: str,
    partition_by: Any,
    options: Mapping[str, str] | None = None,
    component: str | None = None,
) -> None:
    """``df.write.parquet`` of ``frame`` into ``url`` (a local path or a URL Spark has a file
    system for, ``s3://`` written as ``s3a://``; it must not exist), from the executors.
    ``options`` (:func:`hadoop_options`) reach the Hadoop file system of this write."""
    # "error", not "errorifexists": Spark Connect knows only the short name
    writer = frame.write.mode("error").option("compression", _CODECS.get(compression, compression))
    if options:
        writer = writer.options(**options)
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    with translated(f"writing Parquet to {_no_credentials(url)!r}", component):
        writer.parquet(spark_path(url) or url)


def _no_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part."""
    return re.sub(r"(://)[^/@]*@", r"\1", url)


def write_parquet_version(
    frame: Any, directory: str, *, compression: str, partition_by: Any
) -> int:
    """``df.write.parquet`` into ``directory`` (which must not exist), from the executors; returns
    the rows written, read from the written files' footers (nothing is collected)."""
    import pyarrow.parquet as pq

    write_parquet_files(frame, directory, compression=compression, partition_by=partition_by)
    rows = 0
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            if name.startswith(("_", ".")):  # _SUCCESS, .crc checksums: not data
                os.remove(path)
            elif name.endswith(".parquet"):
                rows += pq.ParquetFile(path).metadata.num_rows
    return rows


@contextmanager
def _arrow_udf() -> Iterator[None]:
    """Around ``mapInArrow``: PySpark checks pandas' version (and warns about pandas 3) though
    an Arrow function uses no pandas."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas")
        yield


# -- documents: each partition writes its own ---------------------------------------------------


def check_unique_key_spark(frame: Any, key: list[str], target: str, component: str | None) -> None:
    """As storage._common.check_unique_key, counted by Spark (one small job, one row back)."""
    from pyspark.sql import functions as F

    from data_pipeline.storage._common import duplicate_key_error

    with translated(f"checking the key of {target!r}", component):
        dup = (
            frame.groupBy(*[spark_col(k) for k in key])
            .agg(F.count(F.lit(1)).alias("__dp_n"))
            .filter(F.col("__dp_n") > 1)
            .limit(1)
            .collect()
        )
    if dup:
        row = dup[0].asDict()
        count = row.pop("__dp_n")
        raise duplicate_key_error(row, count, repr(target), component)


def write_documents(
    frame: Any, settings: Any, database: str, stage: str, key: list[str] | None, *, upsert: bool
) -> int:
    """Every partition of ``frame`` writes its rows as documents into the MongoDB collection
    ``stage`` from the executor running it (``mapInArrow``, which Spark Connect runs too);
    returns the rows written, summed from what the tasks report (nothing else is collected).

    Inserted documents get the id ``<stage>:<partition>:<row>``; a document replaces the one of the same
    id (upsert: of the same key), so a task that Spark retries rewrites what its failed attempt
    wrote instead of adding it again."""
    from pyspark.sql import functions as F

    def write(batches: Iterator[Any]) -> Iterator[Any]:
        return _write_partition(batches, settings, database, stage, key, upsert)

    with translated(f"writing documents into {stage!r}"), _arrow_udf():
        done = frame.mapInArrow(write, "rows long").agg(F.sum("rows").alias("rows")).collect()
    return int(done[0]["rows"] or 0)


def _write_partition(
    batches: Iterator[Any],
    settings: Any,
    database: str,
    stage: str,
    key: list[str] | None,
    upsert: bool,
) -> Iterator[Any]:
    """On an executor: the partition's Arrow batches as documents (storage._values.documents,
    the conversion every document load uses) into ``stage``; yields one row: how many."""
    import polars as pl
    import pyarrow as pa
    from pyspark import TaskContext

    from data_pipeline.storage._values import documents
    from data_pipeline.storage.nosql import mongo_client, replace_documents

    part = TaskContext.get().partitionId()  # type: ignore[union-attr]
    client = mongo_client(settings)
    written = 0
    try:
        collection = client[database][stage]
        for batch in batches:
            frame = pl.from_arrow(pa.Table.from_batches([batch]))
            assert isinstance(frame, pl.DataFrame)
            docs = documents(frame)
            if not (upsert and key):
                for n, doc in enumerate(docs, start=written):
                    doc["_id"] = f"{stage}:{part}:{n}"  # unique to this load
            match = key if upsert and key else ["_id"]
            replace_documents(collection, docs, match, settings.batch_size)
            written += len(docs)
    finally:
        client.close()
    yield pa.RecordBatch.from_pydict({"rows": [written]}, schema=pa.schema([("rows", pa.int64())]))


# -- to the driver a partition at a time ----------------------------------------------------------


def arrow_stream(frame: Any) -> Any:
    """The rows of a Spark frame as a ``pyarrow.RecordBatchReader`` that brings one partition at
    a time to this process (``toLocalIterator``): each partition's Arrow batches travel as Arrow
    IPC blobs, one Python object per batch, never per row. A consumer that writes as it reads
    (DuckDB) holds one partition, not the frame."""
    import pyarrow as pa

    schema = arrow_schema(frame)

    def encode(batches: Iterator[Any]) -> Iterator[Any]:
        for batch in batches:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, batch.schema) as writer:
                writer.write_batch(batch)
            yield pa.RecordBatch.from_pydict({"ipc": [sink.getvalue().to_pybytes()]})

    def batches() -> Iterator[Any]:
        with translated("bringing the Spark frame to the driver"), _arrow_udf():
            rows = frame.mapInArrow(encode, "ipc binary").toLocalIterator(prefetchPartitions=False)
            for row in rows:
                for batch in pa.ipc.open_stream(row["ipc"]):
                    yield batch if batch.schema == schema else batch.cast(schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


# -- Delta Lake: the partitions write the files, the driver commits them once --------------------

#: the rows every partition of a Delta write reports (one per file, and one with its row count)
DELTA_FILES_SCHEMA = (
    "path string, size long, partition_values string, modification_time long, stats string, "
    "records long, rows long"
)


def write_delta_files(
    frame: Any,
    uri: str,
    schema: Any,
    partition_by: list[str],
    *,
    load: str,
    storage_options: dict[str, str] | None,
) -> tuple[list[dict[str, Any]], int]:
    """Every partition of ``frame`` writes its rows as Parquet files inside the Delta table
    ``uri`` from the executor running it (``mapInArrow``); nothing is committed. Returns the
    files' add actions (paths relative to the table, sizes, partition values, statistics) and
    the rows the tasks report having written; only these small rows come to the driver.

    Each task writes with deltalake itself (so files, types and statistics are those of
    ``write_deltalake``): into a table of its own under ``<uri>/<load>/``, whose log it reads
    and removes; the driver then commits every file in one Delta transaction. ``schema`` is the
    Arrow schema of the files (the columns of the table, in its order and types: each batch is
    cast to it, a column it lacks is null). A failed task leaves files no commit names."""

    def write(batches: Iterator[Any]) -> Iterator[Any]:
        return _write_delta_partition(
            batches, uri, schema, partition_by, load=load, storage_options=storage_options
        )

    with translated(f"writing Delta files into {uri!r}"), _arrow_udf():
        done = frame.mapInArrow(write, DELTA_FILES_SCHEMA).collect()
    files = [row.asDict() for row in done if row["path"] is not None]
    rows = sum(int(row["rows"]) for row in done if row["path"] is None)
    written = sum(int(f["records"]) for f in files)
    if written != rows:  # the files' statistics must hold exactly the rows the tasks wrote
        raise DataPipelineError(
            f"writing Delta files into {uri!r}: the tasks wrote {rows} rows, the files' "
            f"statistics count {written}; nothing was committed",
            component="engine: spark",
            hint="a bug: please report it with the Spark log",
        )
    return files, rows


def _write_delta_partition(
    batches: Iterator[Any],
    uri: str,
    schema: Any,
    partition_by: list[str],
    *,
    load: str,
    storage_options: dict[str, str] | None,
) -> Iterator[Any]:
    """On an executor: the partition's batches, cast to ``schema``, written by deltalake into
    the task's own table ``<uri>/<load>/part-<partition>-<attempt>-<id>``; yields one row per
    file (its add action, the path relative to ``uri``) and one with the rows written."""
    import json
    import shutil
    import uuid
    from urllib.parse import unquote

    import deltalake
    import pyarrow as pa
    from pyspark import TaskContext

    context = TaskContext.get()
    assert context is not None
    task = f"part-{context.partitionId():05d}-{context.attemptNumber()}-{uuid.uuid4().hex[:8]}"
    relative = f"{load}/{task}"
    counted = [0]

    def conform(batch: Any) -> Any:
        columns = []
        for field in schema:
            if field.name in batch.schema.names:
                columns.append(batch.column(field.name).cast(field.type))
            else:
                columns.append(pa.nulls(batch.num_rows, field.type))
        counted[0] += batch.num_rows
        return pa.RecordBatch.from_arrays(columns, schema=schema)

    source = iter(batches)
    first = next(source, None)
    out = pa.schema(
        [
            ("path", pa.string()),
            ("size", pa.int64()),
            ("partition_values", pa.string()),
            ("modification_time", pa.int64()),
            ("stats", pa.string()),
            ("records", pa.int64()),
            ("rows", pa.int64()),
        ]
    )
    if first is not None:

        def conformed() -> Iterator[Any]:
            yield conform(first)
            for batch in source:
                yield conform(batch)

        stage = f"{uri.rstrip('/')}/{relative}"
        deltalake.write_deltalake(
            stage,
            pa.RecordBatchReader.from_batches(schema, conformed()),
            mode="error",
            partition_by=partition_by or None,
            storage_options=storage_options,
        )
        log = os.path.join(_local_path(stage), "_delta_log")
        adds: list[dict[str, Any]] = []
        for name in sorted(os.listdir(log)):
            if name.endswith(".json"):
                with open(os.path.join(log, name), encoding="utf-8") as handle:
                    actions = [json.loads(line) for line in handle if line.strip()]
                adds += [action["add"] for action in actions if "add" in action]
        shutil.rmtree(log)  # the task's table is gone; its files wait for the driver's commit
        for add in adds:
            stats = add.get("stats") or "{}"
            yield pa.RecordBatch.from_pylist(
                [
                    {
                        "path": f"{relative}/{unquote(add['path'])}",
                        "size": int(add["size"]),
                        "partition_values": json.dumps(add.get("partitionValues") or {}),
                        "modification_time": int(add["modificationTime"]),
                        "stats": stats,
                        "records": int(json.loads(stats).get("numRecords", -1)),
                        "rows": None,
                    }
                ],
                schema=out,
            )
    yield pa.RecordBatch.from_pylist([dict.fromkeys(out.names) | {"rows": counted[0]}], schema=out)


def _local_path(uri: str) -> str:
    """A local path or ``file://`` URL as a path of this machine."""
    return uri[len("file://") :] if uri.startswith("file://") else uri


def delta_arrow_schema(schema: Any) -> Any:
    """An Arrow schema as Delta Lake holds it (what ``write_deltalake`` converts to):
    timestamps in microseconds, zoned ones labelled UTC, naive ones naive; nested types
    converted inside."""
    import pyarrow as pa

    def convert(dtype: Any) -> Any:
        if pa.types.is_timestamp(dtype):
            return pa.timestamp("us", tz="UTC" if dtype.tz is not None else None)
        if pa.types.is_struct(dtype):
            return pa.struct([f.with_type(convert(f.type)) for f in dtype])
        if pa.types.is_large_list(dtype) or pa.types.is_list(dtype):
            return pa.list_(dtype.value_field.with_type(convert(dtype.value_type)))
        if pa.types.is_map(dtype):
            return pa.map_(convert(dtype.key_type), convert(dtype.item_type))
        if pa.types.is_large_string(dtype):
            return pa.string()
        if pa.types.is_large_binary(dtype):
            return pa.binary()
        return dtype

    return pa.schema([f.with_type(convert(f.type)) for f in schema])
