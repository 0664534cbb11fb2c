"""Small helpers shared by the storage backends: identifier quoting, frame conversion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from data_pipeline.core.errors import ConfigError, StorageSchemaError
from data_pipeline.core.frames import to_arrow, to_polars

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

__all__ = [
    "as_arrow",
    "as_polars",
    "check_identifier",
    "quote_ident",
    "quote_qualified",
]


def check_identifier(name: object, *, what: str = "table", component: str | None = None) -> str:
    """A non-empty identifier without NUL bytes; anything else (quotes, ``;``, ``--``) is kept verbatim."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ConfigError(
            f"invalid {what} name {name!r}",
            component=component,
            hint=f"a {what} name is a non-empty string without NUL characters",
        )
    return name


def quote_ident(name: str, quote: str = '"') -> str:
    """Quote an SQL identifier: the quote character inside is doubled, so the name is kept verbatim."""
    check_identifier(name, what="identifier")
    return quote + name.replace(quote, quote * 2) + quote


def quote_qualified(table: str, schema: str | None = None, quote: str = '"') -> str:
    """``"schema"."table"`` (or ``"table"``), each part quoted."""
    if schema:
        return f"{quote_ident(schema, quote)}.{quote_ident(table, quote)}"
    return quote_ident(table, quote)


def as_polars(data: Any) -> pl.DataFrame:
    """Any supported frame as an eager polars DataFrame (zero-copy from Arrow where possible)."""
    return to_polars(data)


def as_arrow(data: Any) -> pa.Table:
    """Any supported frame as a pyarrow Table."""
    import polars as pl

    if isinstance(data, pl.LazyFrame):
        data = data.collect()
    if isinstance(data, pl.DataFrame):
        return data.to_arrow()
    return to_arrow(data)


def check_columns_match(
    existing: Sequence[str], new: Sequence[str], *, target: str, component: str | None
) -> None:
    """Raise :class:`StorageSchemaError` naming the columns that differ between target and data."""
    missing = [c for c in existing if c not in set(new)]
    extra = [c for c in new if c not in set(existing)]
    if missing or extra:
        parts = []
        if extra:
            parts.append(f"new columns not in {target!r}: {', '.join(map(repr, extra))}")
        if missing:
            parts.append(
                f"columns of {target!r} missing from the data: {', '.join(map(repr, missing))}"
            )
        raise StorageSchemaError(
            "; ".join(parts),
            component=component,
            hint="select/rename columns to match the target, or store with if_exists='replace'",
        )
