"""Helpers shared by the transformers: column resolution, dtypes, NaN handling, counting.

Everything here works from the schema alone or builds Narwhals expressions; nothing computes a
lazy frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import narwhals as nw

from data_pipeline.core.engines import engine_of
from data_pipeline.core.errors import UnsupportedOperationError
from data_pipeline.core.frames import is_lazy

__all__ = [
    "count_true",
    "is_float",
    "is_numeric",
    "missing_expr",
    "nan_flags",
    "nan_is_null",
    "should_count",
    "unsupported",
    "value_expr",
]

NwFrame = Any


def schema_of(frame: NwFrame) -> dict[str, Any]:
    """Column name -> Narwhals dtype, from the schema alone."""
    return dict(frame.collect_schema())


def is_numeric(dtype: Any) -> bool:
    return bool(dtype.is_numeric())


def is_float(dtype: Any) -> bool:
    return bool(dtype.is_float())


def value_expr(column: str, dtype: Any, *, nan_as_null: bool) -> Any:
    """The column as an expression, with NaN turned into null for float columns when asked."""
    expr = nw.col(column)
    if nan_as_null and is_float(dtype):
        expr = expr.fill_nan(None)
    return expr


def missing_expr(column: str, dtype: Any, *, nan_as_null: bool) -> Any:
    """True where the value is missing (null, and NaN when ``nan_as_null``); never null itself."""
    expr = nw.col(column).is_null()
    if nan_as_null and is_float(dtype):
        expr = expr | nw.col(column).is_nan().fill_null(False)
    return expr


def nan_is_null(frame: NwFrame) -> frozenset[str]:
    """Float columns whose NaN already *is* the missing value (numpy-backed pandas floats).

    There ``fill_nan(None)`` and ``is_nan()`` only repeat ``is_null()`` at the cost of a full
    pass each, so callers skip them for these columns.
    """
    if not frame.implementation.is_pandas_like() or is_lazy(frame):
        return frozenset()
    import numpy as np

    dtypes = frame.to_native().dtypes
    return frozenset(str(c) for c, d in dtypes.items() if isinstance(d, np.dtype) and d.kind == "f")


def nan_flags(frame: NwFrame, schema: dict[str, Any], nan_as_null: bool) -> dict[str, bool]:
    """Per column: whether NaN must still be turned into null (``nan_as_null`` and not already)."""
    if not nan_as_null:
        return dict.fromkeys(schema, False)
    already = nan_is_null(frame)
    return {c: c not in already for c in schema}


_SUM_BOOL = {
    nw.Implementation.POLARS,
    nw.Implementation.PANDAS,
    nw.Implementation.MODIN,
    nw.Implementation.CUDF,
    nw.Implementation.PYARROW,
}


def count_true(frame: NwFrame, expr: Any) -> Any:
    """An aggregate counting the true values of a boolean expression.

    Polars, pandas and PyArrow sum booleans directly (no integer copy of the column); SQL
    engines need the cast.
    """
    if frame.implementation in _SUM_BOOL:
        return expr.sum()
    return expr.cast(nw.Int64).sum()


def should_count(frame: NwFrame, setting: bool | None) -> bool:
    """Count only on eager frames unless the config forces it (counting a lazy frame computes it)."""
    if setting is None:
        return not is_lazy(frame)
    return setting


def collect_row(frame: NwFrame, exprs: Sequence[Any]) -> dict[str, Any]:
    """Evaluate aggregate expressions into one row of Python values (collects a lazy frame)."""
    if not exprs:
        return {}
    result = frame.select(*exprs)
    if is_lazy(result):
        result = result.collect()
    rows = result.rows(named=True)
    return dict(rows[0]) if rows else {}


def unsupported(
    frame: NwFrame, operation: str, instead: str, *, component: str
) -> UnsupportedOperationError:
    """An error naming the engine, the operation and what to use instead."""
    engine = engine_of(frame)
    return UnsupportedOperationError(
        f"the {engine} engine cannot {operation}",
        component=component,
        hint=instead,
    )
