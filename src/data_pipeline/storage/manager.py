"""StorageManager: named storage systems."""

from __future__ import annotations

from typing import Any

from data_pipeline.core.errors import ConfigError
from data_pipeline.core.registry import Registry
from data_pipeline.storage.base import StorageSystem, StoreResult

__all__ = ["StorageManager"]


class StorageManager:
    """Register storage systems by unique name; store and retrieve data through them.

    Raises:
        NotFoundError: no storage system has that name (the message lists the known names).
        DuplicateNameError: a storage system of that name is registered already.

    Example:
        >>> import polars as pl
        >>> from data_pipeline.storage import FileSystemStorage
        >>> manager = StorageManager()
        >>> files = manager.register_storage_system(FileSystemStorage(
        ...     name="files", config={"base_path": str(getfixture("tmp_path")), "format": "parquet"}))
        >>> manager.store_data(pl.DataFrame({"id": [1, 2]}), "files", "orders").rows
        2
        >>> manager.retrieve_data("files", "orders")["id"].to_list()
        [1, 2]
        >>> manager.list_storage_systems()
        ['files']
    """

    def __init__(self) -> None:
        self.systems: Registry[StorageSystem] = Registry("storage system", "StorageManager")

    def register_storage_system(self, storage: StorageSystem) -> StorageSystem:
        if not isinstance(storage, StorageSystem):
            raise ConfigError(
                f"register_storage_system expects a StorageSystem, got {type(storage).__name__}",
                component="StorageManager",
            )
        return self.systems.add(storage.name, storage)

    def get_storage_system(self, name: str) -> StorageSystem:
        return self.systems.get(name)

    def list_storage_systems(self) -> list[str]:
        return self.systems.names()

    def remove_storage_system(self, name: str) -> StorageSystem:
        return self.systems.remove(name)

    def store_data(
        self, data: Any, storage_name: str, table: str | None = None, **options: Any
    ) -> StoreResult:
        """Store ``data`` in the storage system named ``storage_name``."""
        return self.systems.get(storage_name).store(data, table, **options)

    def retrieve_data(self, storage_name: str, table: str | None = None, **options: Any) -> Any:
        """Retrieve a table (or a query's result) from the storage system named ``storage_name``."""
        return self.systems.get(storage_name).retrieve(table, **options)

    def get_metadata(self, storage_name: str | None = None) -> dict[str, Any]:
        if storage_name is not None:
            return self.systems.get(storage_name).get_metadata()
        return {n: s.get_metadata() for n, s in self.systems.items()}
