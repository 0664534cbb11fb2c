"""Kafka for :class:`StreamingSource`: one bounded batch per ``ingest()`` with confluent-kafka.

* With a ``group``: the consumer joins the group, reads from the committed offsets (a new group
  starts at ``start_id``: ``0``/``earliest`` or ``$``/``latest``) and, when ``ack`` is true,
  commits the offsets of the batch synchronously once its frame is built. Auto-commit is off, so
  a batch that fails before the commit is delivered again.
* Without a group: the partitions are assigned directly (no group join), reading starts at
  ``start_id`` and continues after the last offset read, per partition; ``state_path`` keeps those
  positions across processes.

The consumer lives for one batch: it is closed (leaving its group) before ``ingest()`` returns.
Meta columns: ``_stream`` (topic), ``_id`` (``"partition:offset"``), ``_partition``, ``_offset``,
``_key`` (String; Binary with ``payload: bytes``) and ``_timestamp`` (the message timestamp, UTC).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit

from data_pipeline.core.deps import import_optional
from data_pipeline.core.errors import (
    ConfigError,
    IngestionAuthenticationError,
    IngestionConnectionError,
    IngestionError,
    IngestionTimeoutError,
    InputNotFoundError,
)
from data_pipeline.ingestion.streaming._payload import messages_to_frame

if TYPE_CHECKING:
    import polars as pl

    from data_pipeline.ingestion.streaming.source import StreamingSource

__all__ = ["read_batch"]

_CONNECT_TIMEOUT = 10.0
"""Seconds to wait for the cluster metadata (and, with a group, for the partition assignment)."""
_MAX_CONSUME = 100_000
"""The most messages one ``consume()`` call returns (librdkafka allows up to 1,000,000)."""
_EARLIEST = ("0", "earliest", "beginning")
_LATEST = ("$", "latest", "end")
_SCHEMES = {"kafka": "PLAINTEXT", "kafkas": "SSL", "kafka+ssl": "SSL"}


def _bootstrap(source: StreamingSource) -> tuple[str, str, str | None, str | None]:
    """(bootstrap.servers, security protocol, username, password) from ``url`` or host/port."""
    s = source.settings
    username = s.username
    password = s.password.get_secret_value() if s.password else None
    if not s.url:
        return f"{s.host}:{source.port}", "PLAINTEXT", username, password
    if "://" not in s.url:  # "host:9092,host2:9092"
        return s.url, "PLAINTEXT", username, password
    parts = urlsplit(s.url)
    if parts.scheme not in _SCHEMES:
        raise ConfigError(
            f"Kafka url scheme {parts.scheme!r} is not supported",
            component=source.label,
            hint="write kafka://host:9092 (kafkas:// for TLS) or a plain 'host:9092,host2:9092'",
        )
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, secret = userinfo.partition(":")
        username = username or unquote(user) or None
        password = password or (unquote(secret) if secret else None)
    return netloc, _SCHEMES[parts.scheme], username, password


def _client_config(source: StreamingSource, errors: list[Any]) -> tuple[dict[str, Any], str]:
    s = source.settings
    servers, protocol, username, password = _bootstrap(source)
    reset = _reset(source)
    config: dict[str, Any] = {
        "bootstrap.servers": servers,
        "security.protocol": protocol,
        "client.id": s.consumer,
        # confluent-kafka wants a group id even for assigned partitions; without a group it is
        # a throwaway one and nothing is ever committed to it
        "group.id": s.group or f"data-pipeline-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": reset,
        # the consumer lives for one batch and polls all the time: a short session lets the
        # group rebalance quickly when a run dies (6 s is also Kafka's minimum)
        "session.timeout.ms": 6000,
        # librdkafka postpones a partition's next fetch by this much once its prefetch queue is
        # full (default 1000 ms); a batch reader empties that queue at once and would then wait
        # out the rest of the second (500k messages: 2.3 s of consume instead of 0.3 s)
        "fetch.queue.backoff.ms": 10,
        "error_cb": errors.append,
        "logger": source.logger,
    }
    if username:
        config["security.protocol"] = "SASL_SSL" if protocol == "SSL" else "SASL_PLAINTEXT"
        config["sasl.mechanism"] = "PLAIN"
        config["sasl.username"] = username
        config["sasl.password"] = password or ""
    config.update(s.options)
    return config, servers


def _reset(source: StreamingSource) -> str:
    start = source.settings.start_id.strip().lower()
    if start in _EARLIEST:
        return "earliest"
    if start in _LATEST:
        return "latest"
    raise ConfigError(
        f"start_id {source.settings.start_id!r} is not a Kafka start position",
        component=source.label,
        hint="use '0' (or 'earliest') to read from the beginning, '$' (or 'latest') for new "
        "messages only",
    )


def _raise_client_error(source: StreamingSource, servers: str, errors: list[Any]) -> None:
    """Raise the error a client callback reported, if it is one that ends the batch."""
    from confluent_kafka import KafkaError

    for error in errors:
        code = error.code()
        if code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
            raise IngestionAuthenticationError(
                f"Kafka at {servers} refused the credentials: {error.str()}",
                component=source.label,
                hint="check username and password (and sasl.mechanism in options)",
            )
        if code == KafkaError._ALL_BROKERS_DOWN or error.fatal():
            raise IngestionConnectionError(
                f"cannot connect to Kafka at {servers}: {error.str()}",
                component=source.label,
                hint="check url (or host and port), and that the brokers are running",
            )


def _metadata(consumer: Any, source: StreamingSource, servers: str, errors: list[Any]) -> Any:
    """Cluster metadata, failing fast when the client reports the brokers down."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + _CONNECT_TIMEOUT
    while True:
        try:
            return consumer.list_topics(timeout=0.5)
        except KafkaException as exc:
            _raise_client_error(source, servers, errors)
            if time.monotonic() >= deadline:
                raise IngestionConnectionError(
                    f"cannot connect to Kafka at {servers}: {exc.args[0].str()}",
                    component=source.label,
                    hint="check url (or host and port), and that the brokers are running",
                ) from None


def _topics(source: StreamingSource, metadata: Any) -> list[str]:
    s = source.settings
    topics = [s.stream] if isinstance(s.stream, str) else list(s.stream)
    missing = [t for t in topics if t not in metadata.topics or metadata.topics[t].error]
    if missing:
        raise InputNotFoundError(
            f"Kafka topic(s) {', '.join(map(repr, missing))} not found",
            component=source.label,
            hint="check the topic names (stream), or create the topics first",
        )
    return topics


def _assign(consumer: Any, source: StreamingSource, metadata: Any, topics: list[str]) -> None:
    """Without a group: every partition, at the remembered position or at ``start_id``."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    latest = _reset(source) == "latest"
    positions = source.positions()
    assignment = []
    for topic in topics:
        for partition in sorted(metadata.topics[topic].partitions):
            key = f"{topic}:{partition}"
            known = positions.get(key)
            if known is not None:
                offset = int(known)
            elif latest:  # pin "latest" now, so messages of the next batches are not missed
                tp = TopicPartition(topic, partition)
                offset = consumer.get_watermark_offsets(tp, timeout=_CONNECT_TIMEOUT)[1]
                positions[key] = str(offset)
            else:
                offset = OFFSET_BEGINNING
            assignment.append(TopicPartition(topic, partition, offset))
    consumer.assign(assignment)


def read_batch(source: StreamingSource) -> pl.DataFrame:
    """At most ``max_messages`` messages, ending when none arrived for ``timeout`` seconds."""
    kafka = import_optional("confluent_kafka", extra="kafka", feature="Kafka")
    s = source.settings
    errors: list[Any] = []
    config, servers = _client_config(source, errors)
    try:
        consumer = kafka.Consumer(config)
    except (kafka.KafkaException, ValueError, TypeError) as exc:
        raise ConfigError(
            f"invalid Kafka client settings: {exc}",
            component=source.label,
            hint="check the librdkafka settings given in options",
        ) from None
    messages: list[Any] = []
    try:
        metadata = _metadata(consumer, source, servers, errors)
        topics = _topics(source, metadata)
        if s.group:
            assigned: list[bool] = []
            consumer.subscribe(topics, on_assign=lambda _c, _p: assigned.append(True))
            deadline = time.monotonic() + _CONNECT_TIMEOUT + 6
            while not assigned:  # the idle timeout starts once the group has assigned us
                want = min(s.max_messages - len(messages), _MAX_CONSUME)
                got = consumer.consume(want, 0.2)
                messages.extend(_good(got, source, servers))
                _raise_client_error(source, servers, errors)
                if time.monotonic() >= deadline:
                    raise IngestionTimeoutError(
                        f"Kafka at {servers}: group {s.group!r} assigned no partitions of "
                        f"{', '.join(topics)} in time",
                        component=source.label,
                        hint="check that the brokers run the group coordinator",
                        transient=True,
                    )
        else:
            _assign(consumer, source, metadata, topics)
        while len(messages) < s.max_messages:
            want = min(s.max_messages - len(messages), _MAX_CONSUME)
            got = consumer.consume(want, s.timeout)
            _raise_client_error(source, servers, errors)
            if not got:  # nothing arrived within the timeout: the batch is complete
                break
            messages.extend(_good(got, source, servers))
        frame, next_offsets = _frame(source, messages)
        if s.group and s.ack and next_offsets:
            consumer.commit(offsets=next_offsets, asynchronous=False)
    except kafka.KafkaException as exc:
        _raise_client_error(source, servers, errors)
        raise IngestionError(
            f"Kafka at {servers}: {exc.args[0].str() if exc.args else exc}",
            component=source.label,
            hint="check the broker logs; the batch was not committed and will be read again",
        ) from None
    finally:
        consumer.close()
    if not s.group:
        positions = source.positions()
        for tp in next_offsets:
            positions[f"{tp.topic}:{tp.partition}"] = str(tp.offset)
        source.save_positions()
    source.current_operation.details["messages"] = len(messages)
    return frame


def _good(messages: list[Any], source: StreamingSource, servers: str) -> list[Any]:
    """The messages that carry data; a per-message error fails the batch (nothing committed)."""
    from confluent_kafka import KafkaError, Message

    flags = list(map(Message.error, messages))
    if flags.count(None) == len(flags):  # the common case, checked without a Python loop
        return messages
    out = []
    for message in messages:
        error = message.error()
        if error is None:
            out.append(message)
        elif error.code() != KafkaError._PARTITION_EOF:
            raise IngestionError(
                f"Kafka at {servers}: topic {message.topic()!r} partition "
                f"{message.partition()}: {error.str()}",
                component=source.label,
                hint="check the topic and the broker logs; the batch was not committed",
            )
    return out


def _frame(source: StreamingSource, messages: list[Any]) -> tuple[pl.DataFrame, list[Any]]:
    """The batch's frame, and per partition the offset after the last message read (what Kafka
    commits).

    Each message attribute is read in one C-level ``map`` pass; ``_id``, the key decoding and the
    next offsets are computed by polars on those columns, not per message in Python.
    """
    import polars as pl
    from confluent_kafka import Message, TopicPartition

    partitions = pl.Series("_partition", list(map(Message.partition, messages)), dtype=pl.Int32)
    offsets = pl.Series("_offset", list(map(Message.offset, messages)), dtype=pl.Int64)
    topics = pl.Series("_stream", list(map(Message.topic, messages)), dtype=pl.String)
    meta: dict[str, Any] = {
        "_stream": topics,
        "_id": partitions.cast(pl.String) + ":" + offsets.cast(pl.String),
        "_partition": partitions,
        "_offset": offsets,
        "_key": _keys(list(map(Message.key, messages)), binary=source.settings.payload == "bytes"),
        # kind 0: the timestamp is not available
        "_timestamp": [ms if kind else None for kind, ms in map(Message.timestamp, messages)],
    }
    types = {
        "_partition": pl.Int32,
        "_offset": pl.Int64,
        "_key": meta["_key"].dtype,
        "_timestamp": pl.Int64,
    }
    values = list(map(Message.value, messages))
    if None in values:  # a tombstone (no value) is an empty payload
        values = [value or b"" for value in values]
    frame = messages_to_frame(source, meta, cast("list[bytes]", values), types)
    stamp = pl.from_epoch("_timestamp", time_unit="ms").cast(pl.Datetime("ms", "UTC"))
    last = (
        pl.DataFrame([topics, partitions, offsets])
        .group_by("_stream", "_partition")
        .agg(pl.col("_offset").max())
        .sort("_stream", "_partition")
    )
    next_offsets = [TopicPartition(t, p, o + 1) for t, p, o in last.iter_rows()]
    return frame.with_columns(stamp), next_offsets


def _keys(keys: list[bytes | None], *, binary: bool) -> pl.Series:
    """The ``_key`` column: Binary, or String (invalid UTF-8 bytes replaced by U+FFFD)."""
    import polars as pl

    series = pl.Series("_key", keys, dtype=pl.Binary)
    if binary:
        return series
    try:
        return series.cast(pl.String)
    except pl.exceptions.PolarsError:  # some key is not UTF-8: decode each, replacing bad bytes
        decoded = [k.decode("utf-8", "replace") if k is not None else None for k in keys]
        return pl.Series("_key", decoded, dtype=pl.String)
