"""stream_e2e: a stream into DuckDB with checkpoints on, vs the bare client reading and acking.

``prepare()`` writes ``--rows`` messages (200,000 by default) once to a Redis stream (fields
``id``, ``ts``, ``user``, ``qty``, ``amount``) and to a NATS JetStream stream (the same as a JSON
payload), on the shared servers (127.0.0.1:6379 and :4222), under names of their own; they are
deleted when the benchmark process exits. The measured processes inherit the names through
``DP_BENCH_STREAM_E2E`` and only connect.

Each variant reads every message once through a consumer group of its own (created at the
start of the stream), in batches of ``BATCH`` messages:

- ``redis_ours`` / ``nats_ours``: ``StreamingSource`` (``group``, ``max_messages: BATCH``) under
  a ``Checkpointer`` keeping its checkpoint in a ``DataWarehouseStorage`` (a DuckDB file): per
  batch, one transaction stores the batch's rows (``append``) and the checkpoint (the source's
  position, the ids of the batch), then the broker is acknowledged (XACK; NATS acks confirmed by
  the server). Everything a checkpointed job does except processing.
- ``redis_bare``: redis-py ``XREADGROUP COUNT BATCH`` then ``XACK`` of the batch's ids (no frame,
  nothing stored) — the baseline;
- ``nats_bare``: nats-py's pull subscription on a durable consumer, ``fetch(BATCH)`` then
  ``ack()`` of each message and one flush per batch (nothing stored).

Targets: each ``*_ours`` at least 0.8x the rate of its platform's bare client (``time <= 1.25``
against ``redis_bare`` in the table; ``check`` prints both pairs from the same runs, best of
each, with OK/MISSED, and the rates in messages/s). Every variant checks it read each message
once (and ours that DuckDB holds ``rows`` rows).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from benchmarks.harness import Benchmark

ENV = "DP_BENCH_STREAM_E2E"
"""``redis_key|nats_stream|nats_subject|rows`` of the streams the benchmark process wrote."""
BATCH = 10_000
TIMEOUT = 0.5
FACTOR = 0.8
"""ours must reach at least this fraction of the bare client's rate."""
REDIS = "redis://127.0.0.1:6379/0"
NATS = "nats://127.0.0.1:4222"


def records(rows: int) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "ts": f"2024-01-01T00:{(i // 60) % 60:02d}:{i % 60:02d}",
            "user": f"u{i % 5000}",
            "qty": (i * 7919) % 13,
            "amount": ((i * 104_729) % 100_000) / 100,
        }
        for i in range(rows)
    ]


def _nats(fn: Any) -> Any:
    async def call() -> Any:
        import nats

        nc = await nats.connect(NATS)
        try:
            return await fn(nc, nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(call())


def _produce(rows: int) -> tuple[str, str, str]:
    import redis

    tag = uuid.uuid4().hex[:10]
    key, stream, subject = f"bench-e2e-{tag}", f"BENCH_E2E_{tag}", f"bench.e2e.{tag}"
    client = redis.Redis.from_url(REDIS)
    data = records(rows)
    for start in range(0, rows, 5_000):
        pipe = client.pipeline(transaction=False)
        for row in data[start : start + 5_000]:
            pipe.xadd(key, {k: str(v) for k, v in row.items()})
        pipe.execute()
    client.close()

    async def fill(nc: Any, js: Any) -> None:
        await js.add_stream(name=stream, subjects=[subject])
        pending = []
        for row in data:
            pending.append(js.publish(subject, json.dumps(row).encode()))
            if len(pending) >= 2_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)

    _nats(fill)
    atexit.register(_drop, key, stream)
    return key, stream, subject


def _drop(key: str, stream: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS)
    client.delete(key)
    client.close()

    async def drop(nc: Any, js: Any) -> None:
        await js.delete_stream(stream)

    _nats(drop)


def prepare(rows: int) -> dict[str, Any]:
    """The two streams holding ``rows`` messages (written once per benchmark run); the
    libraries of every variant are imported here, outside the timed part."""
    import duckdb  # noqa: F401
    import nats  # noqa: F401
    import pandas  # noqa: F401  (pyarrow imports it at its first array when it is installed)
    import polars  # noqa: F401
    import pyarrow.ipc  # noqa: F401  (checkpoints and DuckDB stores use it)
    import redis  # noqa: F401

    import data_pipeline.core.checkpoint
    import data_pipeline.ingestion.streaming.nats
    import data_pipeline.ingestion.streaming.redis
    import data_pipeline.storage  # noqa: F401

    inherited = os.environ.get(ENV, "")
    if inherited.endswith(f"|{rows}"):
        key, stream, subject, _ = inherited.split("|")
    else:
        key, stream, subject = _produce(rows)
        os.environ[ENV] = f"{key}|{stream}|{subject}|{rows}"
    return {"rows": rows, "key": key, "stream": stream, "subject": subject}


# -- ours: a checkpointed job storing into DuckDB ------------------------------------------------


def _ours(params: dict[str, Any], source_config: dict[str, Any]) -> None:
    from data_pipeline.core.checkpoint import Checkpointer
    from data_pipeline.ingestion import StreamingSource
    from data_pipeline.storage import DataWarehouseStorage

    rows = params["rows"]
    folder = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    warehouse = DataWarehouseStorage(
        name="warehouse", config={"database": str(folder / "e2e.duckdb")}
    )
    source = StreamingSource(
        name="events",
        config={"max_messages": BATCH, "timeout": TIMEOUT, **source_config},
    )
    job = Checkpointer("e2e", warehouse, sources={"events": source})
    job.restore()
    read = 0
    with warehouse, source:  # the DuckDB file stays open for the run
        while read < rows:
            batch = source.ingest()
            if not len(batch):
                break
            read += len(batch)
            with job.commit():
                warehouse.store(batch, "events", if_exists="append")
        query = "select count(*) as n, count(distinct id) as d from events"
        stored = warehouse.retrieve(query=query)
    assert stored.row(0) == (rows, rows), (stored.row(0), rows)


def redis_ours(params: dict[str, Any]) -> None:
    _ours(
        params,
        {
            "platform": "redis",
            "url": REDIS,
            "stream": params["key"],
            "group": f"g-{uuid.uuid4().hex[:8]}",
        },
    )


def nats_ours(params: dict[str, Any]) -> None:
    _ours(
        params,
        {
            "platform": "nats",
            "url": NATS,
            "subject": params["subject"],
            "group": f"g{uuid.uuid4().hex[:8]}",
        },
    )


# -- the bare clients: read and acknowledge ------------------------------------------------------


def redis_bare(params: dict[str, Any]) -> None:
    import redis

    rows, key = params["rows"], params["key"]
    group = f"g-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS, decode_responses=True)
    client.xgroup_create(key, group, id="0")
    seen: set[str] = set()
    while len(seen) < rows:
        reply = client.xreadgroup(group, "bare", {key: ">"}, count=BATCH, block=int(TIMEOUT * 1000))
        if not reply:
            break
        entries = reply[0][1]
        ids = [entry_id for entry_id, _ in entries]
        seen.update(fields["id"] for _, fields in entries)
        client.xack(key, group, *ids)
    client.close()
    assert len(seen) == rows, (len(seen), rows)


def nats_bare(params: dict[str, Any]) -> None:
    from nats.js.api import AckPolicy, ConsumerConfig

    rows, stream = params["rows"], params["stream"]
    durable = f"g{uuid.uuid4().hex[:8]}"

    async def run(nc: Any, js: Any) -> int:
        await js.add_consumer(
            stream,
            ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                max_ack_pending=2 * BATCH,
            ),
        )
        sub = await js.pull_subscribe_bind(durable=durable, stream=stream)
        seen: set[int] = set()
        while len(seen) < rows:
            try:
                messages = await sub.fetch(BATCH, timeout=TIMEOUT)
            except TimeoutError:
                break
            for msg in messages:
                seen.add(msg.metadata.sequence.stream)
                await msg.ack()
            await nc.flush()
        await sub.unsubscribe()
        return len(seen)

    got = _nats(run)
    assert got == rows, (got, rows)


def check(params: dict[str, Any]) -> str:
    measured = params["measured"]
    rows = params["rows"]
    best = {v: min(times) for v, times in measured.items()}
    lines = ["messages/s (best run): " + ", ".join(f"{v} {rows / t:,.0f}" for v, t in best.items())]
    for platform in ("redis", "nats"):
        ours, bare = best[f"{platform}_ours"], best[f"{platform}_bare"]
        rate = bare / ours  # ours' rate as a fraction of the bare client's
        verdict = "OK" if rate >= FACTOR else "MISSED"
        lines.append(
            f"{platform}: ours {rows / ours:,.0f}/s = {rate:.2f}x the bare client's "
            f"{rows / bare:,.0f}/s (target >= {FACTOR}x)  {verdict}"
        )
    return "\n".join(lines)


BENCHMARK = Benchmark(
    name="stream_e2e",
    description="Redis Streams and NATS JetStream into DuckDB with checkpoints, vs the bare "
    "clients reading and acking",
    variants={
        "redis_ours": redis_ours,
        "redis_bare": redis_bare,
        "nats_ours": nats_ours,
        "nats_bare": nats_bare,
    },
    prepare=prepare,
    baseline="redis_bare",
    targets={"redis_ours": {"time": 1 / FACTOR}},
    check=check,
    default_rows=200_000,
)
