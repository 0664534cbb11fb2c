"""One way to open a Redis client from a component's connection keys (StreamingSource on Redis,
NoSQLDBStorage with ``db_type: redis``).

With a ``url``, the ``username``, ``password`` and ``db`` given beside it replace the URL's own
(a key left at None keeps the URL's value), as the other platforms' keys do; without one,
``host`` and ``port``. redis-py's ``Redis.from_url`` would let the URL win over every keyword.
"""

from __future__ import annotations

from typing import Any

__all__ = ["redis_client"]


def redis_client(
    redis: Any,
    *,
    url: str | None,
    host: str,
    port: int | None,
    db: int | None,
    username: str | None,
    password: str | None,
    **options: Any,
) -> Any:
    """A ``redis.Redis`` (``redis`` is the imported module); ``options`` go to each connection
    (timeouts, ``retry``, ``decode_responses``)."""
    given = {"username": username, "password": password, "db": db}
    keys = {k: v for k, v in given.items() if v is not None}
    if not url:
        return redis.Redis(host=host, port=port, **{"db": 0, **keys}, **options)
    from redis.connection import parse_url

    settings = {**options, **parse_url(url), **keys}  # type: ignore[no-untyped-call]
    client = redis.Redis(connection_pool=redis.ConnectionPool(**settings))
    client.auto_close_connection_pool = True  # closed with the client, as from_url's
    return client
