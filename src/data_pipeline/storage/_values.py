"""What a backend can hold, and the encodings of typed columns for stores without those types.

One place for the value rules of the stores that do not keep Arrow types themselves (text files,
documents, Redis), so that the type vocabulary of ``core/types.py`` can take them over:

* :class:`Holds` says what a backend keeps (time resolution, NaN/infinity, bytes, decimals, ...);
  :func:`check_holdable` refuses a frame holding a value that the backend would change, naming
  the column, how many values and the first one (values are stored as given or not at all).
* :func:`schema_bytes` / :func:`schema_from_bytes`: a polars schema as bytes (an empty Arrow IPC
  stream), exact for every type, stored beside the data so a read restores the types.
* :func:`text_columns` / :func:`from_text`: every column as text (binary stays bytes), exact
  both ways given the schema (Redis hashes).
* :func:`documents` / :func:`from_documents`: rows as BSON-ready dicts and back (MongoDB,
  montydb).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from data_pipeline.core.errors import StorageSchemaError
from data_pipeline.core.files import schema_bytes, schema_from_bytes

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "Holds",
    "check_holdable",
    "documents",
    "from_documents",
    "from_text",
    "schema_bytes",
    "schema_from_bytes",
    "text_columns",
]

_UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000}
_TIME_TEXT = "%H:%M:%S%.f"


@dataclass(frozen=True)
class Holds:
    """What a backend keeps; the defaults keep everything (Parquet, Arrow IPC)."""

    what: str
    #: finest fraction of a second kept by timestamps
    time_unit: Literal["ns", "us", "ms"] = "ns"
    #: finest fraction of a second kept by times of day and durations
    clock_unit: Literal["ns", "us", "ms"] = "ns"
    nan_inf: bool = True
    binary: bool = True
    time: bool = True
    duration: bool = True
    #: unsigned 64-bit values above 2**63 - 1
    uint64: bool = True
    #: most significant digits of a decimal (None: any)
    decimal_digits: int | None = None
    #: decimals come back as floats: only values a float holds exactly
    decimal_as_float: bool = False
    nested: bool = True
    #: -0.0 keeps its sign
    negative_zero: bool = True
    #: text may hold NUL characters
    nul_text: bool = True


def check_holdable(frame: pl.DataFrame, holds: Holds, *, component: str | None) -> None:
    """Raise :class:`StorageSchemaError` for the first column with a value ``holds`` cannot keep."""
    import polars as pl

    checks: list[tuple[str, pl.Expr | None, str, str]] = []  # column, bad-value mask, why, hint
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if dtype == pl.Binary and not holds.binary:
            checks.append(
                (
                    name,
                    None,
                    "have no bytes type",
                    "store binary data in Parquet or Arrow IPC, or encode it (base64)",
                )
            )
        elif dtype == pl.Time and not holds.time:
            checks.append(
                (
                    name,
                    None,
                    "have no time-of-day type",
                    f"cast it to text first (pl.col({name!r}).dt.strftime('%H:%M:%S%.f'))",
                )
            )
        elif isinstance(dtype, pl.Duration) and not holds.duration:
            checks.append(
                (
                    name,
                    None,
                    "have no duration type",
                    f"store a number instead (pl.col({name!r}).dt.total_microseconds())",
                )
            )
        elif isinstance(dtype, (pl.List, pl.Array, pl.Struct)) and not holds.nested:
            checks.append(
                (
                    name,
                    None,
                    "have no nested types",
                    f"json-encode it first (pl.col({name!r}).struct.json_encode())",
                )
            )
        elif dtype.is_float() and not (holds.nan_inf and holds.negative_zero):
            bad = pl.lit(False)
            what = []
            if not holds.nan_inf:
                bad = bad | col.is_nan() | col.is_infinite()
                what.append("NaN or infinity")
            if not holds.negative_zero:  # -0.0 == 0.0: the sign bit tells them apart
                bad = bad | ((col == 0) & (pl.lit(1.0) / col < 0))
                what.append("-0.0 (it becomes 0.0)")
            checks.append(
                (
                    name,
                    bad,
                    f"have no {' and no '.join(what)}",
                    "replace them (e.g. with null or 0.0) before storing, or use Parquet",
                )
            )
        elif dtype == pl.String and not holds.nul_text:
            checks.append(
                (
                    name,
                    col.str.contains("\x00", literal=True),
                    "cannot hold the NUL character in text",
                    f"remove it (pl.col({name!r}).str.replace_all('\\x00', '')) or store bytes",
                )
            )
        elif dtype == pl.UInt64 and not holds.uint64:
            checks.append(
                (
                    name,
                    col > 2**63 - 1,
                    "hold no integer above 2**63 - 1",
                    "cast the column to a decimal or text first",
                )
            )
        elif isinstance(dtype, pl.Decimal):
            if holds.decimal_as_float:
                checks.append(
                    (
                        name,
                        col.cast(pl.Float64).cast(dtype, strict=False) != col,
                        "are read back as floats, which do not hold these digits",
                        "store it in Parquet, or cast it to text first",
                    )
                )
            elif (
                holds.decimal_digits is not None and (dtype.precision or 38) > holds.decimal_digits
            ):
                scale = dtype.scale or 0
                limit = pl.lit(str(10 ** (holds.decimal_digits - scale))).cast(
                    pl.Decimal(38, scale)
                )
                checks.append(
                    (
                        name,
                        col.abs() >= limit,
                        f"hold at most {holds.decimal_digits} digits",
                        "round the column or store it as text",
                    )
                )
        if isinstance(dtype, pl.Datetime):
            finest = holds.time_unit
        elif isinstance(dtype, pl.Duration) or dtype == pl.Time:
            finest = holds.clock_unit
        else:
            continue
        unit = getattr(dtype, "time_unit", None) or "ns"  # Time counts nanoseconds
        step = _UNIT_NS[finest] // _UNIT_NS[unit]
        if step > 1:
            fraction = "milliseconds" if finest == "ms" else "microseconds"
            checks.append(
                (
                    name,
                    col.to_physical() % step != 0,
                    f"keep {fraction}; finer fractions of a second would be cut",
                    f"truncate it first (pl.col({name!r}).dt.truncate('1{finest}'))",
                )
            )
    for name, mask, why, hint in checks:
        if mask is None:  # the type itself
            raise StorageSchemaError(
                f"column {name!r} cannot be stored: {holds.what} {why} "
                f"(the column is {frame.schema[name]})",
                component=component,
                hint=hint,
            )
    value_checks = [(n, m, w, h) for n, m, w, h in checks if m is not None]
    if not value_checks:
        return
    counts = frame.select(
        [m.fill_null(False).sum().alias(str(i)) for i, (_, m, _, _) in enumerate(value_checks)]
    ).row(0)
    for (name, mask, why, hint), count in zip(value_checks, counts, strict=True):
        if count:
            first = frame.filter(mask.fill_null(False)).get_column(name).head(1).to_list()
            sample = repr(first[0])[:60] if first else "null"
            raise StorageSchemaError(
                f"column {name!r} cannot be stored: {holds.what} {why} "
                f"({count} value(s), e.g. {sample})",
                component=component,
                hint=hint,
            )


# -- text (Redis hashes) ----------------------------------------------------------------------


def text_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column as text (binary stays bytes): ISO 8601 timestamps with every digit, floats
    in their shortest exact form, durations as a count of their unit, decimals with their scale."""
    import polars as pl

    exprs = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if dtype == pl.Binary or dtype == pl.String:
            exprs.append(col)
        elif dtype == pl.Time:
            exprs.append(col.dt.strftime(_TIME_TEXT))
        elif isinstance(dtype, pl.Duration):
            exprs.append(col.to_physical().cast(pl.String))
        elif isinstance(dtype, (pl.List, pl.Array, pl.Struct)):
            exprs.append(pl.struct(col).struct.json_encode().str.slice(len(name) + 4).str.head(-1))
        else:
            exprs.append(col.cast(pl.String))
    return frame.select(exprs)


def from_text(frame: pl.DataFrame, schema: Any) -> pl.DataFrame:
    """The inverse of :func:`text_columns` (``frame`` holds text or bytes, ``schema`` the types)."""
    import polars as pl

    exprs = []
    for name, dtype in schema.items():
        if name not in frame.columns:
            exprs.append(pl.lit(None, dtype).alias(name))
            continue
        if frame.schema[name] == dtype:
            exprs.append(pl.col(name))
        else:
            exprs.append(_parse_text(pl.col(name), dtype).alias(name))
    return frame.select(exprs)


def _parse_text(col: pl.Expr, dtype: Any) -> pl.Expr:
    import polars as pl

    if dtype == pl.String or dtype == pl.Binary:
        return col
    if dtype == pl.Boolean:
        return col.replace_strict(
            {"true": True, "false": False}, default=None, return_dtype=pl.Boolean
        )
    if isinstance(dtype, pl.Datetime):
        return col.str.to_datetime(time_unit=dtype.time_unit, time_zone=dtype.time_zone)
    if dtype == pl.Date:
        return col.str.to_date()
    if dtype == pl.Time:
        return col.str.to_time(_TIME_TEXT)
    if isinstance(dtype, pl.Duration):
        return col.cast(pl.Int64).cast(dtype)
    if isinstance(dtype, (pl.List, pl.Array, pl.Struct)):
        return col.str.json_decode(dtype)
    return col.cast(dtype)


# -- documents (MongoDB, montydb) ------------------------------------------------------------


def documents(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows as BSON-ready dicts: dates as midnight datetimes, times as text, durations as a count
    of their unit, decimals as Decimal128, unsigned as signed 64-bit (checked beforehand)."""
    import polars as pl

    exprs = []
    decimals = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if dtype == pl.Date:
            exprs.append(col.cast(pl.Datetime("ms")))
        elif dtype == pl.Time:
            exprs.append(col.dt.strftime(_TIME_TEXT))
        elif isinstance(dtype, (pl.Categorical, pl.Enum)):
            exprs.append(col.cast(pl.String))
        elif isinstance(dtype, pl.Duration):
            exprs.append(col.to_physical())
        elif dtype == pl.UInt64:
            exprs.append(col.cast(pl.Int64))
        elif isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
            exprs.append(col.dt.convert_time_zone("UTC").dt.replace_time_zone(None))
        else:
            if isinstance(dtype, pl.Decimal):
                decimals.append(name)
            exprs.append(col)
    rows = frame.select(exprs).to_dicts()
    if decimals:
        from bson.decimal128 import Decimal128

        for row in rows:
            for name in decimals:
                if row[name] is not None:
                    row[name] = Decimal128(row[name])
    return rows


def from_documents(
    docs: list[dict[str, Any]], schema: Any | None, columns: list[str] | None
) -> pl.DataFrame:
    """Documents back into a frame; with the stored ``schema``, every column in its own type."""
    import polars as pl

    if schema is None:
        if not docs:
            return pl.DataFrame({c: [] for c in columns or []})
        return pl.from_dicts(docs, infer_schema_length=None)
    wanted = [c for c in (columns or list(schema)) if c in schema]
    encoded: dict[str, Any] = {}
    for name in wanted:
        dtype = schema[name]
        if isinstance(dtype, pl.Decimal):
            for d in docs:
                value = d.get(name)
                if value is not None and hasattr(value, "to_decimal"):
                    d[name] = value.to_decimal()
            encoded[name] = dtype
        elif dtype == pl.Date or isinstance(dtype, pl.Datetime):
            encoded[name] = pl.Datetime("ms")
        elif dtype == pl.Time:
            encoded[name] = pl.String
        elif isinstance(dtype, pl.Duration) or dtype.is_integer():
            encoded[name] = pl.Int64
        elif dtype.is_float():
            encoded[name] = pl.Float64
        elif isinstance(dtype, (pl.Categorical, pl.Enum)):
            encoded[name] = pl.String
        else:
            encoded[name] = dtype
    extra = [c for c in (columns or []) if c not in schema]
    frame = pl.from_dicts(docs, schema=encoded) if docs else pl.DataFrame(schema=encoded)
    exprs = []
    for name in wanted:
        dtype = schema[name]
        col = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            col = col.cast(pl.Datetime(dtype.time_unit))
            if dtype.time_zone is not None:
                col = col.dt.replace_time_zone("UTC").dt.convert_time_zone(dtype.time_zone)
            exprs.append(col)
        elif dtype == pl.Time:
            exprs.append(col.str.to_time(_TIME_TEXT))
        elif isinstance(dtype, pl.Duration):
            exprs.append(col.cast(dtype))
        else:
            exprs.append(col.cast(dtype))
    out = frame.select(exprs)
    if extra and docs:
        more = pl.from_dicts([{c: d.get(c) for c in extra} for d in docs], infer_schema_length=None)
        out = pl.concat([out, more], how="horizontal")
    return out
