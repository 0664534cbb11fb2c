"""Dashboards in Chromium with hostile column names and category values (issue 15).

Column names with quotes, dots, brackets and backslashes, and categories named like
``Object.prototype``'s properties, draw in every chart kind; the dropdown filter keeps the rows
of such a category.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from data_pipeline.visualization import (
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

NAMES = ["it's", 'say "hi"', "'lead", "a.b", "x[0]", "back\\slash"]
CATEGORIES = ["__proto__", "constructor", "hasOwnProperty", "toString", "valueOf", "plain"]


def _dashboard(name: str) -> tuple[Dashboard, pl.DataFrame]:
    n = len(CATEGORIES) * 2
    frame = pl.DataFrame(
        {
            name: CATEGORIES * 2,
            "v": [float(i + 1) for i in range(n)],
            "half": ["first"] * len(CATEGORIES) + ["second"] * len(CATEGORIES),
        }
    )
    d = Dashboard("hostile", {"columns": 3, "filter": {"field": name}})
    d.add_visualization(BarChart("bar", {"x": name, "y": "v", "series": "half"}))
    d.add_visualization(Heatmap("heat", {"x": name, "y": "half", "value": "v"}))
    d.add_visualization(LineChart("line", {"x": "v", "y": "v", "series": name}))
    d.add_visualization(PieChart("pie", {"category": name, "value": "v"}))
    d.add_visualization(ScatterPlot("scatter", {"x": "v", "y": "v", "color": name}))
    d.add_visualization(Table("table", {"columns": [name, "v"]}))
    return d, frame


@pytest.mark.parametrize("name", NAMES)
def test_hostile_names_and_categories_draw(browser: Any, tmp_path: Path, name: str) -> None:
    d, frame = _dashboard(name)
    path = d.save_html(tmp_path / "hostile.html", frame)
    page, visit = open_dashboard(browser, path)
    errors = page.evaluate(
        "Array.from(document.querySelectorAll('[data-error]')).map(e => e.textContent)"
    )
    assert errors == []
    visit.assert_clean()
    for i in range(5):
        assert (
            marks(page, f"#dp-viz-{i}") > 0
            or page.evaluate(
                f"document.querySelectorAll('#dp-viz-{i} .mark-rect path, "
                f"#dp-viz-{i} .role-mark path').length"
            )
            > 0
        )
    labels = page.evaluate("document.querySelector('#dp-viz-0 svg').textContent")
    for category in CATEGORIES:
        assert category in labels  # the axis shows the value (the mark is invisible)

    # the dropdown keeps exactly the rows of the chosen category, in the charts and the table
    options = page.evaluate(
        "Array.from(document.querySelectorAll('#dp-filter option')).map(o => o.textContent)"
    )
    assert sorted(options[1:]) == sorted(CATEGORIES)
    page.select_option("#dp-filter", label="constructor")
    page.wait_for_timeout(200)
    rows = page.evaluate(
        "Array.from(document.querySelectorAll('#dp-viz-5 tbody tr'))"
        ".filter(r => !r.hidden).map(r => r.cells[0].textContent)"
    )
    assert rows == ["constructor", "constructor"]
    bars = page.evaluate("document.querySelectorAll('#dp-viz-0 .mark-rect path').length")
    assert bars == 2  # one bar per half, of the one category left
    visit.assert_clean()
