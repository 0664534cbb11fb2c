"""Opening driver connections for a :class:`~data_pipeline.core.sql.config.SQLTarget`.

One function per use, the driver imported on first use: :func:`connect` gives a DB-API
connection (psycopg 3, PyMySQL, sqlite3) that honours ``connect_timeout``; a failure to connect
is translated by :func:`~data_pipeline.core.sql_errors.translate_db_error` (refused credentials,
a missing database, or an unreachable server, named ``host:port/database``, never the password).
:func:`database_file_lock` is the one per-file lock of a SQLite or DuckDB file in this process.
"""

from __future__ import annotations

import os
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from data_pipeline.core.deps import import_optional
from data_pipeline.core.errors import DataPipelineError, UnsupportedOperationError
from data_pipeline.core.sql.config import SQLTarget
from data_pipeline.core.sql_errors import NO_USER, ErrorClasses, translate_db_error

__all__ = [
    "connect",
    "connect_error",
    "database_file_lock",
    "sqlite_guard",
    "tcp_check",
]

_EXTRAS = {"postgresql": "postgres", "mysql": "mysql"}

_FILE_LOCKS: dict[str, threading.RLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def database_file_lock(path: str) -> threading.RLock:
    """One lock per database file in this process (re-entrant: a thread holding it may take it
    again, e.g. a storage transaction that reads the file).

    * SQLite: held while a sqlite3 connection to the file is open or a ConnectorX read of it
      runs (storage and sources alike). ConnectorX links its own copy of SQLite, and two SQLite
      copies in one process do not see each other's POSIX file locks (closing one copy's file
      handle drops the other's locks: sqlite.org, "How To Corrupt An SQLite Database File",
      2.2.1): a read on one thread while another thread wrote the file failed with "disk I/O
      error".
    * DuckDB: held by a write transaction (DataWarehouseStorage), so two writers in this process
      take turns instead of one failing with DuckDB's "write-write conflict" (DuckDB lets one
      process at a time write a file; between processes its own file lock applies).
    """
    key = path if path.startswith("file:") else os.path.realpath(path)
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.RLock())


def sqlite_guard(target: SQLTarget) -> AbstractContextManager[Any]:
    """:func:`database_file_lock` of ``target`` when it is a SQLite file; else nothing to hold."""
    if target.dialect == "sqlite" and target.path != ":memory:":
        return database_file_lock(target.path)
    return nullcontext()


def connect_error(
    exc: BaseException, target: SQLTarget, classes: ErrorClasses, component: str | None
) -> DataPipelineError:
    """A failure to connect to ``target`` as our error (credentials, database or server)."""
    return translate_db_error(
        exc,
        classes=classes,
        what=target.label,
        where=target.where(),
        user=target.username or NO_USER,
        component=component,
        connecting=True,
        lines=3,
    )


def connect(
    target: SQLTarget,
    *,
    classes: ErrorClasses,
    component: str | None = None,
    autocommit: bool = False,
    **extra: Any,
) -> Any:
    """A DB-API connection to ``target`` (psycopg 3, PyMySQL or sqlite3); close it yourself.

    ``extra`` adds driver arguments (e.g. ``local_infile`` for PyMySQL). SQLite connections
    run in autocommit mode (``isolation_level=None``): callers say ``BEGIN`` themselves.
    """
    if target.dialect == "postgresql":
        psycopg = import_optional("psycopg", extra="postgres", feature="PostgreSQL support")
        try:
            return psycopg.connect(
                host=target.host,
                port=target.port,
                dbname=target.database,
                user=target.username,
                password=target.password,
                connect_timeout=max(2, target.timeout_seconds),
                autocommit=autocommit,
                **{**target.connect_args, **extra},
            )
        except psycopg.Error as exc:
            raise connect_error(exc, target, classes, component) from None
    if target.dialect == "mysql":
        pymysql = import_optional("pymysql", extra="mysql", feature="MySQL/MariaDB support")
        try:
            return pymysql.connect(
                host=target.host,
                port=target.port or 3306,
                user=target.username or "root",
                password=target.password or "",
                database=target.database,
                connect_timeout=target.timeout_seconds,
                autocommit=autocommit,
                charset="utf8mb4",
                **{**target.connect_args, **extra},
            )
        except pymysql.err.MySQLError as exc:
            raise connect_error(exc, target, classes, component) from None
    if target.dialect == "sqlite":
        import sqlite3

        path = target.path
        try:
            if path != ":memory:" and not path.startswith("file:"):
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            con = sqlite3.connect(
                path,
                isolation_level=None,
                timeout=target.connect_timeout,
                check_same_thread=False,
                **{**target.connect_args, **extra},
            )
            con.execute("PRAGMA journal_mode")  # opens the file: a bad path fails here
            return con
        except (sqlite3.Error, OSError) as exc:
            raise connect_error(exc, target, classes, component) from None
    raise UnsupportedOperationError(
        f"no DB-API driver is wired for {target.label}",
        component=component,
        hint="use a SQLAlchemy URL for other databases",
    )


def tcp_check(target: SQLTarget, *, classes: ErrorClasses, component: str | None) -> None:
    """Open and close a TCP connection to the server within ``connect_timeout``.

    Used before clients that would retry for long on their own (ConnectorX's pool waits 30 s).
    """
    import socket

    if target.is_file or not target.host or not target.port:
        return
    try:
        with socket.create_connection((target.host, target.port), timeout=target.connect_timeout):
            pass
    except OSError as exc:
        raise connect_error(exc, target, classes, component) from None
