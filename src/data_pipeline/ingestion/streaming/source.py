"""StreamingSource: read a bounded batch of messages from a streaming platform as a frame."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator

from data_pipeline.core.errors import ConfigError
from data_pipeline.core.frames import row_count, to_narwhals
from data_pipeline.core.secrets import DATA_KEYS
from data_pipeline.ingestion._common import StateStore
from data_pipeline.ingestion.base import DataSource, SourceConfig

__all__ = ["StreamingConfig", "StreamingSource"]

Platform = Literal["redis", "nats", "rabbitmq", "mqtt", "kafka"]

_DEFAULT_PORTS = {"redis": 6379, "nats": 4222, "rabbitmq": 5672, "mqtt": 1883, "kafka": 9092}


class StreamingConfig(SourceConfig):
    """Config of :class:`StreamingSource`."""

    platform: Platform
    url: str | None = None
    """A connection URL (``redis://host:6379/0``); or give host/port/username/password."""
    host: str = "localhost"
    port: int | None = Field(default=None, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    db: int = Field(default=0, ge=0)
    """Redis database number."""
    stream: str | list[str] = Field(
        validation_alias=AliasChoices("stream", "topic", "queue", "subject")
    )
    """The stream key (Redis), subject (NATS), queue (RabbitMQ) or topic (MQTT, Kafka)."""
    group: str | None = None
    """A consumer group: messages are shared among consumers and acknowledged after the read."""
    consumer: str = "data-pipeline"
    start_id: str = "0"
    """Where to start without a group: ``0`` from the beginning, ``$`` only new messages."""
    max_messages: int = Field(default=1000, ge=1)
    """The batch ends after this many messages ..."""
    timeout: float = Field(default=5.0, ge=0)
    """... or when no message arrived for this many seconds."""
    ack: bool = True
    """Acknowledge messages read through a group (XACK) once the batch is built."""
    decode_json: list[str] = Field(default_factory=list)
    """Fields whose values are JSON objects to unnest into ``field__key`` columns."""
    state_path: str | None = None
    """Without a group: keep the last id read in this file so the next run continues after it."""
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
    options: dict[str, Any] = Field(default_factory=dict)
    """Extra client settings passed to the platform's client as they are (e.g. librdkafka
    settings for Kafka); secrets in them are masked in metadata."""

    @field_validator("payload_schema")
    @classmethod
    def _dtypes(cls, value: dict[str, str]) -> dict[str, str]:
        from data_pipeline.ingestion._common import check_dtype_name

        return {k: check_dtype_name(v) for k, v in value.items()}


class StreamingSource(DataSource):
    """Data source for streaming platforms: each ``ingest()`` returns a bounded batch.

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

    The frame has ``_stream`` and ``_id`` columns, then one column per message field.
    """

    config_model = StreamingConfig
    settings: StreamingConfig
    concurrent_safe = True

    def __init__(self, name: str, config: Any = None) -> None:
        super().__init__(name, config)
        self._positions: dict[str, str] = {}
        self._positions_loaded = False

    def positions(self) -> dict[str, str]:
        """Where a read without a group continues: key (stream, ``topic:partition``, subjects)
        -> the last id / next offset / last sequence read, as text. Kept in memory across
        ``ingest()`` calls and, with ``state_path``, loaded from that file once (the platform
        modules update the dict and call :meth:`save_positions` after a batch)."""
        if not self._positions_loaded:
            self._positions_loaded = True
            if self.settings.state_path:
                saved = StateStore(self.settings.state_path).load().get("positions", {})
                self._positions = {**{k: str(v) for k, v in saved.items()}, **self._positions}
        return self._positions

    def save_positions(self) -> None:
        """Write :meth:`positions` to ``state_path`` (no-op without one)."""
        if self.settings.state_path:
            StateStore(self.settings.state_path).save({"positions": self.positions()})

    @property
    def port(self) -> int:
        return self.settings.port or _DEFAULT_PORTS[self.settings.platform]

    def batches(self, max_batches: int | None = None, *, until_empty: bool = True) -> Iterator[Any]:
        """Successive bounded batches (each one ``ingest()``): feed them to a StreamProcessor.

        Stops after ``max_batches`` batches, or (``until_empty``, the default) after the first
        empty batch, i.e. when no message arrived within ``timeout``. With ``until_empty=False``
        and no ``max_batches`` it runs until the caller stops iterating.

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
        import importlib

        # one module per platform, each with read_batch(source) -> polars.DataFrame; its client
        # library loads only when a source of that platform reads
        platform = self.settings.platform
        module = importlib.import_module(f"data_pipeline.ingestion.streaming.{platform}")
        return module.read_batch(self)
