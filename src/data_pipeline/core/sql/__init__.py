"""One SQL access layer for every relational component (``DatabaseSource``, ``RelationalDBStorage``).

* :mod:`~data_pipeline.core.sql.config`: the one connection model (a URL or the spec's keys)
  and what it resolves to (dialect, parts, driver URIs, JDBC URL and properties).
* :mod:`~data_pipeline.core.sql.params`: ``:name`` parameters and a dict, on every database.
* :mod:`~data_pipeline.core.sql.dialects`: quoting, identifier limits, DDL types, native upserts.
* :mod:`~data_pipeline.core.sql.connect`: driver connections that honour ``connect_timeout``.
* :mod:`~data_pipeline.core.sql.read`: Arrow reads, with or without parameters.
* :mod:`data_pipeline.core.sql_errors`: driver errors mapped by class and SQLSTATE / error code.

Nothing here imports a database driver until it is used.
"""

from __future__ import annotations

from data_pipeline.core.sql.config import SQLConnectionConfig, SQLTarget, resolve
from data_pipeline.core.sql.connect import connect
from data_pipeline.core.sql.dialects import Dialect, ddl_type, dialect
from data_pipeline.core.sql.params import bind, check_params
from data_pipeline.core.sql.read import choose_path, read_arrow

__all__ = [
    "Dialect",
    "SQLConnectionConfig",
    "SQLTarget",
    "bind",
    "check_params",
    "choose_path",
    "connect",
    "ddl_type",
    "dialect",
    "read_arrow",
    "resolve",
]
