"""StreamingSource: Redis Streams against the real Redis on 127.0.0.1:6379."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from data_pipeline.core.errors import (
    ConfigError,
    IngestionConnectionError,
)
from data_pipeline.ingestion.streaming import StreamingSource
from tests.conftest import require_service


@pytest.fixture
def stream() -> Iterator[tuple[Any, str]]:
    require_service("Redis", "127.0.0.1", 6379)
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, decode_responses=True)
    key = f"dp-test-{uuid.uuid4().hex[:10]}"
    for i in range(5):
        client.xadd(
            key,
            {"user": f"u{i}", "amount": str(i * 10), "doc": json.dumps({"city": "Oslo", "n": i})},
        )
    try:
        yield client, key
    finally:
        client.delete(key)
        client.close()


def redis_source(key: str, **config: Any) -> StreamingSource:
    return StreamingSource(
        name="events",
        config={"platform": "redis", "host": "127.0.0.1", "stream": key, "timeout": 0.1, **config},
    )


def test_xread_bounded_batches_continue(stream: tuple[Any, str]) -> None:
    client, key = stream
    src = redis_source(key, max_messages=3)
    first = src.ingest()
    assert first.columns == ["_stream", "_id", "user", "amount", "doc"]
    assert first["user"].to_list() == ["u0", "u1", "u2"]
    assert src.ingest()["user"].to_list() == ["u3", "u4"]
    assert src.ingest().height == 0
    client.xadd(key, {"user": "u5", "amount": "50"})
    assert src.ingest()["user"].to_list() == ["u5"]
    assert src.get_metadata()["details"]["messages"] == 1


def test_decode_json_fields(stream: tuple[Any, str]) -> None:
    _, key = stream
    out = redis_source(key, decode_json=["doc"]).ingest()
    assert out["doc__city"].to_list() == ["Oslo"] * 5
    assert out["doc__n"].to_list() == [0, 1, 2, 3, 4]


def test_consumer_group_acks(stream: tuple[Any, str]) -> None:
    client, key = stream
    group = "g1"
    a = redis_source(key, group=group, consumer="a", max_messages=2)
    b = redis_source(key, group=group, consumer="b", max_messages=10)
    assert a.ingest()["user"].to_list() == ["u0", "u1"]
    assert b.ingest()["user"].to_list() == ["u2", "u3", "u4"]
    assert client.xpending(key, group)["pending"] == 0
    assert a.ingest().height == 0


def test_state_path_persists_position(stream: tuple[Any, str], tmp_path: Path) -> None:
    _, key = stream
    state = str(tmp_path / "pos.json")
    assert redis_source(key, max_messages=4, state_path=state).ingest().height == 4
    assert redis_source(key, state_path=state).ingest()["user"].to_list() == ["u4"]


def test_connection_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = StreamingSource(
        name="e", config={"platform": "redis", "host": "127.0.0.1", "port": port, "stream": "x"}
    )
    with pytest.raises(IngestionConnectionError, match=f"127.0.0.1:{port}"):
        src.ingest()


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="platform"):
        StreamingSource(name="e", config={"platform": "pigeon", "stream": "x"})
    with pytest.raises(ConfigError, match="stream"):
        StreamingSource(name="e", config={"platform": "redis"})
