"""The public API of the visualization layer and the import-weight rule."""

from __future__ import annotations

import data_pipeline.visualization as viz


def test_class_hierarchy() -> None:
    from data_pipeline.core.component import Component

    for cls in (viz.LineChart, viz.BarChart, viz.ScatterPlot, viz.PieChart, viz.Heatmap):
        assert issubclass(cls, viz.Chart)
    for cls in (viz.Chart, viz.Table, viz.KPI):
        assert issubclass(cls, viz.Visualization)
    assert issubclass(viz.Visualization, Component)
    assert viz.Visualization.layer == "visualization"
