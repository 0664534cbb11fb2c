"""Kafka for :class:`StreamingSource`: bounded batches from one long-lived confluent-kafka
consumer (created at the first read, joined to its group once, closed by ``close()``).

* With a ``group``: the consumer joins the group once and reads from the committed offsets (a
  new group starts at ``start_id``: ``0``/``earliest`` or ``$``/``latest``). Auto-commit is off:
  the offsets after a batch are committed (synchronously) once the batch's checkpoint committed
  (read on its own: when the next batch is asked for). Under a checkpoint, the checkpoint's
  offsets win: a partition assigned to this consumer is sought to the checkpointed offset, so a
  batch stored but not committed to Kafka is not read twice, and a message before it (after a
  rebalance) is dropped.
* Without a group: the partitions are assigned directly (no group join), reading starts at
  ``start_id`` and continues after the last offset read, per partition; the checkpoint (or
  ``state_path``) keeps those positions across processes.

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

__all__ = ["Reader"]

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
        # a short session lets the group rebalance quickly when a run dies (6 s is also
        # Kafka's minimum)
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


class Reader:
    """One consumer for the source's lifetime; see the module docstring."""

    def __init__(self, source: StreamingSource) -> None:
        self.kafka = import_optional("confluent_kafka", extra="kafka", feature="Kafka")
        self.source = source
        self.errors: list[Any] = []
        self.config, self.servers = _client_config(source, self.errors)
        self.consumer: Any = None
        self.topics: list[str] = []
        self.positions: dict[str, int] = {}
        """Per ``topic:partition``: the offset of the next message to read."""
        self.committed: dict[str, int] = {}
        """Per ``topic:partition``: the next offset after what was committed (checkpoint /
        acknowledged); a message before it is dropped."""
        self.assigned: list[Any] = []
        self.warming = True  # the first read after a start, an assignment or a seek

    # -- the Reader protocol -------------------------------------------------------------------

    def restore(self, state: dict[str, Any] | None) -> None:
        saved = {k: int(v) for k, v in ((state or {}).get("positions") or {}).items()}
        self.positions = dict(saved)
        self.committed = dict(saved)
        if self.consumer is not None:  # rewind what is assigned to the committed offsets
            self._seek_assigned()

    def checkpoint_state(self) -> dict[str, Any]:
        return {"positions": {k: str(v) for k, v in sorted(self.positions.items())}}

    def acknowledge(self) -> None:
        self.committed.update(self.positions)
        s = self.source.settings
        if not (s.group and s.ack and self.consumer is not None):
            return
        from confluent_kafka import TopicPartition

        mine = {f"{tp.topic}:{tp.partition}" for tp in self.assigned}
        offsets = [
            TopicPartition(key.rsplit(":", 1)[0], int(key.rsplit(":", 1)[1]), offset)
            for key, offset in sorted(self.positions.items())
            if key in mine
        ]
        if offsets:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except self.kafka.KafkaException as exc:
                _raise_client_error(self.source, self.servers, self.errors)
                raise IngestionError(
                    f"Kafka at {self.servers}: committing the offsets failed: "
                    f"{exc.args[0].str() if exc.args else exc}",
                    component=self.source.label,
                    hint="check the broker logs; the checkpoint holds the offsets, so nothing is "
                    "read twice",
                ) from None

    def close(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            consumer.close()

    def lag(self) -> dict[str, int] | None:
        if self.consumer is None:
            return None
        lags: dict[str, int] = {}
        for tp in self.assigned:
            key = f"{tp.topic}:{tp.partition}"
            try:
                _, high = self.consumer.get_watermark_offsets(tp, timeout=1, cached=True)
            except self.kafka.KafkaException:
                continue
            if high is not None and high >= 0 and key in self.positions:
                lags[key] = max(0, int(high) - self.positions[key])
        return lags

    def read(self) -> pl.DataFrame:
        """At most ``max_messages`` messages, ending when none arrived for ``timeout`` seconds."""
        s = self.source.settings
        kafka = self.kafka
        messages: list[Any] = []
        before = dict(self.positions)
        try:
            if self.consumer is None:
                self._open()
            wait = s.timeout
            if self.warming:  # fetching (re)starts: give it time where messages are waiting
                self.warming = False
                if self._backlog() > 0:
                    wait = max(s.timeout, _CONNECT_TIMEOUT)
            while len(messages) < s.max_messages:
                want = min(s.max_messages - len(messages), _MAX_CONSUME)
                got = self.consumer.consume(want, wait)
                wait = s.timeout
                _raise_client_error(self.source, self.servers, self.errors)
                if not got:  # nothing arrived within the timeout: the batch is complete
                    break
                messages.extend(self._new_only(_good(got, self.source, self.servers)))
            frame, next_offsets = _frame(self.source, messages)
        except kafka.KafkaException as exc:
            self._rewind(before)
            _raise_client_error(self.source, self.servers, self.errors)
            raise IngestionError(
                f"Kafka at {self.servers}: {exc.args[0].str() if exc.args else exc}",
                component=self.source.label,
                hint="check the broker logs; the batch was not committed and will be read again",
            ) from None
        except BaseException:
            self._rewind(before)
            raise
        for tp in next_offsets:
            self.positions[f"{tp.topic}:{tp.partition}"] = int(tp.offset)
        self.source.current_operation.details["messages"] = len(messages)
        return frame

    # -- the consumer --------------------------------------------------------------------------

    def _open(self) -> None:
        kafka = self.kafka
        s = self.source.settings
        try:
            consumer = kafka.Consumer(self.config)
        except (kafka.KafkaException, ValueError, TypeError) as exc:
            raise ConfigError(
                f"invalid Kafka client settings: {exc}",
                component=self.source.label,
                hint="check the librdkafka settings given in options",
            ) from None
        try:
            metadata = _metadata(consumer, self.source, self.servers, self.errors)
            self.topics = _topics(self.source, metadata)
            self.consumer = consumer
            if s.group:
                self._join()
            else:
                self._assign(metadata)
        except BaseException:
            self.consumer = None
            consumer.close()
            raise

    def _join(self) -> None:
        """Subscribe and wait for the first assignment (the idle timeout starts after it)."""
        s = self.source.settings
        joined: list[bool] = []

        def on_assign(consumer: Any, partitions: list[Any]) -> None:
            for tp in partitions:  # the checkpoint's offsets win over the group's
                known = self.committed.get(f"{tp.topic}:{tp.partition}")
                if known is not None:
                    tp.offset = known
            consumer.assign(partitions)
            self.assigned = list(partitions)
            self.warming = True
            joined.append(True)

        def on_revoke(consumer: Any, partitions: list[Any]) -> None:
            gone = {(tp.topic, tp.partition) for tp in partitions}
            self.assigned = [tp for tp in self.assigned if (tp.topic, tp.partition) not in gone]

        self.consumer.subscribe(self.topics, on_assign=on_assign, on_revoke=on_revoke)
        deadline = time.monotonic() + _CONNECT_TIMEOUT + 6
        held: list[Any] = []
        while not joined:
            # a poll serves the callbacks (and may already return messages of the assignment)
            held.extend(self.consumer.consume(1, 0.2))
            _raise_client_error(self.source, self.servers, self.errors)
            if time.monotonic() >= deadline:
                raise IngestionTimeoutError(
                    f"Kafka at {self.servers}: group {s.group!r} assigned no partitions of "
                    f"{', '.join(self.topics)} in time",
                    component=self.source.label,
                    hint="check that the brokers run the group coordinator",
                    transient=True,
                )
        if held:  # read before the batch began: read them again from their offsets
            from confluent_kafka import Message, TopicPartition

            first: dict[tuple[str, int], int] = {}
            for m in _good(held, self.source, self.servers):
                key = (str(Message.topic(m)), int(Message.partition(m) or 0))
                offset = int(Message.offset(m) or 0)
                first[key] = min(first.get(key, offset), offset)
            for (topic, partition), offset in first.items():
                floor = self.committed.get(f"{topic}:{partition}", offset)
                self.consumer.seek(TopicPartition(topic, partition, max(offset, floor)))

    def _assign(self, metadata: Any) -> None:
        """Without a group: every partition, at the remembered position or at ``start_id``."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        latest = _reset(self.source) == "latest"
        assignment = []
        for topic in self.topics:
            for partition in sorted(metadata.topics[topic].partitions):
                key = f"{topic}:{partition}"
                known = self.positions.get(key)
                if known is not None:
                    offset = known
                elif latest:  # pin "latest" now, so messages of the next batches are not missed
                    tp = TopicPartition(topic, partition)
                    offset = self.consumer.get_watermark_offsets(tp, timeout=_CONNECT_TIMEOUT)[1]
                    self.positions[key] = offset
                    self.committed.setdefault(key, offset)
                else:
                    offset = OFFSET_BEGINNING
                assignment.append(TopicPartition(topic, partition, offset))
        self.consumer.assign(assignment)
        self.assigned = assignment
        self.warming = True

    def _seek_assigned(self) -> None:
        """Point every assigned partition at its committed offset (the start without one)."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        for tp in list(self.assigned):
            key = f"{tp.topic}:{tp.partition}"
            offset = self.committed.get(key)
            if offset is None:
                if self.source.settings.group or _reset(self.source) != "earliest":
                    continue  # the group's committed offset (or the pinned latest) stands
                offset = OFFSET_BEGINNING
            else:
                self.positions[key] = offset
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
            self.warming = True

    def _rewind(self, before: dict[str, int]) -> None:
        """A failed read: nothing of it counts; it is read again from where it started."""
        self.positions = dict(before)
        if self.consumer is None:
            return
        saved, self.committed = self.committed, {**self.committed, **before}
        try:
            self._seek_assigned()
        except Exception:  # the next read starts from the group's offsets anyway
            pass
        finally:
            self.committed = saved

    def _backlog(self) -> int:
        """Messages waiting for this consumer (high watermark minus where it starts), so the
        first read after a start waits for the first fetch instead of calling the stream idle.
        """
        from confluent_kafka import OFFSET_INVALID

        total = 0
        try:
            group = (
                {
                    f"{tp.topic}:{tp.partition}": tp.offset
                    for tp in self.consumer.committed(self.assigned, timeout=_CONNECT_TIMEOUT)
                }
                if self.source.settings.group
                else {}
            )
            for tp in self.assigned:
                key = f"{tp.topic}:{tp.partition}"
                low, high = self.consumer.get_watermark_offsets(tp, timeout=_CONNECT_TIMEOUT)
                start = self.committed.get(key, self.positions.get(key))
                if start is None:
                    start = group.get(key, OFFSET_INVALID)
                if start is None or start < 0:
                    start = low if _reset(self.source) == "earliest" else high
                total += max(0, int(high) - int(start))
        except self.kafka.KafkaException:
            return 0
        return total

    def _new_only(self, messages: list[Any]) -> list[Any]:
        """Drop messages before the committed offset of their partition (read again after a
        rebalance or a seek) and count them."""
        if not self.committed or not messages:
            return messages
        from confluent_kafka import Message

        floor = self.committed
        keep = [
            m
            for m in messages
            if (Message.offset(m) or 0)
            >= floor.get(f"{Message.topic(m)}:{Message.partition(m)}", -1)
        ]
        dropped = len(messages) - len(keep)
        if dropped:
            details = self.source.current_operation.details
            details["duplicates_dropped"] = details.get("duplicates_dropped", 0) + dropped
        return keep


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
