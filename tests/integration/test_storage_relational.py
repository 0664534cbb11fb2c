"""RelationalDBStorage against real SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from data_pipeline.core.errors import (
    ConfigError,
    InputNotFoundError,
    StorageAuthenticationError,
    StorageConnectionError,
    StorageError,
    StorageSchemaError,
)
from data_pipeline.storage.relational import RelationalDBStorage
from tests.conftest import require_service

PG_HOST = os.environ.get("DATA_PIPELINE_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("DATA_PIPELINE_PG_PORT", "5432"))
MY_HOST = os.environ.get("DATA_PIPELINE_MYSQL_HOST", "127.0.0.1")
MY_PORT = int(os.environ.get("DATA_PIPELINE_MYSQL_PORT", "3306"))

SYSTEMS = ["sqlite", "postgresql", "mariadb", "mariadb-insert"]

TRICKY = ["", None, 'quote " and, comma', "new\nline", "back\\slash", "NULL", "ünïcødé ✓"]


def config_for(system: str, tmp_path: Path) -> dict[str, Any]:
    if system == "sqlite":
        return {"database": str(tmp_path / "db.sqlite")}
    if system == "postgresql":
        require_service("PostgreSQL", PG_HOST, PG_PORT)
        return {
            "db_type": "postgresql",
            "host": PG_HOST,
            "port": PG_PORT,
            "database": "test",
            "username": "postgres",
        }
    require_service("MariaDB", MY_HOST, MY_PORT)
    config: dict[str, Any] = {
        "db_type": "mariadb",
        "host": MY_HOST,
        "port": MY_PORT,
        "database": "test",
        "username": "root",
    }
    if system == "mariadb-insert":
        config["mysql_load"] = "insert"
    return config


class DB:
    """A storage for one system plus the unique table names a test used (dropped afterwards)."""

    def __init__(self, system: str, tmp_path: Path) -> None:
        self.system = system
        self.config = config_for(system, tmp_path)
        self.storage = RelationalDBStorage(name=f"rel_{system}", config=self.config)
        self.names: list[str] = []

    def table(self, prefix: str = "dp") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        return name

    def make(self, **extra: Any) -> RelationalDBStorage:
        return RelationalDBStorage(name=f"rel_{self.system}", config={**self.config, **extra})

    def count(self, table: str) -> int:
        return int(self.storage.retrieve(table).height)

    def drop_all(self) -> None:
        if self.system == "sqlite":
            return
        with self.storage.connect() as con:
            quote = "`" if self.system.startswith("mariadb") else '"'
            cur = con.cursor()
            for name in self.names:
                cur.execute(f"DROP TABLE IF EXISTS {quote}{name.replace(quote, quote * 2)}{quote}")
            con.commit()


def sample() -> pl.DataFrame:
    n = len(TRICKY)
    return pl.DataFrame(
        {
            "id": list(range(1, n + 1)),
            "text": TRICKY,
            "amount": [1.5, None, -2.25, 1e10, 0.0, 3.0, 7.125],
            "flag": [True, False, None, True, False, True, True],
            "day": [dt.date(2024, 1, i + 1) for i in range(n)],
            "ts": [dt.datetime(2024, 1, 1, 12, 30, i, 123456) for i in range(n)],
        }
    )


def normalise(frame: pl.DataFrame) -> dict[str, list[Any]]:
    """Values as Python objects, with the representations databases choose made comparable."""
    out: dict[str, list[Any]] = {}
    for name in frame.columns:
        values = frame[name].to_list()
        if name == "flag":
            values = [None if v is None else bool(v) for v in values]
        elif name == "day":
            values = [
                v if isinstance(v, dt.date) or v is None else dt.date.fromisoformat(str(v)[:10])
                for v in values
            ]
        elif name == "ts":
            values = [
                v.replace(tzinfo=None)
                if isinstance(v, dt.datetime)
                else dt.datetime.fromisoformat(str(v))
                for v in values
            ]
        elif name == "amount":
            values = [None if v is None else float(v) for v in values]
        out[name] = values
    return out


def test_roundtrip_keeps_values(db: DB) -> None:
    table = db.table()
    result = db.storage.store(sample(), table)
    assert result.rows == len(TRICKY)
    assert result.details["action"] == "created"
    out = db.storage.retrieve(table).sort("id")
    assert normalise(out) == normalise(sample())


def test_every_engine_input(db: DB, make_frame: Any) -> None:
    table = db.table()
    data = {"id": [1, 2, 3], "name": ["a", None, "c"], "value": [1.0, 2.5, None]}
    db.storage.store(make_frame(data), table)
    out = db.storage.retrieve(table).sort("id")
    assert out.to_dict(as_series=False) == data


def test_if_exists_modes(db: DB) -> None:
    table = db.table()
    storage = db.make(default_table=table, primary_key=["id"])
    storage.store(sample())
    with pytest.raises(StorageError, match="already exists"):
        storage.store(sample(), if_exists="fail")
    storage.store(pl.DataFrame({"id": [100], "text": ["appended"]}), if_exists="append")
    assert db.count(table) == len(TRICKY) + 1
    update = pl.DataFrame({"id": [1, 200], "text": ["changed", "inserted"], "amount": [9.0, 8.0]})
    assert storage.store(update, if_exists="upsert").details["action"] == "upserted"
    out = storage.retrieve().sort("id")
    assert out.height == len(TRICKY) + 2
    assert out.filter(pl.col("id") == 1).select("text", "amount").row(0) == ("changed", 9.0)
    assert out.filter(pl.col("id") == 200)["text"].item() == "inserted"
    storage.store(sample().head(2), if_exists="replace")
    assert db.count(table) == 2
    # replace keeps the primary key: a duplicate append is a constraint violation
    with pytest.raises(StorageError, match="constraint violation"):
        storage.store(sample().head(1), if_exists="append")


def test_upsert_on_new_table_and_query_params(db: DB) -> None:
    table = db.table()
    db.storage.store(sample(), table, if_exists="upsert", primary_key="id")
    qualified = f'"{table}"' if not db.system.startswith("mariadb") else f"`{table}`"
    # :name placeholders and a dict on every database; a literal ':x' and '%' stay text
    out = db.storage.retrieve(
        query=f"SELECT id, ':low' AS lit, '5%' AS pct FROM {qualified} WHERE id > :low ORDER BY id",
        params={"low": 5},
    )
    assert out.to_dict(as_series=False) == {"id": [6, 7], "lit": [":low"] * 2, "pct": ["5%"] * 2}
    # the driver's own style is refused with a hint, on every database
    mark = "?" if db.system == "sqlite" else "%s"
    with pytest.raises(ConfigError, match="params must be a dict") as info:
        db.storage.retrieve(query=f"SELECT id FROM {qualified} WHERE id > {mark}", params=[5])
    assert "params={'name': value}" in str(info.value)


def test_hostile_names_are_stored_verbatim(db: DB) -> None:
    victim = db.table("victim")
    db.storage.store(sample(), victim)
    evil = db.table('x"; DROP TABLE ' + victim + "; --`")
    data = pl.DataFrame({"id": [1], 'col "; DROP TABLE x; --': ["v"]})
    db.storage.store(data, evil)
    db.storage.store(data, evil, if_exists="append")
    db.storage.store(data, evil, if_exists="replace")
    assert evil in db.storage.list_tables()
    assert db.storage.retrieve(evil).to_dict(as_series=False) == data.to_dict(as_series=False)
    assert db.count(victim) == len(TRICKY)


def test_constraint_violation_names_table_and_leaves_it_unchanged(db: DB) -> None:
    table = db.table()
    db.storage.store(sample(), table, primary_key=["id"])
    clash = pl.DataFrame({"id": [50, 3], "text": ["new", "clash"]})
    with pytest.raises(
        StorageError, match=f"constraint violation in table '{table}'.*unchanged"
    ) as info:
        db.storage.store(clash, table, if_exists="append")
    # the server (or, for SQLite, a lookup after the failure) names the offending key
    assert "3" in str(info.value)
    if db.system == "sqlite":
        assert "offending row: {'id': 3, 'text': 'clash'}" in str(info.value)
    out = db.storage.retrieve(table)
    assert out.height == len(TRICKY)
    assert 50 not in out["id"].to_list()
    dup = pl.DataFrame({"id": [1, 1], "text": ["a", "b"]})
    with pytest.raises(StorageError, match=r"duplicate primary key \{'id': 1\}"):
        db.storage.store(dup, table, if_exists="replace", primary_key=["id"])
    assert db.count(table) == len(TRICKY)


def test_schema_evolution(db: DB) -> None:
    table = db.table()
    db.storage.store(sample(), table)
    wider = pl.DataFrame({"id": [99], "text": ["w"], "region": ["EU"]})
    with pytest.raises(StorageSchemaError, match="'region'"):
        db.storage.store(wider, table, if_exists="append")
    assert db.count(table) == len(TRICKY)
    db.make(schema_evolution=True).store(wider, table, if_exists="append")
    out = db.storage.retrieve(table)
    assert "region" in out.columns
    assert out.filter(pl.col("id") == 99)["region"].item() == "EU"


def test_missing_table_lists_tables(db: DB) -> None:
    table = db.table()
    db.storage.store(sample(), table)
    with pytest.raises(InputNotFoundError, match="does not exist"):
        db.storage.retrieve(table + "_nope")
    with pytest.raises(ConfigError, match="primary key"):
        db.storage.store(sample(), table, if_exists="upsert")


SECRET = "Sup3r-Secret-PW"


def test_connection_error_names_server_never_password(tmp_path: Path) -> None:
    storage = RelationalDBStorage(
        name="down",
        config={
            "db_type": "postgresql",
            "host": "127.0.0.1",
            "port": 1,
            "database": "sales_db",
            "username": "loader",
            "password": SECRET,
            "connect_timeout": 2,
        },
    )
    with pytest.raises(StorageConnectionError) as info:
        storage.store(sample(), "t")
    message = str(info.value)
    assert "127.0.0.1:1/sales_db" in message
    assert SECRET not in message
    assert SECRET not in repr(storage.get_metadata())
    assert SECRET not in repr(storage)


def test_wrong_password_is_an_authentication_error() -> None:
    require_service("MariaDB", MY_HOST, MY_PORT)
    storage = RelationalDBStorage(
        name="auth",
        config={
            "db_type": "mariadb",
            "host": MY_HOST,
            "port": MY_PORT,
            "database": "test",
            "username": "dp_no_such_user",
            "password": SECRET,
        },
    )
    with pytest.raises(StorageAuthenticationError) as info:
        storage.retrieve("anything")
    assert f"{MY_HOST}:{MY_PORT}/test" in str(info.value)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(storage.get_metadata())


def test_sqlalchemy_urls(tmp_path: Path) -> None:
    lite = RelationalDBStorage(name="u", config={"url": f"sqlite:///{tmp_path / 'u.sqlite'}"})
    lite.store(sample(), "t")
    assert lite.db_type == "sqlite"
    assert lite.retrieve("t").height == len(TRICKY)
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    pg = RelationalDBStorage(
        name="u", config={"url": f"postgresql+psycopg://postgres:pw1234@{PG_HOST}:{PG_PORT}/test"}
    )
    assert pg.db_type == "postgresql"
    assert "pw1234" not in repr(pg.get_metadata())
    table = f"dp_{uuid.uuid4().hex[:10]}"
    try:
        pg.store(sample(), table)
        assert pg.retrieve(table).height == len(TRICKY)
    finally:
        with pg.connect() as con:
            con.execute(f'DROP TABLE IF EXISTS "{table}"')
            con.commit()


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="database"):
        RelationalDBStorage(name="x", config={"db_type": "postgresql"})
    with pytest.raises(ConfigError, match="db_type"):
        RelationalDBStorage(name="x", config={"db_type": "oracle9", "database": "d"})
    with pytest.raises(ConfigError, match="schema"):
        RelationalDBStorage(name="x", config={"schema": "s"})
    storage = RelationalDBStorage(name="x", config={"db_type": "postgres", "database": "d"})
    assert storage.db_type == "postgresql"
    assert storage.target.port == 5432


def test_postgres_schema_namespace() -> None:
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    schema = f"dp_schema_{uuid.uuid4().hex[:8]}"
    storage = RelationalDBStorage(
        name="ns",
        config={
            "db_type": "postgresql",
            "host": PG_HOST,
            "port": PG_PORT,
            "database": "test",
            "username": "postgres",
            "schema": schema,
        },
    )
    try:
        result = storage.store(sample(), "sales", primary_key="id")
        assert result.target == f"{schema}.sales"
        storage.store(sample(), "sales", if_exists="replace", primary_key="id")
        assert storage.list_tables() == ["sales"]
        assert storage.retrieve("sales").height == len(TRICKY)
    finally:
        with storage.connect() as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            con.commit()


def test_loads_in_several_chunks(db: DB) -> None:
    """batch_size smaller than the data: every chunk lands, and a failing load changes nothing."""
    table = db.table()
    storage = db.make(batch_size=1_000, primary_key=["id"])
    n = 2_500
    frame = pl.DataFrame(
        {
            "id": range(n),
            "text": [f'row {i}, "q"' for i in range(n)],
            "x": [i / 4 for i in range(n)],
        }
    )
    storage.store(frame, table, if_exists="replace")
    out = storage.retrieve(table).sort("id")
    assert out.to_dict(as_series=False) == frame.to_dict(as_series=False)
    more = frame.with_columns(pl.col("id") + n)
    storage.store(more, table, if_exists="append")
    assert db.count(table) == 2 * n
    # the last chunk repeats a stored key: the whole load is rolled back
    clash = more.with_columns(pl.col("id") + n).with_columns(
        pl.when(pl.col("id") == 3 * n - 1).then(0).otherwise(pl.col("id")).alias("id")
    )
    with pytest.raises(StorageError, match="constraint violation"):
        storage.store(clash, table, if_exists="append")
    assert db.count(table) == 2 * n
