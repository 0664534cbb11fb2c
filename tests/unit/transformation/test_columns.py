"""ColumnRenamer and ColumnSelector on every engine."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

from data_pipeline.core.errors import ColumnNotFoundError, ConfigError, SchemaError
from data_pipeline.transformation.columns import ColumnRenamer, ColumnSelector, snake_case
from tests.conftest import to_polars
from tests.unit.transformation.conftest import assert_same


def data() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [1, 2],
            "Product ID": ["p1", "p2"],
            "unitPrice": [1.5, None],
            "Qty": [3, 4],
            "prix été": [1.0, 2.0],
            "day": [dt.date(2024, 1, 1), dt.date(2024, 1, 2)],
            "ok": [True, False],
        }
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Product ID", "product_id"),
        ("unitPrice", "unit_price"),
        ("HTTPServer", "http_server"),
        ("  prix été ", "prix_été"),
        ("a--b__c", "a_b_c"),
    ],
)
def test_snake_case(name: str, expected: str) -> None:
    assert snake_case(name) == expected


def test_rename_mapping_and_function(make_frame: Any, check_type: Any) -> None:
    frame = make_frame(data())
    renamer = ColumnRenamer(
        name="r", config={"mapping": {"Qty": "quantity"}, "function": "snake_case"}
    )
    result = renamer.transform(frame)
    check_type(frame, result)
    expected = data().rename(
        {
            "Product ID": "product_id",
            "unitPrice": "unit_price",
            "Qty": "quantity",
            "prix été": "prix_été",
        }
    )
    assert_same(result, expected)
    assert renamer.output_columns(data().columns) == expected.columns


@pytest.mark.parametrize("function", ["lower", "upper", "strip"])
def test_rename_functions(make_frame: Any, function: str) -> None:
    df = pl.DataFrame({" Ab ": [1], "cD": [2]})
    result = ColumnRenamer(name="r", config={"function": function}).transform(make_frame(df))
    func = {"lower": str.lower, "upper": str.upper, "strip": str.strip}[function]
    assert to_polars(result).columns == [func(c) for c in df.columns]


def test_rename_errors(make_frame: Any) -> None:
    with pytest.raises(ConfigError, match="'mapping'"):
        ColumnRenamer(name="r", config={})
    with pytest.raises(ConfigError, match="'snake_case'"):
        ColumnRenamer(name="r", config={"function": "kebab"})
    with pytest.raises(ColumnNotFoundError) as info:
        ColumnRenamer(name="r", config={"mapping": {"qty": "quantity"}}).transform(
            make_frame(data())
        )
    assert "'qty'" in str(info.value) and "'Qty'" in str(info.value)
    # non-strict: a missing mapped column is ignored
    out = ColumnRenamer(name="r", config={"mapping": {"qty": "q"}, "strict": False}).transform(
        make_frame(data())
    )
    assert to_polars(out).columns == data().columns
    with pytest.raises(SchemaError, match="'a b', 'a_b' -> 'a_b'"):
        ColumnRenamer(name="r", config={"function": "snake_case"}).transform(
            make_frame(pl.DataFrame({"a b": [1], "a_b": [2]}))
        )
    with pytest.raises(SchemaError, match="same name"):
        ColumnRenamer(name="r", config={"mapping": {"Qty": "id"}}).transform(make_frame(data()))


def test_select_by_name_in_given_order(make_frame: Any, check_type: Any) -> None:
    frame = make_frame(data())
    result = ColumnSelector(name="s", config={"include": ["Qty", "id", "prix été"]}).transform(
        frame
    )
    check_type(frame, result)
    assert_same(result, data().select("Qty", "id", "prix été"))
    alias = ColumnSelector(name="s", config={"columns": ["Qty"]}).transform(make_frame(data()))
    assert to_polars(alias).columns == ["Qty"]


def test_select_regex_dtypes_exclude(make_frame: Any) -> None:
    out = ColumnSelector(
        name="s", config={"include": ["id"], "include_regex": "(?i)price|qty"}
    ).transform(make_frame(data()))
    assert to_polars(out).columns == ["id", "unitPrice", "Qty"]
    out = ColumnSelector(
        name="s", config={"include_dtypes": ["numeric"], "exclude": ["id"]}
    ).transform(make_frame(data()))
    assert to_polars(out).columns == ["unitPrice", "Qty", "prix été"]
    out = ColumnSelector(
        name="s", config={"exclude_dtypes": ["string", "temporal", "boolean"]}
    ).transform(make_frame(data()))
    assert to_polars(out).columns == ["id", "unitPrice", "Qty", "prix été"]
    out = ColumnSelector(name="s", config={"exclude_regex": "^[a-z]+$"}).transform(
        make_frame(data())
    )
    assert to_polars(out).columns == ["Product ID", "unitPrice", "Qty", "prix été"]
    out = ColumnSelector(name="s", config={"include_dtypes": ["temporal", "boolean"]}).transform(
        make_frame(data())
    )
    assert to_polars(out).columns == ["day", "ok"]


def test_select_empty_and_one_row(make_frame: Any) -> None:
    empty = make_frame(pl.DataFrame(schema={"a": pl.Int64, "b": pl.String}))
    out = ColumnSelector(name="s", config={"include": ["b"]}).transform(empty)
    assert to_polars(out).columns == ["b"] and to_polars(out).height == 0


def test_select_errors(make_frame: Any) -> None:
    with pytest.raises(ConfigError, match="regular expression"):
        ColumnSelector(name="s", config={"include_regex": "("})
    with pytest.raises(ConfigError, match="'numeric'"):
        ColumnSelector(name="s", config={"include_dtypes": ["number"]})
    with pytest.raises(ColumnNotFoundError) as info:
        ColumnSelector(name="s", config={"include": ["qty"]}).transform(make_frame(data()))
    assert "'qty'" in str(info.value) and "'Qty'" in str(info.value)
    with pytest.raises(ColumnNotFoundError, match="keeps no column"):
        ColumnSelector(name="s", config={"include_regex": "^zzz"}).transform(make_frame(data()))
