"""DatabaseSource against real PostgreSQL, MariaDB and SQLite (tables made and dropped per test)."""

from __future__ import annotations

import json
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from data_pipeline.core.errors import ConfigError, IngestionConnectionError, InputNotFoundError
from data_pipeline.core.sql.params import bind
from data_pipeline.ingestion._common import KEY_HASH, key_hashes
from data_pipeline.ingestion.database import DatabaseSource
from tests.conftest import require_service

PG = {
    "db_type": "postgresql",
    "host": "127.0.0.1",
    "port": 5432,
    "database": "test",
    "username": "postgres",
}
MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"


def _name() -> str:
    return f"dp_types_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def pg_table() -> Iterator[str]:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    name = _name()
    with psycopg.connect(
        "host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True
    ) as conn:
        conn.execute(
            f"""CREATE TABLE {name} (id int PRIMARY KEY, amount numeric(12,2), ts timestamp,
            tstz timestamptz, d date, flag boolean, txt text, doc jsonb, raw bytea, score double precision)"""
        )
        conn.execute(
            f"""INSERT INTO {name} VALUES
            (1, 12345.67, '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05+02', '2024-01-02', true,
             'héllo', '{{"a": 1}}', '\\x00ff', 1.5),
            (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
            (3, -0.01, '1999-12-31 23:59:59', '1999-12-31 23:59:59+00', '1999-12-31', false, 'x', '[]', '', -2)"""
        )
        try:
            yield name
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def maria_table() -> Iterator[str]:
    require_service("MariaDB", "127.0.0.1", 3306)
    import pymysql

    name = _name()
    conn = pymysql.connect(
        host="127.0.0.1", port=3306, user="root", database="test", autocommit=True
    )
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"""CREATE TABLE {name} (id INT PRIMARY KEY, amount DECIMAL(12,2), ts DATETIME(6), d DATE,
                flag BOOLEAN, txt TEXT, doc JSON, raw BLOB, score DOUBLE)"""
            )
            cur.execute(
                f"""INSERT INTO {name} VALUES
                (1, 12345.67, '2024-01-02 03:04:05.123456', '2024-01-02', 1, 'héllo', '{{"a": 1}}', x'00ff', 1.5),
                (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
                (3, -0.01, '1999-12-31 23:59:59', '1999-12-31', 0, 'x', '[]', '', -2)"""
            )
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {name}")
        conn.close()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    path = tmp_path / "test.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, amount REAL, ts TIMESTAMP, d DATE, flag BOOLEAN, txt TEXT, raw BLOB)"
    )
    conn.executemany(
        "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (1, 1.5, "2024-01-02 03:04:05", "2024-01-02", 1, "héllo", b"\x00\xff"),
            (2, None, None, None, None, None, None),
            (3, -2.0, "1999-12-31 23:59:59", "1999-12-31", 0, "x", b""),
        ]
        + [(i, float(i), None, None, 1, f"r{i}", None) for i in range(4, 101)],
    )
    conn.commit()
    conn.close()
    return str(path)


# -- PostgreSQL -----------------------------------------------------------------------------


def test_postgres_types_by_keys(pg_table: str) -> None:
    src = DatabaseSource(name="pg", config={**PG, "password": "unused-pass-123", "table": pg_table})
    out = src.ingest().sort("id")
    schema = out.schema
    assert schema["amount"] == pl.Decimal(12, 2)
    assert schema["ts"] == pl.Datetime("us")
    assert schema["tstz"] == pl.Datetime("us", "UTC")
    assert schema["d"] == pl.Date and schema["flag"] == pl.Boolean
    assert schema["raw"] == pl.Binary and schema["doc"] == pl.String
    first, nulls, _ = out.to_dicts()
    assert first["amount"] == Decimal("12345.67")
    assert first["ts"] == datetime(2024, 1, 2, 3, 4, 5, 123456)
    assert first["tstz"] == datetime(2024, 1, 2, 1, 4, 5, tzinfo=timezone.utc)
    assert first["d"] == date(2024, 1, 2) and first["flag"] is True
    assert (
        first["txt"] == "héllo"
        and json.loads(first["doc"]) == {"a": 1}
        and first["raw"] == b"\x00\xff"
    )
    assert all(v is None for k, v in nulls.items() if k != "id")
    meta = src.get_metadata()
    assert meta["details"]["engine"] == "adbc"
    assert meta["rows_out"] == 3
    assert "unused-pass-123" not in json.dumps(meta)


def test_postgres_query_with_bound_params(pg_table: str) -> None:
    src = DatabaseSource(
        name="pg",
        config={
            **PG,
            "query": f"SELECT id, txt FROM {pg_table} WHERE id >= :low AND txt <> :skip ORDER BY id",
            "params": {"low": 1, "skip": "x'; DROP TABLE x; --"},
        },
    )
    assert src.ingest()["id"].to_list() == [1, 3]


def test_postgres_table_columns_where_chunks(pg_table: str) -> None:
    src = DatabaseSource(
        name="pg",
        config={
            "url": "postgresql://postgres@127.0.0.1:5432/test",
            "table": pg_table,
            "columns": ["id", "amount"],
            "where": "id <= :top",
            "params": {"top": 3},
            "chunk_size": 2,
        },
    )
    batches = src.ingest()
    assert isinstance(batches, Iterator)
    frames = list(batches)
    assert [f.height for f in frames] == [2, 1]
    assert pl.concat(frames).sort("id")["id"].to_list() == [1, 2, 3]
    assert frames[0].columns == ["id", "amount"]
    assert src.get_metadata()["rows_out"] == 3


@pytest.mark.parametrize("engine", ["connectorx", "sqlalchemy"])
def test_postgres_other_engines(pg_table: str, engine: str) -> None:
    out = DatabaseSource(name="pg", config={**PG, "table": pg_table, "engine": engine}).ingest()
    assert out.height == 3
    assert out.sort("id")["amount"].to_list()[0] == Decimal("12345.67")


def test_postgres_missing_table(pg_table: str) -> None:
    with pytest.raises(
        InputNotFoundError, match=r"not found on PostgreSQL at 127\.0\.0\.1:5432/test"
    ):
        DatabaseSource(name="pg", config={**PG, "table": "no_such_table_dp"}).ingest()


def test_connection_error_names_target_not_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = "very-secret-pw-42"
    for config in (
        {**PG, "port": port, "password": secret, "table": "t"},
        {"url": f"mysql+pymysql://root:{secret}@127.0.0.1:{port}/test", "table": "t"},
        {
            "url": f"postgresql://postgres:{secret}@127.0.0.1:{port}/test",
            "table": "t",
            "engine": "sqlalchemy",
        },
    ):
        src = DatabaseSource(name="db", config=config)
        with pytest.raises(IngestionConnectionError, match=f"127.0.0.1:{port}/test") as info:
            src.ingest()
        assert secret not in str(info.value)
        assert secret not in json.dumps(src.get_metadata())


# -- MariaDB --------------------------------------------------------------------------------


def test_mariadb_types_connectorx(maria_table: str) -> None:
    src = DatabaseSource(name="maria", config={"url": MARIADB_URL, "table": maria_table})
    out = src.ingest().sort("id")
    assert src.get_metadata()["details"]["engine"] == "connectorx"
    first, nulls, last = out.to_dicts()
    assert first["amount"] == Decimal("12345.67") and last["amount"] == Decimal("-0.01")
    assert first["ts"] == datetime(2024, 1, 2, 3, 4, 5, 123456)
    assert first["d"] == date(2024, 1, 2)
    assert first["flag"] is True and last["flag"] is False  # BOOLEAN is TINYINT(1): cast back
    assert first["txt"] == "héllo" and json.loads(first["doc"]) == {"a": 1}
    assert first["raw"] == b"\x00\xff"
    assert all(v is None for k, v in nulls.items() if k != "id")


def test_mariadb_params_use_the_typed_driver(maria_table: str) -> None:
    src = DatabaseSource(
        name="maria",
        config={
            "db_type": "mariadb",
            "host": "127.0.0.1",
            "database": "test",
            "username": "root",
            "table": maria_table,
            "columns": ["id", "amount", "txt"],
            "where": "txt = :t",
            "params": {"t": "héllo"},
        },
    )
    out = src.ingest()
    assert src.get_metadata()["details"]["engine"] == "driver"
    assert out.to_dicts() == [{"id": 1, "amount": Decimal("12345.67"), "txt": "héllo"}]
    assert out.schema["id"] == pl.Int32  # INT, as stored
    assert out.schema["amount"].scale == 2  # type: ignore[attr-defined]


def test_mariadb_chunks(maria_table: str) -> None:
    for params in ({}, {"x": 0}):
        src = DatabaseSource(
            name="maria",
            config={
                "url": MARIADB_URL,
                "query": f"SELECT id FROM {maria_table} WHERE id > {':x' if params else '0'} ORDER BY id",
                "params": params,
                "chunk_size": 2,
                "output": "arrow",
            },
        )
        batches = list(src.ingest())
        assert all(isinstance(b, pa.Table) for b in batches)
        assert [b.num_rows for b in batches] == [2, 1]


@pytest.fixture
def maria_flags() -> Iterator[str]:
    require_service("MariaDB", "127.0.0.1", 3306)
    import pymysql

    name = _name()
    conn = pymysql.connect(
        host="127.0.0.1", port=3306, user="root", database="test", autocommit=True
    )
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE TABLE {name} (id INT PRIMARY KEY, flag BOOLEAN, lvl TINYINT(1), n TINYINT)"
            )
            cur.execute(f"INSERT INTO {name} VALUES (1, 1, 5, 1), (2, NULL, 0, 0), (3, 0, 1, 1)")
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {name}")
        conn.close()


@pytest.mark.parametrize(
    "extra", [{}, {"engine": "sqlalchemy"}, {"chunk_size": 2}], ids=["cx", "sa", "chunks"]
)
def test_mariadb_tinyint1_as_bool(maria_flags: str, extra: dict[str, Any]) -> None:
    src = DatabaseSource(name="maria", config={"url": MARIADB_URL, "table": maria_flags, **extra})
    out = src.ingest()
    frames = list(out) if "chunk_size" in extra else [out]
    for frame in frames:
        # flag: TINYINT(1) with 0/1/NULL -> boolean; lvl: TINYINT(1) holding 5 -> kept integer;
        # n: plain TINYINT -> integer
        assert frame.schema["flag"] == pl.Boolean
        assert frame.schema["lvl"].is_integer() and frame.schema["n"].is_integer()
    whole = pl.concat(frames).sort("id")
    assert whole["flag"].to_list() == [True, None, False]
    assert whole["lvl"].to_list() == [5, 0, 1]


def test_mariadb_tinyint1_as_bool_off(maria_flags: str) -> None:
    src = DatabaseSource(
        name="maria",
        config={"url": MARIADB_URL, "table": maria_flags, "mysql_tinyint1_as_bool": False},
    )
    out = src.ingest().sort("id")
    assert out.schema["flag"].is_integer()
    assert out["flag"].to_list() == [1, None, 0]


# -- SQLite ---------------------------------------------------------------------------------


def test_sqlite_types_and_paths(sqlite_db: str) -> None:
    fast = DatabaseSource(name="lite", config={"url": f"sqlite:///{sqlite_db}", "table": "items"})
    out = fast.ingest().sort("id")
    assert fast.get_metadata()["details"]["engine"] == "connectorx"
    assert out.height == 100
    first = out.row(0, named=True)
    assert first["ts"] == datetime(2024, 1, 2, 3, 4, 5) and first["d"] == date(2024, 1, 2)
    assert first["flag"] is True and first["raw"] == b"\x00\xff" and first["txt"] == "héllo"
    assert all(v is None for k, v in out.row(1, named=True).items() if k != "id")
    bound = DatabaseSource(
        name="lite",
        config={
            "db_type": "sqlite",
            "database": sqlite_db,
            "query": "SELECT id, txt FROM items WHERE id < :n ORDER BY id",
            "params": {"n": 4},
        },
    )
    assert bound.ingest().to_dicts() == [
        {"id": 1, "txt": "héllo"},
        {"id": 2, "txt": None},
        {"id": 3, "txt": "x"},
    ]


@pytest.mark.parametrize("params", [{}, {"low": 0}])
def test_sqlite_chunks(sqlite_db: str, params: dict[str, Any]) -> None:
    src = DatabaseSource(
        name="lite",
        config={
            "url": f"sqlite:///{sqlite_db}",
            "table": "items",
            "columns": ["id"],
            "where": "id > :low" if params else None,
            "params": params,
            "chunk_size": 30,
        },
    )
    sizes = [b.height for b in src.ingest()]
    assert sizes == [30, 30, 30, 10]


def test_sqlite_incremental(sqlite_db: str, tmp_path: Path) -> None:
    config = {
        "url": f"sqlite:///{sqlite_db}",
        "table": "items",
        "columns": ["id", "txt"],
        "incremental": {"cursor_column": "id", "state_path": str(tmp_path / "s.json")},
    }
    assert DatabaseSource(name="lite", config=config).ingest().height == 100
    assert DatabaseSource(name="lite", config=config).ingest().height == 0
    conn = sqlite3.connect(sqlite_db)
    conn.execute("INSERT INTO items (id, txt) VALUES (101, 'new'), (102, 'newer')")
    conn.commit()
    conn.close()
    assert DatabaseSource(name="lite", config=config).ingest()["id"].to_list() == [101, 102]


def test_sqlite_missing_table(sqlite_db: str) -> None:
    with pytest.raises(InputNotFoundError, match="nope"):
        DatabaseSource(
            name="lite", config={"url": f"sqlite:///{sqlite_db}", "table": "nope"}
        ).ingest()


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="exactly one of 'query' or 'table'"):
        DatabaseSource(name="x", config={"url": "sqlite://", "query": "select 1", "table": "t"})
    with pytest.raises(ConfigError, match="url"):
        DatabaseSource(name="x", config={"table": "t"})
    with pytest.raises(ConfigError, match="db_type"):
        DatabaseSource(name="x", config={"db_type": "oracle9", "host": "h", "table": "t"})
    with pytest.raises(ConfigError, match="params has no 'x'"):
        bind("select :x", {}, "numeric")


def test_quoted_identifiers(sqlite_db: str) -> None:
    src = DatabaseSource(
        name="lite",
        config={"url": f"sqlite:///{sqlite_db}", "table": 'items"; DROP TABLE items; --'},
    )
    sql, _ = src.build_query()
    assert sql == 'SELECT * FROM "items""; DROP TABLE items; --"'
    with pytest.raises(InputNotFoundError):
        src.ingest()
    assert sqlite3.connect(sqlite_db).execute("SELECT count(*) FROM items").fetchone() == (100,)


@pytest.mark.parametrize("engine", ["auto", "sqlalchemy"])
def test_mariadb_wrong_password(maria_table: str, engine: str) -> None:
    from data_pipeline.core.errors import IngestionAuthenticationError

    secret = "wrong-pw-9876"
    src = DatabaseSource(
        name="maria",
        config={
            "url": f"mysql+pymysql://root:{secret}@127.0.0.1:3306/test",
            "table": maria_table,
            "engine": engine,
        },
    )
    with pytest.raises(
        IngestionAuthenticationError, match=r"127\.0\.0\.1:3306/test as user 'root' refused"
    ) as info:
        src.ingest()
    assert secret not in str(info.value)
    assert secret not in json.dumps(src.get_metadata())


def test_duckdb_file(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE sales AS SELECT range AS id, range * 1.5::DECIMAL(10,2) AS amount,"
            " TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_days(range::INTEGER) AS ts FROM range(10)"
        )
    src = DatabaseSource(
        name="wh",
        config={
            "db_type": "duckdb",
            "database": str(path),
            "table": "sales",
            "where": "id >= :low",
            "params": {"low": 7},
        },
    )
    out = src.ingest()
    assert src.get_metadata()["details"]["engine"] == "duckdb"
    assert out["id"].to_list() == [7, 8, 9]
    assert out.schema["ts"].time_zone in ("UTC", "Etc/UTC")  # type: ignore[union-attr]
    chunks = DatabaseSource(
        name="wh",
        config={
            "url": f"duckdb:///{path}",
            "query": "SELECT id FROM sales ORDER BY id",
            "chunk_size": 4,
        },
    ).ingest()
    assert [c.height for c in chunks] == [4, 4, 2]


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_intervals_read_as_durations(tmp_path: Path, chunk_size: int | None) -> None:
    """PostgreSQL and DuckDB intervals come back as Durations (polars refuses Arrow's
    month_day_nano); a day counts 24 hours. Oracle: Python timedeltas written by hand."""
    from datetime import timedelta

    import duckdb

    expected = [timedelta(days=3, hours=2, microseconds=1), timedelta(days=-1), None]
    rows = "(0, '3 days 2 hours 1 microsecond'), (1, '-1 day'), (2, NULL)"
    path = tmp_path / "iv.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE TABLE iv AS SELECT i, d::INTERVAL AS d FROM (VALUES {rows}) t(i, d)")
    configs = [
        {"db_type": "duckdb", "database": str(path), "query": "SELECT d FROM iv ORDER BY i"},
        {**PG, "query": f"SELECT d::interval AS d FROM (VALUES {rows}) t(i, d) ORDER BY i"},
    ]
    for config in configs:
        out = DatabaseSource(name="iv", config={**config, "chunk_size": chunk_size}).ingest()
        frame = out if isinstance(out, pl.DataFrame) else pl.concat(list(out))
        assert frame.schema["d"] == pl.Duration("us")
        assert frame["d"].to_list() == expected


# -- incremental with a query and a lookback window ------------------------------------------


@pytest.fixture
def pg_events() -> Iterator[tuple[str, Any]]:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    name = f"dp_events_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(
        "host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True
    ) as conn:
        conn.execute(
            f"CREATE TABLE {name} (id int PRIMARY KEY, updated_at timestamptz NOT NULL, kind text)"
        )
        conn.execute(
            f"""INSERT INTO {name} VALUES (1, '2024-05-01 10:00:00+00', 'a'),
            (2, '2024-05-01 10:01:00+00', 'a'), (3, '2024-05-01 10:02:00+00', 'a')"""
        )
        try:
            yield name, conn
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_postgres_incremental_query_lookback(
    pg_events: tuple[str, Any], tmp_path: Path, chunk_size: int | None
) -> None:
    """Late rows inside the lookback window are read once; rows outside it are not re-read."""
    table, conn = pg_events
    config: dict[str, Any] = {
        **PG,
        "query": f"SELECT id, updated_at, kind FROM {table} WHERE kind <> :skip",
        "params": {"skip": "hidden"},
        "chunk_size": chunk_size,
        "incremental": {
            "cursor_column": "updated_at",
            "primary_key": "id",
            "lookback": 120,
            "state_path": str(tmp_path / "events.json"),
        },
    }

    def run() -> list[int]:
        out = DatabaseSource(name="events", config=config).ingest()
        if chunk_size:
            frames = list(out)
            assert all(f.height <= chunk_size for f in frames)
            out = pl.concat(frames) if frames else pl.DataFrame({"id": []})
        return [int(i) for i in out["id"].to_list()]

    assert run() == [1, 2, 3]
    assert run() == []  # the window is re-read, every row in it was delivered already
    conn.execute(
        f"""INSERT INTO {table} VALUES
        (4, '2024-05-01 10:01:30+00', 'a'),   -- committed late, inside the 2-minute window
        (5, '2024-05-01 10:05:00+00', 'a'),   -- new
        (6, '2024-05-01 10:06:00+00', 'hidden'),  -- filtered out by the query's bound param
        (7, '2024-05-01 09:00:00+00', 'a')    -- older than the window: not read again"""
    )
    assert run() == [4, 5]
    assert run() == []
    conn.execute(f"UPDATE {table} SET updated_at = '2024-05-01 10:07:00+00' WHERE id = 2")
    assert run() == [2]  # a new version of a row (new cursor value) is read again
    state = json.loads((tmp_path / "events.json").read_text())
    assert state["last_value"] == {"datetime": "2024-05-01T10:07:00+00:00"}
    assert "boundary_rows" not in state  # the delivered keys live in the Parquet sidecar
    keys = pl.read_parquet(tmp_path / state["delivered_keys"]["file"])
    assert sorted(keys[KEY_HASH].to_list()) == sorted(
        key_hashes(pl.DataFrame({"id": [2, 5]}), ["id"]).to_list()
    )


def test_postgres_incremental_query_integer_cursor(pg_table: str, tmp_path: Path) -> None:
    config: dict[str, Any] = {
        **PG,
        "query": f"SELECT id, txt FROM {pg_table};",
        "incremental": {"cursor_column": "id", "state_path": str(tmp_path / "s.json")},
    }
    src = DatabaseSource(name="pg", config=config)
    assert src.build_query(2)[0] == (
        f"SELECT * FROM (SELECT id, txt FROM {pg_table}) AS _dp_query"
        ' WHERE "id" > :_dp_last_value ORDER BY "id"'
    )
    assert src.ingest()["id"].to_list() == [1, 2, 3]
    assert DatabaseSource(name="pg", config=config).ingest().height == 0


def test_incremental_config_errors() -> None:
    with pytest.raises(ConfigError, match="'lookback' needs 'primary_key'"):
        DatabaseSource(
            name="x",
            config={
                "url": "sqlite://",
                "table": "t",
                "incremental": {"cursor_column": "ts", "lookback": 60},
            },
        )


def test_sqlite_incremental_table_primary_key_keeps_ties(tmp_path: Path) -> None:
    """With a primary key, a row committed late with the last cursor value is still read."""
    path = tmp_path / "v.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, version INTEGER, body TEXT)")
        conn.execute("INSERT INTO docs VALUES (1, 1, 'a'), (2, 2, 'b')")
    config = {
        "url": f"sqlite:///{path}",
        "table": "docs",
        "incremental": {
            "cursor_column": "version",
            "primary_key": ["id"],
            "state_path": str(tmp_path / "s.json"),
        },
    }
    assert DatabaseSource(name="docs", config=config).ingest()["id"].to_list() == [1, 2]
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO docs VALUES (3, 2, 'late tie'), (4, 3, 'new')")
    src = DatabaseSource(name="docs", config=config)
    assert src.ingest()["id"].to_list() == [3, 4]
    assert src.get_metadata()["details"]["duplicates_dropped"] == 1
    assert DatabaseSource(name="docs", config=config).ingest().height == 0


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_postgres_late_rows_at_the_boundary_over_three_runs(
    tmp_path: Path, chunk_size: int | None
) -> None:
    """Late rows at the boundary (composite key, tied timestamps) are neither lost nor doubled."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    table = f"dp_late_{uuid.uuid4().hex[:10]}"
    state = tmp_path / "late.json"
    config: dict[str, Any] = {
        **PG,
        "table": table,
        "chunk_size": chunk_size,
        "incremental": {
            "cursor_column": "updated_at",
            "primary_key": ["tenant", "id"],
            "lookback": 300,
            "state_path": str(state),
        },
    }

    def run() -> list[tuple[str, int]]:
        out = DatabaseSource(name="late", config=config).ingest()
        frames = list(out) if chunk_size else [out]
        return [(r["tenant"], r["id"]) for f in frames for r in f.iter_rows(named=True)]

    with psycopg.connect(
        "host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True
    ) as conn:
        conn.execute(
            f"CREATE TABLE {table} (tenant text, id int, updated_at timestamptz NOT NULL,"
            " PRIMARY KEY (tenant, id))"
        )
        try:
            conn.execute(
                f"""INSERT INTO {table} VALUES ('a', 1, '2024-05-01 10:00:00+00'),
                ('b', 1, '2024-05-01 10:04:00+00'), ('a', 2, '2024-05-01 10:05:00+00')"""
            )
            delivered = run()
            assert delivered == [("a", 1), ("b", 1), ("a", 2)]
            # late rows: one tied with the last value, one inside the window; one new row
            conn.execute(
                f"""INSERT INTO {table} VALUES ('b', 2, '2024-05-01 10:05:00+00'),
                ('c', 1, '2024-05-01 10:03:00+00'), ('a', 3, '2024-05-01 10:09:00+00')"""
            )
            second = run()
            assert sorted(second) == [("a", 3), ("b", 2), ("c", 1)]
            delivered += second
            # the window moved to 10:04; a late row inside it, a row older than it, an update
            conn.execute(
                f"""INSERT INTO {table} VALUES ('c', 2, '2024-05-01 10:06:00+00'),
                ('c', 3, '2024-05-01 10:01:00+00')"""
            )
            conn.execute(
                f"UPDATE {table} SET updated_at = '2024-05-01 10:10:00+00'"
                " WHERE tenant = 'b' AND id = 1"
            )
            third = run()
            assert sorted(third) == [("b", 1), ("c", 2)]  # ('c', 3) is older than the window
            delivered += third
            assert run() == []
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    assert len(set(delivered)) == len(delivered) - 1  # only ('b', 1) twice: its new version
    saved = json.loads(state.read_text())
    assert "boundary_rows" not in saved
    assert saved["last_value"] == {"datetime": "2024-05-01T10:10:00+00:00"}
    keys = pl.read_parquet(tmp_path / saved["delivered_keys"]["file"])
    window = pl.DataFrame({"tenant": ["a", "b", "c", "a", "b"], "id": [2, 2, 2, 3, 1]})  # >= 10:05
    assert sorted(keys[KEY_HASH].to_list()) == sorted(
        key_hashes(window, ["tenant", "id"]).to_list()
    )
