"""Dashboards in real headless Chromium, offline: every chart draws, nothing is fetched, no XSS.

Uses the Debian ``/usr/bin/chromium`` through playwright's ``executable_path`` (never a browser
download). Every request that is not ``file:`` is aborted and recorded; the tests assert there
were none, and no console error, page error or dialog (an ``alert`` from an XSS payload would
open one).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from data_pipeline.visualization import (
    KPI,
    BarChart,
    Dashboard,
    Heatmap,
    LineChart,
    PieChart,
    ScatterPlot,
    Table,
)
from tests.e2e.browser import marks, open_dashboard

pytestmark = pytest.mark.browser

XSS = [
    "<script>alert(1)</script>",
    "</script><script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "javascript:alert(1)",
    "line\u2028sep\u2029para",
    "\"'><svg onload=alert(1)>",
]


def sales(n: int = 120) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "date": [dt.date(2024, 1, 1) + dt.timedelta(days=i % 30) for i in range(n)],
            "region": [["North", "South", "East", "West"][i % 4] for i in range(n)],
            "product": [f"P{i % 5}" for i in range(n)],
            "revenue": [float(100 + (i * 37) % 91) for i in range(n)],
            "qty": [1 + i % 9 for i in range(n)],
        }
    )


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_kind_draws_offline(browser: Any, tmp_path: Path, theme: str) -> None:
    d = Dashboard(
        "all",
        {
            "title": "Everything",
            "theme": theme,
            "columns": 3,
            "filter": {"field": "region", "label": "Region"},
        },
    )
    d.add_visualization(
        LineChart(
            name="line",
            config={
                "x": "date",
                "y": "revenue",
                "color": "region",
                "aggregate": "sum",
                "title": "Line",
            },
        )
    )
    d.add_visualization(
        BarChart(
            name="stacked",
            config={"x": "product", "y": "revenue", "series": "region", "aggregate": "sum"},
        )
    )
    d.add_visualization(
        BarChart(
            name="grouped",
            config={
                "x": "product",
                "y": "revenue",
                "series": "region",
                "aggregate": "sum",
                "mode": "grouped",
            },
        )
    )
    d.add_visualization(
        BarChart(
            name="horizontal",
            config={
                "x": "product",
                "y": "revenue",
                "aggregate": "mean",
                "orientation": "horizontal",
                "sort": "-y",
            },
        )
    )
    d.add_visualization(
        ScatterPlot(
            name="scatter", config={"x": "qty", "y": "revenue", "color": "region", "size": "qty"}
        )
    )
    d.add_visualization(PieChart(name="pie", config={"category": "region", "value": "revenue"}))
    d.add_visualization(PieChart(name="donut", config={"category": "product", "donut": True}))
    d.add_visualization(
        Heatmap(name="heatmap", config={"x": "product", "y": "region", "value": "revenue"})
    )
    d.add_visualization(Table(name="table", config={"max_rows": 10, "sort_by": "revenue"}), span=2)
    d.add_visualization(
        KPI(name="kpi", config={"value": "revenue", "period": "date", "comparison": "previous"})
    )
    d.add_visualization(
        BarChart(name="rolled", config={"x": "product", "y": "revenue", "aggregate": "sum"})
    )
    path = d.save_html(tmp_path / "all.html", sales())
    page, visit = open_dashboard(browser, path)
    expected = {
        "line": 4,  # one path per region
        "stacked": 20,
        "grouped": 20,
        "horizontal": 5,
        "scatter": 120,
        "pie": 4,
        "donut": 5,
        "heatmap": 20,
    }
    for i, name in enumerate(d.list_visualizations()):
        card = f"#dp-viz-{i}"
        assert page.get_attribute(card, "data-name") == name
        if name in expected:
            assert page.get_attribute(f"#dp-chart-{i}", "data-rendered") == "true", name
            assert marks(page, card) == expected[name], name
    assert page.evaluate("document.querySelectorAll('#dp-viz-8 tbody tr').length") == 10
    assert page.text_content("#dp-viz-8 .dp-caption") == "Showing 10 of 120 rows (110 left out)."
    assert page.get_attribute("#dp-chart-9", "data-rendered") == "true"  # the KPI sparkline
    assert page.evaluate("document.documentElement.dataset.theme") == theme

    assert marks(page, "#dp-viz-10") == 5
    bars = "Array.from(document.querySelectorAll('#dp-viz-10 g.role-mark > path')).map(p => p.getAttribute('d'))"
    before = page.evaluate(bars)

    # the dashboard filter: one region left in every chart that has the field
    page.select_option("#dp-filter", label="North")
    page.wait_for_timeout(200)
    # the chart aggregated per product alone is filtered too (Vega-Lite finishes the sum)
    assert marks(page, "#dp-viz-10") == 5
    assert page.evaluate(bars) != before
    assert marks(page, "#dp-viz-0") == 1
    assert marks(page, "#dp-viz-5") == 1
    visible = page.evaluate(
        "Array.from(document.querySelectorAll('#dp-viz-8 tbody tr')).filter(r => !r.hidden)"
        ".map(r => r.cells[1].textContent)"
    )
    assert set(visible) <= {"North"}

    # sorting the table by clicking a header
    page.click("#dp-viz-8 thead th:nth-child(4) button")
    values = page.evaluate(
        "Array.from(document.querySelectorAll('#dp-viz-8 tbody tr')).map(r => Number(r.cells[3].dataset.sort))"
    )
    assert values == sorted(values)
    page.click("#dp-viz-8 thead th:nth-child(4) button")
    values = page.evaluate(
        "Array.from(document.querySelectorAll('#dp-viz-8 tbody tr')).map(r => Number(r.cells[3].dataset.sort))"
    )
    assert values == sorted(values, reverse=True)
    visit.assert_clean()
    page.context.close()


def test_xss_corpus_never_runs(browser: Any, tmp_path: Path) -> None:
    evil = XSS[2]
    data = pl.DataFrame(
        {
            "cat": XSS,
            evil: [float(i + 1) for i in range(len(XSS))],
            XSS[1]: [i % 2 for i in range(len(XSS))],
            "d": [dt.date(2024, 1, 1 + i) for i in range(len(XSS))],
        }
    )
    d = Dashboard(
        XSS[1],
        {"title": XSS[1], "description": XSS[2], "filter": {"field": "cat", "label": XSS[0]}},
    )
    d.add_visualization(
        BarChart(name=XSS[0], config={"x": "cat", "y": evil, "title": XSS[1], "x_title": XSS[3]})
    )
    d.add_visualization(
        LineChart(name="line", config={"x": "d", "y": evil, "color": "cat", "title": XSS[4]})
    )
    d.add_visualization(
        ScatterPlot(name="scatter", config={"x": evil, "y": XSS[1], "color": "cat"})
    )
    d.add_visualization(
        PieChart(name="pie", config={"category": "cat", "value": evil, "title": XSS[5]})
    )
    d.add_visualization(Heatmap(name="heat", config={"x": "cat", "y": XSS[1], "value": evil}))
    d.add_visualization(
        Table(
            name="table",
            config={"title": XSS[0], "titles": {"cat": XSS[1]}, "description": XSS[2]},
        )
    )
    d.add_visualization(
        KPI(
            name="kpi",
            config={
                "value": evil,
                "title": XSS[2],
                "description": XSS[5],
                "suffix": XSS[0],
                "period": "d",
                "comparison": "previous",
            },
        )
    )
    path = d.save_html(tmp_path / "xss.html", {n: data for n in d.list_visualizations()})
    page, visit = open_dashboard(browser, path)
    for i in range(5):
        assert page.get_attribute(f"#dp-chart-{i}", "data-rendered") == "true"
        assert marks(page, f"#dp-viz-{i}") > 0
    # the page shows the payloads as text; no element was injected
    assert page.evaluate("document.querySelectorAll('img, iframe, object, embed').length") == 0
    assert page.evaluate("document.querySelectorAll('body script').length") == 3
    assert page.title() == XSS[1]
    assert page.text_content("header h1") == XSS[1]
    cells = page.evaluate(
        "Array.from(document.querySelectorAll('#dp-viz-5 tbody tr td:first-child')).map(c => c.textContent)"
    )
    assert cells == XSS
    assert XSS[0] in (page.text_content("#dp-viz-6") or "")
    # table and KPI descriptions are shown as text (the <img> payload made no element)
    assert page.text_content("#dp-viz-5 .dp-viz-description") == XSS[2]
    assert page.text_content("#dp-viz-6 .dp-viz-description") == XSS[5]
    # hover every bar so the tooltips render the payloads
    for bar in page.query_selector_all("#dp-viz-0 g.mark-rect path"):
        bar.hover(force=True)
    tooltip = page.evaluate(
        "document.getElementById('vg-tooltip-element') && document.getElementById('vg-tooltip-element').innerHTML"
    )
    assert tooltip is not None and "&lt;img src=x onerror=alert(1)&gt;" in tooltip
    assert "<img" not in tooltip
    # choosing a payload in the filter keeps the matching rows only
    page.select_option("#dp-filter", index=1)
    page.wait_for_timeout(200)
    assert marks(page, "#dp-viz-0") == 1
    page.wait_for_timeout(200)
    visit.assert_clean()
    page.context.close()


def test_line_sorted_by_a_list_runs_in_that_order(browser: Any, tmp_path: Path) -> None:
    """``sort`` on a LineChart: the listed x order is the axis order and the line's path."""
    days = ["Mon", "Tue", "Wed", "Thu", "Fri"]
    data = pl.DataFrame(
        {
            "wd": ["Fri", "Mon", "Wed", "Tue", "Thu"] * 2,
            "s": ["a"] * 5 + ["b"] * 5,
            "n": [5, 1, 3, 2, 4, 50, 10, 30, 20, 40],
        }
    )
    d = Dashboard("sorted", {"filter": {"field": "s"}})
    d.add_visualization(LineChart(name="line", config={"x": "wd", "y": "n", "series": "s",
                                                       "sort": days, "width": 400}))  # fmt: skip
    page, visit = open_dashboard(browser, d.save_html(tmp_path / "sorted.html", data))
    assert page.get_attribute("#dp-chart-0", "data-rendered") == "true"
    assert marks(page, "#dp-viz-0") == 2
    labels = page.evaluate(
        "Array.from(document.querySelectorAll('#dp-viz-0 .role-axis-label text'))"
        ".map(t => t.textContent)"
    )
    assert labels[:5] == days
    xs = page.evaluate(
        "Array.from(document.querySelectorAll('#dp-viz-0 g.mark-line > path'))"
        ".map(p => Array.from(p.getAttribute('d').matchAll(/[ML]([-\\d.]+),/g)).map(m => +m[1]))"
    )
    assert len(xs) == 2 and all(len(x) == 5 and x == sorted(x) for x in xs), xs
    page.select_option("#dp-filter", label="b")
    page.wait_for_timeout(200)
    assert marks(page, "#dp-viz-0") == 1
    visit.assert_clean()
    page.context.close()


def test_large_line_is_downsampled_and_small(browser: Any, tmp_path: Path) -> None:
    n = 200_000
    data = pl.DataFrame({"t": range(n), "v": [float((i * 7919) % 1000) for i in range(n)]}).lazy()
    d = Dashboard("big")
    d.add_visualization(LineChart(name="line", config={"x": "t", "y": "v", "title": "Big"}))
    path = d.save_html(tmp_path / "big.html", data)
    assert path.stat().st_size < 2_000_000
    page, visit = open_dashboard(browser, path)
    assert page.get_attribute("#dp-chart-0", "data-rendered") == "true"
    assert "Downsampled from 200,000 to 5,000 points" in (page.text_content("#dp-chart-0") or "")
    visit.assert_clean()
    page.context.close()


def test_csp_blocks_a_script_that_got_into_the_page(browser: Any, tmp_path: Path) -> None:
    d = Dashboard("csp")
    d.add_visualization(
        LineChart(name="line", config={"x": "date", "y": "revenue", "aggregate": "sum"})
    )
    path = d.save_html(tmp_path / "csp.html", sales())
    html = path.read_text(encoding="utf-8")
    head, _, tail = html.rpartition("</body>")
    injected = head + "<script>document.title = 'pwned'; alert('pwned')</script></body>" + tail
    path.write_text(injected, encoding="utf-8")
    page, visit = open_dashboard(browser, path)
    assert page.get_attribute("#dp-chart-0", "data-rendered") == "true"
    assert page.title() == "csp"
    assert visit.dialogs == []
    assert any("Content Security Policy" in e for e in visit.console_errors)
    page.context.close()


def test_date_range_filter(browser: Any, tmp_path: Path) -> None:
    d = Dashboard(
        "range",
        {"filter": {"field": "date", "type": "date_range", "label": XSS[0]}, "columns": 3},
    )
    d.add_visualization(
        LineChart(
            name="line", config={"x": "date", "y": "revenue", "aggregate": "sum", "points": True}
        )
    )
    d.add_visualization(
        BarChart(name="daily", config={"x": "date", "y": "revenue", "aggregate": "sum"})
    )
    # aggregated away from the date: keeps it as a group key, Vega-Lite finishes the sum
    d.add_visualization(
        BarChart(name="rolled", config={"x": "product", "y": "revenue", "aggregate": "sum"})
    )
    d.add_visualization(
        Heatmap(
            name="heat", config={"x": "date", "y": "region", "value": "revenue", "aggregate": "sum"}
        )
    )
    d.add_visualization(ScatterPlot(name="scatter", config={"x": "qty", "y": "revenue"}))
    d.add_visualization(Table(name="table", config={"max_rows": 200}), span=3)
    path = d.save_html(tmp_path / "range.html", sales())
    page, visit = open_dashboard(browser, path)
    assert page.get_attribute("#dp-from", "value") == "2024-01-01"
    assert page.get_attribute("#dp-to", "max") == "2024-01-30"
    assert XSS[0] in (page.text_content(".dp-range") or "")
    full = {"#dp-viz-0": 31, "#dp-viz-1": 30, "#dp-viz-2": 5, "#dp-viz-3": 60, "#dp-viz-4": 120}
    assert {card: marks(page, card) for card in full} == full
    rows = "Array.from(document.querySelectorAll('#dp-viz-5 tbody tr')).filter(r => !r.hidden)"
    assert page.evaluate(f"{rows}.length") == 120
    bars = "Array.from(document.querySelectorAll('#dp-viz-2 g.role-mark > path')).map(p => p.getAttribute('d'))"
    before = page.evaluate(bars)

    page.fill("#dp-from", "2024-01-10")
    page.fill("#dp-to", "2024-01-19")
    page.wait_for_timeout(200)
    ten_days = {"#dp-viz-0": 11, "#dp-viz-1": 10, "#dp-viz-2": 5, "#dp-viz-3": 20, "#dp-viz-4": 120}
    assert {card: marks(page, card) for card in ten_days} == ten_days
    assert page.evaluate(bars) != before
    dates = page.evaluate(f"{rows}.map(r => r.cells[0].textContent)")
    assert len(dates) == 40
    assert all("2024-01-10" <= x[:10] <= "2024-01-19" for x in dates)

    # an open end: from the 25th on
    page.fill("#dp-to", "")
    page.fill("#dp-from", "2024-01-25")
    page.wait_for_timeout(200)
    assert marks(page, "#dp-viz-1") == 6
    assert page.evaluate(f"{rows}.length") == 24

    page.click("#dp-range-reset")
    page.wait_for_timeout(200)
    assert {card: marks(page, card) for card in full} == full
    assert page.evaluate(f"{rows}.length") == 120
    assert page.evaluate(bars) == before
    assert page.get_attribute("#dp-from", "value") == "2024-01-01"
    visit.assert_clean()
    page.context.close()


def test_charts_fill_their_card_unless_given_a_width(browser: Any, tmp_path: Path) -> None:
    d = Dashboard("widths", {"title": "Widths", "columns": 2})
    d.add_visualization(
        LineChart(name="wide", config={"x": "date", "y": "revenue", "aggregate": "sum"}), span=2
    )
    d.add_visualization(PieChart(name="pie", config={"category": "region", "value": "revenue"}))
    d.add_visualization(
        BarChart(name="fixed", config={"x": "product", "y": "revenue", "width": 150})
    )
    path = d.save_html(tmp_path / "widths.html", sales())
    page, visit = open_dashboard(browser, path)
    page.set_viewport_size({"width": 1400, "height": 900})
    page.wait_for_timeout(300)  # vega-embed follows the container on window resize

    def widths(i: int) -> tuple[float, float]:
        card = page.evaluate(f"document.querySelector('#dp-chart-{i}').clientWidth")
        svg = page.evaluate(
            f"document.querySelector('#dp-chart-{i} svg').getBoundingClientRect().width"
        )
        return float(card), float(svg)

    for i in (0, 1):  # no width given: the drawing spans its card (within the padding)
        card, svg = widths(i)
        assert card > 500 and svg >= 0.9 * card, (i, card, svg)
    card, svg = widths(2)  # an explicit width is kept
    assert svg < 0.6 * card, (card, svg)
    wide_before = widths(0)[1]
    page.set_viewport_size({"width": 900, "height": 900})
    page.wait_for_timeout(300)
    assert widths(0)[1] < wide_before  # and follows the card when the window narrows
    visit.assert_clean()
    page.context.close()
