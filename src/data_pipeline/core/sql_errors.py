"""Translate database driver errors into our error tree, by exception class and error code.

A driver error is classified by what the driver says it is, never by words of its message (a
value ``'connection refused'`` in a failing cast is a data error, not a network failure):

=============  ===========================================================================
driver         what decides
=============  ===========================================================================
psycopg, ADBC  the SQLSTATE (``08`` connection, ``28`` credentials, ``42P01`` missing table,
               ``23`` constraint, ``22`` bad value, ``40001``/``40P01`` retry, ``57014``
               timeout, ...); libpq gives no SQLSTATE while connecting, so a failure to
               connect is a connection failure unless the server's FATAL reply is one of its
               authentication replies (the reply's fixed start, e.g. ``role "x" does not
               exist`` or ``password authentication failed``)
PyMySQL        the MySQL error number (1045 access denied, 2003 cannot connect, 1146 no
               table, 1062 duplicate key, 1366 bad value, 1213 deadlock, ...)
sqlite3        ``sqlite_errorcode`` (BUSY/LOCKED, CANTOPEN, CONSTRAINT, MISMATCH, ...)
DuckDB         the exception class (``CatalogException``, ``ConstraintException``, ...)
SQLAlchemy     the driver error it wraps (``.orig``)
ConnectorX     the ``MySqlError { ERROR <number> (<SQLSTATE>)`` head of its message; otherwise a
               query error (connections are checked with the driver before ConnectorX runs)
=============  ===========================================================================

The kind picks the error class of the calling layer (ingestion raises ``Ingestion*Error``,
storage ``Storage*Error``), whether it is ``transient`` (worth retrying), and the hint. Messages
name the target (``what`` at ``host:port/database``) and never the password: the driver's text
goes through :func:`~data_pipeline.core.secrets.redact_text`.

Example:
    >>> import sqlite3
    >>> from data_pipeline.core.sql_errors import STORAGE, classify_db_error, translate_db_error
    >>> con = sqlite3.connect(":memory:")
    >>> try:
    ...     con.execute("SELECT * FROM missing_table")
    ... except sqlite3.Error as exc:
    ...     print(classify_db_error(exc), type(translate_db_error(
    ...         exc, classes=STORAGE, where="app.db")).__name__)
    missing InputNotFoundError
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from data_pipeline.core.errors import (
    DataPipelineError,
    IngestionAuthenticationError,
    IngestionConnectionError,
    IngestionError,
    IngestionTimeoutError,
    InputNotFoundError,
    StorageAuthenticationError,
    StorageConnectionError,
    StorageError,
    StorageSchemaError,
)

__all__ = [
    "INGESTION",
    "NO_USER",
    "STORAGE",
    "ErrorClasses",
    "Kind",
    "classify_db_error",
    "error_code",
    "first_lines",
    "translate_db_error",
]

#: ``user=`` default of :func:`translate_db_error`: the message names no user
NO_USER = object()

Kind = Literal[
    "auth",  # credentials refused, or no such user
    "denied",  # logged in, but not allowed (privileges, read-only file)
    "connect",  # server unreachable, gone, or refusing connections now
    "no_database",  # the server is there, the database is not
    "missing",  # no such table / schema
    "integrity",  # a constraint (key, NOT NULL, foreign key) rejected a row
    "data",  # a value the column's type cannot hold / a failing cast
    "retry",  # deadlock, serialization failure, lock wait: retrying may succeed
    "timeout",  # statement cancelled by a timeout
    "query",  # anything else: syntax, unknown column, ...
]


@dataclass(frozen=True)
class ErrorClasses:
    """The error classes one layer raises for each kind of driver failure."""

    connection: type[DataPipelineError]
    authentication: type[DataPipelineError]
    other: type[DataPipelineError]
    not_found: type[DataPipelineError] = InputNotFoundError
    data: type[DataPipelineError] | None = None
    timeout: type[DataPipelineError] | None = None


INGESTION = ErrorClasses(
    connection=IngestionConnectionError,
    authentication=IngestionAuthenticationError,
    other=IngestionError,
    timeout=IngestionTimeoutError,
)
STORAGE = ErrorClasses(
    connection=StorageConnectionError,
    authentication=StorageAuthenticationError,
    other=StorageError,
    data=StorageSchemaError,
)

# -- SQLSTATE (PostgreSQL via psycopg and ADBC; also MySQL's SQLSTATE in ConnectorX text) -------

_SQLSTATE_EXACT: dict[str, Kind] = {
    "3D000": "no_database",  # invalid_catalog_name
    "42P01": "missing",  # undefined_table
    "3F000": "missing",  # invalid_schema_name
    "42S02": "missing",  # MySQL: base table not found
    "42501": "denied",  # insufficient_privilege
    "40001": "retry",  # serialization_failure
    "40P01": "retry",  # deadlock_detected
    "55P03": "retry",  # lock_not_available
    "57014": "timeout",  # query_canceled (statement_timeout)
    "57P01": "connect",  # admin_shutdown
    "57P02": "connect",  # crash_shutdown
    "57P03": "connect",  # cannot_connect_now
    "53300": "connect",  # too_many_connections
}
_SQLSTATE_CLASS: dict[str, Kind] = {
    "08": "connect",
    "28": "auth",
    "23": "integrity",
    "22": "data",
    "40": "retry",
    "53": "retry",
}

# -- MySQL / MariaDB error numbers -------------------------------------------------------------

_MYSQL: dict[int, Kind] = {
    1045: "auth",  # access denied (password)
    1698: "auth",  # access denied (plugin / no such user)
    1044: "denied",  # no access to the database
    1142: "denied",  # command denied on a table
    1143: "denied",  # command denied on a column
    1227: "denied",  # needs a privilege
    1049: "no_database",  # unknown database
    2002: "connect",
    2003: "connect",
    2005: "connect",  # unknown host
    2006: "connect",  # server has gone away
    2013: "connect",  # lost connection
    2055: "connect",
    1040: "connect",  # too many connections
    1146: "missing",  # table doesn't exist
    1051: "missing",  # unknown table
    1062: "integrity",
    1048: "integrity",  # column cannot be null
    1216: "integrity",
    1217: "integrity",
    1451: "integrity",
    1452: "integrity",
    1557: "integrity",
    1586: "integrity",
    1859: "integrity",
    4025: "integrity",  # CHECK constraint
    1264: "data",  # out of range
    1265: "data",  # data truncated
    1292: "data",  # incorrect value
    1366: "data",  # incorrect value for column
    1367: "data",
    1406: "data",  # data too long
    1411: "data",
    1690: "data",  # value out of range
    1205: "retry",  # lock wait timeout
    1213: "retry",  # deadlock
    1317: "timeout",  # query interrupted
    3024: "timeout",  # max_execution_time
    1969: "timeout",  # MariaDB max_statement_time
}

# -- sqlite3 primary result codes --------------------------------------------------------------

_SQLITE: dict[int, Kind] = {
    5: "retry",  # SQLITE_BUSY
    6: "retry",  # SQLITE_LOCKED
    8: "denied",  # SQLITE_READONLY
    3: "denied",  # SQLITE_PERM
    23: "auth",  # SQLITE_AUTH
    14: "no_database",  # SQLITE_CANTOPEN
    26: "no_database",  # SQLITE_NOTADB
    11: "no_database",  # SQLITE_CORRUPT
    19: "integrity",  # SQLITE_CONSTRAINT
    20: "data",  # SQLITE_MISMATCH
    18: "data",  # SQLITE_TOOBIG
    9: "timeout",  # SQLITE_INTERRUPT
    # out of resources, as PostgreSQL's class 53 (not the query's fault): SQLITE_IOERR also
    # comes from another SQLite copy in the process dropping the file's locks (ConnectorX; see
    # core.sql.connect.database_file_lock)
    7: "retry",  # SQLITE_NOMEM
    10: "retry",  # SQLITE_IOERR (and its extended codes)
    13: "retry",  # SQLITE_FULL
}

# the start of libpq's server reply while connecting, for the replies that refuse credentials
# (SQLSTATE 28000 / 28P01, which libpq does not expose while connecting)
_LIBPQ_FATAL = re.compile(r"failed: FATAL:\s*(?P<reply>[^\n]*)")
_LIBPQ_AUTH_REPLIES = (
    "password authentication failed for user ",
    "role ",  # role "x" does not exist / is not permitted to log in
    "no pg_hba.conf entry for ",
    "pg_hba.conf rejects connection ",
    "Ident authentication failed ",
    "Peer authentication failed ",
    "SSPI authentication failed ",
    "GSSAPI authentication failed ",
    "LDAP authentication failed ",
    "RADIUS authentication failed ",
    "certificate authentication failed ",
    "password authentication failed",
    "fe_sendauth: no password supplied",
)
_LIBPQ_NO_DATABASE = re.compile(r'^database "(?:[^"]|"")*" does not exist$')
_MYSQL_IN_TEXT = re.compile(r"MySqlError \{ ERROR (?P<code>\d{4,5}) \((?P<state>[0-9A-Z]{5})\)")


def first_lines(exc: BaseException, n: int | None = 3) -> str:
    """The first ``n`` lines of an exception's text (all with ``None``), joined on one line."""
    text = str(exc).strip()
    lines = text.splitlines() if n is None else text.splitlines()[:n]
    return " ".join(line.strip() for line in lines)


def _chain(exc: BaseException) -> BaseException:
    """The driver's own error under SQLAlchemy's wrapper (``.orig``)."""
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, BaseException) else exc


def _modules(exc: BaseException) -> set[str]:
    return {cls.__module__.split(".")[0] for cls in type(exc).__mro__}


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def error_code(exc: BaseException) -> str | int | None:
    """The SQLSTATE (str) or vendor error number (int) a driver error carries, if any."""
    exc = _chain(exc)
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate
    mods = _modules(exc)
    if "pymysql" in mods and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code
    return None


def _from_sqlstate(state: str) -> Kind:
    return _SQLSTATE_EXACT.get(state) or _SQLSTATE_CLASS.get(state[:2], "query")


def _libpq_connect_kind(text: str) -> Kind:
    """A libpq connection failure: refused credentials, a missing database, or unreachable."""
    match = _LIBPQ_FATAL.search(text)
    reply = match.group("reply").strip() if match else ""
    if reply.startswith(_LIBPQ_AUTH_REPLIES) or "fe_sendauth: no password supplied" in text:
        return "auth"
    if _LIBPQ_NO_DATABASE.match(reply):
        return "no_database"
    return "connect"


def classify_db_error(exc: BaseException, *, connecting: bool = False) -> Kind:
    """What kind of failure a driver error is (see the module docstring for the rules).

    ``connecting``: the error came from opening the connection (libpq's connection phase).
    """
    exc = _chain(exc)
    names = _names(exc)
    mods = _modules(exc)
    if "psycopg" in mods or "adbc_driver_manager" in mods:
        state = getattr(exc, "sqlstate", None)
        if isinstance(state, str) and state:
            return _from_sqlstate(state)
        if connecting or ("OperationalError" in names and "[libpq] Failed to connect" in str(exc)):
            return _libpq_connect_kind(str(exc))
        if "OperationalError" in names:
            return "connect"  # psycopg: the connection broke (no SQLSTATE: nothing came back)
        if "IntegrityError" in names:
            return "integrity"
        if "DataError" in names:
            return "data"
        return "query"
    if "pymysql" in mods:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        if code is not None and code in _MYSQL:
            return _MYSQL[code]
        if "IntegrityError" in names:
            return "integrity"
        if "DataError" in names:
            return "data"
        if "OperationalError" in names and code is not None and code >= 2000:
            return "connect"  # client-side errors (CR_*): the connection
        return "query"
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        primary = code & 0xFF
        if primary == 1 and str(exc).startswith("no such table:"):
            return "missing"
        return _SQLITE.get(primary, "query")
    if "duckdb" in mods:
        if "CatalogException" in names:
            return "missing"
        if "ConstraintException" in names:
            return "integrity"
        if names & {"ConversionException", "OutOfRangeException", "InvalidInputException"}:
            return "data"
        if "IOException" in names:
            return "no_database"
        if "InterruptException" in names:
            return "timeout"
        return "query"
    if names & {"ServerSelectionTimeoutError", "AutoReconnect", "NetworkTimeout"}:
        return "connect"  # pymongo
    if "redis" in mods:
        if "AuthenticationError" in names:
            return "auth"
        if names & {"ConnectionError", "TimeoutError"}:
            return "connect"
        return "query"
    if isinstance(exc, (ConnectionError, TimeoutError)) or (
        isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError)
    ):
        return "connect"  # a socket: our TCP check before ConnectorX, or the driver's own
    text = str(exc)
    mysql = _MYSQL_IN_TEXT.match(text)
    if mysql:  # ConnectorX passes MySQL's own error header through
        return _MYSQL.get(int(mysql.group("code"))) or _from_sqlstate(mysql.group("state"))
    if text.startswith("no such table:"):  # ConnectorX over SQLite: SQLite's own message
        return "missing"
    return "query"


_HINTS: dict[str, str] = {
    "auth": "check username and password in the config (and that the user exists)",
    "denied": "grant the user the privileges it needs, or use another user",
    "connect": "check host, port and database in the config, and that the server is running",
    "no_database": "check 'database' in the config (the server is reachable)",
    "missing": "check 'table'/'schema' or the query",
    "integrity": "fix or remove the offending rows (the server's message names the key)",
    "data": "check the values and the column types (the server's message names the value)",
    "retry": "another transaction held the rows; retrying the call may succeed",
    "timeout": "the statement ran past the server's timeout; raise it or narrow the query",
    "query": "check the SQL text",
}


def translate_db_error(
    exc: BaseException,
    *,
    classes: ErrorClasses,
    where: str,
    component: str | None = None,
    what: str | None = None,
    user: object = NO_USER,
    auth: bool | None = None,
    connecting: bool = False,
    lines: int | None = 3,
    type_name: bool = False,
) -> DataPipelineError:
    """A driver error -> one of ``classes``, naming the target and never the password.

    Args:
        exc: the driver's exception.
        classes: the error classes to raise (:data:`INGESTION` or :data:`STORAGE`).
        where: ``host:port/database`` (or a file) of the target, without credentials.
        component: the component label for the error.
        what: the kind of target (``"PostgreSQL"``), named before ``where`` when given.
        user: the user name to mention (``NO_USER``: none).
        auth: ``True``/``False`` forces refused credentials / a connection failure (for
            drivers whose caller knows better); ``None`` classifies the error.
        connecting: the error came from opening the connection: anything but refused
            credentials or a missing database is a connection failure.
        lines: keep this many lines of the driver's text (``None``: all).
        type_name: start the driver's text with the exception's class name.
    """
    from data_pipeline.core.secrets import redact_text

    text = first_lines(exc, lines)
    if type_name:
        text = f"{type(_chain(exc)).__name__}: {text}"
    text = redact_text(text).strip()
    kind: Kind = classify_db_error(exc, connecting=connecting)
    if auth is not None:
        kind = "auth" if auth else "connect"
    elif connecting and kind not in ("auth", "denied", "no_database"):
        kind = "connect"
    target = f"{what} at {where}" if what else where
    who = "" if user is NO_USER else f" as user {user!r}"
    hint = _HINTS[kind]
    if kind == "auth":
        return classes.authentication(
            f"{target}{who} refused the credentials: {text}", component=component, hint=hint
        )
    if kind == "denied":
        return classes.authentication(
            f"{target}{who} denied the operation: {text}", component=component, hint=hint
        )
    if kind == "connect":
        return classes.connection(
            f"cannot connect to {target}{who}: {text}", component=component, hint=hint
        )
    if kind == "no_database":
        return classes.connection(
            f"cannot open the database of {target}: {text}",
            component=component,
            hint=hint,
            transient=False,
        )
    if kind == "missing":
        return classes.not_found(
            f"table or view not found on {target}: {text}", component=component, hint=hint
        )
    if kind == "data":
        return (classes.data or classes.other)(
            f"{target} rejected a value: {text}", component=component, hint=hint
        )
    if kind == "timeout":
        return (classes.timeout or classes.other)(
            f"a statement on {target} timed out: {text}",
            component=component,
            hint=hint,
            transient=True,
        )
    if kind == "retry":
        return classes.other(
            f"a statement on {target} hit a lock conflict: {text}",
            component=component,
            hint=hint,
            transient=True,
        )
    if kind == "integrity":
        return classes.other(
            f"a constraint on {target} rejected the data: {text}", component=component, hint=hint
        )
    return classes.other(f"query on {target} failed: {text}", component=component, hint=hint)
