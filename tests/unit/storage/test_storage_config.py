"""The config templates of data_pipeline.storage.config build their storage classes."""

from __future__ import annotations

import pytest

from data_pipeline.storage import (
    DataWarehouseStorage,
    FileSystemStorage,
    NoSQLDBStorage,
    RelationalDBStorage,
)
from data_pipeline.storage import config as templates

CASES = [
    ("relational_db_config", RelationalDBStorage),
    ("sqlite_config", RelationalDBStorage),
    ("mysql_config", RelationalDBStorage),
    ("nosql_db_config", NoSQLDBStorage),
    ("mongodb_config", NoSQLDBStorage),
    ("redis_config", NoSQLDBStorage),
    ("data_warehouse_config", DataWarehouseStorage),
    ("delta_lake_config", DataWarehouseStorage),
    ("file_system_config", FileSystemStorage),
    ("partitioned_parquet_config", FileSystemStorage),
]


@pytest.mark.parametrize(("name", "cls"), CASES)
def test_template_builds(name: str, cls: type) -> None:
    storage = cls(name=name, config=getattr(templates, name))
    meta = storage.get_metadata()
    assert meta["status"] == "idle"
    assert (
        "pass" not in str(meta["config"].get("password", "")) or meta["config"]["password"] == "***"
    )


def test_all_templates_covered() -> None:
    assert sorted(templates.__all__) == sorted(name for name, _ in CASES)


def test_spec_template_is_verbatim() -> None:
    assert templates.relational_db_config == {
        "db_type": "postgresql",
        "host": "db.example.com",
        "port": 5432,
        "database": "customers",
        "username": "user",
        "password": "pass",
        "default_table": "customers",
        "default_if_exists": "append",
    }
