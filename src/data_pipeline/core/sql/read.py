"""Arrow reads of a SQL query, with or without ``:name`` parameters, on every database.

=============  ===========================================  =====================================
database       path (``auto``)                              types
=============  ===========================================  =====================================
PostgreSQL     ADBC (``adbc-driver-postgresql``), params     from the wire: ``int4`` is Int32,
               bound as ``$n``, batches streamed            ``numeric(20,10)`` Decimal(20, 10)
MySQL/MariaDB  ConnectorX without params; PyMySQL with      the result's column types (the same
               params (``%s``), batches streamed            mapping as ConnectorX)
SQLite         ConnectorX without params (a file); sqlite3  declared types (ConnectorX); the
               with params or for ``:memory:``               values' storage classes (sqlite3)
DuckDB         DuckDB's Arrow reader, ``$name`` params      DuckDB's
others         SQLAlchemy through ``polars.read_database``  polars' inference
=============  ===========================================  =====================================

Values are always bound by the driver, never written into the SQL. A read of a SQLite file holds
the file's lock (:func:`~data_pipeline.core.sql.connect.database_file_lock`) while it runs. A read either returns one
``pyarrow.Table`` or, with ``batch_size``, an iterator of tables of at most that many rows.
Errors are translated by :mod:`data_pipeline.core.sql_errors` into the caller's layer: failing
to connect names the server (within ``connect_timeout``), a failing query names the query's
problem by its SQLSTATE or error number.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import closing, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from data_pipeline.core.deps import import_optional
from data_pipeline.core.errors import ConfigError, DataPipelineError, InputNotFoundError
from data_pipeline.core.sql.config import SQLTarget
from data_pipeline.core.sql.connect import connect, connect_error, sqlite_guard, tcp_check
from data_pipeline.core.sql.dialects import dialect
from data_pipeline.core.sql.params import bind, check_params
from data_pipeline.core.sql_errors import ErrorClasses, translate_db_error

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "PATHS",
    "MySQLColumns",
    "choose_path",
    "fix_arrow",
    "mysql_columns",
    "read_arrow",
    "rebatch",
    "tinyint_as_bool",
]

PATHS = ("auto", "adbc", "connectorx", "driver", "duckdb", "sqlalchemy")
_FETCH = 65_536  # rows per fetch on the driver path when no batch size is asked for


def installed(module: str) -> bool:
    """Whether an optional library is importable (without importing it)."""
    return importlib.util.find_spec(module) is not None


def choose_path(
    target: SQLTarget, params: Any, engine: str = "auto", *, component: str | None = None
) -> str:
    """The read path for ``target``: ``engine`` itself, or the fastest sound one (``auto``)."""
    values = check_params(params, component=component)
    if engine == "connectorx" and values:
        raise ConfigError(
            f"engine 'connectorx' cannot bind parameters ({', '.join(values)})",
            component=component,
            hint="use engine: auto for queries with params; values are never written into SQL",
        )
    if engine != "auto":
        return engine
    kind = target.dialect
    if kind == "postgresql":
        if installed("adbc_driver_postgresql"):
            return "adbc"
        return "connectorx" if not values and installed("connectorx") else "driver"
    if kind == "mysql" or (kind == "sqlite" and target.path != ":memory:"):
        return "connectorx" if not values and installed("connectorx") else "driver"
    if kind == "sqlite":
        return "driver"
    if kind == "duckdb":
        return "duckdb"
    return "sqlalchemy"


def read_arrow(
    target: SQLTarget,
    sql: str,
    params: Any = None,
    *,
    path: str = "auto",
    batch_size: int | None = None,
    classes: ErrorClasses,
    component: str | None = None,
    connection: Any = None,
) -> pa.Table | Iterator[pa.Table]:
    """Run ``sql`` with its ``:name`` ``params`` bound; the result as Arrow.

    Args:
        target: where (from :func:`~data_pipeline.core.sql.config.resolve`).
        sql: the query, ``:name`` placeholders for values.
        params: a dict of the values (a list is a :class:`ConfigError`).
        path: ``auto`` or one of :data:`PATHS` (see :func:`choose_path`).
        batch_size: return an iterator of tables of at most this many rows instead.
        classes: the error classes of the calling layer.
        component: the caller's label for messages.
        connection: an open DB-API connection to use on the ``driver`` path (the caller keeps
            it: SQLite ``:memory:`` databases and transactions).
    """
    values = check_params(params, component=component)
    if path == "auto":
        path = choose_path(target, values, component=component)
    elif path == "connectorx" and values:
        choose_path(target, values, "connectorx", component=component)  # raises
    if connection is not None:
        path = "driver"
    reader = _Reader(target, sql, values, classes, component, connection)
    # a caller passing its connection holds the file already (storage's connection())
    lock: Any = sqlite_guard(target) if connection is None else nullcontext()
    if batch_size is not None:
        return reader.guard(_held(lock, reader.batches(path, batch_size)))
    if path in ("adbc", "connectorx", "duckdb"):
        with lock:
            return reader.guard_call(lambda: reader.table(path))
    import pyarrow as pa

    with lock:
        tables = list(reader.guard(reader.batches(path, _FETCH)))
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")


def _held(lock: Any, batches: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """``batches`` with ``lock`` held from the first batch until the last (or the close)."""
    with lock:
        yield from batches


class _Reader:
    def __init__(
        self,
        target: SQLTarget,
        sql: str,
        params: dict[str, Any],
        classes: ErrorClasses,
        component: str | None,
        connection: Any,
    ) -> None:
        self.target = target
        self.sql = sql
        self.params = params
        self.classes = classes
        self.component = component
        self.connection = connection

    # -- error translation ---------------------------------------------------------------

    def error(self, exc: BaseException) -> DataPipelineError:
        return translate_db_error(
            exc,
            classes=self.classes,
            what=self.target.label,
            where=self.target.where(),
            component=self.component,
            lines=None,
            type_name=True,
        )

    def guard(self, batches: Iterator[pa.Table]) -> Iterator[pa.Table]:
        try:
            yield from batches
        except DataPipelineError:
            raise
        except Exception as exc:
            raise self.error(exc) from exc

    def guard_call(self, fn: Any) -> pa.Table:
        try:
            table: pa.Table = fn()
            return table
        except DataPipelineError:
            raise
        except Exception as exc:
            raise self.error(exc) from exc

    # -- paths -----------------------------------------------------------------------------

    def table(self, path: str) -> pa.Table:
        """The whole result in one call (the Arrow-native paths)."""
        if path == "adbc":
            with self.adbc() as cur:
                return fix_arrow(cur.fetch_arrow_table())
        if path == "connectorx":
            cx = self.connectorx()
            return fix_arrow(cx.read_sql(self.cx_uri(), self.sql, return_type="arrow"))
        with self.duckdb() as con:
            query, bound = bind(self.sql, self.params, "dollar_named", component=self.component)
            return fix_arrow(con.sql(query, params=bound or None).to_arrow_table())

    def batches(self, path: str, size: int) -> Iterator[pa.Table]:
        if path == "adbc":
            with self.adbc() as cur:
                yield from rebatch(cur.fetch_record_batch(), size)
        elif path == "connectorx":
            cx = self.connectorx()
            reader = cx.read_sql(
                self.cx_uri(), self.sql, return_type="arrow_stream", batch_size=size
            )
            yield from rebatch(reader, size)
        elif path == "duckdb":
            with self.duckdb() as con:
                query, bound = bind(self.sql, self.params, "dollar_named", component=self.component)
                yield from rebatch(con.sql(query, params=bound or None).to_arrow_reader(size), size)
        elif path == "driver":
            yield from self.driver(size)
        elif path == "sqlalchemy":
            yield from self.sqlalchemy(size)
        else:
            raise ConfigError(
                f"unknown read engine {path!r}",
                component=self.component,
                hint=f"use one of {', '.join(PATHS)}",
            )

    def adbc(self) -> Any:
        from contextlib import contextmanager

        dbapi = import_optional(
            "adbc_driver_postgresql.dbapi", extra="postgres", feature="PostgreSQL reads (ADBC)"
        )
        sql, values = bind(self.sql, self.params, "numeric", component=self.component)

        @contextmanager
        def cursor() -> Iterator[Any]:
            try:
                conn = dbapi.connect(self.target.libpq_uri())
            except Exception as exc:
                raise connect_error(exc, self.target, self.classes, self.component) from None
            try:
                cur = conn.cursor()
                try:
                    cur.execute(sql, parameters=values or None)
                    yield cur
                finally:
                    cur.close()
            finally:
                conn.close()

        return cursor()

    def connectorx(self) -> Any:
        """ConnectorX, after checking the server the way its driver would (fast, classified)."""
        cx = import_optional("connectorx", extra="sql", feature="Fast database reads (ConnectorX)")
        target = self.target
        if target.dialect == "sqlite":
            if not os.path.exists(target.path):
                raise InputNotFoundError(
                    f"SQLite database file {target.path!r} does not exist",
                    component=self.component,
                    hint="check 'database' or the URL's path",
                )
            return cx
        # ConnectorX's pool retries for 30 s and reports no error codes: connect once with the
        # driver first, within connect_timeout, so that failures are classified and quick.
        tcp_check(target, classes=self.classes, component=self.component)
        connect(target, classes=self.classes, component=self.component).close()
        return cx

    def cx_uri(self) -> str:
        if self.target.dialect == "sqlite":
            return self.target.uri()
        scheme = {"postgresql": "postgresql", "mysql": "mysql"}[self.target.dialect]
        return self.target.uri(scheme)

    def duckdb(self) -> Any:
        duckdb = import_optional("duckdb", extra="sql", feature="DuckDB reads")
        database = self.target.path
        if database != ":memory:":
            if not os.path.exists(database):
                raise InputNotFoundError(
                    f"DuckDB database file {database!r} does not exist",
                    component=self.component,
                    hint="check 'database' or the URL's path",
                )
            return closing(duckdb.connect(database, read_only=True))
        return closing(duckdb.connect())

    def driver(self, size: int) -> Iterator[pa.Table]:
        """The DB-API driver: rows fetched in chunks, typed from the result's column types."""
        style = dialect(self.target.dialect).param_style
        sql, values = bind(self.sql, self.params, style, component=self.component)
        own = self.connection is None
        con = self.connection
        if own:
            extra: dict[str, Any] = {}
            if self.target.dialect == "mysql":
                pymysql = import_optional("pymysql", extra="mysql")
                extra["cursorclass"] = pymysql.cursors.SSCursor  # streamed, not buffered
            con = connect(self.target, classes=self.classes, component=self.component, **extra)
        try:
            cur = con.cursor()
            try:
                if values:
                    cur.execute(sql, values)
                else:
                    cur.execute(sql)
                names = [d[0] for d in cur.description or []]
                types = _mysql_types(cur) if self.target.dialect == "mysql" else None
                empty = True
                while True:
                    rows = cur.fetchmany(size)
                    if not rows:
                        break
                    empty = False
                    yield self.rows_to_arrow(rows, names, types)
                if empty:
                    yield self.rows_to_arrow([], names, types)
            finally:
                cur.close()
        finally:
            if own:
                con.close()

    def rows_to_arrow(
        self, rows: list[tuple[Any, ...]], names: list[str], types: list[Any] | None
    ) -> pa.Table:
        try:
            return _rows_to_arrow(rows, names, types)
        except _Misfit as exc:
            raise (self.classes.data or self.classes.other)(
                f"column {exc.column!r} of the result from {self.target.where()} holds values "
                f"of more than one type, or a value its type cannot hold ({exc.detail})",
                component=self.component,
                hint="CAST the column to one type in the query",
            ) from None

    def sqlalchemy(self, size: int) -> Iterator[pa.Table]:
        import polars as pl

        sa = import_optional("sqlalchemy", extra="sql", feature="SQLAlchemy reads")
        target = self.target
        connect_args: dict[str, Any] = {}
        if target.dialect in ("mysql", "postgresql"):
            connect_args["connect_timeout"] = target.timeout_seconds
        try:
            engine = sa.create_engine(
                target.sqlalchemy_url(), connect_args=connect_args, json_deserializer=_keep_text
            )
        except ImportError as exc:
            from data_pipeline.core.errors import DependencyError

            extra = {"postgresql": "postgres", "mysql": "mysql"}.get(target.dialect, "sql")
            raise DependencyError(
                f"{target.label} needs its database driver ({exc.name or exc}): "
                f"`pip install 'data-pipeline[{extra}]'`",
                component=self.component,
                hint="install the extra, or give a URL whose driver is installed",
            ) from exc
        statement = sa.text(self.sql)
        try:
            try:
                conn = engine.connect().execution_options(stream_results=True)
            except Exception as exc:
                raise connect_error(exc, target, self.classes, self.component) from None
            with conn:
                frames = pl.read_database(
                    statement,
                    conn,
                    iter_batches=True,
                    batch_size=size,
                    execute_options={"parameters": self.params},
                )
                for frame in frames:
                    yield frame.to_arrow()
        finally:
            engine.dispose()


# -- Arrow helpers ------------------------------------------------------------------------------


# -- MySQL/MariaDB table reads: booleans and wide decimals --------------------------------------

#: ConnectorX reads MySQL decimals through rust_decimal, which holds 28 digits
CONNECTORX_MYSQL_DIGITS = 28


@dataclass(frozen=True)
class MySQLColumns:
    """What a MySQL/MariaDB table's column types say about reading it."""

    bools: list[str]
    """``TINYINT(1)`` (``BOOLEAN``) columns (with ``check_bools``: only those holding 0/1/NULL)."""
    wide_decimals: list[str]
    """``DECIMAL`` columns with more digits than ConnectorX reads (use the driver path)."""


def mysql_columns(
    target: SQLTarget,
    table: str,
    *,
    classes: ErrorClasses,
    component: str | None = None,
    columns: list[str] | None = None,
    check_bools: bool = False,
    connection: Any = None,
) -> MySQLColumns:
    """Look up a MySQL/MariaDB table's boolean and wide-decimal columns (information_schema).

    ``check_bools``: keep only the ``TINYINT(1)`` columns whose values are all 0/1/NULL in the
    whole table (one ``SELECT SUM(col NOT IN (0, 1))``), for reads in batches that must agree.
    """
    con = connection or connect(target, classes=classes, component=component, autocommit=True)
    rules = dialect("mysql")
    try:
        cur = con.cursor()
        try:
            sql, values = bind(
                "SELECT COLUMN_NAME, LOWER(COLUMN_TYPE), NUMERIC_PRECISION, DATA_TYPE"
                " FROM information_schema.COLUMNS"
                " WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table"
                " ORDER BY ORDINAL_POSITION",
                {"schema": target.schema, "table": table},
                "format",
            )
            cur.execute(sql, values)
            rows = [r for r in cur.fetchall() if columns is None or r[0] in columns]
            bools = [r[0] for r in rows if r[1] == "tinyint(1)"]
            wide = [
                r[0]
                for r in rows
                if str(r[3]).lower() == "decimal" and (r[2] or 0) > CONNECTORX_MYSQL_DIGITS
            ]
            if bools and check_bools:
                sums = ", ".join(f"SUM({rules.quote(n)} NOT IN (0, 1))" for n in bools)
                cur.execute(f"SELECT {sums} FROM {rules.qualified(table, target.schema)}")  # noqa: S608
                counts = cur.fetchone()
                bools = [n for n, bad in zip(bools, counts, strict=True) if not bad]
            return MySQLColumns(bools=bools, wide_decimals=wide)
        finally:
            cur.close()
    except DataPipelineError:
        raise
    except Exception as exc:
        raise translate_db_error(
            exc, classes=classes, what=target.label, where=target.where(), component=component
        ) from exc
    finally:
        if connection is None:
            con.close()


def tinyint_as_bool(frame: Any, names: list[str], checked: bool) -> Any:
    """Cast the 0/1 integer columns ``names`` of an Arrow table or polars frame to boolean.

    Unless ``checked``, a column holding any value other than 0, 1 or NULL is kept as is.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(frame, pa.Table):  # polars frames from the SQLAlchemy path
        import polars as pl

        return pl.from_arrow(tinyint_as_bool(frame.to_arrow(), names, checked))
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


def fix_arrow(table: pa.Table) -> pa.Table:
    """Arrow types polars and users expect: JSON/opaque extensions -> storage type, PostgreSQL
    ``numeric(p, s)`` (sent as text) -> ``decimal(p, s)``, an interval (DuckDB ``INTERVAL``,
    PostgreSQL ``interval``) -> ``duration[us]`` (see :func:`interval_as_duration`)."""
    import pyarrow as pa

    columns = []
    fields = []
    changed = False
    for fld, column in zip(table.schema, table.columns, strict=True):
        meta = fld.metadata or {}
        typ = fld.type
        if isinstance(typ, pa.BaseExtensionType):
            column = pa.chunked_array([c.storage for c in column.chunks], type=typ.storage_type)
            typ = typ.storage_type
            changed = True
        if meta.get(b"POSTGRESQL:type") == b"numeric" and pa.types.is_string(typ):
            column = _numeric(column, int(meta.get(b"POSTGRESQL:typmod", b"-1")))
            typ = column.type
            changed = True
        if typ == pa.month_day_nano_interval():
            duration = interval_as_duration(column)
            if duration is not None:
                column, typ = duration, duration.type
                changed = True
        columns.append(column)
        fields.append(pa.field(fld.name, typ))
    if not changed:
        return table
    return pa.table(columns, schema=pa.schema(fields))


_DAY_US = 86_400_000_000
_MAX_DAYS = 100_000_000  # days * _DAY_US stays inside int64


def interval_as_duration(column: Any) -> Any:
    """A ``month_day_nano`` interval column as ``duration[us]`` (a day counted as 24 hours), or
    None when some value has months or a fraction of a microsecond (no fixed length in
    microseconds: the column is left as an interval, which ``output="arrow"`` returns and polars
    refuses).

    DuckDB stores a Duration as an ``INTERVAL`` of microseconds and reads it back as
    ``month_day_nano``; this gives the Duration back.
    """
    import numpy as np
    import pyarrow as pa

    parts = np.dtype([("months", "<i4"), ("days", "<i4"), ("nanos", "<i8")])
    chunks = []
    for chunk in column.chunks:
        validity, data = chunk.buffers()
        raw = np.frombuffer(data, dtype=parts, count=chunk.offset + len(chunk))[chunk.offset :]
        valid = (
            np.ones(len(chunk), dtype=bool)
            if validity is None
            else chunk.is_valid().to_numpy(zero_copy_only=False)
        )
        months, days, nanos = raw["months"][valid], raw["days"][valid], raw["nanos"][valid]
        if (months != 0).any() or (nanos % 1000 != 0).any() or (abs(days) > _MAX_DAYS).any():
            return None
        days, nanos = raw["days"], raw["nanos"]
        micros = days.astype(np.int64) * _DAY_US + nanos // 1000
        chunks.append(pa.array(micros, type=pa.duration("us"), mask=~valid))
    return pa.chunked_array(chunks, type=pa.duration("us"))


def _numeric(column: Any, typmod: int) -> Any:
    """A PostgreSQL numeric column (text) as a decimal of its declared precision and scale."""
    import pyarrow as pa

    if typmod >= 4:
        precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
        target: pa.DataType = (
            pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
        )
        return column.cast(target)
    import polars as pl

    series = pl.from_arrow(column)
    assert isinstance(series, pl.Series)
    return series.str.to_decimal().to_arrow()


def rebatch(reader: Any, size: int) -> Iterator[pa.Table]:
    """Re-cut a stream of record batches into tables of ``size`` rows (the last may be smaller).

    An empty result still yields one empty table, so the caller sees the columns.
    """
    import pyarrow as pa

    pending: list[Any] = []
    rows = 0
    schema = getattr(reader, "schema", None)
    sent = False
    for batch in reader:
        schema = batch.schema
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        rows += batch.num_rows
        while rows >= size:
            table = fix_arrow(pa.Table.from_batches(pending))
            yield table.slice(0, size)
            sent = True
            rest = table.slice(size)
            pending = rest.to_batches() if rest.num_rows else []
            rows = rest.num_rows
    if rows:
        yield fix_arrow(pa.Table.from_batches(pending))
    elif not sent and schema is not None:
        yield fix_arrow(pa.Table.from_batches([], schema=schema))


def _keep_text(value: Any) -> Any:
    """JSON columns stay JSON text (as on the ADBC and ConnectorX paths)."""
    return value


# -- DB-API rows to Arrow -----------------------------------------------------------------------


def _mysql_types(cur: Any) -> list[Any]:
    """Arrow types of a PyMySQL result's columns (the mapping ConnectorX uses)."""
    import pyarrow as pa
    from pymysql.constants import FIELD_TYPE as T

    result = getattr(cur, "_result", None)
    fields = getattr(result, "fields", None) or []
    types: list[Any] = []
    for f in fields:
        unsigned = bool(f.flags & 32)
        binary = f.charsetnr == 63
        code = f.type_code
        if code == T.TINY:
            types.append(pa.uint8() if unsigned else pa.int8())
        elif code in (T.SHORT, T.YEAR):
            types.append(pa.uint16() if unsigned else pa.int16())
        elif code in (T.LONG, T.INT24):
            types.append(pa.uint32() if unsigned else pa.int32())
        elif code == T.LONGLONG:
            types.append(pa.uint64() if unsigned else pa.int64())
        elif code == T.FLOAT:
            types.append(pa.float32())
        elif code == T.DOUBLE:
            types.append(pa.float64())
        elif code in (T.DECIMAL, T.NEWDECIMAL):
            scale = int(f.scale)
            digits = int(f.length) - (1 if scale else 0) - (0 if unsigned else 1)
            types.append(pa.decimal128(38, scale) if digits <= 38 else pa.decimal256(76, scale))
        elif code in (T.DATE, T.NEWDATE):
            types.append(pa.date32())
        elif code in (T.DATETIME, T.TIMESTAMP):
            types.append(pa.timestamp("us"))
        elif code == T.TIME:
            types.append(pa.time64("us"))
        elif code == T.BIT or code == T.GEOMETRY:
            types.append(pa.large_binary())
        elif code == T.JSON:
            types.append(pa.string())
        elif code == T.NULL:
            types.append(pa.null())
        elif binary and code not in (T.ENUM, T.SET):
            types.append(pa.large_binary())
        else:
            types.append(pa.string())
    return types


def _rows_to_arrow(
    rows: list[tuple[Any, ...]], names: list[str], types: list[Any] | None
) -> pa.Table:
    """Rows of a DB-API cursor as an Arrow table, column by column, with ``types`` when known.

    A column whose values do not fit one type raises :class:`_Misfit` naming it.
    """
    import pyarrow as pa

    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = []
    for i, (name, values) in enumerate(zip(names, columns, strict=True)):
        typ = types[i] if types else None
        try:
            if typ is not None and pa.types.is_time(typ):
                arrays.append(_times(values, typ))
            else:
                arrays.append(pa.array(values, type=typ))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            raise _Misfit(name, str(exc)) from None
    return pa.Table.from_arrays(arrays, names=names)


class _Misfit(Exception):
    def __init__(self, column: str, detail: str) -> None:
        super().__init__(column, detail)
        self.column = column
        self.detail = detail


def _times(values: Any, typ: Any) -> Any:
    """MySQL TIME (PyMySQL gives ``timedelta``) as time of day; outside 00:00-24:00 is an error."""
    import datetime as dt

    import pyarrow as pa

    micros: list[int | None] = []
    for v in values:
        if v is None:
            micros.append(None)
            continue
        if isinstance(v, dt.time):
            v = dt.timedelta(
                hours=v.hour, minutes=v.minute, seconds=v.second, microseconds=v.microsecond
            )
        us = v // dt.timedelta(microseconds=1)
        if not 0 <= us < 86_400_000_000:
            raise ValueError(f"TIME value {v} is not a time of day")
        micros.append(us)
    return pa.array(micros, type=pa.int64()).cast(typ)
