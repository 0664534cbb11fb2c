"""RelationalDBStorage: SQLite (default), PostgreSQL, MySQL/MariaDB, or any SQLAlchemy URL.

Connections, ``:name`` parameters, reads, identifier checks, DDL types, upserts and error
translation come from the project's one SQL layer (:mod:`data_pipeline.core.sql`); this module
adds each database's bulk load and the plan that makes every load land whole or not at all:

* PostgreSQL: ``COPY ... FROM STDIN (FORMAT csv)`` through psycopg 3, fed with CSV that Polars
  encodes from the Arrow data in chunks, every text value quoted (so ``\\.``, ``\\N``, empty
  strings and NULLs are read back as given); everything (staging table, swap or merge) in one
  transaction, since PostgreSQL DDL is transactional.
* MySQL / MariaDB: ``LOAD DATA LOCAL INFILE`` from a CSV file Polars writes (any warning rolls
  the load back), or batched multi-row ``INSERT`` through PyMySQL; a new or replaced table is
  loaded as a staging table and swapped in with one atomic ``RENAME TABLE``. A load holds a
  named lock on its staging tables, so the next load of the same target can tell a killed
  load's leftovers (lock free) from a running load's, and drops them.
* SQLite: ``executemany`` inside one ``BEGIN IMMEDIATE`` transaction.

``append`` inserts in one transaction; ``upsert`` loads a temporary table and merges it with the
database's native upsert (``ON CONFLICT DO UPDATE`` / ``ON DUPLICATE KEY UPDATE``). After every
load the number of rows the database reports stored is compared with the frame: a difference is
an error and the load is rolled back. Identifiers are always quoted and checked against the
dialect's length limit before anything is written; values are always bound or streamed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import queue
import tempfile
import threading
import uuid
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from data_pipeline.core.deps import import_optional
from data_pipeline.core.errors import (
    ConfigError,
    DataPipelineError,
    StorageError,
    StorageSchemaError,
    UnsupportedOperationError,
)
from data_pipeline.core.frames import convert_output
from data_pipeline.core.sql import SQLConnectionConfig, SQLTarget, connect, dialect, resolve
from data_pipeline.core.sql.connect import database_file_lock
from data_pipeline.core.sql.params import bind, check_params
from data_pipeline.core.sql.read import mysql_columns, read_arrow, tinyint_as_bool
from data_pipeline.core.sql_errors import STORAGE, classify_db_error, translate_db_error
from data_pipeline.storage._common import (
    ColumnList,
    already_exists_error,
    as_polars,
    check_unique_key,
    constraint_error,
    first_lines,
    misfit_error,
    new_columns_error,
    not_found_error,
    primary_key,
    reject_unknown_options,
    require_key_columns,
    require_target,
    require_upsert_key,
)
from data_pipeline.storage._values import Holds, check_holdable
from data_pipeline.storage.base import IfExists, StorageSystem, StoreResult

if TYPE_CHECKING:
    import polars as pl

    from data_pipeline.core.checkpoint import Checkpoint, StateTable

__all__ = ["RelationalDBStorage", "RelationalDBStorageConfig", "Transaction"]

STAGE_PREFIX = "__dp_stage_"


class RelationalDBStorageConfig(SQLConnectionConfig):
    """Config of :class:`RelationalDBStorage`: the connection keys of
    :class:`~data_pipeline.core.sql.SQLConnectionConfig` (the spec's keys or a ``url``; SQLite
    when neither is given) plus how to store."""

    default_table: str | None = None
    """The table ``store()`` writes and ``retrieve()`` reads when called without one (and
    without a query); absent: a table must be named on each call."""
    default_if_exists: IfExists = "append"
    """What ``store()`` does when the table exists and the call gives no ``if_exists``:
    ``fail`` (an error), ``replace`` (swap in a new table), ``append`` (insert) or ``upsert``
    (update rows with the same ``primary_key``, insert the others)."""
    primary_key: ColumnList = None
    """Column(s) identifying a row (one name or a list): ``upsert`` merges on them, a table
    created by ``store()`` gets them as its PRIMARY KEY, and data repeating a key is refused
    before anything is written. ``store(primary_key=...)`` overrides it for one call."""
    schema_evolution: bool = False
    """``true``: columns of the data that the existing table lacks are added (``ALTER TABLE
    ... ADD COLUMN``) on ``append``/``upsert``; ``false``: such data is refused naming them."""
    batch_size: int = Field(default=100_000, gt=0)
    """Rows per chunk sent to the database (PostgreSQL COPY chunks, SQLite ``executemany``
    and SQLAlchemy INSERT batches; MySQL INSERT batches at most 20,000). Bounds memory only: a
    store still lands whole or not at all."""
    mysql_load: Literal["auto", "load_data", "insert"] = "auto"
    """MySQL/MariaDB bulk load: ``load_data`` uses ``LOAD DATA LOCAL INFILE`` (fails if the
    server refuses it), ``insert`` uses batched multi-row INSERTs, ``auto`` tries LOAD DATA and
    falls back to INSERT when the server disables ``local_infile``. Other databases ignore it."""

    @model_validator(mode="after")
    def _check(self) -> RelationalDBStorageConfig:
        kind = self.db_type or (None if self.url else "sqlite")
        if kind == "duckdb" or (self.url or "").lower().startswith("duckdb"):
            raise ValueError("DuckDB is stored by DataWarehouseStorage, not RelationalDBStorage")
        if kind == "sqlite" and self.schema_name:
            raise ValueError("schema is not supported for sqlite (a SQLite file is one namespace)")
        return self


class Transaction:
    """One open database transaction of a :class:`RelationalDBStorage`.

    Inside ``with storage.transaction() as tx:``, ``storage.store(...)`` calls join this
    transaction (each in a savepoint), ``tx.execute(sql, params)`` runs a statement and
    ``tx.query(sql, params)`` reads, all with ``:name`` parameters; everything commits together
    when the block ends, or rolls back on an exception.
    """

    def __init__(self, storage: RelationalDBStorage, con: Any) -> None:
        self.storage = storage
        self.connection = con
        """The DB-API connection (psycopg 3, PyMySQL or sqlite3) of the transaction."""

    def execute(self, sql: str, params: Any = None) -> int:
        """Run one statement with ``:name`` params; the number of rows it changed (-1: unknown)."""
        return self.storage._backend.execute(self.connection, sql, params)

    def save_checkpoint(self, checkpoint: Checkpoint, previous: int) -> None:
        """Write a stream job's checkpoint into the state table ``_dp_checkpoints`` in this
        transaction (:mod:`data_pipeline.core.checkpoint`); fail when its row is at another
        batch than ``previous`` (another run committed meanwhile)."""
        self.storage._backend.save_checkpoint(self.connection, checkpoint, previous)

    def query(self, sql: str, params: Any = None, *, output: str = "polars") -> Any:
        """Read inside the transaction (sees its uncommitted writes)."""
        table = read_arrow(
            self.storage.target,
            sql,
            params,
            classes=STORAGE,
            component=self.storage.label,
            connection=self.connection,
        )
        return convert_output(table, output, component=self.storage.label)


class RelationalDBStorage(StorageSystem):
    """Storage system for relational databases.

    ``db_type`` is ``sqlite`` (the default; ``database`` is a file path, ``:memory:`` when
    omitted), ``postgresql`` or ``mysql``/``mariadb``; or give a ``url`` (PostgreSQL, MySQL and
    SQLite URLs use the fast paths above; other dialects go through SQLAlchemy and are untested
    here). ``store(data, table=..., if_exists="fail"|"replace"|"append"|"upsert")``; ``upsert``
    merges on ``primary_key``. ``retrieve(table=...)`` or ``retrieve(query=..., params=...)``
    with ``:name`` placeholders and a dict, on every database.

    Raises:
        ConfigError: an invalid config (a DuckDB URL, ``schema`` with SQLite, ...), ``upsert``
            without a primary key, an unknown ``store()`` option, or ``retrieve()`` without a table
            or a query.
        DependencyError: the database driver is not installed.
        StorageConnectionError: the database cannot be reached (host, port and database are named,
            never the password).
        StorageAuthenticationError: the credentials were refused, or the operation was denied.
        StorageSchemaError: the data does not fit the table (new columns without
            ``schema_evolution``, a value its column cannot hold, a key column missing), or an
            upsert target without a unique key on ``primary_key``.
        InputNotFoundError: ``retrieve()`` of a table that does not exist.
        UnsupportedOperationError: an operation the database cannot do here (an upsert or a
            transaction through the generic SQLAlchemy path, nested transactions, ...).
        StorageError: a primary key repeated in the data, a constraint violation, or any other
            database failure; the table is left unchanged.

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
        >>> db.describe_connection()
        'db.example.com:5432/customers'
    """

    config_model = RelationalDBStorageConfig
    accepts_primary_key = True
    settings: RelationalDBStorageConfig

    def __init__(self, name: str, config: Any = None) -> None:
        super().__init__(name, config)
        self.target: SQLTarget = resolve(
            self.settings, default_db_type="sqlite", component=self.label
        )
        self._local = threading.local()
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

    # -- transactions -----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One transaction: ``store()`` calls inside join it; commit at the end, rollback on error.

        Example::

            with storage.transaction() as tx:
                storage.store(batch, "events", if_exists="append")
                tx.execute("UPDATE checkpoints SET pos = :pos WHERE id = :id",
                           {"pos": 42, "id": "events"})
        """
        if self._current_tx() is not None:
            raise UnsupportedOperationError(
                "a transaction is already open on this storage (in this thread)",
                component=self.label,
                hint="store inside the open transaction instead of opening another",
            )
        with self._backend.connection() as con:
            try:
                with self._backend.begin(con):
                    tx = Transaction(self, con)
                    self._local.tx = tx
                    try:
                        yield tx
                    finally:
                        self._local.tx = None
            except Exception as exc:
                if _is_driver_error(exc):  # from BEGIN / COMMIT: the caller's errors pass
                    raise self._backend.db_error(exc) from exc
                raise

    def supports_transactions(self) -> bool:
        """PostgreSQL, MySQL/MariaDB and SQLite (not the SQLAlchemy fallback)."""
        return self._backend.kind in ("postgresql", "mysql", "sqlite")

    def load_checkpoint(self, name: str) -> Checkpoint | None:
        """The checkpoint ``name`` from the state table ``_dp_checkpoints`` (None: none yet)."""
        with self._operation("load_checkpoint"):
            return self._backend.load_checkpoint(name)

    def _current_tx(self) -> Transaction | None:
        tx: Transaction | None = getattr(self._local, "tx", None)
        return tx

    def execute(self, sql: str, params: Any = None) -> int:
        """Run one statement with ``:name`` params in its own transaction (or the open one).

        For DDL such as ``CREATE TABLE IF NOT EXISTS`` before a :meth:`transaction` (MySQL and
        MariaDB commit DDL implicitly, so run it outside).
        """
        tx = self._current_tx()
        if tx is not None:
            return tx.execute(sql, params)
        with self._backend.connection() as con:
            try:
                with self._backend.begin(con):
                    return self._backend.execute(con, sql, params)
            except DataPipelineError:
                raise
            except Exception as exc:
                raise self._backend.db_error(exc) from exc

    # -- store ------------------------------------------------------------------------------

    def _store(self, data: Any, target: str, if_exists: str, **options: Any) -> StoreResult:
        reject_unknown_options(
            options,
            ("primary_key", "not_null"),
            hint="store() accepts table, if_exists, primary_key, not_null, schema",
            component=self.label,
        )
        key = primary_key(options, self.settings.primary_key)
        if self._spark_writes(data):
            from data_pipeline._spark import check_unique_key_spark, write_jdbc

            require_upsert_key(if_exists, key, component=self.label)
            if key:  # as the driver's load: a repeated key is refused before anything is written
                require_key_columns(
                    key, data.columns, what=f"table {target!r}", component=self.label
                )
                check_unique_key_spark(data, key, target, self.label)
            not_null = set(options.get("not_null") or [])
            return write_jdbc(self, data, target, if_exists, key, not_null=not_null)
        frame = as_polars(data)
        self._backend.check_names(target, frame.columns)
        check_holdable(frame, HOLDS.get(self._backend.kind, HOLDS["sql"]), component=self.label)
        require_upsert_key(if_exists, key, component=self.label)
        if key:
            require_key_columns(key, frame.columns, what=f"table {target!r}", component=self.label)
            check_unique_key(frame, key, target, self.label)
        load = _Load(
            frame=frame,
            table=target,
            if_exists=if_exists,
            key=key,
            not_null=set(options.get("not_null") or []),
            tx=self._current_tx(),
        )
        action = self._backend.store(load)
        details: dict[str, Any] = {
            "action": action,
            "db_type": self._backend.kind,
            "database": self._backend.where(),
            "rows_stored": load.stored,
        }
        if load.dropped_leftovers:
            details["leftovers_dropped"] = load.dropped_leftovers
        return StoreResult(
            target=self._backend.display(target),
            rows=int(frame.height),
            bytes=int(frame.estimated_size()),
            details=details,
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
        values = check_params(params, component=self.label)
        if query is None:
            assert target is not None
            self._backend.check_names(target)
            with self._backend.connection() as con:
                if self._backend.columns(con, target) is None:
                    raise not_found_error(
                        f"table {self._backend.display(target)!r} does not exist in {self._backend.where()}",
                        self._backend.tables(con),
                        kind="tables",
                        empty="the database has no tables",
                        component=self.label,
                    )
            return self._backend.read_table(target)
        return self._backend.read(query, values)

    def list_tables(self) -> list[str]:
        """Tables in the configured schema (or database)."""
        with self._backend.connection() as con:
            return self._backend.tables(con)

    def drop_stale_staging(self, table: str | None = None) -> list[str]:
        """Drop staging tables that killed loads left behind (of ``table``, or of every table).

        A running load holds a lock on its staging tables, so only the tables of loads that are
        gone are dropped. Loads call this themselves for their target; returns the names.
        """
        return self._backend.drop_leftovers(table)

    # -- staging for writers outside this process (Spark) ----------------------------------

    def writes_spark(self, if_exists: str | None = None) -> bool:
        """A database whose staging tables Spark can fill, and no open transaction (a staging
        merge commits on its own): the executors write."""
        return self._backend.staging_supported and self._current_tx() is None

    def jdbc(self) -> tuple[str, dict[str, str]]:
        """The JDBC URL and connection properties (``user``, ``password``, ``driver``) of the
        configured database, e.g. for ``DataFrame.write.jdbc``."""
        return self.target.jdbc()

    @contextmanager
    def staging_table(
        self,
        table: str,
        schema: Any,
        *,
        primary_key: Sequence[str] | None = None,
        not_null: Iterable[str] | None = None,
    ) -> Iterator[str]:
        """A new, empty staging table for a load of ``table``, created from ``schema``.

        ``schema`` is a frame or a polars/Arrow schema; the columns get this storage's DDL types.
        ``primary_key`` (default: the configured one) becomes the staging table's PRIMARY KEY,
        and so the table's when the staging table is swapped in; so do the ``not_null``
        columns (``NOT NULL``, as a driver load's table gets them).
        Yields the staging table's name (unquoted, in the configured schema) for an outside
        writer (Spark's ``df.write.jdbc(url, name, mode="append")``); then call
        :meth:`merge_staging` inside the block. While the block runs this process holds a lock
        on the name, so that other loads do not mistake the table for a leftover; on leaving the
        block the staging table is dropped if it is still there.
        """
        key = list(primary_key or self.settings.primary_key or []) or None
        yield from self._backend.staging_table(table, schema, key, set(not_null or ()))

    def merge_staging(
        self,
        staging: str,
        table: str,
        *,
        if_exists: str = "append",
        primary_key: Sequence[str] | None = None,
        expected_rows: int | None = None,
    ) -> StoreResult:
        """Move the rows of a filled staging table into ``table`` in one transaction.

        ``append`` inserts them, ``replace`` swaps the staging table in (the old table is
        dropped), ``upsert`` merges them on ``primary_key`` with the native upsert, and a missing
        ``table`` is created from the staging table. With ``expected_rows``, a staging table
        holding another number of rows is an error and nothing changes.
        """
        if if_exists not in ("fail", "append", "replace", "upsert"):
            raise ConfigError(
                f"if_exists={if_exists!r} is not supported here",
                component=self.label,
                hint="use fail, append, replace or upsert",
            )
        key = list(primary_key or self.settings.primary_key or []) or None
        require_upsert_key(if_exists, key, component=self.label)
        with self._operation("merge_staging") as op:
            rows, action = self._backend.merge_staging(
                staging, table, if_exists, key, expected_rows
            )
            op.rows_out = rows
            op.details.update({"target": self._backend.display(table), "action": action})
            return StoreResult(
                target=self._backend.display(table),
                rows=rows,
                details={"action": action, "db_type": self._backend.kind},
            )

    def _translate_error(self, exc: BaseException, operation: str) -> BaseException | None:
        if isinstance(exc, Exception) and _is_driver_error(exc):
            return self._backend.db_error(exc)
        return super()._translate_error(exc, operation)


def _is_driver_error(exc: BaseException) -> bool:
    mods = {cls.__module__.split(".")[0] for cls in type(exc).__mro__}
    return bool(mods & {"psycopg", "pymysql", "sqlite3", "adbc_driver_manager", "sqlalchemy"})


class _Load:
    """One store() call: the data, the plan, and what the load found and did."""

    def __init__(
        self,
        *,
        frame: pl.DataFrame,
        table: str,
        if_exists: str,
        key: list[str] | None,
        not_null: set[str],
        tx: Transaction | None,
    ) -> None:
        self.frame = frame
        self.table = table
        self.if_exists = if_exists
        self.key = key
        self.not_null = not_null
        self.tx = tx
        self.stored: int | None = None
        self.dropped_leftovers: list[str] = []


# ---------------------------------------------------------------------------------------------
# backends


class _Backend:
    """What differs between databases: bulk loading, swapping, catalogs, locks."""

    kind: ClassVar[str] = "sql"

    def __init__(self, owner: RelationalDBStorage) -> None:
        self.owner = owner
        self.cfg = owner.settings
        self.target = owner.target
        self.label = owner.label
        self.dialect = dialect(self.target.dialect)

    # naming
    def check_names(self, table: str, columns: Sequence[str] = ()) -> None:
        """Table, schema and column names the database keeps as given, before any write."""
        self.dialect.check_names(table, columns, schema=self.schema, component=self.label)

    def q(self, name: str) -> str:
        return self.dialect.quote(name)

    @property
    def schema(self) -> str | None:
        return self.cfg.schema_name

    def qualified(self, table: str) -> str:
        return self.dialect.qualified(table, self.schema)

    def display(self, table: str) -> str:
        return f"{self.schema}.{table}" if self.schema else table

    def where(self) -> str:
        return self.target.where()

    def close(self) -> None:
        return None

    # errors
    def db_error(self, exc: BaseException) -> DataPipelineError:
        return translate_db_error(
            exc,
            classes=STORAGE,
            what=self.target.label,
            where=self.where(),
            component=self.label,
            lines=3,
        )

    def integrity_error(self, exc: Exception, table: str) -> StorageError:
        return constraint_error(self.display(table), first_lines(exc), component=self.label)

    def schema_error(self, exc: Exception, table: str) -> StorageSchemaError:
        return misfit_error(
            self.display(table), f"{first_lines(exc)}; the table is unchanged", component=self.label
        )

    def load_error(self, exc: Exception, table: str) -> DataPipelineError:
        """A driver error during a load: constraint, misfit value/column, or as classified."""
        kind = classify_db_error(exc)
        if kind == "integrity":
            return self.integrity_error(exc, table)
        if kind == "data" or kind == "query":
            return self.schema_error(exc, table)
        return self.db_error(exc)

    def count_check(self, stored: int, load: _Load, what: str) -> None:
        """The rows the database says it stored equal the frame's rows, or the load fails."""
        expected = load.frame.height
        if stored >= 0 and stored != expected:
            raise StorageError(
                f"{what} of table {self.display(load.table)!r} stored {stored:,} rows but the "
                f"data has {expected:,}; the load is rolled back and the table is unchanged",
                component=self.label,
                hint="report this: a value was misread by the bulk path",
            )
        load.stored = stored if stored >= 0 else expected

    # to implement
    @contextmanager
    def connection(self) -> Iterator[Any]:
        con = connect(self.target, classes=STORAGE, component=self.label, **self.connect_extra())
        try:
            yield con
        finally:
            con.close()

    def connect_extra(self) -> dict[str, Any]:
        return {}

    @contextmanager
    def begin(self, con: Any) -> Iterator[None]:
        """BEGIN ... COMMIT on ``con``, ROLLBACK on any error."""
        raise NotImplementedError
        yield

    def savepoint(self, con: Any) -> Any:
        """A savepoint inside an open transaction (one store() inside transaction())."""
        return _savepoint(con, self.execute)

    def execute(self, con: Any, sql: str, params: Any = None) -> int:
        text, values = bind(sql, params, self.dialect.param_style, component=self.label)
        cur = con.cursor()
        try:
            if values:
                cur.execute(text, values)
            else:
                cur.execute(text)
            return int(cur.rowcount if cur.rowcount is not None else -1)
        finally:
            cur.close()

    def columns(self, con: Any, table: str) -> list[str] | None:
        raise NotImplementedError

    def tables(self, con: Any) -> list[str]:
        raise NotImplementedError

    def unique_keys(self, con: Any, table: str) -> list[set[str]]:
        """The column sets of the table's primary key and unique constraints."""
        raise NotImplementedError

    def store(self, load: _Load) -> str:
        raise NotImplementedError

    # the plan of every load (each backend's store() wraps it in its connection/transaction)

    def store_plan(self, con: Any, load: _Load) -> str:
        """fail / create or replace / evolve then append or upsert; returns the action taken."""
        table, frame = load.table, load.frame
        self.prepare_namespace(con)
        load.dropped_leftovers = self.drop_leftovers_on(con, table)
        existing = self.columns(con, table)
        self.fail_if_exists(existing, load.if_exists, table)
        if existing is None or load.if_exists == "replace":
            self.load_new(con, load, replacing=existing is not None)
            return "created" if existing is None else "replaced"
        columns = self.evolve(con, table, existing, frame)
        if load.if_exists == "append":
            self.append(con, load, frame.select([c for c in columns if c in frame.columns]))
            return "appended"
        assert load.key is not None
        self.require_unique_key(con, table, load.key)
        self.upsert(con, load)
        return "upserted"

    def prepare_namespace(self, con: Any) -> None:
        return None

    def drop_leftovers_on(self, con: Any, table: str | None) -> list[str]:
        return []

    def bulk_load(self, con: Any, qualified: str, frame: pl.DataFrame, table: str) -> int:
        """Load ``frame`` into ``qualified`` (no commit); the rows the database stored."""
        raise NotImplementedError

    def append(self, con: Any, load: _Load, frame: pl.DataFrame) -> None:
        stored = self.bulk_load(con, self.qualified(load.table), frame, load.table)
        self.count_check(stored, load, "append")

    def load_new(self, con: Any, load: _Load, *, replacing: bool) -> None:
        """Load a staging table and swap it in (inside the caller's transaction)."""
        stage = self.staging_name(load.table)
        staged = self.qualified(stage)
        self.execute(con, self.create_sql(staged, load.frame, load.key, not_null=load.not_null))
        self.count_check(self.bulk_load(con, staged, load.frame, load.table), load, "replace")
        self.swap_in(con, stage, load.table, replacing=replacing, key=load.key)

    def upsert(self, con: Any, load: _Load) -> None:
        """Load a temporary stage and merge it with the native upsert; the stage is dropped."""
        assert load.key is not None
        frame = load.frame
        stage = self.q(self.staging_name(load.table))
        self.execute(con, self.create_sql(stage, frame, load.key, temp=True))
        try:
            self.count_check(self.bulk_load(con, stage, frame, load.table), load, "upsert")
            sql = self.dialect.upsert_sql(
                self.qualified(load.table), stage, frame.columns, load.key
            )
            changed = self.execute(con, sql)
            if self.counts_upserts and any(c not in load.key for c in frame.columns):
                self.count_check(changed, load, "upsert")  # each row inserted or updated once
        except BaseException:
            with contextlib.suppress(Exception):  # (an aborted transaction drops it anyway)
                self.execute(con, self.drop_temp_sql(stage))
            raise
        self.execute(con, self.drop_temp_sql(stage))

    def drop_temp_sql(self, stage: str) -> str:
        return f"DROP TABLE IF EXISTS {stage}"

    counts_upserts: ClassVar[bool] = False

    def read(self, query: str, params: dict[str, Any]) -> Any:
        return read_arrow(self.target, query, params, classes=STORAGE, component=self.label)

    def read_table(self, table: str) -> Any:
        return self.read(f"SELECT * FROM {self.qualified(table)}", {})  # noqa: S608

    # leftovers and staging
    def stage_prefix(self, table: str) -> str:
        """``__dp_stage_<8 hex of the target>_``: staging tables of one target share it."""
        digest = hashlib.blake2b(f"{self.schema or ''}.{table}".encode(), digest_size=4).hexdigest()
        return f"{STAGE_PREFIX}{digest}_"

    def staging_name(self, table: str) -> str:
        return f"{self.stage_prefix(table)}{uuid.uuid4().hex[:12]}"

    def drop_leftovers(self, table: str | None) -> list[str]:
        return []

    # staging tables filled by an outside writer (Spark): PostgreSQL and MySQL/MariaDB
    staging_supported: ClassVar[bool] = False

    def require_staging(self) -> None:
        if not self.staging_supported:
            raise UnsupportedOperationError(
                f"staging tables for outside writers are available for PostgreSQL and "
                f"MySQL/MariaDB, not {self.target.label}",
                component=self.label,
                hint="store the frame with store() instead",
            )

    def hold(self, con: Any, name: str) -> None:
        """Hold the session lock that marks ``name`` as a live staging table."""
        raise NotImplementedError

    def release(self, con: Any, name: str) -> None:
        raise NotImplementedError

    def swap_in(
        self, con: Any, staging: str, table: str, *, replacing: bool, key: Sequence[str] | None
    ) -> None:
        """Make the filled staging table the target (dropping the old target when replacing)."""
        raise NotImplementedError

    def ddl_transaction(self, con: Any) -> Any:
        """Around a whole merge: a transaction where DDL is transactional, else nothing."""
        return contextlib.nullcontext()

    def dml_transaction(self, con: Any) -> Any:
        """Around the INSERT of a merge (inside :meth:`ddl_transaction`)."""
        return contextlib.nullcontext()

    def staging_table(
        self, table: str, schema: Any, key: Sequence[str] | None, not_null: set[str]
    ) -> Iterator[str]:
        self.require_staging()
        frame = _schema_frame(schema)
        self.check_names(table, frame.columns)
        name = self.staging_name(table)
        with self.connection() as con:
            self.hold(con, name)
            try:
                self.execute(
                    con,
                    self.create_sql(
                        self.qualified(name), frame, list(key or []) or None, not_null=not_null
                    ),
                )
                self.commit(con)
                yield name
            finally:
                with contextlib.suppress(Exception):
                    self.execute(con, f"DROP TABLE IF EXISTS {self.qualified(name)}")
                    self.commit(con)
                self.release(con, name)

    def commit(self, con: Any) -> None:
        con.commit()

    # checkpoints (core/checkpoint.py): one row per job in _dp_checkpoints beside the data

    def state_table(self) -> StateTable:
        from data_pipeline.core.checkpoint import STATE_TABLE, StateTable

        if not self.owner.supports_transactions():
            raise UnsupportedOperationError(
                f"checkpoints are kept in PostgreSQL, MySQL/MariaDB and SQLite, not {self.target.label}",
                component=self.label,
                hint="keep the checkpoint in a folder (checkpoint.path)",
            )
        return StateTable(self.dialect.name, self.qualified(STATE_TABLE), self.q)

    def rows(self, con: Any, sql: str, params: Any = None) -> list[Any]:
        text, values = bind(sql, params, self.dialect.param_style, component=self.label)
        cur = con.cursor()
        try:
            cur.execute(text, values) if values else cur.execute(text)
            return list(cur.fetchall())
        finally:
            cur.close()

    def load_checkpoint(self, name: str) -> Checkpoint | None:
        from data_pipeline.core.checkpoint import STATE_TABLE, Checkpoint

        table = self.state_table()
        with self.connection() as con:
            if self.columns(con, STATE_TABLE) is None:
                return None
            found = self.rows(con, table.select_sql(), {"name": name})
        if not found:
            return None
        return Checkpoint.decode(bytes(found[0][0]), where=f"{self.display(STATE_TABLE)}[{name!r}]")

    def save_checkpoint(self, con: Any, checkpoint: Checkpoint, previous: int) -> None:
        from data_pipeline.core.checkpoint import STATE_TABLE, conflict_error

        table = self.state_table()
        where = self.display(STATE_TABLE)
        if self.columns(con, STATE_TABLE) is None:
            if self.kind == "mysql":  # DDL would commit the open transaction: another connection
                with self.connection() as other:
                    self.execute(other, table.create_sql())
            else:
                if self.schema and self.kind == "postgresql":
                    self.execute(con, f"CREATE SCHEMA IF NOT EXISTS {self.q(self.schema)}")
                self.execute(con, table.create_sql())
        params = table.params(checkpoint, previous)
        found = self.rows(con, table.batch_sql(), {"name": checkpoint.name})
        stored = found[0][0] if found else 0
        if stored != previous:
            raise conflict_error(checkpoint.name, previous, stored, where)
        if not found:
            params.pop("previous")
            self.execute(con, table.insert_sql(), params)
        elif self.execute(con, table.update_sql(), params) != 1:
            raise conflict_error(checkpoint.name, previous, "?", where)

    def scalar(self, con: Any, sql: str) -> Any:
        """The first value of a query's first row."""
        cur = con.cursor()
        try:
            cur.execute(sql)
            return cur.fetchone()[0]
        finally:
            cur.close()

    def merge_staging(
        self,
        staging: str,
        table: str,
        if_exists: str,
        key: list[str] | None,
        expected: int | None,
    ) -> tuple[int, str]:
        self.require_staging()
        self.check_names(table)
        try:
            with self.connection() as con, self.ddl_transaction(con):
                staged = self.qualified(staging)
                columns = self.columns(con, staging)
                if columns is None:
                    raise not_found_error(
                        f"staging table {self.display(staging)!r} does not exist",
                        [],
                        kind="tables",
                        empty="create it with staging_table()",
                        component=self.label,
                    )
                rows = int(self.scalar(con, f"SELECT COUNT(*) FROM {staged}"))  # noqa: S608
                _check_expected(rows, expected, staging, self.label)
                existing = self.columns(con, table)
                self.fail_if_exists(existing, if_exists, table)
                if existing is None or if_exists == "replace":
                    self.swap_in(con, staging, table, replacing=existing is not None, key=key)
                    return rows, "created" if existing is None else "replaced"
                qualified = self.qualified(table)
                if if_exists == "upsert":
                    assert key is not None
                    self.require_unique_key(con, table, key)
                    sql = self.dialect.upsert_sql(qualified, staged, columns, key)
                else:
                    cols = ", ".join(self.q(c) for c in columns)
                    sql = f"INSERT INTO {qualified} ({cols}) SELECT {cols} FROM {staged}"  # noqa: S608
                with self.dml_transaction(con):
                    self.execute(con, sql)
                self.execute(con, f"DROP TABLE IF EXISTS {staged}")
                return rows, "appended" if if_exists == "append" else "upserted"
        except DataPipelineError:
            raise
        except Exception as exc:
            if _is_driver_error(exc):
                raise self.load_error(exc, table) from None
            raise

    # shared SQL
    def create_sql(
        self,
        qualified: str,
        frame: pl.DataFrame,
        key: list[str] | None,
        *,
        temp: bool = False,
        not_null: set[str] | None = None,
    ) -> str:
        keyset = set(key or [])
        required = set() if temp else (not_null or set())
        cols = [
            f"{self.q(name)} {self.sql_type(dtype, name in keyset)}"
            + (" NOT NULL" if name in required else "")
            for name, dtype in frame.schema.items()
        ]
        if key:
            cols.append(f"PRIMARY KEY ({', '.join(self.q(k) for k in key)})")
        kind = self.temp_table_keyword() if temp else "TABLE"
        return f"CREATE {kind} {qualified} ({', '.join(cols)})"

    def sql_type(self, dtype: Any, is_key: bool) -> str:
        return self.dialect.ddl_type(dtype, is_key=is_key)

    def temp_table_keyword(self) -> str:
        return "TEMPORARY TABLE"

    def require_unique_key(self, con: Any, table: str, key: list[str]) -> None:
        """Upsert needs a PRIMARY KEY or UNIQUE constraint on exactly ``key`` in the table."""
        if set(key) in self.unique_keys(con, table):
            return
        cols = ", ".join(self.q(k) for k in key)
        raise StorageSchemaError(
            f"table {self.display(table)!r} has no PRIMARY KEY or UNIQUE constraint on "
            f"({', '.join(key)}); an upsert needs one to find the rows to update",
            component=self.label,
            hint=f"add it (ALTER TABLE {self.qualified(table)} ADD PRIMARY KEY ({cols})), or "
            "store once with if_exists='replace' and primary_key=[...]",
        )

    def evolve(self, con: Any, table: str, existing: list[str], frame: pl.DataFrame) -> list[str]:
        """New columns in the data: added when schema_evolution allows, else a SchemaError naming them."""
        new = [c for c in frame.columns if c not in existing]
        if not new:
            return existing
        if not self.cfg.schema_evolution:
            raise new_columns_error(new, self.display(table), component=self.label)
        for column in new:
            ctype = self.sql_type(frame.schema[column], False)
            self.execute(
                con, f"ALTER TABLE {self.qualified(table)} ADD COLUMN {self.q(column)} {ctype}"
            )
        return existing + new

    def fail_if_exists(self, existing: list[str] | None, if_exists: str, table: str) -> None:
        """``if_exists='fail'`` and the table is there: an error naming table and database."""
        if existing is not None and if_exists == "fail":
            raise already_exists_error(
                f"table {self.display(table)!r}", where=self.where(), component=self.label
            )


@contextmanager
def _savepoint(con: Any, execute: Any) -> Iterator[None]:
    name = f"dp_{uuid.uuid4().hex[:12]}"
    execute(con, f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            execute(con, f"ROLLBACK TO SAVEPOINT {name}")
        raise
    execute(con, f"RELEASE SAVEPOINT {name}")


#: what each database keeps: a frame holding anything else is refused before writing, naming
#: the column (values are stored as given or not at all)
HOLDS = {
    "postgresql": Holds("PostgreSQL tables", time_unit="us", clock_unit="us", nul_text=False),
    "mysql": Holds(
        "MySQL/MariaDB tables",
        time_unit="us",
        clock_unit="us",
        nan_inf=False,
        negative_zero=False,
    ),
    "sqlite": Holds(
        "SQLite tables",
        time_unit="us",
        clock_unit="us",
        nan_inf=False,
        negative_zero=False,
        decimal_digits=15,  # stored as REAL: 15 significant digits come back exactly
        uint64=False,
    ),
    "sql": Holds("SQL tables", time_unit="us", clock_unit="us"),
}


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
            elif dtype == pl.Date:
                exprs.append(col.cast(pl.String))
            elif dtype == pl.Time:
                exprs.append(col.dt.strftime("%H:%M:%S%.6f"))
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

    Every non-numeric value is quoted and NULL is an unquoted empty field, so PostgreSQL reads
    each value as written: ``\\.`` is data (only an unquoted ``\\.`` line ends a CSV COPY), an
    empty string is ``""``, ``\\N`` is text. A background thread encodes the next chunk while
    the caller sends this one (Polars releases the GIL while it encodes), so that encoding
    overlaps the server's parsing; at most two encoded chunks wait in memory.
    """

    def encode(frame: pl.DataFrame) -> io.BytesIO:
        buffer = io.BytesIO()
        frame.write_csv(buffer, include_header=False, quote_style="non_numeric", null_value="")
        return buffer

    if data.height <= step:
        if data.height:
            yield encode(data).getbuffer()
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
                if not put(encode(data.slice(offset, step))):
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


def _schema_frame(schema: Any) -> pl.DataFrame:
    """An empty polars frame with the columns of a frame, a polars schema or an Arrow schema."""
    import polars as pl
    import pyarrow as pa

    if isinstance(schema, pa.Schema):
        frame = pl.from_arrow(schema.empty_table())
        assert isinstance(frame, pl.DataFrame)
        return frame
    if isinstance(schema, (pl.Schema, dict)):
        return pl.DataFrame(schema=schema)
    return as_polars(schema).clear()


# -- PostgreSQL ---------------------------------------------------------------------------------


class _PostgresBackend(_Backend):
    kind = "postgresql"

    @contextmanager
    def begin(self, con: Any) -> Iterator[None]:
        with con.transaction():
            yield

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

    def unique_keys(self, con: Any, table: str) -> list[set[str]]:
        rows = con.execute(
            "SELECT array_agg(a.attname::text) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) "
            "WHERE c.relname = %s AND n.nspname = COALESCE(%s, current_schema()) "
            "AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL "
            "GROUP BY i.indexrelid",
            [table, self.schema],
        ).fetchall()
        return [set(r[0]) for r in rows]

    def copy_into(self, con: Any, qualified: str, frame: pl.DataFrame) -> int:
        """COPY the frame into ``qualified``; the number of rows the server stored."""
        data = _prepare(frame, "postgresql", self.label)
        cols = ", ".join(self.q(c) for c in data.columns)
        # closing(): a failed write stops the encoder thread at once
        with (
            contextlib.closing(_csv_chunks(data, self.cfg.batch_size)) as chunks,
            con.cursor() as cur,
        ):
            with cur.copy(f"COPY {qualified} ({cols}) FROM STDIN (FORMAT csv)") as copy:
                for chunk in chunks:
                    copy.write(chunk)
            return int(cur.rowcount)

    def store(self, load: _Load) -> str:
        psycopg = import_optional("psycopg", extra="postgres", feature="PostgreSQL support")
        try:
            if load.tx is not None:
                con = load.tx.connection
                with con.transaction():  # a savepoint inside the open transaction
                    return self.store_plan(con, load)
            with self.connection() as con, con.transaction():
                # DDL is transactional: the whole load is one transaction
                return self.store_plan(con, load)
        except psycopg.Error as exc:
            raise self.load_error(exc, load.table) from None

    counts_upserts = True

    def prepare_namespace(self, con: Any) -> None:
        if (
            self.schema
            and not con.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.schema]
            ).fetchone()
        ):
            # checked first: CREATE SCHEMA IF NOT EXISTS needs CREATE rights even when it exists
            con.execute(f"CREATE SCHEMA {self.q(self.schema)}")

    def bulk_load(self, con: Any, qualified: str, frame: pl.DataFrame, table: str) -> int:
        return self.copy_into(con, qualified, frame)

    def swap_in(
        self, con: Any, staging: str, table: str, *, replacing: bool, key: Sequence[str] | None
    ) -> None:
        if replacing:
            con.execute(f"DROP TABLE {self.qualified(table)}")
        con.execute(f"ALTER TABLE {self.qualified(staging)} RENAME TO {self.q(table)}")
        pkey = staging + "_pkey"
        if (
            key
            and con.execute(
                "SELECT 1 FROM pg_constraint WHERE conname = %s AND conrelid = to_regclass(%s)",
                [pkey, self.qualified(table)],
            ).fetchone()
        ):  # the primary key's constraint keeps the table's conventional name
            con.execute(
                f"ALTER TABLE {self.qualified(table)} RENAME CONSTRAINT "
                f"{self.q(staging + '_pkey')} "
                f"TO {self.q(table.encode()[:58].decode(errors='ignore') + '_pkey')}"
            )

    staging_supported = True

    def ddl_transaction(self, con: Any) -> Any:
        return con.transaction()

    def hold(self, con: Any, name: str) -> None:
        con.autocommit = True  # the table is committed for the outside writer to see
        con.execute("SELECT pg_advisory_lock(%s)", [self.lock_key(name)])

    def release(self, con: Any, name: str) -> None:
        with contextlib.suppress(Exception):
            con.execute("SELECT pg_advisory_unlock(%s)", [self.lock_key(name)])

    # leftovers: a PostgreSQL load stages inside its transaction (a killed load leaves
    # nothing); staging tables for outside writers are held by a session advisory lock.

    @staticmethod
    def lock_key(name: str) -> int:
        return int.from_bytes(
            hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
        )

    def drop_leftovers_on(self, con: Any, table: str | None) -> list[str]:
        pattern = (self.stage_prefix(table) if table else STAGE_PREFIX).replace("_", "\\_") + "%"
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = COALESCE(%s, current_schema()) AND table_name LIKE %s",
                [self.schema, pattern],
            ).fetchall()
        ]
        dropped = []
        for name in names:
            key = self.lock_key(name)
            if con.execute("SELECT pg_try_advisory_xact_lock(%s)", [key]).fetchone()[0]:
                # nobody holds its session lock: the writer is gone
                con.execute(f"DROP TABLE IF EXISTS {self.qualified(name)}")
                dropped.append(name)
        if dropped:
            self.owner.logger.warning(
                "%s: dropped staging tables left by killed loads: %s", self.label, dropped
            )
        return dropped

    def drop_leftovers(self, table: str | None) -> list[str]:
        with self.connection() as con, con.transaction():
            return self.drop_leftovers_on(con, table)


def _check_expected(rows: int, expected: int | None, staging: str, label: str) -> None:
    if expected is not None and rows != expected:
        raise StorageError(
            f"staging table {staging!r} holds {rows:,} rows but the writer sent {expected:,}; "
            "nothing was merged",
            component=label,
            hint="the outside write lost or repeated rows: run it again",
        )


# -- MySQL / MariaDB ----------------------------------------------------------------------------


class _MySQLBackend(_Backend):
    kind = "mysql"

    def connect_extra(self) -> dict[str, Any]:
        return {"local_infile": self.cfg.mysql_load != "insert"}

    @contextmanager
    def begin(self, con: Any) -> Iterator[None]:
        """BEGIN ... COMMIT, or ROLLBACK on any error (DDL must stay outside: it commits)."""
        con.begin()
        try:
            yield
            con.commit()
        except BaseException:
            con.rollback()
            raise

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

    def unique_keys(self, con: Any, table: str) -> list[set[str]]:
        with con.cursor() as cur:
            cur.execute(
                "SELECT index_name, column_name FROM information_schema.statistics "
                "WHERE table_schema = COALESCE(%s, DATABASE()) AND table_name = %s "
                "AND non_unique = 0",
                [self.schema, table],
            )
            keys: dict[str, set[str]] = {}
            for index, column in cur.fetchall():
                keys.setdefault(index, set()).add(column)
        return list(keys.values())

    def read_table(self, table: str) -> Any:
        """``TINYINT(1)`` columns holding 0/1 come back as booleans (how MySQL stores BOOLEAN);
        decimals wider than ConnectorX reads go through the driver."""
        info = mysql_columns(self.target, table, classes=STORAGE, component=self.label)
        data = read_arrow(
            self.target,
            f"SELECT * FROM {self.qualified(table)}",  # noqa: S608
            path="driver" if info.wide_decimals else "auto",
            classes=STORAGE,
            component=self.label,
        )
        return tinyint_as_bool(data, info.bools, checked=False)

    # -- locks and leftovers: a load holds GET_LOCK(<staging name>) while its table exists --

    def hold(self, con: Any, name: str) -> None:
        with con.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 0)", [name])
            got = cur.fetchone()
        if not got or got[0] != 1:  # the name is random: another holder is impossible
            raise StorageError(f"could not lock staging table name {name!r}", component=self.label)

    def unlock_all(self, con: Any) -> None:
        with contextlib.suppress(Exception), con.cursor() as cur:
            cur.execute("SELECT RELEASE_ALL_LOCKS()")

    def drop_leftovers_on(self, con: Any, table: str | None) -> list[str]:
        """Drop staging tables of ``table`` (all with ``None``) whose load's lock is free."""
        pattern = (self.stage_prefix(table) if table else STAGE_PREFIX).replace("_", "\\_") + "%"
        dropped = []
        with con.cursor() as cur:
            cur.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = COALESCE(%s, DATABASE()) AND table_name LIKE %s",
                [self.schema, pattern],
            )
            for (name,) in cur.fetchall():
                cur.execute("SELECT IS_FREE_LOCK(%s)", [name])
                free = cur.fetchone()
                if free and free[0] == 1:  # the session that held it is gone
                    cur.execute(f"DROP TABLE IF EXISTS {self.qualified(name)}")
                    dropped.append(name)
        con.commit()  # end the catalog reads' transaction before the load's DDL
        if dropped:
            self.owner.logger.warning(
                "%s: dropped staging tables left by killed loads: %s", self.label, dropped
            )
        return dropped

    def drop_leftovers(self, table: str | None) -> list[str]:
        with self.connection() as con:
            return self.drop_leftovers_on(con, table)

    # -- loading --------------------------------------------------------------------------

    def load(self, con: Any, qualified: str, frame: pl.DataFrame, table: str) -> int:
        """Bulk load into ``qualified`` (no commit): LOAD DATA LOCAL, or multi-row INSERTs.

        Returns the number of rows the server stored.
        """
        pymysql = import_optional("pymysql", extra="mysql", feature="MySQL/MariaDB support")
        data = _prepare(frame, "mysql", self.label)
        if self.cfg.mysql_load != "insert":
            try:
                return self._load_data(con, qualified, data, table)
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
        stored = 0
        with con.cursor() as cur:
            for offset in range(0, data.height, step):
                stored += int(cur.executemany(sql, data.slice(offset, step).rows()) or 0)
        return stored

    def _load_data(self, con: Any, qualified: str, data: pl.DataFrame, table: str) -> int:
        import polars as pl

        # bytes travel as hex (UNHEX on the server); float32 as the exact double of its value
        # (its shortest float32 text, e.g. 3.4028235e38, is out of FLOAT's range as a double)
        binary = [n for n, d in data.schema.items() if d == pl.Binary]
        data = data.with_columns(
            [pl.col(n).bin.encode("hex") for n in binary]
            + [pl.col(n).cast(pl.Float64) for n, d in data.schema.items() if d == pl.Float32]
        )
        text_cols = {n for n, d in data.schema.items() if d == pl.String or d.is_temporal()}
        fd, path = tempfile.mkstemp(prefix="dp-load-", suffix=".csv")
        os.close(fd)
        try:
            data.write_csv(
                path,
                include_header=False,
                null_value="NULL",
                quote_style="non_numeric" if text_cols else "necessary",
                datetime_format="%Y-%m-%d %H:%M:%S%.6f",
                time_format="%H:%M:%S%.6f",
            )
            names = [f"@dp_{i}" if n in binary else self.q(n) for i, n in enumerate(data.columns)]
            target = f"({', '.join(names)})"
            if binary:
                target += " SET " + ", ".join(
                    f"{self.q(n)} = UNHEX(@dp_{i})"
                    for i, n in enumerate(data.columns)
                    if n in binary
                )
            with con.cursor() as cur:
                stored = cur.execute(
                    "LOAD DATA LOCAL INFILE %s INTO TABLE "
                    + f"{qualified} CHARACTER SET utf8mb4 ".replace("%", "%%")
                    + "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
                    + f"LINES TERMINATED BY '\\n' {target}".replace("%", "%%"),
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
            return int(stored)
        finally:
            with contextlib.suppress(OSError):
                os.remove(path)

    def store(self, load: _Load) -> str:
        pymysql = import_optional("pymysql", extra="mysql", feature="MySQL/MariaDB support")
        try:
            if load.tx is not None:
                con = load.tx.connection
                with self.savepoint(con):
                    return self.store_in_transaction(con, load)
            with self.connection() as con:
                try:
                    return self.store_plan(con, load)
                finally:
                    self.unlock_all(con)
        except pymysql.err.MySQLError as exc:
            raise self.load_error(exc, load.table) from None

    def bulk_load(self, con: Any, qualified: str, frame: pl.DataFrame, table: str) -> int:
        return self.load(con, qualified, frame, table)

    def drop_temp_sql(self, stage: str) -> str:
        return f"DROP TEMPORARY TABLE IF EXISTS {stage}"  # no implicit commit

    def append(self, con: Any, load: _Load, frame: pl.DataFrame) -> None:
        with self.begin(con):  # DDL (evolve) committed already: the rows in one transaction
            super().append(con, load, frame)

    def upsert(self, con: Any, load: _Load, *, transaction: bool = True) -> None:
        """A TEMPORARY stage (its DDL commits nothing) merged with ON DUPLICATE KEY, in one
        transaction (or in the caller's)."""
        with self.begin(con) if transaction else contextlib.nullcontext():
            super().upsert(con, load)

    def load_new(self, con: Any, load: _Load, *, replacing: bool) -> None:
        # DDL commits implicitly in MySQL: load a staging table, then one atomic RENAME
        stage = self.staging_name(load.table)
        self.hold(con, stage)
        staged = self.qualified(stage)
        with con.cursor() as cur:
            cur.execute(self.create_sql(staged, load.frame, load.key, not_null=load.not_null))
        try:
            with self.begin(con):
                self.count_check(self.load(con, staged, load.frame, load.table), load, "replace")
            self.swap_in(con, stage, load.table, replacing=replacing, key=load.key)
        except BaseException:
            con.rollback()
            with con.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {staged}")
            raise

    def swap_in(
        self, con: Any, staging: str, table: str, *, replacing: bool, key: Sequence[str] | None
    ) -> None:
        """One atomic RENAME (the old table, renamed to a locked staging name, is dropped)."""
        qualified, staged = self.qualified(table), self.qualified(staging)
        with con.cursor() as cur:
            if not replacing:
                cur.execute(f"RENAME TABLE {staged} TO {qualified}")
                return
            old = self.staging_name(table)
            self.hold(con, old)
            cur.execute(
                f"RENAME TABLE {qualified} TO {self.qualified(old)}, {staged} TO {qualified}"
            )
            cur.execute(f"DROP TABLE {self.qualified(old)}")

    staging_supported = True

    def dml_transaction(self, con: Any) -> Any:
        return self.begin(con)

    def release(self, con: Any, name: str) -> None:
        self.unlock_all(con)

    def store_in_transaction(self, con: Any, load: _Load) -> str:
        """A store inside :meth:`RelationalDBStorage.transaction`: no DDL on ``con`` (MySQL
        commits DDL implicitly, which would end the caller's transaction)."""
        table, frame = load.table, load.frame
        existing = self.columns(con, table)
        self.fail_if_exists(existing, load.if_exists, table)
        if existing is None:
            # created empty on another connection, then filled inside the transaction
            with self.connection() as other, other.cursor() as cur:
                cur.execute(
                    self.create_sql(
                        self.qualified(table), frame, load.key, not_null=load.not_null
                    ).replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)
                )
            existing = list(frame.columns)
            action = "created"
        elif load.if_exists == "replace":
            if set(existing) != set(frame.columns):
                raise UnsupportedOperationError(
                    f"replace of table {self.display(table)!r} with other columns inside a "
                    "transaction: MySQL/MariaDB would commit the transaction at the DDL",
                    component=self.label,
                    hint="replace outside the transaction, or keep the table's columns",
                )
            with con.cursor() as cur:
                cur.execute(f"DELETE FROM {self.qualified(table)}")  # noqa: S608
            action = "replaced"
        else:
            new = [c for c in frame.columns if c not in existing]
            if new:
                raise new_columns_error(new, self.display(table), component=self.label)
            action = "appended" if load.if_exists == "append" else "upserted"
        if load.if_exists == "upsert" and action == "upserted":
            assert load.key is not None
            self.require_unique_key(con, table, load.key)
            self.upsert(con, load, transaction=False)
            return action
        self.count_check(self.load(con, self.qualified(table), frame, table), load, action)
        return action


# -- SQLite -------------------------------------------------------------------------------------


class _SQLiteBackend(_Backend):
    kind = "sqlite"

    def __init__(self, owner: RelationalDBStorage) -> None:
        super().__init__(owner)
        self._memory: Any = None
        # ":memory:" is one database per connection, so every thread shares the one kept
        # connection: each use holds it (a store, a read, a whole transaction()); without this
        # one thread's BEGIN ran inside the other's ("cannot start a transaction within a
        # transaction") and reads saw the other thread's uncommitted staging tables.
        self._memory_lock = threading.RLock()
        self._file_lock = database_file_lock(self.path)

    @property
    def path(self) -> str:
        return self.target.path

    def close(self) -> None:
        with self._memory_lock:
            if self._memory is not None:
                self._memory.close()
                self._memory = None

    @contextmanager
    def connection(self) -> Iterator[Any]:
        if self.path == ":memory:":
            with self._memory_lock:
                if self._memory is None:
                    self._memory = connect(self.target, classes=STORAGE, component=self.label)
                yield self._memory
            return
        with self._file_lock, super().connection() as con:
            yield con

    @contextmanager
    def begin(self, con: Any) -> Iterator[None]:
        con.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def read(self, query: str, params: dict[str, Any]) -> Any:
        if self.path == ":memory:":
            with self.connection() as con:
                return read_arrow(
                    self.target,
                    query,
                    params,
                    classes=STORAGE,
                    component=self.label,
                    connection=con,
                )
        return super().read(query, params)  # read_arrow holds the file's database_file_lock

    def columns(self, con: Any, table: str) -> list[str] | None:
        rows = con.execute("SELECT name FROM pragma_table_info(?) ORDER BY cid", [table]).fetchall()
        return [r[0] for r in rows] or None

    def tables(self, con: Any) -> list[str]:
        rows = con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        ).fetchall()
        return [r[0] for r in rows]

    def unique_keys(self, con: Any, table: str) -> list[set[str]]:
        keys = []
        pk = [
            r[0]
            for r in con.execute(
                "SELECT name FROM pragma_table_info(?) WHERE pk > 0", [table]
            ).fetchall()
        ]
        if pk:
            keys.append(set(pk))
        for _, index, unique, _, partial in con.execute(
            'SELECT seq, name, "unique", origin, partial FROM pragma_index_list(?)', [table]
        ).fetchall():
            if unique and not partial:
                cols = con.execute("SELECT name FROM pragma_index_info(?)", [index]).fetchall()
                if cols and all(c[0] is not None for c in cols):
                    keys.append({c[0] for c in cols})
        return keys

    def temp_table_keyword(self) -> str:
        return "TEMP TABLE"

    def drop_temp_sql(self, stage: str) -> str:
        return f"DROP TABLE IF EXISTS temp.{stage}"

    def bulk_load(self, con: Any, qualified: str, frame: pl.DataFrame, table: str) -> int:
        data = _prepare(frame, "sqlite", self.label)
        cols = ", ".join(self.q(c) for c in data.columns)
        marks = ", ".join(["?"] * data.width)
        sql = f"INSERT INTO {qualified} ({cols}) VALUES ({marks})"  # noqa: S608
        step = self.cfg.batch_size
        stored = 0
        for offset in range(0, data.height, step):
            cur = con.executemany(sql, data.slice(offset, step).iter_rows())
            stored += cur.rowcount
        return stored

    def store(self, load: _Load) -> str:
        import sqlite3

        con_cm = contextlib.nullcontext(load.tx.connection) if load.tx else self.connection()
        with con_cm as con:
            try:
                with self.savepoint(con) if load.tx else self.begin(con):
                    return self.store_plan(con, load)
            except sqlite3.IntegrityError as exc:
                error = self.integrity_error(exc, load.table)
                sample = self._offending_row(con, load.frame, load.table, str(exc))
                if sample is not None:
                    error = StorageError(
                        f"{error.detail} (offending row: {sample})",
                        component=self.label,
                        hint=error.hint,
                    )
                raise error from None
            except sqlite3.Error as exc:
                raise self.load_error(exc, load.table) from None

    def swap_in(
        self, con: Any, staging: str, table: str, *, replacing: bool, key: Sequence[str] | None
    ) -> None:
        if replacing:
            con.execute(f"DROP TABLE {self.qualified(table)}")
        con.execute(f"ALTER TABLE {self.qualified(staging)} RENAME TO {self.q(table)}")

    def _offending_row(
        self, con: Any, frame: pl.DataFrame, table: str, message: str
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


# -- any other SQLAlchemy dialect (untested here) -------------------------------------------------


class _SQLAlchemyBackend(_Backend):
    """Generic path: SQLAlchemy Core DDL and executemany inserts in one transaction."""

    kind = "sqlalchemy"

    def __init__(self, owner: RelationalDBStorage) -> None:
        super().__init__(owner)
        self._engine: Any = None

    def engine(self) -> Any:
        sqlalchemy = import_optional("sqlalchemy", extra="sql", feature="SQLAlchemy URLs")
        if self._engine is None:
            self._engine = sqlalchemy.create_engine(
                self.target.sqlalchemy_url(), **(self.cfg.connect_args or {})
            )
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
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise translate_db_error(
                exc,
                classes=STORAGE,
                what=self.target.label,
                where=self.where(),
                component=self.label,
                connecting=True,
            ) from None
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def begin(self, con: Any) -> Iterator[None]:
        with con.begin():
            yield

    def execute(self, con: Any, sql: str, params: Any = None) -> int:
        sqlalchemy = import_optional("sqlalchemy", extra="sql")
        values = check_params(params, component=self.label)
        result = con.execute(sqlalchemy.text(sql), values)
        return int(result.rowcount if result.rowcount is not None else -1)

    def columns(self, con: Any, table: str) -> list[str] | None:
        sqlalchemy = import_optional("sqlalchemy", extra="sql")
        inspector = sqlalchemy.inspect(con)
        if not inspector.has_table(table, schema=self.schema):
            return None
        return [c["name"] for c in inspector.get_columns(table, schema=self.schema)]

    def tables(self, con: Any) -> list[str]:
        sqlalchemy = import_optional("sqlalchemy", extra="sql")
        return sorted(sqlalchemy.inspect(con).get_table_names(schema=self.schema))

    def qualified(self, table: str) -> str:
        preparer = self.engine().dialect.identifier_preparer
        quoted = preparer.quote_identifier(table)
        return f"{preparer.quote_identifier(self.schema)}.{quoted}" if self.schema else quoted

    def q(self, name: str) -> str:
        return str(self.engine().dialect.identifier_preparer.quote_identifier(name))

    def store(self, load: _Load) -> str:
        sqlalchemy = import_optional("sqlalchemy", extra="sql")
        table, if_exists = load.table, load.if_exists
        if if_exists == "upsert":
            raise UnsupportedOperationError(
                "upsert is available for PostgreSQL, MySQL/MariaDB and SQLite only",
                component=self.label,
                hint="use if_exists='append' or 'replace' with this dialect",
            )
        if load.tx is not None:
            raise UnsupportedOperationError(
                "transaction() is available for PostgreSQL, MySQL/MariaDB and SQLite only",
                component=self.label,
                hint="store outside the transaction with this dialect",
            )
        data = _prepare(load.frame, "generic", self.label)
        cols = ", ".join(self.q(c) for c in data.columns)
        names = [f"p{i}" for i in range(data.width)]
        insert = sqlalchemy.text(
            f"INSERT INTO {self.qualified(table)} ({cols}) VALUES ({', '.join(':' + n for n in names)})"  # noqa: S608
        )
        stored = 0
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
                            sqlalchemy.text(self.create_sql(self.qualified(table), data, load.key))
                        )
                    else:
                        self.evolve(con, table, existing, data)
                    for offset in range(0, data.height, self.cfg.batch_size):
                        chunk = data.slice(offset, self.cfg.batch_size)
                        result = con.execute(
                            insert,
                            [dict(zip(names, row, strict=True)) for row in chunk.iter_rows()],
                        )
                        stored = (
                            -1 if stored < 0 or result.rowcount < 0 else stored + result.rowcount
                        )
                    self.count_check(stored, load, if_exists)
            except sqlalchemy.exc.IntegrityError as exc:
                raise self.integrity_error(exc, table) from None
        return "created" if if_exists != "append" else "appended"

    def read(self, query: str, params: dict[str, Any]) -> Any:
        return read_arrow(
            self.target, query, params, path="sqlalchemy", classes=STORAGE, component=self.label
        )


def _make_backend(owner: RelationalDBStorage) -> _Backend:
    kind = owner.target.dialect
    backends: dict[str, type[_Backend]] = {
        "postgresql": _PostgresBackend,
        "mysql": _MySQLBackend,
        "sqlite": _SQLiteBackend,
    }
    return backends.get(kind, _SQLAlchemyBackend)(owner)
