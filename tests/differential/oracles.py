"""Independent oracles in plain Python: what docs/semantics.md says each operation answers.

Nothing here imports data_pipeline: the answers are computed from the generated values with the
standard library (``decimal``, ``statistics``, ``math``), so a bug in our code cannot hide in
its own oracle.
"""

from __future__ import annotations

import decimal
import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import narwhals as nw

from tests.differential.frames import NUMERIC

Row = dict[str, Any]


def isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def same_key(a: Any, b: Any) -> bool:
    """Group-key equality: null groups with null, NaN with NaN, -0.0 with 0.0."""
    if a is None or b is None:
        return a is None and b is None
    if isnan(a) or isnan(b):
        return isnan(a) and isnan(b)
    return bool(a == b)


def sort_key(value: Any) -> tuple[int, Any]:
    """Ascending, nulls last; NaN above every number (as Polars, DuckDB and Spark sort)."""
    if value is None:
        return (2, 0)
    if isnan(value):
        return (1, 0)
    return (0, value)


def group_rows(rows: Sequence[Row], keys: Sequence[str]) -> list[tuple[tuple[Any, ...], list[Row]]]:
    """Groups in first-seen order; the key of a group is the first row's key values."""
    groups: list[tuple[tuple[Any, ...], list[Row]]] = []
    for row in rows:
        key = tuple(row[k] for k in keys)
        for existing, members in groups:
            if all(same_key(a, b) for a, b in zip(existing, key, strict=True)):
                members.append(row)
                break
        else:
            groups.append((key, [row]))
    return groups


# -- aggregations ---------------------------------------------------------------------------


def agg_sum(values: list[Any], kind: str) -> Any:
    present = [v for v in values if v is not None]
    if kind == "decimal":
        return sum(present, decimal.Decimal("0.00"))
    if kind in ("int", "int32"):
        return sum(present)
    if any(isnan(v) for v in present) or (math.inf in present and -math.inf in present):
        return math.nan
    if math.inf in present:
        return math.inf
    if -math.inf in present:
        return -math.inf
    return math.fsum(present)


def _numbers(values: list[Any]) -> list[Any]:
    return [v for v in values if v is not None]


def agg_mean(values: list[Any], kind: str) -> Any:
    present = _numbers(values)
    if not present:
        return None
    total = agg_sum(present, kind)
    if kind == "float":
        return total / len(present)
    return float(decimal.Decimal(total) / decimal.Decimal(len(present)))


def _non_finite(present: list[Any]) -> float | None:
    """NaN when a NaN or an infinity makes the statistic undefined."""
    if any(isinstance(v, float) and not math.isfinite(v) for v in present):
        return math.nan
    return None


def agg_median(values: list[Any], kind: str) -> Any:
    """The middle value in sort order (NaN above every number), or the mean of the two middle
    values: (-inf + 2) / 2 is -inf, (inf + -inf) / 2 and (x + NaN) / 2 are NaN."""
    present = _numbers(values)
    if not present:
        return None
    if kind != "float":
        return float(statistics.median([decimal.Decimal(v) for v in present]))
    ordered = sorted(present, key=lambda v: (isnan(v), 0.0 if isnan(v) else v))
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def agg_std(values: list[Any], kind: str) -> Any:
    present = _numbers(values)
    if len(present) < 2:
        return None
    bad = _non_finite(present)
    if bad is not None:
        return bad
    exact = [decimal.Decimal(v) for v in present]
    return float(statistics.stdev(exact))


def agg_min_max(values: list[Any], kind: str, func: str) -> Any:
    """min/max ignore null and NaN; NaN only when every non-null value is NaN."""
    present = _numbers(values)
    if not present:
        return None
    numbers = [v for v in present if not isnan(v)]
    if not numbers:
        return math.nan
    return min(numbers) if func == "min" else max(numbers)


def agg_count(values: list[Any], kind: str) -> int:
    return sum(v is not None for v in values)


def agg_n_unique(values: list[Any], kind: str) -> int:
    distinct: list[Any] = []
    for v in values:
        if not any(same_key(v, d) for d in distinct):
            distinct.append(v)
    return len(distinct)


class AnyOf:
    """Any of these values is the answer (a tie that the semantics leaves open)."""

    def __init__(self, values: Sequence[Any]) -> None:
        self.values = list(values)

    def __repr__(self) -> str:
        return f"AnyOf({self.values!r})"


def agg_first_last(rows: list[Row], column: str, func: str, order_by: Sequence[str]) -> Any:
    """By row order, or by ``order_by`` ascending with nulls last (as ``sort``): the first or
    the last row. Rows tied on the order (several nulls included) may give any of their values."""
    if not rows:
        return None
    if not order_by:
        return rows[0 if func == "first" else -1][column]

    def key(row: Row) -> tuple[Any, ...]:
        return tuple(sort_key(row[o]) for o in order_by)

    ordered = sorted(rows, key=key)
    pick = ordered[0 if func == "first" else -1]
    tied = [r[column] for r in ordered if key(r) == key(pick)]
    return tied[0] if len(tied) == 1 else AnyOf(tied)


SIMPLE: dict[str, Callable[[list[Any], str], Any]] = {
    "sum": agg_sum,
    "mean": agg_mean,
    "median": agg_median,
    "std": agg_std,
    "count": agg_count,
    "n_unique": agg_n_unique,
    "min": lambda v, k: agg_min_max(v, k, "min"),
    "max": lambda v, k: agg_min_max(v, k, "max"),
}

#: aggregations that need a numeric column
NUMERIC_ONLY = frozenset({"sum", "mean", "median", "std"})


def agg_dtype(func: str, kind: str | None, input_dtype: Any) -> Any:
    """The output dtype of an aggregation (docs/semantics.md, "Aggregations")."""
    if func in ("count", "n_unique") or kind is None:
        return nw.Int64()
    if func == "sum":
        if kind in ("int", "int32"):
            return nw.Int64()
        if kind == "decimal":
            return nw.Decimal(38, input_dtype.scale)
        return nw.Float64()
    if func in ("mean", "median", "std"):
        return nw.Float64()
    return input_dtype


def aggregate(
    rows: Sequence[Row],
    kinds: dict[str, str],
    dtypes: dict[str, Any],
    group_by: Sequence[str],
    plans: Sequence[tuple[str, str, str, tuple[str, ...]]],
) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    """Group ``rows`` and apply ``plans`` ((column, func, output, order_by) with column "*"
    for rows). Sorted by the keys, nulls last. A global aggregation gives one row."""
    groups = group_rows(rows, group_by) if group_by else [((), list(rows))]
    out: list[tuple[Any, ...]] = []
    for key, members in groups:
        values: list[Any] = list(key)
        for column, func, _output, order_by in plans:
            if column == "*":
                values.append(len(members))
            elif func in ("first", "last"):
                values.append(agg_first_last(members, column, func, order_by))
            else:
                values.append(SIMPLE[func]([r[column] for r in members], kinds[column]))
        out.append(tuple(values))
    if group_by:
        out.sort(key=lambda r: tuple(sort_key(v) for v in r[: len(group_by)]))
    schema: dict[str, Any] = {k: dtypes[k] for k in group_by}
    for column, func, output, _ in plans:
        kind = None if column == "*" else kinds[column]
        schema[output] = agg_dtype(func, kind, None if column == "*" else dtypes[column])
    return out, schema


def is_numeric_kind(kind: str) -> bool:
    return kind in NUMERIC


def sort_rows(
    rows: Sequence[tuple[Any, ...]], keys: Sequence[tuple[int, bool]]
) -> list[tuple[Any, ...]]:
    """Sort by ``(position, descending)`` keys; nulls last either way, NaN above every number."""
    out = list(rows)
    for index, descending in reversed(keys):
        present = [r for r in out if r[index] is not None]
        missing = [r for r in out if r[index] is None]
        present.sort(
            key=lambda r: (isnan(r[index]), 0 if isnan(r[index]) else r[index]),
            reverse=descending,
        )
        out = present + missing
    return out
