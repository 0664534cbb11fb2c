"""OutlierHandler on every engine, checked against DuckDB SQL or plain Python."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_pipeline.core.errors import ColumnNotFoundError, ConfigError, DataTypeError
from data_pipeline.transformation.outliers import OutlierHandler
from tests.conftest import to_polars
from tests.unit.transformation.conftest import LAZY_ENGINES, assert_same, oracle

NAN = float("nan")


def data() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(1, 11)),
            "x": [10.0, 12.0, 11.0, None, 13.0, 250.0, 9.0, NAN, -80.0, 12.5],
            "n": [1, 2, 3, 2, 1, 2, 3, 2, 100, 2],
            "label": list("abcdefghij"),
        }
    )


def for_oracle() -> pl.DataFrame:
    return data().with_columns(pl.col("x").fill_nan(None))


BOUNDS_SQL = {
    "iqr": (
        "quantile_cont({c}, 0.25) over () - 1.5 * (quantile_cont({c}, 0.75) over () - quantile_cont({c}, 0.25) over ())",
        "quantile_cont({c}, 0.75) over () + 1.5 * (quantile_cont({c}, 0.75) over () - quantile_cont({c}, 0.25) over ())",
    ),
    "zscore": (
        "avg({c}) over () - 2.0 * stddev_samp({c}) over ()",
        "avg({c}) over () + 2.0 * stddev_samp({c}) over ()",
    ),
    "percentile": (
        "quantile_cont({c}, 0.1) over ()",
        "quantile_cont({c}, 0.9) over ()",
    ),
    "bounds": ("0.0", "100.0"),
}
CONFIGS = {
    "iqr": {"method": "iqr", "factor": 1.5},
    "zscore": {"method": "zscore", "threshold": 2.0},
    "percentile": {"method": "percentile", "lower_percentile": 0.1, "upper_percentile": 0.9},
    "bounds": {"method": "bounds", "lower": 0, "upper": 100},
}


def bounded(method: str) -> str:
    lo, hi = (b.format(c="x") for b in BOUNDS_SQL[method])
    return f"with b as (select *, {lo} as lo, {hi} as hi from t)"


@pytest.mark.parametrize("method", list(CONFIGS))
def test_clip(make_frame: Any, engine: str, method: str, check_type: Any) -> None:
    frame = make_frame(data())
    handler = OutlierHandler(
        name="o", config={**CONFIGS[method], "columns": ["x"], "action": "clip"}
    )
    result = handler.transform(frame)
    check_type(frame, result)
    expected = oracle(
        bounded(method)
        + " select id, case when x < lo then lo when x > hi then hi else x end as x, n, label from b",
        t=for_oracle(),
    )
    assert_same(result, expected)
    if engine not in LAZY_ENGINES:
        counts = oracle(
            bounded(method) + " select count(*) filter (x < lo or x > hi) as k from b",
            t=for_oracle(),
        )
        assert handler.get_metadata()["details"]["outliers"] == {"x": counts["k"][0]}


@pytest.mark.parametrize("method", list(CONFIGS))
def test_remove(make_frame: Any, engine: str, method: str, check_type: Any) -> None:
    frame = make_frame(data())
    handler = OutlierHandler(
        name="o", config={**CONFIGS[method], "columns": ["x"], "action": "remove"}
    )
    result = handler.transform(frame)
    check_type(frame, result)
    expected = oracle(
        bounded(method)
        + " select id, x, n, label from b where not coalesce(x < lo or x > hi, false)",
        t=for_oracle(),
    )
    assert_same(result, expected)
    if engine not in LAZY_ENGINES:
        meta = handler.get_metadata()
        assert meta["rows_in"] == 10
        assert meta["rows_out"] + meta["details"]["rows_removed"] == 10


@pytest.mark.parametrize("action", ["flag", "null"])
def test_flag_and_null(make_frame: Any, action: str, check_type: Any) -> None:
    frame = make_frame(data())
    handler = OutlierHandler(
        name="o", config={"method": "iqr", "columns": ["x", "n"], "action": action}
    )
    result = handler.transform(frame)
    check_type(frame, result)
    lo_x, hi_x = (b.format(c="x") for b in BOUNDS_SQL["iqr"])
    lo_n, hi_n = (b.format(c="n") for b in BOUNDS_SQL["iqr"])
    base = f"with b as (select *, {lo_x} lx, {hi_x} hx, {lo_n} ln, {hi_n} hn from t) "
    if action == "flag":
        sql = base + (
            "select id, x, n, label, coalesce(x < lx or x > hx, false) as x_outlier, "
            "coalesce(n < ln or n > hn, false) as n_outlier from b"
        )
    else:
        sql = base + (
            "select id, case when x < lx or x > hx then null else x end as x, "
            "case when n < ln or n > hn then null else n end as n, label from b"
        )
    assert_same(result, oracle(sql, t=for_oracle()))


def test_per_column_settings_and_default_columns(make_frame: Any) -> None:
    handler = OutlierHandler(
        name="o",
        config={
            "method": "bounds",
            "lower": 0,
            "upper": 50,
            "column_settings": {"n": {"upper": 10, "action": "flag"}},
        },
    )
    result = to_polars(handler.transform(make_frame(data()))).sort("id")
    assert result["x"].fill_nan(None).to_list() == [
        10.0,
        12.0,
        11.0,
        None,
        13.0,
        50.0,
        9.0,
        None,
        0.0,
        12.5,
    ]
    assert result["n"].to_list() == data()["n"].to_list()
    assert result["n_outlier"].to_list() == [False] * 8 + [True, False]
    assert "label" in result.columns  # text columns are left alone by default


def test_integer_bounds_keep_integers(make_frame: Any) -> None:
    handler = OutlierHandler(name="o", config={"method": "bounds", "upper": 5, "columns": ["n"]})
    result = to_polars(handler.transform(make_frame(data()))).sort("id")
    assert result["n"].to_list() == [1, 2, 3, 2, 1, 2, 3, 2, 5, 2]
    assert result.schema["n"].is_integer()


def test_edge_cases(make_frame: Any, check_type: Any) -> None:
    empty = make_frame(pl.DataFrame(schema={"id": pl.Int64, "x": pl.Float64}))
    result = OutlierHandler(name="o", config={"method": "iqr"}).transform(empty)
    check_type(empty, result)
    assert to_polars(result).height == 0
    one = OutlierHandler(name="o", config={"method": "zscore", "action": "remove"}).transform(
        make_frame(pl.DataFrame({"id": [1], "x": [5.0]}))
    )
    assert to_polars(one)["x"].to_list() == [5.0]
    nulls = OutlierHandler(name="o", config={"method": "iqr", "columns": ["x"]}).transform(
        make_frame(
            pl.DataFrame(
                {"id": [1, 2], "x": [None, None]}, schema={"id": pl.Int64, "x": pl.Float64}
            )
        )
    )
    assert to_polars(nulls)["x"].to_list() == [None, None]
    names = pl.DataFrame({"id": [1, 2, 3, 4, 5], "prix unitaire €": [1.0, 2.0, 3.0, 2.0, 90.0]})
    got = OutlierHandler(
        name="o", config={"method": "bounds", "upper": 10, "action": "flag"}
    ).transform(make_frame(names))
    assert to_polars(got).sort("id")["prix unitaire €_outlier"].to_list() == [False] * 4 + [True]


def test_errors(make_frame: Any) -> None:
    with pytest.raises(ConfigError, match="'iqr'"):
        OutlierHandler(name="o", config={"method": "mad"})
    with pytest.raises(ConfigError, match="needs 'lower' and/or 'upper'"):
        OutlierHandler(name="o", config={"method": "bounds"})
    with pytest.raises(ConfigError, match="'clip'"):
        OutlierHandler(name="o", config={"action": "cap"})
    with pytest.raises(ColumnNotFoundError, match="'xx'"):
        OutlierHandler(name="o", config={"columns": ["xx"]}).transform(make_frame(data()))
    with pytest.raises(DataTypeError, match="'label'"):
        OutlierHandler(name="o", config={"columns": ["label"]}).transform(make_frame(data()))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)), min_size=1, max_size=40),
    st.sampled_from(["iqr", "zscore", "percentile", "bounds"]),
    st.sampled_from(["clip", "remove", "flag", "null"]),
)
def test_property_bounds_and_rows(values: list[float | None], method: str, action: str) -> None:
    df = pl.DataFrame({"x": values}, schema={"x": pl.Float64})
    handler = OutlierHandler(
        name="p", config={**CONFIGS[method], "action": action, "columns": ["x"]}
    )
    out = handler.transform(df)
    lo, hi = handler.get_metadata()["details"]["bounds"]["x"]
    if action != "remove":
        assert out.height == df.height
    else:
        assert out.height == df.height - handler.get_metadata()["details"]["outliers"]["x"]
    if action in ("clip", "remove", "null") and lo is not None and hi is not None:
        kept = [v for v in out["x"].to_list() if v is not None]
        tol = 1e-9 * max(1.0, abs(lo), abs(hi))
        assert all(lo - tol <= v <= hi + tol for v in kept)
    assert not any(isinstance(v, float) and math.isnan(v) for v in out["x"].to_list())
