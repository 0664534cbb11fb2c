"""StreamingSource with Kafka, against a Tansu Kafka-protocol broker the module starts itself."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from data_pipeline.core.errors import (
    ConfigError,
    IngestionConnectionError,
    InputNotFoundError,
    ParseError,
)
from data_pipeline.ingestion.streaming import StreamingSource
from tests.integration.kafka_broker import free_port, tansu_broker

pytest.importorskip("confluent_kafka")

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z in ms


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Tansu broker with in-memory storage on a free 127.0.0.1 port: ``host:port``."""
    with tansu_broker(tmp_path_factory.mktemp("tansu")) as address:
        yield address


@pytest.fixture
def topic(broker: str) -> str:
    """A new topic with 3 partitions."""
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"dp-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": broker})
    for future in admin.create_topics([NewTopic(name, num_partitions=3)]).values():
        future.result(30)
    return name


def produce(
    broker: str,
    topic: str,
    messages: list[tuple[str | None, Any, int]],
    *,
    one_by_one: bool = False,
) -> None:
    """(key, value, timestamp ms) each; dict values are sent as JSON.

    ``one_by_one`` sends each message in its own record batch: Tansu 0.6 answers "latest offset"
    with the base offset of the last record batch + 1, wrong when that batch holds several.
    """
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker})
    for key, value, ts in messages:
        payload = json.dumps(value).encode() if isinstance(value, dict) else value
        producer.produce(topic, key=key, value=payload, timestamp=ts)
        if one_by_one:
            assert producer.flush(30) == 0
    assert producer.flush(30) == 0


def events(start: int, count: int) -> list[tuple[str | None, Any, int]]:
    return [(f"k{i}", {"n": i, "user": f"u{i % 3}"}, T0 + i * 1000) for i in range(start, count)]


def kafka_source(broker: str, topic: str, **config: Any) -> StreamingSource:
    settings = {"platform": "kafka", "url": broker, "topic": topic, "timeout": 2, **config}
    return StreamingSource(name="events", config=settings)


def test_bounded_batches_continue_without_group(broker: str, topic: str) -> None:
    produce(broker, topic, events(0, 25))
    src = kafka_source(broker, topic, max_messages=7)
    seen: list[str] = []
    sizes = []
    for batch in src.batches():
        sizes.append(batch.height)
        seen.extend(batch["_key"].to_list())
    assert all(size <= 7 for size in sizes) and len(sizes) >= 4
    assert sorted(seen) == sorted(f"k{i}" for i in range(25))  # nothing lost, nothing doubled
    produce(broker, topic, events(25, 28))
    assert sorted(src.ingest()["_key"].to_list()) == ["k25", "k26", "k27"]
    assert src.ingest().height == 0


def test_json_payload_columns_and_meta(broker: str, topic: str) -> None:
    produce(broker, topic, [("a", {"id": 1, "geo": {"city": "Oslo", "pos": {"lat": 59.9}}}, T0)])
    out = kafka_source(broker, f"{topic}", url=f"kafka://{broker}").ingest()
    assert out.columns == [
        "_stream",
        "_id",
        "_partition",
        "_offset",
        "_key",
        "_timestamp",
        "id",
        "geo__city",
        "geo__pos__lat",
    ]
    assert out.schema["_partition"] == pl.Int32
    assert out.schema["_offset"] == pl.Int64
    assert out.schema["_timestamp"] == pl.Datetime("ms", "UTC")
    row = out.row(0, named=True)
    assert row["_stream"] == topic
    assert row["_id"] == f"{row['_partition']}:{row['_offset']}"
    assert row["_key"] == "a"
    assert row["_timestamp"] == dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    assert (row["id"], row["geo__city"], row["geo__pos__lat"]) == (1, "Oslo", 59.9)


def test_payload_text_and_bytes(broker: str, topic: str) -> None:
    produce(broker, topic, [("k", b"plain text \xc3\xa6", T0)])
    text = kafka_source(broker, topic, payload="text").ingest()
    assert text["payload"].to_list() == ["plain text æ"]
    raw = kafka_source(broker, topic, payload="bytes").ingest()
    assert raw.schema["payload"] == pl.Binary and raw.schema["_key"] == pl.Binary
    assert raw["payload"].to_list() == [b"plain text \xc3\xa6"]
    assert raw["_key"].to_list() == [b"k"]


@pytest.mark.parametrize("mode", ["error", "skip", "reject"])
def test_bad_payload(broker: str, topic: str, tmp_path: Path, mode: str) -> None:
    good = [(f"k{i}", {"n": i}, T0) for i in range(3)]
    produce(broker, topic, [*good, ("bad", b"{not json", T0)])
    rejects = tmp_path / "rejects.csv"
    group = f"g-{mode}"
    src = kafka_source(broker, topic, group=group, on_bad_rows=mode, reject_path=str(rejects))
    if mode == "error":
        with pytest.raises(ParseError, match="not JSON") as info, src:
            src.ingest()
        assert topic in str(info.value)
        # nothing was committed: the group reads the whole batch again
        with kafka_source(broker, topic, group=group, on_bad_rows="skip") as again:
            assert again.ingest().height == 3
        return
    out = src.ingest()
    assert sorted(out["n"].to_list()) == [0, 1, 2]
    meta = src.get_metadata()
    assert meta["rows_in"] == 4
    assert meta["rows_in"] == meta["rows_out"] + meta["rows_rejected"]
    if mode == "skip":
        assert meta["details"]["rows_skipped"] == 1
        assert not rejects.exists()
    else:
        rejected = pl.read_csv(rejects)
        assert rejected["raw"].to_list() == ["{not json"]
        assert rejected["stream"].to_list() == [topic]
    src.close()  # acknowledged: the offsets are committed
    with kafka_source(broker, topic, group=group) as after:
        assert after.ingest().height == 0


def test_group_commits_only_with_ack(broker: str, topic: str) -> None:
    produce(broker, topic, events(0, 5))
    peek = kafka_source(broker, topic, group="g", ack=False)
    assert sorted(peek.ingest()["n"].to_list()) == [0, 1, 2, 3, 4]
    peek.close()  # ack: false commits nothing
    with kafka_source(broker, topic, group="g", ack=False) as again:
        assert sorted(again.ingest()["n"].to_list()) == [0, 1, 2, 3, 4]  # not committed
    reader = kafka_source(broker, topic, group="g", max_messages=3)
    first = reader.ingest()["n"].to_list()
    second = reader.ingest()["n"].to_list()
    assert len(first) == 3 and sorted(first + second) == [0, 1, 2, 3, 4]
    assert reader.ingest().height == 0
    produce(broker, topic, events(5, 7))
    assert sorted(reader.ingest()["n"].to_list()) == [5, 6]
    reader.close()


def test_two_groups_each_see_all(broker: str, topic: str) -> None:
    produce(broker, topic, events(0, 6))
    a = kafka_source(broker, topic, group="a").ingest()
    b = kafka_source(broker, topic, group="b").ingest()
    assert sorted(a["n"].to_list()) == sorted(b["n"].to_list()) == list(range(6))


def test_state_path_continues_across_sources(broker: str, topic: str, tmp_path: Path) -> None:
    state = str(tmp_path / "offsets.json")
    produce(broker, topic, events(0, 10))
    with kafka_source(broker, topic, max_messages=6, state_path=state) as src:
        first = src.ingest()
    with kafka_source(broker, topic, state_path=state) as src:
        rest = src.ingest()
    assert first.height == 6
    assert sorted(first["n"].to_list() + rest["n"].to_list()) == list(range(10))
    positions = json.loads(Path(state).read_text())["positions"]
    assert sum(int(v) for v in positions.values()) == 10
    with kafka_source(broker, topic, state_path=state) as src:
        assert src.ingest().height == 0


def test_start_latest_reads_only_new(broker: str, topic: str) -> None:
    produce(broker, topic, events(0, 4), one_by_one=True)
    src = kafka_source(broker, topic, start_id="$", timeout=1)
    assert src.ingest().height == 0
    produce(broker, topic, events(4, 6))  # between two reads: not lost
    assert sorted(src.ingest()["n"].to_list()) == [4, 5]


def test_missing_topic(broker: str) -> None:
    with pytest.raises(InputNotFoundError, match="dp-no-such-topic"):
        kafka_source(broker, "dp-no-such-topic").ingest()


def test_connection_refused_names_address_not_password() -> None:
    port = free_port()
    src = StreamingSource(
        name="e",
        config={
            "platform": "kafka",
            "host": "127.0.0.1",
            "port": port,
            "topic": "t",
            "username": "u",
            "password": "s3cret-pw",
        },
    )
    with pytest.raises(IngestionConnectionError, match=f"127.0.0.1:{port}") as info:
        src.ingest()
    assert "s3cret-pw" not in str(info.value)
    assert "s3cret-pw" not in json.dumps(src.get_metadata(), default=str)


def test_config_errors(broker: str) -> None:
    with pytest.raises(ConfigError, match="start_id"):
        kafka_source(broker, "t", start_id="yesterday").ingest()
    with pytest.raises(ConfigError, match="scheme"):
        kafka_source(broker, "t", url="http://127.0.0.1:1").ingest()


def test_batches_feed_a_windowed_stream_processor(broker: str, topic: str) -> None:
    duckdb = pytest.importorskip("duckdb")
    from data_pipeline.processing import ProcessingPipeline, StreamProcessor, WindowedAggregator

    rows = [
        {"user": f"u{(i * 7) % 4}", "v": (i * 13) % 50, "ts": T0 + ((i * 37) % 600) * 1000}
        for i in range(120)
    ]
    produce(broker, topic, [(None, {"user": r["user"], "v": r["v"]}, r["ts"]) for r in rows])
    steps = ProcessingPipeline("per_minute").add_processor(
        WindowedAggregator(
            name="w",
            config={
                "time_column": "_timestamp",
                "window": "1m",
                "group_by": "user",
                "aggregations": {"v": ["sum", "count"]},
            },
        )
    )
    # the events are up to 10 minutes out of order: windows stay open that long
    stream = StreamProcessor(
        name="s", config={"output": "polars", "allowed_lateness": "10m"}, pipeline=steps
    )
    src = kafka_source(broker, topic, max_messages=17)
    outputs = list(stream.process_stream(src.batches()))
    assert stream.progress["rows_in"] == 120 and stream.progress["batches"] > 5
    # emit: updates -> the last value per (user, window) is the answer
    updates = pl.concat([o for o in outputs if o.height], how="vertical")
    got = (
        updates.with_row_index("seq")
        .sort("seq")
        .group_by(["user", "window_start"], maintain_order=True)
        .last()
        .select(
            "user",
            pl.col("window_start").dt.replace_time_zone(None).dt.cast_time_unit("us"),
            "v_sum",
            "v_count",
        )
        .sort(["window_start", "user"])
    )
    produced = pl.DataFrame(rows)  # noqa: F841 - read by DuckDB below
    expected = duckdb.sql(
        """
        SELECT "user",
               time_bucket(INTERVAL 1 MINUTE, make_timestamp(ts * 1000)) AS window_start,
               sum(v) AS v_sum, count(*) AS v_count
        FROM produced GROUP BY ALL ORDER BY window_start, "user"
        """
    ).pl()
    assert got.to_dicts() == expected.with_columns(pl.col("v_sum").cast(pl.Int64)).to_dicts()
