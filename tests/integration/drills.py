"""The kill -9 drill: one harness, the platforms as parameters.

A producer writes ``DP_DRILL_EVENTS`` sensor readings (and one poison message) to a broker while
the job that reads them — ``data-pipeline run --follow`` or the same job written with the Python
API (drill_child.py) — is killed with SIGKILL at random moments (``DP_DRILL_KILLS`` times, the
first between a read and its commit, the second between a commit and the acknowledgement),
stopped with SIGTERM once, and
started again each time; a last run goes on until the stream is idle. The job keeps 1-minute
windows per sensor (sum and count of the readings, upserted into DuckDB), stores every reading
and puts the poison message in ``_dp_rejects``. The drill then compares with the ground truth
computed by DuckDB SQL from the produced readings: every reading stored exactly once, every window
exact, the poison message rejected once. The seed is printed (``DP_DRILL_SEED`` repeats a run).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

CHILD = Path(__file__).with_name("drill_child.py")
EVENTS = int(os.environ.get("DP_DRILL_EVENTS", "300"))
KILLS = int(os.environ.get("DP_DRILL_KILLS", "5"))
SENSORS = 4
T0 = dt.datetime(2024, 6, 1, 12, 0)  # naive: UTC
HANG = 600.0
NATS_ACK_WAIT = 2  # seconds: the drill consumer's ack_wait
"""Seconds after which a run that should have ended is a hang (a guard, not a speed check)."""


def readings(n: int) -> list[dict[str, Any]]:
    """``n`` readings, 7 s apart, of 4 sensors, with integer values (their sums are exact)."""
    return [
        {
            "id": i,
            "sensor": f"s{i % SENSORS}",
            "ts": (T0 + dt.timedelta(seconds=7 * i)).isoformat(),
            "v": (i * 37) % 101,
        }
        for i in range(n)
    ]


class Platform:
    """A broker for one drill: a stream/topic/queue of its own, a producer, the source config."""

    name = "?"

    def source(self) -> dict[str, Any]:
        raise NotImplementedError

    def produce(self, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def poison(self) -> None:
        """One message the job must reject (not lose the batch around it)."""
        raise NotImplementedError

    def settle(self) -> None:
        """Wait until nothing is held for a killed job (the last run then sees every message
        that is left; it stops at its first empty batch)."""

    def close(self) -> None:
        pass


@dataclass
class Report:
    """What the drill found."""

    seed: int
    produced: int
    stored: int
    lost: list[int]
    doubled: list[int]
    wrong_windows: int
    missing_windows: int
    rejects: int
    runs: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return (
            not self.lost
            and not self.doubled
            and not self.wrong_windows
            and not self.missing_windows
            and self.rejects == 1
        )

    def __str__(self) -> str:
        return (
            f"seed {self.seed}: produced {self.produced}, stored {self.stored}, lost "
            f"{len(self.lost)}, doubled {len(self.doubled)}, windows wrong {self.wrong_windows} / "
            f"missing {self.missing_windows}, rejects {self.rejects}; runs: {', '.join(self.runs)}"
        )


PIPELINE = """
name: drill
sources:
  events:
    type: StreamingSource
    config: {source}
transformations:
  clean:
    input: events
    steps:
      - type: DataTypeConverter
        config: {convert}
storage:
  warehouse:
    type: DataWarehouseStorage
    config: {{database: {database}}}
    store:
      - {{data: clean, table: events, if_exists: append}}
      - {{data: windows, table: windows}}
processing:
  windows:
    input: clean
    stream: {stream}
    steps:
      - type: WindowedAggregator
        config: {windows}
"""

CONVERT = {"columns": {"id": "int", "v": "float", "ts": "datetime"}, "errors": "reject"}
# redeliveries after a kill, and Kafka's three partitions read side by side, bring readings
# minutes out of order: windows stay open longer than the whole drill, so none is late
STREAM = {"emit": "updates", "allowed_lateness": "1h"}
WINDOWS = {
    "time_column": "ts",
    "window": "1m",
    "group_by": ["sensor"],
    "aggregations": {"v": "sum", "*": "count"},
}


def write_job(folder: Path, mode: str, platform: Platform) -> Path:
    source = {
        "max_messages": 40,
        "timeout": 0.5,
        "on_bad_rows": "reject",
        **platform.source(),
    }
    database = folder / "drill.duckdb"
    if mode == "follow":
        path = folder / "drill.yaml"
        text = PIPELINE.format(
            source=json.dumps(source),
            convert=json.dumps(CONVERT),
            windows=json.dumps(WINDOWS),
            stream=json.dumps(STREAM),
            database=json.dumps(str(database)),
        )
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path
    path = folder / "drill.json"
    config = {
        "source": source,
        "convert": CONVERT,
        "windows": WINDOWS,
        "stream": STREAM,
        "database": str(database),
    }
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


class Drill:
    def __init__(
        self, platform: Platform, folder: Path, mode: str, *, broken: bool = False
    ) -> None:
        self.platform, self.folder, self.mode, self.broken = platform, folder, mode, broken
        self.seed = int(os.environ.get("DP_DRILL_SEED") or random.randrange(1 << 30))
        self.rng = random.Random(self.seed)
        print(f"drill {platform.name}/{mode}{' (broken)' if broken else ''}: seed {self.seed}")
        self.job = write_job(folder, mode, platform)
        self.runs: list[str] = []

    def _start(self, **env: str) -> subprocess.Popen[bytes]:
        environment = {**os.environ, **env}
        if self.broken:
            environment["DP_DRILL_BROKEN"] = "ack_before_commit"
        with (self.folder / f"run-{len(self.runs)}.log").open("wb") as log:
            return subprocess.Popen(
                [sys.executable, str(CHILD), self.mode, str(self.job)],
                cwd=self.folder,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _wait(self, process: subprocess.Popen[bytes], what: str) -> int:
        try:
            code = process.wait(timeout=HANG)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"{what} did not end (see {self.folder})") from None
        self.runs.append(f"{what}={code}")
        return code

    def _sigterm(self) -> None:
        """SIGTERM once the job committed a batch: it finishes the batch it is in, commits,
        acknowledges, closes and exits 0."""
        process = self._start()
        log = self.folder / f"run-{len(self.runs)}.log"
        deadline = time.monotonic() + HANG
        committed = re.compile(r"(?m)^batch \d+")  # a batch committed (follow or Python API)
        while not committed.search(log.read_text(errors="replace")) and process.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        code = self._wait(process, "sigterm")
        assert code == 0, f"SIGTERM ended the job with {code} (see {self.folder})"

    def run(self) -> Report:
        rows = readings(EVENTS)
        half = len(rows) // 2
        done = threading.Event()

        def produce() -> None:  # the events arrive while the job is killed and restarted
            step = max(1, len(rows) // (4 * max(KILLS, 1)))
            for i in range(0, len(rows), step):
                if i <= half < i + step:
                    self.platform.poison()
                self.platform.produce(rows[i : i + step])
                time.sleep(0.15)
            done.set()

        producer = threading.Thread(target=produce)
        producer.start()
        try:
            # killed right after a read, before its commit (where ack-before-commit loses),
            # then right after a commit, before the acknowledgement (where the batch comes again)
            self._wait(self._start(DP_DRILL_CRASH_AFTER_READS="2"), "crash-after-read")
            if not self.broken:  # the broken variant only needs to show the loss above
                self._wait(self._start(DP_DRILL_CRASH_BEFORE_ACK="2"), "crash-before-ack")
                kills = max(KILLS - 2, 0)
                for i in range(kills):
                    if i == kills // 2:
                        self._sigterm()
                    process = self._start()
                    time.sleep(self.rng.uniform(0.8, 3.0))
                    process.send_signal(signal.SIGKILL)
                    self._wait(process, "kill-9")
                if kills == 0:
                    self._sigterm()
            producer.join()
            self.platform.settle()
            # a clean restart that runs until the stream is idle
            code = self._wait(self._start(), "until-idle")
            assert code == 0, f"the last run failed with {code} (see {self.folder})"
        finally:
            done.wait(HANG)
            producer.join(HANG)
        return self.report(rows)

    def report(self, rows: list[dict[str, Any]]) -> Report:
        produced = pl.DataFrame(rows).with_columns(pl.col("ts").str.to_datetime())
        with duckdb.connect(str(self.folder / "drill.duckdb"), read_only=True) as con:
            stored = [r[0] for r in con.execute("select id from events").fetchall()]
            query = "select sensor, window_start, v as v_sum, count from windows"
            windows = pl.from_arrow(con.sql(query).to_arrow_table())
            # no table when no reject was ever stored (the broken variant can lose the poison
            # message's batch before the reject output is created)
            has_rejects = con.execute(
                "select count(*) from duckdb_tables() where table_name = '_dp_rejects'"
            ).fetchall()[0][0]
            rejects = (
                con.execute("select count(*) from _dp_rejects").fetchall()[0][0]
                if has_rejects
                else 0
            )
        with duckdb.connect() as con:
            con.register("produced", produced)
            con.register("stored_windows", windows)
            truth = """select sensor, time_bucket(interval 1 minute, ts) as window_start,
                              sum(v)::double as v_sum, count(*) as count
                       from produced group by all"""
            wrong, missing = con.execute(
                f"""select count(*) filter (where s.sensor is not null
                                            and (s.v_sum <> t.v_sum or s.count <> t.count)),
                           count(*) filter (where s.sensor is null)
                    from ({truth}) t left join stored_windows s
                      on s.sensor = t.sensor and s.window_start = t.window_start"""
            ).fetchall()[0]
            extra = con.execute(
                f"select count(*) from stored_windows s anti join ({truth}) t "
                "on s.sensor = t.sensor and s.window_start = t.window_start"
            ).fetchall()[0][0]
        ids = set(stored)
        counts: dict[int, int] = {}
        for i in stored:
            counts[i] = counts.get(i, 0) + 1
        return Report(
            seed=self.seed,
            produced=len(rows),
            stored=len(stored),
            lost=sorted(r["id"] for r in rows if r["id"] not in ids),
            doubled=sorted(i for i, c in counts.items() if c > 1),
            wrong_windows=int(wrong) + int(extra),
            missing_windows=int(missing),
            rejects=int(rejects),
            runs=self.runs,
        )


# -- the platforms -------------------------------------------------------------------------------


class RedisPlatform(Platform):
    name = "redis"

    def __init__(self) -> None:
        import redis

        self.client = redis.Redis(host="127.0.0.1", port=6379, decode_responses=True)
        self.key = f"dp-drill-{uuid.uuid4().hex[:10]}"

    def source(self) -> dict[str, Any]:
        return {
            "platform": "redis",
            "host": "127.0.0.1",
            "stream": self.key,
            "group": "drill",
            "consumer": "job",
            "claim_idle": 1,
        }

    def produce(self, rows: list[dict[str, Any]]) -> None:
        pipe = self.client.pipeline()
        for row in rows:
            pipe.xadd(self.key, {k: str(v) for k, v in row.items()})
        pipe.execute()

    def poison(self) -> None:  # a value the job's DataTypeConverter rejects
        self.client.xadd(
            self.key, {"id": "-1", "sensor": "s0", "ts": T0.isoformat(), "v": "not a number"}
        )

    def close(self) -> None:
        self.client.delete(self.key)
        self.client.close()


class _PayloadPlatform(Platform):
    def produce(self, rows: list[dict[str, Any]]) -> None:
        self.publish([json.dumps(r).encode() for r in rows])

    def poison(self) -> None:  # not JSON: the source rejects it
        self.publish([b"{this is not json"])

    def publish(self, payloads: list[bytes]) -> None:
        raise NotImplementedError


class NatsPlatform(_PayloadPlatform):
    name = "nats"

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:10]
        self.stream, self.subject = f"DP_DRILL_{tag}", f"dpdrill.{tag}.events"
        self._run(self._create)

    def _run(self, fn: Any, *args: Any) -> Any:
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        async def call() -> Any:
            import nats

            nc = await nats.connect("nats://127.0.0.1:4222")
            try:
                return await fn(nc.jetstream(), *args)
            finally:
                await nc.close()

        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, call()).result()

    async def _create(self, js: Any) -> None:
        await js.add_stream(name=self.stream, subjects=[self.subject])

    def source(self) -> dict[str, Any]:
        return {
            "platform": "nats",
            "url": "nats://127.0.0.1:4222",
            "subject": self.subject,
            "group": "drill",
            "options": {"consumer": {"ack_wait": NATS_ACK_WAIT}},
        }

    def publish(self, payloads: list[bytes]) -> None:
        async def send(js: Any) -> None:
            for payload in payloads:
                await js.publish(self.subject, payload)

        self._run(send)

    def settle(self) -> None:
        """A killed job's batch comes back ack_wait after its last in-progress signal: wait
        until the consumer holds nothing unacknowledged, or until ack_wait (plus a margin) has
        passed, after which the held messages go to the next pull (the server redelivers only on
        a pull, so num_ack_pending stays up until the last run reads them)."""

        async def held(js: Any) -> int:
            info = await js.consumer_info(self.stream, "drill")
            return int(info.num_ack_pending)

        deadline = time.monotonic() + NATS_ACK_WAIT + 1.0
        while self._run(held) and time.monotonic() < deadline:
            time.sleep(0.2)

    def close(self) -> None:
        async def drop(js: Any) -> None:
            await js.delete_stream(self.stream)

        self._run(drop)


class RabbitPlatform(_PayloadPlatform):
    name = "rabbitmq"

    def __init__(self) -> None:
        import pika

        self.pika = pika
        self.queue = f"dp-drill-{uuid.uuid4().hex[:10]}"
        self.connection = pika.BlockingConnection(
            pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/")
        )
        self.channel = self.connection.channel()
        self.channel.queue_declare(queue=self.queue, durable=True)
        self.sent = 0
        self.lock = threading.Lock()

    def source(self) -> dict[str, Any]:
        return {
            "platform": "rabbitmq",
            "url": "amqp://guest:guest@127.0.0.1:5672/",
            "queue": self.queue,
        }

    def publish(self, payloads: list[bytes]) -> None:
        with self.lock:
            for payload in payloads:
                self.sent += 1
                props = self.pika.BasicProperties(message_id=f"m{self.sent}", delivery_mode=2)
                self.channel.basic_publish("", self.queue, payload, properties=props)

    def close(self) -> None:
        with self.lock:
            self.channel.queue_delete(self.queue)
            self.connection.close()


class MqttPlatform(_PayloadPlatform):
    name = "mqtt"

    def __init__(self, folder: Path) -> None:
        import paho.mqtt.client as mqtt

        self.topic = f"dp-drill/{uuid.uuid4().hex[:10]}"
        self.group = f"drill{uuid.uuid4().hex[:8]}"
        self.log = folder / "mqtt-log"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        self.lock = threading.Lock()
        # the job's persistent session must exist before anything is published
        from data_pipeline.ingestion import StreamingSource

        with StreamingSource(name="events", config={**self.source(), "timeout": 0.2}) as first:
            first.ingest()

    def source(self) -> dict[str, Any]:
        return {
            "platform": "mqtt",
            "host": "127.0.0.1",
            "topic": self.topic,
            "group": self.group,
            "consumer": "job",
            "log_path": str(self.log),
        }

    def publish(self, payloads: list[bytes]) -> None:
        with self.lock:
            for payload in payloads:
                self.client.publish(self.topic, payload, qos=1).wait_for_publish(30)

    def close(self) -> None:
        import paho.mqtt.client as mqtt

        self.client.disconnect()
        self.client.loop_stop()
        # a clean start with session expiry 0 removes the job's stored session
        cleaner = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"{self.group}-job", protocol=mqtt.MQTTv5
        )
        cleaner.connect("127.0.0.1", 1883)
        cleaner.disconnect()


class KafkaPlatform(_PayloadPlatform):
    name = "kafka"

    def __init__(self, broker: str) -> None:
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient, NewTopic

        self.broker = broker
        self.topic = f"dp-drill-{uuid.uuid4().hex[:10]}"
        admin = AdminClient({"bootstrap.servers": broker})
        for future in admin.create_topics([NewTopic(self.topic, num_partitions=3)]).values():
            future.result(30)
        self.producer = Producer({"bootstrap.servers": broker})
        self.lock = threading.Lock()

    def source(self) -> dict[str, Any]:
        return {"platform": "kafka", "url": self.broker, "topic": self.topic, "group": "drill"}

    def publish(self, payloads: list[bytes]) -> None:
        with self.lock:
            for payload in payloads:
                self.producer.produce(self.topic, value=payload)
            assert self.producer.flush(30) == 0
