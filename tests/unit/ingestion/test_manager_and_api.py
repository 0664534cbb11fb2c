"""The ingestion package's public API and DataIngestionManager."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from data_pipeline.core.errors import DuplicateNameError, InputNotFoundError, NotFoundError
from data_pipeline.ingestion import DataIngestionManager, DataSource, FileSystemSource


def test_config_templates_validate() -> None:
    from data_pipeline.ingestion import DatabaseSource, RESTAPISource, StreamingSource, config

    RESTAPISource(name="a", config=config.rest_api_config)
    RESTAPISource(name="b", config=config.rest_api_paginated_config)
    DatabaseSource(name="c", config=config.database_config)
    DatabaseSource(name="d", config=config.database_url_config)
    FileSystemSource(name="e", config=config.file_system_config)
    StreamingSource(name="f", config=config.streaming_config)


def test_manager_register_ingest_list_remove(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.csv").write_text(f"x\n{ord(name)}\n")
    manager = DataIngestionManager()
    for name in ("a", "b"):
        manager.register_source(
            FileSystemSource(name=name, config={"path": str(tmp_path / f"{name}.csv")})
        )
    assert manager.list_sources() == ["a", "b"]
    assert manager.ingest("a")["x"].to_list() == [97]
    results = manager.ingest_all()
    assert list(results) == ["a", "b"]
    assert all(isinstance(f, pl.DataFrame) for f in results.values())
    assert manager.get_metadata("b")["status"] == "succeeded"
    with pytest.raises(DuplicateNameError):
        manager.register_source(FileSystemSource(name="a", config={"path": "x.csv"}))
    with pytest.raises(NotFoundError, match=r"'a', 'b'|a, b"):
        manager.ingest("c")
    manager.remove_source("a")
    assert manager.list_sources() == ["b"]


def test_manager_error_is_recorded(tmp_path: Path) -> None:
    manager = DataIngestionManager()
    manager.register_source(
        FileSystemSource(name="gone", config={"path": str(tmp_path / "gone.csv")})
    )
    with pytest.raises(InputNotFoundError):
        manager.ingest("gone")
    meta = manager.get_metadata()["gone"]
    assert meta["status"] == "failed" and "gone.csv" in meta["last_error"]


def test_custom_source_subclass() -> None:
    class Numbers(DataSource):
        """Numbers 0..2."""

        def _read(self, **options: object) -> pl.DataFrame:
            return pl.DataFrame({"n": [0, 1, 2]})

    src = Numbers(name="n", config={"output": "arrow"})
    assert src.ingest().num_rows == 3
    assert src.get_metadata()["rows_out"] == 3


def test_secrets_never_shown(tmp_path: Path) -> None:
    from data_pipeline.ingestion import DatabaseSource, RESTAPISource

    rest = RESTAPISource(
        name="r",
        config={
            "url": "http://127.0.0.1:9/x",
            "headers": {"Authorization": "Bearer tok-0123456789", "X-API-Key": "key-0123456789"},
        },
    )
    db = DatabaseSource(name="d", config={"url": "postgresql://u:pw-0123456789@h/db", "table": "t"})
    text = json.dumps([rest.get_metadata(), db.get_metadata()]) + repr(rest) + repr(db)
    for secret in ("tok-0123456789", "key-0123456789", "pw-0123456789"):
        assert secret not in text
