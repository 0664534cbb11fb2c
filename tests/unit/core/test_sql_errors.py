"""One translation of database driver errors for ingestion and storage."""

from __future__ import annotations

import pytest

from data_pipeline.core.errors import (
    IngestionAuthenticationError,
    IngestionConnectionError,
    IngestionError,
    InputNotFoundError,
    StorageAuthenticationError,
    StorageConnectionError,
    StorageError,
)
from data_pipeline.core.secrets import register_secret
from data_pipeline.core.sql_errors import (
    INGESTION,
    STORAGE,
    classify_db_error,
    translate_db_error,
)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('FATAL:  password authentication failed for user "bob"', "auth"),
        ("(1045, \"Access denied for user 'root'@'localhost' (using password: YES)\")", "auth"),
        ("fe_sendauth: no password supplied", "auth"),
        ('connection to server at "127.0.0.1", port 1 failed: Connection refused', "connect"),
        ("(2003, \"Can't connect to MySQL server on '127.0.0.1'\")", "connect"),
        ('FATAL:  database "nope" does not exist', "connect"),
        ("(1049, \"Unknown database 'nope'\")", "connect"),
        ('relation "missing" does not exist', "missing"),
        ("(1146, \"Table 'test.nope' doesn't exist\")", "missing"),
        ("no such table: nope", "missing"),
        ('syntax error at or near "SELEC"', "other"),
    ],
)
def test_classify(text: str, kind: str) -> None:
    assert classify_db_error(text) == kind


def test_each_layer_gets_its_own_classes() -> None:
    refused = RuntimeError('FATAL: password authentication failed for user "bob"')
    down = RuntimeError("connection refused")
    missing = RuntimeError('relation "t" does not exist')
    broken = RuntimeError("division by zero")
    where = "db:5432/sales"
    assert type(translate_db_error(refused, classes=INGESTION, where=where)) is (
        IngestionAuthenticationError
    )
    assert type(translate_db_error(down, classes=INGESTION, where=where)) is (
        IngestionConnectionError
    )
    assert type(translate_db_error(missing, classes=INGESTION, where=where)) is InputNotFoundError
    assert type(translate_db_error(broken, classes=INGESTION, where=where)) is IngestionError
    assert type(translate_db_error(refused, classes=STORAGE, where=where)) is (
        StorageAuthenticationError
    )
    assert type(translate_db_error(down, classes=STORAGE, where=where)) is StorageConnectionError
    assert type(translate_db_error(broken, classes=STORAGE, where=where)) is StorageError
    # a failure while connecting is a connection error unless the credentials were refused
    assert (
        type(translate_db_error(broken, classes=STORAGE, where=where, connecting=True))
        is StorageConnectionError
    )
    assert (
        type(translate_db_error(down, classes=STORAGE, where=where, auth=True))
        is StorageAuthenticationError
    )


def test_messages_name_the_target_never_the_password() -> None:
    register_secret("Pw-In-Text-31")
    exc = RuntimeError(
        "could not connect to postgresql://bob:Url-Pw-77@db:5432/sales\n"
        "password was Pw-In-Text-31\nthird line\nfourth line"
    )
    error = translate_db_error(
        exc, classes=STORAGE, where="db:5432/sales", what="PostgreSQL", user="bob", component="c"
    )
    text = str(error)
    assert "cannot connect to PostgreSQL at db:5432/sales as user 'bob'" in text
    assert "Url-Pw-77" not in text and "Pw-In-Text-31" not in text
    assert "third line" in text and "fourth line" not in text  # three lines by default
    full = translate_db_error(
        exc, classes=INGESTION, where="db:5432/sales", lines=None, type_name=True
    )
    assert str(full).startswith("cannot connect to db:5432/sales: RuntimeError: could not")
    assert "fourth line" in str(full) and "Url-Pw-77" not in str(full)
    refused = translate_db_error(
        RuntimeError("Access denied for user 'bob'"), classes=INGESTION, where="db:3306/test"
    )
    assert str(refused).startswith("db:3306/test refused the credentials: Access denied")
    assert refused.hint == "check username and password in the config"
