"""Config templates for the visualization layer (plain dicts, as in the spec).

``color`` is a column name when the data has such a column (one series per value), otherwise a
literal CSS colour for the marks.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "bar_chart_config",
    "dashboard_config",
    "heatmap_config",
    "kpi_config",
    "line_chart_config",
    "pie_chart_config",
    "scatter_plot_config",
    "table_config",
]

line_chart_config: dict[str, Any] = {
    "x": "date",
    "y": "sales",
    "title": "Sales Over Time",
    "color": "blue",
}

bar_chart_config: dict[str, Any] = {
    "x": "product_id",
    "y": "revenue",
    "title": "Revenue by Product",
    "aggregate": "sum",
    "sort": "-y",
    "orientation": "vertical",
    "mode": "stacked",
}

scatter_plot_config: dict[str, Any] = {
    "x": "age",
    "y": "income",
    "title": "Income by Age",
    "color": "education",
    "size": "quantity",
}

pie_chart_config: dict[str, Any] = {
    "category": "region",
    "value": "revenue",
    "title": "Revenue Share by Region",
    "donut": True,
}

heatmap_config: dict[str, Any] = {
    "x": "product_id",
    "y": "region",
    "value": "revenue",
    "aggregate": "sum",
    "title": "Revenue by Product and Region",
    "scheme": "blues",
}

table_config: dict[str, Any] = {
    "title": "Top Days",
    "columns": ["date", "product_id", "revenue"],
    "sort_by": "revenue",
    "descending": True,
    "formats": {"revenue": ",.2f"},
    "max_rows": 20,
}

kpi_config: dict[str, Any] = {
    "title": "Revenue",
    "value": "revenue",
    "aggregate": "sum",
    "period": "date",
    "comparison": "previous",
    "prefix": "$",
}

dashboard_config: dict[str, Any] = {
    "title": "Sales Dashboard",
    "description": "Daily revenue per product",
    "columns": 2,
    "theme": "light",
    "filter": {"field": "region", "label": "Region"},
}
