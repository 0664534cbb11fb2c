"""DataIngestionManager: named data sources."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from data_pipeline.core.errors import ConfigError
from data_pipeline.core.registry import Registry
from data_pipeline.ingestion.base import DataSource

__all__ = ["DataIngestionManager"]


class DataIngestionManager:
    """Register data sources by unique name and ingest from them.

    Raises:
        ConfigError: ``register_source`` got something that is not a DataSource.
        DuplicateNameError: a source of that name is registered already.
        NotFoundError: no source has the given name (the message lists the registered ones).
        IngestionError: raised by a source's ``ingest()`` (any subclass), passed on unchanged.

    Example:
        >>> from data_pipeline.ingestion import DataIngestionManager
        >>> DataIngestionManager().list_sources()
        []
    """

    def __init__(self, max_workers: int = 4) -> None:
        self.sources: Registry[DataSource] = Registry("data source", "DataIngestionManager")
        self.max_workers = max_workers

    def register_source(self, source: DataSource) -> DataSource:
        """Register ``source`` under its name; a duplicate name is an error."""
        if not isinstance(source, DataSource):
            raise ConfigError(
                f"register_source expects a DataSource, got {type(source).__name__}",
                component="DataIngestionManager",
            )
        return self.sources.add(source.name, source)

    def get_source(self, name: str) -> DataSource:
        return self.sources.get(name)

    def list_sources(self) -> list[str]:
        return self.sources.names()

    def remove_source(self, name: str) -> DataSource:
        return self.sources.remove(name)

    def ingest(self, source_name: str, **options: Any) -> Any:
        """Ingest from the source named ``source_name``."""
        return self.sources.get(source_name).ingest(**options)

    def ingest_all(self) -> dict[str, Any]:
        """Ingest every source, concurrently where the sources allow; results keyed by name."""
        names = self.sources.names()
        parallel = [n for n in names if self.sources.get(n).concurrent_safe]
        results: dict[str, Any] = {}
        if len(parallel) > 1 and self.max_workers > 1:
            with ThreadPoolExecutor(max_workers=min(self.max_workers, len(parallel))) as pool:
                futures = {n: pool.submit(self.ingest, n) for n in parallel}
                for name, future in futures.items():
                    results[name] = future.result()
        for name in names:
            if name not in results:
                results[name] = self.ingest(name)
        return {n: results[n] for n in names}

    def get_metadata(self, source_name: str | None = None) -> dict[str, Any]:
        """Metadata of one source, or of every source keyed by name."""
        if source_name is not None:
            return self.sources.get(source_name).get_metadata()
        return {n: s.get_metadata() for n, s in self.sources.items()}
