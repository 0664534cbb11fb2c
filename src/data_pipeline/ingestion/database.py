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
from data_pipeline.core.errors import ConfigError, DataPipelineError, IngestionError
from data_pipeline.core.sql import SQLConnectionConfig, dialect, read_arrow, resolve
from data_pipeline.core.sql.read import MySQLColumns, choose_path, mysql_columns, tinyint_as_bool
from data_pipeline.core.sql_errors import INGESTION, translate_db_error
from data_pipeline.ingestion._common import DeliveredKeys, StateStore
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


class DatabaseConfig(SourceConfig, SQLConnectionConfig):
    """Config of :class:`DatabaseSource`: the connection keys of
    :class:`~data_pipeline.core.sql.SQLConnectionConfig` (``url`` or ``db_type``, ``host``,
    ``port``, ``database``, ``username``, ``password``, ``schema``, ``connect_timeout``,
    ``connect_args``) and what to read."""

    query: str | None = None
    """SQL with ``:name`` placeholders bound from ``params``."""
    params: dict[str, Any] = Field(default_factory=dict)
    table: str | None = None
    columns: list[str] | None = None
    where: str | None = None
    """A SQL condition for ``table`` (values as ``:name`` placeholders bound from ``params``)."""
    chunk_size: int | None = Field(default=None, ge=1)
    """Return an iterator of frames of at most this many rows instead of one frame."""
    engine: Literal["auto", "adbc", "connectorx", "driver", "duckdb", "sqlalchemy"] = "auto"
    incremental: IncrementalConfig | None = None
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
        tracker: _Tracker | None = None
        last_value = None
        inclusive = False
        if s.incremental is not None:
            tracker = _Tracker(self, s.incremental)
            last_value, inclusive = tracker.since()
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
                return tracker.track(batches)
            return batches
        table: Any = data
        if bools:
            table = tinyint_as_bool(table, bools, checked=False)
        if tracker is not None:
            return tracker.apply(table)
        return table

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
