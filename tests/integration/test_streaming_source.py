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


def test_consumer_group_acks_when_the_next_batch_is_asked_for(stream: tuple[Any, str]) -> None:
    client, key = stream
    group = "g1"
    a = redis_source(key, group=group, consumer="a", max_messages=2)
    b = redis_source(key, group=group, consumer="b", max_messages=10)
    assert a.ingest()["user"].to_list() == ["u0", "u1"]
    assert b.ingest()["user"].to_list() == ["u2", "u3", "u4"]
    # read on its own, a batch stays pending until the caller comes back for more
    assert client.xpending(key, group)["pending"] == 5
    assert a.ingest().height == 0
    assert client.xpending(key, group)["pending"] == 3
    b.close()
    assert client.xpending(key, group)["pending"] == 0
    a.close()


def test_group_rereads_its_pending_entries_after_a_crash(stream: tuple[Any, str]) -> None:
    """A process that read a batch and died before acknowledging: the next one (same consumer)
    reads those entries again, first."""
    client, key = stream
    first = redis_source(key, group="g", consumer="c", max_messages=3)
    assert first.ingest()["user"].to_list() == ["u0", "u1", "u2"]
    first.reader().close()  # dies: no acknowledgement
    with redis_source(key, group="g", consumer="c", max_messages=10) as again:
        assert again.ingest()["user"].to_list() == ["u0", "u1", "u2", "u3", "u4"]
    assert client.xpending(key, "g")["pending"] == 0


def test_group_claims_a_dead_consumers_entries(stream: tuple[Any, str]) -> None:
    import time

    client, key = stream
    dead = redis_source(key, group="g", consumer="dead", max_messages=2)
    assert dead.ingest()["user"].to_list() == ["u0", "u1"]
    dead.reader().close()
    time.sleep(0.3)
    with redis_source(key, group="g", consumer="alive", claim_idle=0.2) as alive:
        assert sorted(alive.ingest()["user"].to_list()) == ["u0", "u1", "u2", "u3", "u4"]
    assert client.xpending(key, "g")["pending"] == 0


def test_committed_entries_still_pending_are_dropped(stream: tuple[Any, str]) -> None:
    """The process died between the checkpoint commit and XACK: the restored source
    acknowledges the committed entries instead of delivering them again."""
    client, key = stream
    first = redis_source(key, group="g", consumer="c", max_messages=2)
    first.restore(None)
    assert first.ingest()["user"].to_list() == ["u0", "u1"]
    committed = first.checkpoint_state()
    first.reader().close()  # committed, then died before acknowledging
    again = redis_source(key, group="g", consumer="c")
    again.restore(committed)
    out = again.ingest()
    assert out["user"].to_list() == ["u2", "u3", "u4"]
    assert again.get_metadata()["details"]["duplicates_dropped"] == 2
    again.acknowledge()
    again.close()
    assert client.xpending(key, "g")["pending"] == 0


def test_state_path_persists_position(stream: tuple[Any, str], tmp_path: Path) -> None:
    _, key = stream
    state = str(tmp_path / "pos.json")
    with redis_source(key, max_messages=4, state_path=state) as first:
        assert first.ingest().height == 4
    with redis_source(key, state_path=state) as second:
        assert second.ingest()["user"].to_list() == ["u4"]


def test_state_path_not_saved_when_the_block_fails(stream: tuple[Any, str], tmp_path: Path) -> None:
    _, key = stream
    state = str(tmp_path / "pos.json")
    with pytest.raises(RuntimeError), redis_source(key, max_messages=4, state_path=state) as src:
        src.ingest()
        raise RuntimeError("the batch was not processed")
    with redis_source(key, state_path=state) as again:
        assert again.ingest().height == 5


def test_decode_json_bad_rows_follow_on_bad_rows(stream: tuple[Any, str], tmp_path: Path) -> None:
    from data_pipeline.core.errors import ParseError

    client, key = stream
    client.xadd(key, {"user": "bad", "amount": "0", "doc": "{not json"})
    client.xadd(key, {"user": "list", "amount": "0", "doc": "[1, 2]"})
    with pytest.raises(ParseError, match="not JSON"):
        redis_source(key, decode_json=["doc"]).ingest()
    rejects = tmp_path / "rejects.csv"
    src = redis_source(key, decode_json=["doc"], on_bad_rows="reject", reject_path=str(rejects))
    out = src.ingest()
    assert out["user"].to_list() == ["u0", "u1", "u2", "u3", "u4"]
    assert out["doc__n"].to_list() == [0, 1, 2, 3, 4]
    meta = src.get_metadata()
    assert (meta["rows_in"], meta["rows_out"], meta["rows_rejected"]) == (7, 5, 2)
    import polars as pl

    rejected = pl.read_csv(rejects)
    assert rejected["raw"].to_list() == ["{not json", "[1, 2]"]
    assert "not an object" in rejected["reason"][1]


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


def test_url_with_username_password_and_db_keys(stream: tuple[Any, str]) -> None:
    """Beside a ``url`` the username, password and db keys replace the URL's, as on the other
    platforms (Redis read the URL alone: the keys were silently ignored)."""
    client, _ = stream
    user, secret = f"dp-test-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    key = f"dp-test-{uuid.uuid4().hex[:10]}"
    client.execute_command("ACL", "SETUSER", user, "on", f">{secret}", f"~{key}", "+@all")
    import redis

    in_db3 = redis.Redis(host="127.0.0.1", port=6379, db=3)
    for i in range(2):
        in_db3.xadd(key, {"user": f"v{i}"})
    try:
        url = "redis://nobody:wrong-password@127.0.0.1:6379/0"
        keys = redis_source(key, url=url, username=user, password=secret, db=3)
        assert keys.ingest()["user"].to_list() == ["v0", "v1"]
        # a key not given keeps the URL's: db 3 from the URL, the user from the keys
        from_url = redis_source(key, url="redis://127.0.0.1:6379/3", username=user, password=secret)
        assert from_url.ingest()["user"].to_list() == ["v0", "v1"]
    finally:
        in_db3.delete(key)
        in_db3.close()
        client.execute_command("ACL", "DELUSER", user)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="platform"):
        StreamingSource(name="e", config={"platform": "pigeon", "stream": "x"})
    with pytest.raises(ConfigError, match="stream"):
        StreamingSource(name="e", config={"platform": "redis"})


def test_a_field_that_is_not_utf8_is_a_bad_row(stream: tuple[Any, str], tmp_path: Path) -> None:
    from data_pipeline.core.errors import ParseError

    client, key = stream
    client.xadd(key, {"user": b"\xff\xfe", "amount": "1"})
    with pytest.raises(ParseError, match="not UTF-8"):
        redis_source(key).ingest()
    src = redis_source(key, on_bad_rows="reject", reject_path=str(tmp_path / "bad.csv"))
    out = src.ingest()
    assert out["user"].to_list() == ["u0", "u1", "u2", "u3", "u4"]
    assert src.get_metadata()["rows_rejected"] == 1
