"""One translation of database driver errors for ingestion and storage, by class and code.

The errors here are the drivers' own exception classes carrying the codes the servers send
(real servers are in tests/integration/test_sql_layer.py); the point is that the text of a
message never decides the kind: a value 'connection refused' in a failing cast is a data error.
"""

from __future__ import annotations

import sqlite3

import psycopg
import pymysql
import pytest

from data_pipeline.core.errors import (
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
from data_pipeline.core.secrets import register_secret
from data_pipeline.core.sql_errors import (
    INGESTION,
    STORAGE,
    classify_db_error,
    translate_db_error,
)


def pg(sqlstate: str, text: str) -> Exception:
    """The psycopg exception class the server's SQLSTATE selects, as psycopg raises it."""
    error: Exception = psycopg.errors.lookup(sqlstate)(text)
    return error


def my(code: int, text: str, cls: type[Exception] = pymysql.err.OperationalError) -> Exception:
    return cls(code, text)


def lite(sql: str, setup: str = "") -> sqlite3.Error:
    con = sqlite3.connect(":memory:")
    if setup:
        con.executescript(setup)
    try:
        con.execute(sql)
    except sqlite3.Error as exc:
        return exc
    raise AssertionError(f"{sql} did not fail")


def lite_code(code: int, text: str) -> sqlite3.Error:
    """A sqlite3 error with the result code SQLite would give (a disk error cannot be made to
    happen here)."""
    exc = sqlite3.OperationalError(text)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (pg("22P02", 'invalid input syntax for type integer: "connection refused"'), "data"),
        (pg("28P01", 'password authentication failed for user "bob"'), "auth"),
        (pg("28000", 'role "connection refused" does not exist'), "auth"),
        (pg("42P01", 'relation "password authentication failed" does not exist'), "missing"),
        (pg("23505", "duplicate key value violates unique constraint"), "integrity"),
        (pg("40P01", "deadlock detected"), "retry"),
        (pg("57014", "canceling statement due to statement timeout"), "timeout"),
        (pg("3D000", 'database "x" does not exist'), "no_database"),
        (pg("42601", "syntax error: connection refused"), "query"),
        (my(1045, "Access denied for user 'root'@'localhost' (using password: YES)"), "auth"),
        (my(2003, "Can't connect to MySQL server on '127.0.0.1'"), "connect"),
        (my(1049, "Unknown database 'nope'"), "no_database"),
        (my(1146, "Table 'test.nope' doesn't exist", pymysql.err.ProgrammingError), "missing"),
        (my(1062, "Duplicate entry '1'", pymysql.err.IntegrityError), "integrity"),
        (my(1366, "Incorrect integer value: 'connection refused'"), "data"),
        (my(1213, "Deadlock found"), "retry"),
        (my(1064, "You have an error near 'access denied'", pymysql.err.ProgrammingError), "query"),
        (lite("SELECT * FROM nope"), "missing"),
        (
            lite(
                "INSERT INTO t VALUES (1)",
                "CREATE TABLE t (a PRIMARY KEY); INSERT INTO t VALUES (1)",
            ),
            "integrity",
        ),
        (lite("SELECT 'connection refused' +"), "query"),
        (lite_code(10, "disk I/O error"), "retry"),  # was "query": "the data does not fit"
        (lite_code(522, "disk I/O error"), "retry"),  # SQLITE_IOERR_SHORT_READ
        (lite_code(13, "database or disk is full"), "retry"),
    ],
)
def test_classify_by_class_and_code(exc: Exception, kind: str) -> None:
    assert classify_db_error(exc) == kind


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ('FATAL:  password authentication failed for user "bob"', "auth"),
        ('FATAL:  role "nosuch" does not exist', "auth"),
        ('FATAL:  no pg_hba.conf entry for host "1.2.3.4", user "u", database "d"', "auth"),
        ('FATAL:  database "nope" does not exist', "no_database"),
        ('FATAL:  database "role x" does not exist', "no_database"),
        ("Connection refused\n\tIs the server running on that host?", "connect"),
        ("timeout expired", "connect"),
    ],
)
def test_libpq_connection_phase(reply: str, kind: str) -> None:
    """libpq gives no SQLSTATE while connecting: its reply's fixed start decides."""
    exc = psycopg.OperationalError(
        f'connection failed: connection to server at "127.0.0.1", port 5432 failed: {reply}'
    )
    assert classify_db_error(exc, connecting=True) == kind


def test_each_layer_gets_its_own_classes() -> None:
    refused = pg("28P01", "password authentication failed")
    down = my(2003, "Can't connect")
    missing = pg("42P01", 'relation "t" does not exist')
    value = pg("22P02", "invalid input syntax for type integer: 'connection refused'")
    slow = pg("57014", "canceling statement due to statement timeout")
    broken = pg("42601", "syntax error")
    where = "db:5432/sales"

    def kind(exc: Exception, classes: object, **kw: object) -> type:
        return type(translate_db_error(exc, classes=classes, where=where, **kw))  # type: ignore[arg-type]

    assert kind(refused, INGESTION) is IngestionAuthenticationError
    assert kind(down, INGESTION) is IngestionConnectionError
    assert kind(missing, INGESTION) is InputNotFoundError
    assert kind(broken, INGESTION) is IngestionError
    assert kind(value, INGESTION) is IngestionError
    assert kind(slow, INGESTION) is IngestionTimeoutError
    assert kind(refused, STORAGE) is StorageAuthenticationError
    assert kind(down, STORAGE) is StorageConnectionError
    assert kind(broken, STORAGE) is StorageError
    assert kind(value, STORAGE) is StorageSchemaError
    assert not translate_db_error(value, classes=STORAGE, where=where).transient
    assert translate_db_error(down, classes=STORAGE, where=where).transient
    # a failure while connecting is a connection error unless credentials/database are named
    assert kind(broken, STORAGE, connecting=True) is StorageConnectionError
    assert kind(down, STORAGE, auth=True) is StorageAuthenticationError


def test_messages_name_the_target_never_the_password() -> None:
    register_secret("Pw-In-Text-31")
    exc = psycopg.OperationalError(
        "could not connect to mysql://bob:Url-Pw-77@db:3306/sales\n"
        "password was Pw-In-Text-31\nthird line\nfourth line"
    )
    error = translate_db_error(
        exc, classes=STORAGE, where="db:3306/sales", what="MySQL", user="bob", component="c"
    )
    text = str(error)
    assert "cannot connect to MySQL at db:3306/sales as user 'bob'" in text
    assert "Url-Pw-77" not in text and "Pw-In-Text-31" not in text
    assert "third line" in text and "fourth line" not in text  # three lines by default
    full = translate_db_error(
        exc, classes=INGESTION, where="db:3306/sales", lines=None, type_name=True
    )
    assert str(full).startswith("cannot connect to db:3306/sales: OperationalError: could not")
    assert "fourth line" in str(full) and "Url-Pw-77" not in str(full)
    refused = translate_db_error(
        my(1045, "Access denied for user 'bob'"), classes=INGESTION, where="db:3306/test"
    )
    assert str(refused).startswith("db:3306/test refused the credentials: (1045")
    assert refused.hint and "username and password" in refused.hint
