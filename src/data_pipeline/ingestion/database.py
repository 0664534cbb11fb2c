"""DatabaseSource: read a query or a table into Arrow, by the fastest sound path per database.

The connection keys, ``:name`` parameters, the read paths and the error translation are the
project's one SQL layer (:mod:`data_pipeline.core.sql`), shared with ``RelationalDBStorage``:

=============  ==============================================  ====================================
database       path (``engine: auto``)                         why
=============  ==============================================  ====================================
PostgreSQL     ADBC (``adbc-driver-postgresql``)               Arrow straight from the wire; bound
                                                               parameters; streamed batches
MySQL/MariaDB  ConnectorX without parameters, else PyMySQL     Rust client into Arrow; parameters
               typed from the result's column types            are always bound, never inlined
SQLite         ConnectorX without parameters, else sqlite3     as above
DuckDB         DuckDB's Arrow reader on the file, read-only    native, parameters bound
others         SQLAlchemy through ``polars.read_database``      every dialect SQLAlchemy knows
=============  ==============================================  ====================================

Parameters are always bound (``:name`` placeholders), identifiers are quoted by the dialect, and
connection errors name host, port and database, never the password.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from data_pipeline.core.config import ConfigModel
from data_pipeline.core.cursor import IncrementalCursor
from data_pipeline.core.errors import ConfigError, DataPipelineError
from data_pipeline.core.sql import SQLConnectionConfig, dialect, read_arrow, resolve
from data_pipeline.core.sql.read import MySQLColumns, choose_path, mysql_columns, tinyint_as_bool
from data_pipeline.core.sql_errors import INGESTION, translate_db_error
from data_pipeline.ingestion.base import DataSource, SourceConfig

if TYPE_CHECKING:
    from data_pipeline.core.sql import SQLTarget

__all__ = ["DatabaseConfig", "DatabaseSource"]


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
    """The JSON file keeping the last cursor value (and the keys delivered at it). Default
    ``.data_pipeline/state/<source name>.json``; a pipeline with a checkpoint keeps the state
    there instead. Delete it to read from ``initial_value`` again."""

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


class SparkJDBCConfig(ConfigModel):
    """How ``engine: spark`` reads the source over JDBC (the executors query the database)."""

    partition_column: str | None = None
    """A numeric, date or timestamp column: the read is split into ``num_partitions`` ranges
    of it, one query per executor task."""
    num_partitions: int = Field(default=4, ge=1)
    """How many ranges of ``partition_column`` the read is split into: that many queries, each
    one task with its own JDBC connection. Not used without ``partition_column`` (one query)."""
    lower_bound: Any = None
    """Lower end of the ranges (default: one ``MIN`` query); rows outside the bounds are still
    read, by the first and last partition."""
    upper_bound: Any = None
    """Upper end of the ranges (default: one ``MAX`` query)."""
    fetchsize: int | None = Field(default=None, ge=1)
    """Rows per round trip of the JDBC driver."""


class DatabaseConfig(SourceConfig, SQLConnectionConfig):
    """Config of :class:`DatabaseSource`: the connection keys of
    :class:`~data_pipeline.core.sql.SQLConnectionConfig` (``url`` or ``db_type``, ``host``,
    ``port``, ``database``, ``username``, ``password``, ``schema``, ``connect_timeout``,
    ``connect_args``) and what to read."""

    query: str | None = None
    """SQL with ``:name`` placeholders bound from ``params``."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Values of the ``:name`` placeholders in ``query`` or ``where``; always bound by the
    driver, never written into the SQL. With params, ``engine: auto`` avoids ConnectorX (it cannot
    bind them)."""
    table: str | None = None
    """A table (or view) to read instead of a ``query``: quoted as an identifier and
    qualified by ``schema``; exactly one of ``table`` and ``query`` is required."""
    columns: list[str] | None = None
    """With ``table``: the columns to read, in this order (all columns when absent)."""
    where: str | None = None
    """A SQL condition for ``table`` (values as ``:name`` placeholders bound from ``params``)."""
    chunk_size: int | None = Field(default=None, ge=1)
    """Return an iterator of frames of at most this many rows instead of one frame."""
    engine: Literal["auto", "adbc", "connectorx", "driver", "duckdb", "sqlalchemy"] = "auto"
    """How rows are read: ``auto`` picks the fastest sound path per database (PostgreSQL: ADBC;
    MySQL/MariaDB and SQLite files: ConnectorX without ``params``, else the Python driver;
    DuckDB: its own reader; others: SQLAlchemy), falling back when an extra is not installed.
    A named engine is used as given; ``connectorx`` with ``params`` is an error."""
    incremental: IncrementalConfig | None = None
    """Read only rows added since the last run, by a growing ``cursor_column`` (a mapping, see
    below); rows come in cursor order. Absent: every run reads everything."""
    spark: SparkJDBCConfig | None = None
    """With ``engine: spark``: partitioned JDBC reads (see docs/spark.md)."""
    mysql_tinyint1_as_bool: bool = True
    """MySQL/MariaDB ``table`` reads: ``TINYINT(1)`` (``BOOLEAN``) columns holding only 0/1/NULL
    come back as booleans."""

    @model_validator(mode="after")
    def _check(self) -> DatabaseConfig:
        if not self.url and not self.db_type:
            raise ValueError("give either 'url' (a database URL) or 'db_type' with host/database")
        if bool(self.query) == bool(self.table):
            raise ValueError("give exactly one of 'query' or 'table'")
        if self.query and (self.columns or self.where or self.schema_name):
            raise ValueError("'columns', 'where' and 'schema' go with 'table', not 'query'")
        return self


class DatabaseSource(DataSource):
    """Data source for databases (PostgreSQL, MySQL/MariaDB, SQLite, DuckDB, any SQLAlchemy URL).

    Raises:
        ConfigError: an invalid config (neither ``url`` nor ``db_type``, not exactly one of
            ``query`` and ``table``, ``engine: connectorx`` with ``params``, ...).
        DependencyError: the driver of the database or of the chosen ``engine`` is not installed.
        IngestionConnectionError: the database cannot be reached (host, port and database are named,
            never the password).
        IngestionAuthenticationError: the credentials were refused, or the operation was denied.
        IngestionTimeoutError: a statement was cancelled by a timeout.
        InputNotFoundError: the table or view does not exist.
        IngestionError: any other database error, or an ``incremental`` column missing from the
            result.

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
        >>> source.where()
        'db.example.com:5432/customers'
    """

    config_model = DatabaseConfig
    settings: DatabaseConfig
    concurrent_safe = True

    def __init__(self, name: str, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, config)
        self.target: SQLTarget = resolve(self.settings, component=self.label)
        self.dialect = dialect(self.target.dialect)

    def where(self) -> str:
        """``host:port/database`` of the target (or the file), never the password, for messages."""
        return self.target.where()

    # -- SQL ----------------------------------------------------------------------------------

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
        quote = self.dialect.quote
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
        table = self.dialect.qualified(s.table, s.schema_name)
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
        tracker = self.incremental_cursor()
        last_value = None
        inclusive = False
        if tracker is not None:
            last_value, inclusive = tracker.start()
        sql, params = self.build_query(last_value, inclusive=inclusive)
        path = choose_path(self.target, params, s.engine, component=self.label)
        info = self._mysql_columns(checked=bool(s.chunk_size))
        bools = info.bools if info is not None and s.mysql_tinyint1_as_bool else []
        if info is not None and info.wide_decimals and path == "connectorx" and s.engine == "auto":
            path = "driver"  # ConnectorX reads MySQL decimals of at most 28 digits
        op = self.current_operation
        op.details.update({"engine": path, "target": self.where()})
        self.logger.debug("%s: reading from %s via %s", self.label, self.where(), path)
        data = read_arrow(
            self.target,
            sql,
            params,
            path=path,
            batch_size=s.chunk_size,
            classes=INGESTION,
            component=self.label,
        )
        if isinstance(data, Iterator):
            batches: Iterator[Any] = data
            if bools:
                batches = (tinyint_as_bool(batch, bools, checked=True) for batch in batches)
            if tracker is not None:
                return self._counted(tracker, tracker.track(batches))
            return batches
        table: Any = data
        if bools:
            table = tinyint_as_bool(table, bools, checked=False)
        if tracker is not None:
            out = tracker.apply(table)
            if tracker.dropped:
                op.details["duplicates_dropped"] = tracker.dropped
            return out
        return table

    def spark_unsupported(self) -> str | None:
        from data_pipeline._spark import jdbc_unsupported

        return jdbc_unsupported(self)

    def _read_spark(self, session: Any) -> Any:
        from data_pipeline._spark import read_jdbc

        return read_jdbc(self, session)

    def peek_columns(self) -> list[str]:
        """The columns a read would give, without reading rows (``columns`` when configured,
        else the query run with ``WHERE 1 = 0``); used to check a pipeline file's column names
        before it runs."""
        if self.settings.columns:
            return list(self.settings.columns)
        sql, params = self.build_query(None)
        probe = f"SELECT * FROM ({sql}) AS _dp_peek WHERE 1 = 0"  # noqa: S608 - values bound
        data = read_arrow(
            self.target, probe, params, path="auto", classes=INGESTION, component=self.label
        )
        assert not isinstance(data, Iterator)  # no batch_size: one table
        return list(data.column_names)

    def incremental_cursor(self) -> IncrementalCursor | None:
        """The ``incremental`` state (see :class:`~data_pipeline.core.cursor.IncrementalCursor`):
        from the state file on each read, or kept once a checkpoint restored it."""
        inc = self.settings.incremental
        if inc is None:
            return None
        return self._kept_cursor(
            cursor=inc.cursor_column,
            keys=inc.keys,
            lookback=inc.lookback,
            initial_value=inc.initial_value,
            state_path=inc.state_path,
        )

    def _counted(self, tracker: IncrementalCursor, batches: Iterator[Any]) -> Iterator[Any]:
        for batch in batches:
            if tracker.dropped:
                self.current_operation.details["duplicates_dropped"] = tracker.dropped
            yield batch

    def _mysql_columns(self, checked: bool) -> MySQLColumns | None:
        """For a MySQL/MariaDB ``table`` read: its ``TINYINT(1)`` columns that hold booleans and
        its decimals too wide for ConnectorX (:func:`~data_pipeline.core.sql.read.mysql_columns`)."""
        s = self.settings
        if self.target.dialect != "mysql" or not s.table:
            return None
        return mysql_columns(
            self.target,
            s.table,
            classes=INGESTION,
            component=self.label,
            columns=s.columns,
            check_bools=checked and s.mysql_tinyint1_as_bool,
        )

    def _db_error(self, exc: BaseException) -> DataPipelineError:
        """A driver error -> our error naming host:port/database (never the password)."""
        return translate_db_error(
            exc,
            classes=INGESTION,
            what=self.target.label,
            where=self.where(),
            component=self.label,
            lines=None,
            type_name=True,
        )

    def _translate_error(self, exc: BaseException, operation: str) -> BaseException | None:
        if isinstance(exc, Exception) and not isinstance(exc, DataPipelineError):
            return self._db_error(exc)
        return super()._translate_error(exc, operation)
