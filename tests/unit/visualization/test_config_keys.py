"""Config keys that were accepted and then ignored or misapplied (found while documenting them).

Each test states what the key now does; the oracle is plain Python on the same rows.
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from data_pipeline.core.errors import ChartRenderingError, ConfigError, DashboardRenderingError
from data_pipeline.visualization import (
    KPI,
    BarChart,
    Dashboard,
    LineChart,
    PieChart,
    ScatterPlot,
    Table,
)
from data_pipeline.visualization.html import build_page

DAYS = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(5)]


def frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "day": DAYS,
            "at": [dt.datetime(2024, 1, 1, 8, 30) + dt.timedelta(hours=i) for i in range(5)],
            "revenue": [1234.5 * (i + 1) for i in range(5)],
            "qty": [1000 * i for i in range(5)],
            "name": [f"n{i}" for i in range(5)],
        }
    )


# -- 1. Table formats: strftime for dates, number specs for numbers, checked against the dtype ----


def test_table_formats_a_date_and_a_datetime_column_with_strftime() -> None:
    table = Table("t", {"formats": {"day": "%d/%m/%Y", "at": "%H:%M", "revenue": ",.1f"}})
    spec = table.render(frame())
    cols = [c["name"] for c in spec["columns"]]
    got = [dict(zip(cols, row, strict=True)) for row in spec["rows"]]
    assert [r["day"] for r in got] == [d.strftime("%d/%m/%Y") for d in DAYS]
    assert [r["at"] for r in got] == [f"{8 + i:02d}:30" for i in range(5)]
    assert [r["revenue"] for r in got] == [format(1234.5 * (i + 1), ",.1f") for i in range(5)]


@pytest.mark.parametrize(
    ("column", "spec", "kind"),
    [("day", ",.2f", "date"), ("at", ".1%", "date"), ("revenue", "%Y-%m-%d", "number")],
)
def test_table_format_of_the_wrong_kind_is_a_config_error_naming_the_column(
    column: str, spec: str, kind: str
) -> None:
    """``{"day": ",.2f"}`` on a Date printed the text ``,.2f`` in every cell."""
    table = Table("t", {"formats": {column: spec}})
    with pytest.raises(ConfigError) as info:
        table.render(frame())
    text = str(info.value)
    assert f"formats.{column}" in text and repr(spec) in text, text
    assert kind in (info.value.hint or ""), info.value.hint


def test_table_format_on_a_text_column_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"formats\.name.*String"):
        Table("t", {"formats": {"name": ",.2f"}}).render(frame())


@pytest.mark.parametrize("spec", ["abc", "%%d"])
def test_table_format_that_is_neither_kind_is_refused_when_built(spec: str) -> None:
    with pytest.raises(ConfigError, match=rf"formats.*{spec!r}.*strftime"):
        Table("t", {"formats": {"day": spec}})


# -- 2. description on Table and KPI tiles ------------------------------------------------------

EVIL = '<img src=x onerror="alert(1)"> & more'


@pytest.mark.parametrize(
    "viz",
    [
        Table("rows", {"title": "Rows", "description": EVIL}),
        KPI("total", {"value": "revenue", "description": EVIL}),
    ],
    ids=["table", "kpi"],
)
def test_description_of_tables_and_kpis_is_shown_escaped(viz: Any) -> None:
    spec = viz.render(frame())
    assert spec["description"] == EVIL
    board = Dashboard("d", {"title": "D"})
    board.add_visualization(viz)
    page = build_page(board.render(frame()))
    assert html.escape(EVIL) in page
    assert "<img src=x" not in page


# -- 3. PieChart max_points together with max_slices ------------------------------------------


def categories(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {"c": [f"c{i:02d}" for i in range(n)], "v": [float(n - i) for i in range(n)]}
    )


@pytest.mark.parametrize(
    ("config", "slices"),
    [({}, 10), ({"max_points": 12}, 10), ({"max_slices": 20, "max_points": 12}, 12),
     ({"max_slices": 20}, 20)],
)  # fmt: skip
def test_pie_chart_draws_at_most_the_smaller_of_max_slices_and_max_points(
    config: dict[str, Any], slices: int
) -> None:
    data = categories(30)
    spec = PieChart("p", {"category": "c", "value": "v", **config}).render(data)
    rows = spec["datasets"]["source"]
    assert len(rows) == slices
    kept = sorted(data["v"].to_list(), reverse=True)[: slices - 1]
    assert [r["v"] for r in rows[:-1]] == kept
    assert rows[-1] == {"_dp_order": slices - 1, "c": "Other", "v": sum(data["v"]) - sum(kept)}


# -- 4. sort on LineChart (order of x) and ScatterPlot (refused) ------------------------------


def test_line_chart_sort_descending_reverses_the_x_axis() -> None:
    spec = LineChart("l", {"x": "day", "y": "revenue", "sort": "-x"}).render(frame())
    assert spec["encoding"]["x"]["sort"] == "descending"
    spec = LineChart("l", {"x": "day", "y": "revenue", "sort": "x"}).render(frame())
    assert spec["encoding"]["x"]["sort"] == "ascending"
    assert (
        "sort" not in LineChart("l", {"x": "day", "y": "revenue"}).render(frame())["encoding"]["x"]
    )


def test_line_chart_sort_list_orders_categories_and_the_line() -> None:
    weekdays = ["Mon", "Tue", "Wed", "Thu", "Fri"]
    data = pl.DataFrame({"wd": ["Fri", "Mon", "Wed", "Tue", "Thu"], "n": [5, 1, 3, 2, 4]})
    spec = LineChart("l", {"x": "wd", "y": "n", "sort": weekdays}).render(data)
    rows = spec["datasets"]["source"]
    assert [r["wd"] for r in rows] == weekdays  # embedded (and so drawn) in the listed order
    order = spec["encoding"]["order"]["field"]
    assert [r[order] for r in rows] == list(range(5))
    assert spec["encoding"]["x"]["sort"]["field"] == order


def test_line_chart_sort_list_on_a_temporal_x_is_an_error() -> None:
    with pytest.raises(ChartRenderingError, match=r"sort lists the x values.*temporal"):
        LineChart("l", {"x": "day", "y": "revenue", "sort": ["2024-01-02"]}).render(frame())


@pytest.mark.parametrize("sort", ["y", "-y"])
def test_line_chart_sort_by_value_is_refused(sort: str) -> None:
    with pytest.raises(ConfigError, match=r"sort"):
        LineChart("l", {"x": "day", "y": "revenue", "sort": sort})


@pytest.mark.parametrize("sort", ["x", "-y", ["a"]])
def test_scatter_plot_sort_is_refused(sort: Any) -> None:
    with pytest.raises(ConfigError, match=r"sort"):
        ScatterPlot("s", {"x": "revenue", "y": "qty", "sort": sort})


def test_bar_chart_sort_still_orders_categories() -> None:
    spec = BarChart("b", {"x": "name", "y": "qty", "sort": "-y"}).render(frame())
    assert spec["encoding"]["x"]["sort"] == "-y"


# -- 5. a declared visualization's data ------------------------------------------------------


def declared() -> Dashboard:
    return Dashboard(
        "d",
        {
            "visualizations": [
                {"type": "Table", "name": "a", "data": "first"},
                {"type": "Table", "name": "b", "data": "second"},
                {"type": "Table", "name": "c"},
            ]
        },
    )


def table_rows(rendered: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return next(v for v in rendered["visualizations"] if v["name"] == name)["spec"]["records"]


def test_dashboard_takes_a_declared_visualizations_frame_by_its_data_name() -> None:
    first, second, third = (pl.DataFrame({"k": [i]}) for i in (1, 2, 3))
    rendered = declared().render({"first": first, "second": second, "c": third})
    assert [table_rows(rendered, n) for n in "abc"] == [[{"k": 1}], [{"k": 2}], [{"k": 3}]]
    # a frame given by the visualization's own name wins over its data name
    rendered = declared().render({"a": third, "first": first, "second": second, "c": third})
    assert table_rows(rendered, "a") == [{"k": 3}]


def test_dashboard_missing_declared_data_names_it() -> None:
    with pytest.raises(DashboardRenderingError, match=r"'b' \(data 'second'\)"):
        declared().render({"first": pl.DataFrame({"k": [1]}), "c": pl.DataFrame({"k": [1]})})


def test_pipeline_file_feeds_dashboard_config_visualizations_their_data(tmp_path: Path) -> None:
    """``dashboards.X.config.visualizations[].data`` was kept and never read: the run failed."""
    from data_pipeline.pipeline import load_pipeline, run_pipeline

    pl.DataFrame({"k": [1, 2]}).write_parquet(tmp_path / "a.parquet")
    pl.DataFrame({"k": [7]}).write_parquet(tmp_path / "b.parquet")
    doc = {
        "sources": {
            "a": {"type": "FileSystemSource", "config": {"path": "a.parquet"}},
            "b": {"type": "FileSystemSource", "config": {"path": "b.parquet"}},
        },
        "dashboards": {
            "board": {
                "path": "board.html",
                "config": {"visualizations": [{"type": "Table", "name": "t", "data": "b"}]},
                "visualizations": [{"type": "Table", "name": "u", "data": "a"}],
            }
        },
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    assert load_pipeline(path).dashboards["board"][2] == {"t": "b", "u": "a"}
    run_pipeline(path)
    page = (tmp_path / "board.html").read_text(encoding="utf-8")
    assert 'data-sort="7"' in page and 'data-sort="2"' in page

    # its columns are checked against its data set's, as the file's own visualizations are
    doc["dashboards"]["board"]["config"]["visualizations"][0]["config"] = {"columns": ["z"]}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"config\.visualizations\[0\]\.config.*'z'"):
        load_pipeline(path)

    doc["dashboards"]["board"]["config"]["visualizations"][0]["data"] = "nope"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"dashboards\.board\.config\.visualizations\[0\]\.data"):
        load_pipeline(path)
