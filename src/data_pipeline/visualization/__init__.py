"""Visualization layer: charts, tables, KPI tiles and dashboards that work offline.

Importing this package does not import Altair, vl-convert, polars or pandas; they load when a
chart renders.
"""

from data_pipeline.visualization.base import Chart, Visualization
from data_pipeline.visualization.charts import BarChart, Heatmap, LineChart, PieChart, ScatterPlot
from data_pipeline.visualization.dashboard import Dashboard
from data_pipeline.visualization.kpi import KPI
from data_pipeline.visualization.manager import DashboardManager
from data_pipeline.visualization.table import Table

__all__ = [
    "KPI",
    "BarChart",
    "Chart",
    "Dashboard",
    "DashboardManager",
    "Heatmap",
    "LineChart",
    "PieChart",
    "ScatterPlot",
    "Table",
    "Visualization",
]
