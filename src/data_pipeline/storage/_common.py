"""Helpers shared by the storage backends: identifier quoting, frame conversion, option and
primary-key checks, and the errors every backend raises alike (connection failures, existing
targets, new columns, constraint violations)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BeforeValidator, Field, SecretStr

from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import (
    ConfigError,
    InputNotFoundError,
    StorageError,
    StorageSchemaError,
)
from data_pipeline.core.frames import to_arrow, to_polars
from data_pipeline.core.sql.dialects import Dialect, check_name
from data_pipeline.core.sql_errors import NO_USER, STORAGE, first_lines, translate_db_error

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

__all__ = [
    "ColumnList",
    "ServerConfig",
    "already_exists_error",
    "as_arrow",
    "as_polars",
    "check_columns_match",
    "check_identifier",
    "check_unique_key",
    "column_list",
    "connection_error",
    "constraint_error",
    "first_lines",
    "misfit_error",
    "new_columns_error",
    "not_found_error",
    "primary_key",
    "quote_ident",
    "quote_qualified",
    "reject_unknown_options",
    "require_key_columns",
    "require_target",
    "require_upsert_key",
]


def check_identifier(name: object, *, what: str = "table", component: str | None = None) -> str:
    """A non-empty identifier without NUL bytes; anything else (quotes, ``;``, ``--``) is kept verbatim."""
    return check_name(name, what, component)


def quote_ident(name: str, quote: str = '"') -> str:
    """Quote an SQL identifier: the quote character inside is doubled, so the name is kept verbatim."""
    return Dialect("generic", quote).quote(name)


def quote_qualified(table: str, schema: str | None = None, quote: str = '"') -> str:
    """``"schema"."table"`` (or ``"table"``), each part quoted."""
    return Dialect("generic", quote).qualified(table, schema)


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


# -- options, keys and targets shared by the backends --------------------------------------------


def column_list(value: Any) -> Any:
    """Config validator body: one column name becomes a list; empty becomes ``None``."""
    if isinstance(value, str):
        return [value]
    return value or None


#: a config field holding column names: one name is accepted for a list of one; empty is None
ColumnList = Annotated[list[str] | None, BeforeValidator(column_list)]


class ServerConfig(ConfigModel):
    """Connection keys shared by the server-backed stores (relational and NoSQL databases)."""

    url: str | None = None
    """A connection URL (``mongodb://user:pw@host:27017``, ``mongodb+srv://...``,
    ``redis://host:6379/0``) used instead of ``host`` and ``port``; its password is kept secret."""
    host: str = "localhost"
    """The server's host name, used when no ``url`` is given."""
    port: int | None = Field(default=None, gt=0, lt=65536)
    """The server's port, used when no ``url`` is given; absent: the default of ``db_type``
    (MongoDB 27017, Redis 6379)."""
    database: str | None = None
    """Embedded store: the folder holding its files (absent or ``:memory:``: in memory, lost
    with the object); MongoDB: the database name (default ``data_pipeline``); Redis: the
    database number (default ``0``, or the ``url``'s; given beside a ``url``, it replaces the
    URL's)."""
    username: str | None = None
    """The user to log in as (MongoDB user, Redis ACL user). Beside a ``url`` it replaces the
    URL's user and keeps the URL's password."""
    password: SecretStr | None = None
    """The password (kept secret: never in messages or logs); write ``${ENV_VAR}`` in a
    pipeline file. Beside a ``url`` it replaces the URL's password and keeps the URL's user."""
    connect_timeout: int = Field(default=10, gt=0)
    """Seconds to wait for the server (MongoDB: server selection; Redis: the socket
    connection) before a connection error."""


def reject_unknown_options(
    options: Any,
    allowed: Sequence[str],
    *,
    hint: str,
    component: str | None,
    what: str = "option",
) -> None:
    """Raise :class:`ConfigError` naming the keys of ``options`` not in ``allowed``."""
    unknown = set(options) - set(allowed)
    if unknown:
        raise ConfigError(
            f"unknown {what}(s) {', '.join(sorted(unknown))}",
            component=component,
            hint=hint,
        )


def primary_key(options: dict[str, Any], configured: list[str] | None) -> list[str] | None:
    """The store call's ``primary_key=`` option, else the configured one, as a list."""
    key = options.get("primary_key") or configured
    if isinstance(key, str):
        return [key]
    return list(key) if key else None


def require_upsert_key(if_exists: str, key: list[str] | None, *, component: str | None) -> None:
    if if_exists == "upsert" and not key:
        raise ConfigError(
            "if_exists='upsert' needs a primary key",
            component=component,
            hint="set primary_key in the config or pass primary_key=[...]",
        )


def require_key_columns(
    key: list[str], columns: Sequence[str], *, what: str, component: str | None
) -> None:
    """Raise :class:`StorageSchemaError` when a primary key column is not in the data for ``what``."""
    missing = [k for k in key if k not in columns]
    if missing:
        raise StorageSchemaError(
            f"primary key column(s) {', '.join(map(repr, missing))} not in the data for {what}",
            component=component,
            hint=f"the data has columns: {', '.join(map(repr, columns))}",
        )


def check_unique_key(
    frame: pl.DataFrame, key: list[str], target: str, component: str | None
) -> None:
    """Raise :class:`StorageError` with a sample when the data repeats a primary key."""
    import polars as pl

    dup = frame.group_by(key).len().filter(pl.col("len") > 1).head(1)
    if dup.height:
        row = dup.row(0, named=True)
        count = row.pop("len")
        raise duplicate_key_error(row, count, repr(target), component)


def duplicate_key_error(
    sample: dict[str, Any], count: Any, target: str, component: str | None
) -> StorageError:
    return StorageError(
        f"duplicate primary key {sample} ({count} rows) in the data for table {target}; "
        "the table is unchanged",
        component=component,
        hint="deduplicate the data on the primary key before storing",
    )


def already_exists_error(
    what: str,
    *,
    component: str | None,
    where: str | None = None,
    modes: str = "'replace', 'append' or 'upsert'",
) -> StorageError:
    """The error of ``if_exists='fail'`` when the target exists (``what`` names it, ``where`` the store)."""
    location = f" in {where}" if where else ""
    return StorageError(
        f"{what} already exists{location}",
        component=component,
        hint=f"store with if_exists={modes}",
    )


def new_columns_error(
    new: Sequence[str], table: str, *, component: str | None
) -> StorageSchemaError:
    """The data has columns the table lacks and schema evolution is off."""
    return StorageSchemaError(
        f"column(s) {', '.join(map(repr, new))} are not in table {table!r}",
        component=component,
        hint="set schema_evolution: true to add them, drop them, or use if_exists='replace'",
    )


def constraint_error(table: str, detail: str, *, component: str | None) -> StorageError:
    return StorageError(
        f"constraint violation in table {table!r}: {detail}; the table is unchanged",
        component=component,
        hint="fix or remove the offending rows (see the key above), or use if_exists='upsert'",
    )


def misfit_error(table: str, detail: str, *, component: str | None) -> StorageSchemaError:
    return StorageSchemaError(
        f"the data does not fit table {table!r}: {detail}",
        component=component,
        hint="cast the columns to the table's types, or store with if_exists='replace'",
    )


def require_target(target: str | None, query: Any, *, component: str | None) -> None:
    """``retrieve()`` of SQL stores needs a table or a query."""
    if target is None and query is None:
        raise ConfigError(
            "no table or query given and no default_table configured",
            component=component,
            hint="call retrieve('table') or retrieve(query='SELECT ...')",
        )


def not_found_error(
    message: str, names: Sequence[str], *, kind: str, empty: str, component: str | None
) -> InputNotFoundError:
    """:class:`InputNotFoundError` whose hint lists what does exist (``kind: 'a', 'b'``)."""
    return InputNotFoundError(
        message,
        component=component,
        hint=f"{kind}: {', '.join(map(repr, names))}" if names else empty,
    )


# -- connection errors ----------------------------------------------------------------------------


def connection_error(
    exc: BaseException,
    *,
    what: str,
    where: str,
    component: str | None,
    user: object = NO_USER,
    auth: bool | None = None,
    lines: int = 3,
) -> StorageError:
    """A connection failure naming ``what`` at ``where`` (host, port, database), never the password.

    ``auth=None`` detects authentication failures from the (redacted) message; the translation
    itself is :func:`data_pipeline.core.sql_errors.translate_db_error`, shared with ingestion.
    """
    error = translate_db_error(
        exc,
        classes=STORAGE,
        what=what,
        where=where,
        component=component,
        user=user,
        auth=auth,
        connecting=True,
        lines=lines,
    )
    assert isinstance(error, StorageError)
    return error
