"""Visualization and Chart: the bases of every chart, table and KPI tile.

``Visualization.render(data)`` owns the public method (timing, status, rows in and out, error
translation through :meth:`Component._operation`); a subclass fills ``_render``. ``Chart`` adds what
every Vega-Lite chart shares: column checks, aggregation before collecting (on the input's own engine
through Narwhals), a cap on embedded points with a caption saying what was done, JSON-safe records,
and PNG/SVG export through vl-convert. Altair and vl-convert are imported inside functions only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import narwhals as nw
from pydantic import Field, field_validator

from data_pipeline.core.component import Component, Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import (
    ChartRenderingError,
    ColumnNotFoundError,
    HTMLExportError,
    VisualizationError,
)
from data_pipeline.core.frames import (
    column_names,
    require_columns,
    row_count,
    to_narwhals,
    to_polars,
)

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "AGGREGATES",
    "BaseChartConfig",
    "Chart",
    "ChartColumnNotFoundError",
    "ChartConfig",
    "Prepared",
    "RenderCall",
    "Visualization",
    "VisualizationConfig",
    "field_ref",
    "to_records",
    "unmark",
    "vega_name",
]

Aggregate = Literal["sum", "mean", "median", "min", "max", "count", "n_unique", "std"]
AGGREGATES: tuple[str, ...] = ("sum", "mean", "median", "min", "max", "count", "n_unique", "std")
FieldType = Literal["quantitative", "temporal", "ordinal", "nominal"]

#: d3-format / d3-time-format strings: no quotes or backslashes (Vega-Lite puts them in expressions).
_FORMAT = re.compile(r"^[\w\s,.%$#+\-:/()\[\]~<>^=]*$")
#: a literal colour: #rgb[a], #rrggbb[aa], a CSS colour name, or rgb()/hsl() with numbers only.
_COLOR = re.compile(r"^(#[0-9a-fA-F]{3,8}|[a-zA-Z]{3,30}|(rgb|rgba|hsl|hsla)\([0-9.,%\s]+\))$")
_SCHEME = re.compile(r"^[a-z0-9-]{2,40}$")


class ChartColumnNotFoundError(ChartRenderingError, ColumnNotFoundError):
    """A column named in a chart's config is not in the data (a ChartRenderingError and a KeyError)."""


class VisualizationConfig(ConfigModel):
    """Keys shared by every visualization."""

    title: str | None = None
    """The heading shown with the visualization: a chart's title (top left, with the note on
    capped or downsampled rows as its subtitle), a table's heading, a KPI tile's label. None:
    charts and tables have no heading, a KPI tile shows the visualization's name."""
    description: str | None = None
    """Charts: the Vega-Lite ``description`` of the spec, which Vega uses as the chart's
    accessible label (``aria-label``); nothing is drawn. Tables and KPI tiles: a line of text
    under the heading (under the label of a KPI tile), HTML-escaped, and a table's accessible
    description (``aria-describedby``); ``render`` returns it as ``description``. None: no
    text."""


class BaseChartConfig(VisualizationConfig):
    """Keys shared by every chart: size, tooltip, colour scheme and the cap on embedded rows."""

    width: int | Literal["container"] = 400
    """Width of the plotting area in pixels, or ``"container"`` to fill the element the chart
    is embedded in. In a dashboard a chart without an explicit ``width`` fills its card."""
    height: int | Literal["container"] = 250
    """Height of the plotting area in pixels, or ``"container"`` to fill the height of the
    element the chart is embedded in."""
    tooltip: bool | list[str] = True
    """Hover tooltips: ``true`` shows the columns the chart encodes, ``false`` none, a list
    names the columns to show. Line, bar and scatter charts read listed columns from the data
    (missing ones fail the render; with ``aggregate`` only group keys and the value column are
    allowed); pie charts and heatmaps show only the listed columns they already encode."""
    scheme: str | None = None
    """A Vega colour scheme name (``tableau10``, ``category20``, ``blues``, ``viridis``, ...)
    for the colour scale: series colours, pie slices, heatmap cells. None: Vega-Lite's default
    (``tableau10`` for categories). Only the characters ``a-z 0-9 -`` are accepted."""
    max_points: int = Field(default=5000, ge=10)
    """The most rows embedded in the chart, counted after aggregation (at least 10). Above it a
    line chart is downsampled per series (LTTB), a bar chart summed per category (when not
    aggregated already) and cut to the top categories by total, a scatter plot randomly
    sampled (seed 0), a heatmap cut to its first rows; the subtitle says what was done. A pie
    chart draws at most the smaller of ``max_slices`` and ``max_points`` slices (the rest
    summed into one). On a lazy input (Polars LazyFrame, DuckDB, Spark) it also bounds what
    is collected: at most ``max_points + 1`` rows, the cut done on the input's engine (a line
    chart then keeps the lowest and highest point per bucket, a scatter plot an evenly spaced
    sample; see docs/visualization.md)."""

    @field_validator("scheme")
    @classmethod
    def _check_scheme(cls, value: str | None) -> str | None:
        if value is not None and not _SCHEME.match(value):
            raise ValueError("a Vega colour scheme name such as 'tableau10', 'blues' or 'viridis'")
        return value


class ChartConfig(BaseChartConfig):
    """Keys of x/y charts (the spec's ``x``, ``y``, ``title``, ``color`` and more)."""

    x: str
    """The column on the x axis (a bar chart's category column, also when it is horizontal);
    a group key when ``aggregate`` is set."""
    y: str | None = None
    """The value column. None only with ``aggregate: count``: the rows per x (and series) are
    counted into a column named ``count``."""
    color: str | None = None
    """A column of the data: one series (one colour) per value, as ``series`` does. Otherwise a
    literal CSS colour for every mark (``blue``, ``#1f77b4``, ``rgb(31,119,180)``); text that
    is neither a word, a ``#`` hex colour nor ``rgb()``/``hsl()`` fails the render. With
    ``series`` set, ``color`` must name the same column or be a colour."""
    series: str | None = None
    """The column that splits the rows into series: one line, stacked or grouped bar, or point
    colour per value (coloured by ``scheme``); a group key when ``aggregate`` is set. None: one
    series, unless ``color`` names a column."""
    aggregate: Aggregate | None = None
    """Aggregate ``y`` per x (and series, and a scatter plot's ``shape``) before plotting:
    ``sum``, ``mean``, ``median``, ``min``, ``max``, ``count``, ``n_unique`` or ``std``
    (sample). It runs on the input's engine, so only the groups are collected. None: the rows
    are plotted as they are."""
    x_title: str | None = None
    """The x axis title. None: the column name."""
    y_title: str | None = None
    """The y axis title. None: the column name, followed by the aggregation in parentheses
    (``revenue (sum)``) when ``aggregate`` is set to anything but ``count``."""
    x_format: str | None = None
    """A d3 format for the x axis labels: a number format (``,.2f``, ``.1%``, ``~s``) or, on a
    temporal axis, a time format (``%Y-%m-%d``, ``%b %Y``). No quotes or backslashes. None:
    Vega-Lite's default."""
    y_format: str | None = None
    """A d3 format for the y axis labels (see ``x_format``)."""
    x_type: FieldType | None = None
    """The Vega-Lite type of the x field: ``quantitative``, ``temporal``, ``ordinal`` or
    ``nominal``. None: from the column's type (dates and datetimes temporal, numbers
    quantitative, the rest nominal; a bar chart's numeric categories ordinal)."""
    y_type: FieldType | None = None
    """The Vega-Lite type of the y field (see ``x_type``)."""
    sort: Literal["x", "-x", "y", "-y", "ascending", "descending"] | list[Any] | None = None
    """Bar charts: the order of the categories: ``x`` / ``ascending`` and ``-x`` /
    ``descending`` by category, ``y`` / ``-y`` by value (ascending / descending), or a list of
    the categories in the wanted order (unlisted ones follow). Line charts: the order of the x
    axis, along which the line runs: ``x`` / ``ascending`` (the default), ``-x`` /
    ``descending`` (reversed axis), or a list of the x values in the wanted order for a
    categorical x (text, or ``x_type`` ``ordinal`` / ``nominal``; unlisted ones follow); ``y`` /
    ``-y`` are a ConfigError (a line's x axis is not ordered by value). Scatter plots have no
    order to set: any value is a ConfigError. None: Vega-Lite's default (ascending)."""

    @field_validator("x_format", "y_format")
    @classmethod
    def _check_format(cls, value: str | None) -> str | None:
        if value is not None and not _FORMAT.match(value):
            raise ValueError(
                "a d3 format such as ',.2f', '.1%' or '%Y-%m-%d' (no quotes or backslashes)"
            )
        return value


@dataclass
class RenderCall:
    """What one ``render`` call was given besides the data (``op.context`` in the hooks)."""

    keep_fields: tuple[str, ...] = ()
    #: query results a dashboard collected in advance, by ``(columns, extra group keys)``
    precollected: dict[tuple[tuple[str, ...], tuple[str, ...]], Any] = field(default_factory=dict)


def render_call(op: Operation) -> RenderCall:
    return op.context if isinstance(op.context, RenderCall) else RenderCall()


@dataclass
class Prepared:
    """The rows a chart embeds, and what was done to get them."""

    frame: pl.DataFrame
    rows_in: int | None
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    #: the lazy Narwhals query of ALL the rows when ``frame`` holds only its first
    #: ``max_points + 1`` (a lazy input with more rows than the chart embeds); None otherwise
    query: Any = None
    #: the group keys the query's rows are unique by (and ``frame`` is sorted by)
    keys: list[str] = field(default_factory=list)
    #: True once the rows were cut to ``max_points`` on the input's engine (``_reduce_lazy``)
    reduced: bool = False

    @property
    def caption(self) -> str | None:
        return " ".join(self.notes) if self.notes else None


_FIELD_SPECIAL = re.compile(r"""([\\.\[\]'"])""")


#: stands for a backslash in the column names a chart embeds (Vega-Lite re-escapes field paths
#: without escaping backslashes, so no escaping of ours survives one): FULLWIDTH REVERSE SOLIDUS
BACKSLASH_STAND_IN = "\uff3c"


def vega_name(name: str) -> str:
    """The name a column has in a chart's embedded rows (a backslash becomes ``＼``)."""
    return name.replace("\\", BACKSLASH_STAND_IN)


def field_ref(name: str) -> str:
    """A column name as a Vega-Lite ``field``: every character Vega's access paths read
    (``.``, ``[``, ``]``, ``'``, ``"``) escaped with a backslash, so it names the column.

    >>> field_ref("it's a.b")
    "it\\\\'s a\\\\.b"
    """
    return _FIELD_SPECIAL.sub(r"\\\1", vega_name(name))


#: names Vega looks up on plain objects: a category equal to one breaks stacks and lookups
PROTOTYPE_NAMES = (
    "__proto__", "constructor", "hasOwnProperty", "isPrototypeOf", "propertyIsEnumerable",
    "toLocaleString", "toString", "valueOf", "__defineGetter__", "__defineSetter__",
    "__lookupGetter__", "__lookupSetter__",
)  # fmt: skip
#: appended (invisibly: WORD JOINER) to such a category in a chart's embedded rows
PROTOTYPE_MARK = "\u2060"


def unmark(value: Any) -> Any:
    """The category as the data holds it (without :data:`PROTOTYPE_MARK`)."""
    if isinstance(value, str) and value.endswith(PROTOTYPE_MARK):
        stripped = value[: -len(PROTOTYPE_MARK)]
        if stripped in PROTOTYPE_NAMES:
            return stripped
    return value


def infer_type(dtype: Any) -> FieldType:
    """Vega-Lite type from a polars dtype."""
    if dtype.is_temporal() and not _is_duration_or_time(dtype):
        return "temporal"
    if dtype.is_numeric():
        return "quantitative"
    return "nominal"


def _is_duration_or_time(dtype: Any) -> bool:
    import polars as pl

    return isinstance(dtype, pl.Duration) or dtype == pl.Time


def to_records(frame: pl.DataFrame, *, for_vega: bool = True) -> list[dict[str, Any]]:
    """JSON-safe rows: dates as ISO text, NaN/inf as null, decimals as floats, other types as text.

    A text equal to a name Vega would find on ``Object.prototype`` (``constructor``,
    ``__proto__``, ...) gets :data:`PROTOTYPE_MARK` appended: it draws the same and no longer
    collides with the prototype in Vega's group lookups (``for_vega=False``: left as it is).
    """
    import polars as pl

    exprs = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if dtype == pl.Date:
            col = col.dt.strftime("%Y-%m-%dT00:00:00")
        elif isinstance(dtype, pl.Datetime):
            if dtype.time_zone is not None:
                col = col.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
            else:
                col = col.dt.strftime("%Y-%m-%dT%H:%M:%S%.3f")
        elif dtype.is_float():
            col = pl.when(col.is_finite()).then(col).otherwise(None)
        elif isinstance(dtype, pl.Decimal):
            col = col.cast(pl.Float64)
        elif dtype == pl.String and for_vega:  # "constructor": Object.prototype's, to Vega
            col = pl.when(col.is_in(PROTOTYPE_NAMES)).then(col + PROTOTYPE_MARK).otherwise(col)
        elif dtype.is_integer() or dtype in (pl.Boolean, pl.Null, pl.String):
            pass
        elif isinstance(dtype, (pl.List, pl.Array, pl.Struct)):
            col = col.map_elements(repr, return_dtype=pl.String)
        else:
            col = col.cast(pl.String)
        exprs.append(col.alias(vega_name(name) if for_vega else name))
    return frame.select(exprs).to_dicts()


def vl_version() -> str | None:
    """The vl-convert Vega-Lite version matching Altair's schema (``"6.4"``), or None for its latest."""
    import altair as alt
    import vl_convert as vlc

    match = re.match(r"v(\d+)\.(\d+)", alt.SCHEMA_VERSION)
    if not match:
        return None
    wanted = f"{match.group(1)}.{match.group(2)}"
    return wanted if wanted in vlc.get_vegalite_versions() else None


def check_color(value: str, *, component: str, columns: Sequence[str]) -> None:
    if not _COLOR.match(value):
        raise ChartRenderingError(
            f"color {value!r} is neither a column of the data nor a CSS colour",
            component=component,
            hint=f"use a colour such as 'steelblue' or '#1f77b4', or one of the columns: "
            f"{', '.join(map(repr, columns))}",
        )


class Visualization(Component):
    """Abstract base class for all visualizations.

    ``render(data)`` returns a JSON-able dict: a Vega-Lite spec for charts, a table or KPI
    description for the others. Subclasses implement ``_render(frame, op)``.

    Raises:
        ConfigError: the config is invalid (raised when the visualization is built, naming the
            key and what it accepts).
        InputTypeError: ``render`` got something that is not a supported data frame.
        ChartColumnNotFoundError: a column the config names is not in the data (also a
            ``KeyError``; the message lists the columns there are).
        VisualizationError: rendering failed otherwise (a ChartRenderingError for charts and
            KPI tiles); every message names the visualization.

    Example:
        >>> from data_pipeline.visualization import LineChart
        >>> LineChart(name="sales_chart", config={"x": "date", "y": "sales"}).name
        'sales_chart'
    """

    layer: ClassVar[str] = "visualization"
    error_class = VisualizationError
    config_model: ClassVar[type[ConfigModel]] = VisualizationConfig
    #: how the dashboard embeds the rendered dict: "vega-lite", "table" or "kpi".
    kind: ClassVar[str] = "vega-lite"

    @property
    def title(self) -> str:
        value = getattr(self.settings, "title", None)
        return str(value) if value else self.name

    def render(
        self,
        data: Any,
        *,
        keep_fields: Sequence[str] = (),
        precollected: dict[tuple[tuple[str, ...], tuple[str, ...]], Any] | None = None,
    ) -> dict[str, Any]:
        """Render ``data`` (pandas, Polars, PyArrow, DuckDB, ...) to a JSON-able dict.

        ``keep_fields``: columns a dashboard filter needs; a chart that aggregates with ``sum``,
        ``count``, ``min`` or ``max`` keeps them as extra group keys (when that stays within
        ``max_points``) and lets Vega-Lite finish the aggregation, so the filter can apply.
        ``precollected``: query results a dashboard collected in advance (see
        :meth:`Chart.plan_queries`). Both live in this call's :class:`RenderCall`
        (``op.context``), never on the component, so concurrent renders do not mix.
        """
        with self._operation("render") as op:
            frame = to_narwhals(data, component=self.label)
            op.rows_in = row_count(frame)
            op.context = RenderCall(tuple(keep_fields), dict(precollected or {}))
            return self._render(frame, op)

    def _render(self, frame: Any, op: Operation) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement _render()")

    def fields(self) -> list[str]:
        """Columns this visualization reads (used by the dashboard filter)."""
        return []

    # -- helpers shared by subclasses ---------------------------------------------------------

    def _require(self, frame: Any, columns: Sequence[str | None]) -> None:
        wanted = [c for c in dict.fromkeys(columns) if c is not None]
        try:
            require_columns(frame, wanted, component=self.label)
        except ColumnNotFoundError as exc:
            raise ChartColumnNotFoundError(
                exc.detail, component=self.label, hint=exc.hint or "check the chart's config"
            ) from None


class Chart(Visualization):
    """Base class for chart visualizations, built with Altair (Vega-Lite).

    Subclasses say which columns they need (``_columns``), how to reduce the rows
    (``_prepare_frame``), and how to encode them (``_chart``); this class checks columns, aggregates
    on the input's engine before collecting, caps embedded rows at ``max_points`` and exports
    PNG and SVG.

    Raises:
        ConfigError: the config is invalid when the chart is built (an unknown key, a ``scheme``
            or d3 format that cannot be one, ``max_points`` below 10, ...).
        InputTypeError: ``render`` got something that is not a supported data frame.
        ChartColumnNotFoundError: ``x``, ``y``, ``series``, a tooltip column or another
            configured column is not in the data.
        ChartRenderingError: ``color`` is neither a column nor a CSS colour, ``series`` and
            ``color`` name two different columns, tooltip columns are neither grouped nor
            aggregated, or rendering failed otherwise.
        HTMLExportError: ``save_png`` / ``save_svg`` could not write the file.

    Example:
        >>> from data_pipeline.visualization import BarChart
        >>> chart = BarChart(name="revenue", config={"x": "product", "y": "revenue", "aggregate": "sum"})
        >>> chart.settings.max_points
        5000
    """

    error_class = ChartRenderingError
    config_model: ClassVar[type[ConfigModel]] = ChartConfig
    settings: Any
    #: whether the chart can let Vega-Lite finish an aggregation (see ``render(keep_fields=)``)
    supports_rollup: ClassVar[bool] = False

    # -- what subclasses fill in ---------------------------------------------------------------

    def _columns(self, names: Sequence[str]) -> list[str]:
        """Columns to read from the input, given the columns it has."""
        s = self.settings
        cols = [s.x, s.y, self._series_column(names)]
        cols += self._tooltip_columns()
        return [c for c in dict.fromkeys(cols) if c is not None]

    def _group_keys(self, names: Sequence[str]) -> list[str]:
        s = self.settings
        return [c for c in (s.x, self._series_column(names)) if c is not None]

    def _reduce(self, prepared: Prepared) -> Prepared:
        """Cap the rows at ``max_points`` (after aggregation); default: keep the first ones."""
        limit = self.settings.max_points
        if prepared.frame.height > limit:
            total = prepared.frame.height
            prepared.frame = prepared.frame.head(limit)
            prepared.notes.append(f"Showing the first {limit:,} of {total:,} rows.")
        return prepared

    def _chart(self, alt: Any, prepared: Prepared, names: Sequence[str]) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement _chart()")

    def fields(self) -> list[str]:
        s = self.settings
        return [c for c in (s.x, s.y, s.series, s.color) if c is not None]

    # -- the shared mechanism ------------------------------------------------------------------

    def _series_column(self, names: Sequence[str]) -> str | None:
        series = getattr(self.settings, "series", None)
        color = getattr(self.settings, "color", None)
        if series is not None:
            return str(series)
        if color is not None and color in names:
            return str(color)
        return None

    def _literal_color(self, names: Sequence[str]) -> str | None:
        color = getattr(self.settings, "color", None)
        if color is None or color in names:
            return None
        check_color(color, component=self.label, columns=names)
        return str(color)

    def _tooltip_columns(self) -> list[str]:
        tooltip = self.settings.tooltip
        return list(tooltip) if isinstance(tooltip, list) else []

    def _aggregate(self) -> str | None:
        return self.settings.aggregate  # type: ignore[no-any-return]

    def _value_column(self) -> str | None:
        return self.settings.y  # type: ignore[no-any-return]

    def _render(self, frame: Any, op: Operation) -> dict[str, Any]:
        import altair as alt

        names = column_names(frame)
        self._literal_color(names)
        series = getattr(self.settings, "series", None)
        color = getattr(self.settings, "color", None)
        if series is not None and color is not None and color in names and color != series:
            raise ChartRenderingError(
                f"series={series!r} and color={color!r} name two different columns",
                component=self.label,
                hint="one column splits the series: keep 'series', or set 'color' to the same "
                "column or to a CSS colour",
            )
        wanted = self._columns(names)
        self._require(frame, wanted)
        prepared = None
        call = render_call(op)
        rollup = self._rollup_field(names, wanted, call.keep_fields)
        if rollup is not None:
            prepared = self._prepare(
                frame, names, [*wanted, rollup], extra_keys=[rollup], call=call
            )
            if prepared.query is not None or prepared.frame.height > self.settings.max_points:
                prepared = None
            else:
                op_name = _ROLLUP[str(self._aggregate())]
                prepared.details["rollup"] = {"field": rollup, "op": op_name}
        if prepared is None:
            prepared = self._prepare(frame, names, wanted, call=call)
        if prepared.query is not None:  # more rows than fit, still on the input's engine
            prepared = self._reduce_lazy(prepared)
            prepared.query = None
        prepared = self._reduce(prepared)
        chart = self._chart(alt, prepared, names)
        spec = self._finish(alt, chart, prepared)
        op.rows_out = prepared.frame.height
        op.details.update(prepared.details)
        if prepared.caption:
            op.details["caption"] = prepared.caption
        return spec

    def _rollup_field(
        self, names: Sequence[str], wanted: Sequence[str], keep_fields: Sequence[str]
    ) -> str | None:
        if not self.supports_rollup or str(self._aggregate()) not in _ROLLUP:
            return None
        for name in keep_fields:
            if name in names and name not in wanted:
                return name
        return None

    def _rollup(self, prepared: Prepared) -> str | None:
        """The Vega-Lite aggregate finishing a rolled-up aggregation, or None."""
        info = prepared.details.get("rollup")
        return str(info["op"]) if info else None

    def _prepare(
        self,
        frame: Any,
        names: Sequence[str],
        wanted: list[str],
        *,
        extra_keys: Sequence[str] = (),
        call: RenderCall | None = None,
    ) -> Prepared:
        """Select the needed columns and aggregate on the input's engine; then collect to polars.

        A lazy input (Polars LazyFrame, DuckDB, Spark, ...) gives at most ``max_points + 1``
        rows here: when there are more, ``Prepared.query`` keeps the lazy query and
        :meth:`_reduce_lazy` cuts the rows on the engine before anything else is collected.
        A dashboard may have collected that head already, together with its other charts'
        (see :meth:`plan_queries`); it is then taken from ``call.precollected``.
        """
        rows_in = row_count(frame)
        selected, keys, details = self._query(frame, names, wanted, extra_keys=extra_keys)
        lazy = isinstance(selected, nw.LazyFrame)
        key = (tuple(wanted), tuple(extra_keys))
        out = call.precollected.pop(key, None) if call is not None else None
        if out is None:
            out = to_polars(self._head(selected) if lazy else selected)
        if keys:
            out = out.sort(keys, nulls_last=True)  # engines return groups in any order
        more = lazy and out.height > self.settings.max_points
        return Prepared(
            frame=out,
            rows_in=rows_in,
            notes=[],
            details=details,
            query=selected if more else None,
            keys=keys,
        )

    def _head(self, query: Any) -> Any:
        """The lazy query's first ``max_points + 1`` rows: all of them, or one too many."""
        return query.head(self.settings.max_points + 1)

    def _reduce_lazy(self, prepared: Prepared) -> Prepared:
        """Cut the rows to ``max_points`` on the input's engine (``prepared.query``, more rows
        than fit) with the result :meth:`_reduce` gives on the collected rows; collect that.

        Default: the first ``max_points`` rows in the order ``_reduce`` sees them (by the group
        keys when aggregated), with the total counted on the engine.
        """
        return self._first_rows(prepared, prepared.query, prepared.keys)

    def _first_rows(self, prepared: Prepared, query: Any, order: Sequence[str]) -> Prepared:
        limit = self.settings.max_points
        ordered = query.sort(list(order), nulls_last=True) if order else query
        total = count_rows(query)
        prepared.frame = to_polars(ordered.head(limit))
        if order:
            prepared.frame = prepared.frame.sort(list(order), nulls_last=True)
        prepared.notes.append(f"Showing the first {limit:,} of {total:,} rows.")
        prepared.reduced = True
        return prepared

    def _query(
        self,
        frame: Any,
        names: Sequence[str],
        wanted: list[str],
        *,
        extra_keys: Sequence[str] = (),
    ) -> tuple[Any, list[str], dict[str, Any]]:
        """The (lazy where the input is lazy) Narwhals query of the rows to embed, its group keys."""
        selected = frame.select([nw.col(c) for c in wanted])
        how = self._aggregate()
        keys: list[str] = []
        details: dict[str, Any] = {}
        if how is not None:
            keys = [*self._group_keys(names), *extra_keys]
            extra = [
                c for c in self._tooltip_columns() if c not in keys and c != self._value_column()
            ]
            if extra:
                raise ChartRenderingError(
                    f"tooltip columns {', '.join(map(repr, extra))} are neither grouped nor aggregated",
                    component=self.label,
                    hint=f"with aggregate={how!r} the tooltip may list only {', '.join(map(repr, keys))} "
                    f"and the value column",
                )
            selected = self._group(selected, keys, how)
            details["aggregate"] = how
        return selected, keys, details

    def plan_queries(
        self, data: Any, *, keep_fields: Sequence[str] = ()
    ) -> list[tuple[tuple[tuple[str, ...], tuple[str, ...]], Any]]:
        """The lazy queries ``render(data, keep_fields=...)`` would collect first, with their keys.

        Used by :class:`Dashboard` to collect every chart's aggregation in one go (Polars runs
        them in parallel and reads a shared input once). Returns ``[]`` for eager input or when
        the config has a problem (``render`` then reports it).
        """
        try:
            frame = to_narwhals(data, component=self.label)
            if not isinstance(frame, nw.LazyFrame):
                return []
            names = column_names(frame)
            wanted = self._columns(names)
            if any(c not in names for c in wanted):
                return []
            rollup = self._rollup_field(names, wanted, tuple(keep_fields))
            cols, extra = ([*wanted, rollup], [rollup]) if rollup else (wanted, [])
            selected, _, _ = self._query(frame, names, cols, extra_keys=extra)
        except (VisualizationError, ValueError, TypeError, KeyError):
            return []
        return [((tuple(cols), tuple(extra)), self._head(selected))]

    def _group(self, frame: Any, keys: list[str], how: str) -> Any:
        value = self._value_column()
        if value is None or value in keys:
            return frame.group_by(keys).agg(nw.len().alias(value or "count"))
        return frame.group_by(keys).agg(agg_expr(value, how))

    def _finish(self, alt: Any, chart: Any, prepared: Prepared) -> dict[str, Any]:
        s = self.settings
        title = None
        if s.title or prepared.caption:
            extra = {"subtitle": prepared.caption} if prepared.caption else {}
            title = alt.Title(text=s.title or "", anchor="start", **extra)
        props: dict[str, Any] = {"width": s.width, "height": s.height}
        if title is not None:
            props["title"] = title
        if s.description:
            props["description"] = s.description
        chart = chart.properties(**props)
        spec: dict[str, Any] = chart.to_dict()
        spec.pop("config", None)
        spec["data"] = {"name": "source"}
        spec["datasets"] = {"source": to_records(prepared.frame)}
        spec["usermeta"] = {
            "data_pipeline": {
                "chart": type(self).__name__,
                "name": self.name,
                "rows_in": prepared.rows_in,
                "rows_plotted": prepared.frame.height,
                "caption": prepared.caption,
                **prepared.details,
            }
        }
        return spec

    # -- encodings helpers ---------------------------------------------------------------------

    def _type(self, prepared: Prepared, column: str, override: str | None = None) -> str:
        if override:
            return override
        return infer_type(prepared.frame.schema[column])

    def _tooltip(self, alt: Any, prepared: Prepared, default: Sequence[str]) -> list[Any]:
        tooltip = self.settings.tooltip
        if tooltip is False:
            return []
        columns = list(dict.fromkeys(default)) if tooltip is True else list(tooltip)
        out = []
        for c in columns:
            if c not in prepared.frame.columns:
                continue
            kind = self._type(prepared, c)
            extra: dict[str, Any] = {}
            if kind == "quantitative":
                extra["format"] = ",.4~f"
            elif kind == "temporal":
                extra["timeUnit"] = "yearmonthdatehoursminutes"
            rollup = self._rollup(prepared)
            if rollup and c == (self._value_column() or "count"):
                extra["aggregate"] = rollup
            out.append(alt.Tooltip(field=field_ref(c), type=kind, title=c, **extra))
        return out

    def _color(self, alt: Any, prepared: Prepared, names: Sequence[str]) -> Any | None:
        series = self._series_column(names)
        if series is None:
            return None
        scale = alt.Scale(scheme=self.settings.scheme) if self.settings.scheme else alt.Undefined
        return alt.Color(field=field_ref(series), type="nominal", title=series, scale=scale)

    # -- export --------------------------------------------------------------------------------

    def to_png(self, data: Any, *, scale: float = 2.0) -> bytes:
        """The chart as PNG bytes (vl-convert; no browser needed)."""
        import vl_convert as vlc

        spec = self.render(data)
        return bytes(vlc.vegalite_to_png(spec, scale=scale, vl_version=vl_version()))

    def to_svg(self, data: Any) -> str:
        """The chart as an SVG document (vl-convert)."""
        import vl_convert as vlc

        spec = self.render(data)
        return str(vlc.vegalite_to_svg(spec, vl_version=vl_version()))

    def save_png(self, path: str | Path, data: Any, *, scale: float = 2.0) -> Path:
        """Write the chart as a PNG file; returns the path."""
        return _write_atomic(Path(path), self.to_png(data, scale=scale), self.label)

    def save_svg(self, path: str | Path, data: Any) -> Path:
        """Write the chart as an SVG file; returns the path."""
        return _write_atomic(Path(path), self.to_svg(data).encode("utf-8"), self.label)


#: aggregations Vega-Lite can finish from partial results, and how
_ROLLUP = {"sum": "sum", "count": "sum", "min": "min", "max": "max"}


def count_rows(query: Any) -> int:
    """The rows of a lazy Narwhals query, counted on its engine (one number is collected)."""
    return int(to_polars(query.select(nw.len())).item())


def agg_expr(column: str, how: str) -> Any:
    """A Narwhals aggregation of ``column`` named after it."""
    col = nw.col(column)
    if how == "count":
        return col.count().alias(column)
    if how == "n_unique":
        return col.n_unique().alias(column)
    return getattr(col, how)().alias(column)


def _write_atomic(path: Path, payload: bytes, component: str) -> Path:
    """Write to a temporary file beside ``path`` and rename it into place."""
    import os
    import tempfile

    try:
        directory = path.parent if str(path.parent) else Path(".")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise HTMLExportError(
            f"could not write {str(path)!r}: {exc.strerror or exc}",
            component=component,
            hint="check the file path and permissions (the directory must exist and be writable)",
        ) from exc
    return path
