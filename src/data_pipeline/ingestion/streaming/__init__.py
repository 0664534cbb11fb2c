"""Streaming sources: one :class:`StreamingSource` interface, one module per platform.

Today Redis Streams is implemented (:mod:`.redis`); NATS JetStream, RabbitMQ, MQTT and Kafka
are accepted in the config and raise :class:`~data_pipeline.core.errors.UnsupportedOperationError`
when read, until their modules land.
"""

from data_pipeline.ingestion.streaming.source import StreamingConfig, StreamingSource

__all__ = ["StreamingConfig", "StreamingSource"]
