"""Integration fixtures: every StreamingSource a test opened is closed after it; the relational
tests' ``db`` (RelationalDBStorage and the SQL layer)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_storage_relational import DB, SYSTEMS


@pytest.fixture(autouse=True)
def close_streaming_sources(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Streaming sources hold a client until closed; a test that does not close one has it
    closed here, as after an error (nothing acknowledged)."""
    from data_pipeline.ingestion.streaming import StreamingSource

    opened: list[StreamingSource] = []
    init = StreamingSource.__init__

    def tracked(self: StreamingSource, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(StreamingSource, "__init__", tracked)
    yield
    for source in opened:
        with contextlib.suppress(Exception):  # a broker already gone: nothing left to close
            source.__exit__(RuntimeError, RuntimeError("test over"), None)


@pytest.fixture(params=SYSTEMS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DB]:
    """A RelationalDBStorage on SQLite, PostgreSQL, MariaDB (LOAD DATA) and MariaDB (INSERT);
    the tables the test named with ``db.table()`` are dropped afterwards."""
    handle = DB(str(request.param), tmp_path)
    yield handle
    handle.drop_all()
