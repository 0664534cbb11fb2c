"""RabbitMQ for :class:`StreamingSource`: consume queues into bounded frames.

``stream`` is a queue name (or a list of queues read together on one channel). The queue must
exist: it is declared passively, so the source never creates or changes queues. The source keeps
one connection and one channel for its lifetime; messages are consumed with a channel-wide
prefetch of ``max_messages`` (the broker never hands out more than one batch) and acknowledged
with one ``basic.ack`` (``multiple``) after the batch's checkpoint committed (read on its own:
when the next batch is asked for), confirmed by the broker before the next batch is read. On
any failure before that they go back to the queue (``basic.nack`` with requeue, or the broker
does it when the connection dies), and with ``ack: false`` they are always returned (a
repeatable peek; the next read sees them with ``_redelivered`` true).

A message delivered again after its batch committed (the process stopped between the commit and
the acknowledgement) is recognised by its ``message_id`` and acknowledged and dropped. The
broker requeues a dead job's batch when it notices the lost connection: at once when the process
died, after the heartbeat timeout (60 s by default) when its host did, possibly after later
commits and restarts. So the checkpoint keeps the ids of the last committed batch of every
earlier run (whose acknowledgement may not have reached the broker) for ``_REQUEUE_WAIT``
seconds after the restart that found them (three heartbeat timeouts plus a minute when the
connection's heartbeat is longer), or until their copy was dropped, beside the ids of the batch
it commits. Exactly once therefore needs a ``message_id`` on every message (without one it is at
least once) and heartbeats on: a classic queue read with acknowledgements refuses a connection
whose heartbeat is off (``heartbeat: 0``), since the broker could then requeue a dead host's
batch at any later time.

Stream queues (``x-queue-type: stream``) are recognised on the first read. They are read from an
offset: ``start_id`` (``0`` the first message, ``$`` only new ones, or an offset), then after the
last offset committed (kept in the checkpoint, or ``state_path``); a message at or before it is
dropped.

A queue already shares its messages among all its consumers, so ``group`` has no meaning here and
is refused (to give several applications a copy each, bind one queue per application to the
exchange).

Frame columns: ``_stream`` (the queue), ``_id`` (the producer's ``message_id``, or the delivery
tag of this read when the producer set none), ``_routing_key``, ``_timestamp`` (the producer's
``timestamp`` property, UTC, null when absent), ``_redelivered``, then the payload columns (see
:mod:`._payload`); ``_offset`` for stream queues.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from data_pipeline.core.deps import import_optional
from data_pipeline.core.errors import (
    ConfigError,
    IngestionAuthenticationError,
    IngestionConnectionError,
    InputNotFoundError,
)
from data_pipeline.ingestion.streaming._payload import messages_to_frame

if TYPE_CHECKING:
    import polars as pl

    from data_pipeline.ingestion.streaming.source import StreamingSource

__all__ = ["Reader"]

_NOT_FOR_QUEUES = {
    "group": "every consumer of a queue already shares its messages; to give several "
    "applications a copy each, bind one queue per application to the exchange",
}
_NOT_FOR_CLASSIC = {
    "start_id": "a classic queue hands out what it holds; it has no position to start from",
    "state_path": "a classic queue removes what was acknowledged; there is no position to keep",
}


_REQUEUE_WAIT = 600.0
"""Seconds the ids a restart found in the checkpoint are kept at least: by then the broker has
requeued whatever a dead connection held (it notices one within its heartbeat timeout; see
:func:`_requeue_wait` for longer heartbeats)."""


def _requeue_wait(heartbeat: Any) -> float:
    """How long the ids a restart found are kept, for a connection ``heartbeat`` (seconds;
    None or a callable: negotiated, the broker's 60 s unless told otherwise): the broker closes
    a silent connection after about two heartbeat timeouts, so three plus a minute, and never
    less than ``_REQUEUE_WAIT``."""
    if isinstance(heartbeat, (int, float)) and not isinstance(heartbeat, bool) and heartbeat > 0:
        return max(_REQUEUE_WAIT, 3.0 * float(heartbeat) + 60.0)
    return _REQUEUE_WAIT


class Reader:
    """One connection and channel for the source's lifetime; see the module docstring."""

    def __init__(self, source: StreamingSource) -> None:
        self.pika = import_optional("pika", extra="rabbitmq", feature="RabbitMQ")
        self.errors = import_optional("pika.exceptions", extra="rabbitmq", feature="RabbitMQ")
        self.source = source
        s = source.settings
        refused = sorted(set(_NOT_FOR_QUEUES) & s.model_fields_set)
        if refused:
            raise ConfigError(
                f"{', '.join(repr(k) for k in refused)} has no meaning for RabbitMQ: "
                + "; ".join(_NOT_FOR_QUEUES[k] for k in refused),
                component=source.label,
                hint=f"remove {', '.join(refused)} from the config",
            )
        self.queues = [s.stream] if isinstance(s.stream, str) else list(s.stream)
        self.connection: Any = None
        self.channel: Any = None
        self.streams: set[str] = set()  # the stream queues among them
        self.tags: list[str] = []
        self.outstanding: list[int] = []  # delivery tags of the batch(es) read, not acknowledged
        self.unacked: set[int] = set()  # every delivery tag received and not acknowledged
        self.batch_ids: list[str] = []  # message ids read since the last acknowledgement
        self.committed: dict[str, None] = {}  # ids committed here, ack not confirmed
        self.carried: list[tuple[float, dict[str, None]]] = []  # (until, ids) of earlier runs
        self.dropped: list[str] = []  # ids of copies acknowledged, not confirmed yet
        self.offsets: dict[str, int] = {}  # stream queues: the last offset read
        self.committed_offsets: dict[str, int] = {}
        self.buffer: list[tuple[str, Any, Any, bytes]] = []
        self.warned = False
        # the heartbeat asked for; the one the broker agreed to may lengthen it (see _open)
        self.requeue_wait = _requeue_wait(_parameters(source, self.pika).heartbeat)

    # -- the Reader protocol -------------------------------------------------------------------

    def restore(self, state: dict[str, Any] | None) -> None:
        state = state or {}
        now = time.time()
        self.carried = [
            (float(until), dict.fromkeys(str(x) for x in ids))
            for until, ids in state.get("carried") or []
            if float(until) > now
        ]
        last = dict.fromkeys(str(x) for x in state.get("pending") or [])
        if last:  # its acknowledgement may not have reached the broker
            self.carried.append((now + self.requeue_wait, last))
        self.committed, self.dropped = {}, []
        offsets = {k: int(v) for k, v in (state.get("positions") or {}).items()}
        self.committed_offsets = dict(offsets)
        self.offsets = dict(offsets)
        if self.channel is not None:
            self._return_unacknowledged()
            if self.streams:  # streams restart at the committed offsets
                self._cancel()
                self._consume()

    def checkpoint_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "pending": list({**self.committed, **dict.fromkeys(self.batch_ids)})
        }
        carried = self._carried()
        if carried:
            state["carried"] = [[until, list(ids)] for until, ids in carried]
        if self.offsets:
            state["positions"] = {k: str(v) for k, v in sorted(self.offsets.items())}
        return state

    def acknowledge(self) -> None:
        if self.channel is None:
            return
        ack = self.source.settings.ack
        if ack:  # unconfirmed until the barrier returns
            self.committed.update(dict.fromkeys(self.batch_ids))
        if self.outstanding or (ack and self.dropped):
            last = max(self.outstanding, default=0)
            with self._lost():
                if ack and last:  # not acknowledged yet: "multiple" takes all before it
                    self.channel.basic_ack(last, multiple=True)
                elif last:
                    self.channel.basic_nack(last, multiple=True, requeue=True)
                self._barrier()  # the copies dropped since the last one are confirmed too
            self.unacked = {t for t in self.unacked if t > last}
        self.outstanding = []
        if ack:
            for done in (*self.batch_ids, *self.dropped):
                self.committed.pop(done, None)
                for _, ids in self.carried:
                    ids.pop(done, None)
            self.dropped = []
            self.committed_offsets.update(self.offsets)
        else:
            self.offsets = dict(self.committed_offsets)
        self.batch_ids = []

    def close(self) -> None:
        connection, self.connection, self.channel = self.connection, None, None
        if connection is not None and connection.is_open:
            connection.close()  # anything delivered and not acknowledged goes back to the queue

    def read(self) -> pl.DataFrame:
        """At most ``max_messages`` messages, ending when none arrived for ``timeout`` s."""
        import polars as pl

        s = self.source.settings
        with self._lost():
            if self.connection is None:
                self._open()
            payloads: list[bytes] = []
            meta: dict[str, list[Any]] = {
                "_stream": [],
                "_id": [],
                "_routing_key": [],
                "_timestamp": [],
                "_redelivered": [],
            }
            offsets: list[int | None] = []
            ids: list[str] = []
            deadline = time.monotonic() + s.timeout
            duplicates = 0
            while len(payloads) < s.max_messages:
                if not self.buffer:
                    left = deadline - time.monotonic()
                    self.connection.process_data_events(time_limit=max(left, 0))
                    if not self.buffer:
                        if time.monotonic() >= deadline:
                            break
                        continue
                queue, method, props, body = self.buffer.pop(0)
                offset = (
                    (props.headers or {}).get("x-stream-offset") if queue in self.streams else None
                )
                if self._seen(queue, method, props, offset):
                    duplicates += 1
                    continue
                self.outstanding.append(method.delivery_tag)
                deadline = time.monotonic() + s.timeout  # a message arrived: a full timeout more
                payloads.append(body)
                meta["_stream"].append(queue)
                meta["_id"].append(props.message_id or str(method.delivery_tag))
                meta["_routing_key"].append(method.routing_key)
                stamp = props.timestamp
                meta["_timestamp"].append(
                    None if stamp is None else dt.datetime.fromtimestamp(stamp, dt.timezone.utc)
                )
                meta["_redelivered"].append(bool(method.redelivered))
                offsets.append(int(offset) if offset is not None else None)
                if props.message_id:
                    ids.append(str(props.message_id))
                elif not self.warned and self.source._managed:
                    self.warned = True
                    self.source.logger.warning(
                        "%s: messages of %r carry no message_id: a batch delivered again after "
                        "its commit cannot be recognised (at least once)",
                        self.source.label,
                        queue,
                    )
            if duplicates:
                details = self.source.current_operation.details
                details["duplicates_dropped"] = details.get("duplicates_dropped", 0) + duplicates
            self.source.current_operation.details["messages"] = len(payloads)
            types: dict[str, Any] = {
                "_timestamp": pl.Datetime("us", "UTC"),
                "_redelivered": pl.Boolean,
            }
            if self.streams:
                meta["_offset"] = offsets
                types["_offset"] = pl.Int64
            try:
                frame = messages_to_frame(self.source, meta, payloads, types)
            except BaseException:
                self._return_unacknowledged()
                raise
        self.batch_ids.extend(ids)
        for queue, offset in zip(meta["_stream"], offsets, strict=True):
            if offset is not None:
                self.offsets[queue] = max(offset, self.offsets.get(queue, -1))
        return frame

    # -- internals -----------------------------------------------------------------------------

    def _seen(self, queue: str, method: Any, props: Any, offset: Any) -> bool:
        """A message committed before (delivered again): acknowledged now and dropped."""
        if offset is not None:
            done = int(offset) <= self.committed_offsets.get(queue, -1)
        else:
            known = props.message_id in self.committed or any(
                props.message_id in ids for _, ids in self._carried()
            )
            done = bool(method.redelivered and props.message_id and known)
        if done:
            self.channel.basic_ack(method.delivery_tag)
            self.unacked.discard(method.delivery_tag)
            if offset is None:
                self.dropped.append(str(props.message_id))
        return done

    def _carried(self) -> list[tuple[float, dict[str, None]]]:
        now = time.time()
        self.carried = [(until, ids) for until, ids in self.carried if ids and until > now]
        return self.carried

    def _open(self) -> None:
        pika, errors, source = self.pika, self.errors, self.source
        where = _address(source)
        try:
            self.connection = pika.BlockingConnection(_parameters(source, pika))
        except (errors.ProbableAuthenticationError, errors.AuthenticationError):
            raise IngestionAuthenticationError(
                f"RabbitMQ at {where} refused the credentials",
                component=source.label,
                hint="check username and password (or the credentials in the url)",
            ) from None
        except errors.ProbableAccessDeniedError as exc:
            raise IngestionAuthenticationError(
                f"RabbitMQ at {where} refused access to the virtual host: {_reason(exc)}",
                component=source.label,
                hint="check that the virtual host exists and the user has permissions on it",
            ) from None
        except errors.AMQPConnectionError as exc:
            raise IngestionConnectionError(
                f"cannot connect to RabbitMQ at {where}: {_reason(exc)}",
                component=source.label,
                hint="check host and port, and that RabbitMQ is running",
            ) from None
        try:
            self.channel = self.connection.channel()
            for queue in self.queues:
                _declared(source, self.channel, queue, errors)
            self.streams = {q for q in self.queues if self._is_stream(q)}
            classic = [q for q in self.queues if q not in self.streams]
            if classic:
                self._check_heartbeat(classic)
            refused = sorted(set(_NOT_FOR_CLASSIC) & source.settings.model_fields_set)
            if classic and refused:
                raise ConfigError(
                    f"{', '.join(repr(k) for k in refused)} has no meaning for the classic "
                    f"queue(s) {classic}: " + "; ".join(_NOT_FOR_CLASSIC[k] for k in refused),
                    component=source.label,
                    hint=f"remove {', '.join(refused)} from the config (they apply to stream "
                    "queues)",
                )
            # Channel-wide (global) prefetch: all queues together never hand out more than one
            # batch; stream queues need a per-consumer prefetch too.
            prefetch = min(self.source.settings.max_messages, 65535)
            self.channel.basic_qos(prefetch_count=prefetch, global_qos=True)
            if self.streams:
                self.channel.basic_qos(prefetch_count=prefetch)
            self._consume()
        except BaseException:
            self.close()
            raise

    def _check_heartbeat(self, classic: list[str]) -> None:
        """Keep the ids a restart found for as long as the agreed heartbeat needs; refuse a
        connection without heartbeats when acknowledging (see the module docstring)."""
        impl = getattr(self.connection, "_impl", None)
        agreed = getattr(getattr(impl, "params", None), "heartbeat", None)
        if agreed == 0 and self.source.settings.ack:
            raise ConfigError(
                f"the connection to RabbitMQ has no heartbeat (heartbeat 0), so the broker may "
                f"requeue a dead host's batch from {classic} at any later time and it would be "
                "stored twice",
                component=self.source.label,
                hint="set options.heartbeat to a number of seconds (RabbitMQ's default is 60), "
                "or remove it",
            )
        wait = _requeue_wait(agreed)
        if wait > self.requeue_wait:  # lengthen what a restart found too
            extra = wait - self.requeue_wait
            self.carried = [(until + extra, ids) for until, ids in self.carried]
            self.requeue_wait = wait

    def _is_stream(self, queue: str) -> bool:
        """A stream queue accepts a consumer with ``x-stream-offset``; a classic one closes the
        channel with 406 (probed on a channel of its own)."""
        import logging

        probe = self.connection.channel()
        quiet = logging.getLogger("pika.channel")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # pika logs the expected refusal as a warning
        try:
            probe.basic_qos(prefetch_count=1)
            tag = probe.basic_consume(queue, lambda *_: None, arguments={"x-stream-offset": "next"})
            probe.basic_cancel(tag)
            return True
        except self.errors.ChannelClosedByBroker as exc:
            if exc.reply_code == 406:
                return False
            raise
        finally:
            quiet.setLevel(level)
            if probe.is_open:
                probe.close()

    def _consume(self) -> None:
        self.tags = []
        for queue in self.queues:
            arguments = None
            if queue in self.streams:
                arguments = {"x-stream-offset": self._stream_start(queue)}
            self.tags.append(
                self.channel.basic_consume(
                    queue, self._take(queue), auto_ack=False, arguments=arguments
                )
            )

    def _stream_start(self, queue: str) -> Any:
        known = self.committed_offsets.get(queue)
        if known is not None:
            return known + 1
        start = self.source.settings.start_id.strip()
        if start in ("0", "first"):
            return "first"
        if start in ("$", "next", "last"):
            return "next" if start != "last" else "last"
        if start.isdigit():
            return int(start)
        raise ConfigError(
            f"start_id {start!r} is not a RabbitMQ stream position",
            component=self.source.label,
            hint="use '0' (the first message), '$' (only new ones) or an offset",
        )

    def _take(self, queue: str) -> Any:
        def on_message(_ch: Any, method: Any, props: Any, body: bytes) -> None:
            self.buffer.append((queue, method, props, body))
            self.unacked.add(method.delivery_tag)

        return on_message

    def _cancel(self) -> None:
        for tag in self.tags:
            self.channel.basic_cancel(tag)
        self.tags = []
        self.buffer = []

    def _return_unacknowledged(self) -> None:
        """What was delivered and not acknowledged goes back to the queue now."""
        if self.channel is None:
            return
        self.buffer = []
        self.batch_ids = []
        self.offsets = dict(self.committed_offsets)
        if self.unacked and self.channel.is_open:  # read or waiting in the buffer: all back
            self.channel.basic_nack(max(self.unacked), multiple=True, requeue=True)
        self.unacked = set()
        self.outstanding = []
        if self.streams and self.channel.is_open:  # a stream is read again from an offset
            self._cancel()
            self._consume()

    def _barrier(self) -> None:
        """A synchronous method on the channel: the broker answers after it processed what was
        sent before (the acknowledgements)."""
        self.channel.basic_qos(
            prefetch_count=min(self.source.settings.max_messages, 65535), global_qos=True
        )

    def _lost(self) -> Any:
        return _connection_lost(self.source, self.errors)


@contextlib.contextmanager
def _connection_lost(source: StreamingSource, errors: Any) -> Iterator[None]:
    try:
        yield
    except errors.AMQPConnectionError as exc:
        raise IngestionConnectionError(
            f"lost the connection to RabbitMQ at {_address(source)}: {_reason(exc)}",
            component=source.label,
            hint="check that RabbitMQ is running, then read again (unacknowledged messages "
            "stay in the queue)",
        ) from None


def _declared(source: StreamingSource, channel: Any, queue: str, errors: Any) -> None:
    try:
        channel.queue_declare(queue=queue, passive=True)
    except errors.ChannelClosedByBroker as exc:
        if exc.reply_code == 403:
            raise IngestionAuthenticationError(
                f"RabbitMQ at {_address(source)} refused access to queue {queue!r}: "
                f"{exc.reply_text}",
                component=source.label,
                hint="give the user read permissions on the queue (rabbitmqctl set_permissions)",
            ) from None
        if exc.reply_code != 404:
            raise
        raise InputNotFoundError(
            f"RabbitMQ at {_address(source)} has no queue {queue!r}",
            component=source.label,
            hint="declare the queue first (rabbitmqadmin declare queue name=... durable=true, "
            "or your producer's queue_declare); the source never creates queues",
        ) from None


def _address(source: StreamingSource) -> str:
    """``host:port`` of the broker, never with credentials."""
    s = source.settings
    if s.url:
        parts = urlsplit(s.url)
        default = 5671 if parts.scheme == "amqps" else 5672
        return f"{parts.hostname or 'localhost'}:{parts.port or default}"
    return f"{s.host}:{source.port}"


def _reason(exc: BaseException) -> str:
    """The innermost cause pika wraps (``ConnectionRefusedError(111, ...)``), credential-free."""
    from data_pipeline.core.secrets import redact_text

    inner: Any = exc
    for _ in range(5):
        wrapped = getattr(inner, "exception", None)  # pika's connector phase errors
        if not isinstance(wrapped, BaseException) and inner.args:
            wrapped = inner.args[0]
        if not isinstance(wrapped, BaseException):
            break
        inner = wrapped
    return redact_text(str(inner) or type(inner).__name__)


def _parameters(source: StreamingSource, pika: Any) -> Any:
    s = source.settings
    defaults: dict[str, Any] = {"connection_attempts": 1, "socket_timeout": 5}
    if s.url:
        params = pika.URLParameters(s.url)
        for key, value in {**defaults, **s.options}.items():
            _set(source, params, key, value)
        if s.username or s.password:  # each key replaces its own part of the URL's login
            user = s.username or params.credentials.username
            password = s.password.get_secret_value() if s.password else params.credentials.password
            params.credentials = pika.PlainCredentials(user, password)
        return params
    credentials = pika.PlainCredentials(
        s.username or "guest", s.password.get_secret_value() if s.password else "guest"
    )
    params = pika.ConnectionParameters(host=s.host, port=source.port, credentials=credentials)
    for key, value in {**defaults, **s.options}.items():
        _set(source, params, key, value)
    return params


def _set(source: StreamingSource, params: Any, key: str, value: Any) -> None:
    if not hasattr(params, key) or key.startswith("_"):
        raise ConfigError(
            f"options.{key} is not a pika connection parameter",
            component=source.label,
            hint="use pika.ConnectionParameters names: virtual_host, heartbeat, "
            "blocked_connection_timeout, socket_timeout, connection_attempts, ...",
        )
    try:
        setattr(params, key, value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"options.{key}: {exc}", component=source.label, hint="check the value's type"
        ) from None
