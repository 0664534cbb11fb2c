"""Ingestion layer: read data from REST APIs, databases, files and streams.

Every source is a :class:`DataSource` whose ``ingest()`` returns a polars DataFrame by default
(``output: lazy | pandas | arrow`` for the others). Backends import their libraries lazily, so
importing this package stays light.
"""

from data_pipeline.ingestion.base import DataSource
from data_pipeline.ingestion.database import DatabaseSource
from data_pipeline.ingestion.filesystem import FileSystemSource
from data_pipeline.ingestion.manager import DataIngestionManager
from data_pipeline.ingestion.rest import RESTAPISource
from data_pipeline.ingestion.streaming import StreamingSource

__all__ = [
    "DataIngestionManager",
    "DataSource",
    "DatabaseSource",
    "FileSystemSource",
    "RESTAPISource",
    "StreamingSource",
]
