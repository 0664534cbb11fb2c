"""DataWarehouseStorage on embedded DuckDB (a file) and on Delta Lake tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
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
from data_pipeline.storage.warehouse import DataWarehouseStorage

DATA = {"id": [1, 2, 3], "name": ["a", "b", "c"], "amount": [1.5, None, 3.0]}


def frame() -> pl.DataFrame:
    return pl.DataFrame(DATA)


def duck(tmp_path: Path, **config: Any) -> DataWarehouseStorage:
    return DataWarehouseStorage(
        name="wh", config={"database": str(tmp_path / "wh.duckdb"), **config}
    )


def sql(tmp_path: Path, query: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_roundtrip_every_engine(tmp_path: Path, make_frame: Any) -> None:
    wh = duck(tmp_path)
    result = wh.store(make_frame(DATA), "sales")
    assert result.rows == 3
    assert result.details["action"] == "created"
    assert_frame_equal(wh.retrieve("sales"), frame())
    # an independent reader sees the same rows
    assert sql(tmp_path, "SELECT count(*), sum(id) FROM sales") == [(3, 6)]


def test_if_exists_modes(tmp_path: Path) -> None:
    wh = duck(tmp_path, default_table="sales", primary_key="id")
    wh.store(frame())
    with pytest.raises(StorageError, match="already exists"):
        wh.store(frame(), if_exists="fail")
    wh.store(pl.DataFrame({"id": [4], "name": ["d"], "amount": [4.0]}), if_exists="append")
    assert wh.retrieve().height == 4
    upsert = pl.DataFrame({"amount": [20.0, 5.0], "id": [2, 5], "name": ["B", "e"]})
    assert wh.store(upsert, if_exists="upsert").details["action"] == "upserted"
    out = wh.retrieve().sort("id")
    assert out["id"].to_list() == [1, 2, 3, 4, 5]
    assert out.filter(pl.col("id") == 2).row(0) == (2, "B", 20.0)
    wh.store(frame().head(1), if_exists="replace")
    assert wh.retrieve().to_dicts() == [{"id": 1, "name": "a", "amount": 1.5}]
    # replace keeps the primary key
    with pytest.raises(StorageError, match=r"constraint violation in table 'sales'"):
        wh.store(frame().head(1), if_exists="append")


def test_upsert_needs_key_and_unique_keys(tmp_path: Path) -> None:
    wh = duck(tmp_path)
    wh.store(frame(), "sales")
    with pytest.raises(ConfigError, match="primary key"):
        wh.store(frame(), "sales", if_exists="upsert")
    dup = pl.DataFrame({"id": [7, 7], "name": ["x", "y"], "amount": [1.0, 2.0]})
    with pytest.raises(StorageError, match=r"duplicate primary key \{'id': 7\}"):
        wh.store(dup, "sales", if_exists="upsert", primary_key=["id"])
    with pytest.raises(StorageSchemaError, match="'nope'"):
        wh.store(frame(), "sales", if_exists="upsert", primary_key=["nope"])
    assert wh.retrieve("sales").height == 3


def test_failed_replace_leaves_table_unchanged(tmp_path: Path) -> None:
    wh = duck(tmp_path, primary_key=["id"])
    wh.store(frame(), "sales")
    bad = pl.DataFrame({"id": [1, 1], "name": ["x", "y"], "amount": [0.0, 0.0]})
    with pytest.raises(StorageError, match="the table is unchanged"):
        wh.store(bad, "sales", if_exists="replace")
    assert_frame_equal(wh.retrieve("sales"), frame())
    wrong_type = pl.DataFrame({"id": ["not a number"], "name": ["x"], "amount": [0.0]})
    with pytest.raises(StorageSchemaError, match="sales"):
        wh.store(wrong_type, "sales", if_exists="append")
    assert_frame_equal(wh.retrieve("sales"), frame())


def test_hostile_table_name_is_stored_verbatim(tmp_path: Path) -> None:
    wh = duck(tmp_path)
    wh.store(frame(), "sales")
    evil = 'x"; DROP TABLE sales; --'
    wh.store(frame(), evil)
    assert sorted(wh.list_tables()) == ["sales", evil]
    assert wh.retrieve(evil).height == 3
    assert wh.retrieve("sales").height == 3


def test_schema_evolution(tmp_path: Path) -> None:
    wh = duck(tmp_path)
    wh.store(frame(), "sales")
    wider = frame().with_columns(region=pl.lit("EU"))
    with pytest.raises(StorageSchemaError, match="'region'"):
        wh.store(wider, "sales", if_exists="append")
    evolving = duck(tmp_path, schema_evolution=True)
    evolving.store(wider, "sales", if_exists="append")
    out = evolving.retrieve("sales")
    assert out.columns == ["id", "name", "amount", "region"]
    assert out["region"].null_count() == 3


def test_schema_query_params_and_missing_table(tmp_path: Path) -> None:
    wh = duck(tmp_path, schema="analytics")
    wh.store(frame(), "sales")
    assert sql(tmp_path, "SELECT count(*) FROM analytics.sales") == [(3,)]
    out = wh.retrieve(
        query="SELECT id FROM analytics.sales WHERE name = :n OR id > :i", params={"n": "a", "i": 2}
    )
    assert sorted(out["id"].to_list()) == [1, 3]
    with pytest.raises(InputNotFoundError, match="'sales'"):
        wh.retrieve("sale")
    with pytest.raises(InputNotFoundError, match="missing table"):
        wh.retrieve(query="SELECT * FROM nowhere")


HOSTILE = "x' OR 1=1 --"


@pytest.mark.parametrize("engine", ["duckdb", "delta"])
def test_query_params_are_named_and_bound_never_written_into_sql(
    tmp_path: Path, engine: str
) -> None:
    """``:name`` and a dict, as DatabaseSource and RelationalDBStorage take them: a value that
    would inject if it were written into the SQL matches only itself; a list is refused."""
    config = {"engine": "delta", "path": str(tmp_path / "d")} if engine == "delta" else {}
    wh = DataWarehouseStorage(name="wh", config=config or {"database": str(tmp_path / "w.db")})
    data = pl.DataFrame({"id": [1, 2, 3], "name": ["a", HOSTILE, "c"]})
    wh.store(data, "t")
    query = "SELECT id FROM t WHERE name = :name AND ':name' <> name ORDER BY id"
    assert wh.retrieve("t", query=query, params={"name": HOSTILE})["id"].to_list() == [2]
    assert wh.retrieve("t", query=query, params={"name": "zz"}).height == 0
    # the oracle: plain Python over the stored rows
    assert [r["id"] for r in data.to_dicts() if r["name"] == HOSTILE] == [2]
    with pytest.raises(ConfigError, match="dict of :name parameters"):
        wh.retrieve("t", query="SELECT id FROM t WHERE id > ?", params=[1])
    with pytest.raises(ConfigError, match="params has no 'lo'"):
        wh.retrieve("t", query="SELECT id FROM t WHERE id > :lo", params={"hi": 1})


def test_query_params_keep_arrow_types(tmp_path: Path) -> None:
    """With params the read stays on Arrow: Int32 stays Int32, a decimal keeps its scale."""
    from decimal import Decimal

    wh = duck(tmp_path)
    data = pl.DataFrame(
        {
            "i": pl.Series([1, -2, 2_000_000_000, None], dtype=pl.Int32),
            "d": pl.Series(
                [Decimal("1.0000000001"), Decimal("-2.5"), None, Decimal("0")],
                dtype=pl.Decimal(20, 10),
            ),
        }
    )
    wh.store(data, "typed")
    plain = wh.retrieve(query="SELECT * FROM typed")
    bound = wh.retrieve(query="SELECT * FROM typed WHERE i IS NULL OR i > :lo", params={"lo": -10})
    for out in (plain, bound):
        assert out.schema["i"] == pl.Int32
        assert out.schema["d"] == pl.Decimal(20, 10)
    assert_frame_equal(bound, data)


def test_duration_round_trips_through_interval(tmp_path: Path) -> None:
    """A Duration stored as a DuckDB INTERVAL comes back as the same Duration (table, query,
    output='arrow'); an interval with months has no length in microseconds and stays one."""
    import datetime as dt

    import pyarrow as pa

    values = [
        dt.timedelta(days=-1, microseconds=1),
        None,
        dt.timedelta(days=100_000, microseconds=7),
    ]
    data = pl.DataFrame({"d": pl.Series(values, dtype=pl.Duration("us"))})
    wh = duck(tmp_path)
    wh.store(data, "dur")
    assert sql(tmp_path, "SELECT typeof(d) FROM dur LIMIT 1") == [("INTERVAL",)]
    assert_frame_equal(wh.retrieve("dur"), data)
    assert wh.retrieve(query="SELECT d FROM dur WHERE d IS NOT NULL")["d"].to_list() == [
        v for v in values if v is not None
    ]
    assert wh.retrieve("dur", output="arrow").schema.field("d").type == pa.duration("us")
    months = wh.retrieve(query="SELECT INTERVAL 1 MONTH AS m", output="arrow")
    assert months.schema.field("m").type == pa.month_day_nano_interval()


def test_memory_database_keeps_data_between_calls() -> None:
    wh = DataWarehouseStorage(name="mem", config={})
    wh.store(frame(), "t")
    wh.store(frame(), "t")
    assert wh.retrieve("t").height == 6
    wh.close()


def test_unopenable_database_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    wh = DataWarehouseStorage(name="wh", config={"database": str(tmp_path / "adir")})
    with pytest.raises(StorageConnectionError, match="adir"):
        wh.store(frame(), "t")


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="path"):
        DataWarehouseStorage(name="d", config={"engine": "delta"})
    with pytest.raises(ConfigError, match="engine"):
        DataWarehouseStorage(name="d", config={"engine": "oracle"})
    with pytest.raises(ConfigError, match="partition_by"):
        DataWarehouseStorage(name="d", config={"partition_by": ["x"]})


def test_delta_tables(tmp_path: Path) -> None:
    wh = DataWarehouseStorage(
        name="lake",
        config={
            "engine": "delta",
            "path": str(tmp_path / "delta"),
            "primary_key": "id",
            "partition_by": ["name"],
        },
    )
    assert wh.store(frame(), "sales").details["action"] == "created"
    assert (tmp_path / "delta" / "sales" / "_delta_log").is_dir()
    assert (tmp_path / "delta" / "sales" / "name=a").is_dir()
    with pytest.raises(StorageError, match="already exists"):
        wh.store(frame(), "sales", if_exists="fail")
    wh.store(pl.DataFrame({"id": [9], "name": ["z"], "amount": [9.0]}), "sales", if_exists="append")
    wh.store(
        pl.DataFrame({"id": [1, 10], "name": ["a", "q"], "amount": [100.0, 10.0]}),
        "sales",
        if_exists="upsert",
    )
    out = wh.retrieve("sales").sort("id")
    assert out["id"].to_list() == [1, 2, 3, 9, 10]
    assert out.filter(pl.col("id") == 1)["amount"].item() == 100.0
    queried = wh.retrieve(
        "sales", query="SELECT id FROM sales WHERE amount > :a ORDER BY id", params={"a": 5.0}
    )
    assert queried["id"].to_list() == [1, 9, 10]
    wh.store(frame().head(1), "sales", if_exists="replace")
    assert wh.retrieve("sales").height == 1
    assert wh.list_tables() == ["sales"]
    with pytest.raises(ConfigError):
        wh.store(frame(), "../outside")
    with pytest.raises(InputNotFoundError):
        wh.retrieve("other")


def test_sqlalchemy_engine_delegates(tmp_path: Path) -> None:
    wh = DataWarehouseStorage(
        name="sa",
        config={
            "engine": "sqlalchemy",
            "url": f"sqlite:///{tmp_path / 'w.sqlite'}",
            "primary_key": "id",
        },
    )
    wh.store(frame(), "sales")
    wh.store(
        pl.DataFrame({"id": [3, 4], "name": ["C", "D"], "amount": [0.0, 4.0]}),
        "sales",
        if_exists="upsert",
    )
    assert wh.retrieve("sales").sort("id")["name"].to_list() == ["a", "b", "C", "D"]
    assert wh.list_tables() == ["sales"]
    assert wh.get_metadata()["rows_out"] == 4
    with pytest.raises(ConfigError, match="url"):
        DataWarehouseStorage(name="sa", config={"engine": "sqlalchemy"})


# -- two storage objects on one DuckDB file, several threads -------------------------------------


@pytest.mark.parametrize("held", [False, True], ids=["per-call", "one-in-with"])
def test_two_storages_on_one_file_from_two_threads(tmp_path: Path, held: bool) -> None:
    """Each thread has its own DataWarehouseStorage on the same file: appends into one shared
    table, an upsert into one keyed table, a replace of its own table, a read back. They used
    to fail now and then: DuckDB's "write-write conflict" (two transactions creating or
    merging into one table) and "Table Function with name python_arrow_scan does not exist"
    (two connections to one file opened and closed at once)."""
    import sys
    import threading

    path = str(tmp_path / "shared.duckdb")
    rounds = 40
    stores = [DataWarehouseStorage(f"wh{k}", {"database": path}) for k in range(2)]
    if held:
        stores[0].__enter__()  # one object keeps the file open; the other calls per call
    failures: list[str] = []
    barrier = threading.Barrier(2)

    def work(k: int) -> None:
        store = stores[k]
        barrier.wait()
        for i in range(rounds):
            try:
                store.store(
                    pl.DataFrame({"t": [k] * 3, "i": [i] * 3}), "shared", if_exists="append"
                )
                store.store(
                    pl.DataFrame({"key": [(k + 1) * 1000 + i, i], "v": [i, k]}),
                    "keyed",
                    if_exists="upsert",
                    primary_key=["key"],
                )
                store.store(pl.DataFrame({"i": [i]}), f"own_{k}", if_exists="replace")
                back = pl.from_arrow(store.retrieve(f"own_{k}", output="arrow"))
                assert back["i"].to_list() == [i]  # type: ignore[index]
            except Exception as exc:  # collected: the test reports them all
                failures.append(f"wh{k} round {i}: {type(exc).__name__}: {exc}"[:300])

    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(before)
        for store in stores:
            store.close()
    assert failures == []
    # the oracle: a fresh DuckDB connection to the file after both objects closed it
    with duckdb.connect(path, read_only=True) as con:
        shared = con.sql("SELECT t, count(*), count(DISTINCT i) FROM shared GROUP BY t ORDER BY t")
        assert shared.fetchall() == [(0, 3 * rounds, rounds), (1, 3 * rounds, rounds)]
        keyed = dict(con.sql("SELECT key, v FROM keyed").fetchall())
        own = {(k + 1) * 1000 + i: i for k in range(2) for i in range(rounds)}
        assert set(keyed) == set(own) | set(range(rounds))
        assert {key: keyed[key] for key in own} == own
        # keys 0.. were upserted by both threads (values 0 and 1): the last writer's value
        assert all(keyed[i] in (0, 1) for i in range(rounds))
        for k in range(2):
            assert con.sql(f"SELECT i FROM own_{k}").fetchall() == [(rounds - 1,)]
