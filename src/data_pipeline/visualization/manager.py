"""DashboardManager: named dashboards; render them to a JSON spec or save them as HTML."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from data_pipeline.core.errors import ConfigError
from data_pipeline.core.registry import Registry
from data_pipeline.visualization.base import Visualization
from data_pipeline.visualization.dashboard import Dashboard

__all__ = ["DashboardManager"]


class DashboardManager:
    """Manager for dashboards: create, get, list, remove, render and save them by name.

    Raises:
        ConfigError: ``register_dashboard`` got something that is not a Dashboard, or
            ``create_dashboard`` got an invalid config.
        DuplicateNameError: a dashboard of that name is registered already.
        NotFoundError: no dashboard has the given name (the message lists the registered ones).
        DashboardRenderingError: raised by the dashboard's ``render`` / ``save_html`` (as are
            its other errors), passed on unchanged.

    Example:
        >>> from data_pipeline.visualization import DashboardManager, LineChart
        >>> manager = DashboardManager()
        >>> dashboard = manager.create_dashboard("sales_dashboard", {"title": "Sales"})
        >>> _ = dashboard.add_visualization(LineChart(name="sales_chart", config={"x": "date", "y": "sales"}))
        >>> manager.list_dashboards()
        ['sales_dashboard']
    """

    def __init__(self) -> None:
        self.dashboards: Registry[Dashboard] = Registry("dashboard", "DashboardManager")

    def create_dashboard(self, name: str, config: Mapping[str, Any] | None = None) -> Dashboard:
        """Create an empty dashboard, register it under ``name`` and return it."""
        if name in self.dashboards:
            self.dashboards.add(name, self.dashboards.get(name))  # raises DuplicateNameError
        return self.dashboards.add(name, Dashboard(name, config))

    def register_dashboard(self, dashboard: Dashboard) -> Dashboard:
        if not isinstance(dashboard, Dashboard):
            raise ConfigError(
                f"register_dashboard expects a Dashboard, got {type(dashboard).__name__}",
                component="DashboardManager",
            )
        return self.dashboards.add(dashboard.name, dashboard)

    def get_dashboard(self, name: str) -> Dashboard:
        return self.dashboards.get(name)

    def list_dashboards(self) -> list[str]:
        return self.dashboards.names()

    def remove_dashboard(self, name: str) -> Dashboard:
        return self.dashboards.remove(name)

    def add_visualization(
        self, dashboard_name: str, visualization: Visualization, **options: Any
    ) -> Visualization:
        """Add a visualization to the dashboard named ``dashboard_name``."""
        return self.dashboards.get(dashboard_name).add_visualization(visualization, **options)

    def render_dashboard(self, name: str, data: Any) -> dict[str, Any]:
        """Render the dashboard ``name``; ``data`` maps visualization names to frames."""
        return self.dashboards.get(name).render(data)

    def save_html(self, name: str, path: str | Path, data: Any) -> Path:
        """Write the dashboard ``name`` as one self-contained HTML file."""
        return self.dashboards.get(name).save_html(path, data)

    def get_metadata(self, name: str | None = None) -> dict[str, Any]:
        if name is not None:
            return self.dashboards.get(name).get_metadata()
        return {n: d.get_metadata() for n, d in self.dashboards.items()}
