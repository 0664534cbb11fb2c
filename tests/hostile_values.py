"""A corpus of hostile values and names for round trips through every storage backend.

Each entry of :data:`CORPUS` is one column: a name, a polars dtype and the values (``None`` is
null). :func:`hostile_frame` builds a frame of any subset with an ``id`` column (0, 1, ...) so
that a test can store it, read it back, sort by ``id`` and compare with :func:`assert_same`,
an oracle written in plain Python (floats compared bit for bit, so ``-0.0`` is not ``0.0`` and
NaN equals only NaN; strings and bytes compared exactly; dtypes compared exactly unless the
caller says a backend keeps no types).

:data:`NAMES` are hostile column names (a 300-character name, SQL keywords, quotes, dots, ``$``,
spaces, non-ASCII); :func:`names_frame` makes a small frame with them.

A backend that cannot hold a value must refuse it with a clear error, never change it: the
round-trip test (``tests/integration/test_hostile_roundtrip.py``) writes down, per backend, which
columns are refused and why.
"""

from __future__ import annotations

import datetime as dt
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import polars as pl

__all__ = [
    "CORPUS",
    "NAMES",
    "STRINGS",
    "Column",
    "assert_same",
    "hostile_frame",
    "names_frame",
    "same_value",
]

# Text that has ended, split or rewritten values somewhere: COPY's end-of-data marker and NULL
# marker, empty vs null, quotes and delimiters of CSV/SQL, every line break Python's
# str.splitlines() knows (U+2028, U+2029, U+0085, \x0b, \x0c, \x1c-\x1e: the Redis "zip()" bug),
# words that readers take for nulls or booleans, a BOM, a lone backslash, JSON-looking text.
STRINGS: list[str | None] = [
    "\\.",
    "\\.\n\\.",
    "\\N",
    "",
    None,
    " ",
    "\t",
    "'",
    '"',
    "''",
    '""',
    '"quoted", with comma',
    "it's",
    ",",
    ";",
    "|",
    "\n",
    "\r",
    "\r\n",
    "two\nlines\r\nand CR\r",
    "\u2028",
    "a\u2028b",
    "\u2029",
    "\u0085",
    "x\u0085y",
    "\x0b\x0c\x1c\x1d\x1e",
    "NULL",
    "null",
    "None",
    "NaN",
    "nan",
    "true",
    "False",
    "0",
    "-0",
    "1e5",
    "\ufeffbom",
    "\\",
    "back\\slash\\",
    '{"a": 1}',
    "[1, 2]",
    "<script>alert(1)</script>",
    "'; DROP TABLE x; --",
    "ünïcødé ✓ 😀 \U0010ffff",
    "trailing space ",
    " leading space",
    "#comment",
    "=1+1",
    "x" * 10_000,
]

# NUL is legal in Arrow strings, Parquet, DuckDB, MongoDB, Redis; PostgreSQL text cannot hold it.
NUL_STRINGS: list[str | None] = ["\x00", "a\x00b", None, "\x00\x00"]

# Bytes: invalid UTF-8 (an encoded lone surrogate, 0xFF), NUL, the COPY markers as bytes.
# A Python str cannot carry an invalid surrogate into Arrow (strings are UTF-8), so the invalid
# surrogate lives in a binary column, the only type that allows it.
BINARIES: list[bytes | None] = [
    b"",
    None,
    b"\x00",
    b"\xed\xa0\x80",  # U+D800 (a lone surrogate) as CESU/WTF-8: invalid UTF-8
    b"\xff\xfe",
    b"\\.",
    b"\\N",
    b"\n\r",
    bytes(range(256)),
]

FLOATS: list[float | None] = [
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    0.0,
    None,
    5e-324,  # smallest subnormal
    2.2250738585072014e-308,  # smallest normal
    1.7976931348623157e308,
    -1.7976931348623157e308,
    0.1,
    1 / 3,
    9007199254740993.0,  # 2**53 + 1 rounds to 2**53: exact as stored, a float
]

# float32-exact values: the largest, the smallest normal and subnormal, 0.1f.
FLOAT32S: list[float | None] = [
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    None,
    3.4028234663852886e38,
    1.1754943508222875e-38,
    1.401298464324817e-45,
    0.10000000149011612,
]

INTS: list[int | None] = [-(2**63), 2**63 - 1, 0, -1, None, 2**53 + 1]
INT32S: list[int | None] = [-(2**31), 2**31 - 1, 0, None]
UINT64S: list[int | None] = [0, 2**64 - 1, 2**63, None]
BOOLS: list[bool | None] = [True, False, None]

DATETIMES: list[dt.datetime | None] = [
    dt.datetime(1, 1, 1),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999_999),
    dt.datetime(1970, 1, 1),
    dt.datetime(1969, 12, 31, 23, 59, 59, 999_999),  # just before the epoch: sign of the micros
    dt.datetime(2024, 2, 29, 12, 0, 0, 1),
    dt.datetime(1582, 10, 10),  # a day that the Julian/Gregorian switch skipped
    None,
]
DATETIMES_UTC: list[dt.datetime | None] = [
    None if v is None else v.replace(tzinfo=dt.timezone.utc) for v in DATETIMES
]
DATETIMES_NS: list[dt.datetime | None] = [
    dt.datetime(2024, 1, 1, 0, 0, 0, 1),
    dt.datetime(1677, 9, 22),
    dt.datetime(2262, 4, 11),
    None,
]
NANOS = 1  # the ns column also holds 2024-01-01 00:00:00.000000001 (set by hostile_frame)
DATES: list[dt.date | None] = [
    dt.date(1, 1, 1),
    dt.date(9999, 12, 31),
    dt.date(1970, 1, 1),
    dt.date(1969, 12, 31),
    dt.date(1582, 10, 10),
    None,
]
TIMES: list[dt.time | None] = [dt.time(0), dt.time(23, 59, 59, 999_999), dt.time(12, 0, 0, 1), None]
DURATIONS: list[dt.timedelta | None] = [
    dt.timedelta(0),
    dt.timedelta(microseconds=-1),
    dt.timedelta(days=-1, microseconds=1),
    dt.timedelta(days=100_000, microseconds=999_999),
    None,
]
DECIMALS: list[Decimal | None] = [
    Decimal("9999999999999999999999999999.9999999999"),
    Decimal("-9999999999999999999999999999.9999999999"),
    Decimal("0.0000000001"),
    Decimal("-0.0000000001"),
    Decimal("0E-10"),
    Decimal("1.1000000000"),
    None,
]
DECIMALS_WIDE: list[Decimal | None] = [
    Decimal(10**38 - 1),
    Decimal(-(10**38) + 1),
    Decimal(0),
    None,
]


@dataclass(frozen=True)
class Column:
    """One corpus column: its name, dtype and values."""

    name: str
    dtype: Any
    values: list[Any]


CORPUS: list[Column] = [
    Column("text", pl.String, STRINGS),
    Column("text_nul", pl.String, NUL_STRINGS),
    Column("blob", pl.Binary, BINARIES),
    Column("f64", pl.Float64, FLOATS),
    Column("f32", pl.Float32, FLOAT32S),
    Column("i64", pl.Int64, INTS),
    Column("i32", pl.Int32, INT32S),
    Column("u64", pl.UInt64, UINT64S),
    Column("bool", pl.Boolean, BOOLS),
    Column("ts", pl.Datetime("us"), DATETIMES),
    Column("ts_utc", pl.Datetime("us", "UTC"), DATETIMES_UTC),
    Column("ts_ns", pl.Datetime("ns"), DATETIMES_NS),
    Column("date", pl.Date, DATES),
    Column("time", pl.Time, TIMES),
    Column("duration", pl.Duration("us"), DURATIONS),
    Column("dec", pl.Decimal(38, 10), DECIMALS),
    Column("dec_wide", pl.Decimal(38, 0), DECIMALS_WIDE),
]
BY_NAME = {c.name: c for c in CORPUS}

NAMES: list[str] = [
    "select",
    "from",
    "order",
    "group",
    "table",
    "user",
    "where",
    "a b",
    'dq"uote',
    "sq'uote",
    "back`tick",
    "semi;colon--",
    "dot.ted",
    "$dollar",
    "per%cent",
    "ünïcødé",
    "n" * 300,
]


def hostile_frame(columns: Iterable[str] | None = None) -> pl.DataFrame:
    """An ``id`` column (Int64, 0..n-1) and the chosen corpus columns (default: all).

    Columns shorter than the longest are padded with nulls (null is in every column anyway).
    """
    chosen = [BY_NAME[c] for c in columns] if columns is not None else CORPUS
    height = max((len(c.values) for c in chosen), default=0)
    data: dict[str, pl.Series] = {"id": pl.Series("id", range(height), dtype=pl.Int64)}
    for col in chosen:
        values = list(col.values) + [None] * (height - len(col.values))
        series = pl.Series(col.name, values, dtype=col.dtype, strict=True)
        if col.name == "ts_ns":  # one value a microsecond cannot hold
            series = series.scatter(
                0, pl.Series([1_704_067_200_000_000_001]).cast(pl.Datetime("ns"))
            )
        data[col.name] = series
    frame = pl.DataFrame(data)
    _check_built(frame, chosen)
    return frame


def _check_built(frame: pl.DataFrame, chosen: list[Column]) -> None:
    """The corpus itself must hold what it says (polars must not have changed a value)."""
    for col in chosen:
        got = frame[col.name].to_list()[: len(col.values)]
        if col.name == "ts_ns":
            continue
        for a, b in zip(got, col.values, strict=True):
            if not same_value(a, b):
                raise AssertionError(f"corpus column {col.name!r}: built {a!r}, meant {b!r}")


def names_frame(names: Iterable[str] = NAMES) -> pl.DataFrame:
    """``id`` plus one Int64 column per hostile name (values 0, 1, 2 + the column's position)."""
    data: dict[str, list[int]] = {"id": [0, 1, 2]}
    for i, name in enumerate(names):
        data[name] = [i, i + 1, i + 2]
    return pl.DataFrame(data)


def _float_bits(value: float) -> bytes:
    if math.isnan(value):
        return b"nan"
    return struct.pack(">d", value)


def same_value(a: Any, b: Any) -> bool:
    """Equality that tells ``-0.0`` from ``0.0``, NaN equals NaN, and types matter
    (``1`` is not ``True``, ``Decimal('1.10')`` is not ``Decimal('1.1')``)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, float) and isinstance(b, float) and _float_bits(a) == _float_bits(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, dt.datetime):
        return a == b and a.utcoffset() == b.utcoffset()
    return bool(a == b)


def _cast_back(name: str, have: Any, want: Any) -> pl.Expr:
    """A column read back in another type, as the expected type (text parsed as ISO 8601)."""
    col = pl.col(name)
    if have == want:
        return col
    if have == pl.String and isinstance(want, pl.Datetime):
        return col.str.to_datetime(time_unit=want.time_unit, time_zone=want.time_zone)
    if have == pl.String and want == pl.Date:
        return col.str.to_date()
    if have == pl.String and want == pl.Time:
        return col.str.to_time("%H:%M:%S%.f")
    if isinstance(have, pl.Datetime) and isinstance(want, pl.Datetime) and have.time_zone:
        return col.dt.convert_time_zone(want.time_zone or "UTC").cast(want)
    return col.cast(want)


def assert_same(
    expected: pl.DataFrame,
    actual: Any,
    *,
    values_only: Iterable[str] = (),
    label: str = "",
) -> None:
    """``actual`` (any frame polars can take) holds exactly ``expected``'s values.

    Rows are matched by ``id``. Column names and order must match, and dtypes, except for the
    columns in ``values_only`` (a format that stores no such type, e.g. CSV): those are first
    cast (text parsed) to the expected dtype, and the values must still come back exactly.
    Reports every differing cell.
    """
    got = actual if isinstance(actual, pl.DataFrame) else pl.DataFrame(actual)
    where = f"{label}: " if label else ""
    assert got.columns == expected.columns, f"{where}columns {got.columns} != {expected.columns}"
    loose = set(values_only)
    differing = {
        n: (str(got.schema[n]), str(t))
        for n, t in expected.schema.items()
        if got.schema[n] != t and n not in loose
    }
    assert not differing, f"{where}dtypes changed (got, expected): {differing}"
    got = got.with_columns(
        _cast_back(n, got.schema[n], t) for n, t in expected.schema.items() if n in loose
    )
    assert got.height == expected.height, f"{where}{got.height} rows, expected {expected.height}"
    got = got.sort("id")
    problems: list[str] = []
    for name in expected.columns:
        mine, theirs = got[name], expected[name]
        if getattr(theirs.dtype, "time_unit", None) == "ns":  # Python datetimes stop at micros
            mine, theirs = mine.to_physical(), theirs.to_physical()
        for i, (a, b) in enumerate(zip(mine.to_list(), theirs.to_list(), strict=True)):
            if not same_value(a, b):
                problems.append(f"{name}[id={i}]: got {a!r:.80}, expected {b!r:.80}")
    assert not problems, (
        where + f"{len(problems)} value(s) changed:\n  " + "\n  ".join(problems[:40])
    )
