"""StreamingSource with MQTT, against the real Mosquitto on 127.0.0.1:1883."""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from data_pipeline.core.errors import (
    ConfigError,
    IngestionAuthenticationError,
    IngestionConnectionError,
    ParseError,
)
from data_pipeline.ingestion.streaming import StreamingSource
from tests.conftest import require_service

pytest.importorskip("paho.mqtt")

HOST, PORT = "127.0.0.1", 1883


def _client(client_id: str = "", port: int = PORT) -> Any:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    client.connect(HOST, port)
    client.loop_start()
    return client


@pytest.fixture
def broker() -> Iterator[Callable[..., None]]:
    """``publish(topic, payload, retain=False)`` at QoS 1; sessions of the test are removed."""
    require_service("Mosquitto", HOST, PORT)
    publisher = _client()
    sessions: list[str] = []

    def publish(topic: str, payload: Any, *, retain: bool = False) -> None:
        data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
        publisher.publish(topic, data, qos=1, retain=retain).wait_for_publish(10)

    publish.sessions = sessions  # type: ignore[attr-defined]
    try:
        yield publish
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        for client_id in sessions:  # a clean start with expiry 0 deletes the stored session
            _client(client_id).disconnect()


@pytest.fixture
def topic() -> str:
    return f"dp-test/{uuid.uuid4().hex[:10]}"


LOGS = Path(tempfile.mkdtemp(prefix="dp-mqtt-logs-"))
"""The sources' durable logs (each source of a test its own, unless the test says otherwise)."""


def mqtt_source(topic: str, publish: Any = None, **config: Any) -> StreamingSource:
    config.setdefault("log_path", str(LOGS / uuid.uuid4().hex))
    settings = {"platform": "mqtt", "host": HOST, "topic": topic, "timeout": 1, **config}
    if publish is not None and config.get("group"):
        publish.sessions.append(f"{config['group']}-{config.get('consumer', 'data-pipeline')}")
    return StreamingSource(name="events", config=settings)


def subscribed(topic: str, publish: Any, **config: Any) -> StreamingSource:
    """A group source whose persistent session exists (its first, empty batch created it)."""
    source = mqtt_source(topic, publish, group=f"g{uuid.uuid4().hex[:8]}", **config)
    assert source.ingest().height == 0
    return source


def test_persistent_session_gets_what_was_published_between_batches(
    broker: Any, topic: str
) -> None:
    src = subscribed(f"{topic}/#", broker, max_messages=20)
    for i in range(45):  # published while the source is not reading
        broker(f"{topic}/dev{i % 3}", {"n": i})
    sizes, seen = [], []
    for batch in src.batches():
        sizes.append(batch.height)
        seen.extend(batch["n"].to_list())
    # more than 20 arrive at once: those beyond max_messages are left unacknowledged and the
    # session delivers them in the next batch: nothing lost, nothing doubled
    assert sizes == [20, 20, 5]
    assert sorted(seen) == list(range(45))
    broker(f"{topic}/dev0", {"n": 45})
    out = src.ingest()
    assert out["n"].to_list() == [45] and out["_stream"].to_list() == [f"{topic}/dev0"]


def test_without_group_only_what_arrives_while_reading(broker: Any, topic: str) -> None:
    broker(topic, {"n": -1})  # before the source connects: MQTT does not keep it
    stop = threading.Event()

    def keep_publishing() -> None:
        i = 0
        while not stop.is_set():
            broker(topic, {"n": i})
            i += 1
            time.sleep(0.05)

    thread = threading.Thread(target=keep_publishing)
    thread.start()
    try:
        out = mqtt_source(topic, max_messages=5, timeout=10).ingest()
    finally:
        stop.set()
        thread.join()
    assert out.height == 5
    assert -1 not in out["n"].to_list()
    assert out["_id"].to_list() == ["1", "2", "3", "4", "5"]
    assert out["_retained"].to_list() == [False] * 5


def test_retained_message_flagged(broker: Any, topic: str) -> None:
    broker(f"{topic}/state", {"on": True}, retain=True)
    try:
        out = mqtt_source(f"{topic}/+").ingest()
    finally:
        broker(f"{topic}/state", b"", retain=True)  # an empty retained message clears it
    assert out.schema["_retained"] == pl.Boolean
    assert out.select("_stream", "_retained", "on").rows() == [(f"{topic}/state", True, True)]


def test_json_payload_columns(broker: Any, topic: str) -> None:
    src = subscribed(topic, broker)
    broker(topic, {"id": 1, "geo": {"city": "Oslo", "pos": {"lat": 59.9}}})
    out = src.ingest()
    assert out.columns == ["_stream", "_id", "_retained", "id", "geo__city", "geo__pos__lat"]
    assert out.row(0) == (topic, "1", False, 1, "Oslo", 59.9)


@pytest.mark.parametrize(
    ("mode", "dtype", "value"), [("text", pl.String, "æ ø"), ("bytes", pl.Binary, "æ ø".encode())]
)
def test_payload_text_and_bytes(broker: Any, topic: str, mode: str, dtype: Any, value: Any) -> None:
    src = subscribed(topic, broker, payload=mode)
    broker(topic, "æ ø".encode())
    out = src.ingest()
    assert out.schema["payload"] == dtype
    assert out["payload"].to_list() == [value]


@pytest.mark.parametrize("mode", ["error", "skip", "reject"])
def test_bad_payload(broker: Any, topic: str, tmp_path: Path, mode: str) -> None:
    rejects = tmp_path / "rejects.csv"
    src = subscribed(topic, broker, on_bad_rows=mode, reject_path=str(rejects))
    for i in range(3):
        broker(topic, {"n": i})
    broker(topic, b"[1, 2]")
    if mode == "error":
        with pytest.raises(ParseError, match="not an object") as info:
            src.ingest()
        assert topic in str(info.value)
        # MQTT acknowledged the batch as it arrived, after logging it: the next read (here with
        # the poison message skipped) reads it again from the log, so nothing is lost
        src.settings.on_bad_rows = "skip"
        assert src.ingest()["n"].to_list() == [0, 1, 2]
        return
    out = src.ingest()
    assert out["n"].to_list() == [0, 1, 2]
    meta = src.get_metadata()
    assert meta["rows_in"] == 4
    assert meta["rows_in"] == meta["rows_out"] + meta["rows_rejected"]
    if mode == "skip":
        assert meta["details"]["rows_skipped"] == 1 and not rejects.exists()
    else:
        assert pl.read_csv(rejects, infer_schema=False).select("stream", "id", "raw").rows() == [
            (topic, "4", "[1, 2]")
        ]


def test_groups_share_within_and_each_see_all(broker: Any, topic: str) -> None:
    group = f"g{uuid.uuid4().hex[:8]}"
    a1 = mqtt_source(topic, broker, group=group, consumer="a1")
    a2 = mqtt_source(topic, broker, group=group, consumer="a2")
    other = subscribed(topic, broker)
    assert a1.ingest().height == 0 and a2.ingest().height == 0
    for i in range(10):
        broker(topic, {"n": i})
    first, second = a1.ingest()["n"].to_list(), a2.ingest()["n"].to_list()
    assert sorted(first + second) == list(range(10))  # shared: each message once in the group
    assert sorted(other.ingest()["n"].to_list()) == list(range(10))


def test_connection_refused_names_address() -> None:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    src = StreamingSource(
        name="e",
        config={"platform": "mqtt", "url": f"mqtt://u:s3cret-pw@{HOST}:{port}", "topic": "t"},
    )
    with pytest.raises(IngestionConnectionError, match=f"{HOST}:{port}") as info:
        src.ingest()
    assert "s3cret-pw" not in str(info.value)


def test_config_errors(broker: Any) -> None:
    with pytest.raises(ConfigError, match="ack"):
        mqtt_source("t", ack=False).ingest()
    with pytest.raises(ConfigError, match="unknown MQTT options"):
        mqtt_source("t", options={"sesion_expiry": 5}).ingest()


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[int]:
    """A Mosquitto of the test's own that requires a password (alice / wonderland-42)."""
    mosquitto, passwd = shutil.which("mosquitto"), shutil.which("mosquitto_passwd")
    if not mosquitto or not passwd:
        pytest.skip("mosquitto and mosquitto_passwd are not installed")
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = int(s.getsockname()[1])
    passwords = tmp_path / "passwords"
    subprocess.run([passwd, "-c", "-b", str(passwords), "alice", "wonderland-42"], check=True)
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(  # `user`: run as root, mosquitto would switch to a user who cannot read
        f"listener {port} {HOST}\nallow_anonymous false\npassword_file {passwords}\n"
        f"persistence false\nuser {getpass.getuser()}\n"
    )
    process = subprocess.Popen(
        [mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection((HOST, port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mosquitto did not start on {HOST}:{port}")
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_bad_credentials(auth_broker: int) -> None:
    def source(password: str) -> StreamingSource:
        config = {"port": auth_broker, "username": "alice", "password": password}
        return mqtt_source("t", **config)

    with pytest.raises(IngestionAuthenticationError, match=f"{HOST}:{auth_broker}") as info:
        source("wrong-password").ingest()
    assert "wrong-password" not in str(info.value)
    assert source("wonderland-42").ingest().height == 0
