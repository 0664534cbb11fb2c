"""Frame helpers on Narwhals: native frame in, same native type out.

Every transformer and processor works on a Narwhals frame; these helpers wrap and unwrap it and
check columns from the schema alone (no computing). What engine a frame is and conversions
between engines live in :mod:`data_pipeline.core.engines` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import narwhals as nw

from data_pipeline.core.engines import (
    OUTPUTS,
    convert_output,
    engine_of,
    to_arrow,
    to_narwhals,
    to_pandas,
    to_polars,
)
from data_pipeline.core.errors import ColumnNotFoundError, InputTypeError

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
    "to_pandas",
    "to_polars",
]

Output = Literal["polars", "lazy", "pandas", "arrow", "native"]
AnyFrame = Any  # a native frame: polars, pandas, pyarrow, duckdb, pyspark, ...

engine_name = engine_of  # the older name, kept for callers and users


def is_lazy(frame: Any) -> bool:
    return isinstance(frame, nw.LazyFrame)


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
