"""Redis Streams for :class:`StreamingSource`: XREAD / XREADGROUP into a bounded frame."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from data_pipeline.core.deps import import_optional
from data_pipeline.core.errors import IngestionAuthenticationError, IngestionConnectionError
from data_pipeline.ingestion._common import flatten_structs

if TYPE_CHECKING:
    import polars as pl

    from data_pipeline.ingestion.streaming.source import StreamingSource

__all__ = ["read_batch"]


def _client(source: StreamingSource) -> Any:
    redis = import_optional("redis", extra="redis", feature="Redis Streams")
    s = source.settings
    password = s.password.get_secret_value() if s.password else None
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    common = {
        "socket_connect_timeout": 5,
        "decode_responses": True,
        "retry": Retry(NoBackoff(), 0),  # fail fast; the caller decides when to try again
    }
    if s.url:
        return redis.Redis.from_url(s.url, **common)
    return redis.Redis(
        host=s.host, port=source.port, db=s.db, username=s.username, password=password, **common
    )


def read_batch(source: StreamingSource) -> pl.DataFrame:
    """At most ``max_messages`` entries, waiting at most ``timeout`` seconds for more."""
    import polars as pl
    import redis

    s = source.settings
    streams = [s.stream] if isinstance(s.stream, str) else list(s.stream)
    client = _client(source)
    positions = source.positions()
    rows: list[dict[str, Any]] = []
    block = int(s.timeout * 1000) or None  # Redis treats BLOCK 0 as "forever": never send it
    try:
        if s.group:
            for stream in streams:
                try:
                    client.xgroup_create(stream, s.group, id=s.start_id, mkstream=True)
                except redis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
        while len(rows) < s.max_messages:
            count = s.max_messages - len(rows)
            if s.group:
                reply = client.xreadgroup(
                    s.group, s.consumer, dict.fromkeys(streams, ">"), count=count, block=block
                )
            else:
                ids = {st: positions.get(st, s.start_id) for st in streams}
                reply = client.xread(ids, count=count, block=block)
            got = 0
            for stream, entries in reply or []:
                for entry_id, fields in entries:
                    rows.append({"_stream": stream, "_id": entry_id, **fields})
                    got += 1
                if entries and not s.group:
                    positions[stream] = entries[-1][0]
            if not got:  # nothing arrived within the timeout: the batch is complete
                break
        if s.group and s.ack and rows:
            by_stream: dict[str, list[str]] = {}
            for row in rows:
                by_stream.setdefault(row["_stream"], []).append(row["_id"])
            for stream, entry_ids in by_stream.items():
                client.xack(stream, s.group, *entry_ids)
    except redis.AuthenticationError as exc:
        raise IngestionAuthenticationError(
            f"Redis at {s.host}:{source.port} refused the credentials: {exc}",
            component=source.label,
            hint="check username and password",
        ) from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise IngestionConnectionError(
            f"cannot connect to Redis at {s.host}:{source.port}: {exc}",
            component=source.label,
            hint="check host and port, and that Redis is running",
        ) from None
    finally:
        client.close()
    if not s.group:
        source.save_positions()
    source.current_operation.details["messages"] = len(rows)
    if not rows:
        return pl.DataFrame(schema={"_stream": pl.String, "_id": pl.String})
    frame = pl.from_dicts(rows, infer_schema_length=None)
    if s.decode_json:
        for column in [c for c in s.decode_json if c in frame.columns]:
            lines = "\n".join(v if v else "{}" for v in frame[column].to_list())
            decoded = pl.read_ndjson(lines.encode(), infer_schema_length=None)
            frame = frame.with_columns(decoded.to_struct(column))
        frame = flatten_structs(frame)
    return frame
