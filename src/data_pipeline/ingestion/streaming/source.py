"""StreamingSource: read a bounded batch of messages from a streaming platform as a frame.

Each platform module (``redis``, ``kafka``, ``mqtt``, ``nats``, ``rabbitmq``) has a ``Reader``
class holding the platform's client for the source's lifetime (created at the first read,
closed by ``close()``), with the methods of :class:`Reader` below. The source owns when a batch
is acknowledged:

* Run by a :class:`~data_pipeline.core.checkpoint.Checkpointer` (``data-pipeline run
  --follow``, or your own loop): ``restore()`` hands the reader the committed state, and the
  reader is acknowledged only after the checkpoint that holds its batch committed with the
  batch's output. Messages at or before a committed position are dropped.
* Read on its own: a batch is acknowledged when the next one is asked for (``ingest()``,
  ``batches()``), on ``acknowledge()`` or on ``close()`` (not when a ``with`` block ends with an
  error): a batch the caller did not finish is delivered again (at least once). ``state_path``
  keeps the position of a read without a group across processes, saved at the same moments.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from pydantic import AliasChoices, Field, SecretStr, field_validator

from data_pipeline.core.errors import ConfigError
from data_pipeline.core.frames import row_count, to_narwhals
from data_pipeline.core.secrets import DATA_KEYS
from data_pipeline.ingestion._common import StateStore
from data_pipeline.ingestion.base import DataSource, SourceConfig

if TYPE_CHECKING:
    import polars as pl

__all__ = ["Reader", "StreamingConfig", "StreamingSource"]

Platform = Literal["redis", "nats", "rabbitmq", "mqtt", "kafka"]

_DEFAULT_PORTS = {"redis": 6379, "nats": 4222, "rabbitmq": 5672, "mqtt": 1883, "kafka": 9092}


class StreamingConfig(SourceConfig):
    """Config of :class:`StreamingSource`."""

    platform: Platform
    """The broker: ``redis`` (Streams), ``nats`` (JetStream), ``rabbitmq``, ``mqtt`` (v5) or
    ``kafka``; it picks the client, the meaning of ``stream`` and ``group``, and the default
    ``port``. Each needs its extra installed (``pip install 'data-pipeline[<platform>]'``)."""
    url: str | None = None
    """A connection URL (``redis://host:6379/0``); or give host/port/username/password."""
    host: str = "localhost"
    """The broker's host name, used when no ``url`` is given."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """The broker's port; absent: the platform's default (Redis 6379, NATS 4222, RabbitMQ 5672,
    MQTT 1883, Kafka 9092)."""
    username: str | None = None
    """The user to log in as, with ``password`` (Kafka: SASL/PLAIN; RabbitMQ: ``guest`` when
    absent). Beside a ``url`` it replaces the URL's user and keeps the URL's password
    (NATS: give both keys or neither)."""
    password: SecretStr | None = None
    """The password (kept secret: never in messages, logs or metadata); write ``${ENV_VAR}``
    in a pipeline file. Beside a ``url`` it replaces the URL's password and keeps the URL's
    user."""
    db: int = Field(default=0, ge=0)
    """Redis database number; given beside a ``url``, it replaces the URL's
    (``redis://host:6379/2``)."""
    stream: str | list[str] = Field(
        validation_alias=AliasChoices("stream", "topic", "queue", "subject")
    )
    """The stream key (Redis), subject (NATS), queue (RabbitMQ) or topic (MQTT, Kafka)."""
    group: str | None = None
    """A consumer group: messages are shared among consumers and acknowledged after the batch
    was committed (or, read on its own, when the next batch is asked for)."""
    consumer: str = "data-pipeline"
    """This reader's name: the consumer name within a Redis group (give each parallel reader
    its own), the Kafka ``client.id``, part of the MQTT client id; NATS and RabbitMQ do not
    use it."""
    start_id: str = "0"
    """Where to start without a group: ``0`` from the beginning, ``$`` only new messages."""
    max_messages: int = Field(default=1000, ge=1)
    """The batch ends after this many messages ..."""
    timeout: float = Field(default=5.0, ge=0)
    """... or when no message arrived for this many seconds."""
    ack: bool = True
    """Acknowledge what was read (after the commit; see the module docstring); ``false``: a
    repeatable peek that never acknowledges."""
    claim_idle: float = Field(default=60.0, gt=0)
    """Redis groups: on start, claim entries another consumer left pending this many seconds."""
    decode_json: list[str] = Field(default_factory=list)
    """Fields whose values are JSON objects to unnest into ``field__key`` columns."""
    state_path: str | None = None
    """Read on its own, without a group: keep the position in this file so the next run
    continues after the last batch acknowledged (a checkpoint keeps it otherwise)."""
    payload: Literal["json", "text", "bytes"] = "json"
    """How message payloads become columns (NATS, RabbitMQ, MQTT, Kafka): ``json`` objects
    unnested into columns, ``text`` or ``bytes`` as one ``payload`` column."""
    payload_schema: Annotated[dict[str, str], DATA_KEYS] = Field(default_factory=dict)
    """For ``payload: json``: column -> type name (``int64``, ``float64``, ``string``,
    ``datetime[us, UTC]``, ...). Given, payloads are read as exactly these columns without
    inferring types (other fields are left out, a missing field is null, a value that
    does not fit its type is a bad row). Empty (default): types are inferred from every payload."""
    on_bad_rows: Literal["error", "skip", "reject"] = "error"
    """A payload that is not what ``payload`` says: fail, drop, or write to ``reject_path``."""
    reject_path: str | None = None
    """Where ``on_bad_rows: reject`` writes bad messages, as CSV with columns ``stream``,
    ``id``, ``reason``, ``raw``. Appended to by each batch that rejects messages (the header
    once, when the file is new or empty; a file with other columns is an error). Default
    ``.data_pipeline/rejects/<source name>.csv`` (beside the pipeline file when one runs)."""
    log_path: str | None = None
    """MQTT: the folder of the durable local log messages are written to before they are
    acknowledged (default ``.data_pipeline/mqtt/<source name>-<hash>``)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Extra client settings passed to the platform's client as they are (e.g. librdkafka
    settings for Kafka); secrets in them are masked in metadata."""

    @field_validator("payload_schema")
    @classmethod
    def _dtypes(cls, value: dict[str, str]) -> dict[str, str]:
        from data_pipeline.ingestion._common import check_dtype_name

        return {k: check_dtype_name(v) for k, v in value.items()}


class Reader(Protocol):
    """What a platform module's ``Reader(source)`` does (one client, kept until ``close()``)."""

    def read(self) -> pl.DataFrame:
        """One bounded batch, not acknowledged; on an error nothing of it counts as read."""

    def checkpoint_state(self) -> dict[str, Any]:
        """JSON-able: where the reader stands after everything read so far."""

    def restore(self, state: dict[str, Any] | None) -> None:
        """Continue after ``state`` (None: ``start_id``); what was read and not acknowledged
        is delivered again, and what the state says was committed is dropped."""

    def acknowledge(self) -> None:
        """Everything read so far is done: tell the broker (with ``ack: false``: hand it back
        for delivery again, where the platform can)."""

    def close(self) -> None: ...


class StreamingSource(DataSource):
    """Data source for streaming platforms: each ``ingest()`` returns a bounded batch.

    Raises:
        ConfigError: an invalid config, or a setting the platform does not support (a ``group`` on
            RabbitMQ, unknown ``options``, a URL scheme the client does not speak, ...).
        DependencyError: the platform's client is not installed (``pip install
            'data-pipeline[kafka]'``, ...).
        IngestionConnectionError: the broker cannot be reached.
        IngestionAuthenticationError: the credentials were refused.
        IngestionTimeoutError: the broker did not answer in time.
        InputNotFoundError: the topic (Kafka), JetStream stream (NATS) or queue (RabbitMQ) does not
            exist.
        ParseError: a payload is not what ``payload`` says, with ``on_bad_rows: error``.
        UnsupportedOperationError: NATS: several subjects on a server older than 2.10.
        IngestionError: any other failure; the message names the source.

    Example:
        >>> from data_pipeline.ingestion import StreamingSource
        >>> source = StreamingSource(name="events", config={
        ...     "platform": "redis",
        ...     "host": "localhost",
        ...     "port": 6379,
        ...     "stream": "events",
        ...     "group": "pipeline",
        ...     "max_messages": 1000,
        ...     "timeout": 5,
        ... })

    The frame has ``_stream`` and ``_id`` columns, then one column per message field. The
    source holds its client until :meth:`close` (or the end of a ``with`` block); when a batch
    is acknowledged is described in :mod:`data_pipeline.ingestion.streaming.source`.
    """

    config_model = StreamingConfig
    settings: StreamingConfig
    concurrent_safe = True

    def __init__(self, name: str, config: Any = None) -> None:
        super().__init__(name, config)
        self._reader: Reader | None = None
        self._managed = False  # restore() was called: a Checkpointer acknowledges
        self._unacknowledged = False
        self.collect_rejects = False
        """``on_bad_rows: reject`` keeps the bad messages in :attr:`last_rejects` for the caller
        (a followed pipeline's reject output) instead of writing ``reject_path``."""
        self.last_rejects: Any = None
        """The bad messages of the last batch (stream, id, reason, raw), with ``reject``."""

    @property
    def port(self) -> int:
        return self.settings.port or _DEFAULT_PORTS[self.settings.platform]

    # -- lifetime -----------------------------------------------------------------------------

    def reader(self) -> Reader:
        """The platform reader (created, and connected, on first use)."""
        if self._reader is None:
            import importlib

            # one module per platform; its client library loads only when a source of that
            # platform reads
            module = importlib.import_module(
                f"data_pipeline.ingestion.streaming.{self.settings.platform}"
            )
            reader: Reader = module.Reader(self)
            if not self._managed:
                reader.restore(self._saved_state())
            self._reader = reader
        return self._reader

    def close(self) -> None:
        """Acknowledge what was read (read on its own, with ``ack``) and close the client."""
        reader, self._reader = self._reader, None
        if reader is None:
            return
        try:
            if not self._managed:
                self._acknowledge(reader)
        finally:
            reader.close()

    def __enter__(self) -> StreamingSource:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        reader, self._reader = self._reader, None  # an error: nothing is acknowledged
        if reader is not None:
            reader.close()

    # -- checkpoints (core/checkpoint.py) ------------------------------------------------------

    def restore(self, state: dict[str, Any] | None) -> None:
        """Continue after a committed ``state`` (None: from ``start_id``). From now on the
        source acknowledges only on :meth:`acknowledge` (a Checkpointer's commit)."""
        if self.settings.state_path and not self._managed:
            self.logger.warning(
                "%s: state_path is not used under a checkpoint (the checkpoint keeps the position)",
                self.label,
            )
        self._managed = True
        self.reader().restore(state)
        self._unacknowledged = False

    def checkpoint_state(self) -> dict[str, Any]:
        """Where the source stands after everything read so far (JSON-able)."""
        return self.reader().checkpoint_state()

    def acknowledge(self) -> None:
        """Acknowledge everything read so far (no-op with ``ack: false``)."""
        if self._reader is not None:
            self._acknowledge(self._reader)

    def _acknowledge(self, reader: Reader) -> None:
        if not self._unacknowledged:
            return
        reader.acknowledge()  # with ack: false the reader hands the batch back instead
        if self.settings.ack and self.settings.state_path and not self._managed:
            StateStore(self.settings.state_path).save(reader.checkpoint_state())
        self._unacknowledged = False

    def lag(self) -> dict[str, int] | None:
        """Messages not read yet, per partition / stream, where the platform says (else None)."""
        lag = getattr(self._reader, "lag", None)
        return lag() if lag is not None else None

    def _saved_state(self) -> dict[str, Any] | None:
        if not self.settings.state_path:
            return None
        return StateStore(self.settings.state_path).load() or None

    # -- reading ------------------------------------------------------------------------------

    def batches(self, max_batches: int | None = None, *, until_empty: bool = True) -> Iterator[Any]:
        """Successive bounded batches (each one ``ingest()``): feed them to a StreamProcessor.

        Stops after ``max_batches`` batches, or (``until_empty``, the default) after the first
        empty batch, i.e. when no message arrived within ``timeout``. With ``until_empty=False``
        and no ``max_batches`` it runs until the caller stops iterating. Read on its own, a batch
        is acknowledged when the next one is asked for.

        Example:
            >>> for batch in source.batches(max_batches=10):  # doctest: +SKIP
            ...     print(len(batch))
        """
        done = 0
        while max_batches is None or done < max_batches:
            batch = self.ingest()
            done += 1
            if until_empty and not row_count(to_narwhals(batch)):
                return
            yield batch

    def _read(self, **options: Any) -> Any:
        if options:
            raise ConfigError(
                f"ingest() got unexpected options {sorted(options)}",
                component=self.label,
                hint="StreamingSource takes its settings from the config",
            )
        reader = self.reader()
        if not self._managed:  # read on its own: the caller is done with the previous batch
            self._acknowledge(reader)
        self.last_rejects = None
        frame = reader.read()
        self._unacknowledged = True
        return frame
