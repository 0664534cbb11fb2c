"""DataJoiner on every engine, compared with DuckDB SQL joins."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from data_pipeline.core.errors import ConfigError
from data_pipeline.processing import DataJoiner
from data_pipeline.processing.join import JoinValidationError
from tests.conftest import to_polars
from tests.unit.processing.oracle import assert_same, duck

SALES = {
    "product_id": [1, 1, 2, None, 4, 2],
    "quantity": [5, 2, 1, 3, 8, 6],
    "note": ["a", "b", "c", "d", "e", "f"],
}
PRODUCTS = {
    "product_id": [1, 2, 2, 3, None],
    "category": ["toys", "food", "fööd", "garden", "none"],
    "note": ["p1", "p2", "p2b", "p3", "pn"],
}
UNIQUE_PRODUCTS = {"product_id": [1, 2, 3], "category": ["toys", "food", "garden"]}

SQL = {
    "inner": "select l.product_id, l.quantity, l.note, r.category, r.note as note_right "
    "from l join r using (product_id)",
    "left": "select l.product_id, l.quantity, l.note, r.category, r.note as note_right "
    "from l left join r using (product_id)",
    "right": "select r.product_id, l.quantity, l.note, r.category, r.note as note_right "
    "from l right join r using (product_id)",
    "full": "select coalesce(l.product_id, r.product_id) as product_id, l.quantity, l.note, "
    "r.category, r.note as note_right from l full join r using (product_id)",
    "semi": "select * from l semi join r using (product_id)",
    "anti": "select * from l anti join r using (product_id)",
    "cross": "select l.*, r.product_id as product_id_right, r.category, r.note as note_right "
    "from l cross join r",
}


@pytest.mark.parametrize("how", list(SQL))
def test_join_matches_duckdb(make_frame: Any, how: str) -> None:
    left, right = make_frame(SALES), make_frame(PRODUCTS)
    config: dict[str, Any] = {"how": how}
    if how != "cross":
        config["on"] = "product_id"
    result = DataJoiner(name="j", config=config, right=right).process(left)
    assert type(result) is type(left)
    assert_same(result, duck(SQL[how], l=SALES, r=PRODUCTS))


@pytest.mark.parametrize("how", ["inner", "left", "right", "full", "semi", "anti"])
def test_left_on_right_on(make_frame: Any, how: str) -> None:
    right_data = {"pid": PRODUCTS["product_id"], "category": PRODUCTS["category"]}
    left, right = make_frame(SALES), make_frame(right_data)
    joiner = DataJoiner(
        name="j", config={"how": how, "left_on": ["product_id"], "right_on": ["pid"]}
    )
    result = joiner.set_right(right).process(left)
    assert type(result) is type(left)
    cols = {
        "inner": "l.*, r.category",
        "left": "l.*, r.category",
        "right": "l.quantity, l.note, r.pid, r.category",
        "full": "l.*, r.pid, r.category",
        "semi": "l.*",
        "anti": "l.*",
    }[how]
    sql_how = {"semi": "semi", "anti": "anti"}.get(how, how)
    expected = duck(
        f"select {cols} from l {sql_how} join r on l.product_id = r.pid", l=SALES, r=right_data
    )
    assert_same(result, expected)


def test_output_columns_match_result() -> None:
    for how in ["inner", "left", "right", "full", "semi", "anti", "cross"]:
        config: dict[str, Any] = {"how": how}
        if how != "cross":
            config["on"] = "product_id"
        joiner = DataJoiner(name="j", config=config, right=pl.DataFrame(PRODUCTS))
        out = joiner.process(pl.DataFrame(SALES))
        assert joiner.output_columns(list(SALES)) == out.columns, how
        if how == "cross":
            continue
        renamed = pl.DataFrame(PRODUCTS).rename({"product_id": "pid"})
        keyed = DataJoiner(
            name="k", config={"how": how, "left_on": "product_id", "right_on": "pid"}, right=renamed
        )
        assert keyed.output_columns(list(SALES)) == keyed.process(pl.DataFrame(SALES)).columns, how


def test_right_side_from_another_engine_and_callable() -> None:
    left = pl.DataFrame(SALES).to_pandas()
    joiner = DataJoiner(
        name="j", config={"on": "product_id"}, right=lambda: pl.DataFrame(UNIQUE_PRODUCTS)
    )
    result = joiner.process(left)
    assert type(result) is type(left)
    expected = duck(
        "select l.*, r.category from l join r using (product_id)", l=SALES, r=UNIQUE_PRODUCTS
    )
    assert_same(result, expected)


def test_validate_many_to_one_fails_on_duplicates(make_frame: Any) -> None:
    joiner = DataJoiner(
        name="j",
        config={"how": "left", "on": "product_id", "validate": "many_to_one"},
        right=make_frame(PRODUCTS),
    )
    with pytest.raises(
        JoinValidationError,
        match=r"right side has duplicate join keys, e.g. product_id=2(\.0)? \(2 rows\)",
    ):
        joiner.process(make_frame(SALES))
    ok = DataJoiner(
        name="ok",
        config={"how": "left", "on": "product_id", "validate": "many_to_one"},
        right=make_frame(UNIQUE_PRODUCTS),
    )
    assert to_polars(ok.process(make_frame(SALES))).height == 6
    with pytest.raises(JoinValidationError, match="left side"):
        DataJoiner(
            name="o",
            config={"on": "product_id", "validate": "one_to_one"},
            right=make_frame(UNIQUE_PRODUCTS),
        ).process(make_frame(SALES))


def test_empty_inputs(make_frame: Any) -> None:
    empty = make_frame(pl.DataFrame(SALES).clear())
    result = DataJoiner(name="e", config={"on": "product_id"}, right=make_frame(PRODUCTS)).process(
        empty
    )
    assert type(result) is type(empty)
    assert to_polars(result).height == 0


def test_unicode_keys(make_frame: Any) -> None:
    left_data = {"città": ["Zürich", "Tōkyō", "Zürich"], "n": [1, 2, 3]}
    right_data = {"città": ["Zürich", "Tōkyō"], "país": ["CH", "JP"]}
    result = DataJoiner(name="u", config={"on": "città"}, right=make_frame(right_data)).process(
        make_frame(left_data)
    )
    expected = duck('select l.*, r."país" from l join r using ("città")', l=left_data, r=right_data)
    assert_same(result, expected)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"how": "outer", "on": "k"}, "how"),
        ({"how": "inner"}, "needs 'on'"),
        ({"on": "k", "left_on": "k", "right_on": "k"}, "not both"),
        ({"how": "cross", "on": "k"}, "cross join takes no keys"),
        ({"left_on": ["a", "b"], "right_on": ["a"]}, "as many"),
        ({"on": "k", "validate": "1:1"}, "validate"),
    ],
)
def test_bad_config(config: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DataJoiner(name="bad", config=config)


def test_missing_right_and_missing_keys() -> None:
    with pytest.raises(ConfigError, match="right side of the join is not set"):
        DataJoiner(name="j", config={"on": "product_id"}).process(pl.DataFrame(SALES))
    joiner = DataJoiner(name="j", config={"on": "product_id"}, right=pl.DataFrame({"pid": [1]}))
    with pytest.raises(KeyError, match="right-side column 'product_id' not found"):
        joiner.process(pl.DataFrame(SALES))


def test_right_side_from_a_source_and_a_storage_table(tmp_path: Any) -> None:
    filesystem = pytest.importorskip("data_pipeline.ingestion.filesystem")
    warehouse = pytest.importorskip("data_pipeline.storage.warehouse")
    path = tmp_path / "products.parquet"
    pl.DataFrame(UNIQUE_PRODUCTS).write_parquet(path)
    source = filesystem.FileSystemSource(name="products", config={"path": str(path)})
    expected = duck(
        "select l.*, r.category from l join r using (product_id)", l=SALES, r=UNIQUE_PRODUCTS
    )
    from_source = DataJoiner(name="s", config={"on": "product_id"}, right=source)
    assert_same(from_source.process(pl.DataFrame(SALES)), expected)

    storage = warehouse.DataWarehouseStorage(
        name="wh", config={"database": str(tmp_path / "wh.duckdb")}
    )
    storage.store(pl.DataFrame(UNIQUE_PRODUCTS), "products", if_exists="replace")
    from_table = DataJoiner(
        name="t", config={"on": "product_id", "right_table": "products"}, right=storage
    )
    assert_same(from_table.process(pl.DataFrame(SALES).to_pandas()), expected)
    with pytest.raises(ConfigError, match="cannot use a object"):
        DataJoiner(name="x", config={"on": "product_id"}, right=object()).process(
            pl.DataFrame(SALES)
        )


@pytest.mark.parametrize("how", ["left", "right", "full"])
def test_numpy_pandas_columns_that_gain_nulls_become_nullable(how: str) -> None:
    """numpy int64/bool columns of the unmatched side come back as the nullable Int64/boolean
    (not float64 with NaN, object): the logical type every other engine gives."""
    import pandas as pd

    left = pd.DataFrame({"k": [1, 2], "a": [10, 20], "t": [True, False]})
    right = pd.DataFrame({"k": [2, 3], "b": [7, 8], "u": [False, True]})
    result = DataJoiner(name="j", config={"how": how, "on": "k"}, right=right).process(left)
    dtypes = {c: str(d) for c, d in result.dtypes.items()}
    nullable = {"left": ("b", "u"), "right": ("a", "t"), "full": ("a", "t", "b", "u")}[how]
    assert {c: dtypes[c] for c in nullable} == {
        c: "Int64" if c in "ab" else "boolean" for c in nullable
    }
    kept = {c: dtypes[c] for c in ("a", "t", "b", "u") if c not in nullable}
    assert kept == {c: "int64" if c in "ab" else "bool" for c in kept}
    assert (
        result.sort_values("k", na_position="last").to_dict("list")["k"]
        == {"left": [1, 2], "right": [2, 3], "full": [1, 2, 3]}[how]
    )
