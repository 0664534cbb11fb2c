"""One vocabulary of type names: a name -> one logical type -> its type on every engine.

Every place a user writes a type goes through :func:`parse_type`: source ``schema_overrides``,
streaming ``payload_schema``, ``SchemaField``, ``DataTypeConverter``, ``CAST`` in expressions,
and the type names a storage backend keeps beside its data. The result is a :class:`DataType`,
which knows its dtype on each engine (:meth:`~DataType.polars`, :meth:`~DataType.arrow`,
:meth:`~DataType.pandas`, :meth:`~DataType.narwhals`, :meth:`~DataType.duckdb`,
:meth:`~DataType.spark`) and its column type in each SQL dialect (:meth:`~DataType.sql`).
:func:`from_polars`, :func:`from_arrow` and :func:`from_narwhals` go the other way.

Names are case-insensitive; spaces inside brackets and parentheses do not matter:

==================  =========================================================================
logical type        names
==================  =========================================================================
int8 ... int64      ``int8`` ``tinyint``, ``int16`` ``smallint``, ``int32``,
                    ``int64`` ``int`` ``integer`` ``bigint`` ``long``
uint8 ... uint64    ``uint8`` ``uint16`` ``uint32`` ``uint64``
float32             ``float32`` ``real`` ``float4``
float64             ``float64`` ``float`` ``double`` ``double precision`` ``float8``
                    ``number``
decimal(p,s)        ``decimal`` ``numeric`` (38, 9), ``decimal(p)`` (scale 0),
                    ``decimal(p,s)``
bool                ``bool`` ``boolean``
string              ``string`` ``str`` ``text`` ``utf8`` ``varchar`` ``varchar(n)``
                    ``char(n)``
binary              ``binary`` ``bytes`` ``blob`` ``bytea`` ``varbinary``
date                ``date``
time                ``time``
datetime            ``datetime`` ``timestamp`` (naive, microseconds), ``datetime[ms]``,
                    ``datetime[us, UTC]``, ``timestamptz`` / ``timestamp with time zone``
                    (UTC)
duration            ``duration`` ``interval`` ``timedelta``, ``duration[ms]``
category            ``category`` ``categorical`` ``dictionary``
==================  =========================================================================

``int`` and ``integer`` are 64-bit (``int32`` is the 32-bit one): a user who writes ``int``
means "a whole number", and 32 bits overflow on ordinary ids and cents. The names Polars prints
(``Int64``, ``Datetime(time_unit='us', time_zone='UTC')``, ``Decimal(precision=10, scale=2)``)
are read too, so type names stored by earlier versions keep working.

Example:
    >>> t = parse_type("decimal(10, 2)")
    >>> t.name, t.sql("postgresql"), t.duckdb(), t.spark()
    ('decimal(10,2)', 'NUMERIC(10, 2)', 'DECIMAL(10,2)', 'decimal(10,2)')
    >>> parse_type("timestamp with time zone").name
    'datetime[us, UTC]'
    >>> parse_type("Int64") == parse_type("bigint") == parse_type("int")
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from data_pipeline.core.errors import ConfigError, UnsupportedOperationError

__all__ = [
    "DIALECTS",
    "KINDS",
    "TYPE_NAMES",
    "DataType",
    "check_type_name",
    "from_arrow",
    "from_narwhals",
    "from_polars",
    "parse_type",
    "type_error_text",
    "type_table",
]

#: logical kinds
KINDS: tuple[str, ...] = (
    "int",
    "uint",
    "float",
    "decimal",
    "bool",
    "string",
    "binary",
    "date",
    "time",
    "datetime",
    "duration",
    "category",
)
#: SQL dialects :meth:`DataType.sql` writes
DIALECTS: tuple[str, ...] = ("postgresql", "mysql", "sqlite", "duckdb", "generic")

DEFAULT_PRECISION = 38
DEFAULT_SCALE = 9
_UNITS = ("ns", "us", "ms")


@dataclass(frozen=True)
class DataType:
    """A logical type: ``kind`` plus its width, precision/scale or unit/time zone."""

    kind: str
    bits: int | None = None
    precision: int | None = None
    scale: int | None = None
    unit: str | None = None
    time_zone: str | None = None

    # -- names ---------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The canonical name (what :func:`parse_type` reads back to this type)."""
        if self.kind in ("int", "uint", "float"):
            return f"{self.kind}{self.bits}"
        if self.kind == "decimal":
            return f"decimal({self.precision},{self.scale})"
        if self.kind == "datetime":
            if self.time_zone:
                return f"datetime[{self.unit}, {self.time_zone}]"
            return "datetime" if self.unit == "us" else f"datetime[{self.unit}]"
        if self.kind == "duration":
            return "duration" if self.unit == "us" else f"duration[{self.unit}]"
        return self.kind

    def __str__(self) -> str:
        return self.name

    @property
    def is_integer(self) -> bool:
        return self.kind in ("int", "uint")

    @property
    def is_numeric(self) -> bool:
        return self.kind in ("int", "uint", "float", "decimal")

    @property
    def is_temporal(self) -> bool:
        return self.kind in ("date", "time", "datetime", "duration")

    def integer_range(self) -> tuple[int, int]:
        """The smallest and largest value of an integer type."""
        assert self.bits is not None and self.is_integer
        if self.kind == "uint":
            return 0, 2**self.bits - 1
        return -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1

    def widens_to(self, other: DataType) -> bool:
        """True when every value of this type is a value of ``other`` (same type or wider)."""
        if self == other:
            return True
        if self.is_integer and other.is_integer:
            low, high = self.integer_range()
            other_low, other_high = other.integer_range()
            return other_low <= low and high <= other_high
        if self.is_integer and other.kind == "float":  # exactly: 24 and 53 bits of mantissa
            assert self.bits is not None
            return self.bits <= (16 if other.bits == 32 else 32)
        if self.is_integer and other.kind == "decimal":
            assert other.precision is not None and other.scale is not None
            digits = len(str(max(abs(v) for v in self.integer_range())))
            return other.precision - other.scale >= digits
        if self.kind == "float" and other.kind == "float":
            assert self.bits is not None and other.bits is not None
            return self.bits <= other.bits
        if self.kind == "decimal" and other.kind == "decimal":
            assert self.precision is not None and self.scale is not None
            assert other.precision is not None and other.scale is not None
            return (
                other.scale >= self.scale
                and other.precision - other.scale >= self.precision - self.scale
            )
        if self.kind == "date" and other.kind == "datetime":
            return other.time_zone is None
        if self.kind == other.kind and self.kind in ("datetime", "duration"):
            return self.time_zone == other.time_zone  # the unit is storage, not meaning
        return False

    # -- engines -------------------------------------------------------------------------------

    def polars(self) -> Any:
        """The Polars dtype."""
        import polars as pl

        if self.kind in ("int", "uint", "float"):
            prefix = {"int": "Int", "uint": "UInt", "float": "Float"}[self.kind]
            return getattr(pl, f"{prefix}{self.bits}")
        if self.kind == "decimal":
            return pl.Decimal(self.precision, self.scale or 0)
        if self.kind == "datetime":
            return pl.Datetime(self.unit, self.time_zone)  # type: ignore[arg-type]
        if self.kind == "duration":
            return pl.Duration(self.unit)  # type: ignore[arg-type]
        return {
            "bool": pl.Boolean,
            "string": pl.String,
            "binary": pl.Binary,
            "date": pl.Date,
            "time": pl.Time,
            "category": pl.Categorical,
        }[self.kind]

    def arrow(self) -> Any:
        """The PyArrow type (strings as ``large_string``, as Polars writes them; any Arrow
        string or binary layout reads back as the same logical type)."""
        import pyarrow as pa

        if self.kind in ("int", "uint"):
            return getattr(pa, f"{self.kind}{self.bits}")()
        if self.kind == "float":
            return pa.float32() if self.bits == 32 else pa.float64()
        if self.kind == "decimal":
            assert self.precision is not None and self.scale is not None
            return pa.decimal128(self.precision, self.scale)
        if self.kind == "datetime":
            return pa.timestamp(self.unit, tz=self.time_zone)  # type: ignore[arg-type]
        if self.kind == "duration":
            return pa.duration(self.unit)  # type: ignore[arg-type]
        return {
            "bool": pa.bool_(),
            "string": pa.large_string(),
            "binary": pa.binary(),
            "date": pa.date32(),
            "time": pa.time64("us"),
            "category": pa.dictionary(pa.uint32(), pa.large_string()),
        }[self.kind]

    def pandas(self, *, nullable: bool = True) -> str:
        """The pandas dtype name: numpy where it holds the values, pandas' nullable or Arrow
        dtypes where numpy cannot (ints and bools with nulls, dates, decimals, times)."""
        if self.kind in ("int", "uint"):
            name = f"{self.kind}{self.bits}"
            return name.capitalize().replace("Uint", "UInt") if nullable else name
        if self.kind == "float":
            return f"float{self.bits}"
        if self.kind == "bool":
            return "boolean" if nullable else "bool"
        if self.kind == "datetime":
            return (
                f"datetime64[{self.unit}, {self.time_zone}]"
                if self.time_zone
                else f"datetime64[{self.unit}]"
            )
        if self.kind == "duration":
            return f"timedelta64[{self.unit}]"
        if self.kind == "decimal":
            return f"decimal128({self.precision}, {self.scale})[pyarrow]"
        return {
            "string": "str",
            "binary": "binary[pyarrow]",
            "date": "date32[pyarrow]",
            "time": "time64[us][pyarrow]",
            "category": "category",
        }[self.kind]

    def narwhals(self) -> Any:
        """The Narwhals dtype (what transformers and expressions cast to)."""
        import narwhals as nw

        if self.kind in ("int", "uint", "float"):
            prefix = {"int": "Int", "uint": "UInt", "float": "Float"}[self.kind]
            return getattr(nw, f"{prefix}{self.bits}")
        if self.kind == "decimal":
            return nw.Decimal(self.precision, self.scale or 0)
        if self.kind == "datetime":
            return nw.Datetime(self.unit, self.time_zone)  # type: ignore[arg-type]
        if self.kind == "duration":
            return nw.Duration(self.unit)  # type: ignore[arg-type]
        return {
            "bool": nw.Boolean,
            "string": nw.String,
            "binary": nw.Binary,
            "date": nw.Date,
            "time": nw.Time,
            "category": nw.Categorical,
        }[self.kind]

    def duckdb(self) -> str:
        """The DuckDB column type."""
        return self.sql("duckdb")

    def spark(self) -> str:
        """The Spark SQL type (``CAST(x AS <this>)``, ``DataFrame.schema`` DDL).

        Spark has no unsigned integers (each takes the next wider signed type; ``uint64`` a
        ``decimal(20,0)``) and keeps no time zone in a column: ``datetime[us, <zone>]`` is
        ``timestamp`` (an instant shown in the session zone), naive ``datetime`` is
        ``timestamp_ntz``.
        """
        if self.kind == "int":
            return {8: "tinyint", 16: "smallint", 32: "int", 64: "bigint"}[self.bits or 64]
        if self.kind == "uint":
            return {8: "smallint", 16: "int", 32: "bigint", 64: "decimal(20,0)"}[self.bits or 64]
        if self.kind == "float":
            return "float" if self.bits == 32 else "double"
        if self.kind == "decimal":
            return f"decimal({self.precision},{self.scale})"
        if self.kind == "datetime":
            return "timestamp" if self.time_zone else "timestamp_ntz"
        return {
            "bool": "boolean",
            "string": "string",
            "binary": "binary",
            "date": "date",
            "time": "time(6)",
            "duration": "interval day to second",
            "category": "string",
        }[self.kind]

    def sql(self, dialect: str, *, is_key: bool = False) -> str:
        """The column type in ``dialect`` (postgresql, mysql, sqlite, duckdb, generic).

        ``is_key``: the column is part of a key (MySQL/MariaDB index a ``VARCHAR(255)``, not a
        ``LONGTEXT``). Booleans are ``INTEGER`` in SQLite, durations a count of microseconds
        (``BIGINT``) except in DuckDB (``INTERVAL``), and a time zone is kept only where the
        database has a zoned type (PostgreSQL ``TIMESTAMPTZ``, DuckDB ``TIMESTAMPTZ``); MySQL and
        SQLite store such values in UTC.
        """
        if dialect == "mariadb":
            dialect = "mysql"
        if dialect not in DIALECTS:
            raise ConfigError(f"unknown SQL dialect {dialect!r}", hint=f"use one of {DIALECTS}")
        pg, my, lite, duck = (dialect == d for d in ("postgresql", "mysql", "sqlite", "duckdb"))
        kind, bits = self.kind, self.bits
        if kind == "bool":
            return "INTEGER" if lite else "BOOLEAN"
        if kind == "int":
            if lite:
                return "INTEGER"
            if duck:
                return {8: "TINYINT", 16: "SMALLINT", 32: "INTEGER", 64: "BIGINT"}[bits or 64]
            return {8: "SMALLINT", 16: "SMALLINT", 32: "INTEGER", 64: "BIGINT"}[bits or 64]
        if kind == "uint":
            if lite:
                return "INTEGER"
            if duck:
                return {8: "UTINYINT", 16: "USMALLINT", 32: "UINTEGER", 64: "UBIGINT"}[bits or 64]
            if bits == 64:
                return "DECIMAL(20, 0)" if my else "NUMERIC(20, 0)"
            return {8: "SMALLINT", 16: "INTEGER", 32: "BIGINT"}[bits or 32]
        if kind == "float":
            if bits == 32:
                return "FLOAT" if my or duck else "REAL"
            return "REAL" if lite else "DOUBLE" if my or duck else "DOUBLE PRECISION"
        if kind == "decimal":
            if lite:
                return "REAL"
            word = "NUMERIC" if pg else "DECIMAL"
            sep = "," if duck else ", "
            return f"{word}({self.precision}{sep}{self.scale})"
        if kind == "date":
            return "DATE"
        if kind == "time":
            return "TIME(6)" if my else "TIME"
        if kind == "datetime":
            if my:
                return "DATETIME(6)"
            if pg or duck:
                return "TIMESTAMPTZ" if self.time_zone else "TIMESTAMP"
            return "TIMESTAMP"
        if kind == "duration":
            return "INTERVAL" if duck else "INTEGER" if lite else "BIGINT"
        if kind == "binary":
            return "BLOB" if lite or duck else "BYTEA" if pg else "LONGBLOB" if my else "BLOB"
        # strings and categories
        if my:
            return "VARCHAR(255)" if is_key else "LONGTEXT"
        if duck:
            return "VARCHAR"
        return "TEXT" if (pg or lite) else "VARCHAR(255)" if is_key else "TEXT"


# -- the parser -----------------------------------------------------------------------------------

_SIMPLE: dict[str, DataType] = {}


def _add(names: str, dtype: DataType) -> None:
    for name in names.split():
        _SIMPLE[name.replace("_", " ")] = dtype


_add("int8 tinyint byte", DataType("int", 8))
_add("int16 smallint short", DataType("int", 16))
_add("int32", DataType("int", 32))
_add("int64 int integer bigint long", DataType("int", 64))
_add("uint8", DataType("uint", 8))
_add("uint16", DataType("uint", 16))
_add("uint32", DataType("uint", 32))
_add("uint64", DataType("uint", 64))
_add("float32 real float4", DataType("float", 32))
_add("float64 float double double_precision float8 number", DataType("float", 64))
_add("bool boolean", DataType("bool"))
_add("string str text utf8 varchar char large_string large_utf8", DataType("string"))
_add("binary bytes blob bytea varbinary", DataType("binary"))
_add("date date32", DataType("date"))
_add("time", DataType("time"))
_add("category categorical dictionary enum", DataType("category"))
_add("datetime timestamp timestamp_ntz", DataType("datetime", unit="us"))
_add(
    "timestamptz timestamp_with_time_zone timestamp_ltz",
    DataType("datetime", unit="us", time_zone="UTC"),
)
_add("duration interval timedelta", DataType("duration", unit="us"))
_add("decimal numeric", DataType("decimal", precision=DEFAULT_PRECISION, scale=DEFAULT_SCALE))

_DECIMAL = re.compile(r"^(?:decimal|numeric)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)$")
_SIZED_TEXT = re.compile(r"^(?:varchar|char|character varying|character)\s*\(\s*\d+\s*\)$")
_BRACKETED = re.compile(
    r"^(datetime|timestamp|duration)\s*\[\s*(\w+)\s*(?:,\s*([^\]]+?)\s*)?\]$", re.IGNORECASE
)
# the names Polars prints: Datetime(time_unit='us', time_zone='UTC'), Decimal(precision=10, ...)
_POLARS_TIMED = re.compile(
    r"^(datetime|duration)\(time_unit=['\"](\w+)['\"]"
    r"(?:,\s*time_zone=(?:['\"]([^'\"]*)['\"]|None))?\)$",
    re.IGNORECASE,
)
_POLARS_DECIMAL = re.compile(r"^decimal\(precision=(\d+|none),\s*scale=(\d+)\)$")

#: every plain name :func:`parse_type` reads (plus the parametrised forms in the module docs)
TYPE_NAMES: tuple[str, ...] = tuple(sorted(_SIMPLE))


def _bad(name: Any, why: str = "") -> ConfigError:
    shown = "int64, int32, float64, decimal(10,2), bool, string, date, datetime, datetime[us, UTC]"
    return ConfigError(
        f"unknown type {name!r}{why}",
        hint=f"use a type name such as {shown} (docs/semantics.md lists them all)",
    )


def parse_type(name: str | DataType) -> DataType:
    """The logical type a name means; :class:`ConfigError` naming it when it means none.

    Example:
        >>> parse_type("datetime[ms, Europe/Paris]")
        DataType(kind='datetime', bits=None, precision=None, scale=None, unit='ms', time_zone='Europe/Paris')
    """
    if isinstance(name, DataType):
        return name
    if not isinstance(name, str):
        raise _bad(name, " (a type name is a string)")
    text = " ".join(name.strip().split())
    lower = text.lower().replace("_", " ")
    simple = _SIMPLE.get(lower)
    if simple is not None:
        return simple
    lower = text.lower()
    if m := _DECIMAL.match(lower):
        precision = int(m.group(1))
        scale = int(m.group(2) or 0)
        if not 1 <= precision <= 38 or scale > precision:
            raise _bad(name, f": precision must be 1 to 38 and scale 0 to precision ({precision})")
        return DataType("decimal", precision=precision, scale=scale)
    if _SIZED_TEXT.match(lower):
        return DataType("string")
    m = _BRACKETED.match(text) or _POLARS_TIMED.match(text.replace(" ", ""))
    if m:
        kind = "duration" if m.group(1).lower() == "duration" else "datetime"
        unit = m.group(2).lower()
        if unit not in _UNITS:
            raise _bad(name, f": the unit must be one of {', '.join(_UNITS)}")
        zone = m.group(3)
        if kind == "duration" and zone:
            raise _bad(name, ": a duration has no time zone")
        return DataType(kind, unit=unit, time_zone=_zone(zone, name) if zone else None)
    if m := _POLARS_DECIMAL.match(lower):
        precision = DEFAULT_PRECISION if m.group(1) == "none" else int(m.group(1))
        return DataType("decimal", precision=precision, scale=int(m.group(2)))
    raise _bad(name)


def _zone(zone: str, name: Any) -> str:
    import zoneinfo

    if zone.upper() in ("UTC", "Z", "ETC/UTC"):
        return "UTC"
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _bad(
            name, f": unknown time zone {zone!r} (use an IANA name such as 'Europe/Paris')"
        ) from None
    return zone


def check_type_name(name: str) -> str:
    """Config validator body: the name if :func:`parse_type` reads it, else ``ValueError``."""
    try:
        parse_type(name)
    except ConfigError as exc:
        raise ValueError(type_error_text(exc)) from None
    return name


def type_error_text(exc: ConfigError) -> str:
    """The one-line text of a :func:`parse_type` error, for a config validator."""
    return f"{exc.detail}; {exc.hint}" if exc.hint else exc.detail


# -- the other way: an engine's dtype -> the logical type ----------------------------------------


def from_polars(dtype: Any) -> DataType:
    """The logical type of a Polars dtype (``Null`` and ``Object``: unsupported)."""
    import polars as pl

    if isinstance(dtype, pl.Datetime):
        return DataType("datetime", unit=dtype.time_unit, time_zone=_tz(dtype.time_zone))
    if isinstance(dtype, pl.Duration):
        return DataType("duration", unit=dtype.time_unit)
    if isinstance(dtype, pl.Decimal):
        return DataType(
            "decimal", precision=dtype.precision or DEFAULT_PRECISION, scale=dtype.scale
        )
    if isinstance(dtype, (pl.Categorical, pl.Enum)) or dtype in (pl.Categorical, pl.Enum):
        return DataType("category")
    simple: dict[Any, DataType] = {
        pl.Int8: DataType("int", 8),
        pl.Int16: DataType("int", 16),
        pl.Int32: DataType("int", 32),
        pl.Int64: DataType("int", 64),
        pl.UInt8: DataType("uint", 8),
        pl.UInt16: DataType("uint", 16),
        pl.UInt32: DataType("uint", 32),
        pl.UInt64: DataType("uint", 64),
        pl.Float32: DataType("float", 32),
        pl.Float64: DataType("float", 64),
        pl.Boolean: DataType("bool"),
        pl.String: DataType("string"),
        pl.Binary: DataType("binary"),
        pl.Date: DataType("date"),
        pl.Time: DataType("time"),
    }
    for klass, logical in simple.items():
        if dtype == klass:
            return logical
    if dtype == pl.Int128:
        raise UnsupportedOperationError(
            "Int128 has no logical type here", hint="cast it to int64 or decimal(38,0) first"
        )
    raise UnsupportedOperationError(
        f"the Polars type {dtype} has no logical type here",
        hint="nested, null and object columns are kept as they are; convert them first",
    )


def _tz(zone: str | None) -> str | None:
    if zone is None:
        return None
    return "UTC" if zone.upper() in ("UTC", "ETC/UTC", "Z", "+00:00") else zone


def from_arrow(dtype: Any) -> DataType:
    """The logical type of a PyArrow type."""
    import pyarrow as pa

    t = pa.types
    if t.is_dictionary(dtype):
        return DataType("category")
    if t.is_timestamp(dtype):
        return DataType("datetime", unit=_unit(dtype.unit), time_zone=_tz(dtype.tz))
    if t.is_duration(dtype):
        return DataType("duration", unit=_unit(dtype.unit))
    if t.is_decimal(dtype):
        return DataType("decimal", precision=dtype.precision, scale=dtype.scale)
    if t.is_signed_integer(dtype):
        return DataType("int", dtype.bit_width)
    if t.is_unsigned_integer(dtype):
        return DataType("uint", dtype.bit_width)
    if t.is_floating(dtype):
        if dtype.bit_width == 16:
            return DataType("float", 32)
        return DataType("float", dtype.bit_width)
    if t.is_boolean(dtype):
        return DataType("bool")
    if t.is_string(dtype) or t.is_large_string(dtype) or t.is_string_view(dtype):
        return DataType("string")
    if t.is_binary(dtype) or t.is_large_binary(dtype) or t.is_binary_view(dtype):
        return DataType("binary")
    if t.is_fixed_size_binary(dtype):
        return DataType("binary")
    if t.is_date(dtype):
        return DataType("date")
    if t.is_time(dtype):
        return DataType("time")
    raise UnsupportedOperationError(
        f"the Arrow type {dtype} has no logical type here",
        hint="nested and null columns are kept as they are; convert them first",
    )


def _unit(unit: str) -> str:
    return "ms" if unit == "s" else unit


def from_narwhals(dtype: Any) -> DataType:
    """The logical type of a Narwhals dtype."""
    import narwhals as nw

    if isinstance(dtype, nw.Datetime) or dtype == nw.Datetime:
        unit = getattr(dtype, "time_unit", "us")
        return DataType(
            "datetime", unit=_unit(unit), time_zone=_tz(getattr(dtype, "time_zone", None))
        )
    if isinstance(dtype, nw.Duration) or dtype == nw.Duration:
        return DataType("duration", unit=_unit(getattr(dtype, "time_unit", "us")))
    if isinstance(dtype, nw.Decimal) or dtype == nw.Decimal:
        precision = getattr(dtype, "precision", None) or DEFAULT_PRECISION
        scale = getattr(dtype, "scale", None) or 0
        return DataType("decimal", precision=precision, scale=scale)
    names = {
        "Int8": ("int", 8),
        "Int16": ("int", 16),
        "Int32": ("int", 32),
        "Int64": ("int", 64),
        "UInt8": ("uint", 8),
        "UInt16": ("uint", 16),
        "UInt32": ("uint", 32),
        "UInt64": ("uint", 64),
        "Float32": ("float", 32),
        "Float64": ("float", 64),
    }
    for name, (kind, bits) in names.items():
        if dtype == getattr(nw, name):
            return DataType(kind, bits)
    simple = {
        nw.Boolean: "bool",
        nw.String: "string",
        nw.Binary: "binary",
        nw.Date: "date",
        nw.Time: "time",
        nw.Categorical: "category",
        nw.Enum: "category",
    }
    for klass, kind in simple.items():
        if dtype == klass:
            return DataType(kind)
    raise UnsupportedOperationError(
        f"the type {dtype} has no logical type here",
        hint="nested, null and object columns are kept as they are; convert them first",
    )


# -- the published table -------------------------------------------------------------------------

_TABLE_TYPES = (
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float32",
    "float64",
    "decimal(10,2)",
    "bool",
    "string",
    "binary",
    "date",
    "time",
    "datetime",
    "datetime[us, UTC]",
    "duration",
    "category",
)


def type_table() -> list[dict[str, str]]:
    """One row per logical type: its type on each engine and SQL dialect (docs/semantics.md)."""
    rows = []
    for name in _TABLE_TYPES:
        t = parse_type(name)
        polars = str(t.polars())
        rows.append(
            {
                "type": t.name,
                "polars": polars,
                "arrow": str(t.arrow()),
                "pandas": t.pandas(nullable=False)
                + (f" ({t.pandas()} with nulls)" if t.pandas() != t.pandas(nullable=False) else ""),
                "duckdb": t.duckdb(),
                "spark": t.spark(),
                "postgresql": t.sql("postgresql"),
                "mysql": t.sql("mysql"),
                "sqlite": t.sql("sqlite"),
            }
        )
    return rows
