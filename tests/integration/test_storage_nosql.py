"""NoSQLDBStorage: the embedded document store, real Redis, and MongoDB through a SecantusDB server."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from data_pipeline.core.errors import (
    ConfigError,
    InputNotFoundError,
    StorageConnectionError,
    StorageError,
    StorageSchemaError,
)
from data_pipeline.storage.nosql import NoSQLDBStorage
from tests.integration.servers import (
    REDIS_DB,
    REDIS_HOST,
    REDIS_PORT,
    drop_redis_keys,
    free_port,
    redis_config,
    secantus_server,
)


def frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [1, 2, 3],
            "name": ["a", None, 'quote " ; --'],
            "amount": [1.5, 2.0, None],
            "active": [True, False, None],
            "day": [dt.date(2024, 1, d) for d in (1, 2, 3)],
            "ts": [dt.datetime(2024, 1, 1, 12, 0, s) for s in (1, 2, 3)],
        }
    )


@pytest.fixture(scope="module")
def mongo_port() -> Iterator[int]:
    """A SecantusDB server (MongoDB wire protocol) started for these tests."""
    with secantus_server() as port:
        yield port


@pytest.fixture(params=["embedded-memory", "embedded-dir", "mongodb"])
def docs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NoSQLDBStorage]:
    kind = str(request.param)
    if kind == "embedded-memory":
        config: dict[str, Any] = {}
    elif kind == "embedded-dir":
        config = {"database": str(tmp_path / "docs")}
    else:
        port = request.getfixturevalue("mongo_port")
        config = {
            "db_type": "mongodb",
            "host": "127.0.0.1",
            "port": port,
            "database": f"dp_{uuid.uuid4().hex[:8]}",
        }
    storage = NoSQLDBStorage(name=f"docs_{kind}", config=config)
    yield storage
    storage.close()


def test_documents_roundtrip_and_modes(docs: NoSQLDBStorage, make_frame: Any) -> None:
    result = docs.store(make_frame(frame().to_dict(as_series=False)), "customers")
    assert result.rows == 3 or result.rows is None
    out = docs.retrieve("customers").sort("id")
    assert out["id"].to_list() == [1, 2, 3]
    assert out["name"].to_list() == ["a", None, 'quote " ; --']
    assert out["amount"].to_list() == [1.5, 2.0, None]
    assert out["day"].cast(pl.Date).to_list() == frame()["day"].to_list()
    with pytest.raises(StorageError, match="already exists"):
        docs.store(frame(), "customers", if_exists="fail")
    docs.store(frame().head(1).with_columns(id=pl.lit(10)), "customers", if_exists="append")
    assert docs.retrieve("customers").height == 4
    docs.store(
        pl.DataFrame({"id": [1, 20], "name": ["A", "T"]}),
        "customers",
        if_exists="upsert",
        primary_key="id",
    )
    out = docs.retrieve("customers").sort("id")
    assert out["id"].to_list() == [1, 2, 3, 10, 20]
    assert out.filter(pl.col("id") == 1)["name"].item() == "A"
    docs.store(frame().head(2), "customers", if_exists="replace")
    assert docs.retrieve("customers")["id"].to_list() == [1, 2]


def test_documents_filter_columns_limit(docs: NoSQLDBStorage) -> None:
    docs.store(frame(), "c")
    assert sorted(docs.retrieve("c", query={"id": {"$gte": 2}})["id"].to_list()) == [2, 3]
    assert docs.retrieve("c", filter={"name": "a"})["id"].to_list() == [1]
    out = docs.retrieve("c", columns=["id"], limit=2)
    assert out.columns == ["id"] and out.height == 2
    with pytest.raises(InputNotFoundError, match="'nope'"):
        docs.retrieve("nope")
    with pytest.raises(ConfigError, match="filter document"):
        docs.retrieve("c", query="SELECT 1")


def test_documents_upsert_needs_key(docs: NoSQLDBStorage) -> None:
    with pytest.raises(ConfigError, match="primary key"):
        docs.store(frame(), "c", if_exists="upsert")
    with pytest.raises(StorageError, match=r"duplicate primary key \{'id': 1\}"):
        docs.store(pl.DataFrame({"id": [1, 1]}), "c", if_exists="upsert", primary_key="id")


def test_mongodb_duplicate_key_append_names_collection(mongo_port: int) -> None:
    storage = NoSQLDBStorage(
        name="m",
        config={
            "db_type": "mongodb",
            "host": "127.0.0.1",
            "port": mongo_port,
            "database": "dp_dup",
            "primary_key": ["id"],
        },
    )
    try:
        storage.store(frame(), "people", if_exists="replace")
        with pytest.raises(StorageError, match="duplicate key in collection 'people'"):
            storage.store(pl.DataFrame({"id": [2]}), "people", if_exists="append")
    finally:
        storage.close()


def test_mongodb_unreachable_names_server_not_password() -> None:
    port = free_port()
    storage = NoSQLDBStorage(
        name="m",
        config={
            "db_type": "mongodb",
            "host": "127.0.0.1",
            "port": port,
            "database": "x",
            "username": "u",
            "password": "Very-Secret-77",
            "connect_timeout": 1,
        },
    )
    with pytest.raises(StorageConnectionError) as info:
        storage.store(frame(), "c")
    assert f"127.0.0.1:{port}/x" in str(info.value)
    assert "Very-Secret-77" not in str(info.value)
    assert "Very-Secret-77" not in repr(storage.get_metadata())


@pytest.fixture
def redis_table() -> Iterator[str]:
    name = f"dp_{uuid.uuid4().hex[:8]}"
    redis_config()  # skips when Redis is down
    yield name
    drop_redis_keys(f"*{name}*")


def redis_storage(**config: Any) -> NoSQLDBStorage:
    return NoSQLDBStorage(name="cache", config=redis_config(**config))


def test_redis_url_with_username_password_and_database_keys(redis_table: str) -> None:
    """Beside a ``url`` the username, password and database keys replace the URL's, as for
    StreamingSource (the URL's password won and the user and database were ignored)."""
    import redis

    admin = redis.Redis(REDIS_HOST, REDIS_PORT)
    user, secret = f"dp_user_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin.execute_command("ACL", "SETUSER", user, "on", f">{secret}", f"~*{redis_table}*", "+@all")
    try:
        storage = NoSQLDBStorage(
            name="cache",
            config={
                "db_type": "redis",
                "url": f"redis://nobody:wrong-password@{REDIS_HOST}:{REDIS_PORT}/0",
                "username": user,
                "password": secret,
                "database": str(REDIS_DB),
                "primary_key": ["id"],
            },
        )
        storage.store(frame(), redis_table)
        storage.close()
        in_db = redis.Redis(REDIS_HOST, REDIS_PORT, db=REDIS_DB)
        assert sorted(in_db.smembers(f"__dp__:{redis_table}:keys")) == [
            f"{redis_table}:{i}".encode() for i in (1, 2, 3)
        ]
        in_db.close()
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


@pytest.mark.parametrize("value_format", ["hash", "json"])
def test_redis_roundtrip_modes_and_filter(redis_table: str, value_format: str) -> None:
    storage = redis_storage(primary_key=["id"], value_format=value_format)
    storage.store(frame(), redis_table)
    assert_frame_equal(storage.retrieve(redis_table).sort("id"), frame(), check_dtypes=False)
    assert storage.retrieve(redis_table, query={"amount": {"$gt": 1.8}})["id"].to_list() == [2]
    with pytest.raises(StorageError, match="already exists"):
        storage.store(frame(), redis_table, if_exists="fail")
    storage.store(pl.DataFrame({"id": [3, 4], "name": ["C", "D"]}), redis_table, if_exists="upsert")
    out = storage.retrieve(redis_table).sort("id")
    assert out["id"].to_list() == [1, 2, 3, 4]
    assert out.filter(pl.col("id") == 3)["name"].item() == "C"
    storage.store(frame().head(1), redis_table, if_exists="replace")
    assert storage.retrieve(redis_table)["id"].to_list() == [1]
    import redis

    client = redis.Redis(REDIS_HOST, REDIS_PORT, db=5)
    assert client.exists(f"{redis_table}:2") == 0  # replace removed the old keys
    client.close()
    storage.close()


def test_redis_reads_type_names_kept_by_version_0_2(redis_table: str) -> None:
    """0.2 kept Polars' printed type names as JSON; they are read by core.types' one parser
    (0.2's own reader turned decimals, int8 and categories into text)."""
    import decimal
    import json

    import redis

    client = redis.Redis(REDIS_HOST, REDIS_PORT, db=5)
    names = {
        "id": "Int64",
        "d": "Decimal(precision=10, scale=2)",
        "i8": "Int8",
        "z": "Datetime(time_unit='us', time_zone='UTC')",
        "c": "Categorical",
    }
    client.set(f"__dp__:{redis_table}:schema", json.dumps(names))
    client.hset(
        f"{redis_table}:1",
        mapping={"id": "1", "d": "12.50", "i8": "-128", "z": "2024-01-01 05:00:00", "c": "x"},
    )
    client.sadd(f"__dp__:{redis_table}:keys", f"{redis_table}:1")
    client.close()
    out = redis_storage(primary_key=["id"], value_format="hash").retrieve(redis_table)
    assert out.schema == pl.Schema(
        {
            "id": pl.Int64,
            "d": pl.Decimal(10, 2),
            "i8": pl.Int8,
            "z": pl.Datetime("us", "UTC"),
            "c": pl.Categorical(),
        }
    )
    assert out.row(0) == (
        1,
        decimal.Decimal("12.50"),
        -128,
        dt.datetime(2024, 1, 1, 5, tzinfo=dt.timezone.utc),
        "x",
    )


def test_redis_key_template_and_ttl(redis_table: str) -> None:
    storage = redis_storage(key_template="cust:{id}:" + redis_table, ttl=120)
    storage.store(frame(), redis_table)
    import redis

    client = redis.Redis(REDIS_HOST, REDIS_PORT, db=5)
    try:
        assert client.hget(f"cust:3:{redis_table}", "name") == b'quote " ; --'
        assert 0 < client.ttl(f"cust:1:{redis_table}") <= 120
        assert client.hexists(f"cust:2:{redis_table}", "name") is False  # nulls are not stored
    finally:
        client.close()
        storage.close()


def test_redis_bad_keys(redis_table: str) -> None:
    storage = redis_storage(key_template="k:{region}")
    with pytest.raises(StorageSchemaError, match="'region'"):
        storage.store(frame(), redis_table)
    with pytest.raises(ConfigError, match="key_template or primary_key"):
        redis_storage().store(frame(), redis_table)
    dup = redis_storage(key_template="k:{active}:" + redis_table)
    with pytest.raises(StorageSchemaError, match="nulls"):
        dup.store(frame(), redis_table)
    with pytest.raises(InputNotFoundError):
        storage.retrieve(redis_table)
    storage.close()


def test_redis_unreachable_names_server() -> None:
    storage = NoSQLDBStorage(
        name="cache",
        config={
            "db_type": "redis",
            "host": "127.0.0.1",
            "port": free_port(),
            "password": "Redis-Pw-99",
            "primary_key": "id",
        },
    )
    with pytest.raises(StorageConnectionError) as info:
        storage.store(frame(), "t")
    assert "127.0.0.1" in str(info.value)
    assert "Redis-Pw-99" not in str(info.value)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="db_type"):
        NoSQLDBStorage(name="x", config={"db_type": "cassandra"})
    with pytest.raises(ConfigError, match="key_template"):
        NoSQLDBStorage(name="x", config={"key_template": "a:{id}"})
    with pytest.raises(ConfigError, match="placeholder"):
        NoSQLDBStorage(name="x", config={"db_type": "redis", "key_template": "fixed"})


# -- issue 14: names, leftovers, atomic swaps, linear upserts ----------------------------------


@pytest.mark.parametrize("name", ["/tmp/outside", "../outside", "a/b", ".hidden", "C:x", "x\\y"])
def test_embedded_collection_name_cannot_leave_its_folder(tmp_path: Path, name: str) -> None:
    """A collection of the embedded store is a file: a name that is a path is refused before
    anything is written (an absolute name used to write outside the folder)."""
    store = NoSQLDBStorage(name="e", config={"database": str(tmp_path / "docs")})
    with pytest.raises(ConfigError, match="one plain name"):
        store.store(frame(), name)
    assert (
        sorted(p.name for p in tmp_path.iterdir()) == ["docs"] or not (tmp_path / "docs").exists()
    )
    assert not Path("/tmp/outside.collection").exists()
    with pytest.raises(ConfigError, match="reserved"):
        store.store(frame(), "__dp_schema")


def test_embedded_leftover_stage_is_dropped_by_the_next_load(tmp_path: Path) -> None:
    """A staging collection of a killed load (same target) goes at the next load, listed in
    the metadata; another target's stage stays."""
    from data_pipeline.storage.nosql import _stage_prefix

    store = NoSQLDBStorage(name="e", config={"database": str(tmp_path / "docs")})
    store.store(frame(), "people")
    db = store._database()
    dead = _stage_prefix("people") + "deadbeef"
    other = _stage_prefix("others") + "alive"
    db[dead].insert_one({"x": 1})
    db[other].insert_one({"x": 1})
    result = store.store(frame().head(1), "people", if_exists="append")
    assert result.details["leftovers_dropped"] == [dead]
    assert dead not in db.list_collection_names() and other in db.list_collection_names()
    assert store.retrieve("people").height == 4
    files = sorted(p.name for p in (tmp_path / "docs" / "data_pipeline").iterdir())
    assert files == sorted(["people.collection", "__dp_schema.collection", other + ".collection"])


def test_embedded_upsert_keeps_ids_and_types(docs: NoSQLDBStorage) -> None:
    """Upsert replaces the documents of the same key (keeping their _id), adds the rest, and a
    read gives the stored types back (Int32, Date, Float32)."""
    data = frame().with_columns(pl.col("id").cast(pl.Int32), pl.col("amount").cast(pl.Float32))
    docs.store(data, "c", primary_key="id")
    before = docs.retrieve("c", include_id=True).sort("id")
    docs.store(
        data.tail(2).with_columns(name=pl.lit("new")), "c", if_exists="upsert", primary_key="id"
    )
    after = docs.retrieve("c", include_id=True).sort("id")
    assert after["_id"].to_list() == before["_id"].to_list()
    assert after["name"].to_list() == ["a", "new", "new"]
    assert after.drop("_id").schema == data.schema


def test_redis_json_text_with_unicode_line_breaks(redis_table: str) -> None:
    """U+2028, U+0085 and friends inside JSON text: str.splitlines() split the rows there and
    the load failed with "zip() argument 2 is longer than argument 1" (issue 14)."""
    storage = redis_storage(primary_key=["id"], value_format="json")
    text = ["a\u2028b", "c\u0085d", "e\u2029f\x0b\x0c\x1c\x1d\x1eg"]
    data = pl.DataFrame({"id": [1, 2, 3], "t": text})
    storage.store(data, redis_table)
    assert storage.retrieve(redis_table).sort("id")["t"].to_list() == text
