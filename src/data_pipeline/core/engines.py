"""Engines: what engine a frame is, and moving a frame from one engine to another.

The one place that knows the engines. Every other module asks :func:`engine_of` what a frame is
and converts with :func:`to_engine` (or :func:`to_arrow`, :func:`to_polars`, :func:`to_pandas`,
:func:`match_engine`); nothing else inspects ``frame.implementation`` or calls ``from_arrow``.

Engine names: ``pandas``, ``polars``, ``polars-lazy``, ``pyarrow``, ``duckdb``, ``pyspark``
(classic and Spark Connect DataFrames alike). :func:`to_engine` also takes the names pipeline
files and ``output:`` use: ``lazy``, ``arrow``, ``spark``.

Conversions go through Arrow (zero-copy where the engines allow) and keep one rule each:

* a pandas index is never a column: ``pyarrow.Table.from_pandas(..., preserve_index=False)``,
  so a filtered pandas frame does not grow an ``__index_level_0__`` column on its way to
  DuckDB, Parquet or a database (``reset_index()`` first to keep an index as a column);
* DuckDB and Spark (unless ``spark.sql.caseSensitive`` is on) treat ``a`` and ``A`` as one
  column: DuckDB would rename the second to ``A_1``. A frame whose column names differ only by
  case is refused on its way into those engines, naming the columns, never renamed;
* Spark gets naive timestamps as ``TIMESTAMP_NTZ`` (it would zone them) and no dictionary
  (categorical) columns (it reads none: they are decoded to their values).

Example:
    >>> import polars as pl
    >>> frame = pl.DataFrame({"id": [1, 2]})
    >>> engine_of(frame), engine_of(frame.lazy()), engine_of(to_engine(frame, "arrow"))
    ('polars', 'polars-lazy', 'pyarrow')
    >>> to_polars(to_engine(frame, "pandas")).equals(frame)
    True
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import narwhals as nw

from data_pipeline.core.errors import ConfigError, InputTypeError, UnsupportedOperationError

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
    import pyarrow as pa

__all__ = [
    "ENGINES",
    "OUTPUTS",
    "UTC_ALIASES",
    "case_collisions",
    "check_column_case",
    "check_spark_dotted_names",
    "convert_output",
    "duckdb_connection",
    "duckdb_scratch",
    "engine_of",
    "is_case_insensitive",
    "is_spark",
    "match_engine",
    "normalize_engine",
    "pandas_nullable",
    "spark_from_arrow",
    "to_arrow",
    "to_engine",
    "to_narwhals",
    "to_pandas",
    "to_polars",
]

#: The engines every transformer and processor runs on.
ENGINES: tuple[str, ...] = ("pandas", "polars", "polars-lazy", "pyarrow", "duckdb", "pyspark")
#: What ``output:`` of a source, a storage read or a BatchProcessor may ask for.
OUTPUTS: tuple[str, ...] = ("polars", "lazy", "pandas", "arrow", "native")

_ALIASES = {
    "lazy": "polars-lazy",
    "polars_lazy": "polars-lazy",
    "arrow": "pyarrow",
    "spark": "pyspark",
    "pyspark_connect": "pyspark",
}

AnyFrame = Any  # a native frame (polars, pandas, pyarrow, duckdb, pyspark) or a Narwhals frame


def to_narwhals(data: AnyFrame, *, component: str | None = None) -> Any:
    """Wrap a native frame (or pass a Narwhals frame through)."""
    if isinstance(data, (nw.DataFrame, nw.LazyFrame)):
        return data
    try:
        return nw.from_native(data)
    except TypeError:
        raise InputTypeError(
            f"expected a data frame (pandas, Polars, PyArrow, DuckDB, PySpark), got {type(data).__name__}",
            component=component,
            hint="pass a frame, e.g. the result of a source's ingest()",
        ) from None


def engine_of(data: AnyFrame) -> str:
    """``pandas``, ``polars``, ``polars-lazy``, ``pyarrow``, ``duckdb``, ``pyspark``, ...

    Takes a native or a Narwhals frame. Spark Connect DataFrames are ``pyspark`` too.
    """
    frame = to_narwhals(data)
    name = str(frame.implementation.name).lower()
    if name == "polars" and isinstance(frame, nw.LazyFrame):
        return "polars-lazy"
    return _ALIASES.get(name, name)


def is_spark(data: Any) -> bool:
    """Whether ``data`` is a Spark DataFrame (classic or Spark Connect): :func:`engine_of`'s
    ``pyspark`` told by type alone, for any object (nothing is wrapped or imported)."""
    module = type(data).__module__
    return module.startswith("pyspark.sql") and type(data).__name__ == "DataFrame"


def normalize_engine(engine: str, *, component: str | None = None) -> str:
    """An engine name as :func:`engine_of` spells it (``arrow`` -> ``pyarrow``, ...)."""
    name = _ALIASES.get(engine, engine)
    if name not in ENGINES:
        raise ConfigError(
            f"unknown engine {engine!r}",
            component=component,
            hint=f"use one of {', '.join(ENGINES)} (or arrow, lazy, spark)",
        )
    return name


# -- case of column names ----------------------------------------------------------------------


def case_collisions(names: Iterable[str]) -> list[list[str]]:
    """Groups of column names equal when case is ignored (``[["a", "A"]]``), in first order."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(str(name).casefold(), []).append(str(name))
    return [group for group in groups.values() if len(group) > 1]


def is_case_insensitive(engine: str, session: Any = None) -> bool:
    """True when ``engine`` treats ``a`` and ``A`` as one column (DuckDB; Spark by default).

    ``session``: the SparkSession whose ``spark.sql.caseSensitive`` decides for Spark.
    """
    if engine == "duckdb":
        return True
    if engine == "pyspark":
        if session is not None:
            try:
                return str(session.conf.get("spark.sql.caseSensitive", "false")).lower() != "true"
            except Exception:  # a conf that cannot be read: assume Spark's default
                return True
        return True
    return False


def check_column_case(
    names: Iterable[str], engine: str, *, component: str | None = None, session: Any = None
) -> None:
    """Refuse column names that differ only by case on an engine that cannot keep them apart."""
    if not is_case_insensitive(engine, session):
        return
    groups = case_collisions(names)
    if groups:
        shown = "; ".join(" and ".join(repr(n) for n in g) for g in groups)
        label = {"duckdb": "DuckDB", "pyspark": "Spark"}[engine]
        raise UnsupportedOperationError(
            f"the {engine} engine cannot hold columns whose names differ only by case: {shown} "
            f"({label} treats them as one column)",
            component=component,
            hint="rename one of each pair (e.g. with a ColumnRenamer) before this step, or use "
            "the polars, pandas or pyarrow engine"
            + (", or set spark.sql.caseSensitive=true" if engine == "pyspark" else ""),
        )


def check_spark_dotted_names(
    names: Iterable[str], engine: str, *, component: str | None = None
) -> None:
    """PySpark: make Narwhals quote column names (core.spark_names), or refuse names with a dot
    or a backtick when this Narwhals version is not one that quoting was checked against.

    Narwhals hands a name to Spark unquoted, and Spark reads ``a.b`` as field ``b`` of column
    ``a`` (narwhals#3117): a step would fail with an AnalysisException or, where a struct ``a``
    with a field ``b`` exists, read another column.
    """
    if engine != "pyspark":
        return
    from data_pipeline.core import spark_names

    if spark_names.install():
        return
    dotted = [str(n) for n in names if spark_names.needs_quotes(str(n))]
    if dotted:
        import narwhals

        shown = ", ".join(repr(n) for n in dotted)
        checked = ", ".join(f"{a}.{b}" for a, b in sorted(spark_names.CHECKED_NARWHALS))
        raise UnsupportedOperationError(
            f"the pyspark engine cannot address columns whose names hold a dot or a backtick "
            f"with narwhals {narwhals.__version__}: {shown} (Spark reads 'a.b' as field b of "
            f"column a; the quoting is checked against narwhals {checked})",
            component=component,
            hint=f"install narwhals {checked}, or rename them on Spark before this step, e.g. "
            "df.withColumnRenamed('a.b', 'a_b'), or use the polars, pandas, pyarrow or duckdb "
            "engine",
        )


# -- conversions -------------------------------------------------------------------------------


#: Names of the UTC zone that engines give (DuckDB and Spark in a UTC session: ``Etc/UTC``);
#: a column in any of them leaves an engine labelled ``UTC``.
UTC_ALIASES = frozenset(
    {"Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Etc/Zulu", "Zulu", "Z"}
)


def to_arrow(data: AnyFrame) -> pa.Table:
    """Any supported frame -> ``pyarrow.Table`` (collecting a lazy one; no pandas index; UTC
    columns labelled ``UTC``, whatever name the engine gave the zone)."""
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return _utc_labels(data)
    frame = to_narwhals(data)
    if isinstance(frame, nw.LazyFrame):
        if engine_of(frame) == "polars-lazy":
            return _utc_labels(frame.to_native().collect().to_arrow())
        return _utc_labels(frame.collect(backend="pyarrow").to_native())
    if frame.implementation is nw.Implementation.PANDAS:
        return _utc_labels(_from_pandas(frame.to_native()))
    return _utc_labels(frame.to_arrow())


def _utc_labels(table: pa.Table) -> pa.Table:
    """``table`` with each top-level timestamp column zoned ``Etc/UTC`` (or another name of
    UTC) relabelled ``UTC``: the same instants (metadata only, no copy), one label, so a stored
    schema does not depend on the engine that computed it."""
    import pyarrow as pa

    def utc_alias(f: pa.Field) -> bool:
        return pa.types.is_timestamp(f.type) and f.type.tz in UTC_ALIASES

    if not any(utc_alias(f) for f in table.schema):
        return table
    renamed = [
        pa.field(f.name, pa.timestamp(f.type.unit, "UTC"), f.nullable, f.metadata)
        if utc_alias(f)
        else f
        for f in table.schema
    ]
    return table.cast(pa.schema(renamed, metadata=table.schema.metadata))


def _from_pandas(native: pd.DataFrame) -> pa.Table:
    """A pandas frame as Arrow: its columns only (the index is not data, whatever its kind)."""
    import pyarrow as pa

    return pa.Table.from_pandas(native, preserve_index=False)


def to_polars(data: AnyFrame) -> pl.DataFrame:
    """Any supported frame -> ``polars.DataFrame`` (zero-copy where the engine allows)."""
    import polars as pl

    if isinstance(data, pl.DataFrame):
        return _polars_utc_labels(data)
    if isinstance(data, pl.LazyFrame):
        return _polars_utc_labels(data.collect())
    frame = to_narwhals(data)
    if isinstance(frame, nw.LazyFrame):
        native = frame.to_native()
        if isinstance(native, pl.LazyFrame):
            return _polars_utc_labels(native.collect())
        result: pl.DataFrame = frame.collect(backend="polars").to_native()
        return _polars_utc_labels(result)
    eager: pl.DataFrame = frame.to_polars()
    return _polars_utc_labels(eager)


def _polars_utc_labels(frame: pl.DataFrame) -> pl.DataFrame:
    """As :func:`_utc_labels`, for Polars (a zone change there is metadata only too)."""
    import polars as pl

    zoned = [
        c
        for c, t in frame.schema.items()
        if isinstance(t, pl.Datetime) and t.time_zone in UTC_ALIASES
    ]
    if not zoned:
        return frame
    return frame.with_columns(pl.col(zoned).dt.convert_time_zone("UTC"))


def pandas_nullable(result: Any, templates: Mapping[str, Any]) -> Any:
    """A pandas result whose columns take their ``templates`` dtypes where a template is an
    int/bool dtype the column no longer has: a numpy int64/bool column that gained nulls (the
    unmatched side of a join: float64 with NaN, object) becomes the nullable Int64/boolean, as
    DataAggregator converts back (:func:`to_pandas`). One logical type on every engine
    (DataJoiner, DataEnricher's lookups). ``result`` is a Narwhals frame, and so is the answer."""
    native = result.to_native()
    changed = [
        c
        for c in native.columns
        if getattr(templates.get(c), "kind", "") in ("i", "u", "b")
        and native[c].dtype != templates[c]
    ]
    if not changed:
        return result
    fixed = to_pandas(native[changed], like=templates)
    fixed.index = native.index
    return nw.from_native(native.assign(**{c: fixed[c] for c in changed}))


def to_pandas(
    data: AnyFrame, *, like: pd.DataFrame | Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Any supported frame -> ``pandas.DataFrame`` (numpy-backed, as ``polars.to_pandas``).

    ``like``: a pandas frame (or a mapping column -> pandas dtype) whose dtypes the result's
    columns of the same name take, the nullable one where a numpy int/bool column must hold
    nulls; a column without a template becomes numpy int64/float64/bool (nullable with nulls),
    pandas' ``str``, or keeps its Arrow dtype (dates, decimals, ...). A result computed on
    another engine so comes back in the dtypes of the pandas frame it was computed from (Polars'
    own ``to_pandas()`` turns an int or bool column with nulls into float/object, a date into
    datetime64[ms] and a decimal into objects).
    """
    import pandas as pd

    if like is None:
        if isinstance(data, pd.DataFrame):
            return data
        return to_polars(data).to_pandas()
    templates = {c: like[c].dtype for c in like.columns} if isinstance(like, pd.DataFrame) else like
    table = to_polars(data)
    out = table.to_pandas(use_pyarrow_extension_array=True)
    for column in out.columns:
        target = _pandas_dtype(templates.get(column), table[column].null_count() > 0, out[column])
        if target is not None:
            out[column] = out[column].astype(target)
    return out


def _pandas_dtype(template: Any, has_null: bool, series: Any) -> Any:
    """The pandas dtype of a result column (see :func:`to_pandas`)."""
    import numpy as np

    if template is not None:
        if isinstance(template, np.dtype) and template.kind in "iub" and has_null:
            return (
                "boolean"
                if template.kind == "b"
                else template.name.capitalize().replace("Uint", "UInt")
            )
        return template
    kind = str(series.dtype).split("[")[0]
    if kind.startswith(("int", "uint")):
        return kind.capitalize().replace("Uint", "UInt") if has_null else kind
    if kind.startswith(("double", "float")):
        return "float64"
    if kind.startswith("bool"):
        return "boolean" if has_null else "bool"
    if kind in ("string", "large_string"):
        return "str"
    return None


def duckdb_connection(relation: Any) -> Any:
    """The connection a DuckDB relation belongs to, or None when DuckDB does not expose it."""
    connection = getattr(relation, "_con", None)  # DuckDB keeps it privately; checked below
    if connection is None or not hasattr(connection, "from_arrow"):
        return None
    return connection


_SCRATCH: list[Any] = []  # the process's in-memory DuckDB database (duckdb_scratch)
_SCRATCH_LOCK = threading.Lock()


def duckdb_scratch() -> Any:
    """A new cursor of one in-memory DuckDB database kept for the process, for casts and
    queries over Arrow data that need no tables of their own (opening a DuckDB connection costs
    about 10 ms; a cursor, microseconds). Each cursor is its own connection: close it after
    use."""
    with _SCRATCH_LOCK:
        if not _SCRATCH:
            import duckdb

            _SCRATCH.append(duckdb.connect())
        return _SCRATCH[0].cursor()


def spark_from_arrow(session: Any, table: pa.Table) -> Any:
    """A Spark DataFrame of ``table`` (columnar, no pandas and no row loop).

    Dictionary (categorical) columns are decoded (Spark reads none); naive timestamps become
    ``TIMESTAMP_NTZ`` (Spark would make them session-zoned timestamps).
    """
    import pyarrow as pa

    if any(pa.types.is_dictionary(f.type) for f in table.schema):
        fields = [
            pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f
            for f in table.schema
        ]
        table = table.cast(pa.schema(fields))
    frame = session.createDataFrame(table)
    naive = [f.name for f in table.schema if pa.types.is_timestamp(f.type) and f.type.tz is None]
    if any(frame.schema[n].dataType.typeName() == "timestamp" for n in naive):
        from data_pipeline.core.spark_names import spark_col

        frame = frame.withColumns({n: spark_col(n).cast("timestamp_ntz") for n in naive})
    return frame


def _spark_session(session: Any) -> Any:
    if session is not None:
        return session
    from data_pipeline.core.deps import import_optional

    sql = import_optional("pyspark.sql", extra="spark", feature="the pyspark engine")
    active = sql.SparkSession.getActiveSession()
    return active if active is not None else sql.SparkSession.builder.getOrCreate()


def to_engine(
    data: AnyFrame,
    engine: str,
    *,
    connection: Any = None,
    session: Any = None,
    component: str | None = None,
) -> Any:
    """``data`` as a native frame of ``engine`` (the same object when it already is one).

    ``connection``: the DuckDB connection to register on (default: DuckDB's default one).
    ``session``: the SparkSession (default: the active one, or a new local one).
    """
    target = normalize_engine(engine, component=component)
    if isinstance(data, (nw.DataFrame, nw.LazyFrame)):
        data = data.to_native()
    source = engine_of(data)
    if source == target and target != "duckdb":
        return data
    if target == "polars":
        return to_polars(data)
    if target == "polars-lazy":
        return to_polars(data).lazy()
    if target == "pandas":
        return to_pandas(data)
    if target == "pyarrow":
        return to_arrow(data)
    if target == "duckdb":
        if source == "duckdb" and (connection is None or duckdb_connection(data) is connection):
            return data
        table = to_arrow(data)
        check_column_case(table.column_names, "duckdb", component=component)
        if connection is None:
            import duckdb

            connection = duckdb.default_connection()
        return connection.from_arrow(table)
    # pyspark
    spark = _spark_session(session)
    table = to_arrow(data)
    check_column_case(table.column_names, "pyspark", component=component, session=spark)
    return spark_from_arrow(spark, table)


def match_engine(
    template: Any, other: Any, *, component: str | None = None, what: str = "right side"
) -> Any:
    """``other`` (native or Narwhals) as a Narwhals frame of ``template``'s engine.

    A frame for a DuckDB template is registered on the template's own connection (relations of
    different connections cannot be joined); one for a PySpark template becomes a DataFrame of
    the template's SparkSession. ``what`` names ``other`` in messages.
    """
    other_nw = to_narwhals(other, component=component)
    target, source = engine_of(template), engine_of(other_nw)
    native_template = template.to_native() if hasattr(template, "to_native") else template
    if target == "duckdb":
        # the template's own connection (relations of two connections cannot be combined);
        # DuckDB's default connection when the relation does not expose it
        connection = duckdb_connection(native_template)
        if source == "duckdb" and duckdb_connection(other_nw.to_native()) is connection:
            return other_nw
        return nw.from_native(
            to_engine(other_nw, "duckdb", connection=connection, component=component)
        )
    if target == source:
        return other_nw
    if target == "pyspark":
        session = getattr(native_template, "sparkSession", None)
        return nw.from_native(to_engine(other_nw, "pyspark", session=session, component=component))
    if target in ENGINES:
        return nw.from_native(to_engine(other_nw, target, component=component))
    raise UnsupportedOperationError(
        f"the {what} is a {source} frame and the data a {target} frame; "
        f"the engine {target!r} cannot take a frame from another engine here",
        component=component,
        hint=f"pass the {what} as a {target} frame",
    )


def convert_output(data: AnyFrame, output: str, *, component: str | None = None) -> AnyFrame:
    """Convert a frame to the ``output`` a user asked for (``polars``, ``lazy``, ``pandas``,
    ``arrow`` or ``native``: unchanged)."""
    if output == "native":
        return data
    if output not in OUTPUTS:
        raise ConfigError(
            f"unknown output {output!r}",
            component=component,
            hint=f"use one of {', '.join(OUTPUTS)}",
        )
    if output == "lazy":
        import polars as pl

        if isinstance(data, pl.LazyFrame):
            return data
    return to_engine(data, output, component=component)
