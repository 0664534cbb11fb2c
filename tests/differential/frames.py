"""Random frames for the differential suite (hypothesis strategies).

A frame is drawn as a list of :class:`Column` (a name, a :data:`KINDS` kind, Python values) and
built as a Polars DataFrame with an explicit schema; :mod:`tests.differential.harness` turns it
into each engine's native frame. The values cover what broke engines before: nulls, NaN, ±inf,
-0.0, unicode and empty strings, dates, naive and UTC timestamps, decimals, all-null columns,
0- and 1-row frames, duplicate keys, and column names with spaces, dots and unicode.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from hypothesis import strategies as st

UTC = dt.timezone.utc

#: kind -> Polars dtype. The kinds are the logical types the suite checks on every engine.
KINDS: dict[str, pl.DataType] = {
    "int": pl.Int64(),
    "int32": pl.Int32(),
    "float": pl.Float64(),
    "str": pl.String(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "datetime": pl.Datetime("us"),
    "datetime_utc": pl.Datetime("us", "UTC"),
    "decimal": pl.Decimal(10, 2),
}
NUMERIC = ("int", "int32", "float", "decimal")
INTEGER = ("int", "int32")
TEMPORAL = ("date", "datetime", "datetime_utc")
ORDERED = (*NUMERIC, "str", "bool", *TEMPORAL)

#: column names that broke engines: spaces, dots, unicode, a leading digit, upper case
NAMES = (
    "a",
    "b c",
    "x.y",
    "é",
    "名前",
    "Ünï code",
    "1st",
    "Upper",
    "v",
    "with.dot space",
    "k",
    "z",
)

#: the edge values first: sampled_from draws (and shrinks to) the first ones most
SPECIAL_FLOATS = (math.nan, math.inf, -0.0, -math.inf, 0.0, 1.5, -2.25)
SPECIAL_TEXT = ("", "a", "A", "ß", "é", "名", " x ", "a b", "Z")


@dataclass(frozen=True)
class Column:
    """One generated column: its name, kind and values (None = null)."""

    name: str
    kind: str
    values: tuple[Any, ...]


def values_of(kind: str, *, finite: bool = False) -> st.SearchStrategy[Any]:
    """Non-null values of a kind. ``finite``: no NaN or ±inf (for keys where that is not the point)."""
    if kind == "int":
        return st.one_of(
            st.integers(-5, 5),
            st.integers(-(10**6), 10**6),
            st.sampled_from([2**40, -(2**40)]),
        )
    if kind == "int32":
        return st.integers(-1000, 1000)
    if kind == "float":
        specials = [f for f in SPECIAL_FLOATS if not finite or math.isfinite(f)]
        return st.one_of(
            st.sampled_from(specials),
            st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False).map(
                lambda x: round(x, 3) + 0.0
            ),
        )
    if kind == "str":
        return st.one_of(
            st.sampled_from(SPECIAL_TEXT),
            st.text(
                alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=4
            ),
        )
    if kind == "bool":
        return st.booleans()
    if kind == "date":
        return st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31))
    if kind == "datetime":
        return st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2100, 1, 1))
    if kind == "datetime_utc":
        return st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2100, 1, 1)).map(
            lambda v: v.replace(tzinfo=UTC)
        )
    if kind == "decimal":
        return st.decimals(
            min_value=-(10**6), max_value=10**6, places=2, allow_nan=False, allow_infinity=False
        ).map(lambda d: d.quantize(decimal.Decimal("0.01")) + 0)  # -0.00 -> 0.00
    raise AssertionError(kind)


@st.composite
def column_values(
    draw: st.DrawFn, kind: str, rows: int, *, pool: bool = False, finite: bool = False
) -> tuple[Any, ...]:
    """``rows`` values of ``kind``: no nulls, some, or all null. ``pool``: drawn from 1-3
    distinct values (duplicate keys)."""
    nulls = draw(st.sampled_from(["none", "some", "some", "all"]))
    if nulls == "all":
        return (None,) * rows
    base = values_of(kind, finite=finite)
    if kind == "float" and not finite and draw(st.booleans()):
        base = st.sampled_from(SPECIAL_FLOATS)  # half the float columns: only the edge values
    if pool:
        choices = draw(st.lists(base, min_size=1, max_size=3))
        base = st.sampled_from(choices)
    value = base if nulls == "none" else st.one_of(st.none(), base, base)
    return tuple(draw(st.lists(value, min_size=rows, max_size=rows)))


@st.composite
def names(draw: st.DrawFn, count: int, taken: Sequence[str] = ()) -> list[str]:
    """``count`` distinct names, also distinct ignoring case (case twins have their own test)."""
    lowered = {t.lower() for t in taken}
    pool = [n for n in NAMES if n.lower() not in lowered]
    return draw(
        st.lists(st.sampled_from(pool), min_size=count, max_size=count, unique_by=str.lower)
    )


def row_counts() -> st.SearchStrategy[int]:
    """0 and 1 rows often, up to 12."""
    return st.one_of(st.sampled_from([0, 1, 1, 2]), st.integers(0, 12))


def build(columns: Sequence[Column]) -> pl.DataFrame:
    """A Polars frame with the columns' exact dtypes."""
    return pl.DataFrame(
        {c.name: list(c.values) for c in columns},
        schema={c.name: KINDS[c.kind] for c in columns},
        strict=False,
    )


def kinds_of(columns: Sequence[Column]) -> dict[str, str]:
    return {c.name: c.kind for c in columns}
