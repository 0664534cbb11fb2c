"""The public API of the visualization layer and the import-weight rule."""

from __future__ import annotations

import subprocess
import sys

import data_pipeline.visualization as viz


def test_all_matches_the_spec_api() -> None:
    spec = {
        "Visualization",
        "Chart",
        "LineChart",
        "BarChart",
        "ScatterPlot",
        "PieChart",
        "Heatmap",
        "Table",
        "Dashboard",
        "DashboardManager",
    }
    assert set(viz.__all__) == spec | {"KPI"}
    for name in viz.__all__:
        assert getattr(viz, name).__doc__


def test_import_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys, data_pipeline.visualization; "
        "print(sorted(m for m in ('altair', 'vl_convert', 'polars', 'pandas', 'duckdb', 'pyarrow')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_class_hierarchy() -> None:
    from data_pipeline.core.component import Component

    for cls in (viz.LineChart, viz.BarChart, viz.ScatterPlot, viz.PieChart, viz.Heatmap):
        assert issubclass(cls, viz.Chart)
    for cls in (viz.Chart, viz.Table, viz.KPI):
        assert issubclass(cls, viz.Visualization)
    assert issubclass(viz.Visualization, Component)
    assert viz.Visualization.layer == "visualization"
