"""SchemaField, Schema (validation, JSON) and SchemaRegistry (versions, compatibility, persistence)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from data_pipeline.core.errors import ConfigError, NotFoundError, StorageError, StorageSchemaError
from data_pipeline.storage import FileSystemStorage, Schema, SchemaField, SchemaRegistry
from data_pipeline.storage.warehouse import DataWarehouseStorage


def orders_schema(**extra: Any) -> Schema:
    return Schema(
        "orders",
        [
            SchemaField("order_id", "int64", nullable=False),
            SchemaField("region", "string", description="sales region"),
            SchemaField("amount", "float64"),
            SchemaField("day", "date", nullable=False),
        ],
        primary_key=["order_id"],
        description="one row per order",
        **extra,
    )


GOOD = {
    "order_id": [1, 2, 3],
    "region": ["EU", None, "US"],
    "amount": [1.0, 2.0, None],
    "day": [dt.date(2024, 1, d) for d in (1, 2, 3)],
}


def test_json_roundtrip() -> None:
    schema = orders_schema()
    again = Schema.from_json(schema.to_json())
    assert again == schema
    assert again.field("region").description == "sales region"
    assert json.loads(schema.to_json())["primary_key"] == ["order_id"]


def test_field_types_and_aliases() -> None:
    assert SchemaField("x", "integer").type == "int64"
    assert SchemaField("x", "TEXT").type == "string"
    assert SchemaField("x", "blob").type == "binary"
    assert SchemaField("x", "numeric(10, 2)").type == "decimal(10,2)"
    assert SchemaField("x", "timestamptz").type == "datetime[us, UTC]"
    with pytest.raises(ConfigError, match="unknown field type 'blobby'"):
        SchemaField("x", "blobby")
    with pytest.raises(ConfigError, match="not fields"):
        Schema("s", [SchemaField("a")], primary_key=["b"])
    with pytest.raises(ConfigError, match="repeats"):
        Schema("s", [SchemaField("a"), SchemaField("a")])
    with pytest.raises(NotFoundError, match="no field 'zz'"):
        orders_schema().field("zz")


def test_validate_accepts_good_data_on_every_engine(make_frame: Any) -> None:
    assert orders_schema().validate(make_frame(GOOD)) == [] or all(
        v.kind == "wrong_type" and v.column == "day"
        for v in orders_schema().validate(make_frame(GOOD))
    )


def test_validate_returns_every_violation() -> None:
    bad = pl.DataFrame(
        {
            "order_id": [1, 1, None],
            "amount": ["1.0", "x", "y"],
            "day": [dt.date(2024, 1, 1), None, None],
        }
    )
    problems = orders_schema().validate(bad)
    kinds = sorted((p.kind, p.column) for p in problems)
    assert kinds == [
        ("duplicate_key", "order_id"),
        ("missing_column", "region"),
        ("null_value", "day"),
        ("null_value", "order_id"),
        ("wrong_type", "amount"),
    ]
    nulls = next(p for p in problems if p.kind == "null_value" and p.column == "day")
    assert nulls.count == 2 and nulls.sample == 1
    dup = next(p for p in problems if p.kind == "duplicate_key")
    assert dup.sample == {"order_id": 1}
    extra = orders_schema().validate(
        pl.DataFrame(GOOD).with_columns(x=pl.lit(1)), allow_extra=False
    )
    assert [p.kind for p in extra] == ["unexpected_column"]


def test_widening_types_are_accepted() -> None:
    narrow = pl.DataFrame(GOOD).with_columns(
        pl.col("order_id").cast(pl.Int32), pl.col("amount").cast(pl.Float32)
    )
    assert orders_schema().validate(narrow) == []
    cast = orders_schema().cast(narrow)
    assert cast.schema["order_id"] == pl.Int64 and cast.schema["amount"] == pl.Float64


def test_from_frame() -> None:
    schema = Schema.from_frame("t", pl.DataFrame(GOOD).lazy(), primary_key="order_id")
    assert [(f.name, f.type, f.nullable) for f in schema.fields] == [
        ("order_id", "int64", False),
        ("region", "string", True),
        ("amount", "float64", True),
        ("day", "date", True),
    ]


def test_registry_versions_and_persistence(tmp_path: Path) -> None:
    path = tmp_path / "reg" / "schemas.json"
    registry = SchemaRegistry(path)
    assert registry.register(orders_schema()) == 1
    assert registry.register(orders_schema()) == 1  # same schema: same version
    v2 = Schema.from_dict(
        {
            **orders_schema().to_dict(),
            "fields": [*orders_schema().to_dict()["fields"], {"name": "note", "type": "string"}],
        }
    )
    assert registry.register(v2) == 2
    assert registry.versions("orders") == [1, 2]
    assert registry.get("orders").version == 2
    assert registry.get("orders", 1).field_names == orders_schema().field_names
    reopened = SchemaRegistry(path)
    assert reopened.versions("orders") == [1, 2]
    assert reopened.latest("orders") == v2
    assert reopened.list_schemas() == ["orders"]
    with pytest.raises(NotFoundError, match="no version 7"):
        reopened.get("orders", 7)
    with pytest.raises(NotFoundError, match="'orders'"):
        reopened.get("order")


def field_list(*fields: SchemaField) -> Schema:
    return Schema("s", list(fields))


A32, A64, A16 = SchemaField("a", "int32"), SchemaField("a", "int64"), SchemaField("a", "int16")
B_OPT, B_REQ = SchemaField("b"), SchemaField("b", nullable=False)


@pytest.mark.parametrize(
    ("mode", "old", "new", "ok"),
    [
        ("FULL", [A64], [A64, B_OPT], True),  # a nullable field added: both ways fine
        ("BACKWARD", [A64], [A64, B_REQ], False),  # new readers cannot fill b from old data
        ("FORWARD", [A64], [A64, B_REQ], True),  # old readers ignore b
        ("FORWARD", [A64, B_REQ], [A64], False),  # old readers need b
        ("BACKWARD", [A32], [A64], True),  # widening
        ("FORWARD", [A32], [A64], False),
        ("FULL", [A32], [A64], False),
        ("BACKWARD", [A32], [A16], False),  # narrowing
        ("NONE", [A32], [SchemaField("a", "string")], True),
    ],
)
def test_compatibility_modes(
    mode: str, old: list[SchemaField], new: list[SchemaField], ok: bool
) -> None:
    registry = SchemaRegistry(compatibility=mode)
    registry.register(field_list(*old))
    if ok:
        assert registry.register(field_list(*new)) == 2
    else:
        with pytest.raises(StorageSchemaError, match=f"not {mode} compatible"):
            registry.register(field_list(*new))
        assert registry.versions("s") == [1]
        assert registry.check_compatibility(field_list(*new))


def test_bad_compatibility_mode() -> None:
    with pytest.raises(ConfigError, match="BACKWARD"):
        SchemaRegistry(compatibility="SIDEWAYS")


def test_store_with_schema_validates_and_casts(tmp_path: Path) -> None:
    files = FileSystemStorage(name="f", config={"base_path": str(tmp_path)})
    with pytest.raises(StorageSchemaError, match=r"column 'region' \(string\) is missing"):
        files.store(
            pl.DataFrame({"order_id": [1], "day": [dt.date(2024, 1, 1)]}),
            "o",
            schema=orders_schema(),
        )
    assert not (tmp_path / "o.parquet").exists()
    narrow = pl.DataFrame(GOOD).with_columns(pl.col("order_id").cast(pl.Int32))
    files.store(narrow, "o", schema=orders_schema())
    assert files.retrieve("o").schema["order_id"] == pl.Int64
    # a warehouse takes the schema's primary key
    wh = DataWarehouseStorage(name="w", config={})
    wh.store(pl.DataFrame(GOOD), "o", schema=orders_schema())
    wh.store(
        pl.DataFrame(GOOD).head(1).with_columns(amount=pl.lit(99.0)),
        "o",
        if_exists="upsert",
        schema=orders_schema(),
    )
    out = wh.retrieve("o").sort("order_id")
    assert out["amount"].to_list() == [99.0, 2.0, None]


@pytest.mark.parametrize("kind", ["duckdb", "sqlite"])
def test_schema_nullability_becomes_not_null(tmp_path: Path, kind: str) -> None:
    from data_pipeline.storage import RelationalDBStorage

    if kind == "duckdb":
        target: Any = DataWarehouseStorage(
            name="w", config={"database": str(tmp_path / "w.duckdb")}
        )
    else:
        target = RelationalDBStorage(name="r", config={"database": str(tmp_path / "r.sqlite")})
    target.store(pl.DataFrame(GOOD), "o", schema=orders_schema())
    bad = (
        pl.DataFrame(GOOD).head(1).with_columns(order_id=pl.lit(9), day=pl.lit(None, dtype=pl.Date))
    )
    with pytest.raises(StorageError, match="constraint violation in table 'o'"):
        target.store(bad, "o", if_exists="append")
    assert target.retrieve("o").height == 3


def test_registry_in_a_relational_store(tmp_path: Path) -> None:
    from data_pipeline.storage import RelationalDBStorage

    db = RelationalDBStorage(name="meta", config={"database": str(tmp_path / "meta.sqlite")})
    registry = SchemaRegistry(storage=db, compatibility="FULL")
    assert registry.register(orders_schema()) == 1
    grown = Schema.from_dict(
        {
            **orders_schema().to_dict(),
            "fields": [*orders_schema().to_dict()["fields"], {"name": "note"}],
        }
    )
    assert registry.register(grown) == 2
    with pytest.raises(StorageSchemaError):
        registry.register(Schema("orders", [SchemaField("order_id", "string", nullable=False)]))
    again = SchemaRegistry(storage=db, compatibility="FULL")
    assert again.versions("orders") == [1, 2]
    assert again.get("orders") == grown
    assert db.retrieve("schema_registry").height == 2
