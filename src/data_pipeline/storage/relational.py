"""RelationalDBStorage: SQLite (default), PostgreSQL, MySQL/MariaDB, or any SQLAlchemy URL.

Loads use each database's bulk path and land whole or not at all:

* PostgreSQL: ``COPY ... FROM STDIN (FORMAT csv)`` through psycopg 3, fed with CSV that Polars
  encodes from the Arrow data in chunks; everything (staging table, swap or merge) in one
  transaction, since PostgreSQL DDL is transactional.
* MySQL / MariaDB: ``LOAD DATA LOCAL INFILE`` from a CSV file Polars writes (any warning rolls
  the load back), or batched multi-row ``INSERT`` through pymysql ``executemany``; a new or
  replaced table is loaded as a staging table and swapped in with one atomic ``RENAME TABLE``.
* SQLite: ``executemany`` inside one ``BEGIN IMMEDIATE`` transaction.

``append`` inserts in one transaction; ``upsert`` loads a temporary table and runs ``UPDATE``
then ``INSERT ... WHERE NOT EXISTS`` on the primary key in one transaction. Identifiers are
always quoted; values are always bound or streamed, never formatted into SQL text.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import tempfile
import threading
import uuid
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, field_validator, model_validator

from data_pipeline.core.deps import import_optional
from data_pipeline.core.errors import (
    ConfigError,
    InputNotFoundError,
    StorageConnectionError,
    StorageError,
    StorageSchemaError,
    UnsupportedOperationError,
)
from data_pipeline.core.secrets import redact_text
from data_pipeline.storage._common import (
    ColumnList,
    ServerConfig,
    already_exists_error,
    as_polars,
    check_identifier,
    check_unique_key,
    connection_error,
    constraint_error,
    first_lines,
    misfit_error,
    new_columns_error,
    not_found_error,
    primary_key,
    quote_ident,
    quote_qualified,
    reject_unknown_options,
    require_key_columns,
    require_target,
    require_upsert_key,
)
from data_pipeline.storage.base import IfExists, StorageSystem, StoreResult

if TYPE_CHECKING:
    import polars as pl

__all__ = ["RelationalDBStorage", "RelationalDBStorageConfig"]

DBType = Literal["sqlite", "postgresql", "mysql", "mariadb"]
_DB_ALIASES = {"postgres": "postgresql", "pg": "postgresql", "sqlite3": "sqlite"}
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}
_MAX_IDENT = {"postgresql": 63, "mysql": 64, "mariadb": 64}


class RelationalDBStorageConfig(ServerConfig):
    """Config of :class:`RelationalDBStorage` (the spec's keys plus schema and primary_key)."""

    db_type: DBType = "sqlite"
    schema_name: str | None = Field(default=None, alias="schema")
    default_table: str | None = None
    default_if_exists: IfExists = "append"
    primary_key: ColumnList = None
    schema_evolution: bool = False
    batch_size: int = Field(default=100_000, gt=0)
    mysql_load: Literal["auto", "load_data", "insert"] = "auto"
    connect_args: dict[str, Any] | None = None

    @field_validator("db_type", mode="before")
    @classmethod
    def _alias(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return _DB_ALIASES.get(value, value)
        return value

    @model_validator(mode="after")
    def _check(self) -> RelationalDBStorageConfig:
        if self.url:
            return self
        if self.db_type == "sqlite":
            if self.schema_name:
                raise ValueError(
                    "schema is not supported for sqlite (a SQLite file is one namespace)"
                )
            if self.database is None:
                self.database = ":memory:"
        elif not self.database:
            raise ValueError(f"db_type {self.db_type!r} needs 'database' (the database name)")
        if self.port is None and self.db_type in _DEFAULT_PORTS:
            self.port = _DEFAULT_PORTS[self.db_type]
        return self


class RelationalDBStorage(StorageSystem):
    """Storage system for relational databases.

    ``db_type`` is ``sqlite`` (the default; ``database`` is a file path, ``:memory:`` when
    omitted), ``postgresql`` or ``mysql``/``mariadb``; or give any SQLAlchemy ``url`` (PostgreSQL,
    MySQL and SQLite URLs use the fast paths above; other dialects go through SQLAlchemy and are
    untested here). ``store(data, table=..., if_exists="fail"|"replace"|"append"|"upsert")``;
    ``upsert`` merges on ``primary_key``. ``retrieve(table=...)`` or ``retrieve(query=...,
    params=...)``; params use the driver's style (``%s`` for PostgreSQL and MySQL, ``?`` for SQLite).

    Example:
        >>> db = RelationalDBStorage(name="customer_db", config={
        ...     "db_type": "postgresql",
        ...     "host": "db.example.com",
        ...     "port": 5432,
        ...     "database": "customers",
        ...     "username": "user",
        ...     "password": "pass",
        ...     "schema": "public",
        ...     "default_table": "customers",
        ...     "default_if_exists": "upsert",
        ...     "primary_key": ["customer_id"],
        ... })
    """

    config_model = RelationalDBStorageConfig
    accepts_primary_key = True
    settings: RelationalDBStorageConfig

    def __init__(self, name: str, config: Any = None) -> None:
        super().__init__(name, config)
        self._backend = _make_backend(self)

    @property
    def db_type(self) -> str:
        return self._backend.kind

    def describe_connection(self) -> str:
        """``host:port/database`` (or the SQLite path), never the password."""
        return self._backend.where()

    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A DB-API connection; connection errors name host, port and database, never the password."""
        with self._backend.connection() as con:
            yield con

    def close(self) -> None:
        self._backend.close()

    # -- store ------------------------------------------------------------------------------

    def _store(self, data: Any, target: str, if_exists: str, **options: Any) -> StoreResult:
        reject_unknown_options(
            options,
            ("primary_key", "not_null"),
            hint="store() accepts table, if_exists, primary_key, not_null, schema",
            component=self.label,
        )
        key = primary_key(options, self.settings.primary_key)
        self._backend.check_name(target)
        frame = as_polars(data)
        require_upsert_key(if_exists, key, component=self.label)
        if key:
            require_key_columns(key, frame.columns, what=f"table {target!r}", component=self.label)
            check_unique_key(frame, key, target, self.label)
        self._backend.not_null = set(options.get("not_null") or [])
        try:
            action = self._backend.store(frame, target, if_exists, key)
        finally:
            self._backend.not_null = set()
        return StoreResult(
            target=self._backend.display(target),
            rows=int(frame.height),
            bytes=int(frame.estimated_size()),
            details={
                "action": action,
                "db_type": self._backend.kind,
                "database": self._backend.where(),
            },
        )

    # -- retrieve ---------------------------------------------------------------------------

    def _retrieve(
        self, target: str | None, *, query: str | None, params: Any, **options: Any
    ) -> Any:
        reject_unknown_options(
            options,
            (),
            hint="retrieve() accepts table, query, params, output",
            component=self.label,
        )
        require_target(target, query, component=self.label)
        if query is None:
            assert target is not None
            self._backend.check_name(target)
            with self._backend.connection() as con:
                if self._backend.columns(con, target) is None:
                    raise not_found_error(
                        f"table {self._backend.display(target)!r} does not exist in {self._backend.where()}",
                        self._backend.tables(con),
                        kind="tables",
                        empty="the database has no tables",
                        component=self.label,
                    )
            query = f"SELECT * FROM {self._backend.qualified(target)}"  # noqa: S608
            params = None
        return self._backend.read(query, params)

    def list_tables(self) -> list[str]:
        """Tables in the configured schema (or database)."""
        with self._backend.connection() as con:
            return self._backend.tables(con)

    def drop_stale_staging(self, older_than_seconds: float = 3600.0) -> list[str]:
        """Drop staging tables that a killed MySQL/MariaDB load left behind; returns their names.

        PostgreSQL and SQLite loads run in one transaction and leave nothing behind. Loads
        call this themselves (with the one-hour default) before creating a staging table.
        """
        if not isinstance(self._backend, _MySQLBackend):
            return []
        with self._backend.connection() as con:
            return self._backend.drop_stale(con, older_than_seconds)


# ---------------------------------------------------------------------------------------------
# backends


class _Backend:
    """What differs between databases: connecting, quoting, DDL, bulk loading, swapping."""

    kind: ClassVar[str] = "sql"
    quote_char: ClassVar[str] = '"'

    def __init__(self, owner: RelationalDBStorage) -> None:
        self.owner = owner
        self.cfg = owner.settings
        self.label = owner.label
        self.not_null: set[str] = set()  # columns created NOT NULL (from a registered Schema)

    # naming
    def check_name(self, name: str) -> None:
        check_identifier(name, component=self.label)
        limit = _MAX_IDENT.get(self.kind)
        if limit and len(name.encode()) > limit:
            raise ConfigError(
                f"table name {name!r} is longer than {self.kind}'s limit of {limit} bytes",
                component=self.label,
                hint="use a shorter table name",
            )

    def q(self, name: str) -> str:
        return quote_ident(name, self.quote_char)

    @property
    def schema(self) -> str | None:
        return self.cfg.schema_name

    def qualified(self, table: str) -> str:
        return quote_qualified(table, self.schema, self.quote_char)

    def display(self, table: str) -> str:
        return f"{self.schema}.{table}" if self.schema else table

    def where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}/{self.cfg.database}"

    def close(self) -> None:
        return None

    # to implement
    @contextmanager
    def connection(self) -> Iterator[Any]:
        raise NotImplementedError
        yield

    def columns(self, con: Any, table: str) -> list[str] | None:
        raise NotImplementedError

    def tables(self, con: Any) -> list[str]:
        raise NotImplementedError

    def sql_type(self, dtype: Any, is_key: bool) -> str:
        raise NotImplementedError

    def store(self, frame: pl.DataFrame, table: str, if_exists: str, key: list[str] | None) -> str:
        raise NotImplementedError

    def load_new(
        self, con: Any, frame: pl.DataFrame, table: str, key: list[str] | None, *, replacing: bool
    ) -> None:
        """Create (or replace) ``table`` from ``frame`` through a staging table swapped in atomically."""
        raise NotImplementedError

    def load_append(self, con: Any, frame: pl.DataFrame, table: str) -> None:
        raise NotImplementedError

    def load_upsert(self, con: Any, frame: pl.DataFrame, table: str, key: list[str]) -> None:
        raise NotImplementedError

    # shared plan of a load (the backend's store() wraps it in its connection and transaction)
    def store_plan(
        self, con: Any, frame: pl.DataFrame, table: str, if_exists: str, key: list[str] | None
    ) -> str:
        """fail / create or replace / evolve then append or upsert; returns the action taken."""
        existing = self.columns(con, table)
        self.fail_if_exists(existing, if_exists, table)
        if existing is None or if_exists == "replace":
            self.load_new(con, frame, table, key, replacing=existing is not None)
            return "created" if existing is None else "replaced"
        columns = self.evolve(con, table, existing, frame)
        if if_exists == "append":
            self.load_append(con, frame.select([c for c in columns if c in frame.columns]), table)
            return "appended"
        assert key is not None
        self.load_upsert(con, frame, table, key)
        return "upserted"

    # server databases: connectorx reads, DB-API cursor reads with bound params
    uri_scheme: ClassVar[str] = ""
    default_user: ClassVar[str] = ""

    def uri(self) -> str:
        """The connectorx URI (credentials percent-encoded; never shown or logged)."""
        user = quote(self.cfg.username or self.default_user, safe="")
        password = quote(self.cfg.password.get_secret_value(), safe="") if self.cfg.password else ""
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        database = quote(self.cfg.database or "", safe="")
        return f"{self.uri_scheme}://{auth}{self.cfg.host}:{self.cfg.port}/{database}"

    def read(self, query: str, params: Any) -> Any:
        if params is None:
            table = _connectorx(self.uri(), query)
            if table is not None:
                return table
        with self.connection() as con, con.cursor() as cur:
            return _fetch_frame(cur, query, params)

    # shared SQL
    def create_sql(
        self, qualified: str, frame: pl.DataFrame, key: list[str] | None, *, temp: bool = False
    ) -> str:
        keyset = set(key or [])
        required = set() if temp else self.not_null
        cols = [
            f"{self.q(name)} {self.sql_type(dtype, name in keyset)}"
            + (" NOT NULL" if name in required else "")
            for name, dtype in frame.schema.items()
        ]
        if key:
            cols.append(f"PRIMARY KEY ({', '.join(self.q(k) for k in key)})")
        kind = self.temp_table_keyword() if temp else "TABLE"
        return f"CREATE {kind} {qualified} ({', '.join(cols)})"

    def temp_table_keyword(self) -> str:
        return "TEMPORARY TABLE"

    def insert_select_sql(self, qualified: str, source: str, columns: Sequence[str]) -> str:
        cols = ", ".join(self.q(c) for c in columns)
        return f"INSERT INTO {qualified} ({cols}) SELECT {cols} FROM {source}"  # noqa: S608

    def upsert_sqls(
        self, qualified: str, source: str, columns: Sequence[str], key: list[str]
    ) -> list[str]:
        on = " AND ".join(f"t.{self.q(k)} = s.{self.q(k)}" for k in key)
        updates = [c for c in columns if c not in key]
        statements = []
        if updates:
            statements.append(self.update_from_sql(qualified, source, updates, on))
        cols = ", ".join(self.q(c) for c in columns)
        scols = ", ".join(f"s.{self.q(c)}" for c in columns)
        statements.append(
            f"INSERT INTO {qualified} ({cols}) SELECT {scols} FROM {source} AS s "  # noqa: S608
            f"WHERE NOT EXISTS (SELECT 1 FROM {qualified} AS t WHERE {on})"
        )
        return statements

    def update_from_sql(self, qualified: str, source: str, updates: list[str], on: str) -> str:
        sets = ", ".join(f"{self.q(c)} = s.{self.q(c)}" for c in updates)
        return f"UPDATE {qualified} AS t SET {sets} FROM {source} AS s WHERE {on}"  # noqa: S608

    def evolve(self, con: Any, table: str, existing: list[str], frame: pl.DataFrame) -> list[str]:
        """New columns in the data: added when schema_evolution allows, else a SchemaError naming them."""
        new = [c for c in frame.columns if c not in existing]
        if not new:
            return existing
        if not self.cfg.schema_evolution:
            raise new_columns_error(new, self.display(table), component=self.label)
        cur = con.cursor()
        for column in new:
            ctype = self.sql_type(frame.schema[column], False)
            cur.execute(f"ALTER TABLE {self.qualified(table)} ADD COLUMN {self.q(column)} {ctype}")
        return existing + new

    def fail_if_exists(self, existing: list[str] | None, if_exists: str, table: str) -> None:
        """``if_exists='fail'`` and the table is there: an error naming table and database."""
        if existing is not None and if_exists == "fail":
            raise already_exists_error(
                f"table {self.display(table)!r}", where=self.where(), component=self.label
            )

    def staging_name(self) -> str:
        return f"__dp_stage_{uuid.uuid4().hex[:16]}"

    def integrity_error(self, exc: Exception, table: str) -> StorageError:
        return constraint_error(self.display(table), first_lines(exc), component=self.label)

    def schema_error(self, exc: Exception, table: str) -> StorageSchemaError:
        return misfit_error(
            self.display(table), f"{first_lines(exc)}; the table is unchanged", component=self.label
        )

    def connect_error(self, exc: Exception, what: str) -> StorageError:
        return connection_error(
            exc, what=what, where=self.where(), user=self.cfg.username, component=self.label
        )


def _prepare(frame: pl.DataFrame, kind: str, label: str) -> pl.DataFrame:
    """Make every column writable by the database's bulk path (vectorised, no row loops)."""
    import polars as pl

    exprs = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if isinstance(dtype, (pl.List, pl.Array, pl.Struct, pl.Object)):
            raise UnsupportedOperationError(
                f"column {name!r} has nested type {dtype}, which relational tables do not hold",
                component=label,
                hint="json-encode the column (e.g. pl.col(c).struct.json_encode()) or unnest it first",
            )
        if isinstance(dtype, (pl.Categorical, pl.Enum)) or dtype == pl.Null:
            exprs.append(col.cast(pl.String))
        elif isinstance(dtype, pl.Duration):
            exprs.append(col.dt.total_microseconds())
        elif kind == "sqlite":
            if dtype == pl.Boolean:
                exprs.append(col.cast(pl.Int8))
            elif isinstance(dtype, pl.Datetime):
                if dtype.time_zone:
                    col = col.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
                exprs.append(col.dt.to_string("%Y-%m-%d %H:%M:%S%.6f"))
            elif dtype in (pl.Date, pl.Time):
                exprs.append(col.cast(pl.String))
            elif isinstance(dtype, pl.Decimal):
                exprs.append(col.cast(pl.Float64))
            else:
                exprs.append(col)
        elif kind in ("mysql", "mariadb"):
            if dtype == pl.Boolean:
                exprs.append(col.cast(pl.Int8))
            elif isinstance(dtype, pl.Datetime) and dtype.time_zone:
                exprs.append(col.dt.convert_time_zone("UTC").dt.replace_time_zone(None))
            elif dtype.is_float():
                exprs.append(
                    pl.when(col.is_nan() | col.is_infinite()).then(None).otherwise(col).alias(name)
                )
            else:
                exprs.append(col)
        elif kind == "postgresql" and dtype == pl.Binary:
            exprs.append((pl.lit("\\x") + col.bin.encode("hex")).alias(name))
        else:
            exprs.append(col)
    return frame.select(exprs)


def _csv_chunks(data: pl.DataFrame, step: int) -> Generator[memoryview, None, None]:
    """``data`` as headerless CSV in chunks of ``step`` rows, for ``COPY ... FROM STDIN``.

    A background thread encodes the next chunk while the caller sends this one (Polars releases
    the GIL while it encodes), so that encoding overlaps the server's parsing instead of adding
    to it; at most two encoded chunks wait in memory.
    """
    if data.height <= step:
        if data.height:
            buffer = io.BytesIO()
            data.write_csv(buffer, include_header=False)
            yield buffer.getbuffer()
        return
    chunks: queue.Queue[io.BytesIO | BaseException | None] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item: io.BytesIO | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for offset in range(0, data.height, step):
                buffer = io.BytesIO()
                data.slice(offset, step).write_csv(buffer, include_header=False)
                if not put(buffer):
                    return
            put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    worker = threading.Thread(target=produce, name="data-pipeline-copy-encoder", daemon=True)
    worker.start()
    try:
        while True:
            item = chunks.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item.getbuffer()
    finally:
        stop.set()
        worker.join()


# -- PostgreSQL ---------------------------------------------------------------------------------


class _PostgresBackend(_Backend):
    kind = "postgresql"
    uri_scheme = "postgresql"

    @contextmanager
    def connection(self) -> Iterator[Any]:
        psycopg = import_optional("psycopg", extra="postgres", feature="PostgreSQL support")
        password = self.cfg.password.get_secret_value() if self.cfg.password else None
        try:
            con = psycopg.connect(
                host=self.cfg.host,
                port=self.cfg.port,
                dbname=self.cfg.database,
                user=self.cfg.username,
                password=password,
                connect_timeout=self.cfg.connect_timeout,
                **(self.cfg.connect_args or {}),
            )
        except psycopg.OperationalError as exc:
            raise self.connect_error(exc, "PostgreSQL") from None
        try:
            yield con
        finally:
            con.close()

    def columns(self, con: Any, table: str) -> list[str] | None:
        rows = con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = COALESCE(%s, current_schema()) AND table_name = %s "
            "ORDER BY ordinal_position",
            [self.schema, table],
        ).fetchall()
        return [r[0] for r in rows] or None

    def tables(self, con: Any) -> list[str]:
        rows = con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = COALESCE(%s, current_schema()) ORDER BY table_name",
            [self.schema],
        ).fetchall()
        return [r[0] for r in rows]

    def sql_type(self, dtype: Any, is_key: bool) -> str:
        return _sql_type(dtype, "postgresql", is_key)

    def temp_table_keyword(self) -> str:
        return "TEMPORARY TABLE"

    def copy_into(self, con: Any, qualified: str, frame: pl.DataFrame) -> None:
        data = _prepare(frame, "postgresql", self.label)
        cols = ", ".join(self.q(c) for c in data.columns)
        # closing(): a failed write stops the encoder thread at once
        with (
            contextlib.closing(_csv_chunks(data, self.cfg.batch_size)) as chunks,
            con.cursor() as cur,
            cur.copy(f"COPY {qualified} ({cols}) FROM STDIN (FORMAT csv)") as copy,
        ):
            for chunk in chunks:
                copy.write(chunk)

    def store(self, frame: pl.DataFrame, table: str, if_exists: str, key: list[str] | None) -> str:
        psycopg = import_optional("psycopg", extra="postgres", feature="PostgreSQL support")
        with self.connection() as con:
            try:
                with con.transaction():  # DDL is transactional: the whole load is one transaction
                    if (
                        self.schema
                        and not con.execute(
                            "SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.schema]
                        ).fetchone()
                    ):
                        # checked first: CREATE SCHEMA IF NOT EXISTS needs CREATE rights even when it exists
                        con.execute(f"CREATE SCHEMA {self.q(self.schema)}")
                    return self.store_plan(con, frame, table, if_exists, key)
            except psycopg.errors.IntegrityError as exc:
                raise self.integrity_error(exc, table) from None
            except (
                psycopg.errors.DataError,
                psycopg.errors.UndefinedColumn,
                psycopg.errors.DatatypeMismatch,
            ) as exc:
                raise self.schema_error(exc, table) from None

    def load_new(
        self, con: Any, frame: pl.DataFrame, table: str, key: list[str] | None, *, replacing: bool
    ) -> None:
        # load a staging table, then swap it in; all in the caller's one transaction
        qualified = self.qualified(table)
        stage = self.staging_name()
        staged = self.qualified(stage)
        con.execute(self.create_sql(staged, frame, key))
        self.copy_into(con, staged, frame)
        if replacing:
            con.execute(f"DROP TABLE {qualified}")
        con.execute(f"ALTER TABLE {staged} RENAME TO {self.q(table)}")
        if key:
            con.execute(
                f"ALTER TABLE {qualified} RENAME CONSTRAINT {self.q(stage + '_pkey')} "
                f"TO {self.q(table.encode()[:58].decode(errors='ignore') + '_pkey')}"
            )

    def load_append(self, con: Any, frame: pl.DataFrame, table: str) -> None:
        self.copy_into(con, self.qualified(table), frame)

    def load_upsert(self, con: Any, frame: pl.DataFrame, table: str, key: list[str]) -> None:
        stage = self.q(self.staging_name())
        con.execute(self.create_sql(stage, frame, key, temp=True) + " ON COMMIT DROP")
        self.copy_into(con, stage, frame)
        for statement in self.upsert_sqls(self.qualified(table), stage, frame.columns, key):
            con.execute(statement)


# -- MySQL / MariaDB ----------------------------------------------------------------------------


class _MySQLBackend(_Backend):
    kind = "mysql"
    quote_char = "`"
    uri_scheme = "mysql"
    default_user = "root"

    @contextmanager
    def connection(self) -> Iterator[Any]:
        pymysql = import_optional("pymysql", extra="mysql", feature="MySQL/MariaDB support")
        password = self.cfg.password.get_secret_value() if self.cfg.password else ""
        try:
            con = pymysql.connect(
                host=self.cfg.host,
                port=self.cfg.port or 3306,
                user=self.cfg.username or "root",
                password=password,
                database=self.cfg.database,
                connect_timeout=self.cfg.connect_timeout,
                local_infile=self.cfg.mysql_load != "insert",
                autocommit=False,
                charset="utf8mb4",
                **(self.cfg.connect_args or {}),
            )
        except pymysql.err.OperationalError as exc:
            raise self.connect_error(exc, "MySQL/MariaDB") from None
        try:
            yield con
        finally:
            con.close()

    def columns(self, con: Any, table: str) -> list[str] | None:
        with con.cursor() as cur:
            cur.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = COALESCE(%s, DATABASE()) AND table_name = %s ORDER BY ordinal_position",
                [self.schema, table],
            )
            rows = cur.fetchall()
        return [r[0] for r in rows] or None

    def tables(self, con: Any) -> list[str]:
        with con.cursor() as cur:
            cur.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = COALESCE(%s, DATABASE()) ORDER BY table_name",
                [self.schema],
            )
            return [r[0] for r in cur.fetchall()]

    def sql_type(self, dtype: Any, is_key: bool) -> str:
        return _sql_type(dtype, "mysql", is_key)

    def update_from_sql(self, qualified: str, source: str, updates: list[str], on: str) -> str:
        sets = ", ".join(f"t.{self.q(c)} = s.{self.q(c)}" for c in updates)
        return f"UPDATE {qualified} AS t JOIN {source} AS s ON {on} SET {sets}"  # noqa: S608

    def drop_stale(self, con: Any, older_than_seconds: float) -> list[str]:
        with con.cursor() as cur:
            cur.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = COALESCE(%s, DATABASE()) AND table_name LIKE %s "
                "AND create_time <= NOW() - INTERVAL %s SECOND",
                [self.schema, "\\_\\_dp\\_stage\\_%", int(older_than_seconds)],
            )
            names = [r[0] for r in cur.fetchall()]
            for name in names:
                cur.execute(f"DROP TABLE IF EXISTS {self.qualified(name)}")
        con.commit()
        return names

    def load(self, con: Any, qualified: str, frame: pl.DataFrame, table: str) -> None:
        """Bulk load into ``qualified`` (no commit): LOAD DATA LOCAL, or multi-row INSERTs."""
        pymysql = import_optional("pymysql", extra="mysql", feature="MySQL/MariaDB support")
        data = _prepare(frame, "mysql", self.label)
        if self.cfg.mysql_load != "insert":
            try:
                self._load_data(con, qualified, data, table)
                return
            except pymysql.err.OperationalError as exc:
                code = exc.args[0] if exc.args else None
                if self.cfg.mysql_load == "load_data" or code not in (1148, 2068, 3948, 4166):
                    raise
                self.owner.logger.info(
                    "%s: LOAD DATA LOCAL refused (%s); using INSERT", self.label, code
                )
        cols = ", ".join(self.q(c) for c in data.columns)
        marks = ", ".join(["%s"] * data.width)
        target = f"{qualified} ({cols})".replace("%", "%%")  # pymysql formats with %
        sql = f"INSERT INTO {target} VALUES ({marks})"  # noqa: S608
        step = min(self.cfg.batch_size, 20_000)
        with con.cursor() as cur:
            for offset in range(0, data.height, step):
                cur.executemany(sql, data.slice(offset, step).rows())

    def _load_data(self, con: Any, qualified: str, data: pl.DataFrame, table: str) -> None:
        import polars as pl

        text_cols = {
            n for n, d in data.schema.items() if d in (pl.String, pl.Binary) or d.is_temporal()
        }
        fd, path = tempfile.mkstemp(prefix="dp-load-", suffix=".csv")
        os.close(fd)
        try:
            data.write_csv(
                path,
                include_header=False,
                null_value="NULL",
                quote_style="non_numeric" if text_cols else "necessary",
                datetime_format="%Y-%m-%d %H:%M:%S%.6f",
            )
            cols = ", ".join(self.q(c) for c in data.columns)
            with con.cursor() as cur:
                cur.execute(
                    "LOAD DATA LOCAL INFILE %s INTO TABLE "
                    + f"{qualified} CHARACTER SET utf8mb4 ".replace("%", "%%")
                    + "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
                    + f"LINES TERMINATED BY '\\n' ({cols})".replace("%", "%%"),
                    [path],
                )
                cur.execute("SHOW WARNINGS LIMIT 3")
                warnings = cur.fetchall()
            if warnings:
                # LOAD DATA LOCAL turns errors into warnings and goes on; we roll back instead.
                detail = "; ".join(f"{w[1]}: {w[2]}" for w in warnings)
                if any(w[1] in (1048, 1062, 1216, 1451, 1452, 1557, 1586, 4025) for w in warnings):
                    raise self.integrity_error(RuntimeError(detail), table)
                raise self.schema_error(RuntimeError(detail), table)
        finally:
            with contextlib.suppress(OSError):
                os.remove(path)

    @contextmanager
    def transaction(self, con: Any) -> Iterator[None]:
        """BEGIN ... COMMIT, or ROLLBACK on any error (DDL must stay outside: it commits)."""
        con.begin()
        try:
            yield
            con.commit()
        except BaseException:
            con.rollback()
            raise

    def store(self, frame: pl.DataFrame, table: str, if_exists: str, key: list[str] | None) -> str:
        pymysql = import_optional("pymysql", extra="mysql", feature="MySQL/MariaDB support")
        with self.connection() as con:
            try:
                return self.store_plan(con, frame, table, if_exists, key)
            except pymysql.err.IntegrityError as exc:
                raise self.integrity_error(exc, table) from None
            except (pymysql.err.DataError, pymysql.err.OperationalError) as exc:
                if (
                    isinstance(exc, pymysql.err.OperationalError)
                    and exc.args
                    and exc.args[0] in (2003, 2006, 2013)
                ):
                    raise self.connect_error(exc, "MySQL/MariaDB") from None
                raise self.schema_error(exc, table) from None

    def load_new(
        self, con: Any, frame: pl.DataFrame, table: str, key: list[str] | None, *, replacing: bool
    ) -> None:
        # DDL commits implicitly in MySQL: load a staging table, then one atomic RENAME
        qualified = self.qualified(table)
        self.drop_stale(con, 3600)
        staged = self.qualified(self.staging_name())
        with con.cursor() as cur:
            cur.execute(self.create_sql(staged, frame, key))
        try:
            with self.transaction(con):
                self.load(con, staged, frame, table)
            with con.cursor() as cur:
                if not replacing:
                    cur.execute(f"RENAME TABLE {staged} TO {qualified}")
                else:
                    old = self.qualified(self.staging_name())
                    cur.execute(f"RENAME TABLE {qualified} TO {old}, {staged} TO {qualified}")
                    cur.execute(f"DROP TABLE {old}")
        except BaseException:
            con.rollback()
            with con.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {staged}")
            raise

    def load_append(self, con: Any, frame: pl.DataFrame, table: str) -> None:
        with self.transaction(con):
            self.load(con, self.qualified(table), frame, table)

    def load_upsert(self, con: Any, frame: pl.DataFrame, table: str, key: list[str]) -> None:
        stage = self.q(self.staging_name())
        with con.cursor() as cur:
            cur.execute(self.create_sql(stage, frame, key, temp=True))
        with self.transaction(con):
            self.load(con, stage, frame, table)
            with con.cursor() as cur:
                for statement in self.upsert_sqls(self.qualified(table), stage, frame.columns, key):
                    cur.execute(statement)


# -- SQLite -------------------------------------------------------------------------------------


class _SQLiteBackend(_Backend):
    kind = "sqlite"

    def __init__(self, owner: RelationalDBStorage) -> None:
        super().__init__(owner)
        self._memory: Any = None

    @property
    def path(self) -> str:
        return self.cfg.database or ":memory:"

    def where(self) -> str:
        return self.path

    def close(self) -> None:
        if self._memory is not None:
            self._memory.close()
            self._memory = None

    @contextmanager
    def connection(self) -> Iterator[Any]:
        import sqlite3

        if self.path == ":memory:":
            if self._memory is None:
                self._memory = sqlite3.connect(
                    ":memory:", isolation_level=None, check_same_thread=False
                )
            yield self._memory
            return
        try:
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
            con = sqlite3.connect(self.path, isolation_level=None, timeout=self.cfg.connect_timeout)
            con.execute("PRAGMA journal_mode")
        except (sqlite3.OperationalError, OSError) as exc:
            raise StorageConnectionError(
                f"cannot open SQLite database {self.path!r}: {exc}",
                component=self.label,
                hint="check that the path is a writable file location",
            ) from None
        try:
            yield con
        finally:
            con.close()

    def columns(self, con: Any, table: str) -> list[str] | None:
        rows = con.execute("SELECT name FROM pragma_table_info(?) ORDER BY cid", [table]).fetchall()
        return [r[0] for r in rows] or None

    def tables(self, con: Any) -> list[str]:
        rows = con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        ).fetchall()
        return [r[0] for r in rows]

    def sql_type(self, dtype: Any, is_key: bool) -> str:
        return _sql_type(dtype, "sqlite", is_key)

    def temp_table_keyword(self) -> str:
        return "TEMP TABLE"

    def insert_rows(self, con: Any, qualified: str, frame: pl.DataFrame) -> None:
        data = _prepare(frame, "sqlite", self.label)
        cols = ", ".join(self.q(c) for c in data.columns)
        marks = ", ".join(["?"] * data.width)
        sql = f"INSERT INTO {qualified} ({cols}) VALUES ({marks})"  # noqa: S608
        step = self.cfg.batch_size
        for offset in range(0, data.height, step):
            con.executemany(sql, data.slice(offset, step).iter_rows())

    def store(self, frame: pl.DataFrame, table: str, if_exists: str, key: list[str] | None) -> str:
        import sqlite3

        with self.connection() as con:
            try:
                con.execute("BEGIN IMMEDIATE")
                try:
                    action = self.store_plan(con, frame, table, if_exists, key)
                    con.execute("COMMIT")
                    return action
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            except sqlite3.IntegrityError as exc:
                error = self.integrity_error(exc, table)
                sample = self._offending_row(con, frame, table, str(exc), key)
                if sample is not None:
                    error = StorageError(
                        f"{error.detail} (offending row: {sample})",
                        component=self.label,
                        hint=error.hint,
                    )
                raise error from None
            except (sqlite3.OperationalError, sqlite3.InterfaceError) as exc:
                if "locked" in str(exc):
                    raise StorageConnectionError(
                        f"SQLite database {self.path!r} is locked: {exc}",
                        component=self.label,
                        hint="another process is writing; retry, or raise connect_timeout",
                        transient=True,
                    ) from None
                raise self.schema_error(exc, table) from None

    def _offending_row(
        self, con: Any, frame: pl.DataFrame, table: str, message: str, key: list[str] | None
    ) -> dict[str, Any] | None:
        """SQLite names only the constraint; find a row of the data that breaks it."""
        import polars as pl

        try:
            kind, _, columns = message.partition(" constraint failed: ")
            names = [c.strip().rsplit(".", 1)[-1] for c in columns.split(",")]
            names = [n for n in names if n in frame.columns]
            if not names:
                return None
            if kind.startswith("NOT NULL"):
                rows = frame.filter(pl.col(names[0]).is_null()).head(1)
                return rows.row(0, named=True) if rows.height else None
            if kind.startswith("UNIQUE") and len(names) == 1:
                column = names[0]
                values = frame[column].drop_nulls().unique(maintain_order=True).to_list()
                sql = f"SELECT {self.q(column)} FROM {self.qualified(table)} WHERE {self.q(column)} IN "  # noqa: S608
                for i in range(0, len(values), 500):
                    chunk = values[i : i + 500]
                    hit = con.execute(sql + f"({', '.join('?' * len(chunk))})", chunk).fetchone()
                    if hit is not None:
                        rows = frame.filter(pl.col(column) == hit[0]).head(1)
                        return rows.row(0, named=True)
        except Exception:  # the sample is a courtesy; never hide the real error
            return None
        return None

    def load_new(
        self, con: Any, frame: pl.DataFrame, table: str, key: list[str] | None, *, replacing: bool
    ) -> None:
        # a staging table renamed over the target, inside the caller's BEGIN IMMEDIATE
        staged = self.q(self.staging_name())
        con.execute(self.create_sql(staged, frame, key))
        self.insert_rows(con, staged, frame)
        if replacing:
            con.execute(f"DROP TABLE {self.qualified(table)}")
        con.execute(f"ALTER TABLE {staged} RENAME TO {self.q(table)}")

    def load_append(self, con: Any, frame: pl.DataFrame, table: str) -> None:
        self.insert_rows(con, self.qualified(table), frame)

    def load_upsert(self, con: Any, frame: pl.DataFrame, table: str, key: list[str]) -> None:
        stage = self.q(self.staging_name())
        con.execute(self.create_sql(stage, frame, key, temp=True))
        try:
            self.insert_rows(con, stage, frame)
            for statement in self.upsert_sqls(self.qualified(table), stage, frame.columns, key):
                con.execute(statement)
        finally:
            con.execute(f"DROP TABLE IF EXISTS temp.{stage}")

    def read(self, query: str, params: Any) -> Any:
        if params is None and self.path != ":memory:":
            table = _connectorx(f"sqlite://{os.path.abspath(self.path)}", query)
            if table is not None:
                return table
        with self.connection() as con:
            cur = con.cursor()
            try:
                return _fetch_frame(cur, query, params)
            finally:
                cur.close()


# -- any other SQLAlchemy dialect (untested here) -------------------------------------------------


class _SQLAlchemyBackend(_Backend):
    """Generic path: SQLAlchemy Core DDL and executemany inserts in one transaction."""

    kind = "sqlalchemy"

    def __init__(self, owner: RelationalDBStorage) -> None:
        super().__init__(owner)
        self._engine: Any = None

    def where(self) -> str:
        return redact_text(str(self.cfg.url))

    def engine(self) -> Any:
        sqlalchemy = import_optional("sqlalchemy", extra="sql", feature="SQLAlchemy URLs")
        if self._engine is None:
            self._engine = sqlalchemy.create_engine(self.cfg.url, **(self.cfg.connect_args or {}))
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @contextmanager
    def connection(self) -> Iterator[Any]:
        sqlalchemy = import_optional("sqlalchemy", extra="sql", feature="SQLAlchemy URLs")
        try:
            con = self.engine().connect()
        except sqlalchemy.exc.OperationalError as exc:
            raise self.connect_error(exc, "the database") from None
        try:
            yield con
        finally:
            con.close()

    def columns(self, con: Any, table: str) -> list[str] | None:
        sqlalchemy = import_optional("sqlalchemy", extra="sql")
        inspector = sqlalchemy.inspect(con)
        if not inspector.has_table(table, schema=self.schema):
            return None
        return [c["name"] for c in inspector.get_columns(table, schema=self.schema)]

    def tables(self, con: Any) -> list[str]:
        sqlalchemy = import_optional("sqlalchemy", extra="sql")
        return sorted(sqlalchemy.inspect(con).get_table_names(schema=self.schema))

    def sql_type(self, dtype: Any, is_key: bool) -> str:
        return _sql_type(dtype, "generic", is_key)

    def qualified(self, table: str) -> str:
        preparer = self.engine().dialect.identifier_preparer
        quoted = preparer.quote_identifier(table)
        return f"{preparer.quote_identifier(self.schema)}.{quoted}" if self.schema else quoted

    def q(self, name: str) -> str:
        return str(self.engine().dialect.identifier_preparer.quote_identifier(name))

    def store(self, frame: pl.DataFrame, table: str, if_exists: str, key: list[str] | None) -> str:
        sqlalchemy = import_optional("sqlalchemy", extra="sql")
        if if_exists == "upsert":
            raise UnsupportedOperationError(
                "upsert is available for PostgreSQL, MySQL/MariaDB and SQLite only",
                component=self.label,
                hint="use if_exists='append' or 'replace' with this dialect",
            )
        data = _prepare(frame, "generic", self.label)
        cols = ", ".join(self.q(c) for c in data.columns)
        names = [f"p{i}" for i in range(data.width)]
        insert = sqlalchemy.text(
            f"INSERT INTO {self.qualified(table)} ({cols}) VALUES ({', '.join(':' + n for n in names)})"  # noqa: S608
        )
        with self.connection() as con:
            try:
                with con.begin():
                    existing = self.columns(con, table)
                    if existing is not None and if_exists == "fail":
                        raise already_exists_error(
                            f"table {self.display(table)!r}",
                            component=self.label,
                            modes="'replace' or 'append'",
                        )
                    if existing is not None and if_exists == "replace":
                        con.execute(sqlalchemy.text(f"DROP TABLE {self.qualified(table)}"))
                    if existing is None or if_exists == "replace":
                        con.execute(
                            sqlalchemy.text(self.create_sql(self.qualified(table), data, key))
                        )
                    else:
                        self.evolve(con.connection, table, existing, data)
                    for offset in range(0, data.height, self.cfg.batch_size):
                        chunk = data.slice(offset, self.cfg.batch_size)
                        con.execute(
                            insert,
                            [dict(zip(names, row, strict=True)) for row in chunk.iter_rows()],
                        )
            except sqlalchemy.exc.IntegrityError as exc:
                raise self.integrity_error(exc, table) from None
        return "created" if if_exists != "append" else "appended"

    def read(self, query: str, params: Any) -> Any:
        with self.connection() as con:
            cur = con.connection.cursor()
            try:
                return _fetch_frame(cur, query, params)
            finally:
                cur.close()


def _make_backend(owner: RelationalDBStorage) -> _Backend:
    cfg = owner.settings
    if cfg.url:
        sqlalchemy = import_optional("sqlalchemy", extra="sql", feature="Database URLs")
        try:
            url = sqlalchemy.engine.make_url(cfg.url)
        except sqlalchemy.exc.ArgumentError as exc:
            raise ConfigError(
                f"invalid database url: {redact_text(str(exc))}",
                component=owner.label,
                hint="write e.g. postgresql://user:password@host:5432/database",
            ) from None
        backend = url.get_backend_name()
        kind = _DB_ALIASES.get(backend, backend)
        if kind in ("postgresql", "mysql", "mariadb", "sqlite"):
            updates: dict[str, Any] = {"db_type": kind, "url": None, "database": url.database}
            if kind != "sqlite":
                updates.update(
                    host=url.host or cfg.host,
                    port=url.port or _DEFAULT_PORTS[kind],
                    username=url.username or cfg.username,
                )
                if url.password is not None:
                    from data_pipeline.core.secrets import register_secret

                    register_secret(str(url.password))
                    updates["password"] = SecretStr(str(url.password))
            owner.settings = cfg.model_copy(update=updates)
            return _BACKENDS[kind](owner)
        return _SQLAlchemyBackend(owner)
    return _BACKENDS[cfg.db_type](owner)


_BACKENDS: dict[str, type[_Backend]] = {
    "postgresql": _PostgresBackend,
    "mysql": _MySQLBackend,
    "mariadb": _MySQLBackend,
    "sqlite": _SQLiteBackend,
}


# -- types and readers ----------------------------------------------------------------------------


def _sql_type(dtype: Any, dialect: str, is_key: bool) -> str:
    """The column type for a polars dtype in ``dialect``."""
    import polars as pl

    pg, my, lite = dialect == "postgresql", dialect == "mysql", dialect == "sqlite"
    if dtype == pl.Boolean:
        return "INTEGER" if lite else "BOOLEAN"
    if dtype in (pl.Int8, pl.Int16, pl.UInt8):
        return "INTEGER" if lite else "SMALLINT"
    if dtype in (pl.Int32, pl.UInt16):
        return "INTEGER"
    if dtype in (pl.Int64, pl.UInt32):
        return "INTEGER" if lite else "BIGINT"
    if dtype in (pl.UInt64, pl.Int128):
        return (
            "INTEGER"
            if lite
            else "NUMERIC(39, 0)"
            if pg
            else "DECIMAL(39, 0)"
            if my
            else "NUMERIC(39, 0)"
        )
    if dtype == pl.Float32:
        return "REAL" if (pg or lite) else "FLOAT"
    if dtype == pl.Float64:
        return "REAL" if lite else "DOUBLE PRECISION" if pg else "DOUBLE" if my else "FLOAT"
    if isinstance(dtype, pl.Decimal):
        precision = dtype.precision or 38
        return "REAL" if lite else f"DECIMAL({precision}, {dtype.scale})"
    if dtype == pl.Date:
        return "DATE"
    if dtype == pl.Time:
        return "TIME(6)" if my else "TIME"
    if isinstance(dtype, pl.Datetime):
        if my:
            return "DATETIME(6)"
        if pg:
            return "TIMESTAMPTZ" if dtype.time_zone else "TIMESTAMP"
        return "TIMESTAMP"
    if isinstance(dtype, pl.Duration):
        return "INTEGER" if lite else "BIGINT"
    if dtype == pl.Binary:
        return "BLOB" if lite else "BYTEA" if pg else "LONGBLOB" if my else "BLOB"
    # strings, categoricals, nulls
    if my:
        return "VARCHAR(255)" if is_key else "LONGTEXT"
    return "TEXT" if (pg or lite) else "VARCHAR(255)" if is_key else "TEXT"


def _connectorx(uri: str, query: str) -> Any:
    """Read with connectorx into Arrow; ``None`` when connectorx is not installed."""
    try:
        import connectorx as cx
    except ImportError:
        return None
    try:
        return cx.read_sql(uri, query, return_type="arrow")
    except Exception as exc:
        message = redact_text(str(exc))
        if "does not exist" in message or "doesn't exist" in message or "no such table" in message:
            raise InputNotFoundError(
                f"query failed: {message}", hint="check the table name in the query"
            ) from None
        raise StorageError(f"query failed: {message}", hint="check the query text") from None


def _fetch_frame(cur: Any, query: str, params: Any) -> pl.DataFrame:
    """Run ``query`` with bound ``params`` on a DB-API cursor; the rows as a polars frame."""
    import polars as pl

    cur.execute(query, params) if params is not None else cur.execute(query)
    names = [d[0] for d in cur.description or []]
    rows = cur.fetchall()
    if not rows:
        return pl.DataFrame({n: [] for n in names})
    return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)
