"""StorageManager and the storage package's public API."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from data_pipeline.core.errors import ConfigError, DuplicateNameError, NotFoundError
from data_pipeline.storage import (
    DataWarehouseStorage,
    FileSystemStorage,
    RelationalDBStorage,
    StorageManager,
)


def test_manager_register_store_retrieve_list_remove(tmp_path: Path) -> None:
    manager = StorageManager()
    files = manager.register_storage_system(
        FileSystemStorage(name="files", config={"base_path": str(tmp_path)})
    )
    manager.register_storage_system(
        DataWarehouseStorage(
            name="wh", config={"database": str(tmp_path / "w.duckdb"), "default_table": "t"}
        )
    )
    assert manager.list_storage_systems() == ["files", "wh"]
    df = pl.DataFrame({"a": [1, 2]})
    result = manager.store_data(df, "files", "t")
    assert result.rows == 2
    manager.store_data(df, "wh")
    assert manager.retrieve_data("wh").height == 2
    assert manager.retrieve_data("files", "t").height == 2
    meta = manager.get_metadata("files")
    assert meta["rows_out"] == 2 and meta["last_operation"] == "retrieve"
    assert set(manager.get_metadata()) == {"files", "wh"}
    with pytest.raises(DuplicateNameError):
        manager.register_storage_system(FileSystemStorage(name="files", config={}))
    with pytest.raises(NotFoundError, match="'files'"):
        manager.store_data(df, "filez")
    with pytest.raises(ConfigError):
        manager.register_storage_system("not a storage")  # type: ignore[arg-type]
    assert manager.remove_storage_system("files") is files
    assert manager.list_storage_systems() == ["wh"]


def test_store_without_table_needs_default(tmp_path: Path) -> None:
    db = RelationalDBStorage(name="db", config={"database": str(tmp_path / "x.sqlite")})
    with pytest.raises(ConfigError, match="default_table"):
        db.store(pl.DataFrame({"a": [1]}))


def test_metadata_records_store(tmp_path: Path) -> None:
    db = RelationalDBStorage(
        name="db", config={"database": str(tmp_path / "x.sqlite"), "default_table": "t"}
    )
    db.store(pl.DataFrame({"a": [1, 2, 3]}))
    meta = db.get_metadata()
    assert meta["status"] == "succeeded"
    assert meta["rows_in"] == 3 and meta["rows_out"] == 3
    assert meta["details"]["target"] == "t"
    assert meta["duration_seconds"] is not None
