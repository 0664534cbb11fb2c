"""StreamingSource on NATS JetStream, against the real nats-server on 127.0.0.1:4222.

Each test gets its own JetStream stream and subjects (deleted afterwards, consumers with it).
The credentials tests start their own nats-server (with a user) on a free port.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
import shutil
import socket
import subprocess
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

URL = "nats://127.0.0.1:4222"
DOC = Path(__file__).resolve().parents[2] / "docs" / "ingestion.md"


def run_async(coro: Any) -> Any:
    """Run ``coro`` on a thread of its own: the session's browser tests (playwright's sync API)
    leave an event loop registered on the main thread, where ``asyncio.run`` refuses to start."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


class JetStream:
    """A JetStream stream of its own for one test: publish to it, inspect its consumers."""

    def __init__(self, url: str = URL) -> None:
        self.url = url
        tag = uuid.uuid4().hex[:10]
        self.name = f"DP_TEST_{tag}"
        self.prefix = f"dptest.{tag}"
        self.subject = f"{self.prefix}.events"
        self._call(self._create)

    def _call(self, fn: Any, *args: Any) -> Any:
        async def run() -> Any:
            import nats

            nc = await nats.connect(self.url)
            try:
                return await fn(nc.jetstream(), *args)
            finally:
                await nc.close()

        return run_async(run())

    async def _create(self, js: Any) -> None:
        await js.add_stream(name=self.name, subjects=[f"{self.prefix}.>"])

    def publish(self, payloads: list[Any], subject: str | None = None) -> list[int]:
        """Publish dicts (as JSON) or bytes; the stream sequences the server assigned."""

        async def pub(js: Any) -> list[int]:
            acks = []
            for payload in payloads:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                acks.append((await js.publish(subject or self.subject, data)).seq)
            return acks

        result: list[int] = self._call(pub)
        return result

    def consumer(self, durable: str) -> Any:
        async def info(js: Any) -> Any:
            return await js.consumer_info(self.name, durable)

        return self._call(info)

    def delete(self) -> None:
        async def drop(js: Any) -> None:
            await js.delete_stream(self.name)

        self._call(drop)


@pytest.fixture
def js() -> Iterator[JetStream]:
    require_service("NATS", "127.0.0.1", 4222)
    stream = JetStream()
    try:
        yield stream
    finally:
        stream.delete()


def nats_source(subject: str | list[str], **config: Any) -> StreamingSource:
    return StreamingSource(
        name="events",
        config={"platform": "nats", "url": URL, "subject": subject, "timeout": 0.2, **config},
    )


def read_all(source: StreamingSource) -> list[pl.DataFrame]:
    return list(source.batches(max_batches=100))


def records(n: int) -> list[dict[str, Any]]:
    return [{"n": i, "user": {"name": f"u{i}", "tier": i % 3}, "amount": i * 1.5} for i in range(n)]


# -- bounded batches ---------------------------------------------------------------------------


def test_bounded_batches_continue_with_nothing_lost_or_doubled(js: JetStream) -> None:
    sent = records(23)
    seqs = js.publish(sent)
    src = nats_source(js.subject, max_messages=5)
    batches = read_all(src)
    assert [b.height for b in batches] == [5, 5, 5, 5, 3]
    got = pl.concat(batches)
    assert got.columns == [
        "_stream",
        "_id",
        "_sequence",
        "_timestamp",
        "_redelivered",
        "n",
        "user__name",
        "user__tier",
        "amount",
    ]
    assert got["_id"].to_list() == [str(s) for s in seqs]
    assert got["_sequence"].to_list() == seqs
    assert got["_stream"].unique().to_list() == [js.subject]
    assert got.select("n", "user__name", "user__tier", "amount").to_dicts() == [
        {"n": r["n"], "user__name": r["user"]["name"], "user__tier": r["user"]["tier"],
         "amount": r["amount"]}
        for r in sent
    ]  # fmt: skip
    assert got.schema["_timestamp"] == pl.Datetime("us", "UTC")
    # new messages after the end: exactly those, once
    more = js.publish([{"n": 100}, {"n": 101}])
    later = src.ingest()
    assert later["_sequence"].to_list() == more
    assert later["n"].to_list() == [100, 101]
    assert src.get_metadata()["details"]["messages"] == 2
    assert src.ingest().height == 0


def test_wildcard_subject_reads_every_matching_subject(js: JetStream) -> None:
    js.publish([{"k": "a"}], subject=f"{js.prefix}.a")
    js.publish([{"k": "b"}], subject=f"{js.prefix}.b.c")
    out = nats_source(f"{js.prefix}.>").ingest()
    assert out["_stream"].to_list() == [f"{js.prefix}.a", f"{js.prefix}.b.c"]
    assert out["k"].to_list() == ["a", "b"]
    only_a = nats_source(f"{js.prefix}.a").ingest()
    assert only_a["k"].to_list() == ["a"]


def test_start_id_new_only_and_sequence(js: JetStream) -> None:
    js.publish(records(4))
    src = nats_source(js.subject, start_id="$")
    assert src.ingest().height == 0  # the four stored before the first read are not "new"
    fresh = js.publish([{"n": 50}, {"n": 51}])
    assert src.ingest()["_sequence"].to_list() == fresh
    after_two = nats_source(js.subject, start_id="2").ingest()
    assert after_two["n"].to_list() == [2, 3, 50, 51]
    with pytest.raises(ConfigError, match="start_id"):
        nats_source(js.subject, start_id="1-0").ingest()


def test_state_path_continues_across_sources(js: JetStream, tmp_path: Path) -> None:
    seqs = js.publish(records(7))
    state = tmp_path / "nats.json"
    with nats_source(js.subject, max_messages=4, state_path=str(state)) as src:
        first = src.ingest()
    assert first["_sequence"].to_list() == seqs[:4]
    assert json.loads(state.read_text())["positions"] == {js.subject: str(seqs[3])}
    with nats_source(js.subject, state_path=str(state)) as src:  # a new process, in effect
        second = src.ingest()
    assert second["_sequence"].to_list() == seqs[4:]
    with nats_source(js.subject, state_path=str(state)) as src:
        assert src.ingest().height == 0


def test_ingest_from_inside_a_running_event_loop(js: JetStream) -> None:
    """An async caller (a notebook, an async app): the read runs its own loop on a thread."""
    seqs = js.publish(records(3))

    async def caller() -> pl.DataFrame:
        frame: pl.DataFrame = nats_source(js.subject).ingest()
        return frame

    assert run_async(caller())["_sequence"].to_list() == seqs


# -- payloads ------------------------------------------------------------------------------------


def test_payload_text_and_bytes(js: JetStream) -> None:
    raw = [b"hello", "h\u00e9 \u2603".encode(), b"", b"\x00\xff\x10"]
    js.publish(raw)
    as_bytes = nats_source(js.subject, payload="bytes").ingest()
    assert as_bytes.schema["payload"] == pl.Binary
    assert as_bytes["payload"].to_list() == raw
    as_text = nats_source(js.subject, payload="text", max_messages=3).ingest()
    assert as_text["payload"].to_list() == ["hello", "h\u00e9 \u2603", ""]


@pytest.mark.parametrize("mode", ["error", "skip", "reject"])
def test_bad_payload_follows_on_bad_rows(js: JetStream, tmp_path: Path, mode: str) -> None:
    seqs = js.publish([{"n": 0}, b"{not json", {"n": 2}, b"[1, 2]", {"n": 4}])
    rejects = tmp_path / "rejects.csv"
    src = nats_source(js.subject, on_bad_rows=mode, reject_path=str(rejects))
    if mode == "error":
        with pytest.raises(ParseError, match=rf"message '{seqs[1]}' of '{re.escape(js.subject)}'"):
            src.ingest()
        return
    out = src.ingest()
    assert out["n"].to_list() == [0, 2, 4]
    assert out["_sequence"].to_list() == [seqs[0], seqs[2], seqs[4]]
    meta = src.get_metadata()
    assert (meta["rows_in"], meta["rows_out"], meta["rows_rejected"]) == (5, 3, 2)
    if mode == "skip":
        assert meta["details"]["rows_skipped"] == 2
        assert not rejects.exists()
    else:
        with rejects.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [(r["stream"], r["id"], r["raw"]) for r in rows] == [
            (js.subject, str(seqs[1]), "{not json"),
            (js.subject, str(seqs[3]), "[1, 2]"),
        ]
        assert "not JSON" in rows[0]["reason"] and "list" in rows[1]["reason"]


# -- durable consumer group --------------------------------------------------------------------


def test_group_shares_messages_and_acknowledges(js: JetStream) -> None:
    seqs = js.publish(records(10))
    a = nats_source(js.subject, group="workers", max_messages=4)
    b = nats_source(js.subject, group="workers", max_messages=100)
    got_a = a.ingest()
    got_b = b.ingest()
    assert got_a.height == 4 and got_b.height == 6
    assert sorted(got_a["_sequence"].to_list() + got_b["_sequence"].to_list()) == seqs
    assert a.ingest().height == 0 and b.ingest().height == 0
    info = js.consumer("workers")
    assert (info.num_ack_pending, info.num_pending) == (0, 0)
    assert a.get_metadata()["details"]["consumer"] == "workers"


def test_failure_before_ack_leaves_messages_for_redelivery(js: JetStream) -> None:
    seqs = js.publish([{"n": 0}, {"n": 1}, b"oops", {"n": 3}])
    strict = nats_source(js.subject, group="g", on_bad_rows="error")
    with pytest.raises(ParseError, match="oops"):
        strict.ingest()
    # the batch failed before its acknowledgement: every message comes back, marked redelivered.
    # Given back with nak, they come back at once, except now and then one: nats-server 2.9
    # can drop a nak'd message from its redelivery queue when the only pull request waiting is
    # the failed reader's (unsubscribed), and then it comes back after ack_wait (10 s). Read
    # until all three came back, however long that takes.
    tolerant = nats_source(js.subject, group="g", on_bad_rows="skip")
    batches = [tolerant.ingest()]
    seen = batches[0]["_sequence"].to_list()
    while not {seqs[0], seqs[1], seqs[3]} <= set(seen):
        batches.append(tolerant.ingest())
        seen += batches[-1]["_sequence"].to_list()
    again = pl.concat(batches, how="diagonal_relaxed")
    assert sorted(again["_sequence"].to_list()) == [seqs[0], seqs[1], seqs[3]]
    assert again["_redelivered"].to_list() == [True, True, True]
    assert tolerant.ingest().height == 0
    assert js.consumer("g").num_ack_pending == 0


def test_ack_false_peeks_and_a_later_ack_consumes(js: JetStream) -> None:
    seqs = js.publish(records(3))
    peek = nats_source(js.subject, group="p", ack=False)
    assert peek.ingest()["_sequence"].to_list() == seqs
    assert peek.ingest()["_sequence"].to_list() == seqs  # returned, not acknowledged
    peek.close()
    take = nats_source(js.subject, group="p")
    assert take.ingest()["_sequence"].to_list() == seqs
    assert take.ingest().height == 0


def test_a_redelivery_within_one_batch_is_one_row(js: JetStream) -> None:
    # ack_wait runs out while the batch is still filling: the server delivers message 1 again
    # into the same batch; it is one row (and acknowledged), not two.
    seqs = js.publish(records(1))
    src = nats_source(
        js.subject,
        group="slow",
        max_messages=10,
        timeout=2.5,
        options={"consumer": {"ack_wait": 0.5}},
    )
    batch = src.ingest()
    assert batch["_sequence"].to_list() == seqs
    assert src.ingest().height == 0


def _held_longer_than_ack_wait(js: JetStream) -> list[int]:
    """A live producer and batches held (processed, stored) longer than ack_wait before they
    are acknowledged: the ``n`` of every row read, in order."""
    import threading
    import time

    def produce() -> None:
        for i in range(12):
            js.publish([{"n": i}])
            time.sleep(0.05)

    producer = threading.Thread(target=produce)
    producer.start()
    src = nats_source(
        js.subject,
        group="held",
        timeout=0.4,
        max_messages=12,
        options={"consumer": {"ack_wait": 0.5}},
    )
    seen: list[int] = []
    idle = reads = 0
    try:
        while idle < 2 and reads < 8:
            reads += 1
            batch = src.ingest()
            if not batch.height:
                idle += 1
                continue
            idle = 0
            seen += batch["n"].to_list()
            time.sleep(0.8)  # the batch is processed for longer than ack_wait
        src.close()
    finally:
        producer.join()  # before the fixture deletes the stream it publishes to
    return seen


def test_a_batch_held_longer_than_ack_wait_is_not_delivered_again(js: JetStream) -> None:
    """While a batch waits for its commit the reader keeps it in progress (+WPI), and a copy
    delivered anyway is dropped: every message is read once."""
    assert sorted(_held_longer_than_ack_wait(js)) == list(range(12))


def test_held_batch_check_catches_redeliveries(js: JetStream, monkeypatch: Any) -> None:
    """The broken variant (no in-progress signal, no drop of copies): the same check reads
    messages twice."""
    from data_pipeline.ingestion.streaming import nats as platform

    async def no_signal(self: Any) -> None:
        return None

    async def every_copy(self: Any, messages: list[Any]) -> tuple[list[Any], pl.DataFrame]:
        return messages, platform._reply_fields(messages)

    monkeypatch.setattr(platform.Reader, "_keep_in_progress", no_signal)
    monkeypatch.setattr(platform.Reader, "_new_only", every_copy)
    seen = _held_longer_than_ack_wait(js)
    assert len(seen) > len(set(seen)) == 12


def _die(source: StreamingSource) -> None:
    """The process dies: no acknowledgement and no nak (the server delivers what it holds
    again after ack_wait)."""
    reader: Any = source._reader

    async def vanish() -> None:
        reader.keeper.cancel()
        await reader.nc.close()

    reader._call(vanish())
    reader.loop.call_soon_threadsafe(reader.loop.stop)
    reader.thread.join()
    reader.loop.close()
    source._reader = None


def test_a_batch_committed_before_a_crash_is_dropped_after_later_restarts(
    js: JetStream, tmp_path: Path
) -> None:
    """Run 1 commits batch A and dies before acknowledging it; run 2 commits batch B and stops;
    run 3 gets A again from the server (ack_wait after run 1 died) and drops it. The checkpoint
    keeps every committed sequence the server has not confirmed acknowledged, not only the
    last batch's (which lost A at run 2's commit: A was stored twice)."""
    from data_pipeline.core.checkpoint import Checkpointer

    config = {"group": "jobs", "max_messages": 3, "options": {"consumer": {"ack_wait": 4}}}

    def start(**more: Any) -> tuple[StreamingSource, Checkpointer]:
        src = nats_source(js.subject, **config, **more)
        job = Checkpointer("nats-job", tmp_path / "checkpoints", sources={"events": src})
        job.restore()
        return src, job

    a = js.publish(records(3))
    src, job = start()
    stored = src.ingest()["_sequence"].to_list()
    src.acknowledge = lambda: None  # type: ignore[method-assign]  # dies before the ack
    with job.commit():
        pass
    _die(src)

    b = js.publish(records(3))
    src, job = start()
    batch = src.ingest()  # A comes back only ack_wait after run 1 died
    stored += batch["_sequence"].to_list()
    dropped = src.get_metadata()["details"].get("duplicates_dropped", 0)  # (A if run 2 was slow)
    with job.commit():
        pass
    src.close()

    src, job = start(timeout=5)  # long enough for A's redelivery
    for batch in src.batches():
        stored += batch["_sequence"].to_list()
        with job.commit():
            pass
    dropped += src.get_metadata()["details"].get("duplicates_dropped", 0)
    assert sorted(stored) == a + b
    assert dropped == 3
    # A's copies were acknowledged: once the server confirmed it, A leaves the checkpoint
    c = js.publish([{"n": 99}])
    assert src.ingest()["_sequence"].to_list() == c
    with job.commit():
        pass
    assert src.checkpoint_state() == {"pending": []}
    src.close()
    assert js.consumer("jobs").num_ack_pending == 0


def test_a_read_of_only_dropped_copies_reads_on(js: JetStream, tmp_path: Path) -> None:
    """Copies of a committed batch fill a whole fetch: they are dropped and the read goes on
    to the new message, instead of returning an empty batch (which ends batches() as idle)."""
    from data_pipeline.core.checkpoint import Checkpointer

    a = js.publish(records(3))
    first = nats_source(js.subject, group="again", max_messages=3)
    job = Checkpointer("nats-again", tmp_path, sources={"events": first})
    job.restore()
    assert first.ingest()["_sequence"].to_list() == a
    first.acknowledge = lambda: None  # type: ignore[method-assign]  # committed, not acked
    with job.commit():
        pass
    first.close()  # gives the unacknowledged batch back: delivered again at once
    d = js.publish([{"n": 99}])
    src = nats_source(js.subject, group="again", max_messages=3)
    job = Checkpointer("nats-again", tmp_path, sources={"events": src})
    job.restore()
    assert [b["_sequence"].to_list() for b in src.batches()] == [d]
    src.close()


def test_committed_sequences_leave_the_checkpoint_below_the_ack_floor(
    js: JetStream, tmp_path: Path
) -> None:
    """Run 1 dies after the server took the acknowledgement of its last batch A: run 2 keeps
    A in its checkpoint (it cannot tell), until its own acknowledgement finds the consumer's
    ack floor past A."""
    from data_pipeline.core.checkpoint import Checkpointer

    a = js.publish(records(2))
    src = nats_source(js.subject, group="floor")
    job = Checkpointer("nats-floor", tmp_path, sources={"events": src})
    job.restore()
    assert src.ingest()["_sequence"].to_list() == a
    with job.commit():  # the checkpoint holds A, acknowledged right after
        pass
    src.close()
    src = nats_source(js.subject, group="floor")
    job = Checkpointer("nats-floor", tmp_path, sources={"events": src})
    job.restore()
    b = js.publish(records(2))
    assert src.ingest()["_sequence"].to_list() == b
    assert src.checkpoint_state() == {"pending": a + b}
    with job.commit():
        pass
    assert src.checkpoint_state() == {"pending": []}
    src.close()


def test_group_start_id_new_only(js: JetStream) -> None:
    js.publish(records(3))
    src = nats_source(js.subject, group="late", start_id="$")
    assert src.ingest().height == 0
    fresh = js.publish([{"n": 9}])
    assert src.ingest()["_sequence"].to_list() == fresh


def test_group_bound_to_another_subject_is_a_config_error(js: JetStream) -> None:
    js.publish([{"n": 1}])
    nats_source(js.subject, group="same").ingest()
    with pytest.raises(ConfigError, match="'same'") as info:
        nats_source(f"{js.prefix}.other", group="same").ingest()
    assert "nats consumer rm" in str(info.value)


def test_several_subjects(js: JetStream) -> None:
    import nats

    async def version() -> tuple[int, int]:
        nc = await nats.connect(URL)
        try:
            v = nc.connected_server_version
            return v.major, v.minor
        finally:
            await nc.close()

    js.publish([{"k": "a"}], subject=f"{js.prefix}.a")
    js.publish([{"k": "b"}], subject=f"{js.prefix}.b")
    js.publish([{"k": "c"}], subject=f"{js.prefix}.c")
    src = nats_source([f"{js.prefix}.a", f"{js.prefix}.c"])
    if run_async(version()) < (2, 10):  # filter_subjects came with nats-server 2.10
        from data_pipeline.core.errors import UnsupportedOperationError

        with pytest.raises(UnsupportedOperationError, match=r"2\.10"):
            src.ingest()
    else:
        assert src.ingest()["k"].to_list() == ["a", "c"]


# -- errors --------------------------------------------------------------------------------------


def test_subject_without_a_stream_is_input_not_found() -> None:
    require_service("NATS", "127.0.0.1", 4222)
    subject = f"dp.nowhere.{uuid.uuid4().hex[:8]}"
    with pytest.raises(InputNotFoundError, match=re.escape(subject)) as info:
        nats_source(subject).ingest()
    assert "nats stream add" in str(info.value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_connection_refused_names_host_and_port_without_password() -> None:
    port = free_port()
    src = nats_source("x", url=f"nats://alice:s3cret-pw@127.0.0.1:{port}")
    with pytest.raises(IngestionConnectionError, match=rf"127\.0\.0\.1:{port}") as info:
        src.ingest()
    assert "s3cret-pw" not in str(info.value)
    assert "s3cret-pw" not in json.dumps(src.get_metadata(), default=str)


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[int]:
    """A nats-server with JetStream and a user (alice / right-pw) on a free port."""
    binary = shutil.which("nats-server")
    if binary is None:
        pytest.skip("nats-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(tmp_path / "js"),
         "--user", "alice", "--pass", "right-pw"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(200):  # wait until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"nats-server exited with {proc.returncode}")
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait()


def test_credentials(private_server: int) -> None:
    port = private_server
    wrong = nats_source("x", url=None, host="127.0.0.1", port=port, username="alice",
                        password="wrong-pw")  # fmt: skip
    with pytest.raises(IngestionAuthenticationError, match=rf"127\.0\.0\.1:{port}") as info:
        wrong.ingest()
    assert "wrong-pw" not in str(info.value)
    stream = JetStream(url=f"nats://alice:right-pw@127.0.0.1:{port}")
    seqs = stream.publish([{"n": 1}, {"n": 2}])
    right = nats_source(stream.subject, url=None, host="127.0.0.1", port=port, username="alice",
                        password="right-pw")  # fmt: skip
    assert right.ingest()["_sequence"].to_list() == seqs
    in_url = nats_source(stream.subject, url=f"nats://alice:right-pw@127.0.0.1:{port}")
    assert in_url.ingest()["n"].to_list() == [1, 2]


# -- into a StreamProcessor --------------------------------------------------------------------


def test_batches_feed_a_windowed_stream_processor(js: JetStream) -> None:
    sent = sensor_readings()
    js.publish(sent)
    assert_windows_match_sql(nats_source(js.subject, max_messages=10), sent)


# -- the docs example ----------------------------------------------------------------------------


def test_docs_example_config_reads(js: JetStream) -> None:
    """The NATS block of docs/ingestion.md builds; its config reads this test's stream."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### NATS JetStream", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    documented: StreamingSource = namespace["nats_orders"]
    config = {**documented.config, "url": URL, "subject": js.subject, "timeout": 0.2}
    seqs = js.publish(records(3))
    out = StreamingSource(name="nats_orders", config=config).ingest()
    assert out["_sequence"].to_list() == seqs
    assert out["user__name"].to_list() == ["u0", "u1", "u2"]
