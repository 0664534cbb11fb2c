"""What differs between SQL dialects, written once: quoting, identifier limits, DDL types, upserts.

* :meth:`Dialect.quote` quotes an identifier (the quote character inside is doubled, so any
  name is kept verbatim: ``x"; DROP TABLE t; --`` is a table of that name).
* :meth:`Dialect.check_identifier` refuses, before anything is written, a name the database
  would silently truncate or reject: PostgreSQL keeps 63 bytes, MySQL/MariaDB 64 characters.
* :func:`ddl_type` is the one mapping from a data type to a column type in each dialect.
* :meth:`Dialect.upsert_sql` is the native upsert: ``INSERT ... ON CONFLICT DO UPDATE``
  (PostgreSQL, SQLite) or ``INSERT ... ON DUPLICATE KEY UPDATE`` (MySQL/MariaDB), which stay
  correct when two loads insert the same new keys at the same time.

Example:
    >>> from data_pipeline.core.sql.dialects import dialect
    >>> pg = dialect("postgresql")
    >>> print(pg.quote('x"y'))
    "x""y"
    >>> print(pg.upsert_sql('"t"', '"s"', ["id", "v"], ["id"]))
    INSERT INTO "t" ("id", "v") SELECT "id", "v" FROM "s" ON CONFLICT ("id") DO UPDATE SET "v" = EXCLUDED."v"
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from data_pipeline.core.errors import ConfigError
from data_pipeline.core.sql.params import ParamStyle

__all__ = ["Dialect", "check_name", "ddl_type", "dialect"]


@dataclass(frozen=True)
class Dialect:
    """One SQL dialect's rules."""

    name: str
    quote_char: str = '"'
    max_identifier: int | None = None
    identifier_unit: Literal["bytes", "characters"] = "bytes"
    param_style: ParamStyle = "format"

    @property
    def label(self) -> str:
        return {"postgresql": "PostgreSQL", "mysql": "MySQL/MariaDB", "sqlite": "SQLite"}.get(
            self.name, self.name
        )

    def quote(self, name: str) -> str:
        """Quote an identifier; the quote character inside is doubled."""
        check_name(name, "identifier", None)
        q = self.quote_char
        return q + name.replace(q, q * 2) + q

    def qualified(self, table: str, schema: str | None = None) -> str:
        """``"schema"."table"`` (or ``"table"``), each part quoted."""
        if schema:
            return f"{self.quote(schema)}.{self.quote(table)}"
        return self.quote(table)

    def check_identifier(
        self, name: object, *, what: str = "table", component: str | None = None
    ) -> str:
        """A name the database keeps as given, or a :class:`ConfigError` saying why not."""
        text = check_name(name, what, component)
        limit = self.max_identifier
        if limit is not None:
            size = len(text.encode()) if self.identifier_unit == "bytes" else len(text)
            if size > limit:
                raise ConfigError(
                    f"{what} name {text!r} is {size} {self.identifier_unit} long; "
                    f"{self.label} keeps at most {limit} (a longer name would be cut or refused)",
                    component=component,
                    hint=f"rename the {what} to at most {limit} {self.identifier_unit}",
                )
        if self.name == "mysql" and text != text.rstrip(" "):
            raise ConfigError(
                f"{what} name {text!r} ends with a space, which MySQL/MariaDB does not allow",
                component=component,
                hint=f"rename the {what}",
            )
        return text

    def check_names(
        self,
        table: str,
        columns: Sequence[str] = (),
        *,
        schema: str | None = None,
        component: str | None = None,
    ) -> None:
        """Check a table, its schema and its column names at once (before any write)."""
        self.check_identifier(table, what="table", component=component)
        if schema:
            self.check_identifier(schema, what="schema", component=component)
        for column in columns:
            self.check_identifier(column, what="column", component=component)

    # -- statements --------------------------------------------------------------------------

    def upsert_sql(
        self, target: str, source: str, columns: Sequence[str], key: Sequence[str]
    ) -> str:
        """Insert the rows of ``source`` into ``target``, updating rows whose ``key`` exists.

        ``target`` and ``source`` are already quoted; the target needs a PRIMARY KEY or UNIQUE
        constraint on exactly ``key`` (on MySQL/MariaDB any unique key of the table matches).
        """
        cols = ", ".join(self.quote(c) for c in columns)
        updates = [c for c in columns if c not in key]
        head = f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {source}"  # noqa: S608
        if self.name == "mysql":
            sets = ", ".join(
                f"{self.quote(c)} = VALUES({self.quote(c)})" for c in (updates or key[:1])
            )
            return f"{head} ON DUPLICATE KEY UPDATE {sets}"
        conflict = ", ".join(self.quote(k) for k in key)
        if self.name == "sqlite":
            head += " WHERE true"  # SQLite: ON CONFLICT after a SELECT needs a WHERE
        if not updates:
            return f"{head} ON CONFLICT ({conflict}) DO NOTHING"
        sets = ", ".join(f"{self.quote(c)} = EXCLUDED.{self.quote(c)}" for c in updates)
        return f"{head} ON CONFLICT ({conflict}) DO UPDATE SET {sets}"

    def ddl_type(self, dtype: Any, *, is_key: bool = False) -> str:
        """The column type for a polars dtype (see :func:`ddl_type`)."""
        return ddl_type(dtype, self.name, is_key=is_key)


def check_name(name: object, what: str = "table", component: str | None = None) -> str:
    """A non-empty identifier without NUL bytes (anything else is kept verbatim by quoting)."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ConfigError(
            f"invalid {what} name {name!r}",
            component=component,
            hint=f"a {what} name is a non-empty string without NUL characters",
        )
    return name


_DIALECTS = {
    "postgresql": Dialect("postgresql", '"', 63, "bytes", "format"),
    "mysql": Dialect("mysql", "`", 64, "characters", "format"),
    "sqlite": Dialect("sqlite", '"', None, "bytes", "qmark"),
    "duckdb": Dialect("duckdb", '"', None, "bytes", "dollar_named"),
}


def dialect(name: str) -> Dialect:
    """The rules of ``postgresql``, ``mysql`` (MariaDB too), ``sqlite``, ``duckdb``; others get
    ANSI quoting and no known limit."""
    key = {"mariadb": "mysql", "postgres": "postgresql"}.get(name, name)
    return _DIALECTS.get(key) or Dialect(key)


def ddl_type(dtype: Any, dialect_name: str, *, is_key: bool = False) -> str:
    """The column type for a polars dtype in a dialect (the one DDL mapping of the project).

    ``is_key``: the column is part of a primary key (MySQL cannot index ``LONGTEXT``).
    """
    import polars as pl

    from data_pipeline.core.errors import UnsupportedOperationError
    from data_pipeline.core.types import DataType, from_polars

    name = {"mariadb": "mysql"}.get(dialect_name, dialect_name)
    if name not in ("postgresql", "mysql", "sqlite", "duckdb"):
        name = "generic"
    try:
        logical = from_polars(dtype)  # the one vocabulary of types (core.types)
    except UnsupportedOperationError:
        if dtype == pl.Int128:
            return (
                "INTEGER"
                if name == "sqlite"
                else "DECIMAL(39, 0)"
                if name == "mysql"
                else "NUMERIC(39, 0)"
            )
        logical = DataType("string")  # nulls: a text column, as before
    return logical.sql(name, is_key=is_key)
