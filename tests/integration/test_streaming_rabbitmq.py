"""StreamingSource on RabbitMQ, against the real broker on 127.0.0.1:5672 (guest/guest).

Each test declares its own queues (deleted afterwards) and publishes through the default
exchange, with a ``message_id`` per message unless the test says otherwise.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from data_pipeline.core.errors import (
    ConfigError,
    IngestionAuthenticationError,
    IngestionConnectionError,
    InputNotFoundError,
    ParseError,
)
from data_pipeline.ingestion.streaming import StreamingSource
from tests.conftest import require_service
from tests.integration.stream_windows import assert_windows_match_sql, sensor_readings

URL = "amqp://guest:guest@127.0.0.1:5672/"
DOC = Path(__file__).resolve().parents[2] / "docs" / "ingestion.md"


class Broker:
    """Queues of their own for one test: declare, publish, count, delete."""

    def __init__(self) -> None:
        import pika

        self._pika = pika
        self.connection = pika.BlockingConnection(pika.URLParameters(URL))
        self.channel = self.connection.channel()
        self.queues: list[str] = []
        self.sent = 0

    def queue(self) -> str:
        name = f"dp-test-{uuid.uuid4().hex[:10]}"
        self.channel.queue_declare(queue=name, durable=False)
        self.queues.append(name)
        return name

    def publish(
        self, queue: str, payloads: list[Any], *, ids: bool = True, timestamp: int | None = None
    ) -> list[str]:
        """Publish dicts (as JSON) or bytes; the message ids given to them."""
        given = []
        for payload in payloads:
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.sent += 1
            message_id = f"m{self.sent}" if ids else None
            props = self._pika.BasicProperties(message_id=message_id, timestamp=timestamp)
            self.channel.basic_publish(exchange="", routing_key=queue, body=body, properties=props)
            given.append(message_id or "")
        return given

    def depth(self, queue: str) -> int:
        count: int = self.channel.queue_declare(queue=queue, passive=True).method.message_count
        return count

    def close(self) -> None:
        for queue in self.queues:
            self.channel.queue_delete(queue=queue)
        self.connection.close()


@pytest.fixture
def broker() -> Iterator[Broker]:
    require_service("RabbitMQ", "127.0.0.1", 5672)
    b = Broker()
    try:
        yield b
    finally:
        b.close()


def rabbit_source(queue: str | list[str], **config: Any) -> StreamingSource:
    return StreamingSource(
        name="events",
        config={"platform": "rabbitmq", "url": URL, "queue": queue, "timeout": 0.2, **config},
    )


def records(n: int) -> list[dict[str, Any]]:
    return [{"n": i, "user": {"name": f"u{i}", "tier": i % 3}, "amount": i * 1.5} for i in range(n)]


# -- bounded batches ---------------------------------------------------------------------------


def test_bounded_batches_continue_with_nothing_lost_or_doubled(broker: Broker) -> None:
    queue = broker.queue()
    sent = records(23)
    ids = broker.publish(queue, sent, timestamp=1_717_243_200)
    src = rabbit_source(queue, max_messages=5)
    batches = list(src.batches(max_batches=100))
    assert [b.height for b in batches] == [5, 5, 5, 5, 3]
    got = pl.concat(batches)
    assert got.columns == [
        "_stream",
        "_id",
        "_routing_key",
        "_timestamp",
        "_redelivered",
        "n",
        "user__name",
        "user__tier",
        "amount",
    ]
    assert got["_id"].to_list() == ids
    assert got["_stream"].unique().to_list() == [queue]
    assert got["_routing_key"].unique().to_list() == [queue]
    assert got["_timestamp"].unique().to_list() == [dt.datetime(2024, 6, 1, 12, tzinfo=dt.UTC)]
    assert not got["_redelivered"].any()
    assert got.select("n", "user__name", "user__tier", "amount").to_dicts() == [
        {"n": r["n"], "user__name": r["user"]["name"], "user__tier": r["user"]["tier"],
         "amount": r["amount"]}
        for r in sent
    ]  # fmt: skip
    assert broker.depth(queue) == 0
    more = broker.publish(queue, [{"n": 100}, {"n": 101}])
    later = src.ingest()
    assert later["_id"].to_list() == more
    assert src.get_metadata()["details"]["messages"] == 2
    assert src.ingest().height == 0


def test_several_queues_and_competing_sources(broker: Broker) -> None:
    a, b = broker.queue(), broker.queue()
    ids = broker.publish(a, records(6)) + broker.publish(b, records(4))
    first = rabbit_source([a, b], max_messages=7).ingest()
    second = rabbit_source([a, b], max_messages=7).ingest()  # another consumer of the same queues
    assert first.height == 7 and second.height == 3
    assert sorted(first["_id"].to_list() + second["_id"].to_list()) == sorted(ids)
    assert set(first["_stream"].to_list() + second["_stream"].to_list()) == {a, b}
    assert broker.depth(a) == broker.depth(b) == 0


def test_without_message_id_the_id_is_the_delivery_tag(broker: Broker) -> None:
    queue = broker.queue()
    broker.publish(queue, records(3), ids=False)
    out = rabbit_source(queue).ingest()
    assert out["_id"].to_list() == ["1", "2", "3"]
    assert out["_timestamp"].null_count() == 3


# -- payloads ------------------------------------------------------------------------------------


def test_payload_text_and_bytes(broker: Broker) -> None:
    queue = broker.queue()
    raw = [b"hello", "h\u00e9 \u2603".encode(), b"", b"\x00\xff\x10"]
    broker.publish(queue, raw)
    with rabbit_source(queue, payload="bytes", ack=False) as peek:  # returned at the end
        as_bytes = peek.ingest()
    assert as_bytes.schema["payload"] == pl.Binary
    assert as_bytes["payload"].to_list() == raw
    as_text = rabbit_source(queue, payload="text", max_messages=3).ingest()
    assert as_text["payload"].to_list() == ["hello", "h\u00e9 \u2603", ""]


@pytest.mark.parametrize("mode", ["error", "skip", "reject"])
def test_bad_payload_follows_on_bad_rows(broker: Broker, tmp_path: Path, mode: str) -> None:
    queue = broker.queue()
    ids = broker.publish(queue, [{"n": 0}, b"{not json", {"n": 2}, b"[1, 2]", {"n": 4}])
    rejects = tmp_path / "rejects.csv"
    src = rabbit_source(queue, on_bad_rows=mode, reject_path=str(rejects))
    if mode == "error":
        with pytest.raises(ParseError, match=rf"message '{ids[1]}' of '{queue}'"), src:
            src.ingest()
        assert broker.depth(queue) == 5  # nothing acknowledged
        return
    out = src.ingest()
    assert out["n"].to_list() == [0, 2, 4]
    assert out["_id"].to_list() == [ids[0], ids[2], ids[4]]
    meta = src.get_metadata()
    assert (meta["rows_in"], meta["rows_out"], meta["rows_rejected"]) == (5, 3, 2)
    assert broker.depth(queue) == 0  # bad messages are handled, so acknowledged too
    if mode == "skip":
        assert meta["details"]["rows_skipped"] == 2
        assert not rejects.exists()
    else:
        with rejects.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [(r["stream"], r["id"], r["raw"]) for r in rows] == [
            (queue, ids[1], "{not json"),
            (queue, ids[3], "[1, 2]"),
        ]
        assert "not JSON" in rows[0]["reason"] and "list" in rows[1]["reason"]


# -- acknowledgements ----------------------------------------------------------------------------


def test_failure_before_ack_leaves_messages_in_the_queue(broker: Broker) -> None:
    queue = broker.queue()
    ids = broker.publish(queue, [{"n": 0}, {"n": 1}, b"oops", {"n": 3}])
    with pytest.raises(ParseError, match="oops"), rabbit_source(queue, on_bad_rows="error") as src:
        src.ingest()
    assert broker.depth(queue) == 4
    again = rabbit_source(queue, on_bad_rows="skip").ingest()
    assert again["_id"].to_list() == [ids[0], ids[1], ids[3]]
    assert again["_redelivered"].all()
    assert broker.depth(queue) == 0


def test_ack_false_peeks_and_a_later_ack_consumes(broker: Broker) -> None:
    queue = broker.queue()
    ids = broker.publish(queue, records(4))
    peek = rabbit_source(queue, ack=False)
    assert peek.ingest()["_id"].to_list() == ids
    assert peek.ingest()["_id"].to_list() == ids
    peek.close()  # returned, not acknowledged
    assert broker.depth(queue) == 4
    take = rabbit_source(queue, max_messages=3)
    taken = take.ingest()
    assert taken["_id"].to_list() == ids[:3] and taken["_redelivered"].all()
    assert take.ingest()["_id"].to_list() == ids[3:]
    assert broker.depth(queue) == 0


# -- config and errors -----------------------------------------------------------------------------


def test_groups_are_refused() -> None:
    with pytest.raises(ConfigError, match="'group' has no meaning for RabbitMQ"):
        rabbit_source("q", group="g").ingest()


@pytest.mark.parametrize(("key", "value"), [("state_path", "s.json"), ("start_id", "$")])
def test_positions_are_refused_for_classic_queues(broker: Broker, key: str, value: str) -> None:
    src = rabbit_source(broker.queue(), **{key: value})
    with pytest.raises(ConfigError, match=f"'{key}' has no meaning for the classic queue"):
        src.ingest()


def test_missing_queue_is_input_not_found() -> None:
    require_service("RabbitMQ", "127.0.0.1", 5672)
    queue = f"dp-missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(InputNotFoundError, match=re.escape(queue)) as info:
        rabbit_source(queue).ingest()
    assert "declare the queue" in str(info.value)


def test_connection_refused_names_host_and_port_without_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = rabbit_source("q", url=f"amqp://guest:s3cret-pw@127.0.0.1:{port}/")
    with pytest.raises(IngestionConnectionError, match=rf"127\.0\.0\.1:{port}") as info:
        src.ingest()
    assert "s3cret-pw" not in str(info.value)
    assert "s3cret-pw" not in json.dumps(src.get_metadata(), default=str)


def test_bad_credentials() -> None:
    require_service("RabbitMQ", "127.0.0.1", 5672)
    wrong = StreamingSource(
        name="e",
        config={"platform": "rabbitmq", "host": "127.0.0.1", "queue": "q", "username": "guest",
                "password": "not-the-password"},
    )  # fmt: skip
    with pytest.raises(IngestionAuthenticationError, match=r"127\.0\.0\.1:5672") as info:
        wrong.ingest()
    assert "not-the-password" not in str(info.value)
    in_url = rabbit_source("q", url="amqp://guest:nope@127.0.0.1:5672/")
    with pytest.raises(IngestionAuthenticationError):
        in_url.ingest()


def test_url_credentials_and_keys(broker: Broker) -> None:
    """Beside a ``url`` each key replaces only its part of the URL's credentials: a username
    alone keeps the URL's password (it was replaced by "" and the broker refused the login)."""
    for url, keys in [
        ("amqp://nobody:guest@127.0.0.1:5672/", {"username": "guest"}),
        ("amqp://guest:nope@127.0.0.1:5672/", {"password": "guest"}),
    ]:
        queue = broker.queue()
        ids = broker.publish(queue, records(2))
        assert rabbit_source(queue, url=url, **keys).ingest()["_id"].to_list() == ids, keys
    wrong = rabbit_source(queue, url=URL, username="guest", password="not-the-password")
    with pytest.raises(IngestionAuthenticationError):
        wrong.ingest()


def test_host_port_and_options(broker: Broker) -> None:
    queue = broker.queue()
    ids = broker.publish(queue, records(2))
    src = StreamingSource(
        name="e",
        config={"platform": "rabbitmq", "host": "127.0.0.1", "port": 5672, "queue": queue,
                "username": "guest", "password": "guest", "timeout": 0.2,
                "options": {"heartbeat": 30, "virtual_host": "/"}},
    )  # fmt: skip
    assert src.ingest()["_id"].to_list() == ids
    with pytest.raises(ConfigError, match=r"options\.no_such_thing"):
        rabbit_source(queue, options={"no_such_thing": 1}).ingest()
    with pytest.raises(IngestionAuthenticationError, match="virtual host"):
        rabbit_source(queue, options={"virtual_host": "dp-no-such-vhost"}).ingest()


# -- into a StreamProcessor --------------------------------------------------------------------


def test_batches_feed_a_windowed_stream_processor(broker: Broker) -> None:
    queue = broker.queue()
    sent = sensor_readings()
    broker.publish(queue, sent)
    assert_windows_match_sql(rabbit_source(queue, max_messages=10), sent)


# -- the docs example ----------------------------------------------------------------------------


def test_docs_example_config_reads(broker: Broker, tmp_path: Path) -> None:
    """The RabbitMQ block of docs/ingestion.md builds; its config reads this test's queue."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### RabbitMQ", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    documented: StreamingSource = namespace["rabbit_orders"]
    queue = broker.queue()
    config = {
        **documented.config,
        "url": URL,
        "queue": queue,
        "timeout": 0.2,
        "reject_path": str(tmp_path / "rejects.csv"),
    }
    ids = broker.publish(queue, [*records(2), b"not json"])
    out = StreamingSource(name="rabbit_orders", config=config).ingest()
    assert out["_id"].to_list() == ids[:2]
    assert (tmp_path / "rejects.csv").exists()


def test_a_long_heartbeat_keeps_the_ids_a_restart_found_for_longer(
    broker: Broker, tmp_path: Path
) -> None:
    """The broker notices a dead host after about two heartbeat timeouts: the ids of an earlier
    run's last batch are kept for three heartbeats plus a minute when that is over 10 minutes
    (a 900 s heartbeat kept them 600 s: a batch requeued after that was stored twice), and a
    connection without heartbeats is refused on a classic queue read with acknowledgements."""
    from data_pipeline.core.checkpoint import Checkpointer

    queue = broker.queue()
    broker.publish(queue, records(3))
    first = rabbit_source(queue, max_messages=3)
    job = Checkpointer("rabbit-heartbeat", tmp_path, sources={"events": first})
    job.restore()
    ids = first.ingest()["_id"].to_list()
    with job.commit():
        pass
    first.close()
    for heartbeat, wait in [(30, 600.0), (900, 2760.0)]:
        src = rabbit_source(queue, max_messages=3, options={"heartbeat": heartbeat})
        again = Checkpointer("rabbit-heartbeat", tmp_path, sources={"events": src})
        before = time.time()
        again.restore()
        assert src.ingest().height == 0  # connects: the agreed heartbeat is known
        (until, kept), *_ = src.checkpoint_state()["carried"]
        assert kept == ids
        assert before + wait <= until <= time.time() + wait, heartbeat
        src.close()
    with pytest.raises(ConfigError, match="no heartbeat"):
        rabbit_source(queue, options={"heartbeat": 0}).ingest()
    peek = rabbit_source(queue, ack=False, options={"heartbeat": 0})
    assert peek.ingest().height == 0  # nothing acknowledged, nothing to keep: allowed
    peek.close()


def test_a_committed_batch_requeued_late_is_dropped(broker: Broker, tmp_path: Path) -> None:
    """Job 1 commits batch A and its host dies before the ack: the broker notices only later
    (heartbeat) and requeues A after job 2 committed batch B. A is dropped, by job 2 and by a
    job 3 restarted from job 2's checkpoint (which kept only B's ids: A was stored twice)."""
    from data_pipeline.core.checkpoint import Checkpointer

    queue = broker.queue()

    def start() -> tuple[StreamingSource, Checkpointer]:
        src = rabbit_source(queue, max_messages=3)
        job = Checkpointer("rabbit-job", tmp_path, sources={"events": src})
        job.restore()
        return src, job

    a = broker.publish(queue, records(3))
    dead, job = start()
    stored = dead.ingest()["_id"].to_list()
    dead.acknowledge = lambda: None  # type: ignore[method-assign]  # no ack: the host died
    with job.commit():
        pass
    b = broker.publish(queue, records(3))
    src, job = start()
    stored += src.ingest()["_id"].to_list()  # A is still held by job 1's connection
    with job.commit():
        pass
    src.close()
    dead._reader.connection.close()  # type: ignore[union-attr]  # the broker notices: A requeued
    dead._reader = None
    while broker.depth(queue) < len(a):
        time.sleep(0.05)
    src, job = start()
    assert src.ingest().height == 0  # A again: dropped
    assert src.get_metadata()["details"]["duplicates_dropped"] == 3
    # A (from job 1) and B (job 2's last batch) stay until the broker confirmed the drop's
    # ack; then B only (acknowledged before job 2 stopped, it never comes back: it is kept
    # for _REQUEUE_WAIT seconds)
    assert [ids for _, ids in src.checkpoint_state()["carried"]] == [a, b]
    with job.commit():
        pass
    assert [ids for _, ids in src.checkpoint_state()["carried"]] == [b]
    src.close()
    assert sorted(stored) == sorted(a + b)
    assert broker.depth(queue) == 0
