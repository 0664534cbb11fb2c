"""A logger per module, and secrets masked in every record that can carry a URL or header of ours.

The records of our own loggers (``data_pipeline.*``) and of every library we drive that may log
a URL, a header, a connection string or a query with its parameters (httpx, httpcore, urllib3,
fsspec, s3fs, gcsfs, aiohttp, botocore, the database drivers, the broker clients) are cleaned by
:func:`~data_pipeline.core.secrets.redact_record` when they are created, whatever handler later
writes them and at every level. A logger filter would not do: it sees only the records of the
logger it is attached to, not those of its children (``botocore.endpoint``,
``httpcore.http11``), and handlers belong to the application.

The cleaning is installed once, when :mod:`data_pipeline` is imported, as a wrapper around the
current log record factory (it keeps any factory installed before it).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from data_pipeline.core.secrets import redact_record

__all__ = ["REDACTED_LOGGERS", "get_logger", "install_log_redaction"]

#: the logger trees whose records are cleaned (a record of ``httpcore.http11`` belongs to ``httpcore``)
REDACTED_LOGGERS: frozenset[str] = frozenset(
    {
        "data_pipeline",
        # HTTP and remote files
        "httpx", "httpcore", "h11", "h2", "hpack", "urllib3", "requests", "fsspec", "s3fs",
        "gcsfs", "adlfs", "aiohttp", "botocore", "boto3", "aiobotocore", "s3transfer", "google",
        "google_auth_httplib2", "oauthlib", "requests_oauthlib",
        # databases
        "psycopg", "psycopg2", "psycopg_pool", "pymysql", "MySQLdb", "mysql", "sqlalchemy",
        "adbc_driver_manager", "adbc_driver_postgresql", "connectorx", "pymongo", "montydb",
        "duckdb", "deltalake",
        # brokers and Spark
        "redis", "pika", "aio_pika", "aiormq", "paho", "nats", "confluent_kafka", "kafka",
        "py4j", "pyspark",
    }
)  # fmt: skip

_install_lock = threading.Lock()
_installed = False


def install_log_redaction() -> None:
    """Clean every record of :data:`REDACTED_LOGGERS` as it is created (idempotent)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if record.name.split(".", 1)[0] in REDACTED_LOGGERS:
                redact_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


def get_logger(name: str) -> logging.Logger:
    """``get_logger(__name__)`` -> the module's logger (its records are cleaned of secrets)."""
    install_log_redaction()
    return logging.getLogger(name)


install_log_redaction()
