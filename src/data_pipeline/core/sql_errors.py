"""Translate database driver errors into our error tree, written once for every layer.

A driver error (psycopg, PyMySQL, ADBC, ConnectorX, SQLAlchemy, pymongo, redis, ...) is sorted
by its text into refused credentials, an unreachable server (or a missing database), a missing
table, or another failure, and re-raised as the error class the calling layer chooses: ingestion
raises ``Ingestion*Error``, storage raises ``Storage*Error``. Messages name the target (``what``
at ``host:port/database``) and never the password: the driver's text goes through
:func:`~data_pipeline.core.secrets.redact_text`.

Example:
    >>> from data_pipeline.core.sql_errors import STORAGE, translate_db_error
    >>> error = translate_db_error(
    ...     RuntimeError('FATAL: password authentication failed for user "bob"'),
    ...     classes=STORAGE, where="db:5432/sales", what="PostgreSQL", connecting=True,
    ... )
    >>> type(error).__name__
    'StorageAuthenticationError'
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
    InputNotFoundError,
    StorageAuthenticationError,
    StorageConnectionError,
    StorageError,
)

__all__ = [
    "INGESTION",
    "NO_USER",
    "STORAGE",
    "ErrorClasses",
    "classify_db_error",
    "first_lines",
    "translate_db_error",
]

#: ``user=`` default of :func:`translate_db_error`: the message names no user
NO_USER = object()

_AUTH_FAILURES = (
    "password authentication failed",
    "access denied",
    "authentication failed",
    "no password",
)
_CONNECT_FAILURES = (
    "connection refused",
    "could not connect",
    "can't connect",
    "could not translate host",
    "name or service not known",
    "timeout expired",
    "unknown database",
    "connection to server",
    "lost connection",
    "unable to open database",
)
_MISSING_DATABASE = re.compile(r'database "[^"]*" does not exist')
_MISSING_TABLE = ("no such table", "doesn't exist", "undefinedtable")
_MISSING_RELATION = re.compile(r'relation "[^"]*" does not exist')

Kind = Literal["auth", "connect", "missing", "other"]


@dataclass(frozen=True)
class ErrorClasses:
    """The error classes one layer raises for each kind of driver failure."""

    connection: type[DataPipelineError]
    authentication: type[DataPipelineError]
    other: type[DataPipelineError]
    not_found: type[DataPipelineError] = InputNotFoundError


INGESTION = ErrorClasses(
    connection=IngestionConnectionError,
    authentication=IngestionAuthenticationError,
    other=IngestionError,
)
STORAGE = ErrorClasses(
    connection=StorageConnectionError,
    authentication=StorageAuthenticationError,
    other=StorageError,
)


def first_lines(exc: BaseException, n: int | None = 3) -> str:
    """The first ``n`` lines of an exception's text (all with ``None``), joined on one line."""
    text = str(exc).strip()
    lines = text.splitlines() if n is None else text.splitlines()[:n]
    return " ".join(line.strip() for line in lines)


def classify_db_error(text: str) -> Kind:
    """``auth``, ``connect`` (server or database unreachable), ``missing`` (table) or ``other``."""
    lower = text.lower()
    if any(k in lower for k in _AUTH_FAILURES):
        return "auth"
    if any(k in lower for k in _CONNECT_FAILURES) or _MISSING_DATABASE.search(lower):
        return "connect"
    if any(k in lower for k in _MISSING_TABLE) or _MISSING_RELATION.search(lower):
        return "missing"
    return "other"


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
        auth: ``True``/``False`` forces refused credentials / a connection failure; ``None``
            detects them from the (redacted) text.
        connecting: the error came from opening the connection, so anything that is not
            refused credentials is a connection failure (no missing-table or query kind).
        lines: keep this many lines of the driver's text (``None``: all).
        type_name: start the driver's text with the exception's class name.
    """
    from data_pipeline.core.secrets import redact_text

    text = first_lines(exc, lines)
    if type_name:
        text = f"{type(exc).__name__}: {text}"
    text = redact_text(text).strip()
    kind: Kind = classify_db_error(text)
    if auth is not None:
        kind = "auth" if auth else "connect"
    elif connecting and kind != "auth":
        kind = "connect"
    target = f"{what} at {where}" if what else where
    who = "" if user is NO_USER else f" as user {user!r}"
    if kind == "auth":
        return classes.authentication(
            f"{target}{who} refused the credentials: {text}",
            component=component,
            hint="check username and password in the config",
        )
    if kind == "connect":
        return classes.connection(
            f"cannot connect to {target}{who}: {text}",
            component=component,
            hint="check host, port and database in the config, and that the server is running",
        )
    if kind == "missing":
        return classes.not_found(
            f"table or view not found on {target}: {text}",
            component=component,
            hint="check 'table'/'schema' or the query",
        )
    return classes.other(f"query on {target} failed: {text}", component=component)
