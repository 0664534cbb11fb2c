"""Dashboard: visualizations in a grid, rendered to one JSON spec or one offline HTML file."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Literal

import narwhals as nw
from pydantic import Field

from data_pipeline.core.component import Component
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import (
    ConfigError,
    DashboardRenderingError,
    DuplicateNameError,
    HTMLExportError,
    NotFoundError,
)
from data_pipeline.visualization.base import Visualization, _write_atomic, unmark, vega_name

__all__ = [
    "Dashboard",
    "DashboardConfig",
    "FilterConfig",
    "VisualizationSpec",
    "create_visualization",
    "visualization_types",
]

#: the most distinct values a dashboard filter offers
MAX_FILTER_VALUES = 500


class FilterConfig(ConfigModel):
    """A dashboard-level filter on ``field``: a dropdown over its values, or a date range.

    ``type: "dropdown"`` (the default) offers the distinct values of ``field``;
    ``type: "date_range"`` offers two date inputs (from, to; both inclusive) over a Date or
    Datetime ``field``.

    Example:
        >>> FilterConfig(field="date", type="date_range", label="Order date").type
        'date_range'
    """

    field: str
    """The column to filter on. Charts and tables whose embedded rows have it are filtered
    (KPI tiles are not); a line chart, bar chart or heatmap that aggregates with ``sum``,
    ``count``, ``min`` or ``max`` keeps it as an extra group key when that stays within its
    ``max_points``, so it can be filtered too."""
    label: str | None = None
    """The text shown beside the filter control. None: the column name."""
    type: Literal["dropdown", "date_range"] = "dropdown"
    """``dropdown``: a choice among the column's distinct values (the first 500, in sorted
    order); ``date_range``: from and to date inputs, both inclusive, over a Date or Datetime
    column (another type fails the render)."""


class VisualizationSpec(ConfigModel):
    """One visualization declared in a dashboard config (e.g. from a pipeline YAML file)."""

    type: str
    """The class name: ``LineChart``, ``BarChart``, ``ScatterPlot``, ``PieChart``, ``Heatmap``,
    ``Table`` or ``KPI``; another name is a ConfigError listing these."""
    name: str
    """The visualization's name: unique within the dashboard, and the key of its frame when
    ``render`` / ``save_html`` get a dict of frames."""
    config: dict[str, Any] = Field(default_factory=dict)
    """The config of that class (its keys are listed under the class)."""
    span: int = Field(default=1, ge=1, le=12)
    """How many grid columns the visualization's card spans (1 to 12, cut to the dashboard's
    ``columns``)."""
    data: str | None = None
    """The name of the data set this visualization draws: when ``render`` / ``save_html`` /
    ``save_images`` get a dict of frames, the visualization takes the frame under its own
    name if there is one, else the frame under this name (so several visualizations can share
    one entry). In a pipeline file it names a data set of the file (a source, transformation
    or processing output). None: the frame under the visualization's name."""


class DashboardConfig(ConfigModel):
    """Dashboard keys: ``title``, ``description``, ``columns``, ``theme``, ``filter``, ``visualizations``."""

    title: str | None = None
    """The page heading and the HTML ``<title>``. None: the dashboard's name."""
    description: str | None = None
    """A line of text under the heading of the HTML page. None: no line."""
    columns: int = Field(default=2, ge=1, le=12)
    """The number of grid columns (1 to 12); a visualization's ``span`` is cut to it. On
    screens narrower than 800 pixels the page shows one column."""
    theme: Literal["light", "dark"] = "light"
    """The page colours; ``dark`` also applies Vega's dark theme to every chart and sparkline."""
    filter: FilterConfig | None = None
    """One dashboard-wide filter (its keys below): choosing a value or a date range redraws
    the charts and tables that have the column. None: no filter."""
    visualizations: list[VisualizationSpec] = Field(default_factory=list)
    """Visualizations built from config when the dashboard is built, in order (each
    ``{type, name, config, span}``); ``add_visualization`` adds more."""


def visualization_types() -> dict[str, type[Visualization]]:
    """Visualization classes by the ``type`` names a dashboard config may use."""
    from data_pipeline.visualization.charts import (
        BarChart,
        Heatmap,
        LineChart,
        PieChart,
        ScatterPlot,
    )
    from data_pipeline.visualization.kpi import KPI
    from data_pipeline.visualization.table import Table

    classes: list[type[Visualization]] = [
        LineChart,
        BarChart,
        ScatterPlot,
        PieChart,
        Heatmap,
        Table,
        KPI,
    ]
    return {cls.__name__: cls for cls in classes}


def create_visualization(spec: VisualizationSpec | Mapping[str, Any]) -> Visualization:
    """Build a visualization from ``{"type": "LineChart", "name": ..., "config": {...}}``."""
    from data_pipeline.core.config import validate_config

    if not isinstance(spec, VisualizationSpec):
        spec = validate_config(VisualizationSpec, spec, component="visualization")
    types = visualization_types()
    if spec.type not in types:
        raise ConfigError(
            f"visualization {spec.name!r}: unknown type {spec.type!r}",
            hint=f"use one of: {', '.join(types)}",
        )
    return types[spec.type](spec.name, spec.config)


@dataclass
class _Item:
    visualization: Visualization
    span: int


class Dashboard(Component):
    """Dashboard containing multiple visualizations laid out in a grid.

    ``render(data)`` returns a JSON-able dict (each chart's Vega-Lite spec and the layout);
    ``save_html(path, data)`` writes one self-contained HTML file that draws offline. ``data`` is a
    dict of visualization name to frame, or one frame used by every visualization; a
    visualization declared in the config with ``data: NAME`` also takes the frame under
    ``NAME`` when the dict has none under its own name.

    Raises:
        ConfigError: the config is invalid (an entry of ``visualizations`` with an unknown
            ``type`` or a bad config is named by its index), ``add_visualization`` got something
            that is not a Visualization or a ``span`` below 1, or ``reorder`` did not name every
            visualization exactly once.
        DuplicateNameError: a visualization of that name is on the dashboard already.
        NotFoundError: no visualization has the given name (the message lists them).
        DashboardRenderingError: ``render`` on an empty dashboard, ``data`` as a dict with a name
            missing or unknown (neither a visualization nor a declared ``data`` name), or a date-range filter whose field no visualization has or that
            holds no dates.
        ChartRenderingError: raised by a visualization while rendering (as are its other
            errors), passed on unchanged.
        HTMLExportError: ``save_html`` or ``save_images`` could not write the file or folder.

    Example:
        >>> dashboard = Dashboard(name="sales_dashboard", config={
        ...     "title": "Sales", "columns": 2, "theme": "dark", "filter": {"field": "region"},
        ... })
        >>> dashboard.settings.columns
        2
        >>> Dashboard(name="by_date", config={
        ...     "filter": {"field": "date", "type": "date_range", "label": "Order date"},
        ... }).settings.filter.type
        'date_range'
    """

    layer: ClassVar[str] = "visualization"
    error_class = DashboardRenderingError
    config_model: ClassVar[type[ConfigModel]] = DashboardConfig
    settings: DashboardConfig

    def __init__(self, name: str, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, config)
        self._items: list[_Item] = []
        #: visualization name -> the ``data`` name its VisualizationSpec declared
        self.data_names: dict[str, str] = {}
        for i, spec in enumerate(self.settings.visualizations):
            try:
                viz = create_visualization(spec)
            except ConfigError as exc:
                raise ConfigError(
                    f"config.visualizations[{i}]: {exc.detail}", component=self.label, hint=exc.hint
                ) from None
            self.add_visualization(viz, span=spec.span)
            if spec.data is not None:
                self.data_names[viz.name] = spec.data

    # -- contents ------------------------------------------------------------------------------

    @property
    def title(self) -> str:
        return self.settings.title or self.name

    @property
    def visualizations(self) -> list[Visualization]:
        return [i.visualization for i in self._items]

    def add_visualization(
        self, visualization: Visualization, *, span: int = 1, position: int | None = None
    ) -> Visualization:
        """Add a visualization (spanning ``span`` grid columns) at the end or at ``position``."""
        if not isinstance(visualization, Visualization):
            raise ConfigError(
                f"add_visualization expects a Visualization, got {type(visualization).__name__}",
                component=self.label,
                hint="pass e.g. LineChart(name=..., config={...})",
            )
        if visualization.name in self.list_visualizations():
            raise DuplicateNameError(
                f"a visualization named {visualization.name!r} is already on the dashboard",
                component=self.label,
                hint="choose another name, or remove_visualization() it first",
            )
        if not isinstance(span, int) or span < 1:
            raise ConfigError(
                f"span must be a positive integer, got {span!r}",
                component=self.label,
                hint=f"use 1 to {self.settings.columns}",
            )
        item = _Item(visualization, min(span, self.settings.columns))
        if position is None:
            self._items.append(item)
        else:
            self._items.insert(position, item)
        return visualization

    def get_visualization(self, name: str) -> Visualization:
        return self._items[self._index(name)].visualization

    def list_visualizations(self) -> list[str]:
        return [i.visualization.name for i in self._items]

    def remove_visualization(self, name: str) -> Visualization:
        """Remove and return the visualization named ``name``."""
        removed = self._items.pop(self._index(name)).visualization
        self.data_names.pop(name, None)
        return removed

    def reorder(self, names: Sequence[str]) -> None:
        """Put the visualizations in the order of ``names`` (every name exactly once)."""
        current = self.list_visualizations()
        if isinstance(names, str) or sorted(names) != sorted(current):
            raise ConfigError(
                f"reorder needs each visualization exactly once, got {list(names)!r}",
                component=self.label,
                hint=f"the dashboard has: {', '.join(map(repr, current))}",
            )
        by_name = {i.visualization.name: i for i in self._items}
        self._items = [by_name[n] for n in names]

    def _index(self, name: str) -> int:
        for i, item in enumerate(self._items):
            if item.visualization.name == name:
                return i
        known = self.list_visualizations()
        raise NotFoundError(
            f"unknown visualization {name!r}",
            component=self.label,
            hint=f"the dashboard has: {', '.join(map(repr, known))}" if known else "it is empty",
        )

    # -- rendering -----------------------------------------------------------------------------

    def render(self, data: Any) -> dict[str, Any]:
        """Render every visualization; returns a JSON-able dict of specs and layout."""
        with self._operation("render") as op:
            result = self._render(data)
            op.details["visualizations"] = len(result["visualizations"])
            return result

    def _data_for(self, data: Any) -> dict[str, Any]:
        """The frame of each visualization: ``data`` itself, or from a dict of frames by the
        visualization's name, else by the ``data`` name its spec declared."""
        names = self.list_visualizations()
        if not isinstance(data, Mapping):
            return dict.fromkeys(names, data)
        declared = {n: self.data_names[n] for n in names if n in self.data_names}
        unknown = [k for k in data if k not in names and k not in declared.values()]
        if unknown:
            known = [*names, *(d for d in dict.fromkeys(declared.values()) if d not in names)]
            raise DashboardRenderingError(
                f"data given for unknown visualization(s) {', '.join(map(repr, unknown))}",
                component=self.label,
                hint=f"the dashboard has: {', '.join(map(repr, known))}",
            )
        out: dict[str, Any] = {}
        missing: list[str] = []
        for n in names:
            if n in data:
                out[n] = data[n]
            elif n in declared and declared[n] in data:
                out[n] = data[declared[n]]
            else:
                missing.append(f"{n!r} (data {declared[n]!r})" if n in declared else repr(n))
        if missing:
            raise DashboardRenderingError(
                f"no data for visualization(s) {', '.join(missing)}",
                component=self.label,
                hint='pass data={"<visualization name>": frame, ...} with one entry per '
                "visualization (or per declared data name), or one frame for all",
            )
        return out

    def _render(self, data: Any) -> dict[str, Any]:
        if not self._items:
            raise DashboardRenderingError(
                "the dashboard has no visualizations",
                component=self.label,
                hint="add one with dashboard.add_visualization(LineChart(...))",
            )
        per_viz = self._data_for(data)
        s = self.settings
        theme = _theme_config(s.theme)
        flt = s.filter
        keep = [flt.field] if flt else []
        values: dict[str, Any] = {}
        items = []
        precollected = self._collect_together(per_viz, keep)
        for item in self._items:
            viz = item.visualization
            spec = viz.render(
                per_viz[viz.name], keep_fields=keep, precollected=precollected.get(viz.name)
            )
            entry: dict[str, Any] = {
                "name": viz.name,
                "type": type(viz).__name__,
                "kind": viz.kind,
                "title": viz.title,
                "span": item.span,
                "spec": spec,
            }
            rows = _rows_of(viz.kind, spec)
            if viz.kind == "vega-lite":
                _fit_card_width(viz, spec)
            if viz.kind == "vega-lite" and theme:
                spec["config"] = _merge(spec.get("config", {}), theme)
            if viz.kind == "kpi" and spec.get("sparkline") and theme:
                spec["sparkline"]["config"] = _merge(spec["sparkline"].get("config", {}), theme)
            field = ""  # the filter's column, by its name in this visualization's rows
            if flt is not None:
                field = vega_name(flt.field) if viz.kind == "vega-lite" else flt.field
            if flt is not None and rows and any(field in r for r in rows[:1]):
                entry["filterable"] = True
                if flt.type == "date_range":
                    _check_dates(rows, field, viz.name, self.label)
                    days = [r[field][:10] for r in rows if r.get(field) is not None]
                    if days:
                        values["min"] = min([values.get("min", days[0]), *days])
                        values["max"] = max([values.get("max", days[0]), *days])
                else:
                    for r in rows:
                        v = unmark(r.get(field))
                        values.setdefault(_key(v), v)
            items.append(entry)
        filter_spec = None
        if flt is not None and flt.type == "date_range":
            if not any(i.get("filterable") for i in items):
                raise DashboardRenderingError(
                    f"no visualization has the date-range filter's field {flt.field!r}",
                    component=self.label,
                    hint="name a Date or Datetime column the charts embed (as x, series or an "
                    "aggregated chart's group key), or drop the filter",
                )
            filter_spec = {
                "type": "date_range",
                "field": flt.field,
                "label": flt.label or flt.field,
                "min": values.get("min"),
                "max": values.get("max"),
            }
        elif flt is not None:
            ordered = sorted(values.values(), key=lambda v: (v is None, str(v)))
            filter_spec = {
                "type": "dropdown",
                "field": flt.field,
                "label": flt.label or flt.field,
                "values": ordered[:MAX_FILTER_VALUES],
                "truncated": len(ordered) > MAX_FILTER_VALUES,
            }
        return {
            "name": self.name,
            "title": self.title,
            "description": s.description,
            "theme": s.theme,
            "generated_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "layout": {
                "columns": s.columns,
                "items": [{"name": i["name"], "span": i["span"]} for i in items],
            },
            "filter": filter_spec,
            "visualizations": items,
        }

    def _collect_together(
        self, per_viz: Mapping[str, Any], keep: Sequence[str]
    ) -> dict[str, dict[Any, Any]]:
        """Collect the charts' lazy Polars aggregations in ONE ``collect_all`` (run in parallel,
        a shared scan read once) instead of one collect per chart; ``{}`` when fewer than two."""
        from data_pipeline.visualization.base import Chart

        planned: list[tuple[str, Any, Any]] = []
        for item in self._items:
            viz = item.visualization
            if not isinstance(viz, Chart):
                continue
            for key, query in viz.plan_queries(per_viz[viz.name], keep_fields=keep):
                if query.implementation is nw.Implementation.POLARS:
                    planned.append((viz.name, key, query.to_native()))
        if len(planned) < 2:
            return {}
        import polars as pl

        try:
            frames = pl.collect_all([q for _, _, q in planned])
        except Exception:  # each chart then collects (and reports errors) on its own
            return {}
        out: dict[str, dict[Any, Any]] = {}
        for (name, key, _), frame in zip(planned, frames, strict=True):
            out.setdefault(name, {})[key] = frame
        return out

    def save_html(self, path: str | Path, data: Any) -> Path:
        """Write the dashboard as ONE self-contained HTML file (no network needed to open it)."""
        from data_pipeline.visualization.html import build_page

        target = Path(path)
        rendered = self.render(data)
        with self._operation("save_html") as op:
            page = build_page(rendered)
            payload = page.encode("utf-8")
            _write_atomic(target, payload, self.label)
            op.details.update({"path": str(target), "bytes": len(payload)})
        self.logger.info("%s: wrote %s (%d bytes)", self.label, target, len(payload))
        return target

    def save_images(
        self, directory: str | Path, data: Any, *, format: Literal["png", "svg"] = "png"
    ) -> list[Path]:
        """Write each chart as ``<directory>/<name>.png`` (or ``.svg``) through vl-convert."""
        from data_pipeline.visualization.base import Chart

        folder = Path(directory)
        per_viz = self._data_for(data)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HTMLExportError(
                f"could not create the folder {str(folder)!r}: {exc.strerror or exc}",
                component=self.label,
                hint="check the path and permissions",
            ) from exc
        paths = []
        for item in self._items:
            viz = item.visualization
            if not isinstance(viz, Chart):
                continue
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in viz.name)
            target = folder / f"{safe}.{format}"
            if format == "png":
                viz.save_png(target, per_viz[viz.name])
            else:
                viz.save_svg(target, per_viz[viz.name])
            paths.append(target)
        return paths

    def _translate_error(self, exc: BaseException, operation: str) -> BaseException | None:
        if (
            operation == "save_html"
            and isinstance(exc, OSError)
            and not isinstance(exc, HTMLExportError)
        ):
            return HTMLExportError(
                f"could not write the HTML file: {exc}",
                component=self.label,
                hint="check the file path and permissions",
            )
        return super()._translate_error(exc, operation)


def _fit_card_width(viz: Visualization, spec: dict[str, Any]) -> None:
    """A chart whose ``width`` the user did not set fills its card (and follows its resizes)."""
    if "width" in viz.settings.model_fields_set or "width" not in spec:
        return
    if any(key in spec for key in ("facet", "repeat", "concat", "hconcat", "vconcat")):
        return  # Vega-Lite sizes composed views by their parts; "container" does not apply
    spec["width"] = "container"
    spec.setdefault("autosize", {"type": "fit-x", "contains": "padding"})


def _rows_of(kind: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    if kind == "vega-lite":
        rows = spec.get("datasets", {}).get("source", [])
        return rows if isinstance(rows, list) else []
    if kind == "table":
        return list(spec.get("records", []))
    return []


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}($|T)")


def _check_dates(rows: list[dict[str, Any]], field: str, viz: str, component: str) -> None:
    """The date-range filter's field must hold dates (ISO text in the embedded rows)."""
    for r in rows:
        v = r.get(field)
        if v is not None and not (isinstance(v, str) and _ISO_DATE.match(v)):
            raise DashboardRenderingError(
                f"the date-range filter's field {field!r} holds {v!r} in visualization {viz!r}, "
                "not a date",
                component=component,
                hint="use a Date or Datetime column (parse it first, e.g. with try_parse_dates), "
                'or a dropdown filter ("type": "dropdown")',
            )


def _key(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str)


def _theme_config(theme: str) -> dict[str, Any]:
    if theme != "dark":
        return {}
    import vl_convert as vlc

    return copy.deepcopy(dict(vlc.get_themes()["dark"]))


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out
