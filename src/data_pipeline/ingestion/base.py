"""DataSource: the base of every source. ``ingest()`` owns metadata; ``_read()`` only reads."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from data_pipeline.core.component import Component
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import IngestionError
from data_pipeline.core.frames import convert_output, row_count, to_narwhals

__all__ = ["DataSource", "SourceConfig"]


class SourceConfig(ConfigModel):
    """Keys every source accepts."""

    output: Literal["polars", "lazy", "pandas", "arrow"] = "polars"
    """What ``ingest()`` returns: a polars DataFrame (default), a polars LazyFrame, pandas or Arrow."""


class DataSource(Component):
    """Abstract base class for all data sources.

    Subclasses set ``config_model`` (a :class:`SourceConfig` subclass) and implement ``_read()``,
    returning a polars DataFrame or LazyFrame, or a pyarrow Table. ``ingest()`` converts it to the
    configured ``output``, times the call and keeps the metadata.
    """

    layer: ClassVar[str] = "ingestion"
    error_class = IngestionError
    config_model: ClassVar[type[ConfigModel]] = SourceConfig
    concurrent_safe: ClassVar[bool] = True
    """Whether ``DataIngestionManager.ingest_all`` may run this source beside others."""

    def ingest(self, **options: Any) -> Any:
        """Read the source and return its data in the configured ``output`` form."""
        with self._operation("ingest") as op:
            data = self._read(**options)
            out = convert_output(data, self.settings.output, component=self.label)  # type: ignore[attr-defined]
            op.rows_out = row_count(to_narwhals(out))
            return out

    def _read(self, **options: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement _read()")
