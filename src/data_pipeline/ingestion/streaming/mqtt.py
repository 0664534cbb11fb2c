"""MQTT for :class:`StreamingSource`: subscribe (MQTT 5, paho-mqtt), log, acknowledge, read.

``stream`` is one topic filter or a list of them (wildcards ``+`` and ``#`` allowed), subscribed
with QoS 1 (``options: {qos: 0|1|2}`` changes it). The source keeps one connection for its
lifetime.

* Without a ``group``: a clean session with a fresh client id. MQTT delivers only what is
  published while the source is connected (from its first read until ``close()``), plus the
  retained message of each matching topic, flagged ``_retained``.
* With a ``group``: a persistent session (``clean_start`` false, session expiry
  ``options.session_expiry`` seconds, default 7 days) under the client id
  ``<group>-<consumer>``, subscribed to the shared subscription ``$share/<group>/<filter>``.
  The broker queues QoS 1/2 messages published while the source is not connected; consumers of
  one group share the messages, two groups each get all of them. Retained messages come once,
  when the subscription is created.

Brokers allow only a few unacknowledged messages in flight per client (Mosquitto: 20), so a
batch cannot wait for its checkpoint to be acknowledged. Instead every message is first appended
to a durable local log (``log_path``, default ``.data_pipeline/mqtt/<source name>-<hash of the
broker, group, consumer and filters>``; see :mod:`._log`) and fsynced, and only then
acknowledged (PUBACK); batches are read from the log, and a position in the log is what the
checkpoint keeps (read on its own: the file ``acknowledged`` in the log). After a crash the
messages logged after the committed position are read first. A message the broker sends again
(dup flag) that the log holds already is acknowledged and dropped. ``ack: false`` is refused.

Meta columns: ``_stream`` (the topic the message was published to), ``_id`` (its sequence in the
local log: MQTT packet ids are reused and absent for QoS 0, so they identify nothing) and
``_retained``.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from data_pipeline.core.deps import import_optional
from data_pipeline.core.errors import (
    ConfigError,
    IngestionAuthenticationError,
    IngestionConnectionError,
    IngestionError,
    IngestionTimeoutError,
)
from data_pipeline.ingestion.streaming._log import Entry, MessageLog
from data_pipeline.ingestion.streaming._payload import messages_to_frame

if TYPE_CHECKING:
    import polars as pl

    from data_pipeline.ingestion.streaming.source import StreamingSource

__all__ = ["Reader"]

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
    """Receives messages on paho's network thread and hands them to the reading thread (which
    logs and acknowledges them)."""

    def __init__(self) -> None:
        self.closed = False
        self.lock = threading.Lock()
        self.messages: queue.Queue[tuple[str, bytes, int, int, bool, bool] | None] = queue.Queue()
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
            self.messages.put(None)  # wake the reader
        self.disconnected.set()

    def on_message(self, _c: Any, _u: Any, message: Any) -> None:
        with self.lock:
            if self.closed:
                return  # not acknowledged: a persistent session gets it again
            self.messages.put(
                (
                    message.topic,
                    message.payload,
                    message.mid,
                    message.qos,
                    bool(message.dup),
                    bool(message.retain),
                )
            )


class Reader:
    """One MQTT connection and one durable log for the source's lifetime."""

    def __init__(self, source: StreamingSource) -> None:
        self.mqtt = import_optional("paho.mqtt.client", extra="mqtt", feature="MQTT")
        self.source = source
        s = source.settings
        if not s.ack:
            raise ConfigError(
                "MQTT cannot leave a batch unacknowledged (ack: false)",
                component=source.label,
                hint="remove ack: false; MQTT brokers allow only a few unacknowledged messages "
                "in flight, so each message is logged locally and acknowledged as it arrives",
            )
        self.qos, self.expiry, self.keepalive = _options(source)
        self.host, self.port, self.tls, self.username, self.password = _endpoint(source)
        self.where = f"{self.host}:{self.port}"
        self.filters = [s.stream] if isinstance(s.stream, str) else list(s.stream)
        self.persistent = bool(s.group)
        self.log = MessageLog(self._log_folder())
        self.position = self.log.acknowledged()  # the last sequence handed out
        self.backlog: list[Entry] = self.log.entries(self.position)
        self.client: Any = None
        self.collector: _Collector | None = None

    def _log_folder(self) -> Path:
        s = self.source.settings
        if s.log_path:
            return Path(s.log_path)
        identity = "|".join([self.where, str(s.group), s.consumer, *sorted(self.filters)]).encode()
        digest = hashlib.sha256(identity).hexdigest()[:12]
        from data_pipeline.core.files import local_path, safe_file_name

        return local_path("mqtt", f"{safe_file_name(self.source.name)}-{digest}")

    # -- the Reader protocol -------------------------------------------------------------------

    def restore(self, state: dict[str, Any] | None) -> None:
        if state is not None and "position" in state:
            self.position = int(state["position"])
        else:
            self.position = self.log.acknowledged()
        self.backlog = self.log.entries(self.position)  # read again, from the log

    def checkpoint_state(self) -> dict[str, Any]:
        return {"position": self.position, "log": str(self.log.folder)}

    def acknowledge(self) -> None:
        self._barrier()  # the broker processed every PUBACK sent so far
        self.log.acknowledge(self.position)

    def close(self) -> None:
        try:
            self._disconnect()
        finally:
            self.log.close()

    def lag(self) -> dict[str, int]:
        return {"log": max(0, self.log.next_sequence - 1 - self.position)}

    def read(self) -> pl.DataFrame:
        """At most ``max_messages`` messages (first those logged and not read yet), ending
        when none arrived for ``timeout`` seconds."""
        s = self.source.settings
        rows: list[Entry] = []
        take = min(len(self.backlog), s.max_messages)
        rows += self.backlog[:take]
        del self.backlog[:take]
        if len(rows) < s.max_messages:
            if self.client is None:
                self._connect()
            rows += self._receive(s.max_messages - len(rows), s.timeout)
        self.source.current_operation.details["messages"] = len(rows)
        try:
            frame = self._frame(rows)
        except BaseException:  # the rows are in the log: the next read takes them again
            self.backlog[:0] = rows
            raise
        if rows:
            self.position = rows[-1].sequence
        return frame

    # -- receiving -----------------------------------------------------------------------------

    def _receive(self, limit: int, timeout: float) -> list[Entry]:
        """Messages from the broker: logged (fsynced) in groups, then acknowledged."""
        collector = self.collector
        assert collector is not None
        out: list[Entry] = []
        copies = 0
        deadline = time.monotonic() + timeout
        while len(out) < limit:
            try:
                first = collector.messages.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            chunk = [first]
            while len(chunk) < limit - len(out):  # what arrived meanwhile, without waiting
                try:
                    chunk.append(collector.messages.get_nowait())
                except queue.Empty:
                    break
            lost = None in chunk
            items = [m for m in chunk if m is not None]
            fresh = [m for m in items if not (m[4] and self.log.is_copy(m[2], m[0], m[1]))]
            copies += len(items) - len(fresh)
            out += self.log.append(fresh)  # durable from here on
            for _, _, mid, qos, _, _ in items:
                if qos:
                    self.client.ack(mid, qos)
            if lost:
                self.source.logger.warning(
                    "%s: connection to MQTT broker at %s lost (%s); the batch ends early",
                    self.source.label,
                    self.where,
                    collector.lost,
                )
                self._disconnect()
                break
            deadline = time.monotonic() + timeout
        if copies:
            details = self.source.current_operation.details
            details["duplicates_dropped"] = details.get("duplicates_dropped", 0) + copies
        return out

    def _frame(self, rows: list[Entry]) -> pl.DataFrame:
        import polars as pl

        meta: dict[str, list[Any]] = {
            "_stream": [r.topic for r in rows],
            "_id": [str(r.sequence) for r in rows],
            "_retained": [r.retained for r in rows],
        }
        return messages_to_frame(
            self.source, meta, [r.payload for r in rows], {"_retained": pl.Boolean}
        )

    # -- the connection ------------------------------------------------------------------------

    def _connect(self) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        from paho.mqtt.subscribeoptions import SubscribeOptions

        mqtt, s = self.mqtt, self.source.settings
        client_id = (
            f"{s.group}-{s.consumer}" if self.persistent else f"{s.consumer}-{uuid.uuid4().hex}"
        )
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        client.manual_ack_set(True)
        if self.username:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set()
        collector = _Collector()
        client.on_connect = collector.on_connect
        client.on_subscribe = collector.on_subscribe
        client.on_disconnect = collector.on_disconnect
        client.on_unsubscribe = collector.on_unsubscribe
        client.on_message = collector.on_message
        connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect.SessionExpiryInterval = self.expiry if self.persistent else 0
        try:
            client.connect(
                self.host,
                self.port,
                keepalive=self.keepalive,
                clean_start=not self.persistent,
                properties=connect,
            )
        except OSError as exc:
            raise IngestionConnectionError(
                f"cannot connect to MQTT broker at {self.where}: {exc}",
                component=self.source.label,
                hint="check url (or host and port), and that the broker is running",
            ) from None
        self.client, self.collector = client, collector
        client.loop_start()
        try:
            _connected(collector, self.source, self.where)
            prefix = f"$share/{s.group}/" if self.persistent else ""
            sub_options = SubscribeOptions(qos=self.qos, retainHandling=1 if self.persistent else 0)
            client.subscribe([(prefix + f, sub_options) for f in self.filters])
            if not collector.suback.wait(_CONNECT_TIMEOUT):
                raise IngestionTimeoutError(
                    f"MQTT broker at {self.where} did not confirm the subscription to "
                    f"{self.filters}",
                    component=self.source.label,
                    hint="check the broker logs",
                    transient=True,
                )
            refused = [
                f for f, r in zip(self.filters, collector.sub_reasons, strict=False) if r.is_failure
            ]
            if refused:
                reasons = ", ".join(str(r) for r in collector.sub_reasons if r.is_failure)
                raise IngestionError(
                    f"MQTT broker at {self.where} refused the subscription to {refused}: {reasons}",
                    component=self.source.label,
                    hint="check the topic filters and the broker's access rules",
                )
        except BaseException:
            self._disconnect()
            raise

    def _barrier(self) -> None:
        if self.client is not None and self.collector is not None:
            self._barrier_of(self.client, self.collector)

    def _disconnect(self) -> None:
        client, collector = self.client, self.collector
        self.client = self.collector = None
        if client is None or collector is None:
            return
        with collector.lock:  # from here on nothing is accepted (not acknowledged either)
            collector.closed = True
        try:
            # Closing at once could lose PUBACKs just sent: a socket closed with unread data
            # (the broker keeps sending) is reset, and the broker drops what it had not read.
            self._barrier_of(client, collector)
            if client.disconnect() == self.mqtt.MQTT_ERR_SUCCESS:
                collector.disconnected.wait(_CONNECT_TIMEOUT)
        finally:
            client.loop_stop()
            # Close the connection and paho's wake-up socket pair now: paho closes them only in
            # Client.__del__, and the client sits in a reference cycle with its callbacks, so
            # the garbage collector may finalize the sockets first (ResourceWarning).
            reset = getattr(client, "_reset_sockets", None)
            if reset is not None:
                reset()

    def _barrier_of(self, client: Any, collector: _Collector) -> None:
        """The broker answers an UNSUBSCRIBE (of a filter never subscribed, so nothing changes)
        after it processed the PUBACKs sent before it."""
        reason = collector.connect_reason
        if reason is None or reason.is_failure or collector.lost is not None:
            return
        collector.unsuback.clear()
        sent, _ = client.unsubscribe(f"data-pipeline/barrier/{uuid.uuid4().hex}")
        if sent == self.mqtt.MQTT_ERR_SUCCESS:
            collector.unsuback.wait(_CONNECT_TIMEOUT)


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
