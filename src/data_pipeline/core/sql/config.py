"""The one connection model of every SQL component, and what it resolves to.

:class:`SQLConnectionConfig` holds the keys a user writes (a ``url``, or the spec's ``db_type``,
``host``, ``port``, ``database``, ``username``, ``password``), shared by ``DatabaseSource`` and
``RelationalDBStorage``. :func:`resolve` turns it into a :class:`SQLTarget`: the dialect, the
parts, and every form the drivers want (libpq / ConnectorX URIs, JDBC URL and properties, a
SQLAlchemy URL for other dialects). The password is only ever handed to a driver; ``where()``
names ``host:port/database`` for messages.

Example:
    >>> from data_pipeline.core.sql import SQLConnectionConfig, resolve
    >>> target = resolve(SQLConnectionConfig(url="postgresql://loader:pw@db:5433/sales"))
    >>> target.dialect, target.where()
    ('postgresql', 'db:5433/sales')
    >>> resolve(SQLConnectionConfig(db_type="mariadb", database="shop")).jdbc()[0]
    'jdbc:mariadb://localhost:3306/shop'
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import ConfigError

__all__ = [
    "DEFAULT_PORTS",
    "DbType",
    "SQLConnectionConfig",
    "SQLTarget",
    "resolve",
]

DbType = Literal["sqlite", "postgresql", "mysql", "mariadb", "duckdb", "mssql", "oracle"]
_ALIASES = {
    "postgres": "postgresql",
    "pg": "postgresql",
    "psql": "postgresql",
    "sqlite3": "sqlite",
    "sqlserver": "mssql",
}
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433, "oracle": 1521}
#: SQLAlchemy drivers we install, for dialects reached through SQLAlchemy
_SQLALCHEMY_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "mssql": "mssql+pyodbc",
    "oracle": "oracle+oracledb",
}
_FILE_DIALECTS = ("sqlite", "duckdb")


def _dialect_name(value: str) -> str:
    name = value.strip().lower().split("+", 1)[0]
    return _ALIASES.get(name, name)


class SQLConnectionConfig(ConfigModel):
    """Where a SQL database is: a ``url``, or ``db_type`` with the spec's keys.

    ``url`` is a SQLAlchemy-style URL (``postgresql://user:pw@host:5432/db``,
    ``mysql+pymysql://...``, ``sqlite:///path.db``, ``duckdb:///file.duckdb``); its password is
    kept secret. Beside a ``url``, only ``username`` and ``password`` may be given (to keep the
    secret out of the URL), and only when the URL has none. ``schema`` is the namespace of the
    tables (a PostgreSQL schema, a MySQL database).
    """

    url: str | None = None
    """A database URL; or give ``db_type`` and the keys below."""
    db_type: DbType | None = None
    """``sqlite``, ``postgresql`` (``postgres``), ``mysql``, ``mariadb``, ``duckdb``, ``mssql``,
    ``oracle``. A DatabaseSource needs it or ``url``; a RelationalDBStorage given neither is
    SQLite, and stores DuckDB through DataWarehouseStorage instead."""
    host: str | None = None
    """Server host (default ``localhost``)."""
    port: int | None = Field(default=None, gt=0, lt=65536)
    """Server port (default per ``db_type``: 5432, 3306, ...)."""
    database: str | None = None
    """The database name; for SQLite and DuckDB the file path (``:memory:`` when omitted)."""
    username: str | None = None
    """The user to log in as (ignored by SQLite and DuckDB files). Beside a ``url`` only when
    the URL names no user."""
    password: SecretStr | None = None
    """The user's password, kept secret (never shown in messages, logs or ``repr``); write
    ``${ENV_VAR}`` in a pipeline file. Beside a ``url`` only when the URL has no password."""
    schema_name: str | None = Field(default=None, alias="schema")
    """The namespace of the tables (PostgreSQL schema, MySQL database)."""
    connect_timeout: float = Field(default=10, gt=0)
    """Seconds to wait for the server to accept a connection."""
    connect_args: dict[str, Any] | None = None
    """Extra driver connection arguments (psycopg/libpq keywords, PyMySQL arguments)."""

    @field_validator("db_type", mode="before")
    @classmethod
    def _alias(cls, value: Any) -> Any:
        return _dialect_name(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_way(self) -> SQLConnectionConfig:
        if self.url:
            clash = [
                key
                for key in ("db_type", "host", "port", "database")
                if getattr(self, key) is not None
            ]
            if clash:
                raise ValueError(
                    f"give either 'url' or {', '.join(map(repr, clash))}, not both "
                    "(beside a url only 'username' and 'password' may be given)"
                )
        return self


@dataclass(frozen=True)
class SQLTarget:
    """A resolved connection: the dialect and its parts (the password only for drivers)."""

    dialect: str
    """``postgresql``, ``mysql`` (also MariaDB), ``sqlite``, ``duckdb`` or another SQLAlchemy
    dialect name."""
    host: str | None = None
    port: int | None = None
    database: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    schema: str | None = None
    connect_timeout: float = 10
    connect_args: dict[str, Any] = field(default_factory=dict)
    flavor: str = ""
    """``mariadb`` when the user said so (JDBC driver choice); else the dialect."""
    url: str | None = field(default=None, repr=False)
    """The user's URL (other dialects go through SQLAlchemy with it)."""

    # -- names for messages ----------------------------------------------------------------

    @property
    def is_file(self) -> bool:
        return self.dialect in _FILE_DIALECTS

    @property
    def path(self) -> str:
        """The database file of SQLite / DuckDB (``:memory:`` when none)."""
        return self.database or ":memory:"

    def where(self) -> str:
        """``host:port/database`` (or the file), never the password."""
        if self.is_file:
            return self.path
        if self.url and self.dialect not in ("postgresql", "mysql"):
            from data_pipeline.core.secrets import redact_url

            return redact_url(self.url)
        return f"{self.host}:{self.port}/{self.database or ''}"

    @property
    def label(self) -> str:
        """``PostgreSQL``, ``MySQL/MariaDB``, ``SQLite``, ... for messages."""
        return {
            "postgresql": "PostgreSQL",
            "mysql": "MySQL/MariaDB",
            "sqlite": "SQLite",
            "duckdb": "DuckDB",
        }.get(self.dialect, self.dialect)

    @property
    def timeout_seconds(self) -> int:
        """``connect_timeout`` as whole seconds (libpq and PyMySQL take integers)."""
        return max(1, math.ceil(self.connect_timeout))

    # -- forms the drivers want ------------------------------------------------------------

    def uri(self, scheme: str | None = None, *, query: dict[str, Any] | None = None) -> str:
        """``scheme://user:pw@host:port/db?...`` with percent-encoded parts (never logged)."""
        if self.dialect == "sqlite":
            return f"sqlite://{os.path.abspath(self.path)}"
        user = quote(self.username or "", safe="")
        auth = ""
        if self.password is not None:
            auth = f"{user}:{quote(self.password, safe='')}@"
        elif user:
            auth = f"{user}@"
        host = f"[{self.host}]" if self.host and ":" in self.host else (self.host or "")
        text = f"{scheme or self.dialect}://{auth}{host}:{self.port}/{quote(self.database or '', safe='')}"
        if query:
            text += "?" + urlencode({k: str(v) for k, v in query.items()})
        return text

    def libpq_uri(self) -> str:
        """The libpq URI (ADBC), with ``connect_timeout`` and ``connect_args`` as parameters."""
        return self.uri(
            "postgresql",
            query={"connect_timeout": max(2, self.timeout_seconds), **self.connect_args},
        )

    def jdbc(self) -> tuple[str, dict[str, str]]:
        """The JDBC URL and connection properties (user, password, driver) of this target.

        >>> from data_pipeline.core.sql import SQLConnectionConfig, resolve
        >>> url, props = resolve(SQLConnectionConfig(db_type="postgresql", database="d")).jdbc()
        >>> url, props["driver"]
        ('jdbc:postgresql://localhost:5432/d', 'org.postgresql.Driver')
        """
        props: dict[str, str] = {}
        if self.username:
            props["user"] = self.username
        if self.password is not None:
            props["password"] = self.password
        db = quote(self.database or "", safe="")
        if self.dialect == "postgresql":
            props["driver"] = "org.postgresql.Driver"
            props["connectTimeout"] = str(self.timeout_seconds)
            return f"jdbc:postgresql://{self.host}:{self.port}/{db}", props
        if self.dialect == "mysql":
            if self.flavor == "mariadb":
                props["driver"] = "org.mariadb.jdbc.Driver"
                props["connectTimeout"] = str(self.timeout_seconds * 1000)
                return f"jdbc:mariadb://{self.host}:{self.port}/{db}", props
            props["driver"] = "com.mysql.cj.jdbc.Driver"
            props["connectTimeout"] = str(self.timeout_seconds * 1000)
            return f"jdbc:mysql://{self.host}:{self.port}/{db}", props
        if self.dialect == "sqlite":
            props["driver"] = "org.sqlite.JDBC"
            return f"jdbc:sqlite:{os.path.abspath(self.path)}", props
        raise ConfigError(
            f"no JDBC URL is known for {self.label}",
            hint="use PostgreSQL, MySQL/MariaDB or SQLite, or give Spark the JDBC URL yourself",
        )

    def sqlalchemy_url(self) -> Any:
        """A SQLAlchemy ``URL`` with the drivers we install (SQLAlchemy imported here)."""
        from data_pipeline.core.deps import import_optional

        sa = import_optional("sqlalchemy", extra="sql", feature="SQLAlchemy database URLs")
        if self.url and self.dialect not in ("postgresql", "mysql", "sqlite"):
            url = sa.engine.make_url(self.url)
            if self.username and not url.username:
                url = url.set(username=self.username)
            if self.password is not None and url.password is None:
                url = url.set(password=self.password)
            return url
        if self.is_file:
            return sa.engine.URL.create(self.dialect, database=self.path)
        return sa.engine.URL.create(
            _SQLALCHEMY_DRIVERS.get(self.dialect, self.dialect),
            username=self.username,
            password=self.password,
            host=self.host,
            port=self.port,
            database=self.database,
            query={k: str(v) for k, v in self.connect_args.items()},
        )


def resolve(
    config: SQLConnectionConfig,
    *,
    default_db_type: str | None = None,
    component: str | None = None,
) -> SQLTarget:
    """The :class:`SQLTarget` of a config (a url is parsed; defaults filled in).

    ``default_db_type`` is used when neither ``url`` nor ``db_type`` is given (storage: SQLite);
    without it that is a :class:`ConfigError`.
    """
    password = config.password.get_secret_value() if config.password else None
    common: dict[str, Any] = {
        "schema": config.schema_name,
        "connect_timeout": config.connect_timeout,
        "connect_args": dict(config.connect_args or {}),
    }
    if config.url:
        return _from_url(config, password, common, component)
    kind = config.db_type or default_db_type
    if kind is None:
        raise ConfigError(
            "no database given",
            component=component,
            hint="give 'url' (e.g. postgresql://user@host/db) or 'db_type' with host/database",
        )
    flavor = kind
    dialect = "mysql" if kind == "mariadb" else kind
    if dialect in _FILE_DIALECTS:
        if config.host or config.port:
            raise ConfigError(
                f"{kind} is a file: 'host' and 'port' do not apply",
                component=component,
                hint="give 'database' as the file path",
            )
        return SQLTarget(dialect=dialect, database=config.database, flavor=flavor, **common)
    if not config.database:
        raise ConfigError(
            f"db_type {kind!r} needs 'database' (the database name)",
            component=component,
            hint="add database: <name> to the config",
        )
    return SQLTarget(
        dialect=dialect,
        flavor=flavor,
        host=config.host or "localhost",
        port=config.port or DEFAULT_PORTS.get(kind),
        database=config.database,
        username=config.username,
        password=password,
        **common,
    )


def _from_url(
    config: SQLConnectionConfig, password: str | None, common: dict[str, Any], component: str | None
) -> SQLTarget:
    from data_pipeline.core.secrets import redact_url, register_secret

    url = str(config.url)
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise ConfigError(
            f"invalid database url {redact_url(url)!r}",
            component=component,
            hint="write e.g. postgresql://user:password@host:5432/database or sqlite:///path.db",
        )
    flavor = _dialect_name(scheme)
    dialect = "mysql" if flavor == "mariadb" else flavor
    if dialect in _FILE_DIALECTS:
        # sqlite:///relative.db, sqlite:////absolute.db, sqlite:// (memory)
        path, _, _query = rest.partition("?")
        database = unquote(path[1:]) if path.startswith("/") else unquote(path)
        return SQLTarget(
            dialect=dialect, database=database or None, flavor=flavor, url=url, **common
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(
            f"invalid database url {redact_url(url)!r}: {exc}",
            component=component,
            hint="write e.g. postgresql://user:password@host:5432/database",
        ) from None
    url_user = unquote(parts.username) if parts.username else None
    url_password = unquote(parts.password) if parts.password is not None else None
    if url_password is not None:
        register_secret(url_password)
        register_secret(parts.password)
    for key, mine, theirs in (
        ("username", config.username, url_user),
        ("password", password, url_password),
    ):
        if mine is not None and theirs is not None:
            raise ConfigError(
                f"{key} is given twice: in 'url' and as '{key}'",
                component=component,
                hint=f"keep one of them (a '{key}' key keeps the secret out of the URL)",
            )
    args = {**dict(parse_qsl(parts.query)), **common.pop("connect_args")}
    return SQLTarget(
        dialect=dialect,
        flavor=flavor,
        host=parts.hostname or "localhost",
        port=port or DEFAULT_PORTS.get(flavor),
        database=unquote(parts.path.lstrip("/")) or None,
        username=url_user or config.username,
        password=url_password if url_password is not None else password,
        url=url,
        connect_args=args,
        **common,
    )
