"""Dashboard, DashboardManager and the HTML page: layout, JSON spec, escaping, CSP, writing."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from data_pipeline.core.errors import (
    ConfigError,
    DashboardRenderingError,
    DuplicateNameError,
    HTMLExportError,
    NotFoundError,
)
from data_pipeline.visualization import (
    KPI,
    BarChart,
    Dashboard,
    DashboardManager,
    LineChart,
    PieChart,
    Table,
)
from data_pipeline.visualization.html import BOOT_SCRIPT, escape_json, javascript_bundle

XSS = [
    "<script>alert(1)</script>",
    "</script><script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "javascript:alert(1)",
    "a\u2028b\u2029c",
    "<!--<script>",
    "&amp; \"quoted\" 'single'",
]


def processed() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "date": [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(30)],
            "sales": [float(100 + i * 3 % 17) for i in range(30)],
            "region": [["North", "South", "East"][i % 3] for i in range(30)],
        }
    )


def test_spec_basic_usage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    processed_data = processed()
    dashboard_manager = DashboardManager()
    dashboard = dashboard_manager.create_dashboard("sales_dashboard")
    dashboard.add_visualization(
        LineChart(
            name="sales_chart", config={"x": "date", "y": "sales", "title": "Sales Over Time"}
        )
    )
    dashboard_spec = dashboard_manager.render_dashboard(
        "sales_dashboard", {"sales_chart": processed_data}
    )
    dashboard.save_html("sales_dashboard.html", {"sales_chart": processed_data})

    json.dumps(dashboard_spec, allow_nan=False)
    (item,) = dashboard_spec["visualizations"]
    assert item["name"] == "sales_chart" and item["kind"] == "vega-lite"
    assert item["spec"]["encoding"]["x"]["field"] == "date"
    assert dashboard_spec["layout"] == {"columns": 2, "items": [{"name": "sales_chart", "span": 1}]}
    assert dt.datetime.fromisoformat(dashboard_spec["generated_at"]).tzinfo is not None
    html = (tmp_path / "sales_dashboard.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert "Sales Over Time" in html
    assert [p.name for p in tmp_path.iterdir()] == ["sales_dashboard.html"]


def test_add_remove_reorder_and_errors() -> None:
    d = Dashboard("d", {"columns": 3})
    a = LineChart(name="a", config={"x": "date", "y": "sales"})
    b = BarChart(name="b", config={"x": "region", "y": "sales"})
    c = Table(name="c")
    d.add_visualization(a)
    d.add_visualization(b, span=2)
    d.add_visualization(c, position=0)
    assert d.list_visualizations() == ["c", "a", "b"]
    with pytest.raises(DuplicateNameError):
        d.add_visualization(LineChart(name="a", config={"x": "date", "y": "sales"}))
    with pytest.raises(ConfigError):
        d.add_visualization("not a chart")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="span"):
        d.add_visualization(Table(name="z"), span=0)
    d.reorder(["a", "b", "c"])
    assert d.list_visualizations() == ["a", "b", "c"]
    with pytest.raises(ConfigError, match="exactly once"):
        d.reorder(["a", "b"])
    with pytest.raises(NotFoundError, match="'a', 'b', 'c'"):
        d.remove_visualization("nope")
    assert d.remove_visualization("c") is c
    assert d.get_visualization("b") is b
    spec = d.render(processed())
    assert spec["layout"]["items"] == [{"name": "a", "span": 1}, {"name": "b", "span": 2}]


def test_data_mapping_errors() -> None:
    d = Dashboard("d")
    d.add_visualization(LineChart(name="a", config={"x": "date", "y": "sales"}))
    with pytest.raises(DashboardRenderingError, match="no data for visualization"):
        d.render({})
    with pytest.raises(DashboardRenderingError, match=r"unknown visualization.*'typo'"):
        d.render({"a": processed(), "typo": processed()})
    with pytest.raises(DashboardRenderingError, match="no visualizations"):
        Dashboard("empty").render({})


def test_manager() -> None:
    m = DashboardManager()
    m.create_dashboard("one", {"title": "One"})
    with pytest.raises(DuplicateNameError):
        m.create_dashboard("one")
    m.register_dashboard(Dashboard("two"))
    assert m.list_dashboards() == ["one", "two"]
    with pytest.raises(NotFoundError, match="'one'"):
        m.get_dashboard("onee")
    m.add_visualization("one", BarChart(name="b", config={"x": "region", "y": "sales"}))
    assert m.render_dashboard("one", processed())["title"] == "One"
    assert m.get_metadata("one")["status"] == "succeeded"
    assert m.remove_dashboard("two").name == "two"
    assert m.list_dashboards() == ["one"]
    with pytest.raises(ConfigError, match="unknown key"):
        m.create_dashboard("bad", {"colums": 3})


def test_escape_json_round_trips_and_hides_markup() -> None:
    value = {"k<": XSS, "n": 1.5}
    text = escape_json(value)
    for ch in "<>&\u2028\u2029":
        assert ch not in text
    assert json.loads(text) == value


def build_xss_dashboard() -> tuple[Dashboard, dict[str, Any]]:
    evil_col = "<img src=x onerror=alert(1)>"
    data = pl.DataFrame(
        {
            "cat": XSS,
            evil_col: [float(i + 1) for i in range(len(XSS))],
            "</script><script>alert(1)</script>": list(range(len(XSS))),
        }
    )
    d = Dashboard(
        "xss",
        {
            "title": "</script><script>alert('title')</script>",
            "description": "<b onmouseover=alert(1)>desc</b>",
            "filter": {"field": "cat", "label": "<script>alert(1)</script>"},
        },
    )
    d.add_visualization(
        BarChart(name="<script>bar</script>", config={"x": "cat", "y": evil_col, "title": XSS[1]})
    )
    d.add_visualization(PieChart(name="pie", config={"category": "cat", "value": evil_col}))
    d.add_visualization(Table(name="table", config={"title": XSS[2]}))
    d.add_visualization(
        KPI(name="kpi", config={"value": evil_col, "title": XSS[0], "prefix": XSS[2]})
    )
    return d, {n: data for n in d.list_visualizations()}


def test_html_escapes_everything_and_inlines_the_bundle_once(tmp_path: Path) -> None:
    d, data = build_xss_dashboard()
    path = d.save_html(tmp_path / "x.html", data)
    html = path.read_text(encoding="utf-8")
    # exactly the three scripts we wrote: the JSON payload, the bundle, the boot script
    assert len(re.findall(r"<script\b", html, flags=re.IGNORECASE)) == 3
    assert len(re.findall(r"</script", html, flags=re.IGNORECASE)) == 3
    assert html.count("window.vegaEmbed=") == 1
    assert "alert(1)" in html  # present, but only as escaped text
    for bad in ("<script>alert", "<img src=x", "<b onmouseover", "\u2028", "\u2029"):
        assert bad not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # the payload parses back to the same specs
    payload = re.search(
        r'<script type="application/json" id="dp-payload">(.*?)</script>', html, re.S
    )
    assert payload is not None
    parsed = json.loads(payload.group(1))
    assert {r["cat"] for r in parsed["charts"][0]["spec"]["datasets"]["source"]} == set(XSS)
    # no external reference of any kind
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)


def test_content_security_policy(tmp_path: Path) -> None:
    d, data = build_xss_dashboard()
    html = d.save_html(tmp_path / "x.html", data).read_text(encoding="utf-8")
    match = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html)
    assert match is not None
    csp = match.group(1).replace("&#x27;", "'")
    assert "default-src 'none'" in csp
    assert "unsafe-eval" not in csp
    script_src = re.search(r"script-src ([^;]+);", csp)
    assert script_src is not None
    assert "unsafe-inline" not in script_src.group(1)
    assert len(re.findall(r"'sha256-[A-Za-z0-9+/=]+'", script_src.group(1))) == 2
    assert BOOT_SCRIPT in html and javascript_bundle() in html


def test_write_is_atomic_and_errors_name_the_path(tmp_path: Path) -> None:
    d = Dashboard("d")
    d.add_visualization(LineChart(name="a", config={"x": "date", "y": "sales"}))
    target = tmp_path / "d.html"
    target.write_text("old")
    d.save_html(target, processed())
    assert target.read_text().startswith("<!DOCTYPE html>")
    assert os.listdir(tmp_path) == ["d.html"]
    with pytest.raises(HTMLExportError, match="missing") as info:
        d.save_html(tmp_path / "missing" / "d.html", processed())
    assert "permissions" in str(info.value)
    assert d.get_metadata()["status"] == "failed"


def test_dark_theme_and_layout_columns(tmp_path: Path) -> None:
    d = Dashboard("d", {"theme": "dark", "columns": 3, "title": "Dark"})
    d.add_visualization(LineChart(name="a", config={"x": "date", "y": "sales"}), span=3)
    spec = d.render(processed())
    assert spec["visualizations"][0]["spec"]["config"]["background"] == "#333"
    html = d.save_html(tmp_path / "d.html", processed()).read_text()
    assert 'data-theme="dark"' in html
    assert "dp-span-3" in html and "--dp-columns: 3" in html


def test_filter_values_and_filterable_flags() -> None:
    d = Dashboard("d", {"filter": {"field": "region", "label": "Region"}})
    d.add_visualization(
        LineChart(name="by_region", config={"x": "date", "y": "sales", "color": "region"})
    )
    d.add_visualization(
        LineChart(name="total", config={"x": "date", "y": "sales", "aggregate": "sum"})
    )
    spec = d.render(processed())
    assert spec["filter"] == {
        "type": "dropdown",
        "field": "region",
        "label": "Region",
        "values": ["East", "North", "South"],
        "truncated": False,
    }
    flags = {v["name"]: v.get("filterable", False) for v in spec["visualizations"]}
    assert flags == {"by_region": True, "total": True}


def test_filter_rolls_up_decomposable_aggregates() -> None:
    data = processed()
    d = Dashboard("d", {"filter": {"field": "region"}})
    d.add_visualization(
        BarChart(name="sum", config={"x": "date", "y": "sales", "aggregate": "sum"})
    )
    d.add_visualization(BarChart(name="count", config={"x": "date", "aggregate": "count"}))
    d.add_visualization(
        BarChart(name="mean", config={"x": "date", "y": "sales", "aggregate": "mean"})
    )
    d.add_visualization(
        BarChart(
            name="big", config={"x": "date", "y": "sales", "aggregate": "sum", "max_points": 10}
        )
    )
    spec = {v["name"]: v for v in d.render(data)["visualizations"]}
    rolled = spec["sum"]["spec"]
    assert spec["sum"]["filterable"] is True
    assert rolled["encoding"]["y"]["aggregate"] == "sum"
    assert rolled["usermeta"]["data_pipeline"]["rollup"] == {"field": "region", "op": "sum"}
    got = pl.DataFrame(rolled["datasets"]["source"]).group_by("date").agg(pl.col("sales").sum())
    want = data.group_by("date").agg(pl.col("sales").sum())
    assert got.sort("date")["sales"].to_list() == want.sort("date")["sales"].to_list()
    assert spec["count"]["spec"]["encoding"]["y"] == {
        "aggregate": "sum",
        "field": "count",
        "title": "count",
        "type": "quantitative",
    }
    # mean cannot be finished from partial means; a rollup above max_points is not done either
    for name in ("mean", "big"):
        assert "filterable" not in spec[name]
        assert "aggregate" not in spec[name]["spec"]["encoding"]["y"]
    # outside a dashboard with a filter nothing changes
    alone = BarChart(name="sum", config={"x": "date", "y": "sales", "aggregate": "sum"}).render(
        data
    )
    assert "region" not in alone["datasets"]["source"][0]


def test_save_images(tmp_path: Path) -> None:
    d = Dashboard("d")
    d.add_visualization(LineChart(name="a/b", config={"x": "date", "y": "sales"}))
    d.add_visualization(Table(name="t"))
    paths = d.save_images(tmp_path, processed(), format="svg")
    assert [p.name for p in paths] == ["a_b.svg"]
    assert paths[0].read_text().lstrip().startswith("<svg")


def test_dashboard_from_config_declares_visualizations() -> None:
    m = DashboardManager()
    d = m.create_dashboard(
        "declared",
        {
            "title": "Declared",
            "visualizations": [
                {
                    "type": "LineChart",
                    "name": "line",
                    "config": {"x": "date", "y": "sales"},
                    "data": "daily",
                },
                {"type": "Table", "name": "table", "span": 2},
            ],
        },
    )
    assert d.list_visualizations() == ["line", "table"]
    assert d.data_names == {"line": "daily"}
    assert m.render_dashboard("declared", processed())["layout"]["items"][1] == {
        "name": "table",
        "span": 2,
    }
    with pytest.raises(ConfigError, match=r"visualizations\[0\].*unknown type 'Line'") as info:
        Dashboard("bad", {"visualizations": [{"type": "Line", "name": "x"}]})
    assert "LineChart" in str(info.value)
    with pytest.raises(ConfigError, match=r"visualizations\[0\].*unknown key"):
        Dashboard(
            "bad",
            {"visualizations": [{"type": "LineChart", "name": "x", "config": {"x": "a", "z": 1}}]},
        )


def test_lazy_polars_charts_are_collected_together() -> None:
    data = processed()
    d = Dashboard("d", {"filter": {"field": "region"}})
    d.add_visualization(
        BarChart(name="sum", config={"x": "date", "y": "sales", "aggregate": "sum"})
    )
    d.add_visualization(
        BarChart(name="mean", config={"x": "region", "y": "sales", "aggregate": "mean"})
    )
    d.add_visualization(PieChart(name="pie", config={"category": "region", "value": "sales"}))
    # a rollup above max_points falls back to its own collect
    d.add_visualization(
        BarChart(
            name="big", config={"x": "date", "y": "sales", "aggregate": "sum", "max_points": 10}
        )
    )
    d.add_visualization(LineChart(name="raw", config={"x": "date", "y": "sales"}))
    d.add_visualization(Table(name="table", config={"max_rows": 5}))
    together = d._collect_together(dict.fromkeys(d.list_visualizations(), data.lazy()), ["region"])
    assert set(together) == {"sum", "mean", "pie", "big", "raw"}
    assert list(together["sum"]) == [(("date", "sales", "region"), ("region",))]
    assert d._collect_together(dict.fromkeys(d.list_visualizations(), data), ["region"]) == {}

    lazy = d.render(data.lazy())
    eager = d.render(data)
    for a, b in zip(lazy["visualizations"], eager["visualizations"], strict=True):
        for item in (a, b):  # a lazy input's row count is not known without computing it
            item["spec"].get("usermeta", {}).get("data_pipeline", {}).pop("rows_in", None)
        assert a == b, a["name"]
    assert lazy["filter"] == eager["filter"]
    assert all(v._precollected is None for v in d.visualizations if hasattr(v, "_precollected"))


def test_date_range_filter_spec_and_page(tmp_path: Path) -> None:
    data = processed()
    d = Dashboard(
        "d", {"filter": {"field": "date", "type": "date_range", "label": "<b>Order</b> date"}}
    )
    d.add_visualization(LineChart(name="line", config={"x": "date", "y": "sales"}))
    d.add_visualization(
        BarChart(name="rolled", config={"x": "region", "y": "sales", "aggregate": "sum"})
    )
    d.add_visualization(PieChart(name="pie", config={"category": "region", "value": "sales"}))
    d.add_visualization(Table(name="table", config={"columns": ["date", "sales"]}))
    spec = d.render(data)
    assert spec["filter"] == {
        "type": "date_range",
        "field": "date",
        "label": "<b>Order</b> date",
        "min": "2024-01-01",
        "max": "2024-01-30",
    }
    flags = {v["name"]: v.get("filterable", False) for v in spec["visualizations"]}
    assert flags == {"line": True, "rolled": True, "pie": False, "table": True}
    rolled = spec["visualizations"][1]["spec"]
    assert rolled["usermeta"]["data_pipeline"]["rollup"] == {"field": "date", "op": "sum"}

    html = d.save_html(tmp_path / "d.html", data).read_text()
    assert (
        '<input type="date" id="dp-from" min="2024-01-01" max="2024-01-30" value="2024-01-01">'
        in html
    )
    assert "&lt;b&gt;Order&lt;/b&gt; date" in html and "<b>Order" not in html
    assert '<tr data-dp-d="2024-01-05">' in html
    assert 'id="dp-filter"' not in html


def test_date_range_filter_on_datetimes_and_errors() -> None:
    data = processed().with_columns(
        ts=pl.col("date").cast(pl.Datetime("ms")) + pl.duration(hours=13),
        text=pl.col("date").cast(pl.String).str.replace("2024", "year 2024"),
    )
    d = Dashboard("d", {"filter": {"field": "ts", "type": "date_range"}})
    d.add_visualization(LineChart(name="line", config={"x": "ts", "y": "sales"}))
    f = d.render(data)["filter"]
    assert (f["min"], f["max"], f["label"]) == ("2024-01-01", "2024-01-30", "ts")

    bad = Dashboard("bad", {"filter": {"field": "text", "type": "date_range"}})
    bad.add_visualization(LineChart(name="line", config={"x": "text", "y": "sales"}))
    with pytest.raises(
        DashboardRenderingError, match=r"'text' holds 'year 2024-01-01'.*'line'"
    ) as e:
        bad.render(data)
    assert "Date or Datetime" in str(e.value)

    none = Dashboard("none", {"filter": {"field": "ts", "type": "date_range"}})
    none.add_visualization(
        BarChart(name="bar", config={"x": "region", "y": "sales", "aggregate": "mean"})
    )
    with pytest.raises(DashboardRenderingError, match=r"no visualization has .* field 'ts'"):
        none.render(data)
    with pytest.raises(ConfigError, match="type"):
        Dashboard("x", {"filter": {"field": "ts", "type": "slider"}})
