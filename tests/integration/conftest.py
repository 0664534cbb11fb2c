"""Fixtures shared by the relational tests (RelationalDBStorage and the SQL layer)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_storage_relational import DB, SYSTEMS


@pytest.fixture(params=SYSTEMS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DB]:
    """A RelationalDBStorage on SQLite, PostgreSQL, MariaDB (LOAD DATA) and MariaDB (INSERT);
    the tables the test named with ``db.table()`` are dropped afterwards."""
    handle = DB(str(request.param), tmp_path)
    yield handle
    handle.drop_all()
