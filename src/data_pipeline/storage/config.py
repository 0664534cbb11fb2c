"""Config templates for the storage layer (plain dicts, as in the spec).

Copy one, change the values, and pass it as ``config=`` to the matching storage class.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "data_warehouse_config",
    "delta_lake_config",
    "file_system_config",
    "mongodb_config",
    "mysql_config",
    "nosql_db_config",
    "partitioned_parquet_config",
    "redis_config",
    "relational_db_config",
    "sqlite_config",
]

# RelationalDBStorage -- the spec's template.
relational_db_config: dict[str, Any] = {
    "db_type": "postgresql",
    "host": "db.example.com",
    "port": 5432,
    "database": "customers",
    "username": "user",
    "password": "pass",
    "default_table": "customers",
    "default_if_exists": "append",
}

# RelationalDBStorage on the embedded default: a SQLite file.
sqlite_config: dict[str, Any] = {
    "db_type": "sqlite",
    "database": "data/pipeline.sqlite",
    "default_table": "customers",
    "default_if_exists": "upsert",
    "primary_key": ["customer_id"],
}

# RelationalDBStorage on MySQL / MariaDB.
mysql_config: dict[str, Any] = {
    "db_type": "mariadb",
    "host": "localhost",
    "port": 3306,
    "database": "sales",
    "username": "loader",
    "password": "${MYSQL_PASSWORD}",
    "default_table": "orders",
    "default_if_exists": "append",
}

# NoSQLDBStorage on the embedded document store (a local directory).
nosql_db_config: dict[str, Any] = {
    "db_type": "embedded",
    "database": "data/documents",
    "default_collection": "customers",
    "primary_key": ["customer_id"],
}

# NoSQLDBStorage on MongoDB.
mongodb_config: dict[str, Any] = {
    "db_type": "mongodb",
    "host": "localhost",
    "port": 27017,
    "database": "crm",
    "username": "user",
    "password": "pass",
    "default_collection": "customers",
    "default_if_exists": "upsert",
    "primary_key": ["customer_id"],
}

# NoSQLDBStorage on Redis: one hash per row, expiring after an hour.
redis_config: dict[str, Any] = {
    "db_type": "redis",
    "host": "localhost",
    "port": 6379,
    "database": "0",
    "key_template": "customer:{customer_id}",
    "value_format": "hash",
    "ttl": 3600,
}

# DataWarehouseStorage on embedded DuckDB (the default).
data_warehouse_config: dict[str, Any] = {
    "engine": "duckdb",
    "database": "data/warehouse.duckdb",
    "schema": "analytics",
    "default_table": "sales",
    "default_if_exists": "upsert",
    "primary_key": ["order_id"],
}

# DataWarehouseStorage on Delta Lake tables.
delta_lake_config: dict[str, Any] = {
    "engine": "delta",
    "path": "data/lakehouse",
    "partition_by": ["region"],
    "primary_key": ["order_id"],
}

# FileSystemStorage: Parquet files under a base path.
file_system_config: dict[str, Any] = {
    "base_path": "data/files",
    "format": "parquet",
    "compression": "zstd",
    "row_group_size": 500_000,
}

# FileSystemStorage: a hive-partitioned Parquet dataset.
partitioned_parquet_config: dict[str, Any] = {
    "base_path": "data/lake",
    "format": "parquet",
    "partition_by": ["region"],
}
