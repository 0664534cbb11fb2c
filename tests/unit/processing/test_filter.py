"""DataFilter on every engine, compared with DuckDB SQL WHERE."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from data_pipeline.core.errors import ColumnNotFoundError, ConfigError
from data_pipeline.processing import DataFilter
from tests.conftest import to_polars
from tests.unit.processing.oracle import assert_same, duck

DATA = {
    "price": [5.0, 20.0, 30.0, None, 12.5, 11.0, 50.0],
    "region": ["north", "south", "east", "north", None, "south", "nörth"],
    "age": [30, None, 50, 22, 41, 35, 60],
    "qty": [1, 2, 3, 4, 5, 6, 7],
    "name": ["Anna", "bob", "Åsa", "anders", "Carl", None, "ann"],
}

CONDITIONS = [
    "price > 10 and region in ('north','south') and age is not null",
    "price > 10",
    "not (price > 10)",
    "region not in ('north', 'east')",
    "price between 11 and 30 or age < 25",
    "qty * price >= 60 and qty % 2 = 1",
    "name like 'A%'",
    "name ilike 'a%' and region is null or age <> 30",
    "region = 'nörth' or price is null",
    "-qty < -5 and abs(price) > 1",
    "lower(name) = 'anna' or length(name) = 3",
    "coalesce(price, 0) = 0",
    "region not in ('north', null) or qty = 7",
    "region in ('south', null)",
    "price = null or qty = 1",
    "true",
]


@pytest.mark.parametrize("condition", CONDITIONS)
def test_condition_matches_duckdb(make_frame: Any, condition: str) -> None:
    native = make_frame(DATA)
    result = DataFilter(name="f", config={"condition": condition}).process(native)
    assert type(result) is type(native)
    expected = duck(f"select * from t where {condition}", t=DATA)
    assert_same(result, expected)


STRUCTURED = [
    (
        [
            {"column": "price", "op": ">", "value": 10},
            {"column": "region", "op": "in", "value": ["north", "south"]},
        ],
        "and",
        "price > 10 and region in ('north', 'south')",
    ),
    (
        [{"column": "age", "op": "is_null"}, {"column": "qty", "op": "between", "value": [6, 7]}],
        "or",
        "age is null or qty between 6 and 7",
    ),
    ([{"column": "name", "op": "starts_with", "value": "an"}], "and", "starts_with(name, 'an')"),
    (
        [
            {"column": "name", "op": "contains", "value": "s"},
            {"column": "region", "op": "ne", "value": "east"},
        ],
        "and",
        "contains(name, 's') and region <> 'east'",
    ),
    (
        [
            {"column": "region", "op": "not_in", "value": ["north"]},
            {"column": "price", "op": "le", "value": 20},
        ],
        "and",
        "region not in ('north') and price <= 20",
    ),
]


@pytest.mark.parametrize(("conditions", "combine", "sql"), STRUCTURED)
def test_structured_matches_duckdb(
    make_frame: Any, conditions: list[dict[str, Any]], combine: str, sql: str
) -> None:
    native = make_frame(DATA)
    result = DataFilter(name="s", config={"conditions": conditions, "combine": combine}).process(
        native
    )
    assert type(result) is type(native)
    assert_same(result, duck(f"select * from t where {sql}", t=DATA))


def test_date_literal(make_frame: Any) -> None:
    import datetime as dt

    data = {"d": [dt.date(2024, 1, 1), dt.date(2024, 2, 1), None], "x": [1, 2, 3]}
    native = make_frame(data)
    result = DataFilter(name="d", config={"condition": "d >= DATE '2024-01-15'"}).process(native)
    assert to_polars(result)["x"].to_list() == [2]


def test_unicode_quoted_column(make_frame: Any) -> None:
    data = {"prix unitaire": [1.0, 2.0, 3.0], "城市": ["東京", "大阪", "東京"]}
    native = make_frame(data)
    cond = '"prix unitaire" > 1 and "城市" = \'東京\''
    result = DataFilter(name="u", config={"condition": cond}).process(native)
    assert_same(result, duck(f"select * from t where {cond}", t=data))


def test_empty_input(make_frame: Any) -> None:
    native = make_frame(pl.DataFrame(DATA).clear())
    result = DataFilter(name="e", config={"condition": "price > 10"}).process(native)
    assert type(result) is type(native)
    assert to_polars(result).height == 0


def test_unknown_column_names_position() -> None:
    f = DataFilter(name="f", config={"condition": "price > 10 and reigon = 'x'"})
    with pytest.raises(ColumnNotFoundError) as info:
        f.process(pl.DataFrame(DATA))
    text = str(info.value)
    assert "unknown column 'reigon'" in text
    assert "position 16" in text
    assert "did you mean 'region'" in text


@pytest.mark.parametrize(
    ("condition", "match"),
    [
        ("price >> 2", "unsupported operator"),
        ("evil(price) > 1", "unsupported function 'evil'"),
        ("price > ", "cannot parse"),
        ("price in (select 1)", "subquery|literal"),
        ("", "non-empty"),
    ],
)
def test_bad_condition_fails_at_construction(condition: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DataFilter(name="bad", config={"condition": condition})


def test_bad_structured_config() -> None:
    with pytest.raises(
        ConfigError, match=r"conditions\[0\].op: unknown operator 'approx'.*\n.*allowed operators"
    ):
        DataFilter(name="b", config={"conditions": [{"column": "a", "op": "approx", "value": 1}]})
    with pytest.raises(ConfigError, match="exactly one"):
        DataFilter(name="b", config={})
    with pytest.raises(ConfigError, match="between"):
        DataFilter(name="b", config={"conditions": [{"column": "a", "op": "between", "value": 1}]})
    f = DataFilter(name="b", config={"conditions": [{"column": "nope", "op": "eq", "value": 1}]})
    with pytest.raises(ColumnNotFoundError, match="unknown column 'nope'"):
        f.process(pl.DataFrame(DATA))


def test_rows_removed_in_metadata() -> None:
    f = DataFilter(name="m", config={"condition": "price > 10"})
    f.process(pl.DataFrame(DATA))
    meta = f.get_metadata()
    assert meta["rows_in"] == 7 and meta["rows_out"] == 5
    assert meta["details"]["rows_removed"] == 2
