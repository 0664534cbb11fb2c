"""Storage example: one data set stored in files, DuckDB, SQLite and the embedded document store.

Run it with ``python -m data_pipeline.storage.example``. Everything is written to a temporary
directory; no server is needed.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from data_pipeline.storage import (
    DataWarehouseStorage,
    FileSystemStorage,
    NoSQLDBStorage,
    RelationalDBStorage,
    Schema,
    SchemaField,
    SchemaRegistry,
    StorageManager,
)


def _orders(first_id: int, n: int) -> Any:
    import polars as pl

    return pl.DataFrame(
        {
            "order_id": list(range(first_id, first_id + n)),
            "date": [dt.date(2024, 1, 1) + dt.timedelta(days=i % 7) for i in range(n)],
            "region": [("EU", "US", "APAC")[i % 3] for i in range(n)],
            "quantity": [1 + i % 5 for i in range(n)],
            "price": [round(9.5 + (i % 4) * 2.25, 2) for i in range(n)],
        }
    )


def main(root: str | Path | None = None) -> dict[str, Any]:
    """Store, upsert and read back a small orders table in every embedded storage system."""
    workdir = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="dp-storage-"))
    registry = SchemaRegistry(workdir / "schemas.json")
    schema = Schema(
        "orders",
        [
            SchemaField("order_id", "int64", nullable=False),
            SchemaField("date", "date"),
            SchemaField("region", "string"),
            SchemaField("quantity", "int64"),
            SchemaField("price", "float64"),
        ],
        primary_key=["order_id"],
        description="one row per order",
    )
    registry.register(schema)

    manager = StorageManager()
    manager.register_storage_system(
        FileSystemStorage(
            name="lake", config={"base_path": str(workdir / "lake"), "partition_by": ["region"]}
        )
    )
    manager.register_storage_system(
        DataWarehouseStorage(
            name="warehouse", config={"database": str(workdir / "warehouse.duckdb")}
        )
    )
    manager.register_storage_system(
        RelationalDBStorage(name="db", config={"database": str(workdir / "orders.sqlite")})
    )
    manager.register_storage_system(
        NoSQLDBStorage(name="docs", config={"database": str(workdir / "docs")})
    )

    first, update = _orders(1, 30), _orders(21, 20)  # ids 21..30 change, 31..40 are new
    results: dict[str, Any] = {}
    for name in manager.list_storage_systems():
        manager.store_data(
            first, name, "orders", if_exists="replace", schema=registry.get("orders")
        )
        mode = "append" if name == "lake" else "upsert"
        data = update if mode == "upsert" else _orders(41, 10)
        manager.store_data(data, name, "orders", if_exists=mode, schema=registry.get("orders"))
        results[name] = manager.retrieve_data(name, "orders")
        print(f"{name}: {results[name].height} rows after {mode}")
    revenue = manager.retrieve_data(
        "warehouse",
        query="SELECT region, round(sum(quantity * price), 2) AS revenue FROM orders "
        "WHERE date >= :since GROUP BY region ORDER BY region",
        params={"since": dt.date(2024, 1, 3)},
    )
    print(revenue)
    results["revenue"] = revenue
    results["workdir"] = workdir
    return results


if __name__ == "__main__":
    main()
