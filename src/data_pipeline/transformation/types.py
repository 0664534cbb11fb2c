"""DataTypeConverter: convert columns to int, float, decimal, bool, string, date, datetime, category.

Values that cannot be converted are found with Narwhals expressions (a pattern check on text,
a range/integrality check on numbers), so the behaviour is the same on every engine and never
depends on how a backend's own cast fails.
"""

from __future__ import annotations

import decimal
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import narwhals as nw
from pydantic import Field, field_validator, model_validator

from data_pipeline.core.component import Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.engines import engine_of
from data_pipeline.core.errors import ConfigError, DataTypeError, UnsupportedOperationError
from data_pipeline.core.expr import round_decimal, round_float
from data_pipeline.core.frames import is_lazy
from data_pipeline.core.secrets import DATA_KEYS
from data_pipeline.core.types import parse_type, type_error_text
from data_pipeline.transformation._common import (
    collect_row,
    count_true,
    nan_is_null,
    schema_of,
    unsupported,
)
from data_pipeline.transformation.base import DataFrameTransformer

__all__ = ["DataTypeConverter", "TypeSpec"]

ErrorMode = Literal["raise", "coerce", "reject"]

#: the logical kinds a column converts to (any name of :mod:`data_pipeline.core.types` that means
#: one of them: ``integer``, ``double``, ``text``, ``timestamp``, ``decimal(10,2)``, ...)
TARGET_KINDS = ("int", "uint", "float", "decimal", "bool", "string", "date", "datetime", "category")

_INTS: dict[str, tuple[Any, int, int]] = {
    name: (parse_type(name).narwhals(), *parse_type(name).integer_range())
    for name in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
}
_FLOATS = {"float64": nw.Float64, "float32": nw.Float32}
_PANDAS_INTS = {name: parse_type(name).pandas() for name in _INTS}
_TRUE = ["true", "t", "yes", "y", "1"]
_FALSE = ["false", "f", "no", "n", "0"]
_INT_TEXT = r"^[+-]?\d{1,19}$"
_FLOAT_TEXT = r"(?i)^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|inf|infinity|nan)$"
_DECIMAL_TEXT = r"^[+-]?(?:\d+\.?\d*|\.\d+)$"
_DEFAULT_DATE = "%Y-%m-%d"
_DEFAULT_DATETIME = "%Y-%m-%d %H:%M:%S"
_UTC_NAMES = ("UTC", "Etc/UTC")
_FINER_THAN_US = r"\.\d{7,}"  # a fraction of a second of more than 6 digits


def _duckdb_zone(frame: Any) -> str | None:
    """The time zone of a DuckDB relation's connection (``TimeZone``), as Narwhals reads it."""
    try:
        from narwhals._duckdb.utils import fetch_rel_time_zone

        return str(fetch_rel_time_zone(frame.to_native()))
    except Exception:  # another Narwhals, or a relation that cannot say: Narwhals decides
        return None


def _spark_zone(frame: Any) -> str | None:
    """The session time zone of a Spark frame, by the name Narwhals compares zones with (it
    reads ``spark.sql.session.timeZone`` once per session)."""
    try:
        session = frame.to_native().sparkSession
        try:
            from narwhals._spark_like.utils import fetch_session_time_zone
        except ImportError:  # another Narwhals: the setting itself
            return str(session.conf.get("spark.sql.session.timeZone"))
        return str(fetch_session_time_zone(session))
    except Exception:  # a conf that cannot be read: Narwhals decides
        return None


_DIRECTIVES = {
    "Y": r"\d{4}",
    "y": r"\d{2}",
    "m": r"(?:0?[1-9]|1[0-2])",
    "d": r"(?:0?[1-9]|[12]\d|3[01])",
    "e": r"(?: ?[1-9]|[12]\d|3[01])",
    "H": r"(?:[01]?\d|2[0-3])",
    "I": r"(?:0?[1-9]|1[0-2])",
    "M": r"[0-5]\d",
    "S": r"(?:[0-5]\d|60)",
    "f": r"\d{1,6}",  # microseconds at most: a finer value is bad, never rounded
    "j": r"\d{3}",
    "b": r"[A-Za-z]{3}",
    "B": r"[A-Za-z]+",
    "a": r"[A-Za-z]{3}",
    "A": r"[A-Za-z]+",
    "p": r"(?:AM|PM|am|pm)",
    "z": r"(?:[+-]\d{2}:?\d{2}|Z)",
    "%": "%",
}


# Spark's datetime patterns (``MM``, ``dd``, ...) take exactly two digits: a shorter value
# fails the whole query there, so on Spark it is a bad value found before parsing
_STRICT = {
    "m": r"(?:0[1-9]|1[0-2])",
    "d": r"(?:0[1-9]|[12]\d|3[01])",
    "H": r"(?:[01]\d|2[0-3])",
    "I": r"(?:0[1-9]|1[0-2])",
}


def format_pattern(fmt: str, *, strict: bool = False) -> str:
    """A regular expression that a value must match to be parsed with strftime format ``fmt``.

    ``strict``: two-digit fields must have both digits (for Spark).
    """
    out = []
    i = 0
    while i < len(fmt):
        char = fmt[i]
        if char == "%":
            if i + 1 >= len(fmt) or fmt[i + 1] not in _DIRECTIVES:
                directive = fmt[i : i + 2]
                raise ValueError(
                    f"format {fmt!r}: unsupported directive {directive!r} "
                    f"(supported: {', '.join('%' + d for d in _DIRECTIVES)})"
                )
            directive = fmt[i + 1]
            out.append(
                _STRICT[directive] if strict and directive in _STRICT else _DIRECTIVES[directive]
            )
            i += 2
        else:
            out.append(re.escape(char))
            i += 1
    return "^" + "".join(out) + "$"


_DATE_PARTS = {
    "Y": "year",
    "y": "year",
    "m": "month",
    "b": "month",
    "B": "month",
    "d": "day",
    "e": "day",
}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


def date_groups(fmt: str, *, strict: bool = False) -> tuple[str, dict[str, tuple[int, str]]]:
    """``format_pattern(fmt)`` with the first year, month and day directives captured.

    Returns the pattern and ``{"year"|"month"|"day": (group number, directive)}``.
    """
    out = []
    groups: dict[str, tuple[int, str]] = {}
    i = 0
    while i < len(fmt):
        if fmt[i] == "%":
            directive = fmt[i + 1]  # validated by format_pattern
            part = _DATE_PARTS.get(directive)
            regex = (
                _STRICT[directive] if strict and directive in _STRICT else _DIRECTIVES[directive]
            )
            if part is not None and part not in groups:
                groups[part] = (len(groups) + 1, directive)
                regex = f"({regex})"
            out.append(regex)
            i += 2
        else:
            out.append(re.escape(fmt[i]))
            i += 1
    return "^" + "".join(out) + "$", groups


class TypeSpec(ConfigModel):
    """One column's target: ``{"type": "datetime", "format": "%d/%m/%Y %H:%M", "time_zone": "UTC"}``.

    ``type`` is any type name (one vocabulary, docs/semantics.md); after validation it holds the
    canonical name of the kind (``int64``, ``uint8``, ``float32``, ``decimal``, ``datetime``,
    ...), with a decimal's precision and scale and a datetime's zone in their own fields.
    """

    type: str
    """The target type name: ``int8``-``int64`` (``int``/``bigint``: 64-bit),
    ``uint8``-``uint64``, ``float32``, ``float``/``float64``, ``decimal`` or ``decimal(p,s)``,
    ``bool``, ``string``, ``date``, ``datetime`` (``datetime[us, UTC]`` zoned), ``category``."""
    format: str | None = None
    """``date``/``datetime`` from text only: a strftime pattern (``%d/%m/%Y %H:%M``; directives
    ``%Y %y %m %d %e %H %I %M %S %f %j %b %B %a %A %p %z``). Absent: ``%Y-%m-%d``, and for
    datetimes ``%Y-%m-%d %H:%M:%S`` (also with ``T``, without seconds, or a date alone)."""
    time_zone: str | None = None
    """``datetime`` only: an IANA zone (``Europe/Paris``, ``UTC``) the column gets: naive values
    are read as local times there, aware ones (``%z``) converted to it. Absent: naive stays
    naive."""
    precision: int = Field(default=38, ge=1, le=38)
    """``decimal`` only: total digits (1-38); a value with more digits before the point than
    ``precision - scale`` is bad. ``decimal(p,s)`` in ``type`` sets it too."""
    scale: int = Field(default=9, ge=0, le=38)
    """``decimal`` only: digits after the point (at most ``precision``); values are rounded
    to it."""

    @model_validator(mode="before")
    @classmethod
    def _vocabulary(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            return data
        try:
            target = parse_type(data["type"])
        except ConfigError as exc:
            raise ValueError(type_error_text(exc)) from None
        if target.kind not in TARGET_KINDS:
            raise ValueError(
                f"cannot convert to {target.name}: the targets are int8-int64, uint8-uint64, "
                "float32, float64, decimal, bool, string, date, datetime, category"
            )
        data = dict(data)
        if target.kind == "decimal":
            if "(" in data["type"]:
                for key, value in (("precision", target.precision), ("scale", target.scale)):
                    if data.get(key, value) != value:
                        raise ValueError(f"{key} {data[key]} contradicts the type {target.name}")
                    data[key] = value
            data["type"] = "decimal"
        elif target.kind == "datetime":
            if target.time_zone is not None:
                if data.get("time_zone", target.time_zone) != target.time_zone:
                    raise ValueError(
                        f"time_zone {data['time_zone']!r} contradicts the type {target.name}"
                    )
                data["time_zone"] = target.time_zone
            data["type"] = "datetime"
        else:
            data["type"] = target.name
        return data

    @model_validator(mode="after")
    def _check(self) -> TypeSpec:
        if self.format is not None:
            if self.type not in ("date", "datetime"):
                raise ValueError(f"'format' only applies to date and datetime, not {self.type!r}")
            format_pattern(self.format)
        if self.time_zone is not None:
            if self.type != "datetime":
                raise ValueError("'time_zone' only applies to datetime")
            import zoneinfo

            try:
                zoneinfo.ZoneInfo(self.time_zone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"unknown time zone {self.time_zone!r} (use an IANA name such as 'Europe/Paris')"
                ) from None
        if self.scale > self.precision:
            raise ValueError(f"scale ({self.scale}) cannot exceed precision ({self.precision})")
        return self


class ConverterConfig(ConfigModel):
    """Config of :class:`DataTypeConverter`."""

    columns: Annotated[dict[str, TypeSpec], DATA_KEYS]
    """Column -> its target: a type name (``"int"``, ``"decimal(10,2)"``) or a mapping with
    ``type``, ``format``, ``time_zone``, ``precision``, ``scale`` (keys below). At least one
    column; a column missing from the data is an error."""
    errors: ErrorMode = "raise"
    """A value that cannot be converted: ``raise`` fails naming the column, the first bad
    values and their row positions; ``coerce`` makes it null; ``reject`` keeps the good rows and
    puts the bad ones, unconverted, with a ``_reject_reason`` column in ``last_rejects``."""
    max_examples: int = Field(default=5, ge=1)
    """``errors: raise``: how many bad values (with their row positions) the error message
    shows per column."""
    strip_whitespace: bool = True
    """Strip surrounding blanks from text before converting it (``" 42 "`` -> 42); a text that
    is then empty is missing (null), never bad. ``false``: blanks make a number bad."""

    @field_validator("columns", mode="before")
    @classmethod
    def _specs(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {c: {"type": t} if isinstance(t, str) else t for c, t in value.items()}
        return value

    @model_validator(mode="after")
    def _some(self) -> ConverterConfig:
        if not self.columns:
            raise ValueError("'columns' must name at least one column and its type")
        return self

    def spec(self, column: str) -> TypeSpec:
        return self.columns[column]


@dataclass(frozen=True)
class _Call:
    """The engine one conversion runs on, passed down the call (never kept on the converter:
    one converter may serve a pandas thread and a PyArrow thread at the same time)."""

    engine: str
    pandas: bool
    duckdb: bool
    arrow: bool
    spark: bool
    polars: bool
    session_zone: str | None  # Spark, DuckDB: the session's (connection's) time zone
    nan_null: frozenset[str]  # float columns whose NaN is the missing value (numpy pandas)

    @classmethod
    def of(cls, frame: Any, *, zoned: bool) -> _Call:
        """``zoned``: some column gets a time zone (then the session zone is looked up)."""
        engine = engine_of(frame)
        zone = None
        if zoned and engine == "pyspark":
            zone = _spark_zone(frame)
        elif zoned and engine == "duckdb":
            zone = _duckdb_zone(frame)
        return cls(
            engine=engine,
            pandas=frame.implementation.is_pandas_like(),
            duckdb=engine == "duckdb",
            arrow=engine == "pyarrow",
            spark=engine == "pyspark",
            polars=frame.implementation is nw.Implementation.POLARS,
            session_zone=zone,
            nan_null=nan_is_null(frame),
        )


class DataTypeConverter(DataFrameTransformer):
    """Convert columns to another type; bad values raise, become null, or are rejected.

    ``columns`` maps a column to a type name or to ``{"type": ..., "format": ...,
    "time_zone": ..., "precision": ..., "scale": ...}``. The names are the one vocabulary of
    the framework (docs/semantics.md): integers (``int``/``integer``/``bigint`` are 64-bit,
    ``int8``-``int64``, ``uint8``-``uint64``), floats (``float``/``double`` are 64-bit,
    ``float32``), ``decimal`` or ``decimal(p,s)``, ``bool``, ``string``/``text``, ``date``,
    ``datetime``/``timestamp`` (``datetime[us, UTC]`` zoned), ``category``. Text is stripped first (unless
    ``strip_whitespace: false``); an empty text is missing (null), not an error. Bools accept
    true/false, t/f, yes/no, y/n, 1/0 (any case). Dates default to ``%Y-%m-%d``, datetimes to
    ``%Y-%m-%d %H:%M:%S`` (also a ``T`` separator, a date alone, or no seconds).
    ``time_zone`` localizes naive values and converts aware ones (``%z``).

    ``errors``: ``raise`` (default) names the column, the first bad values and their row
    positions (on DuckDB and Spark this runs one small check query and positions are not
    defined; on a Polars LazyFrame the check runs inside the plan and ``collect()`` raises);
    ``coerce`` turns bad values into nulls; ``reject`` keeps the good rows and puts the bad ones,
    unconverted, with a ``_reject_reason`` column, in ``self.last_rejects``.

    Raises:
        ConfigError: an unknown type name or time zone, a ``format`` with an unsupported directive,
            or ``format`` / ``time_zone`` on a type they do not apply to.
        ColumnNotFoundError: a column of ``columns`` is not in the data.
        DataTypeError: ``errors: raise`` and values that cannot be converted (the column, the first
            bad values and their row positions are named), or a conversion that does not exist (a
            date to an integer, ...).

    Example:
        >>> import polars as pl
        >>> converter = DataTypeConverter(name="types", config={
        ...     "columns": {"qty": "int", "day": {"type": "date", "format": "%d/%m/%Y"}},
        ...     "errors": "coerce",
        ... })
        >>> converter.transform(pl.DataFrame({"qty": ["3", "x"], "day": ["05/01/2024", ""]})).rows()
        [(3, datetime.date(2024, 1, 5)), (None, None)]
    """

    config_model = ConverterConfig
    settings: ConverterConfig

    def required_columns(self, columns: Sequence[str]) -> list[str]:
        return list(self.settings.columns)

    # -- building the conversion expressions -------------------------------------------------

    def _convert(
        self, on: _Call, frame: Any, column: str, dtype: Any, spec: TypeSpec
    ) -> tuple[Any, Any]:
        """(converted expression, missing-before expression) for one column."""
        col = nw.col(column)
        target = spec.type
        text = dtype == nw.String
        missing = col.is_null()
        if dtype.is_float() and column not in on.nan_null:
            missing = missing | col.is_nan().fill_null(False)
        if on.spark and target.startswith("uint"):
            raise UnsupportedOperationError(
                f"the pyspark engine has no unsigned integer type for column {column!r} ({target})",
                component=self.label,
                hint="convert to a signed type wide enough (uint8 -> int16, uint16 -> int32, "
                "uint32 -> int64), or convert on Polars, pandas, PyArrow or DuckDB",
            )
        if on.spark and target == "string" and dtype.is_float():
            raise UnsupportedOperationError(
                f"the pyspark engine writes floats as Java does (1.0E-7, NaN), not as the "
                f"other engines (Python's repr: 1e-07, nan): column {column!r}",
                component=self.label,
                hint="convert on Polars, pandas, PyArrow or DuckDB, or format the column on "
                "Spark yourself (format_number, format_string)",
            )
        if dtype == nw.Unknown:  # e.g. Polars' Null type: an all-null column casts directly
            return col.cast(_target_dtype(spec)), missing
        if text:
            value = col.str.strip_chars() if self.settings.strip_whitespace else col
            missing = missing | (value.str.len_chars() == 0).fill_null(False)
            return self._from_text(on, frame, column, value, spec), missing
        if target in _INTS:
            nw_type, lo, hi = _INTS[target]
            x = col
            if dtype == nw.Boolean:
                return self._int_cast(on, col, nw_type), missing
            if not dtype.is_numeric():
                raise self._cannot(column, dtype, target)
            if dtype.is_float():
                # float bounds: PyArrow cannot compare floats with an integer above 2**53 (it
                # refused every float -> int64 conversion); hi + 1 is a power of two, exact
                valid = (x >= float(lo)) & (x < float(hi + 1)) & (x.round(0) == x)
            elif isinstance(dtype, nw.Decimal):  # whole values only, as from a float (Polars
                # truncated 2.50 to 2, DuckDB rounded it to 3, PyArrow and pandas raised)
                valid = (x >= lo) & (x <= hi) & (x.round(0) == x)
            else:
                valid = (x >= lo) & (x <= hi)
            # valid is false for NaN on every engine (NaN sorts last or compares false)
            return self._int_cast(on, nw.when(valid.fill_null(False)).then(x), nw_type), missing
        if target in _FLOATS:
            if not (dtype.is_numeric() or dtype == nw.Boolean):
                raise self._cannot(column, dtype, target)
            if isinstance(dtype, nw.Decimal) and (on.arrow or on.pandas):
                # the nearest float: PyArrow's own cast is off by an ulp (-2.55 -> -2.5500000000000003)
                return col.cast(nw.String).cast(_FLOATS[target]), missing
            if dtype.is_integer() and on.arrow and target != "float64":
                # PyArrow refuses an integer above 2**24 -> float32; through float64 (exact below 2**53)
                return col.cast(nw.Float64).cast(_FLOATS[target]), missing
            return col.cast(_FLOATS[target]), missing
        if target == "decimal":
            if on.pandas and dtype == nw.Object:
                raise UnsupportedOperationError(
                    f"the pandas engine cannot convert column {column!r} to decimal: numpy-backed "
                    "pandas holds decimals as Python objects",
                    component=self.label,
                    hint="use pyarrow-backed pandas (df.convert_dtypes(dtype_backend='pyarrow')), "
                    "or convert on Polars, PyArrow or DuckDB",
                )
            if not dtype.is_numeric():
                raise self._cannot(column, dtype, target)
            limit = 10 ** (spec.precision - spec.scale)
            # a value that rounds (at the scale) to 10**(p - s) does not fit either
            half = decimal.Decimal(5).scaleb(-spec.scale - 1)
            if dtype.is_float():
                valid = (col.abs() < float(limit - half)) & ~col.is_nan()
            elif _integer_digits(dtype) <= spec.precision - spec.scale:
                valid = ~col.is_null()  # every value fits (and 10**29 is no int64 literal)
            else:  # the bound has fewer digits than the column: a literal of its own type
                rounds = isinstance(dtype, nw.Decimal) and (dtype.scale or 0) > spec.scale
                bound: Any = limit
                if isinstance(dtype, nw.Decimal):
                    bound = decimal.Decimal(limit) - (half if rounds else 0)
                valid = (col < nw.lit(bound, dtype)) & (col > nw.lit(-bound, dtype))
            target_type = nw.Decimal(spec.precision, spec.scale)
            kept = nw.when(valid.fill_null(False)).then(col)
            if dtype.is_float():
                # the fraction rounded as round(x, s) (half away from zero of x * 10^s): the
                # engines' own casts rounded ties half to even on the text (Polars), on the
                # binary value (PyArrow) or away from zero (DuckDB)
                return round_float(kept, spec.scale, on.engine).cast(target_type), missing
            if isinstance(dtype, nw.Decimal) and (dtype.scale or 0) > spec.scale:
                # half away from zero, as round() (PyArrow refused to rescale, Polars truncated)
                return round_decimal(kept, spec.scale, target_type, on.engine, self.label), missing
            if (on.arrow or on.pandas) and dtype.is_integer():
                # PyArrow casts an integer only to a decimal wide enough for any of its values
                kept = kept.cast(nw.Decimal(38, spec.scale))
            return kept.cast(target_type), missing
        if target == "bool":
            if dtype == nw.Boolean:
                return col, missing
            if not dtype.is_numeric():
                raise self._cannot(column, dtype, target)
            return nw.when(col == 1).then(nw.lit(True)).when(col == 0).then(nw.lit(False)), missing
        if target == "string":
            return col.cast(nw.String), missing
        if target == "category":
            return col.cast(nw.String).cast(nw.Categorical), missing
        if target == "date":
            if dtype == nw.Date:
                return col, missing
            if dtype == nw.Datetime:
                return col.dt.date(), missing
            raise self._cannot(column, dtype, target)
        # datetime
        if dtype == nw.Datetime:
            return self._zone(
                on, col, spec, aware=getattr(dtype, "time_zone", None) is not None
            ), missing
        if dtype == nw.Date:
            return self._zone(on, col.cast(nw.Datetime("us")), spec, aware=False), missing
        raise self._cannot(column, dtype, target)

    def _from_text(self, on: _Call, frame: Any, column: str, value: Any, spec: TypeSpec) -> Any:
        target = spec.type
        if target in _INTS:
            nw_type, lo, hi = _INTS[target]
            valid = value.str.contains(_INT_TEXT)
            unsigned = self._unsigned(on, value)
            as_int = self._int_cast(on, nw.when(valid.fill_null(False)).then(unsigned), nw.Int64)
            if nw_type == nw.Int64:
                return as_int
            in_range = ((as_int >= lo) & (as_int <= hi)).fill_null(False)
            return self._int_cast(on, nw.when(in_range).then(as_int), nw_type)
        if target in _FLOATS:
            valid = value.str.contains(_FLOAT_TEXT)
            unsigned = self._unsigned(on, value)
            return nw.when(valid.fill_null(False)).then(unsigned).cast(_FLOATS[target])
        if target == "decimal":
            valid = value.str.contains(_DECIMAL_TEXT)
            unsigned = self._unsigned(on, value)
            return (
                nw.when(valid.fill_null(False))
                .then(unsigned)
                .cast(nw.Decimal(spec.precision, spec.scale))
            )
        if target == "bool":
            lower = value.str.to_lowercase()
            return (
                nw.when(lower.is_in(_TRUE))
                .then(nw.lit(True))
                .when(lower.is_in(_FALSE))
                .then(nw.lit(False))
            )
        if target == "string":
            return nw.col(column)
        if target == "category":
            return nw.col(column).cast(nw.Categorical)
        if target == "date":
            fmt = spec.format or _DEFAULT_DATE
            valid = self._day_exists(
                on, value, value.str.contains(format_pattern(fmt, strict=on.spark)), fmt
            )
            return (
                nw.when(valid.fill_null(False))
                .then(value)
                .str.to_date(format=self._engine_format(on, fmt))
            )
        fmt = spec.format or _DEFAULT_DATETIME
        if spec.format is None:
            value = value.str.replace_all("T", " ", literal=True)
            size = value.str.len_chars()
            value = (
                nw.when(size == 10)
                .then(nw.concat_str([value, nw.lit(" 00:00:00")]))
                .when(size == 16)
                .then(nw.concat_str([value, nw.lit(":00")]))
                .otherwise(value)
            )
            # with or without a fraction of a second (1-6 digits): each row matches one format
            parsed = nw.coalesce(
                self._parse_datetime(on, value, fmt),
                self._parse_datetime(on, value, _DEFAULT_DATETIME + ".%f"),
            )
        else:
            parsed = self._parse_datetime(on, value, fmt)
        return self._zone(on, parsed, spec, aware="%z" in fmt)

    def _parse_datetime(self, on: _Call, value: Any, fmt: str) -> Any:
        """``value`` parsed with ``fmt`` where it has the format's shape and its day exists;
        null elsewhere (so that no engine's parser sees a value it would fail on)."""
        valid = self._day_exists(
            on, value, value.str.contains(format_pattern(fmt, strict=on.spark)), fmt
        )
        kept = nw.when(valid.fill_null(False)).then(value)
        parse_fmt = fmt
        if "%f" in fmt:
            if on.arrow:
                # PyArrow's strptime has no %f (Narwhals drops it): its ISO 8601 cast reads the
                # fraction, for the one layout it knows
                if fmt.replace("T", " ") == _DEFAULT_DATETIME + ".%f":
                    return kept.str.replace_all("T", " ", literal=True).cast(nw.Datetime("us"))
                raise UnsupportedOperationError(
                    f"the pyarrow engine cannot parse the format {fmt!r} (PyArrow has no %f "
                    "for fractions of a second)",
                    component=self.label,
                    hint="use '%Y-%m-%d %H:%M:%S.%f' (or no format), or convert on Polars, "
                    "pandas or DuckDB",
                )
            if on.polars:  # chrono's %f counts nanoseconds ('123' = 123 ns); %.f is a fraction
                parse_fmt = parse_fmt.replace(".%f", "%.f")
        if on.spark and re.search(r"(?<!%)Z", fmt):
            # a literal Z: Narwhals would read the format as zoned and Java the Z as an offset;
            # other engines read it as a letter and give a naive timestamp: so does Spark
            parse_fmt = re.sub(r"(?<!%)Z", "", parse_fmt)
            kept = kept.str.replace_all("Z", "", literal=True)
        return kept.str.to_datetime(format=self._engine_format(on, parse_fmt))

    def _engine_format(self, on: _Call, fmt: str) -> str:
        """``fmt`` for the engine's parser. Spark reads a Java pattern, where every letter is a
        field (``Z`` an offset): the literal letters of a strptime format (``T`` aside, which
        Narwhals turns into a space in the value and the pattern) are quoted for it."""
        if not on.spark:
            return fmt
        quoted = re.sub(r"(?<!%)(?<!%[-#])([A-SU-Za-z]+)", r"'\1'", fmt)
        # %f: Narwhals gives Java one 'S' (one digit); six read a fraction of 1-6 digits
        return quoted.replace("%f", "SSSSSS")

    def _day_exists(self, on: _Call, value: Any, valid: Any, fmt: str) -> Any:
        """``valid`` and the day exists in its month (no 2023-02-30), checked by arithmetic.

        The shape check lets a day 29-31 through in any month. Engines differ on such a
        value: PyArrow rolls it over (2023-03-02), DuckDB and Spark raise. So the year, month
        and day are taken from the text (a regex replace with a back-reference) and the day is
        compared with the length of the month, before any engine parses the value.
        """
        pattern, groups = date_groups(fmt, strict=on.spark)
        if "day" not in groups or "month" not in groups:
            return valid  # no day, or no month to measure it by: nothing can overflow
        dollar = on.spark or on.polars  # back-reference syntax: Java/Rust $1, RE2/re \1

        def part(name: str) -> Any:
            ref = f"${groups[name][0]}" if dollar else f"\\{groups[name][0]}"
            return nw.when(valid.fill_null(False)).then(value).str.replace_all(pattern, ref)

        day = part("day").str.strip_chars().cast(nw.Int32)
        month_directive = groups["month"][1]
        if month_directive == "m":
            month = part("month").cast(nw.Int32)
        else:  # a month name: its first three letters
            name = part("month").str.slice(0, 3).str.to_lowercase()
            month = nw.when(name == _MONTHS[0]).then(nw.lit(1))
            for number, abbr in enumerate(_MONTHS[1:], start=2):
                month = month.when(name == abbr).then(nw.lit(number))
        if "year" in groups:
            year = part("year").cast(nw.Int32)
            if groups["year"][1] == "y":  # strptime's rule: 69-99 -> 19xx, 00-68 -> 20xx
                year = nw.when(year < 69).then(year + 2000).otherwise(year + 1900)
            leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
        else:
            leap = nw.lit(value=False)  # strptime's default year, 1900, is not a leap year
        days = (
            nw.when(month == 2)
            .then(nw.when(leap).then(nw.lit(29)).otherwise(nw.lit(28)))
            .when(month.is_in([4, 6, 9, 11]))
            .then(nw.lit(30))
            .otherwise(nw.lit(31))
        )
        return valid & (day <= days).fill_null(False)

    def _unsigned(self, on: _Call, value: Any) -> Any:
        # PyArrow cannot parse a leading '+'; the other engines can
        return value.str.replace_all(r"^\+", "") if on.arrow else value

    def _int_cast(self, on: _Call, expr: Any, nw_type: Any) -> Any:
        # numpy-backed pandas cannot hold nulls in int columns: carry floats, fixed at the end
        return expr.cast(nw.Float64) if on.pandas else expr.cast(nw_type)

    def _zone(self, on: _Call, expr: Any, spec: TypeSpec, *, aware: bool) -> Any:
        zone = spec.time_zone
        if zone is None:
            return expr
        if (on.spark or on.duckdb) and zone in _UTC_NAMES and on.session_zone in _UTC_NAMES:
            # Narwhals compares zone names (Etc/UTC is UTC too) and leaves a naive value naive
            # (DuckDB's replace_time_zone is a no-op: time_zone UTC gave a naive TIMESTAMP);
            # in a UTC session a cast reads the wall time as the UTC instant (TIMESTAMPTZ)
            return expr if aware else expr.cast(nw.Datetime("us", on.session_zone))
        if aware:
            return expr.dt.convert_time_zone(zone)
        return expr.dt.replace_time_zone(zone)

    def _cannot(self, column: str, dtype: Any, target: str) -> DataTypeError:
        return DataTypeError(
            f"cannot convert column {column!r} from {dtype} to {target}",
            component=self.label,
            hint="convert it to string first, or choose another target type",
        )

    # -- the work ----------------------------------------------------------------------------

    def _apply_frame(self, frame: Any, op: Operation) -> Any:
        s = self.settings
        schema = schema_of(frame)
        conversions: dict[str, Any] = {}
        bad: dict[str, Any] = {}
        specs = {c: s.spec(c) for c in s.columns}
        pandas_like = frame.implementation.is_pandas_like()
        on = _Call.of(frame, zoned=any(s.spec(c).time_zone for c in s.columns))
        helpers: list[str] = []
        float_text = [c for c, sp in specs.items() if sp.type == "string" and schema[c].is_float()]
        if float_text and (on.polars or on.arrow):
            frame = _floats_as_text(frame, float_text)
            schema = {**schema, **dict.fromkeys(float_text, nw.String())}
        if frame.implementation is nw.Implementation.POLARS:
            fast = [c for c, spec in specs.items() if _polars_fast(schema[c], spec)]
            if fast:
                frame, helpers = self._polars_prepare(frame, fast, specs, conversions, bad)
                if not helpers:  # converted (and checked at collect time) already
                    specs = {c: spec for c, spec in specs.items() if c not in fast}
                    if not specs:
                        op.details["types"] = {c: s.spec(c).type for c in s.columns}
                        return frame
        elif frame.implementation is nw.Implementation.PANDAS:
            fast = [
                c for c, spec in specs.items() if schema[c] == nw.String and spec.type == "datetime"
            ]
            if fast:
                frame = self._pandas_prepare(frame, fast, specs, conversions, bad, helpers)
            numeric = [
                c
                for c, spec in specs.items()
                if spec.type in _INTS and _numpy_number(frame.to_native()[c].dtype)
            ]
            if numeric:
                frame = self._pandas_ints(frame, numeric, specs, conversions, bad, helpers)
        in_plan: dict[str, tuple[Any, Any]] = {}
        check_in_plan = (
            frame.implementation is nw.Implementation.POLARS
            and is_lazy(frame)
            and s.errors == "raise"
        )
        for column, spec in specs.items():
            if column in conversions:
                continue
            self._check_engine(on, frame, column, spec, pandas_like)
            converted, missing = self._convert(on, frame, column, schema[column], spec)
            if pandas_like and spec.type in _INTS:
                converted = converted.cast(nw.Float64)  # numpy ints cannot hold nulls; fixed below
            if s.errors != "reject" and _infallible(schema[column], spec):
                conversions[column] = converted.alias(column)  # cannot fail: nothing to check
                continue
            if check_in_plan:
                # Polars LazyFrame: convert and check while the plan runs (no second query)
                in_plan[column] = (converted, (~missing & converted.is_null()).fill_null(False))
                continue
            if not is_lazy(frame):
                # eager: convert once into a helper column that every mode then reuses
                helper = f"__dp_cast_{len(helpers)}"
                frame = frame.with_columns(converted.alias(helper))
                helpers.append(helper)
                converted = nw.col(helper)
            conversions[column] = converted.alias(column)
            bad[column] = (~missing & converted.is_null()).fill_null(False)
        if in_plan:
            frame = self._polars_check_in_plan(frame, in_plan, specs)
        op.details["types"] = {c: s.spec(c).type for c in s.columns}
        try:
            result = self._run(frame, conversions, bad, specs, op, helpers)
        except NotImplementedError as exc:
            if isinstance(exc, UnsupportedOperationError):
                raise
            raise unsupported(
                frame,
                f"do this conversion ({exc})".replace("\n", " "),
                "convert on another engine (e.g. Polars), or choose another target type",
                component=self.label,
            ) from exc
        if pandas_like:
            result = self._pandas_nullable(result, specs)
        return result

    def _check_engine(
        self, on: _Call, frame: Any, column: str, spec: TypeSpec, pandas_like: bool
    ) -> None:
        engine = engine_of(frame)
        sql_engine = {"duckdb": "DuckDB", "pyspark": "Spark", "sqlframe": "SQLFrame"}.get(engine)
        if spec.type == "category" and sql_engine is not None:
            raise unsupported(
                frame,
                f"convert column {column!r} to category ({sql_engine} has no categorical type here)",
                f"use 'string' on {sql_engine}, or convert after collecting to Polars or pandas",
                component=self.label,
            )
        if spec.type == "date" and pandas_like:
            raise unsupported(
                frame,
                f"convert column {column!r} to date (numpy-backed pandas has no date type)",
                "use 'datetime' for pandas, or pyarrow-backed pandas: "
                "df.convert_dtypes(dtype_backend='pyarrow')",
                component=self.label,
            )
        if (
            spec.time_zone is not None
            and sql_engine is not None
            and spec.time_zone not in _UTC_NAMES
        ):
            where = "connection" if engine == "duckdb" else "session"
            raise unsupported(
                frame,
                f"set time zone {spec.time_zone!r} on column {column!r} ({sql_engine} keeps the "
                f"time zone in the {where}, not in the column)",
                f"use time_zone 'UTC' on {sql_engine}, or convert on Polars or pandas",
                component=self.label,
            )
        if (
            spec.time_zone is not None
            and engine in ("duckdb", "pyspark")
            and on.session_zone is not None
            and on.session_zone not in _UTC_NAMES
        ):
            setting = (
                "SET TimeZone = 'UTC'" if engine == "duckdb" else "spark.sql.session.timeZone=UTC"
            )
            raise unsupported(
                frame,
                f"make column {column!r} UTC while the {sql_engine} session's time zone is "
                f"{on.session_zone!r} (the column would keep local wall times)",
                f"run with {setting}, or convert on Polars or pandas",
                component=self.label,
            )

    def _run(
        self,
        frame: Any,
        conversions: dict[str, Any],
        bad: dict[str, Any],
        specs: dict[str, TypeSpec],
        op: Operation,
        helpers: list[str],
    ) -> Any:
        s = self.settings
        lazy = is_lazy(frame)
        specs = {c: s.spec(c) for c in bad}

        def done(result: Any) -> Any:
            return result.drop(*helpers) if helpers else result

        def convert(result: Any) -> Any:
            return result.with_columns(*conversions.values()) if conversions else result

        if s.errors == "coerce":
            if not lazy:
                row = collect_row(frame, [count_true(frame, b).alias(c) for c, b in bad.items()])
                coerced = dict.fromkeys(s.columns, 0)
                coerced.update({c: int(row[c] or 0) for c in bad})
                op.details["coerced"] = coerced
            return done(convert(frame))
        if s.errors == "raise":
            if bad:
                self._raise_on_bad(frame, bad, specs)
            return done(convert(frame))
        # reject
        any_bad = nw.any_horizontal(*bad.values(), ignore_nulls=True)
        reasons = [
            nw.when(b).then(
                nw.concat_str(
                    [
                        nw.lit(f"{c}: cannot convert "),
                        nw.col(c).cast(nw.String),
                        nw.lit(f" to {specs[c].type}"),
                    ],
                )
            )
            for c, b in bad.items()
        ]
        rejects = frame.filter(any_bad).with_columns(
            nw.concat_str(reasons, separator="; ", ignore_nulls=True).alias("_reject_reason")
        )
        rejects = done(rejects)
        good = done(frame.filter(~any_bad).with_columns(*conversions.values()))
        self.last_rejects = rejects.to_native()
        if not lazy:
            op.rows_rejected = len(rejects)
            op.details["rows_rejected"] = len(rejects)
        return good

    def _raise_on_bad(self, frame: Any, bad: dict[str, Any], specs: dict[str, TypeSpec]) -> None:
        s = self.settings
        lazy = is_lazy(frame)
        any_bad = nw.any_horizontal(*bad.values(), ignore_nulls=True)
        if not lazy and not collect_row(frame, [any_bad.any().alias("any")])["any"]:
            return  # the usual case: one cheap pass, no row index, no filtering
        flags = [b.alias(f"__dp_bad_{i}") for i, b in enumerate(bad.values())]
        source = frame if lazy else frame.with_row_index("__dp_row")
        sample = source.filter(any_bad).with_columns(*flags).head(s.max_examples * len(bad))
        if lazy:
            sample = sample.collect()
        if len(sample) == 0:
            return
        rows = sample.rows(named=True)
        parts = []
        for i, column in enumerate(bad):
            hits = [r for r in rows if r[f"__dp_bad_{i}"]][: s.max_examples]
            if not hits:
                continue
            if lazy:
                shown = ", ".join(repr(r[column]) for r in hits)
            else:
                shown = ", ".join(f"{r[column]!r} (row {r['__dp_row']})" for r in hits)
            parts.append(f"column {column!r}: cannot convert to {specs[column].type}: {shown}")
        where = "" if not lazy else " (row positions are not defined on a lazy engine)"
        raise DataTypeError(
            "; ".join(parts) + where,
            component=self.label,
            hint="fix the data, give a 'format', or set errors: 'coerce' (bad values become null) "
            "or 'reject' (bad rows go to last_rejects)",
        )

    def _polars_check_in_plan(
        self, frame: Any, in_plan: dict[str, tuple[Any, Any]], specs: dict[str, TypeSpec]
    ) -> Any:
        """Polars LazyFrame, ``errors: raise``: convert each column in a ``map_batches`` that
        raises naming the first bad values, so the check costs no extra query."""
        import polars as pl

        native = frame.to_native()
        schema = native.collect_schema()
        exprs = []
        for column, (converted, bad) in in_plan.items():
            empty = pl.DataFrame(schema={column: schema[column]})
            dtype = nw.from_native(empty).select(converted.alias(column)).to_native().dtypes[0]
            check = functools.partial(
                _check_narwhals,
                self.label,
                column,
                specs[column].type,
                converted,
                bad,
                self.settings.max_examples,
            )
            if specs[column].type in _INTS and schema[column].is_numeric():
                _, lo, hi = _INTS[specs[column].type]
                check = functools.partial(_check_int_quick, lo, hi, dtype, check)
            exprs.append(pl.col(column).map_batches(check, return_dtype=dtype))
        return nw.from_native(native.with_columns(exprs))

    def _polars_prepare(
        self,
        frame: Any,
        fast: list[str],
        specs: dict[str, TypeSpec],
        conversions: dict[str, Any],
        bad: dict[str, Any],
    ) -> tuple[Any, list[str]]:
        """Polars fast path for text -> int/float/date/datetime: native non-strict parsing.

        ``errors: raise`` on a LazyFrame checks each column while the plan runs (at collect),
        so nothing is computed twice. Otherwise the converted values and bad-value flags become
        helper columns in one ``with_columns`` that the shared code then uses.
        """
        import polars as pl

        s = self.settings
        native = frame.to_native()
        if s.errors == "raise" and is_lazy(frame):
            exprs = []
            for c in fast:
                spec = specs[c]
                check = functools.partial(
                    _check_series, self.label, c, spec, s.strip_whitespace, s.max_examples
                )
                exprs.append(pl.col(c).map_batches(check, return_dtype=_polars_dtype(spec)))
            return nw.from_native(native.with_columns(exprs)), []
        exprs = []
        helpers: list[str] = []
        for i, c in enumerate(fast):
            converted, missing = _polars_text(pl.col(c), specs[c], s.strip_whitespace)
            conv_name, bad_name = f"__dp_conv_{i}", f"__dp_bad_{i}"
            exprs += [converted.alias(conv_name), (converted.is_null() & ~missing).alias(bad_name)]
            conversions[c] = nw.col(conv_name).alias(c)
            bad[c] = nw.col(bad_name)
            helpers += [conv_name, bad_name]
        return nw.from_native(native.with_columns(exprs)), helpers

    def _pandas_prepare(
        self,
        frame: Any,
        fast: list[str],
        specs: dict[str, TypeSpec],
        conversions: dict[str, Any],
        bad: dict[str, Any],
        helpers: list[str],
    ) -> Any:
        """pandas fast path for text -> datetime: ``pandas.to_datetime(errors="coerce")``.

        Without a ``format`` it parses ISO 8601 (a date alone, a ``T`` or a space, minutes or
        seconds), as the other engines do with their default formats.
        """
        import pandas as pd

        native = frame.to_native()
        added: dict[str, Any] = {}
        for c in fast:
            spec = specs[c]
            series = native[c]
            value = series.str.strip() if self.settings.strip_whitespace else series
            missing = series.isna() | (value.str.len() == 0)
            parsed = pd.to_datetime(value, format=spec.format or "ISO8601", errors="coerce")
            parsed = parsed.mask(value.str.contains(_FINER_THAN_US, na=False))  # bad: ns
            if spec.time_zone is not None:
                if "%z" in (spec.format or "") or getattr(parsed.dt, "tz", None) is not None:
                    parsed = parsed.dt.tz_convert(spec.time_zone)
                else:
                    parsed = parsed.dt.tz_localize(spec.time_zone)
            conv_name, bad_name = f"__dp_pconv_{len(helpers)}", f"__dp_pbad_{len(helpers)}"
            zone = getattr(parsed.dt, "tz", None)  # microseconds whatever pandas inferred
            # (an empty or all-blank column came back in seconds)
            added[conv_name] = parsed.astype(
                f"datetime64[us, {zone}]" if zone is not None else "datetime64[us]"
            )
            added[bad_name] = (parsed.isna() & ~missing).fillna(False).astype(bool)
            conversions[c] = nw.col(conv_name).alias(c)
            bad[c] = nw.col(bad_name)
            helpers += [conv_name, bad_name]
        return nw.from_native(native.assign(**added))

    def _pandas_ints(
        self,
        frame: Any,
        columns: list[str],
        specs: dict[str, TypeSpec],
        conversions: dict[str, Any],
        bad: dict[str, Any],
        helpers: list[str],
    ) -> Any:
        """pandas fast path for numpy numbers -> int: cast, compare back, and build the nullable
        integer array (values out of range or with a fraction are bad, NaN is missing)."""
        import numpy as np
        import pandas as pd

        native = frame.to_native()
        added: dict[str, Any] = {}
        for c in columns:
            values = native[c].to_numpy()
            target = np.dtype(_PANDAS_INTS[specs[c].type].lower())
            with np.errstate(invalid="ignore", over="ignore"):
                ints = values.astype(target)  # NaN, fractions and overflow come back different
                same = ints == values
            valid = same
            flagged = ~same & ~np.isnan(values) if values.dtype.kind == "f" else ~same
            conv_name, bad_name = f"__dp_pconv_{len(helpers)}", f"__dp_pbad_{len(helpers)}"
            added[conv_name] = pd.Series(
                pd.arrays.IntegerArray(ints, ~valid), index=native.index, copy=False
            )
            added[bad_name] = pd.Series(flagged, index=native.index, copy=False)
            conversions[c] = nw.col(conv_name).alias(c)
            bad[c] = nw.col(bad_name)
            helpers += [conv_name, bad_name]
        return nw.from_native(native.assign(**added))

    @staticmethod
    def _pandas_nullable(frame: Any, specs: dict[str, TypeSpec]) -> Any:
        """numpy-backed pandas cannot hold nulls in int or bool columns: use nullable dtypes."""
        native = frame.to_native()
        changed = False
        for column, spec in specs.items():
            if spec.type in _PANDAS_INTS:
                if str(native[column].dtype) != _PANDAS_INTS[spec.type]:
                    native[column] = native[column].astype(_PANDAS_INTS[spec.type])
                    changed = True
            elif spec.type == "bool" and native[column].dtype == object:
                native[column] = native[column].astype("boolean")
                changed = True
        return nw.from_native(native) if changed else frame


# -- Polars fast path ---------------------------------------------------------------------------


def _integer_digits(dtype: Any) -> int:
    """How many digits a number of an integer or decimal column can have before the point."""
    if isinstance(dtype, nw.Decimal):
        return int(dtype.precision) - int(dtype.scale)
    for kind, _, hi in _INTS.values():
        if dtype == kind:
            return len(str(hi))
    return 38


def _float_text(array: Any) -> Any:
    """Floats (an Arrow array) as Python writes them (``repr``: ``1.0``, ``-0.0``, ``1e-07``,
    ``nan``), by DuckDB's cast, which writes exactly that; Polars and PyArrow write some floats
    otherwise (``1e-7``, ``NaN``; ``1``, ``-0``, ``1e+15``)."""
    import pyarrow as pa

    from data_pipeline.core.engines import duckdb_scratch

    connection = duckdb_scratch()
    try:
        floats = connection.from_arrow(pa.table({"x": array}))
        return floats.select("CAST(x AS VARCHAR) AS x").to_arrow_table()["x"]
    finally:
        connection.close()


def _floats_as_text(frame: Any, columns: Sequence[str]) -> Any:
    """Polars and PyArrow: float columns replaced by their text (:func:`_float_text`)."""
    native = frame.to_native()
    if frame.implementation is nw.Implementation.POLARS:
        import polars as pl

        def text(series: Any) -> Any:
            return pl.Series(series.name, _float_text(series.to_arrow()), dtype=pl.String)

        exprs = [pl.col(c).map_batches(text, return_dtype=pl.String) for c in columns]
        return nw.from_native(native.with_columns(exprs))
    for c in columns:  # PyArrow
        index = native.schema.get_field_index(c)
        native = native.set_column(index, c, _float_text(native[c]).combine_chunks())
    return nw.from_native(native)


def _polars_fast(dtype: Any, spec: TypeSpec) -> bool:
    # a format with %f goes the shared way: its shape check requires the fraction, which
    # Polars' %.f would let go missing
    return (
        bool(dtype == nw.String)
        and (spec.type in _INTS or spec.type in _FLOATS or spec.type in ("date", "datetime"))
        and "%f" not in (spec.format or "")
    )


def _polars_dtype(spec: TypeSpec) -> Any:
    import polars as pl

    if spec.type in _INTS or spec.type in _FLOATS or spec.type == "date":
        return parse_type(spec.type).polars()
    fmt = spec.format or _DEFAULT_DATETIME
    zone = spec.time_zone or ("UTC" if "%z" in fmt else None)
    return pl.Datetime("us", zone)


def _polars_text(col: Any, spec: TypeSpec, strip: bool) -> tuple[Any, Any]:
    """(converted, missing) Polars expressions for a text column; bad values become null."""
    import polars as pl

    value = col.str.strip_chars() if strip else col
    missing = col.is_null() | (value.str.len_bytes() == 0)
    if spec.type in _INTS or spec.type in _FLOATS:
        return value.cast(_polars_dtype(spec), strict=False), missing
    if spec.type == "date":
        return value.str.to_date(spec.format or _DEFAULT_DATE, strict=False), missing
    fmt = spec.format or _DEFAULT_DATETIME
    if spec.format is None:
        value = value.str.replace("T", " ", literal=True)
        size = value.str.len_chars()
        value = (
            pl.when(size == 10)
            .then(value + " 00:00:00")
            .when(size == 16)
            .then(value + ":00")
            .otherwise(value)
        )
        # a fraction of a second of 1-6 digits may follow (%.f); a finer one is bad
        value = pl.when(value.str.contains(_FINER_THAN_US)).then(None).otherwise(value)
        fmt = _DEFAULT_DATETIME + "%.f"
    parsed = value.str.to_datetime(fmt, strict=False, time_unit="us")
    if spec.time_zone is not None:
        if "%z" in fmt:
            parsed = parsed.dt.convert_time_zone(spec.time_zone)
        else:
            parsed = parsed.dt.replace_time_zone(spec.time_zone)
    return parsed, missing


def _check_series(
    component: str, column: str, spec: TypeSpec, strip: bool, examples: int, series: Any
) -> Any:
    """Convert one column while a Polars plan runs; raise naming the first bad values."""
    import polars as pl

    converted, missing = _polars_text(pl.col("v"), spec, strip)
    out = pl.DataFrame({"v": series}).select(
        converted.alias("c"), (converted.is_null() & ~missing).alias("b")
    )
    return _converted_or_raise(out, series, component, column, spec.type, examples)


def _check_narwhals(
    component: str,
    column: str,
    target: str,
    converted: Any,
    bad: Any,
    examples: int,
    series: Any,
) -> Any:
    """Convert one Polars column with Narwhals expressions while a plan runs; raise on bad values."""
    import polars as pl

    out = (
        nw.from_native(pl.DataFrame({column: series}))
        .select(converted.alias("c"), bad.alias("b"))
        .to_native()
    )
    return _converted_or_raise(out, series, component, column, target, examples)


def _converted_or_raise(
    out: Any, series: Any, component: str, column: str, target: str, examples: int
) -> Any:
    """``out`` holds the converted column ``c`` and the bad-value flags ``b``: raise naming the
    first bad values and their rows, or return the converted column under the input's name."""
    flags = out["b"]
    if flags.any():
        positions = flags.arg_true().head(examples).to_list()
        shown = ", ".join(f"{series[p]!r} (row {p})" for p in positions)
        raise DataTypeError(
            f"column {column!r}: cannot convert {int(flags.sum())} value(s) to {target}: {shown}",
            component=component,
            hint="fix the data, give a 'format', or set errors: 'coerce' (bad values become null) "
            "or 'reject' (bad rows go to last_rejects)",
        )
    return out["c"].alias(series.name)


def _numpy_number(dtype: Any) -> bool:
    """A numpy int, unsigned or float dtype (not bool, not a pandas extension type)."""
    import numpy as np

    return isinstance(dtype, np.dtype) and dtype.kind in "iuf"


def _check_int_quick(lo: int, hi: int, dtype: Any, full: Any, series: Any) -> Any:
    """Polars numbers -> int while a plan runs: when every value is a whole number in range
    (two reductions and one comparison), cast; otherwise run ``full``, which finds the bad values.
    NaN takes the full path too (where it is missing, not bad).
    """
    low, high = series.min(), series.max()  # nulls are skipped
    if low is None:
        return series.cast(dtype)  # all null
    if low < lo or high > hi:
        return full(series)
    if series.dtype.is_float() and (series.is_nan().any() or not (series.round() == series).all()):
        return full(series)
    if series.dtype.is_decimal() and not (series.round() == series).all():
        return full(series)  # a fraction is bad, as from a float (the cast truncated 2.50)
    return series.cast(dtype)


def _infallible(dtype: Any, spec: TypeSpec) -> bool:
    """True when converting ``dtype`` to ``spec`` can never turn a value into null."""
    target = spec.type
    if dtype == nw.Unknown or target in ("string", "category"):
        return True
    if target in _FLOATS:
        return bool(dtype.is_numeric() or dtype == nw.Boolean)
    if target in _INTS:
        return bool(dtype == nw.Boolean)
    if target == "bool":
        return bool(dtype == nw.Boolean)
    if target == "date":
        return bool(dtype == nw.Date or dtype == nw.Datetime)
    if target == "datetime":
        return bool(dtype == nw.Date or dtype == nw.Datetime)
    return False


def _target_dtype(spec: TypeSpec) -> Any:
    """The Narwhals dtype a spec converts to."""
    if spec.type in _INTS:
        return _INTS[spec.type][0]
    if spec.type in _FLOATS:
        return _FLOATS[spec.type]
    simple = {"bool": nw.Boolean, "string": nw.String, "date": nw.Date, "category": nw.Categorical}
    if spec.type in simple:
        return simple[spec.type]
    if spec.type == "decimal":
        return nw.Decimal(spec.precision, spec.scale)
    return nw.Datetime("us", spec.time_zone)
