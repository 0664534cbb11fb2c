"""Table and KPI tiles."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

from data_pipeline.core.errors import ChartRenderingError, ConfigError
from data_pipeline.visualization import KPI, Table


def data() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "date": [dt.date(2024, 1, 1) + dt.timedelta(days=i // 2) for i in range(10)],
            "product": [f"P{i}" for i in range(10)],
            "revenue": [1000.0 * (i + 1) + 0.5 for i in range(10)],
            "qty": list(range(10)),
        }
    )


def test_table_sort_limit_formats_and_caption(make_frame: Any) -> None:
    table = Table(
        name="t",
        config={
            "columns": ["product", "revenue", "qty"],
            "sort_by": "revenue",
            "descending": True,
            "max_rows": 3,
            "formats": {"revenue": ",.1f"},
            "titles": {"revenue": "Revenue ($)"},
        },
    )
    spec = table.render(make_frame(data()))
    assert [c["title"] for c in spec["columns"]] == ["product", "Revenue ($)", "qty"]
    assert [c["numeric"] for c in spec["columns"]] == [False, True, True]
    assert spec["rows"] == [["P9", "10,000.5", "9"], ["P8", "9,000.5", "8"], ["P7", "8,000.5", "7"]]
    assert spec["records"][0] == {"product": "P9", "revenue": 10000.5, "qty": 9}
    assert (spec["total_rows"], spec["shown_rows"]) == (10, 3)
    assert spec["caption"] == "Showing 3 of 10 rows (7 left out)."
    assert table.get_metadata()["details"]["rows_left_out"] == 7


def test_table_all_rows_no_caption_and_missing_column() -> None:
    spec = Table(name="t").render(data())
    assert spec["caption"] is None and len(spec["rows"]) == 10
    assert spec["rows"][0][0] == "2024-01-01"
    with pytest.raises(ChartRenderingError, match="'nope'"):
        Table(name="t", config={"columns": ["nope"]}).render(data())
    with pytest.raises(ConfigError, match="format"):
        Table(name="t", config={"formats": {"revenue": "%%bad"}})


def test_kpi_previous_period(make_frame: Any) -> None:
    kpi = KPI(
        name="k",
        config={
            "value": "revenue",
            "period": "date",
            "comparison": "previous",
            "prefix": "$",
            "title": "Rev",
        },
    )
    spec = kpi.render(make_frame(data()))
    # last day: rows 8 and 9 -> 9000.5 + 10000.5; previous: 7000.5 + 8000.5
    assert spec["value"] == 19001.0
    assert spec["comparison"] == 15001.0
    assert spec["formatted_value"] == "$19,001"
    assert spec["direction"] == "up" and spec["tone"] == "good"
    assert spec["delta_text"].startswith("\u25b2 +26.7% vs previous date")
    assert spec["sparkline"]["mark"]["type"] == "line"
    assert len(spec["sparkline"]["datasets"]["source"]) == 5


def test_kpi_target_and_lower_is_better() -> None:
    spec = KPI(
        name="k",
        config={"value": "qty", "aggregate": "mean", "comparison": 10, "higher_is_better": False},
    ).render(data())
    assert spec["value"] == 4.5
    assert spec["direction"] == "down" and spec["tone"] == "good"
    assert spec["sparkline"] is None
    with pytest.raises(ChartRenderingError, match="period"):
        KPI(name="k", config={"value": "qty", "comparison": "previous"}).render(data())
