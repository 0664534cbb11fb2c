"""RabbitMQ for :class:`StreamingSource`: consume a queue into a bounded frame.

``stream`` is a queue name (or a list of queues read together on one channel). The queue must
exist: it is declared passively, so the source never creates or changes queues. Messages are
consumed with a channel-wide prefetch of ``max_messages`` (the broker never hands out more than
one batch) and acknowledged with one ``basic.ack`` (``multiple``) only after the batch frame is
built; on any failure before that they are returned to the queue (``basic.nack`` with requeue),
and with ``ack: false`` they are always returned (a repeatable peek; the next read sees them
with ``_redelivered`` true).

A queue already shares its messages among all its consumers, so ``group`` has no meaning here and
is refused (to give several applications a copy each, bind one queue per application to the
exchange). ``start_id`` and ``state_path`` are refused too: a queue has no positions to replay.

Frame columns: ``_stream`` (the queue), ``_id`` (the producer's ``message_id``, or the delivery
tag of this read when the producer set none), ``_routing_key``, ``_timestamp`` (the producer's
``timestamp`` property, UTC, null when absent), ``_redelivered``, then the payload columns (see
:mod:`._payload`).
"""

from __future__ import annotations

import datetime as dt
import time
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

__all__ = ["read_batch"]

_NOT_FOR_QUEUES = {
    "group": "every consumer of a queue already shares its messages; to give several "
    "applications a copy each, bind one queue per application to the exchange",
    "start_id": "a queue hands out what it holds; it has no position to start from",
    "state_path": "a queue removes what was acknowledged; there is no position to keep",
}


def read_batch(source: StreamingSource) -> pl.DataFrame:
    """At most ``max_messages`` messages, ending when none arrived for ``timeout`` seconds."""
    pika = import_optional("pika", extra="rabbitmq", feature="RabbitMQ")
    errors = import_optional("pika.exceptions", extra="rabbitmq", feature="RabbitMQ")

    s = source.settings
    refused = sorted(set(_NOT_FOR_QUEUES) & s.model_fields_set)
    if refused:
        raise ConfigError(
            f"{', '.join(repr(k) for k in refused)} has no meaning for RabbitMQ: "
            + "; ".join(_NOT_FOR_QUEUES[k] for k in refused),
            component=source.label,
            hint=f"remove {', '.join(refused)} from the config",
        )
    where = _address(source)
    try:
        connection = pika.BlockingConnection(_parameters(source, pika))
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
        return _consume(source, connection, errors)
    except errors.AMQPConnectionError as exc:
        raise IngestionConnectionError(
            f"lost the connection to RabbitMQ at {where}: {_reason(exc)}",
            component=source.label,
            hint="check that RabbitMQ is running, then read again (unacknowledged messages "
            "stay in the queue)",
        ) from None
    finally:
        if connection.is_open:
            connection.close()  # anything delivered and not acknowledged goes back to the queue


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
        if s.username or s.password:
            user = s.username or params.credentials.username
            password = s.password.get_secret_value() if s.password else ""
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


def _consume(source: StreamingSource, connection: Any, errors: Any) -> pl.DataFrame:
    import polars as pl

    s = source.settings
    queues = [s.stream] if isinstance(s.stream, str) else list(s.stream)
    channel = connection.channel()
    for queue in queues:
        try:
            channel.queue_declare(queue=queue, passive=True)
        except errors.ChannelClosedByBroker as exc:
            if exc.reply_code == 403:
                raise IngestionAuthenticationError(
                    f"RabbitMQ at {_address(source)} refused access to queue {queue!r}: "
                    f"{exc.reply_text}",
                    component=source.label,
                    hint="give the user read permissions on the queue (rabbitmqctl "
                    "set_permissions)",
                ) from None
            if exc.reply_code != 404:
                raise
            raise InputNotFoundError(
                f"RabbitMQ at {_address(source)} has no queue {queue!r}",
                component=source.label,
                hint="declare the queue first (rabbitmqadmin declare queue name=... durable=true, "
                "or your producer's queue_declare); the source never creates queues",
            ) from None
    # Channel-wide (global) prefetch: all queues together never hand out more than one batch.
    channel.basic_qos(prefetch_count=min(s.max_messages, 65535), global_qos=True)
    payloads: list[bytes] = []
    meta: dict[str, list[Any]] = {
        "_stream": [],
        "_id": [],
        "_routing_key": [],
        "_timestamp": [],
        "_redelivered": [],
    }
    last_tag = 0

    def take(queue: str) -> Any:
        def on_message(_ch: Any, method: Any, props: Any, body: bytes) -> None:
            nonlocal last_tag
            if len(payloads) >= s.max_messages:  # pragma: no cover - the prefetch prevents it
                channel.basic_nack(method.delivery_tag, requeue=True)
                return
            payloads.append(body)
            meta["_stream"].append(queue)
            meta["_id"].append(props.message_id or str(method.delivery_tag))
            meta["_routing_key"].append(method.routing_key)
            stamp = props.timestamp
            meta["_timestamp"].append(
                None if stamp is None else dt.datetime.fromtimestamp(stamp, dt.timezone.utc)
            )
            meta["_redelivered"].append(bool(method.redelivered))
            last_tag = method.delivery_tag

        return on_message

    tags = [channel.basic_consume(queue, take(queue), auto_ack=False) for queue in queues]
    deadline = time.monotonic() + s.timeout
    left = s.timeout
    while len(payloads) < s.max_messages:
        before = len(payloads)
        connection.process_data_events(time_limit=max(left, 0))
        if len(payloads) > before:  # a message arrived: wait another full timeout
            deadline = time.monotonic() + s.timeout
        left = deadline - time.monotonic()
        if left <= 0 and len(payloads) == before:
            break
    for tag in tags:
        channel.basic_cancel(tag)
    source.current_operation.details["messages"] = len(payloads)
    types = {"_timestamp": pl.Datetime("us", "UTC"), "_redelivered": pl.Boolean}
    try:
        frame = messages_to_frame(source, meta, payloads, types)
    except BaseException:
        if last_tag and channel.is_open:
            channel.basic_nack(last_tag, multiple=True, requeue=True)
        raise
    if last_tag:
        if s.ack:
            channel.basic_ack(last_tag, multiple=True)
        else:
            channel.basic_nack(last_tag, multiple=True, requeue=True)
    channel.close()
    return frame
