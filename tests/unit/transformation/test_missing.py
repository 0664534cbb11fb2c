"""MissingValueHandler on every engine, checked against DuckDB SQL or plain Python."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_pipeline.core.errors import (
    ColumnNotFoundError,
    ConfigError,
    MissingValueError,
    UnsupportedOperationError,
)
from data_pipeline.transformation import MissingValueHandler
from tests.conftest import to_polars
from tests.unit.transformation.conftest import LAZY_ENGINES, assert_same, oracle

NAN = float("nan")

# what the engines get (NaN included) and what the oracle gets (NaN written as null)
RAW = {
    "id": [1, 2, 3, 4, 5, 6],
    "age": [30, None, 50, 41, None, 29],
    "income": [1000.0, NAN, None, 3000.0, 2500.0, 1200.0],
    "education": ["BSc", None, "MSc", "BSc", "PhD", None],
}


def raw() -> pl.DataFrame:
    return pl.DataFrame(
        RAW, schema={"id": pl.Int64, "age": pl.Int64, "income": pl.Float64, "education": pl.String}
    )


def clean_for_oracle() -> pl.DataFrame:
    return raw().with_columns(pl.col("income").fill_nan(None))


def test_spec_config_fills_median_and_mode(make_frame: Any, engine: str, check_type: Any) -> None:
    data = make_frame(raw())
    handler = MissingValueHandler(
        name="handle_missing_values",
        config={"strategy": "fill", "columns": ["age", "income", "education"]},
    )
    result = handler.transform(data)
    check_type(data, result)
    expected = oracle(
        """select id,
                  coalesce(age, median(age) over ()) as age,
                  coalesce(income, median(income) over ()) as income,
                  coalesce(education, mode(education) over ()) as education
           from t""",
        t=clean_for_oracle(),
    )
    assert_same(result, expected)
    meta = handler.get_metadata()
    assert meta["status"] == "succeeded"
    assert meta["details"]["strategies"] == {
        "age": "median",
        "income": "median",
        "education": "mode",
    }
    if engine in LAZY_ENGINES:
        assert "filled" not in meta["details"]  # counting would compute the lazy frame
    else:
        assert meta["details"]["filled"] == {"age": 2, "income": 2, "education": 2}
        assert meta["rows_in"] == meta["rows_out"] == 6


def test_per_column_strategies(make_frame: Any, check_type: Any) -> None:
    data = make_frame(raw())
    handler = MissingValueHandler(
        name="m",
        config={
            "strategy": "mean",
            "columns": ["age", "income"],
            "column_strategies": {
                "income": {"strategy": "constant", "value": -1.0},
                "education": {"strategy": "constant", "value": "unknown"},
            },
        },
    )
    result = handler.transform(data)
    check_type(data, result)
    expected = oracle(
        """select id, coalesce(age, avg(age) over ()) as age,
                  coalesce(income, -1.0) as income,
                  coalesce(education, 'unknown') as education from t""",
        t=clean_for_oracle(),
    )
    assert_same(result, expected)


def test_mode_and_constant_dict_value(make_frame: Any) -> None:
    data = make_frame(raw())
    result = MissingValueHandler(
        name="m",
        config={"strategy": "constant", "value": {"age": 0, "education": "n/a"}},
    ).transform(data)
    expected = oracle(
        "select id, coalesce(age, 0) as age, income, coalesce(education, 'n/a') as education from t",
        t=clean_for_oracle(),
    )
    assert_same(result, expected)
    result = MissingValueHandler(
        name="m", config={"strategy": "mode", "columns": ["education"]}
    ).transform(make_frame(raw()))
    assert to_polars(result).sort("id")["education"].to_list() == [
        "BSc",
        "BSc",
        "MSc",
        "BSc",
        "PhD",
        "BSc",
    ]


@pytest.mark.parametrize("direction", ["forward_fill", "backward_fill"])
def test_forward_backward_fill_with_order(make_frame: Any, direction: str, check_type: Any) -> None:
    # rows deliberately out of order: the fill follows order_by, not the physical order
    df = pl.DataFrame({"id": [3, 1, 4, 2, 5], "v": [None, 1.0, None, None, 5.0]})
    data = make_frame(df)
    result = MissingValueHandler(
        name="f", config={"strategy": direction, "columns": ["v"], "order_by": "id"}
    ).transform(data)
    check_type(data, result)
    ordered = sorted(zip(df["id"], df["v"], strict=True))
    values = [v for _, v in ordered]
    if direction == "backward_fill":
        values = values[::-1]
    filled, last = [], None
    for v in values:
        last = v if v is not None else last
        filled.append(last)
    if direction == "backward_fill":
        filled = filled[::-1]
    expected = pl.DataFrame({"id": [i for i, _ in ordered], "v": filled})
    assert_same(result, expected)


def test_forward_fill_without_order(make_frame: Any, engine: str) -> None:
    df = pl.DataFrame({"id": [1, 2, 3], "v": [1.0, None, 3.0]})
    handler = MissingValueHandler(name="ffill", config={"strategy": "forward_fill"})
    if engine in LAZY_ENGINES:
        with pytest.raises(UnsupportedOperationError) as info:
            handler.transform(make_frame(df))
        text = str(info.value)
        assert engine in text and "forward-fill" in text and "order_by" in text
    else:
        result = handler.transform(make_frame(df))
        assert to_polars(result)["v"].to_list() == [1.0, 1.0, 3.0]


def test_drop_rows(make_frame: Any, engine: str, check_type: Any) -> None:
    data = make_frame(raw())
    handler = MissingValueHandler(
        name="d", config={"strategy": "drop", "columns": ["age", "income"]}
    )
    result = handler.transform(data)
    check_type(data, result)
    expected = oracle(
        "select * from t where age is not null and income is not null", t=clean_for_oracle()
    )
    assert_same(result, expected)
    if engine not in LAZY_ENGINES:
        assert handler.get_metadata()["details"]["rows_dropped"] == 3
        assert handler.get_metadata()["rows_out"] == 3


def test_drop_columns_above_ratio(make_frame: Any, check_type: Any) -> None:
    df = pl.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "mostly": [None, None, None, 1.0],
            "half": [None, 2.0, None, 1.0],
            "full": ["a", "b", "c", "d"],
        }
    )
    data = make_frame(df)
    handler = MissingValueHandler(
        name="dc", config={"strategy": "drop_columns", "max_missing_ratio": 0.5}
    )
    result = handler.transform(data)
    check_type(data, result)
    assert to_polars(result).columns == ["id", "half", "full"]
    assert handler.get_metadata()["details"]["columns_dropped"] == ["mostly"]


def test_nan_is_null_by_default_and_configurable(make_frame: Any, engine: str) -> None:
    df = pl.DataFrame({"id": [1, 2, 3], "x": [1.0, NAN, None]})
    result = MissingValueHandler(name="n", config={"strategy": "constant", "value": 0.0}).transform(
        make_frame(df)
    )
    assert to_polars(result).sort("id")["x"].to_list() == [1.0, 0.0, 0.0]
    if engine == "pandas":
        return  # pandas cannot keep NaN apart from null
    result = MissingValueHandler(
        name="n", config={"strategy": "constant", "value": 0.0, "nan_as_null": False}
    ).transform(make_frame(df))
    values = to_polars(result).sort("id")["x"].to_list()
    assert values[0] == 1.0 and math.isnan(values[1]) and values[2] == 0.0


def test_empty_frame(make_frame: Any, check_type: Any) -> None:
    df = pl.DataFrame(schema={"id": pl.Int64, "x": pl.Float64, "s": pl.String})
    data = make_frame(df)
    result = MissingValueHandler(name="e", config={"strategy": "fill"}).transform(data)
    check_type(data, result)
    assert to_polars(result).height == 0
    assert to_polars(result).columns == ["id", "x", "s"]


def test_one_row_and_all_null_column(make_frame: Any, engine: str) -> None:
    df = pl.DataFrame(
        {"id": [1], "x": [None], "s": ["a"]},
        schema={"id": pl.Int64, "x": pl.Float64, "s": pl.String},
    )
    handler = MissingValueHandler(name="o", config={"strategy": "median", "columns": ["x"]})
    result = handler.transform(make_frame(df))
    out = to_polars(result)
    assert out.height == 1 and out["x"].to_list() == [None]  # nothing to take a median of
    if engine not in LAZY_ENGINES:
        details = handler.get_metadata()["details"]
        assert details["filled"] == {"x": 0}
        assert details["still_missing"] == {"x": 1}


def test_unicode_names_with_spaces(make_frame: Any, check_type: Any) -> None:
    df = pl.DataFrame(
        {"id": [1, 2, 3], "prix unitaire €": [2.0, None, 4.0], "été": ["a", None, "a"]}
    )
    data = make_frame(df)
    result = MissingValueHandler(name="u", config={"strategy": "fill"}).transform(data)
    check_type(data, result)
    expected = oracle(
        """select id, coalesce("prix unitaire €", median("prix unitaire €") over ()) as "prix unitaire €",
                  coalesce("été", mode("été") over ()) as "été" from t""",
        t=df,
    )
    assert_same(result, expected)


def test_default_columns_mean_skips_text(make_frame: Any) -> None:
    result = MissingValueHandler(name="m", config={"strategy": "mean"}).transform(make_frame(raw()))
    out = to_polars(result)
    assert out["age"].null_count() == 0
    assert out["education"].null_count() == 2  # text is left alone by mean on default columns


def test_errors(make_frame: Any) -> None:
    with pytest.raises(ConfigError) as info:
        MissingValueHandler(name="bad", config={"strategy": "average"})
    assert "config.strategy" in str(info.value) and "'median'" in str(info.value)
    with pytest.raises(ConfigError, match="needs a 'value'"):
        MissingValueHandler(name="bad", config={"strategy": "constant"})
    with pytest.raises(ConfigError, match="unknown key"):
        MissingValueHandler(name="bad", config={"strategy": "fill", "colums": ["a"]})

    data = make_frame(raw())
    with pytest.raises(ColumnNotFoundError) as missing:
        MissingValueHandler(name="m", config={"columns": ["agee"]}).transform(data)
    text = str(missing.value)
    assert (
        "'agee'" in text
        and "'age'" in text
        and "'education'" in text
        and "MissingValueHandler 'm'" in text
    )

    with pytest.raises(MissingValueError, match="'education'"):
        MissingValueHandler(
            name="m", config={"strategy": "mean", "columns": ["education"]}
        ).transform(make_frame(raw()))
    with pytest.raises(MissingValueError, match="cannot fill column 'age'"):
        MissingValueHandler(
            name="m", config={"strategy": "constant", "value": "x", "columns": ["age"]}
        ).transform(make_frame(raw()))


def test_count_forced_on_lazy() -> None:
    handler = MissingValueHandler(name="c", config={"strategy": "fill", "count": True})
    handler.transform(raw().lazy())
    assert handler.get_metadata()["details"]["filled"] == {
        "id": 0,
        "age": 2,
        "income": 2,
        "education": 2,
    }


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=False, width=32)),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from(["mean", "median", "mode", "fill", "constant"]),
)
def test_property_no_nulls_left(values: list[float | None], strategy: str) -> None:
    df = pl.DataFrame({"x": values}, schema={"x": pl.Float64})
    config: dict[str, Any] = {"strategy": strategy}
    if strategy == "constant":
        config["value"] = 0.0
    out = MissingValueHandler(name="p", config=config).transform(df)
    assert out.height == df.height
    has_value = any(v is not None and not math.isnan(v) for v in values)
    if has_value or strategy == "constant":
        assert out["x"].null_count() == 0
        assert out["x"].is_nan().sum() == 0


def test_mode_ties_pick_smallest_value(make_frame: Any) -> None:
    df = pl.DataFrame(
        {"id": [1, 2, 3, 4, 5], "s": ["b", "a", None, "b", "a"], "x": [2, 1, None, 1, 2]}
    )
    result = MissingValueHandler(name="t", config={"strategy": "mode"}).transform(make_frame(df))
    out = to_polars(result).sort("id")
    assert out["s"].to_list() == ["b", "a", "a", "b", "a"]
    assert out["x"].to_list() == [2, 1, 1, 1, 2]


def test_forward_fill_limit(make_frame: Any) -> None:
    df = pl.DataFrame({"id": [1, 2, 3, 4], "v": [1.0, None, None, None]})
    result = MissingValueHandler(
        name="f", config={"strategy": "forward_fill", "order_by": ["id"], "limit": 2}
    ).transform(make_frame(df))
    assert to_polars(result).sort("id")["v"].to_list() == [1.0, 1.0, 1.0, None]


def test_counts_left_after_filling(make_frame: Any, engine: str) -> None:
    """Filled and still-missing counts per strategy (eager frames; no second pass for stats)."""
    df = pl.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "a": [None, 1.0, None, 3.0],
            "b": [None, None, None, None],
            "c": [None, "x", None, "y"],
            "d": [None, 2.0, None, float("nan")],
        },
        schema={"id": pl.Int64, "a": pl.Float64, "b": pl.Float64, "c": pl.String, "d": pl.Float64},
    )
    handler = MissingValueHandler(
        name="n",
        config={
            "strategy": "median",
            "columns": ["a", "b"],
            "column_strategies": {
                "c": "mode",
                "d": {"strategy": "constant", "value": 0.0},
            },
        },
    )
    out = to_polars(handler.transform(make_frame(df))).sort("id")
    assert out["a"].to_list() == [2.0, 1.0, 2.0, 3.0]
    assert out["b"].to_list() == [None] * 4
    assert out["c"].to_list() == ["x", "x", "x", "y"]
    if engine in LAZY_ENGINES:
        return
    details = handler.get_metadata()["details"]
    assert details["filled"] == {"a": 2, "b": 0, "c": 2, "d": 3}
    assert details["still_missing"] == {"b": 4}
    ordered = MissingValueHandler(
        name="f", config={"strategy": "forward_fill", "columns": ["a"], "order_by": ["id"]}
    )
    ordered.transform(make_frame(df))
    details = ordered.get_metadata()["details"]
    assert details["filled"] == {"a": 1} and details["still_missing"] == {"a": 1}
