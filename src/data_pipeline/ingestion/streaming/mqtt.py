"""MQTT for :class:`StreamingSource`: subscribe (MQTT 5, paho-mqtt) and collect one bounded batch.

``stream`` is one topic filter or a list of them (wildcards ``+`` and ``#`` allowed), subscribed
with QoS 1 (``options: {qos: 0|1|2}`` changes it).

* Without a ``group``: a clean session with a fresh client id. MQTT delivers only what is
  published while the source is connected, i.e. during ``ingest()`` (plus the retained message
  of each matching topic, flagged ``_retained``); messages published between batches are lost.
* With a ``group``: a persistent session (``clean_start`` false, session expiry
  ``options.session_expiry`` seconds, default 7 days) under the client id
  ``<group>-<consumer>``, subscribed to the shared subscription ``$share/<group>/<filter>``.
  The broker queues QoS 1/2 messages published while the source is not reading, and the next
  ``ingest()`` receives them; consumers of one group share the messages, two groups each get all
  of them. Retained messages come once, when the subscription is created.

Messages are acknowledged (PUBACK) as they arrive: brokers allow only a few unacknowledged
messages in flight per client (Mosquitto: 20), so a whole batch cannot be held unacknowledged,
and ``ack: false`` is refused. Messages beyond ``max_messages`` are not acknowledged, so a
persistent session gets them again in the next batch.

Meta columns: ``_stream`` (the topic the message was published to), ``_id`` (its arrival number
in the batch, from 1: MQTT packet ids are reused and absent for QoS 0, so they identify nothing)
and ``_retained``.
"""

from __future__ import annotations

import queue
import threading
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from data_pipeline.core.deps import import_optional
from data_pipeline.core.errors import (
    ConfigError,
    DataPipelineError,
    IngestionAuthenticationError,
    IngestionConnectionError,
    IngestionError,
    IngestionTimeoutError,
)
from data_pipeline.ingestion._common import reject_file
from data_pipeline.ingestion.streaming._payload import messages_to_frame

if TYPE_CHECKING:
    import polars as pl

    from data_pipeline.ingestion.streaming.source import StreamingSource

__all__ = ["read_batch"]

_CONNECT_TIMEOUT = 10.0
"""Seconds to wait for the broker's CONNACK and SUBACK."""
_OPTIONS = {"qos", "session_expiry", "keepalive"}
_WEEK = 7 * 24 * 3600
_AUTH_REASONS = {134, 135}  # Bad user name or password, Not authorized


def _endpoint(source: StreamingSource) -> tuple[str, int, bool, str | None, str | None]:
    """(host, port, tls, username, password) from ``url`` or host/port."""
    s = source.settings
    username = s.username
    password = s.password.get_secret_value() if s.password else None
    if not s.url:
        return s.host, source.port, False, username, password
    parts = urlsplit(s.url if "://" in s.url else f"mqtt://{s.url}")
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ConfigError(
            f"MQTT url scheme {parts.scheme!r} is not supported",
            component=source.label,
            hint="write mqtt://host:1883 (mqtts://host:8883 for TLS)",
        )
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else source.port)
    except ValueError:
        raise ConfigError(
            "MQTT url has an invalid port", component=source.label, hint="write mqtt://host:1883"
        ) from None
    username = username or (unquote(parts.username) if parts.username else None)
    password = password or (unquote(parts.password) if parts.password else None)
    return parts.hostname or s.host, port, tls, username, password


def _options(source: StreamingSource) -> tuple[int, int, int]:
    """(qos, session expiry seconds, keepalive seconds) from ``options``."""
    options = source.settings.options
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise ConfigError(
            f"unknown MQTT options {unknown}",
            component=source.label,
            hint=f"MQTT takes the options {sorted(_OPTIONS)}",
        )
    qos = options.get("qos", 1)
    if qos not in (0, 1, 2):
        raise ConfigError(
            f"MQTT qos must be 0, 1 or 2, got {qos!r}", component=source.label, hint="use qos 1"
        )
    return qos, int(options.get("session_expiry", _WEEK)), int(options.get("keepalive", 60))


class _Collector:
    """Receives messages on paho's network thread and hands them to the reading thread.

    It keeps at most ``limit`` messages; the reader acknowledges each one it takes, so every
    PUBACK is queued before the DISCONNECT and nothing the batch holds is delivered again.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.accepted = 0
        self.closed = False
        self.lock = threading.Lock()
        self.messages: queue.Queue[tuple[str, bytes, bool, int, int]] = queue.Queue()
        self.connack = threading.Event()
        self.connect_reason: Any = None
        self.suback = threading.Event()
        self.sub_reasons: list[Any] = []
        self.lost: Any = None
        self.disconnected = threading.Event()
        self.unsuback = threading.Event()

    def on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connect_reason = reason
        self.connack.set()

    def on_subscribe(self, _c: Any, _u: Any, _mid: int, reasons: list[Any], _props: Any) -> None:
        self.sub_reasons = list(reasons)
        self.suback.set()

    def on_unsubscribe(self, *_args: Any) -> None:
        self.unsuback.set()

    def on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if not self.closed:
            self.lost = reason
            self.messages.put(("", b"", False, 0, 0))  # wake the reader
        self.disconnected.set()

    def on_message(self, _c: Any, _u: Any, message: Any) -> None:
        with self.lock:
            if self.closed or self.accepted >= self.limit:
                return  # not acknowledged: a persistent session gets it again next batch
            self.accepted += 1
            self.messages.put(
                (message.topic, message.payload, bool(message.retain), message.mid, message.qos)
            )


def read_batch(source: StreamingSource) -> pl.DataFrame:
    """At most ``max_messages`` messages, ending when none arrived for ``timeout`` seconds."""
    import polars as pl

    mqtt = import_optional("paho.mqtt.client", extra="mqtt", feature="MQTT")
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions

    s = source.settings
    if not s.ack:
        raise ConfigError(
            "MQTT cannot leave a batch unacknowledged (ack: false)",
            component=source.label,
            hint="remove ack: false; MQTT brokers allow only a few unacknowledged messages in "
            "flight, so each message is acknowledged as it arrives",
        )
    qos, expiry, keepalive = _options(source)
    host, port, tls, username, password = _endpoint(source)
    where = f"{host}:{port}"
    filters = [s.stream] if isinstance(s.stream, str) else list(s.stream)
    persistent = bool(s.group)
    client_id = f"{s.group}-{s.consumer}" if persistent else f"{s.consumer}-{uuid.uuid4().hex}"
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    client.manual_ack_set(True)
    if username:
        client.username_pw_set(username, password)
    if tls:
        client.tls_set()
    collector = _Collector(s.max_messages)
    client.on_connect = collector.on_connect
    client.on_subscribe = collector.on_subscribe
    client.on_disconnect = collector.on_disconnect
    client.on_unsubscribe = collector.on_unsubscribe
    client.on_message = collector.on_message
    connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    connect.SessionExpiryInterval = expiry if persistent else 0
    try:
        client.connect(
            host, port, keepalive=keepalive, clean_start=not persistent, properties=connect
        )
    except OSError as exc:
        raise IngestionConnectionError(
            f"cannot connect to MQTT broker at {where}: {exc}",
            component=source.label,
            hint="check url (or host and port), and that the broker is running",
        ) from None
    rows: list[tuple[str, bytes, bool]] = []

    def take(item: tuple[str, bytes, bool, int, int]) -> None:
        rows.append(item[:3])
        if item[4]:  # QoS 1 and 2 are acknowledged
            client.ack(item[3], item[4])

    client.loop_start()
    try:
        _connected(collector, source, where)
        prefix = f"$share/{s.group}/" if persistent else ""
        sub_options = SubscribeOptions(qos=qos, retainHandling=1 if persistent else 0)
        client.subscribe([(prefix + f, sub_options) for f in filters])
        if not collector.suback.wait(_CONNECT_TIMEOUT):
            raise IngestionTimeoutError(
                f"MQTT broker at {where} did not confirm the subscription to {filters}",
                component=source.label,
                hint="check the broker logs",
                transient=True,
            )
        refused = [f for f, r in zip(filters, collector.sub_reasons, strict=False) if r.is_failure]
        if refused:
            reasons = ", ".join(str(r) for r in collector.sub_reasons if r.is_failure)
            raise IngestionError(
                f"MQTT broker at {where} refused the subscription to {refused}: {reasons}",
                component=source.label,
                hint="check the topic filters and the broker's access rules",
            )
        while len(rows) < s.max_messages:
            try:  # the batch ends when nothing arrived for `timeout` seconds
                item = collector.messages.get(timeout=s.timeout)
            except queue.Empty:
                break
            if not item[0]:  # the connection was lost
                break
            take(item)
    finally:
        with collector.lock:  # from here on nothing is accepted
            collector.closed = True
        while not collector.messages.empty():  # accepted before closing: they are ours
            item = collector.messages.get_nowait()
            if item[0]:
                take(item)
        reason = collector.connect_reason
        if persistent and reason is not None and not reason.is_failure and not collector.lost:
            # A barrier: the broker answers UNSUBSCRIBE (of a filter never subscribed, so
            # nothing changes) after it has processed the PUBACKs sent before it. Closing at
            # once could lose them: a socket closed with unread data (the broker keeps
            # sending) is reset, and the broker drops what it had not read yet.
            sent, _ = client.unsubscribe(f"data-pipeline/barrier/{uuid.uuid4().hex}")
            if sent == mqtt.MQTT_ERR_SUCCESS:
                collector.unsuback.wait(_CONNECT_TIMEOUT)
        if client.disconnect() == mqtt.MQTT_ERR_SUCCESS:
            collector.disconnected.wait(_CONNECT_TIMEOUT)
        client.loop_stop()
        # Close the connection and paho's wake-up socket pair now: paho closes them only in
        # Client.__del__, and the client sits in a reference cycle with its callbacks, so the
        # garbage collector may finalize the sockets first (ResourceWarning: unclosed socket).
        reset = getattr(client, "_reset_sockets", None)
        if reset is not None:
            reset()
    if collector.lost is not None:
        source.logger.warning(
            "%s: connection to MQTT broker at %s lost (%s); the batch ends early",
            source.label,
            where,
            collector.lost,
        )
    source.current_operation.details["messages"] = len(rows)
    meta: dict[str, list[Any]] = {
        "_stream": [r[0] for r in rows],
        "_id": [str(i) for i in range(1, len(rows) + 1)],
        "_retained": [r[2] for r in rows],
    }
    payloads = [r[1] for r in rows]
    try:
        return messages_to_frame(source, meta, payloads, {"_retained": pl.Boolean})
    except DataPipelineError as exc:  # already acknowledged: keep the batch, lose nothing
        kept = _keep_batch(source, meta, payloads)
        raise type(exc)(
            f"{exc.detail}; the batch's {len(rows)} messages were already acknowledged "
            f"(MQTT acknowledges as it reads) and are kept in {str(kept)!r}",
            component=exc.component,
            hint=exc.hint,
        ) from exc


def _keep_batch(source: StreamingSource, meta: dict[str, list[Any]], payloads: list[bytes]) -> Any:
    """Write an acknowledged batch that could not be turned into a frame to a Parquet file
    (the meta columns and the raw payloads), beside ``reject_path`` or under
    ``.data_pipeline/rejects/``; return its path."""
    import datetime as dt

    import polars as pl

    s = source.settings
    folder = reject_file(source.name, s.reject_path).parent
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"{source.name}.unprocessed-{stamp}.parquet"
    frame = pl.DataFrame(meta).with_columns(pl.Series("payload", payloads, dtype=pl.Binary))
    frame.write_parquet(path)
    source.current_operation.details["unprocessed_path"] = str(path)
    return path


def _connected(collector: _Collector, source: StreamingSource, where: str) -> None:
    if not collector.connack.wait(_CONNECT_TIMEOUT):
        raise IngestionTimeoutError(
            f"MQTT broker at {where} did not answer the connection request",
            component=source.label,
            hint="check that host and port point to an MQTT broker",
            transient=True,
        )
    reason = collector.connect_reason
    if not reason.is_failure:
        return
    if reason.value in _AUTH_REASONS:
        raise IngestionAuthenticationError(
            f"MQTT broker at {where} refused the credentials: {reason}",
            component=source.label,
            hint="check username and password",
        )
    raise IngestionConnectionError(
        f"MQTT broker at {where} refused the connection: {reason}",
        component=source.label,
        hint="check the client id (group, consumer) and the broker's settings",
    )
