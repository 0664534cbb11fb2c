"""Visualization example: a sales dashboard from generated data, saved as one offline HTML file.

Run with ``python -m data_pipeline.visualization.example``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from data_pipeline.visualization import (
    KPI,
    BarChart,
    DashboardManager,
    Heatmap,
    LineChart,
    PieChart,
    ScatterPlot,
    Table,
)
from data_pipeline.visualization.config import (
    bar_chart_config,
    dashboard_config,
    heatmap_config,
    kpi_config,
    line_chart_config,
    pie_chart_config,
    scatter_plot_config,
    table_config,
)

if TYPE_CHECKING:
    import polars as pl

__all__ = ["main", "make_sales", "save_doc_images"]


def make_sales(rows: int = 2_000, seed: int = 7) -> pl.DataFrame:
    """A deterministic sales frame (polars): date, product_id, region, quantity, price, ..."""
    import datetime as dt

    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    start = dt.date(2024, 1, 1)
    days = rng.integers(0, 90, rows)
    quantity = rng.integers(1, 10, rows)
    price = rng.uniform(5, 50, rows).round(2)
    return pl.DataFrame(
        {
            "date": [start + dt.timedelta(days=int(d)) for d in days],
            "product_id": rng.choice(["P1", "P2", "P3", "P4"], rows),
            "region": rng.choice(["North", "South", "East", "West"], rows),
            "quantity": quantity,
            "price": price,
            "revenue": (quantity * price).round(2),
            "age": rng.integers(18, 80, rows),
            "income": rng.normal(50_000, 15_000, rows).round(0),
            "education": rng.choice(["high school", "bachelor", "master"], rows),
        }
    )


def main(output_dir: str | None = None) -> Path:
    """Build the dashboard, save it as HTML in ``output_dir`` (a temp dir by default), print it."""
    import polars as pl

    sales = make_sales()
    daily = sales.group_by("date").agg(pl.col("revenue").sum().alias("sales")).sort("date")
    manager = DashboardManager()
    dashboard = manager.create_dashboard("sales_dashboard", dashboard_config)
    dashboard.add_visualization(KPI(name="revenue_kpi", config=kpi_config))
    dashboard.add_visualization(LineChart(name="sales_chart", config=line_chart_config))
    dashboard.add_visualization(BarChart(name="by_product", config=bar_chart_config))
    dashboard.add_visualization(PieChart(name="share", config=pie_chart_config))
    dashboard.add_visualization(ScatterPlot(name="age_income", config=scatter_plot_config))
    dashboard.add_visualization(Heatmap(name="heatmap", config=heatmap_config))
    dashboard.add_visualization(Table(name="top_days", config=table_config), span=2)
    data = {
        "revenue_kpi": sales,
        "sales_chart": daily,
        "by_product": sales,
        "share": sales,
        "age_income": sales,
        "heatmap": sales,
        "top_days": sales,
    }
    spec = manager.render_dashboard("sales_dashboard", data)
    folder = Path(output_dir or tempfile.mkdtemp(prefix="dp-viz-"))
    path = manager.save_html("sales_dashboard", folder / "sales_dashboard.html", data)
    print(f"rendered {len(spec['visualizations'])} visualizations")
    print(f"dashboard written to {path} ({path.stat().st_size:,} bytes)")
    return path


def save_doc_images(folder: str | Path) -> list[Path]:
    """One PNG per chart type (and the KPI sparkline) for docs/visualization.md, via vl-convert."""
    import polars as pl

    sales = make_sales()
    daily = sales.group_by("date").agg(pl.col("revenue").sum().alias("sales")).sort("date")
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    charts = [
        (LineChart(name="line_chart", config=line_chart_config), daily),
        (BarChart(name="bar_chart", config=bar_chart_config), sales),
        (
            BarChart(
                name="bar_chart_grouped",
                config={
                    **bar_chart_config,
                    "series": "region",
                    "mode": "grouped",
                    "title": "Grouped",
                },
            ),
            sales,
        ),
        (
            BarChart(
                name="bar_chart_horizontal",
                config={**bar_chart_config, "orientation": "horizontal", "title": "Horizontal"},
            ),
            sales,
        ),
        (ScatterPlot(name="scatter_plot", config=scatter_plot_config), sales),
        (PieChart(name="pie_chart", config=pie_chart_config), sales),
        (Heatmap(name="heatmap", config=heatmap_config), sales),
    ]
    paths = [
        chart.save_png(target / f"{chart.name}.png", data, scale=1.0) for chart, data in charts
    ]
    kpi = KPI(name="kpi", config=kpi_config).render(sales)
    import vl_convert as vlc

    from data_pipeline.visualization.base import _write_atomic, vl_version

    png = bytes(vlc.vegalite_to_png(kpi["sparkline"], scale=1.0, vl_version=vl_version()))
    paths.append(_write_atomic(target / "kpi_sparkline.png", png, "KPI 'kpi'"))
    for p in paths:
        print(p)
    return paths


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "--images":
        save_doc_images(sys.argv[2])
    else:
        main()
