"""Storage layer: relational databases, NoSQL stores, data warehouses and file systems.

Importing this package is light: each backend imports its driver (polars, duckdb, psycopg,
pymysql, pymongo, redis, ...) only when it is used.
"""

from data_pipeline.storage.base import StorageSystem
from data_pipeline.storage.filesystem import FileSystemStorage
from data_pipeline.storage.manager import StorageManager
from data_pipeline.storage.nosql import NoSQLDBStorage
from data_pipeline.storage.relational import RelationalDBStorage
from data_pipeline.storage.schema import Schema, SchemaField, SchemaRegistry
from data_pipeline.storage.warehouse import DataWarehouseStorage

__all__ = [
    "DataWarehouseStorage",
    "FileSystemStorage",
    "NoSQLDBStorage",
    "RelationalDBStorage",
    "Schema",
    "SchemaField",
    "SchemaRegistry",
    "StorageManager",
    "StorageSystem",
]
