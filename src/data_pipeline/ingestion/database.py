"""DatabaseSource: read a query or a table into Arrow, by the fastest sound path per database.

=============  ==============================================  ====================================
database       path                                            why
=============  ==============================================  ====================================
PostgreSQL     ADBC (``adbc-driver-postgresql``), COPY binary  Arrow straight from the wire; bound
                                                               parameters; streamed batches
MySQL/MariaDB  ConnectorX without parameters, else SQLAlchemy  Rust client into Arrow; parameters
               (PyMySQL) through ``polars.read_database``       are always bound, never inlined
SQLite         ConnectorX without parameters, else SQLAlchemy  as above
DuckDB         DuckDB's Arrow reader on the file, read-only    native, ``$name`` parameters bound
others         SQLAlchemy through ``polars.read_database``      every dialect SQLAlchemy knows
=============  ==============================================  ====================================

Parameters are always bound (``:name`` placeholders), identifiers are quoted by the dialect, and
connection errors name host, port and database, never the password.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, model_validator

from data_pipeline.core.config import ConfigModel
from data_pipeline.core.deps import import_optional
from data_pipeline.core.errors import (
    ConfigError,
    DataPipelineError,
    IngestionConnectionError,
    IngestionError,
    InputNotFoundError,
)
from data_pipeline.core.secrets import register_secret
from data_pipeline.core.sql_errors import INGESTION, translate_db_error
from data_pipeline.ingestion._common import DeliveredKeys, StateStore
from data_pipeline.ingestion.base import DataSource, SourceConfig

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DatabaseConfig", "DatabaseSource"]

DbType = Literal[
    "postgresql", "postgres", "mysql", "mariadb", "sqlite", "mssql", "oracle", "duckdb"
]

_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "sqlite": "sqlite",
    "mssql": "mssql+pyodbc",
    "oracle": "oracle+oracledb",
    "duckdb": "duckdb",
}
_EXTRAS = {"postgresql": "postgres", "mysql": "mysql"}
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433, "oracle": 1521}
_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")


class IncrementalConfig(ConfigModel):
    cursor_column: str
    """A column that grows (``updated_at``, ``id``): each run reads rows above the last value.

    With ``query``, a column of the query's result (the query is wrapped in a sub-select)."""
    initial_value: Any = None
    """The first run reads rows whose cursor is above this (all rows when absent)."""
    lookback: float = Field(default=0, ge=0)
    """Re-read this much before the last value (seconds for timestamps and dates, units for
    numbers) to catch rows committed late; needs ``primary_key``."""
    primary_key: str | list[str] | None = None
    """With it, the next run re-reads from the last value (minus ``lookback``) and drops the rows
    it already delivered (same key and cursor value), so late rows are neither lost nor doubled."""
    state_path: str | None = None

    @model_validator(mode="after")
    def _lookback_needs_key(self) -> IncrementalConfig:
        if self.lookback and not self.primary_key:
            raise ValueError("'lookback' needs 'primary_key' (to drop the rows already delivered)")
        if isinstance(self.primary_key, list) and not self.primary_key:
            raise ValueError("'primary_key': give at least one column")
        return self

    @property
    def keys(self) -> list[str]:
        """The primary key columns (empty without ``primary_key``)."""
        if self.primary_key is None:
            return []
        return [self.primary_key] if isinstance(self.primary_key, str) else list(self.primary_key)


class DatabaseConfig(SourceConfig):
    """Config of :class:`DatabaseSource`."""

    url: str | None = None
    """A SQLAlchemy URL (``postgresql://user:pw@host/db``); or give the keys below."""
    db_type: DbType | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    database: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    query: str | None = None
    """SQL with ``:name`` placeholders bound from ``params``."""
    params: dict[str, Any] = Field(default_factory=dict)
    table: str | None = None
    schema_name: str | None = Field(default=None, alias="schema")
    columns: list[str] | None = None
    where: str | None = None
    """A SQL condition for ``table`` (values as ``:name`` placeholders bound from ``params``)."""
    chunk_size: int | None = Field(default=None, ge=1)
    """Return an iterator of frames of at most this many rows instead of one frame."""
    engine: Literal["auto", "adbc", "connectorx", "duckdb", "sqlalchemy"] = "auto"
    connect_timeout: float = Field(default=10, gt=0)
    incremental: IncrementalConfig | None = None
    mysql_tinyint1_as_bool: bool = True
    """MySQL/MariaDB ``table`` reads: ``TINYINT(1)`` (``BOOLEAN``) columns holding only 0/1/NULL
    come back as booleans."""

    @model_validator(mode="after")
    def _check(self) -> DatabaseConfig:
        if not self.url and not self.db_type:
            raise ValueError("give either 'url' (a SQLAlchemy URL) or 'db_type' with host/database")
        if self.url and (self.db_type or self.host):
            raise ValueError("give either 'url' or 'db_type'/'host'/..., not both")
        if bool(self.query) == bool(self.table):
            raise ValueError("give exactly one of 'query' or 'table'")
        if self.query and (self.columns or self.where or self.schema_name):
            raise ValueError("'columns', 'where' and 'schema' go with 'table', not 'query'")
        if self.db_type and self.db_type not in ("sqlite", "duckdb") and not self.host:
            raise ValueError(f"db_type {self.db_type!r} needs 'host'")
        return self


class DatabaseSource(DataSource):
    """Data source for databases (PostgreSQL, MySQL/MariaDB, SQLite, any SQLAlchemy dialect).

    Example:
        >>> from data_pipeline.ingestion import DatabaseSource
        >>> source = DatabaseSource(name="customers", config={
        ...     "db_type": "postgresql",
        ...     "host": "db.example.com",
        ...     "port": 5432,
        ...     "database": "customers",
        ...     "username": "user",
        ...     "password": "pass",
        ...     "query": "SELECT * FROM customers WHERE country = :country",
        ...     "params": {"country": "NO"},
        ... })
    """

    config_model = DatabaseConfig
    settings: DatabaseConfig
    concurrent_safe = True

    def __init__(self, name: str, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, config)
        url = self.settings.url
        if url:
            match = re.match(r"[^:]+://[^:/@]*:([^@/]+)@", url)
            if match:
                from urllib.parse import unquote

                register_secret(match.group(1))
                register_secret(unquote(match.group(1)))

    # -- connection ---------------------------------------------------------------------------

    def _sa_url(self) -> Any:
        sa = import_optional("sqlalchemy", extra="sql", feature="DatabaseSource")
        s = self.settings
        if s.url:
            url = sa.engine.make_url(s.url)
            if "+" not in url.drivername:  # the drivers we install, not SQLAlchemy's defaults
                default = {"postgres": "postgresql+psycopg", "mariadb": "mariadb+pymysql"}
                default.update(postgresql="postgresql+psycopg", mysql="mysql+pymysql")
                if url.drivername in default:
                    url = url.set(drivername=default[url.drivername])
            return url
        kind = _kind(s.db_type or "")
        password = s.password.get_secret_value() if s.password else None
        if kind in ("sqlite", "duckdb"):
            return sa.engine.URL.create(kind, database=s.database or ":memory:")
        return sa.engine.URL.create(
            _DRIVERS.get(kind, kind),
            username=s.username,
            password=password,
            host=s.host,
            port=s.port or _DEFAULT_PORTS.get(kind),
            database=s.database,
        )

    def _kind(self) -> str:
        return _kind(self._sa_url().get_backend_name())

    def where(self) -> str:
        """``host:port/database`` of the target (never the password), for messages."""
        url = self._sa_url()
        if url.get_backend_name() in ("sqlite", "duckdb"):
            return f"{url.get_backend_name()} file {url.database!r}"
        return f"{url.host}:{url.port or _DEFAULT_PORTS.get(_kind(url.get_backend_name()), '')}/{url.database}"

    def _native_uri(self, scheme: str) -> str:
        """A libpq/connectorx style URI: ``scheme://user:pw@host:port/db``."""
        url = self._sa_url()
        if url.get_backend_name() == "sqlite":
            return f"sqlite://{url.database}"
        return str(url.set(drivername=scheme).render_as_string(hide_password=False))

    # -- SQL ----------------------------------------------------------------------------------

    def _quote(self) -> Any:
        """The dialect's identifier quoting function."""
        sa = import_optional("sqlalchemy", extra="sql", feature="DatabaseSource")
        url = self._sa_url()
        if _kind(url.get_backend_name()) == "duckdb":  # quoting rules of PostgreSQL
            url = sa.engine.make_url("postgresql+psycopg://")
        return url.get_dialect()().identifier_preparer.quote

    def build_query(
        self, last_value: Any = None, *, inclusive: bool = False
    ) -> tuple[str, dict[str, Any]]:
        """The SQL to run and its bound parameters (``:name`` placeholders).

        With ``incremental``, rows whose cursor is above ``last_value`` (at or above it when
        ``inclusive``), in cursor order; a ``query`` is wrapped in a sub-select for that.
        """
        s = self.settings
        params = dict(s.params)
        inc = s.incremental
        if s.query and inc is None:
            return s.query, params
        quote = self._quote()
        condition = ""
        order = ""
        if inc is not None:
            column = quote(inc.cursor_column)
            if last_value is not None:
                condition = f"{column} {'>=' if inclusive else '>'} :_dp_last_value"
                params["_dp_last_value"] = last_value
            order = f" ORDER BY {column}"
        if s.query:
            inner = s.query.strip().rstrip(";").rstrip()
            sql = f"SELECT * FROM ({inner}) AS _dp_query"  # noqa: S608 - values bound
            if condition:
                sql += f" WHERE {condition}"
            return sql + order, params
        cols = ", ".join(quote(c) for c in s.columns) if s.columns else "*"
        assert s.table is not None
        table = quote(s.table) if not s.schema_name else f"{quote(s.schema_name)}.{quote(s.table)}"
        conditions = [f"({s.where})"] if s.where else []
        if condition:
            conditions.append(condition)
        sql = f"SELECT {cols} FROM {table}"  # noqa: S608 - identifiers quoted, values bound
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        return sql + order, params

    # -- reading ------------------------------------------------------------------------------

    def _read(self, **options: Any) -> Any:
        s = self.settings
        if options:
            raise ConfigError(
                f"ingest() got unexpected options {sorted(options)}",
                component=self.label,
                hint="DatabaseSource takes its settings from the config",
            )
        tracker: _Tracker | None = None
        last_value = None
        inclusive = False
        if s.incremental is not None:
            tracker = _Tracker(self, s.incremental)
            last_value, inclusive = tracker.since()
        sql, params = self.build_query(last_value, inclusive=inclusive)
        kind = self._kind()
        path = self._path(kind, params)
        op = self.current_operation
        op.details.update({"engine": path, "target": self.where()})
        self.logger.debug("%s: reading from %s via %s", self.label, self.where(), path)
        bools = self._mysql_bool_columns(kind, checked=bool(s.chunk_size))
        if s.chunk_size:
            batches = self._batches(path, sql, params, s.chunk_size)
            if bools:
                batches = (_as_bool(batch, bools, checked=True) for batch in batches)
            if tracker is not None:
                return tracker.track(batches)
            return batches
        try:
            table = self._table(path, sql, params)
        except DataPipelineError:
            raise
        except Exception as exc:
            raise self._db_error(exc) from exc
        if bools:
            table = _as_bool(table, bools, checked=False)
        if tracker is not None:
            return tracker.apply(table)
        return table

    def _mysql_bool_columns(self, kind: str, checked: bool) -> list[str]:
        """``TINYINT(1)`` columns of a MySQL/MariaDB ``table`` read (from information_schema).

        With ``checked`` (chunked reads, where batches must agree on types) only the columns
        whose values are all 0/1/NULL in the whole table are returned, checked with one query.
        """
        s = self.settings
        if kind != "mysql" or not s.table or not s.mysql_tinyint1_as_bool:
            return []
        sa = import_optional("sqlalchemy", extra="sql", feature="DatabaseSource")
        engine = sa.create_engine(
            self._sa_url(), connect_args={"connect_timeout": int(s.connect_timeout)}
        )
        try:
            with engine.connect() as conn:
                names = list(
                    conn.execute(
                        sa.text(
                            "SELECT COLUMN_NAME FROM information_schema.COLUMNS"
                            " WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE())"
                            " AND TABLE_NAME = :table AND LOWER(COLUMN_TYPE) = 'tinyint(1)'"
                            " ORDER BY ORDINAL_POSITION"
                        ),
                        {"schema": s.schema_name, "table": s.table},
                    ).scalars()
                )
                if s.columns is not None:
                    names = [n for n in names if n in s.columns]
                if not names or not checked:
                    return names
                quote = self._quote()
                target = (quote(s.schema_name) + "." if s.schema_name else "") + quote(s.table)
                sums = ", ".join(f"SUM({quote(n)} NOT IN (0, 1))" for n in names)
                check = f"SELECT {sums} FROM {target}"  # noqa: S608 - identifiers quoted
                counts = conn.execute(sa.text(check)).one()
                return [n for n, bad in zip(names, counts, strict=True) if not bad]
        except Exception as exc:
            raise self._db_error(exc) from exc
        finally:
            engine.dispose()

    def _path(self, kind: str, params: Mapping[str, Any]) -> str:
        engine = self.settings.engine
        if engine != "auto":
            return engine
        if kind == "postgresql" and _installed("adbc_driver_postgresql"):
            return "adbc"
        if kind in ("mysql", "sqlite", "postgresql") and not params and _installed("connectorx"):
            return "connectorx"
        if kind == "duckdb":
            return "duckdb"
        return "sqlalchemy"

    def _table(self, path: str, sql: str, params: dict[str, Any]) -> pa.Table:
        import pyarrow as pa

        if path == "adbc":
            with self._adbc_cursor(sql, params) as cur:
                return _fix_arrow(cur.fetch_arrow_table())
        if path == "duckdb":
            with self._duckdb() as con:
                query, bound = _duckdb_sql(sql, params)
                table: pa.Table = con.sql(query, params=bound).to_arrow_table()
                return table
        if path == "connectorx":
            self._no_params(params, "connectorx")
            cx = import_optional(
                "connectorx", extra="postgres", feature="Fast database reads (connectorx)"
            )
            table = cx.read_sql(self._cx_uri(), sql, return_type="arrow")
            return _fix_arrow(table)
        frame = self._sqlalchemy_frame(sql, params, None)
        assert not isinstance(frame, Iterator)
        return pa.table(frame.to_arrow())

    def _batches(self, path: str, sql: str, params: dict[str, Any], size: int) -> Iterator[Any]:
        try:
            if path == "adbc":
                with self._adbc_cursor(sql, params, stream=True) as cur:
                    yield from _rebatch(cur.fetch_record_batch(), size)
            elif path == "duckdb":
                with self._duckdb() as con:
                    query, bound = _duckdb_sql(sql, params)
                    yield from _rebatch(con.sql(query, params=bound).to_arrow_reader(size), size)
            elif path == "connectorx":
                self._no_params(params, "connectorx")
                cx = import_optional(
                    "connectorx", extra="sql", feature="Fast database reads (connectorx)"
                )
                reader = cx.read_sql(
                    self._cx_uri(), sql, return_type="arrow_stream", batch_size=size
                )
                yield from _rebatch(reader, size)
            else:
                frames = self._sqlalchemy_frame(sql, params, size)
                assert isinstance(frames, Iterator)
                yield from frames
        except DataPipelineError:
            raise
        except Exception as exc:
            raise self._db_error(exc) from exc

    def _no_params(self, params: Mapping[str, Any], path: str) -> None:
        if params:
            raise ConfigError(
                f"engine {path!r} cannot bind parameters ({', '.join(params)})",
                component=self.label,
                hint="use engine: auto or sqlalchemy for queries with params; values are never inlined",
            )

    def _cx_uri(self) -> str:
        """The connectorx URI, after a quick TCP check (connectorx's pool retries for 30 s)."""
        import socket

        kind = self._kind()
        url = self._sa_url()
        if kind != "sqlite" and url.host:
            port = url.port or _DEFAULT_PORTS.get(kind, 0)
            try:
                with socket.create_connection(
                    (url.host, port), timeout=self.settings.connect_timeout
                ):
                    pass
            except OSError as exc:
                raise IngestionConnectionError(
                    f"cannot connect to {self.where()}: {type(exc).__name__}: {exc}",
                    component=self.label,
                    hint="check host, port and database in the config, and that the server is running",
                ) from None
        if kind == "mysql":  # a wrong password would also make connectorx's pool wait 30 s
            pymysql = import_optional("pymysql", extra="mysql", feature="MySQL/MariaDB reads")
            try:
                pymysql.connect(
                    host=url.host,
                    port=url.port or 3306,
                    user=url.username,
                    password=url.password or "",
                    database=url.database,
                    connect_timeout=int(self.settings.connect_timeout),
                ).close()
            except Exception as exc:
                raise self._db_error(exc) from None
        return self._native_uri({"postgresql": "postgresql", "mysql": "mysql"}.get(kind, kind))

    def _duckdb(self) -> Any:
        """A read-only DuckDB connection to the configured database file (closed on exit)."""
        from contextlib import closing

        duckdb = import_optional("duckdb", extra="sql", feature="DuckDB reads")
        database = self._sa_url().database or ":memory:"
        if database != ":memory:":
            import os

            if not os.path.exists(database):
                raise InputNotFoundError(
                    f"DuckDB database file {database!r} does not exist",
                    component=self.label,
                    hint="check 'database' or the URL's path",
                )
            return closing(duckdb.connect(database, read_only=True))
        return closing(duckdb.connect())

    def _adbc_cursor(self, sql: str, params: dict[str, Any], stream: bool = False) -> Any:
        from contextlib import contextmanager

        dbapi = import_optional(
            "adbc_driver_postgresql.dbapi", extra="postgres", feature="PostgreSQL reads (ADBC)"
        )
        positional, values = _positional(sql, params)

        @contextmanager
        def cursor() -> Iterator[Any]:
            try:
                conn = dbapi.connect(
                    self._native_uri("postgresql")
                    + f"?connect_timeout={int(self.settings.connect_timeout)}"
                )
            except Exception as exc:
                raise self._db_error(exc) from exc
            try:
                cur = conn.cursor()
                try:
                    cur.execute(positional, parameters=values or None)
                    yield cur
                finally:
                    cur.close()
            finally:
                conn.close()

        return cursor()

    def _sqlalchemy_frame(self, sql: str, params: dict[str, Any], size: int | None) -> Any:
        import polars as pl

        sa = import_optional("sqlalchemy", extra="sql", feature="DatabaseSource")
        url = self._sa_url()
        kind = _kind(url.get_backend_name())
        connect_args: dict[str, Any] = {}
        if kind in ("mysql", "postgresql"):
            connect_args["connect_timeout"] = int(self.settings.connect_timeout)
        try:
            engine = sa.create_engine(url, connect_args=connect_args, json_deserializer=_keep_text)
        except ImportError as exc:
            from data_pipeline.core.errors import DependencyError

            extra = _EXTRAS.get(kind, "sql")
            raise DependencyError(
                f"{kind} needs its database driver ({exc.name or exc}): "
                f"`pip install 'data-pipeline[{extra}]'`",
                component=self.label,
                hint="install the extra, or give a URL whose driver is installed "
                "(e.g. postgresql+psycopg://, mysql+pymysql://)",
            ) from exc
        statement = sa.text(sql)
        if size is None:
            try:
                with engine.connect() as conn:
                    return pl.read_database(statement, conn, execute_options={"parameters": params})
            finally:
                engine.dispose()

        def batches() -> Iterator[pl.DataFrame]:
            try:
                with engine.connect().execution_options(stream_results=True) as conn:
                    yield from pl.read_database(
                        statement,
                        conn,
                        iter_batches=True,
                        batch_size=size,
                        execute_options={"parameters": params},
                    )
            finally:
                engine.dispose()

        return batches()

    def _db_error(self, exc: BaseException) -> DataPipelineError:
        """A driver error -> our error naming host:port/database (never the password)."""
        return translate_db_error(
            exc,
            classes=INGESTION,
            where=self.where(),
            component=self.label,
            lines=None,
            type_name=True,
        )

    def _translate_error(self, exc: BaseException, operation: str) -> BaseException | None:
        if isinstance(exc, Exception) and not isinstance(exc, DataPipelineError):
            return self._db_error(exc)
        return super()._translate_error(exc, operation)


class _Tracker:
    """Incremental state of one ``ingest()``: the last cursor value and the delivered keys.

    The JSON state file holds ``last_value``. With a ``primary_key``, the keys and cursor
    values of the rows delivered inside the lookback window before ``last_value`` (those the
    next run reads again) are kept by :class:`~data_pipeline.ingestion._common.DeliveredKeys`
    in a Parquet sidecar. The next run drops those rows, keeps the rest, and moves the window.
    """

    def __init__(self, source: DatabaseSource, inc: IncrementalConfig) -> None:
        self.source = source
        self.inc = inc
        self.keys = inc.keys
        self.store = StateStore.for_source(source.name, inc.state_path)
        saved = self.store.load()
        self.last = _restore(saved["last_value"]) if saved.get("last_value") is not None else None
        self.delivered = (
            DeliveredKeys(
                self.store,
                self.keys,
                inc.cursor_column,
                saved,
                restore=_restore,
                component=source.label,
            )
            if self.keys
            else None
        )
        self.dropped = 0

    def since(self) -> tuple[Any, bool]:
        """The value the query's cursor condition starts from, and whether it is inclusive."""
        if self.last is None:
            initial = self.inc.initial_value
            return (_restore(initial) if initial is not None else None), False
        if not self.keys:
            return self.last, False
        return _minus(self.last, self.inc.lookback), True

    def apply(self, table: Any) -> Any:
        """Drop rows delivered before, advance the state (saved), return the new rows."""
        import polars as pl

        frame = table if isinstance(table, pl.DataFrame) else pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        column = self.inc.cursor_column
        missing = [c for c in [*self.keys, column] if c not in frame.columns]
        if missing:
            raise IngestionError(
                f"incremental column(s) {', '.join(map(repr, missing))} not in the result",
                component=self.source.label,
                hint=f"the result has columns: {', '.join(map(repr, frame.columns))}",
            )
        if frame.height == 0:
            return table
        if self.delivered is not None and len(self.delivered):
            frame, dropped = self.delivered.drop_delivered(frame)
            self.dropped += dropped
            self.source.current_operation.details["duplicates_dropped"] = self.dropped
            if frame.height == 0:
                return frame
        value = frame[column].max()
        if value is not None and (self.last is None or _later(value, self.last)):
            self.last = value
        state = {"last_value": _dump(self.last)}
        if self.delivered is not None:
            if self.last is not None:
                boundary = _minus(self.last, self.inc.lookback)
                dtype = frame.schema[column]
                self.delivered.remember(frame, pl.col(column) >= pl.lit(boundary, dtype=dtype))
            self.delivered.save(state)
        else:
            self.store.save(state)
        return frame

    def track(self, batches: Iterator[Any]) -> Iterator[Any]:
        """``apply`` to each batch as it is read (the state is saved after each one)."""
        for batch in batches:
            out = self.apply(batch)
            if len(out):
                yield out


def _minus(value: Any, lookback: float) -> Any:
    """``value - lookback``: seconds for timestamps and dates, units for numbers."""
    from datetime import date, datetime, timedelta
    from decimal import Decimal

    if not lookback or value is None or isinstance(value, bool):
        return value
    if isinstance(value, datetime):
        return value - timedelta(seconds=lookback)
    if isinstance(value, date):
        return value - timedelta(days=int(lookback // 86_400))
    if isinstance(value, Decimal):
        return value - Decimal(str(lookback))
    if isinstance(value, int):
        return value - int(lookback) if float(lookback).is_integer() else value - lookback
    if isinstance(value, float):
        return value - lookback
    return value


def _later(a: Any, b: Any) -> bool:
    """``a > b`` (values restored from the state file compare with fresh ones)."""
    try:
        return bool(a > b)
    except TypeError:
        return str(a) > str(b)


def _installed(module: str) -> bool:
    """Whether an optional fast-path library is importable (without importing it)."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _kind(name: str) -> str:
    name = name.split("+")[0].lower()
    return {"postgres": "postgresql", "mariadb": "mysql"}.get(name, name)


def _positional(sql: str, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """``:name`` placeholders -> ``$1, $2`` (PostgreSQL wire protocol), values in order."""
    order: list[str] = []

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in params:
            raise ConfigError(
                f"the query uses :{name} but params has no {name!r}",
                hint=f"add {name!r} to params (given: {', '.join(params) or 'none'})",
            )
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    text = _BIND.sub(sub, sql)
    return text, [params[n] for n in order]


def _duckdb_sql(sql: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``:name`` placeholders -> DuckDB's ``$name``; only the parameters the query uses."""
    used: dict[str, Any] = {}

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in params:
            raise ConfigError(
                f"the query uses :{name} but params has no {name!r}",
                hint=f"add {name!r} to params (given: {', '.join(params) or 'none'})",
            )
        used[name] = params[name]
        return f"${name}"

    return _BIND.sub(sub, sql), used


def _fix_arrow(table: pa.Table) -> pa.Table:
    """Arrow types polars and users expect: JSON extension -> string, PG numeric -> decimal."""
    import pyarrow as pa

    columns = []
    fields = []
    for field, column in zip(table.schema, table.columns, strict=True):
        meta = field.metadata or {}
        typ = field.type
        if isinstance(typ, pa.BaseExtensionType):
            column = pa.chunked_array([c.storage for c in column.chunks], type=typ.storage_type)
            typ = typ.storage_type
        if meta.get(b"POSTGRESQL:type") == b"numeric" and pa.types.is_string(typ):
            mod = int(meta.get(b"POSTGRESQL:typmod", b"-1"))
            if mod >= 4:
                precision, scale = ((mod - 4) >> 16) & 0xFFFF, (mod - 4) & 0xFFFF
                target: pa.DataType = (
                    pa.decimal128(precision, scale)
                    if precision <= 38
                    else pa.decimal256(precision, scale)
                )
                column = column.cast(target)
                typ = target
            else:
                import polars as pl

                series = pl.from_arrow(column).str.to_decimal()  # type: ignore[union-attr]
                column = series.to_arrow()
                typ = column.type
        columns.append(column)
        fields.append(pa.field(field.name, typ))
    return pa.table(columns, schema=pa.schema(fields))


def _as_bool(frame: Any, names: list[str], checked: bool) -> Any:
    """Cast the 0/1 integer columns ``names`` of an Arrow table or polars frame to boolean.

    Unless ``checked``, a column holding any value other than 0, 1 or NULL is kept as is.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(frame, pa.Table):  # polars frames from the SQLAlchemy path
        import polars as pl

        return pl.from_arrow(_as_bool(frame.to_arrow(), names, checked))
    for name in names:
        if name not in frame.column_names:
            continue
        index = frame.column_names.index(name)
        column = frame.column(index)
        if not pa.types.is_integer(column.type):
            continue
        if not checked:
            values = pc.drop_null(column)
            ok = pc.all(pc.is_in(values, value_set=pa.array([0, 1], type=column.type)))
            if ok.as_py() is False:
                continue
        frame = frame.set_column(index, name, column.cast(pa.bool_()))
    return frame


def _rebatch(reader: Any, size: int) -> Iterator[pa.Table]:
    """Re-cut a stream of record batches into tables of ``size`` rows (the last may be smaller)."""
    import pyarrow as pa

    pending: list[Any] = []
    rows = 0
    for batch in reader:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        rows += batch.num_rows
        while rows >= size:
            table = _fix_arrow(pa.Table.from_batches(pending))
            yield table.slice(0, size)
            rest = table.slice(size)
            pending = rest.to_batches() if rest.num_rows else []
            rows = rest.num_rows
    if rows:
        yield _fix_arrow(pa.Table.from_batches(pending))


def _dump(value: Any) -> Any:
    from datetime import date, datetime
    from decimal import Decimal

    if isinstance(value, datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    return value


def _restore(value: Any) -> Any:
    from datetime import date, datetime
    from decimal import Decimal

    if isinstance(value, dict):
        if "datetime" in value:
            return datetime.fromisoformat(value["datetime"])
        if "date" in value:
            return date.fromisoformat(value["date"])
        if "decimal" in value:
            return Decimal(value["decimal"])
    return value


def _keep_text(value: Any) -> Any:
    """JSON columns stay JSON text (as on the ADBC and ConnectorX paths)."""
    return value
