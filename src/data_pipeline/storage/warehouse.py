"""DataWarehouseStorage: DuckDB (embedded, the default) and Delta Lake tables.

DuckDB loads go straight from Arrow: the frame is registered as an Arrow view and copied with
``CREATE TABLE ... AS`` / ``INSERT ... BY NAME`` / ``MERGE INTO`` inside one transaction, so a
load lands whole or not at all. Delta Lake tables (``engine: delta``) are written with
``deltalake``; every Delta commit is atomic by design.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from data_pipeline.core.config import ConfigModel
from data_pipeline.core.deps import import_optional
from data_pipeline.core.errors import (
    ConfigError,
    InputNotFoundError,
    StorageConnectionError,
    StorageSchemaError,
)
from data_pipeline.core.sql.connect import database_file_lock
from data_pipeline.core.sql.params import bind
from data_pipeline.core.sql.read import fix_arrow
from data_pipeline.storage._common import (
    ColumnList,
    already_exists_error,
    as_arrow,
    check_identifier,
    check_unique_key,
    constraint_error,
    duplicate_key_error,
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
from data_pipeline.storage._values import Holds, check_holdable
from data_pipeline.storage.base import IfExists, StorageSystem, StoreResult

if TYPE_CHECKING:
    import pyarrow as pa

    from data_pipeline.core.checkpoint import Checkpoint

__all__ = ["DataWarehouseStorage", "DataWarehouseStorageConfig"]

# Delta Lake: timestamps in microseconds, no time of day, no durations, no unsigned integers.
DELTA_HOLDS = Holds("Delta Lake tables", time_unit="us", time=False, duration=False, uint64=False)


class _DuckDatabase:
    """One DuckDB database of this process and what every storage object on it shares: the
    connection (open while calls run or a ``with`` block holds it; ``:memory:``: until
    ``close()``), and the write lock (a file's :func:`database_file_lock`), held by each write
    transaction so that two writers take turns instead of one failing with DuckDB's
    "write-write conflict"."""

    _files: ClassVar[dict[tuple[str, bool, str], _DuckDatabase]] = {}
    _files_guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, memory: bool, write: threading.RLock) -> None:
        self.memory = memory
        self.write = write
        self._lock = threading.Lock()  # guards con, users, holds
        self._con: Any = None
        self._users = 0  # calls running
        self._holds = 0  # `with` blocks open

    @classmethod
    def of(cls, settings: DataWarehouseStorageConfig) -> _DuckDatabase:
        """The database of ``settings``: its own for ``:memory:`` (one per storage object), the
        process's one for a file opened with the same options."""
        database = settings.database
        if settings.engine != "duckdb" or database == ":memory:":
            return cls(memory=True, write=threading.RLock())
        key = (
            os.path.realpath(database),
            settings.read_only,
            repr(sorted((settings.duckdb_config or {}).items())),
        )
        with cls._files_guard:
            if key not in cls._files:
                cls._files[key] = cls(memory=False, write=database_file_lock(database))
            return cls._files[key]

    @contextmanager
    def cursor(self, open_connection: Callable[[], Any]) -> Iterator[Any]:
        """A cursor of the shared connection (opened by ``open_connection`` when none is)."""
        with self._lock:
            if self._con is None:
                self._con = open_connection()
            self._users += 1
            try:
                cursor = self._con.cursor()
            except BaseException:
                self._release()
                raise
        try:
            yield cursor
        finally:
            cursor.close()
            with self._lock:
                self._release()

    def _release(self) -> None:
        """One call less; the last call on a file with no `with` open closes the connection."""
        self._users -= 1
        if self._users == 0 and self._holds == 0 and not self.memory:
            self._close()

    def _close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def hold(self) -> None:
        with self._lock:
            self._holds += 1

    def release_hold(self, held: bool) -> None:
        """A ``with`` block ends (``held``) or ``close()``: a file closes when nothing runs and
        no block is open; ``:memory:`` closes (its data is lost) when nothing runs."""
        with self._lock:
            if held:
                self._holds -= 1
            if self._users == 0 and (self.memory or self._holds == 0):
                self._close()


class DataWarehouseStorageConfig(ConfigModel):
    """Config of :class:`DataWarehouseStorage`."""

    engine: Literal["duckdb", "delta", "sqlalchemy"] = "duckdb"
    """``duckdb``: an embedded DuckDB database (``database``); ``delta``: Delta Lake tables
    under ``path`` (needs the ``delta`` extra); ``sqlalchemy``: another warehouse through a
    SQLAlchemy ``url``, loaded by RelationalDBStorage (its fast paths for PostgreSQL, MySQL and
    SQLite URLs, the generic SQLAlchemy path for others; a Spark frame on a PostgreSQL or
    MySQL/MariaDB URL is written by the executors through its JDBC staging table)."""
    database: str = ":memory:"
    """DuckDB only: the database file (its folder is created); ``:memory:`` keeps the data
    in this object until ``close()``. A file is opened per call (so other processes can use it
    between calls) or held for a ``with`` block."""
    url: str | None = None
    """``engine: sqlalchemy`` only (and required there): the SQLAlchemy URL of the
    warehouse (``snowflake://user:pw@account/db``); its password is kept secret."""
    schema_name: str | None = Field(default=None, alias="schema")
    """The schema holding the tables (DuckDB: created when missing; default ``main``; the
    ``sqlalchemy`` engine: the database's schema). Delta tables ignore it."""
    path: str | None = None
    """``engine: delta`` only (and required there): the directory or URL (``s3://bucket/lake``)
    holding the tables; table ``sales`` is ``<path>/sales``."""
    default_table: str | None = None
    """The table ``store()`` writes and ``retrieve()`` reads when called without one (and
    without a query); absent: a table must be named on each call."""
    default_if_exists: IfExists = "append"
    """What ``store()`` does when the table exists and the call gives no ``if_exists``:
    ``fail``, ``replace``, ``append`` or ``upsert`` (merge on ``primary_key``)."""
    primary_key: ColumnList = None
    """Column(s) identifying a row (one name or a list): ``upsert`` merges on them (DuckDB
    ``MERGE INTO``, Delta MERGE), data repeating a key is refused, and a DuckDB table created
    by ``store()`` gets them as its PRIMARY KEY (a UNIQUE key when an upsert creates it).
    ``store(primary_key=...)`` overrides it for one call."""
    schema_evolution: bool = False
    """``true``: columns of the data the existing table lacks are added on ``append`` (and
    on ``upsert`` for DuckDB and SQLAlchemy); ``false``: such data is refused naming them."""
    partition_by: ColumnList = None
    """``engine: delta`` only: the partition column(s) of a table created or replaced by
    ``store()``; appends and upserts keep the table's partitioning."""
    storage_options: dict[str, str] | None = None
    """``engine: delta`` only: options of the Delta object store for a remote ``path``
    (deltalake's keys, e.g. ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_ENDPOINT_URL``, ``AWS_REGION``); absent: the environment's credentials."""
    read_only: bool = False
    """DuckDB only: open the file read-only, so several processes can read it at once;
    ``store()`` then fails. The file must exist."""
    duckdb_config: dict[str, Any] | None = None
    """DuckDB only: configuration options given to ``duckdb.connect`` (``{"threads": 4,
    "memory_limit": "2GB"}``); an unknown option fails when the database is opened."""

    @model_validator(mode="after")
    def _check_engine(self) -> DataWarehouseStorageConfig:
        if self.engine == "delta" and not self.path:
            raise ValueError(
                "engine 'delta' needs 'path' (a directory or URL holding the Delta tables)"
            )
        if self.engine == "sqlalchemy" and not self.url:
            raise ValueError(
                "engine 'sqlalchemy' needs 'url' (e.g. snowflake://user:pw@account/db)"
            )
        if self.engine != "sqlalchemy" and self.url:
            raise ValueError("url applies to engine 'sqlalchemy'")
        if self.engine == "duckdb" and self.partition_by:
            raise ValueError(
                "partition_by applies to engine 'delta' (DuckDB tables are not partitioned)"
            )
        return self


class DataWarehouseStorage(StorageSystem):
    """Storage system for data warehouses: embedded DuckDB by default, or Delta Lake tables.

    Other warehouses: ``engine: sqlalchemy`` with a SQLAlchemy ``url`` (Snowflake, BigQuery,
    Redshift, ... where a dialect is installed); loads go through RelationalDBStorage's generic
    SQLAlchemy path (PostgreSQL, MySQL and SQLite URLs through its fast paths). Only those three
    are tested here. With a Spark frame and a PostgreSQL or MySQL/MariaDB URL the executors
    write the rows (RelationalDBStorage's ``df.write.jdbc`` into a staging table, then one
    transaction on the driver); other dialects collect the frame on the driver.

    DuckDB: ``database`` is a file path (``":memory:"`` keeps the data in this object only).
    ``store(data, "sales", if_exists=...)``: ``fail``, ``replace`` (atomic, in one transaction),
    ``append`` (``INSERT ... BY NAME``) or ``upsert`` (``MERGE INTO`` on ``primary_key``).
    Tables are created from the frame's Arrow schema, with a PRIMARY KEY when ``primary_key`` is
    set. ``retrieve("sales")`` or ``retrieve(query="SELECT ... WHERE x > :x", params={"x": 1})``.

    Delta Lake (``engine: delta``): each table is the directory ``<path>/<table>``; ``upsert``
    is a Delta MERGE on ``primary_key``; ``partition_by`` partitions new tables. A Spark frame
    on a local or shared ``path`` is written by the executors and committed once by this
    process (docs/spark.md).

    Raises:
        ConfigError: an invalid config (``delta`` without ``path``, ``url`` outside ``sqlalchemy``,
            ``partition_by`` with DuckDB, ...), ``upsert`` without a primary key, a table name that
            leaves ``path``, or an unknown ``store()`` option.
        DependencyError: deltalake (``engine: delta``) or the SQLAlchemy dialect is not installed.
        StorageConnectionError: the DuckDB file cannot be opened (e.g. another process holds it for
            writing).
        StorageSchemaError: new columns without ``schema_evolution``, a type the table cannot hold,
            or a key column missing from the data.
        InputNotFoundError: ``retrieve()`` of a table that does not exist (the tables are listed).
        UnsupportedOperationError: ``transaction()`` on an engine that has none.
        StorageError: a primary key repeated in the data, a constraint violation, or any other
            failure; the table is left unchanged.

    Example:
        >>> warehouse = DataWarehouseStorage(name="warehouse", config={
        ...     "database": "data/warehouse.duckdb",
        ...     "schema": "analytics",
        ...     "default_table": "sales",
        ...     "default_if_exists": "upsert",
        ...     "primary_key": ["order_id"],
        ... })
    """

    config_model = DataWarehouseStorageConfig
    accepts_primary_key = True
    settings: DataWarehouseStorageConfig

    def __init__(self, name: str, config: Any = None) -> None:
        super().__init__(name, config)
        # A DuckDB connection is not for two threads at once: every call runs on its own
        # cursor (a connection of its own to the same database) of one shared connection, the
        # one of this database in the process (_DuckDatabase, shared by every storage object on
        # the file). On a file it is opened by the first call and closed by the last one still
        # running (or at the end of the last `with`), so between calls the file lock is
        # released; threads (or storage objects) opening and closing their own connections to
        # one file raced in DuckDB's instance cache ("Table Function with name
        # python_arrow_scan does not exist").
        self._db = _DuckDatabase.of(self.settings)
        self._held = False
        self._sql: Any = None
        self._local = threading.local()  # .tx: the open transaction of this thread
        if self.settings.engine == "sqlalchemy":
            from data_pipeline.storage.relational import RelationalDBStorage

            sql_config: dict[str, Any] = {
                "url": self.settings.url,
                "primary_key": self.settings.primary_key,
                "schema_evolution": self.settings.schema_evolution,
            }
            if self.settings.schema_name:
                sql_config["schema"] = self.settings.schema_name
            self._sql = RelationalDBStorage(name=name, config=sql_config)

    # -- DuckDB connection ----------------------------------------------------------------

    @property
    def _schema(self) -> str:
        return self.settings.schema_name or "main"

    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A DuckDB cursor of this call: of the kept connection for ``:memory:`` (and inside
        ``with``); for a file, of a connection open while calls run and closed after the last.

        Closing after the calls releases the file lock, so other processes can open the file.
        """
        tx = self._open_tx()
        if tx is not None:  # inside transaction(): its connection
            yield tx.con
            return
        with self._db.cursor(self._open) as cursor:
            yield cursor

    def _open(self) -> Any:
        import duckdb

        database = self.settings.database
        if database == ":memory:":
            return duckdb.connect(":memory:", config=dict(self.settings.duckdb_config or {}))
        if not self.settings.read_only:
            os.makedirs(os.path.dirname(os.path.abspath(database)), exist_ok=True)
        try:
            return duckdb.connect(
                database,
                read_only=self.settings.read_only,
                config=dict(self.settings.duckdb_config or {}),
            )
        except duckdb.Error as exc:
            raise StorageConnectionError(
                f"cannot open DuckDB database {database!r}: {exc}",
                component=self.label,
                hint="check the path; a DuckDB file can be open for writing in one process only",
            ) from exc

    @contextmanager
    def _writing(self, joined: bool) -> Iterator[None]:
        """Hold the database's write lock unless the caller's transaction() holds it."""
        if joined:
            yield
            return
        with self._db.write:
            yield

    def close(self) -> None:
        """Close the kept connection (in memory: its data is lost)."""
        held, self._held = self._held, False
        self._db.release_hold(held)

    def __enter__(self) -> DataWarehouseStorage:
        """Inside a ``with`` block a DuckDB file stays open (one connection for every call;
        the file is locked for other processes until the block ends), e.g. for a stream job
        that stores every batch. Outside, each call opens and closes it."""
        if not self._held:
            self._held = True
            self._db.hold()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.settings.database != ":memory:":
            self.close()

    # -- store ------------------------------------------------------------------------------

    def _store(self, data: Any, target: str, if_exists: str, **options: Any) -> StoreResult:
        reject_unknown_options(
            options,
            ("primary_key", "not_null"),
            hint="store() accepts table, if_exists, primary_key, not_null, schema",
            component=self.label,
        )
        not_null = list(options.get("not_null") or [])
        key = primary_key(options, self.settings.primary_key)
        check_identifier(target, component=self.label)
        require_upsert_key(if_exists, key, component=self.label)
        if self._spark_writes(data):
            if key:
                require_key_columns(key, data.columns, what=repr(target), component=self.label)
            if self._sql is not None:  # PostgreSQL, MySQL/MariaDB: the executors' JDBC staging
                return self._sql._store(  # type: ignore[no-any-return]
                    data, target, if_exists, primary_key=key, not_null=not_null
                )
            if self.settings.engine == "delta":  # the executors write the files
                return self._store_delta_spark(data, target, if_exists, key)
            from data_pipeline._spark import arrow_stream  # DuckDB: a partition at a time

            return self._store_duckdb(arrow_stream(data), target, if_exists, key, not_null)
        table = as_arrow(data)
        if key:
            require_key_columns(key, table.column_names, what=repr(target), component=self.label)
        if self._sql is not None:
            return self._sql._store(table, target, if_exists, primary_key=key, not_null=not_null)  # type: ignore[no-any-return]
        if self.settings.engine == "delta":
            return self._store_delta(table, target, if_exists, key)
        return self._store_duckdb(table, target, if_exists, key, not_null)

    def writes_spark(self, if_exists: str | None = None) -> bool:
        """DuckDB takes a Spark frame a partition at a time; ``engine: sqlalchemy`` on a
        PostgreSQL or MySQL/MariaDB URL has RelationalDBStorage write it from the executors
        (``df.write.jdbc`` into a staging table, merged in one transaction); Delta on a local or
        shared path, outside a transaction(): the executors write the files, this process
        commits them (upsert: the partitions stream into a MERGE here). Other SQLAlchemy
        dialects and Delta on object stores collect it on the driver."""
        if self._sql is not None:
            return bool(self._sql.writes_spark(if_exists))
        if self.settings.engine == "delta":
            return self.supports_transactions() and self._open_tx() is None
        return self.settings.engine == "duckdb"

    def _store_duckdb(
        self,
        table: pa.Table | pa.RecordBatchReader,
        target: str,
        if_exists: str,
        key: list[str] | None,
        not_null: list[str],
    ) -> StoreResult:
        import duckdb
        import pyarrow as pa

        qualified = quote_qualified(target, self.settings.schema_name)
        view = f"__dp_src_{uuid.uuid4().hex}"
        src = quote_ident(view)
        joined = self._open_tx() is not None  # the caller's transaction() commits
        streamed = isinstance(table, pa.RecordBatchReader)
        names = table.schema.names
        with self._writing(joined), self.connect() as con:
            con.register(view, table)
            try:
                if not joined:
                    con.execute("BEGIN TRANSACTION")
                try:
                    if streamed:  # read once, into a temporary table the statements below scan
                        rows_src = quote_ident(f"{view}_t")
                        con.execute(f"CREATE TEMP TABLE {rows_src} AS SELECT * FROM {src}")  # noqa: S608
                        src = rows_src
                    if self.settings.schema_name:
                        con.execute(
                            f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.settings.schema_name)}"
                        )
                    existing = self._columns(con, target)
                    if existing is not None and if_exists == "fail":
                        raise already_exists_error(
                            f"table {self._display(target)!r}", component=self.label
                        )
                    if key:
                        self._check_unique(con, src, key, target)
                    if existing is None or if_exists == "replace":
                        self._create(
                            con,
                            qualified,
                            src,
                            key,
                            not_null,
                            replace=existing is not None,
                            nullable_key=if_exists == "upsert",
                        )
                        action = "created" if existing is None else "replaced"
                    else:
                        columns = self._evolve(con, qualified, src, existing, names, target)
                        if if_exists == "append":
                            con.execute(f"INSERT INTO {qualified} BY NAME SELECT * FROM {src}")  # noqa: S608
                            action = "appended"
                        else:
                            assert key is not None
                            self._merge(con, qualified, src, key, columns, target)
                            action = "upserted"
                    if streamed:
                        count = con.execute(f"SELECT count(*) FROM {src}").fetchone()  # noqa: S608
                        rows = int(count[0]) if count else 0
                        con.execute(f"DROP TABLE {src}")
                    else:
                        rows = table.num_rows
                    if not joined:
                        con.execute("COMMIT")
                except BaseException:
                    if not joined:
                        con.execute("ROLLBACK")
                    raise
            except duckdb.ConstraintException as exc:
                raise constraint_error(
                    self._display(target), str(exc), component=self.label
                ) from exc
            except (duckdb.ConversionException, duckdb.BinderException) as exc:
                raise misfit_error(self._display(target), str(exc), component=self.label) from exc
            finally:
                con.unregister(view)
        return StoreResult(
            target=self._display(target),
            rows=rows,
            bytes=0 if streamed else int(table.nbytes),
            details={
                "action": action,
                "database": self.settings.database,
                "engine": "duckdb, from Spark a partition at a time" if streamed else "duckdb",
            },
        )

    def _display(self, target: str) -> str:
        return f"{self.settings.schema_name}.{target}" if self.settings.schema_name else target

    def _columns(self, con: Any, target: str) -> list[str] | None:
        rows = con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [self._schema, target],
        ).fetchall()
        return [r[0] for r in rows] or None

    def _create(
        self,
        con: Any,
        qualified: str,
        src: str,
        key: list[str] | None,
        not_null: list[str],
        *,
        replace: bool,
        nullable_key: bool = False,
    ) -> None:
        """Create the table from the data; with a key, a PRIMARY KEY (a table made by an
        upsert: a UNIQUE key, whose columns may hold nulls, e.g. a group key of a stream's
        windows; the upsert matches nulls as equal)."""
        verb = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE"
        if not key and not not_null:
            con.execute(f"{verb} {qualified} AS SELECT * FROM {src}")  # noqa: S608
            return
        described = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()  # noqa: S608
        required = set(not_null)
        columns = ", ".join(
            f"{quote_ident(name)} {ctype}" + (" NOT NULL" if name in required else "")
            for name, ctype, *_ in described
        )
        kind = "UNIQUE" if nullable_key else "PRIMARY KEY"
        pk = f", {kind} ({', '.join(quote_ident(k) for k in key)})" if key else ""
        con.execute(f"{verb} {qualified} ({columns}{pk})")
        con.execute(f"INSERT INTO {qualified} BY NAME SELECT * FROM {src}")  # noqa: S608

    def _evolve(
        self,
        con: Any,
        qualified: str,
        src: str,
        existing: list[str],
        incoming: list[str],
        target: str,
    ) -> list[str]:
        """Add the data's new columns when schema_evolution allows; otherwise name them in an error."""
        new = [c for c in incoming if c not in existing]
        if not new:
            return existing
        if not self.settings.schema_evolution:
            raise new_columns_error(new, self._display(target), component=self.label)
        described = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()  # noqa: S608
        types = {name: ctype for name, ctype, *_ in described}
        for column in new:
            con.execute(f"ALTER TABLE {qualified} ADD COLUMN {quote_ident(column)} {types[column]}")
        return existing + new

    def _check_unique(self, con: Any, src: str, key: list[str], target: str) -> None:
        cols = ", ".join(quote_ident(k) for k in key)
        dup = con.execute(
            f"SELECT {cols}, COUNT(*) AS n FROM {src} GROUP BY ALL HAVING COUNT(*) > 1 LIMIT 1"  # noqa: S608
        ).fetchone()
        if dup is not None:
            sample = dict(zip(key, dup[:-1], strict=True))
            raise duplicate_key_error(sample, dup[-1], repr(self._display(target)), self.label)

    def _merge(
        self, con: Any, qualified: str, src: str, key: list[str], columns: list[str], target: str
    ) -> None:
        incoming = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]  # noqa: S608
        # null-safe: a null key value is one key, as in GROUP BY
        on = " AND ".join(
            f"t.{quote_ident(k)} IS NOT DISTINCT FROM s.{quote_ident(k)}" for k in key
        )
        updates = [c for c in incoming if c not in key]
        update_sql = ", ".join(f"{quote_ident(c)} = s.{quote_ident(c)}" for c in updates)
        insert_cols = ", ".join(quote_ident(c) for c in incoming)
        insert_vals = ", ".join(f"s.{quote_ident(c)}" for c in incoming)
        matched = f"WHEN MATCHED THEN UPDATE SET {update_sql} " if updates else ""
        con.execute(
            f"MERGE INTO {qualified} AS t USING {src} AS s ON ({on}) {matched}"  # noqa: S608
            f"WHEN NOT MATCHED THEN INSERT ({insert_cols}) VALUES ({insert_vals})"
        )

    # -- transactions and checkpoints -------------------------------------------------------

    def supports_transactions(self) -> bool:
        if self.settings.engine == "delta":
            path = self.settings.path or ""
            return "://" not in path or path.startswith("file://")
        return self.settings.engine == "duckdb"

    def _where(self) -> str:
        return repr(self.settings.path or self.settings.database)

    def _open_tx(self) -> Any:
        return getattr(self._local, "tx", None)

    def _checkpoints(self) -> str:
        assert self.settings.path is not None
        return os.path.join(self.settings.path, ".dp_checkpoints")

    def _delta_transaction(self) -> Iterator[Any]:
        """Delta tables: each store() stages its rows in a Parquet file; one manifest (with the
        checkpoint) renamed into ``<path>/.dp_checkpoints`` is the commit; then each staged
        write becomes a Delta commit carrying the checkpoint's name and batch as an
        application transaction, so a write applied before a crash is not applied twice."""
        from data_pipeline.core.checkpoint import StagedTransaction

        StagedTransaction.recover(self._checkpoints(), self._apply_staged)
        tx = StagedTransaction(self._checkpoints(), self._apply_staged)
        self._local.tx = tx
        try:
            yield tx
        except BaseException:
            self._local.tx = None
            for operation in tx.operations:
                with contextlib.suppress(OSError):
                    os.remove(operation["staged"])
            raise
        self._local.tx = None
        tx.commit()

    def recover_checkpoint(self, name: str) -> None:
        """Delta: finish the writes a committed manifest lists (a crash after the commit)."""
        from data_pipeline.core.checkpoint import StagedTransaction

        if self.settings.engine == "delta" and self.supports_transactions():
            StagedTransaction.recover(self._checkpoints(), self._apply_staged)

    @contextmanager
    def transaction(self) -> Iterator[_DuckTransaction]:
        """One DuckDB transaction: every ``store()`` of this thread inside the block joins it;
        it commits at the end of the block, or rolls back on an error. A stream job's
        checkpoint is written in it (``save_checkpoint``) into the state table
        ``_dp_checkpoints`` of the configured schema."""
        import duckdb

        from data_pipeline.core.errors import UnsupportedOperationError

        if not self.supports_transactions():
            raise UnsupportedOperationError(
                f"transactions of engine {self.settings.engine!r} on {self._where()} are not "
                "supported",
                component=self.label,
                hint="use engine 'duckdb', or delta on a local path; or keep the checkpoint in "
                "a folder",
            )
        if self._open_tx() is not None:
            raise ConfigError(
                "a transaction is already open on this storage",
                component=self.label,
                hint="do not nest transaction() blocks",
            )
        if self.settings.engine == "delta":
            yield from self._delta_transaction()
            return
        with self._writing(False), self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            tx = _DuckTransaction(self, con)
            self._local.tx = tx
            try:
                yield tx
                self._local.tx = None
                con.execute("COMMIT")
            except BaseException:
                self._local.tx = None
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise

    def _state_table(self) -> Any:
        from data_pipeline.core.checkpoint import STATE_TABLE, StateTable

        return StateTable(
            "duckdb", quote_qualified(STATE_TABLE, self.settings.schema_name), quote_ident
        )

    def load_checkpoint(self, name: str) -> Checkpoint | None:
        """The checkpoint ``name`` from the state table (None when there is none)."""
        from data_pipeline.core.checkpoint import STATE_TABLE, Checkpoint, Manifest

        if not self.supports_transactions():
            return None
        if self.settings.engine == "delta":
            self.recover_checkpoint(name)
            return Manifest(self._checkpoints(), name).load()
        with self.connect() as con:
            if self._columns(con, STATE_TABLE) is None:
                return None
            sql, values = bind(self._state_table().select_sql(), {"name": name}, "dollar_named")
            rows = con.execute(sql, values).fetchall()
        if not rows:
            return None
        row = rows[0]
        return Checkpoint.decode(bytes(row[0]), where=f"{self._display(STATE_TABLE)}[{name!r}]")

    # -- Delta Lake ---------------------------------------------------------------------------

    def _delta_uri(self, target: str) -> str:
        text = target.replace("\\", "/")
        parts = PurePosixPath(text).parts
        if not text or PurePosixPath(text).is_absolute() or ".." in parts or "://" in text:
            raise ConfigError(
                f"Delta table name {target!r} points outside path {self.settings.path!r}",
                component=self.label,
                hint="use a plain relative table name",
            )
        assert self.settings.path is not None
        return f"{self.settings.path.rstrip('/')}/{text}"

    def _delta_exists(self, uri: str) -> bool:
        deltalake = import_optional("deltalake", extra="delta", feature="Delta Lake tables")
        try:
            deltalake.DeltaTable(uri, storage_options=self.settings.storage_options)
        except deltalake.exceptions.TableNotFoundError:
            return False
        return True

    def _store_delta(
        self, table: pa.Table, target: str, if_exists: str, key: list[str] | None
    ) -> StoreResult:
        import polars as pl

        uri = self._delta_uri(target)
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        check_holdable(frame, DELTA_HOLDS, component=self.label)
        exists = self._delta_exists(uri)
        if exists and if_exists == "fail":
            raise already_exists_error(f"Delta table {uri!r}", component=self.label)
        if key:
            check_unique_key(frame, key, target, self.label)
        if exists and if_exists == "upsert":
            how, action = "merge", "upserted"
        elif exists and if_exists == "append":
            how, action = "append", "appended"
        else:
            how, action = "overwrite", ("replaced" if exists else "created")
        operation: dict[str, Any] = {"kind": "delta", "uri": uri, "how": how, "key": key}
        if how == "overwrite" and self.settings.partition_by:
            operation["partition_by"] = list(self.settings.partition_by)
        if how == "overwrite":
            operation["schema_mode"] = "overwrite"
        elif how == "append" and self.settings.schema_evolution:
            operation["schema_mode"] = "merge"
        tx = self._open_tx()
        if tx is not None:  # staged: written to the table after the transaction's commit
            operation["staged"] = self._stage_file(table)
            tx.stage(operation, uri)
            action = f"staged ({action})"
        else:
            self._apply_delta(operation, table)
        return StoreResult(
            target=uri,
            rows=table.num_rows,
            bytes=int(table.nbytes),
            details={"action": action, "engine": "delta"},
        )

    def _store_delta_spark(
        self, frame: Any, target: str, if_exists: str, key: list[str] | None
    ) -> StoreResult:
        """A Spark frame into a Delta table: every partition writes its Parquet files into the
        table's directory from its executor, then this process commits all of them in ONE
        Delta transaction (``append``; ``replace``: an overwrite in that same commit). Readers
        see the old version until that commit and the whole new data after it; a failed task
        fails the load before anything is committed (its files stay unreferenced, see
        docs/storage.md). ``upsert``: the partitions stream one at a time into deltalake's
        MERGE here (it needs the source where the merge runs)."""
        import polars as pl
        import pyarrow as pa

        from data_pipeline._spark import (
            arrow_schema,
            arrow_stream,
            check_unique_key_spark,
            delta_arrow_schema,
            spark_to_polars_schema,
            write_delta_files,
        )

        deltalake = import_optional("deltalake", extra="delta", feature="Delta Lake tables")
        uri = self._delta_uri(target)
        opts = self.settings.storage_options
        check_holdable(
            pl.DataFrame(schema=spark_to_polars_schema(frame)), DELTA_HOLDS, component=self.label
        )
        exists = self._delta_exists(uri)
        if exists and if_exists == "fail":
            raise already_exists_error(f"Delta table {uri!r}", component=self.label)
        if key:
            check_unique_key_spark(frame, key, target, self.label)
        if exists and if_exists == "upsert":
            operation = {"kind": "delta", "uri": uri, "how": "merge", "key": key}
            metrics = self._apply_delta(operation, arrow_stream(frame))
            rows = int(metrics["num_source_rows"])  # counted by deltalake's MERGE
            return StoreResult(
                target=uri,
                rows=rows,
                bytes=0,
                details={"action": "upserted", "engine": "delta, from Spark a partition at a time"},
            )
        incoming = delta_arrow_schema(arrow_schema(frame))
        table = deltalake.DeltaTable(uri, storage_options=opts) if exists else None
        if table is not None and if_exists == "append":
            current = pa.schema(table.schema().to_arrow())
            partition_by = list(table.metadata().partition_columns)
            new = [n for n in incoming.names if n not in current.names]
            missing = [n for n in current.names if n not in incoming.names]
            if (new or missing) and not self.settings.schema_evolution:
                raise StorageSchemaError(
                    f"the data does not fit Delta table {uri!r}: "
                    + "; ".join(
                        part
                        for part in (
                            f"new column(s) {', '.join(map(repr, new))}" if new else "",
                            f"missing column(s) {', '.join(map(repr, missing))}" if missing else "",
                        )
                        if part
                    ),
                    component=self.label,
                    hint="set schema_evolution: true to add new columns, or use "
                    "if_exists='replace'",
                )
            files = pa.schema([*current, *[incoming.field(n) for n in new]])
            how, action = "append", "appended"
        else:
            files = incoming
            partition_by = list(self.settings.partition_by or [])
            absent = [c for c in partition_by if c not in incoming.names]
            if absent:
                raise StorageSchemaError(
                    f"partition column(s) {', '.join(map(repr, absent))} are not in the data "
                    f"for Delta table {uri!r}",
                    component=self.label,
                    hint="add the column(s) to the data, or change partition_by",
                )
            how, action = "overwrite", ("replaced" if exists else "created")
        load = f"dp-load-{uuid.uuid4().hex}"
        try:
            written, rows = write_delta_files(
                frame, uri, files, partition_by, load=load, storage_options=opts
            )
        except BaseException:
            self._drop_load_dir(uri, load)  # best effort: no commit names these files
            raise
        adds = [
            deltalake.transaction.AddAction(
                path=f["path"],
                size=int(f["size"]),
                partition_values=json.loads(f["partition_values"]),
                modification_time=int(f["modification_time"]),
                data_change=True,
                stats=f["stats"],
            )
            for f in written
        ]
        self._commit_delta(uri, table, how, files, partition_by, adds)
        return StoreResult(
            target=uri,
            rows=rows,
            bytes=sum(int(f["size"]) for f in written),
            details={"action": action, "engine": "delta, files written by the Spark executors"},
        )

    def _commit_delta(
        self,
        uri: str,
        table: Any,
        how: str,
        schema: pa.Schema,
        partition_by: list[str],
        adds: list[Any],
    ) -> None:
        """ONE Delta commit of the files the executors wrote: a new table, an append to
        ``table``, or an overwrite (the same schema and partitioning: a write transaction that
        removes the old files; otherwise CREATE OR REPLACE with the new schema)."""
        deltalake = import_optional("deltalake", extra="delta", feature="Delta Lake tables")
        delta_schema = deltalake.Schema.from_arrow(schema)
        opts = self.settings.storage_options
        if table is None:
            deltalake.transaction.create_table_with_add_actions(
                uri,
                delta_schema,
                adds,
                mode="error",
                partition_by=partition_by,
                storage_options=opts,
            )
            return
        if how == "append":
            current = table.schema()
            added = [
                f for f in delta_schema.fields if f.name not in {c.name for c in current.fields}
            ]
            if added:  # schema_evolution: the columns first (a commit of their own)
                table.alter.add_columns(added)
                table = deltalake.DeltaTable(uri, storage_options=opts)
            table.create_write_transaction(adds, "append", delta_schema, partition_by)
            return
        same = list(table.metadata().partition_columns) == partition_by and [
            (f.name, str(f.type)) for f in table.schema().fields
        ] == [(f.name, str(f.type)) for f in delta_schema.fields]
        if same:
            table.create_write_transaction(adds, "overwrite", delta_schema, partition_by)
        else:
            deltalake.transaction.create_table_with_add_actions(
                uri,
                delta_schema,
                adds,
                mode="overwrite",
                partition_by=partition_by,
                storage_options=opts,
            )

    def _drop_load_dir(self, uri: str, load: str) -> None:
        """Remove a failed load's files (nothing references them); best effort."""
        import shutil

        local = uri[len("file://") :] if uri.startswith("file://") else uri
        shutil.rmtree(os.path.join(local, load), ignore_errors=True)

    def _stage_file(self, table: pa.Table) -> str:
        """The batch's rows in a Parquet file beside the tables (fsynced), for the commit."""
        import pyarrow.parquet as pq

        from data_pipeline.core.checkpoint import fsync_dir

        assert self.settings.path is not None
        folder = os.path.join(self.settings.path, ".dp_staging")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{uuid.uuid4().hex}.parquet")
        pq.write_table(table, path)
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
        fsync_dir(folder)
        return path

    def _apply_staged(self, operation: Any) -> None:
        """Apply a staged Delta write once: a table that recorded the transaction's version
        (Delta's application transactions) has it already."""
        import pyarrow.parquet as pq

        staged = str(operation["staged"])
        if not os.path.exists(staged):
            return  # applied, and its file removed
        self._apply_delta(operation, pq.read_table(staged))
        os.remove(staged)

    def _apply_delta(self, operation: Any, table: pa.Table | pa.RecordBatchReader) -> Any:
        """Write ``table`` as ``operation`` says; a MERGE returns deltalake's metrics."""
        deltalake = import_optional("deltalake", extra="delta", feature="Delta Lake tables")
        uri, how, opts = operation["uri"], operation["how"], self.settings.storage_options
        commit: Any = None
        txn = operation.get("txn")
        if txn is not None:
            if self._delta_exists(uri):
                done = deltalake.DeltaTable(uri, storage_options=opts).transaction_version(
                    txn["app_id"]
                )
                if done is not None and done >= txn["version"]:
                    return None  # this commit was applied before the process stopped
            commit = deltalake.CommitProperties(
                app_transactions=[deltalake.Transaction(txn["app_id"], txn["version"])]
            )
        if how == "merge":
            key = operation["key"]
            # null-safe: a null key value is one key, as in GROUP BY
            predicate = " AND ".join(
                f"t.{quote_ident(k, '`')} IS NOT DISTINCT FROM s.{quote_ident(k, '`')}" for k in key
            )
            return (
                deltalake.DeltaTable(uri, storage_options=opts)
                .merge(
                    source=table,
                    predicate=predicate,
                    source_alias="s",
                    target_alias="t",
                    commit_properties=commit,
                )
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute()
            )
        kwargs: dict[str, Any] = {}
        if operation.get("schema_mode"):
            kwargs["schema_mode"] = operation["schema_mode"]
        if operation.get("partition_by"):
            kwargs["partition_by"] = operation["partition_by"]
        try:
            deltalake.write_deltalake(
                uri, table, mode=how, storage_options=opts, commit_properties=commit, **kwargs
            )
        except deltalake.exceptions.SchemaMismatchError as exc:
            raise StorageSchemaError(
                f"the data does not fit Delta table {uri!r}: {exc}",
                component=self.label,
                hint="set schema_evolution: true to add new columns, or use if_exists='replace'",
            ) from exc
        return None

    # -- retrieve -----------------------------------------------------------------------------

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
        if self._sql is not None:
            return self._sql._retrieve(target, query=query, params=params)
        if self.settings.engine == "delta":
            return self._retrieve_delta(target, query, params)
        import duckdb

        with self.connect() as con:
            if query is None:
                assert target is not None
                if self._columns(con, target) is None:
                    raise self._not_found(con, target)
                sql = f"SELECT * FROM {quote_qualified(target, self.settings.schema_name)}"  # noqa: S608
                return fix_arrow(con.sql(sql).to_arrow_table())
            text, values = bind(query, params, "dollar_named", component=self.label)
            try:
                return fix_arrow(con.sql(text, params=values or None).to_arrow_table())
            except duckdb.CatalogException as exc:
                raise InputNotFoundError(
                    f"query refers to a missing table or column: {exc}",
                    component=self.label,
                    hint=f"tables in the database: {', '.join(self.list_tables(con)) or 'none'}",
                ) from exc

    def _not_found(self, con: Any, target: str) -> InputNotFoundError:
        return not_found_error(
            f"table {self._display(target)!r} does not exist in {self.settings.database!r}",
            self.list_tables(con),
            kind="tables",
            empty="the database has no tables yet",
            component=self.label,
        )

    def list_tables(self, con: Any = None) -> list[str]:
        """Tables in the configured schema (Delta: table directories under ``path``)."""
        if self._sql is not None:
            return self._sql.list_tables()  # type: ignore[no-any-return]
        if self.settings.engine == "delta":
            assert self.settings.path is not None
            path = self.settings.path
            if "://" in path or not os.path.isdir(path):
                return []
            return sorted(
                d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d, "_delta_log"))
            )
        if con is None:
            with self.connect() as fresh:
                return self.list_tables(fresh)
        rows = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY table_name",
            [self._schema],
        ).fetchall()
        return [r[0] for r in rows]

    def _retrieve_delta(self, target: str | None, query: str | None, params: Any) -> Any:
        deltalake = import_optional("deltalake", extra="delta", feature="Delta Lake tables")
        if target is None:
            raise ConfigError(
                "a Delta query needs table=... (the table the query reads, by that name)",
                component=self.label,
                hint="retrieve('sales', query='SELECT * FROM sales WHERE x > :x', params={'x': 1})",
            )
        uri = self._delta_uri(target)
        if not self._delta_exists(uri):
            raise not_found_error(
                f"Delta table {uri!r} does not exist",
                self.list_tables(),
                kind="tables",
                empty="no Delta tables yet",
                component=self.label,
            )
        data = deltalake.DeltaTable(
            uri, storage_options=self.settings.storage_options
        ).to_pyarrow_table()
        if query is None:
            return data
        import duckdb

        text, values = bind(query, params, "dollar_named", component=self.label)
        con = duckdb.connect()
        try:
            con.register(target, data)
            return fix_arrow(con.sql(text, params=values or None).to_arrow_table())
        finally:
            con.close()


class _DuckTransaction:
    """The open transaction of :meth:`DataWarehouseStorage.transaction`."""

    def __init__(self, storage: DataWarehouseStorage, con: Any) -> None:
        self.storage = storage
        self.con = con

    def execute(self, sql: str, params: Any = None) -> Any:
        """Run one statement in the transaction, with ``:name`` parameters and a dict."""
        text, values = bind(sql, params, "dollar_named", component=self.storage.label)
        return self.con.execute(text, values or None)

    def save_checkpoint(self, checkpoint: Checkpoint, previous: int) -> None:
        """Write ``checkpoint`` to the state table in this transaction; fail when the row is at
        another batch than ``previous`` (another run committed meanwhile)."""
        from data_pipeline.core.checkpoint import STATE_TABLE, conflict_error

        table = self.storage._state_table()
        if self.storage.settings.schema_name:
            self.con.execute(
                f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.storage.settings.schema_name)}"
            )
        self.con.execute(table.create_sql())
        params = table.params(checkpoint, previous)
        where = self.storage._display(STATE_TABLE)
        found = self.execute(table.batch_sql(), {"name": checkpoint.name}).fetchall()
        if (found[0][0] if found else 0) != previous:
            raise conflict_error(checkpoint.name, previous, found[0][0] if found else 0, where)
        if not found:
            params.pop("previous")
            self.execute(table.insert_sql(), params).fetchall()
        else:
            changed = self.execute(table.update_sql(), params).fetchall()
            if not changed or changed[0][0] != 1:
                raise conflict_error(checkpoint.name, previous, "?", where)
