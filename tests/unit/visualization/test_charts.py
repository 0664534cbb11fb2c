"""Spec-level tests of every chart: encodings, aggregation, downsampling, errors."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import polars as pl
import pytest

from data_pipeline.core.errors import ChartRenderingError, ColumnNotFoundError, ConfigError
from data_pipeline.visualization import BarChart, Heatmap, LineChart, PieChart, ScatterPlot


def sales(n: int = 40) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "date": [dt.date(2024, 1, 1) + dt.timedelta(days=i % 10) for i in range(n)],
            "region": [["North", "South"][i % 2] for i in range(n)],
            "product": [f"P{i % 4}" for i in range(n)],
            "sales": [float(i) for i in range(n)],
            "qty": [i % 7 for i in range(n)],
        }
    )


def rows(spec: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(spec["datasets"]["source"])


def meta(spec: dict[str, Any]) -> dict[str, Any]:
    return spec["usermeta"]["data_pipeline"]  # type: ignore[no-any-return]


# -- LineChart -------------------------------------------------------------------------------


def test_line_chart_spec_keys_and_literal_colour() -> None:
    chart = LineChart(
        name="sales_chart",
        config={"x": "date", "y": "sales", "title": "Sales Over Time", "color": "blue"},
    )
    spec = chart.render(sales())
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/v6")
    assert spec["mark"]["type"] == "line"
    assert spec["mark"]["color"] == "blue"
    assert spec["encoding"]["x"] == {"field": "date", "type": "temporal", "title": "date"}
    assert spec["encoding"]["y"]["field"] == "sales"
    assert spec["encoding"]["y"]["type"] == "quantitative"
    assert "color" not in spec["encoding"]
    assert spec["title"]["text"] == "Sales Over Time"
    assert spec["data"] == {"name": "source"}
    assert len(spec["datasets"]["source"]) == 40
    assert spec["datasets"]["source"][0]["date"] == "2024-01-01T00:00:00"
    json.dumps(spec, allow_nan=False)
    md = chart.get_metadata()
    assert md["status"] == "succeeded" and md["rows_in"] == 40 and md["rows_out"] == 40


def test_line_chart_colour_column_makes_series() -> None:
    spec = LineChart(name="c", config={"x": "date", "y": "sales", "color": "region"}).render(
        sales()
    )
    assert spec["encoding"]["color"]["field"] == "region"
    assert spec["encoding"]["color"]["type"] == "nominal"
    assert "color" not in spec["mark"]


def test_series_key_and_scheme() -> None:
    spec = LineChart(
        name="c", config={"x": "date", "y": "sales", "series": "region", "scheme": "category10"}
    ).render(sales())
    assert spec["encoding"]["color"]["field"] == "region"
    assert spec["encoding"]["color"]["scale"] == {"scheme": "category10"}


def test_series_and_a_different_colour_column_conflict() -> None:
    chart = LineChart(
        name="c", config={"x": "date", "y": "sales", "series": "region", "color": "product"}
    )
    with pytest.raises(ChartRenderingError, match="two different columns"):
        chart.render(sales())


def test_bad_colour_is_an_error_listing_columns() -> None:
    chart = LineChart(name="c", config={"x": "date", "y": "sales", "color": "not a colour!"})
    with pytest.raises(ChartRenderingError, match="neither a column") as info:
        chart.render(sales())
    assert "'region'" in str(info.value)


@pytest.mark.parametrize("agg", ["sum", "mean", "min", "max", "count", "median", "n_unique"])
def test_line_aggregation_on_every_engine(make_frame: Any, agg: str) -> None:
    data = sales()
    spec = LineChart(
        name="c", config={"x": "date", "y": "sales", "series": "region", "aggregate": agg}
    ).render(make_frame(data))
    got = rows(spec).sort("region", "date")
    expr = {
        "count": pl.col("sales").count(),
        "n_unique": pl.col("sales").n_unique(),
    }.get(agg, getattr(pl.col("sales"), agg)())
    want = data.group_by("region", "date").agg(expr.alias("sales")).sort("region", "date")
    assert got["sales"].cast(pl.Float64).to_list() == want["sales"].cast(pl.Float64).to_list()
    assert got.height == want.height
    assert meta(spec)["aggregate"] == agg
    assert spec["encoding"]["y"]["title"] == ("sales" if agg == "count" else f"sales ({agg})")


def test_count_without_y() -> None:
    spec = BarChart(name="c", config={"x": "region", "aggregate": "count"}).render(sales())
    assert rows(spec).sort("region")["count"].to_list() == [20, 20]
    assert spec["encoding"]["y"]["field"] == "count"


def test_missing_y_without_count_is_an_error() -> None:
    with pytest.raises(ChartRenderingError, match="no y column"):
        BarChart(name="c", config={"x": "region"}).render(sales())


def test_missing_column_names_it_and_lists_existing(make_frame: Any) -> None:
    chart = LineChart(name="sales_chart", config={"x": "date", "y": "revenue"})
    with pytest.raises(ChartRenderingError) as info:
        chart.render(make_frame(sales()))
    text = str(info.value)
    assert "'revenue'" in text and "'sales'" in text and "'date'" in text
    assert "LineChart 'sales_chart'" in text
    assert isinstance(info.value, ColumnNotFoundError)
    assert chart.get_metadata()["status"] == "failed"


def test_config_typo_fails_at_construction() -> None:
    with pytest.raises(ConfigError, match="colour"):
        LineChart(name="c", config={"x": "date", "y": "sales", "colour": "red"})
    with pytest.raises(ConfigError, match="aggregate"):
        LineChart(name="c", config={"x": "date", "y": "sales", "aggregate": "avg"})
    with pytest.raises(ConfigError, match="x_format"):
        LineChart(name="c", config={"x": "date", "y": "sales", "x_format": "'+alert(1)+'"})
    with pytest.raises(ConfigError, match="scheme"):
        LineChart(name="c", config={"x": "date", "y": "sales", "scheme": "a'b"})


def test_axis_titles_formats_size_and_tooltip() -> None:
    spec = LineChart(
        name="c",
        config={
            "x": "date",
            "y": "sales",
            "x_title": "Day",
            "y_title": "Sales ($)",
            "y_format": ",.2f",
            "x_format": "%b %d",
            "width": 600,
            "height": 300,
            "tooltip": ["date", "sales", "qty"],
            "points": True,
            "interpolate": "monotone",
        },
    ).render(sales())
    enc = spec["encoding"]
    assert enc["x"]["title"] == "Day" and enc["x"]["axis"] == {"format": "%b %d"}
    assert enc["y"]["title"] == "Sales ($)" and enc["y"]["axis"] == {"format": ",.2f"}
    assert (spec["width"], spec["height"]) == (600, 300)
    assert [t["field"] for t in enc["tooltip"]] == ["date", "sales", "qty"]
    assert spec["mark"]["point"] is True and spec["mark"]["interpolate"] == "monotone"


def test_tooltip_false_and_aggregated_extra_tooltip() -> None:
    spec = LineChart(name="c", config={"x": "date", "y": "sales", "tooltip": False}).render(sales())
    assert "tooltip" not in spec["encoding"]
    with pytest.raises(ChartRenderingError, match="neither grouped nor aggregated"):
        LineChart(
            name="c", config={"x": "date", "y": "sales", "aggregate": "sum", "tooltip": ["qty"]}
        ).render(sales())


LAZY_ENGINES = ("polars-lazy", "duckdb", "pyspark")


def test_line_downsampling_lttb_keeps_peaks_and_says_so(make_frame: Any, engine: str) -> None:
    n = 20_000
    ys = [math.sin(i / 500) for i in range(n)]
    ys[12_345] = 50.0  # a spike LTTB must keep
    data = pl.DataFrame({"t": list(range(n)), "v": ys})
    spec = LineChart(name="c", config={"x": "t", "y": "v", "max_points": 1000}).render(
        make_frame(data)
    )
    got = rows(spec)
    assert got.height <= 1000
    assert 50.0 in got["v"].to_list()
    assert got["t"].to_list()[0] == 0 and got["t"].to_list()[-1] == n - 1
    assert got["t"].is_sorted()
    assert "Downsampled from 20,000" in spec["title"]["subtitle"]
    if engine in LAZY_ENGINES:  # picked on the engine: lowest and highest y per bucket
        assert "lowest and highest per bucket" in spec["title"]["subtitle"]
        assert meta(spec)["downsampled"] == "minmax"
    else:
        assert "LTTB" in spec["title"]["subtitle"]
        assert meta(spec)["downsampled"] == "lttb"


def test_line_downsampling_per_series_with_dates() -> None:
    n = 6000
    data = pl.DataFrame(
        {
            "ts": [dt.datetime(2024, 1, 1) + dt.timedelta(minutes=i) for i in range(n)] * 2,
            "s": ["a"] * n + ["b"] * n,
            "v": [float(i % 97) for i in range(2 * n)],
        }
    )
    spec = LineChart(name="c", config={"x": "ts", "y": "v", "color": "s"}).render(data)
    got = rows(spec)
    assert got.height <= 5000
    assert got.group_by("s").len().sort("s")["len"].to_list() == [2500, 2500]


def test_default_cap_is_5000() -> None:
    data = pl.DataFrame({"t": list(range(12_000)), "v": [float(i % 13) for i in range(12_000)]})
    assert rows(LineChart(name="c", config={"x": "t", "y": "v"}).render(data)).height == 5000


# -- BarChart --------------------------------------------------------------------------------


def test_bar_modes_and_orientation() -> None:
    base = {"x": "product", "y": "sales", "series": "region", "aggregate": "sum"}
    stacked = BarChart(name="b", config=base).render(sales())
    assert stacked["mark"]["type"] == "bar"
    assert "stack" not in stacked["encoding"]["y"]
    grouped = BarChart(name="b", config={**base, "mode": "grouped"}).render(sales())
    assert grouped["encoding"]["xOffset"]["field"] == "region"
    assert grouped["encoding"]["y"]["stack"] is None
    norm = BarChart(name="b", config={**base, "mode": "normalized"}).render(sales())
    assert norm["encoding"]["y"]["stack"] == "normalize"
    horiz = BarChart(name="b", config={**base, "orientation": "horizontal", "sort": "-y"}).render(
        sales()
    )
    assert horiz["encoding"]["y"]["field"] == "product"
    assert horiz["encoding"]["x"]["field"] == "sales"
    assert horiz["encoding"]["y"]["sort"] == "-x"


@pytest.mark.parametrize(
    ("sort", "want"), [("-y", "-y"), ("y", "y"), ("x", "ascending"), ("-x", "descending")]
)
def test_bar_sort(sort: str, want: str) -> None:
    spec = BarChart(name="b", config={"x": "product", "y": "sales", "sort": sort}).render(sales())
    assert spec["encoding"]["x"]["sort"] == want


def test_bar_sort_by_list_uses_an_order_column_not_an_expression() -> None:
    spec = BarChart(
        name="b", config={"x": "product", "y": "sales", "aggregate": "sum", "sort": ["P3", "P1"]}
    ).render(sales())
    assert spec["encoding"]["x"]["sort"] == {
        "field": "_dp_order",
        "op": "min",
        "order": "ascending",
    }
    order = {r["product"]: r["_dp_order"] for r in spec["datasets"]["source"]}
    assert order == {"P3": 0, "P1": 1, "P0": 2, "P2": 2}
    assert "expr" not in json.dumps(spec)


def test_bar_aggregation_on_every_engine(make_frame: Any) -> None:
    data = sales()
    spec = BarChart(name="b", config={"x": "product", "y": "sales", "aggregate": "mean"}).render(
        make_frame(data)
    )
    want = data.group_by("product").agg(pl.col("sales").mean()).sort("product")
    assert rows(spec).sort("product").equals(want)


def test_bar_above_cap_sums_then_keeps_top_categories() -> None:
    n = 30_000
    data = pl.DataFrame(
        {"cat": [f"c{i % 8000:04d}" for i in range(n)], "v": [1.0 + (i % 8000) for i in range(n)]}
    )
    spec = BarChart(name="b", config={"x": "cat", "y": "v", "max_points": 100}).render(data)
    got = rows(spec)
    assert got.height == 100
    assert got["cat"].n_unique() == 100
    # the biggest totals are kept
    assert "c7999" in got["cat"].to_list()
    sub = spec["title"]["subtitle"]
    assert "Summed 30,000 rows into 8,000 bars." in sub
    assert "top 100 of 8,000 categories" in sub


# -- ScatterPlot -----------------------------------------------------------------------------


def test_scatter_encodings() -> None:
    spec = ScatterPlot(
        name="s",
        config={"x": "sales", "y": "qty", "color": "region", "size": "qty", "shape": "product"},
    ).render(sales())
    enc = spec["encoding"]
    assert spec["mark"]["type"] == "point"
    assert enc["size"]["field"] == "qty" and enc["size"]["type"] == "quantitative"
    assert enc["color"]["field"] == "region"
    assert enc["shape"]["field"] == "product"
    assert spec["mark"]["opacity"] == 0.7


def test_scatter_sample_is_deterministic(make_frame: Any, engine: str) -> None:
    data = pl.DataFrame({"a": list(range(9000)), "b": [float(i) * 2 for i in range(9000)]})
    chart = ScatterPlot(name="s", config={"x": "a", "y": "b"})
    first = chart.render(make_frame(data))
    second = chart.render(make_frame(data))
    assert first["datasets"] == second["datasets"]
    assert len(first["datasets"]["source"]) == 5000
    if engine in LAZY_ENGINES:  # sampled on the engine: evenly spaced along x
        assert "evenly spaced sample of 5,000 of 9,000" in first["title"]["subtitle"]
    else:
        assert "random sample of 5,000 of 9,000" in first["title"]["subtitle"]


# -- PieChart --------------------------------------------------------------------------------


def test_pie_and_donut(make_frame: Any) -> None:
    data = sales()
    spec = PieChart(name="p", config={"category": "product", "value": "sales"}).render(
        make_frame(data)
    )
    assert spec["mark"]["type"] == "arc"
    assert "innerRadius" not in spec["mark"]
    assert spec["encoding"]["theta"]["field"] == "sales"
    got = rows(spec)
    want = data.group_by("product").agg(pl.col("sales").sum()).sort("sales", descending=True)
    assert got["product"].to_list() == want["product"].to_list()
    assert got["sales"].to_list() == want["sales"].to_list()
    donut = PieChart(name="p", config={"category": "product", "donut": True}).render(data)
    assert donut["mark"]["innerRadius"] == 60
    assert rows(donut)["count"].sum() == 40


def test_pie_folds_small_slices_into_other() -> None:
    data = pl.DataFrame(
        {"c": [f"k{i}" for i in range(20)], "v": [float(20 - i) for i in range(20)]}
    )
    spec = PieChart(name="p", config={"category": "c", "value": "v", "max_slices": 5}).render(data)
    got = rows(spec)
    assert got["c"].to_list() == ["k0", "k1", "k2", "k3", "Other"]
    assert got["v"].sum() == sum(range(1, 21))
    assert "16 smaller categories" in spec["title"]["subtitle"]


# -- Heatmap ---------------------------------------------------------------------------------


def test_heatmap(make_frame: Any) -> None:
    data = sales()
    spec = Heatmap(
        name="h",
        config={
            "x": "date",
            "y": "region",
            "value": "sales",
            "aggregate": "sum",
            "scheme": "viridis",
        },
    ).render(make_frame(data))
    assert spec["mark"]["type"] == "rect"
    assert spec["encoding"]["color"]["scale"] == {"scheme": "viridis"}
    assert spec["encoding"]["color"]["title"] == "sales (sum)"
    got = rows(spec)
    assert got.height == 10
    assert got["date"][0] == "2024-01-01"
    assert got["sales"].sum() == data["sales"].sum()
    counted = Heatmap(name="h", config={"x": "product", "y": "region"}).render(data)
    assert rows(counted)["count"].sum() == 40


# -- data safety -----------------------------------------------------------------------------


def test_nan_inf_become_null_and_json_is_strict() -> None:
    data = pl.DataFrame({"x": [1, 2, 3, 4], "y": [1.0, float("nan"), float("inf"), None]})
    spec = LineChart(name="c", config={"x": "x", "y": "y"}).render(data)
    assert [r["y"] for r in spec["datasets"]["source"]] == [1.0, None, None, None]
    json.dumps(spec, allow_nan=False)


def test_dotted_and_bracketed_column_names_are_escaped_fields() -> None:
    data = pl.DataFrame({"a.b": [1, 2], "c[0]": [3.0, 4.0]})
    spec = LineChart(name="c", config={"x": "a.b", "y": "c[0]"}).render(data)
    assert spec["encoding"]["x"]["field"] == "a\\.b"
    assert spec["encoding"]["x"]["title"] == "a.b"
    assert spec["encoding"]["y"]["field"] == "c\\[0\\]"
    assert spec["datasets"]["source"][0] == {"a.b": 1, "c[0]": 3.0}


def test_tz_aware_datetimes_are_utc_iso() -> None:
    data = pl.DataFrame(
        {"t": [dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone.utc)], "v": [1.0]}
    ).with_columns(pl.col("t").dt.convert_time_zone("Europe/Paris"))
    spec = LineChart(name="c", config={"x": "t", "y": "v"}).render(data)
    assert spec["datasets"]["source"][0]["t"] == "2024-01-01T12:00:00.000Z"


def test_png_and_svg_export(tmp_path: Any) -> None:
    chart = BarChart(
        name="b", config={"x": "product", "y": "sales", "aggregate": "sum", "title": "T"}
    )
    png = chart.save_png(tmp_path / "b.png", sales())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = chart.save_svg(tmp_path / "b.svg", sales())
    text = svg.read_text()
    assert text.lstrip().startswith("<svg") and "P0" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.png", "b.svg"]
