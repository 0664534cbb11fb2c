"""Config templates for the ingestion layer (plain dicts, as in the spec).

Copy one, change the values, and pass it as ``config=`` to the matching source class.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "database_config",
    "database_url_config",
    "file_system_config",
    "rest_api_config",
    "rest_api_paginated_config",
    "streaming_config",
]

rest_api_config: dict[str, Any] = {
    "url": "https://api.example.com/data",
    "method": "GET",
    "headers": {
        "Authorization": "Bearer YOUR_API_KEY",
        "Content-Type": "application/json",
    },
    "params": {
        "limit": 100,
        "offset": 0,
    },
    "timeout": 30,
}
"""The spec's REST API source (``RESTAPISource``)."""

rest_api_paginated_config: dict[str, Any] = {
    "url": "https://api.example.com/orders",
    "auth": {"type": "bearer", "token": "${API_TOKEN}"},
    "data_selector": "data",
    "pagination": {"type": "offset", "limit": 100, "total_path": "meta.total"},
    "max_concurrency": 8,
    "retry": {"max_attempts": 5, "backoff_factor": 0.5},
    "rate_limit": 20,
    "timeout": 30,
}
"""A paginated, authenticated REST API read concurrently (``RESTAPISource``)."""

database_config: dict[str, Any] = {
    "db_type": "postgresql",
    "host": "db.example.com",
    "port": 5432,
    "database": "customers",
    "username": "user",
    "password": "pass",
    "query": "SELECT * FROM customers WHERE created_at >= :since",
    "params": {"since": "2024-01-01"},
}
"""A database read by query with bound parameters (``DatabaseSource``)."""

database_url_config: dict[str, Any] = {
    "url": "sqlite:///data/app.db",
    "table": "orders",
    "columns": ["id", "customer_id", "amount"],
    "where": "amount > 0",
    "chunk_size": 100_000,
}
"""A table read in batches through a SQLAlchemy URL (``DatabaseSource``)."""

file_system_config: dict[str, Any] = {
    "path": "data/sales_*.csv",
    "format": "auto",
    "delimiter": ",",
    "encoding": "utf-8",
    "null_values": ["", "NA"],
    "source_file_column": "source_file",
    "on_bad_rows": "reject",
    "reject_path": "rejects/sales.csv",
}
"""CSV files matched by a glob (``FileSystemSource``)."""

streaming_config: dict[str, Any] = {
    "platform": "redis",
    "host": "localhost",
    "port": 6379,
    "stream": "events",
    "max_messages": 1000,
    "timeout": 5,
}
"""A bounded batch from a Redis stream (``StreamingSource``)."""
