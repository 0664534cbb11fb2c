"""Frame helpers on Narwhals: native frame in, same native type out.

Every transformer and processor works on a Narwhals frame; these helpers wrap and unwrap it, name
the engine for messages, check columns from the schema alone (no computing), and convert between
the outputs a user can ask for (``polars``, ``lazy``, ``pandas``, ``arrow``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import narwhals as nw

from data_pipeline.core.errors import ColumnNotFoundError, ConfigError, InputTypeError

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

__all__ = [
    "OUTPUTS",
    "Output",
    "column_names",
    "convert_output",
    "engine_name",
    "is_lazy",
    "require_columns",
    "row_count",
    "to_arrow",
    "to_narwhals",
    "to_polars",
]

Output = Literal["polars", "lazy", "pandas", "arrow", "native"]
OUTPUTS: tuple[str, ...] = ("polars", "lazy", "pandas", "arrow", "native")
AnyFrame = Any  # a native frame: polars, pandas, pyarrow, duckdb, pyspark, ...


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


def is_lazy(frame: Any) -> bool:
    return isinstance(frame, nw.LazyFrame)


def engine_name(data: AnyFrame) -> str:
    """A short name of the engine behind a frame: ``polars``, ``polars-lazy``, ``pandas``, ..."""
    frame = to_narwhals(data)
    name = str(frame.implementation).lower().split(".")[-1]
    if name == "polars" and is_lazy(frame):
        return "polars-lazy"
    return name


def column_names(frame: Any) -> list[str]:
    """Column names from the schema alone; never computes a lazy frame."""
    frame = to_narwhals(frame)
    return list(frame.collect_schema().names())


def require_columns(
    frame: Any, columns: Iterable[str], *, component: str | None = None, what: str = "column"
) -> None:
    """Raise :class:`ColumnNotFoundError` naming the missing columns and listing those that exist."""
    existing = column_names(frame)
    present = set(existing)
    missing = [c for c in columns if c not in present]
    if missing:
        import difflib

        close = {m: difflib.get_close_matches(m, existing, n=1) for m in missing}
        guesses = [f"{m!r} -> {c[0]!r}" for m, c in close.items() if c]
        hint = f"did you mean {', '.join(guesses)}? " if guesses else ""
        hint += f"the data has columns: {', '.join(map(repr, existing))}"
        raise ColumnNotFoundError(
            f"{what}{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} not found",
            component=component,
            hint=hint,
        )


def row_count(frame: Any) -> int | None:
    """Rows of an eager frame; ``None`` for a lazy one (counting would compute it)."""
    if isinstance(frame, nw.DataFrame):
        return int(frame.shape[0])
    if isinstance(frame, nw.LazyFrame):
        return None
    try:
        return row_count(to_narwhals(frame))
    except InputTypeError:
        return None


def to_arrow(data: AnyFrame) -> pa.Table:
    """Any supported frame -> ``pyarrow.Table`` (collecting a lazy one)."""
    frame = to_narwhals(data)
    if isinstance(frame, nw.LazyFrame):
        frame = frame.collect(backend="pyarrow")
    return frame.to_arrow()


def to_polars(data: AnyFrame) -> pl.DataFrame:
    """Any supported frame -> ``polars.DataFrame`` (zero-copy where the engine allows)."""
    import polars as pl

    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, pl.LazyFrame):
        return data.collect()
    frame = to_narwhals(data)
    if isinstance(frame, nw.LazyFrame):
        result: pl.DataFrame = frame.collect(backend="polars").to_native()
        return result
    eager: pl.DataFrame = frame.to_polars()
    return eager


def convert_output(data: AnyFrame, output: str, *, component: str | None = None) -> AnyFrame:
    """Convert a frame to the ``output`` a user asked for."""
    if output == "native":
        return data
    if output == "polars":
        return to_polars(data)
    if output == "lazy":
        import polars as pl

        if isinstance(data, pl.LazyFrame):
            return data
        return to_polars(data).lazy()
    if output == "arrow":
        return to_arrow(data)
    if output == "pandas":
        return to_polars(data).to_pandas()
    raise ConfigError(
        f"unknown output {output!r}", component=component, hint=f"use one of {', '.join(OUTPUTS)}"
    )


def same_type_as(template: AnyFrame, result: Any) -> AnyFrame:
    """Unwrap a Narwhals result to the native type of ``template``'s engine."""
    if isinstance(result, (nw.DataFrame, nw.LazyFrame)):
        return result.to_native()
    return result


def ensure_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)
