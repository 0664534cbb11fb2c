"""Bring a second frame (a join's right side, a lookup table) to the engine of the first."""

from __future__ import annotations

from typing import Any

import narwhals as nw

from data_pipeline.core.errors import UnsupportedOperationError
from data_pipeline.core.frames import to_arrow, to_narwhals, to_polars

__all__ = ["duckdb_connection", "engine_of", "match_engine", "spark_from_arrow"]


def duckdb_connection(relation: Any) -> Any:
    """The connection a DuckDB relation belongs to, or None when DuckDB does not expose it."""
    connection = getattr(relation, "_con", None)  # DuckDB keeps it privately; checked below
    if connection is None or not hasattr(connection, "from_arrow"):
        return None
    return connection


def spark_from_arrow(session: Any, table: Any) -> Any:
    """A Spark DataFrame of ``table``; naive timestamps stay naive (Spark would zone them)."""
    import pyarrow as pa

    frame = session.createDataFrame(table)
    naive = [f.name for f in table.schema if pa.types.is_timestamp(f.type) and f.type.tz is None]
    if any(frame.schema[n].dataType.typeName() == "timestamp" for n in naive):
        from pyspark.sql import functions as F

        quoted = {n: "`" + n.replace("`", "``") + "`" for n in naive}
        frame = frame.withColumns({n: F.col(quoted[n]).cast("timestamp_ntz") for n in naive})
    return frame


def engine_of(frame: Any) -> str:
    """``pandas``, ``polars``, ``polars-lazy``, ``pyarrow``, ``duckdb``, ``pyspark``, ..."""
    name = str(frame.implementation).lower().split(".")[-1]
    if name == "polars" and isinstance(frame, nw.LazyFrame):
        return "polars-lazy"
    return name


def match_engine(
    template: Any, other: Any, *, component: str | None = None, what: str = "right side"
) -> Any:
    """``other`` (native or Narwhals) as a Narwhals frame of ``template``'s engine.

    Conversions go through Arrow. A frame for a DuckDB template is registered on the template's
    own connection (relations of different connections cannot be joined); one for a PySpark
    template becomes a DataFrame of the template's SparkSession.
    """
    other_nw = to_narwhals(other, component=component)
    target, source = engine_of(template), engine_of(other_nw)
    if target == source:
        return other_nw
    native = other_nw.to_native()
    if target == "polars":
        return nw.from_native(to_polars(native))
    if target == "polars-lazy":
        return nw.from_native(to_polars(native).lazy())
    if target == "pandas":
        return nw.from_native(to_polars(native).to_pandas())
    if target == "pyarrow":
        return nw.from_native(to_arrow(native))
    if target == "duckdb":
        connection = duckdb_connection(template.to_native())
        if connection is not None:
            return nw.from_native(connection.from_arrow(to_arrow(native)))
    if target == "pyspark":
        session = getattr(template.to_native(), "sparkSession", None)
        if session is not None:  # Spark 4 takes an Arrow table (columnar, no row loop)
            return nw.from_native(spark_from_arrow(session, to_arrow(native)))
    raise UnsupportedOperationError(
        f"the {what} is a {source} frame and the data a {target} frame; "
        f"the engine {target!r} cannot take a frame from another engine here",
        component=component,
        hint=f"pass the {what} as a {target} frame on the same connection/session "
        "(e.g. con.from_arrow(table) for DuckDB)",
    )
