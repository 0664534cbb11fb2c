"""Streaming sources: one :class:`StreamingSource` interface, one module per platform.

Each platform module (:mod:`.redis`, :mod:`.kafka`, :mod:`.mqtt`, :mod:`.nats`,
:mod:`.rabbitmq`) has ``read_batch(source) -> polars.DataFrame`` and is imported only when a
source of that platform reads, so its client library loads only then. Payload platforms turn
their messages into columns through :mod:`._payload`.
"""

from data_pipeline.ingestion.streaming.source import StreamingConfig, StreamingSource

__all__ = ["StreamingConfig", "StreamingSource"]
