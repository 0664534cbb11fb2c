"""The charts: LineChart, BarChart, ScatterPlot, PieChart and Heatmap (Altair / Vega-Lite).

``color`` is a column name when the data has a column of that name (one series per value, like
``series``), otherwise a literal CSS colour (``"blue"``, ``"#1f77b4"``) for the marks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import narwhals as nw
from pydantic import Field, field_validator

from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import ChartRenderingError
from data_pipeline.core.frames import to_polars
from data_pipeline.visualization.base import (
    Aggregate,
    BaseChartConfig,
    Chart,
    ChartConfig,
    Prepared,
    RenderCall,
    count_rows,
    field_ref,
)

__all__ = [
    "BarChart",
    "BarChartConfig",
    "Heatmap",
    "HeatmapConfig",
    "LineChart",
    "LineChartConfig",
    "PieChart",
    "PieChartConfig",
    "ScatterPlot",
    "ScatterPlotConfig",
]

_ORDER = "_dp_order"


def _axis(alt: Any, fmt: str | None) -> Any:
    return alt.Axis(format=fmt) if fmt else alt.Undefined


class _XYChart(Chart):
    """Shared x/y encodings of LineChart, BarChart and ScatterPlot."""

    def _x(self, alt: Any, p: Prepared, **extra: Any) -> Any:
        s = self.settings
        return alt.X(
            field=field_ref(s.x),
            type=self._type(p, s.x, s.x_type),
            title=s.x_title or s.x,
            axis=_axis(alt, s.x_format),
            **extra,
        )

    def _y(self, alt: Any, p: Prepared, **extra: Any) -> Any:
        s = self.settings
        y = self._y_column()
        rollup = self._rollup(p)
        if rollup:
            extra["aggregate"] = rollup
        return alt.Y(
            field=field_ref(y),
            type=self._type(p, y, s.y_type),
            title=s.y_title or (y if s.aggregate in (None, "count") else f"{y} ({s.aggregate})"),
            axis=_axis(alt, s.y_format),
            **extra,
        )

    def _y_column(self) -> str:
        s = self.settings
        return str(s.y) if s.y is not None else "count"

    def _check_y(self) -> None:
        s = self.settings
        if s.y is None and s.aggregate != "count":
            raise ChartRenderingError(
                "no y column configured",
                component=self.label,
                hint='set "y" to a column, or "aggregate": "count" to count rows per x',
            )

    def _render(self, frame: Any, op: Any) -> dict[str, Any]:
        self._check_y()
        return super()._render(frame, op)


class LineChartConfig(ChartConfig):
    """LineChart keys: the chart keys plus ``points`` and ``interpolate``."""

    points: bool = False
    """Draw a dot on every data point of the lines (the points embedded, after any
    downsampling)."""
    interpolate: (
        Literal["linear", "monotone", "step", "step-after", "step-before", "basis"] | None
    ) = None
    """How the line runs between points (Vega-Lite interpolation): ``linear`` straight
    segments, ``monotone`` a smooth curve through the points that never overshoots,
    ``step`` / ``step-after`` / ``step-before`` stairs, ``basis`` a B-spline that need not pass
    through the points. None: ``linear``."""

    @field_validator("sort")
    @classmethod
    def _check_sort(cls, value: Any) -> Any:
        if value in ("y", "-y"):
            raise ValueError(
                "a line chart's x axis is ordered by x, not by value; use 'x', "
                "'-x' or a list of the x values (sorting by value is for bar charts)"
            )
        return value


def _rank(column: str, order: list[Any]) -> Any:
    """A polars expression: the position of ``column``'s value in ``order`` (unlisted: after)."""
    import polars as pl

    ranks = {v: i for i, v in enumerate(order)}
    return (
        pl.col(column)
        .replace_strict(ranks, default=len(ranks), return_dtype=pl.Int64)
        .alias(_ORDER)
    )


class LineChart(_XYChart):
    """Line chart visualization: one line, or one per value of ``series`` (or a ``color`` column).

    Rows are aggregated per x (and series) when ``aggregate`` is set; above ``max_points`` rows
    the lines are downsampled with LTTB, which keeps peaks and troughs, and the subtitle says so.
    On a lazy input (Polars LazyFrame, DuckDB, Spark) the engine keeps the lowest and highest
    point per bucket along x instead (LTTB cannot run on an engine).

    ``sort`` orders the x axis the line runs along: ``-x`` reverses it, a list orders a
    categorical x.

    Raises:
        ConfigError: the config is invalid when the chart is built (also ``sort`` by value:
            ``y`` or ``-y``).
        ChartColumnNotFoundError: a configured column is not in the data.
        ChartRenderingError: no ``y`` without ``aggregate: count``, more series than
            ``max_points`` can draw (fewer than 3 points each), a ``sort`` list on a temporal
            or quantitative x, or another problem listed under :class:`Chart`.

    Example:
        >>> chart = LineChart(name="sales_chart", config={
        ...     "x": "date", "y": "sales", "title": "Sales Over Time", "color": "blue",
        ... })
        >>> chart.settings.color
        'blue'
    """

    config_model: ClassVar[type[ConfigModel]] = LineChartConfig
    supports_rollup: ClassVar[bool] = True

    def _reduce(self, prepared: Prepared) -> Prepared:
        import polars as pl

        from data_pipeline.visualization.sampling import lttb_indices

        s = self.settings
        df = prepared.frame
        series = self._series_column(df.columns)
        y = self._y_column()
        keys = ([series] if series else []) + [s.x]
        listed = isinstance(s.sort, list)
        if listed:  # the listed order of x, kept as a rank column the line is drawn along
            kind = self._type(prepared, s.x, s.x_type)
            if kind not in ("nominal", "ordinal"):
                raise ChartRenderingError(
                    f"sort lists the x values, but x {s.x!r} is {kind}",
                    component=self.label,
                    hint='a list orders categories: set "x_type": "ordinal", or use "x" / "-x"',
                )
            df = df.with_columns(_rank(s.x, s.sort))
            keys = [*keys[:-1], _ORDER, s.x]
        df = df.filter(pl.col(s.x).is_not_null()).sort(keys, nulls_last=True)
        limit = s.max_points
        if df.height > limit:
            groups = df.partition_by(series, maintain_order=True) if series else [df]
            budget = self._budget(len(groups))
            parts = []
            for g in groups:
                g = g.filter(pl.col(y).is_not_null())
                xs = g.get_column(s.x)
                xs = xs.to_physical() if xs.dtype.is_temporal() else xs
                if not xs.dtype.is_numeric() or listed:
                    xs = pl.Series(range(g.height))
                idx = lttb_indices(
                    xs.cast(pl.Float64).to_numpy(),
                    g.get_column(y).cast(pl.Float64).to_numpy(),
                    budget,
                )
                parts.append(g[idx])
            total = df.height
            df = pl.concat(parts)
            prepared.notes.append(
                f"Downsampled from {total:,} to {df.height:,} points (LTTB, shape-preserving)."
            )
            prepared.details["downsampled"] = "lttb"
        prepared.frame = df
        return prepared

    def _budget(self, groups: int) -> int:
        """Points per series within ``max_points`` (at least 3, else an error)."""
        limit = self.settings.max_points
        budget = int(limit // max(1, groups))
        if budget < 3:
            raise ChartRenderingError(
                f"{groups:,} series cannot be drawn within max_points={limit:,}",
                component=self.label,
                hint="aggregate to fewer series, filter the data, or raise max_points",
            )
        return budget

    def _reduce_lazy(self, prepared: Prepared) -> Prepared:
        """On the engine: per series, the first and last point and, in each of
        ``(budget - 2) // 2`` equal buckets along x, the points of lowest and highest y.

        LTTB picks each point from the one picked before it, so it cannot run on an engine;
        min and max per bucket keep peaks and troughs too, within the same budget.
        """
        s = self.settings
        query = prepared.query.filter(~nw.col(s.x).is_null())
        columns = list(query.collect_schema().names())
        series = self._series_column(columns)
        y = self._y_column()
        stats = to_polars(
            query.select(
                nw.len().alias("n"),
                *([nw.col(series).n_unique().alias("g")] if series else []),
            )
        ).row(0, named=True)
        total = int(stats["n"])
        if total <= s.max_points:  # the rows without x were the ones too many
            prepared.frame = to_polars(query)
            return prepared
        budget = self._budget(int(stats.get("g", 1)))
        buckets = (budget - 2) // 2
        group = series or "_dp_g"
        i, n = nw.col("_dp_i"), nw.col("_dp_n")
        query = query.filter(~nw.col(y).is_null())
        if series is None:
            query = query.with_columns(nw.lit(0).alias(group))
        order = [s.x, y, *(c for c in columns if c not in (s.x, y))]  # ties broken by all
        query = query.with_columns(
            nw.col(s.x).cum_count().over(group, order_by=order).cast(nw.Int64).alias("_dp_i"),
            nw.col(s.x).count().over(group).cast(nw.Int64).alias("_dp_n"),
        )
        interior = (i > 1) & (i < n)
        query = query.with_columns(
            nw.when(interior)
            .then((i - 2) * buckets // nw.max_horizontal(n - 2, nw.lit(1)))
            .otherwise(-1)
            .alias("_dp_b")
        )
        query = query.with_columns(
            nw.col(y).min().over(group, "_dp_b").alias("_dp_lo"),
            nw.col(y).max().over(group, "_dp_b").alias("_dp_hi"),
        )
        query = query.with_columns(
            nw.when(nw.col(y) == nw.col("_dp_lo"))
            .then(i)
            .min()
            .over(group, "_dp_b")
            .alias("_dp_ilo"),
            nw.when(nw.col(y) == nw.col("_dp_hi"))
            .then(i)
            .min()
            .over(group, "_dp_b")
            .alias("_dp_ihi"),
        )
        keep = (
            (n <= budget)
            | (i == 1)
            | (i == n)
            | (interior & ((i == nw.col("_dp_ilo")) | (i == nw.col("_dp_ihi"))))
        )
        picked = query.filter(keep).sort([group, "_dp_i"]).select(columns)
        df = to_polars(picked)
        prepared.frame = df
        prepared.notes.append(
            f"Downsampled from {total:,} to {df.height:,} points "
            "(lowest and highest per bucket, shape-preserving)."
        )
        prepared.details["downsampled"] = "minmax"
        prepared.reduced = True
        return prepared

    def _x_sort(self, alt: Any, p: Prepared) -> dict[str, Any]:
        """The x encoding's ``sort`` (and the line's ``order``) for the ``sort`` key."""
        s = self.settings
        if s.sort is None:
            return {}
        if not isinstance(s.sort, list):
            return {"sort": "descending" if s.sort in ("-x", "descending") else "ascending"}
        return {"sort": alt.EncodingSortField(field=_ORDER, op="min", order="ascending")}

    def _chart(self, alt: Any, p: Prepared, names: Sequence[str]) -> Any:
        s = self.settings
        mark: dict[str, Any] = {"point": s.points}
        if s.interpolate:
            mark["interpolate"] = s.interpolate
        color = self._literal_color(names)
        if color:
            mark["color"] = color
        enc: dict[str, Any] = {"x": self._x(alt, p, **self._x_sort(alt, p)), "y": self._y(alt, p)}
        if isinstance(s.sort, list):
            enc["order"] = alt.Order(field=_ORDER, type="quantitative", sort="ascending")
        series = self._series_column(names)
        colour = self._color(alt, p, names)
        if colour is not None:
            enc["color"] = colour
        tooltip = self._tooltip(alt, p, [c for c in (s.x, self._y_column(), series) if c])
        if tooltip:
            enc["tooltip"] = tooltip
            mark["tooltip"] = True
        return alt.Chart(alt.Data(name="source")).mark_line(**mark).encode(**enc)


class BarChartConfig(ChartConfig):
    """BarChart keys: the chart keys plus ``orientation`` and ``mode`` (stacked, grouped, normalized)."""

    orientation: Literal["vertical", "horizontal"] = "vertical"
    """``vertical``: categories (``x``) along the horizontal axis, bars rising; ``horizontal``:
    categories down the vertical axis, bars to the right (``x`` still names the category column
    and ``y`` the value, and their titles and formats follow them)."""
    mode: Literal["stacked", "grouped", "normalized"] = "stacked"
    """How the bars of several series share a category: ``stacked`` on top of each other,
    ``grouped`` side by side, ``normalized`` stacked to 100 % of the category. Without
    ``series`` (or a ``color`` column) there is one bar per category whatever the mode."""


class BarChart(_XYChart):
    """Bar chart visualization: vertical or horizontal; stacked, grouped or normalized by ``series``.

    Above ``max_points`` rows the bars are summed per category (unless ``aggregate`` says
    otherwise) and, if still too many, the top categories by total are kept; the subtitle says so.

    Raises:
        ConfigError: the config is invalid when the chart is built.
        ChartColumnNotFoundError: a configured column is not in the data.
        ChartRenderingError: no ``y`` without ``aggregate: count``, or another problem listed
            under :class:`Chart`.

    Example:
        >>> chart = BarChart(name="by_product", config={
        ...     "x": "product", "y": "revenue", "aggregate": "sum", "series": "region",
        ...     "mode": "grouped", "sort": "-y",
        ... })
        >>> chart.settings.mode
        'grouped'
    """

    config_model: ClassVar[type[ConfigModel]] = BarChartConfig
    supports_rollup: ClassVar[bool] = True

    def _reduce(self, prepared: Prepared) -> Prepared:
        import polars as pl

        s = self.settings
        df = prepared.frame
        series = self._series_column(df.columns)
        y = self._y_column()
        keys = [s.x] + ([series] if series else [])
        limit = s.max_points
        if df.height > limit and s.aggregate is None:
            total = df.height
            df = df.group_by(keys).agg(pl.col(y).sum()).sort(keys, nulls_last=True)
            prepared.notes.append(f"Summed {total:,} rows into {df.height:,} bars.")
            prepared.details["aggregate"] = "sum"
        if df.height > limit:
            totals = df.group_by(s.x).agg(pl.col(y).abs().sum().alias("_t"))
            keep_n = self._categories_kept(df.height, totals.height)
            keep = (
                totals.sort(["_t", s.x], descending=[True, False], nulls_last=True)
                .head(keep_n)
                .get_column(s.x)
            )
            prepared.notes.append(
                f"Showing the top {keep.len():,} of {totals.height:,} categories by total."
            )
            df = df.filter(pl.col(s.x).is_in(keep.implode()))
            if df.height > limit:
                df = df.head(limit)
            prepared.details["truncated"] = True
        if isinstance(s.sort, list):
            df = df.with_columns(_rank(s.x, s.sort))
        prepared.frame = df
        return prepared

    def _categories_kept(self, bars: int, categories: int) -> int:
        """How many categories fit ``max_points`` bars (at their mean number of bars each)."""
        per = max(1, bars // max(1, categories))
        return max(1, int(self.settings.max_points) // per)

    def _reduce_lazy(self, prepared: Prepared) -> Prepared:
        """What :meth:`_reduce` does, on the engine: sum per bar (when not aggregated), count,
        keep the top categories; only the kept categories and the bars drawn are collected."""
        s = self.settings
        query = prepared.query
        series = self._series_column(query.collect_schema().names())
        y = self._y_column()
        keys = [s.x] + ([series] if series else [])
        limit = s.max_points
        if s.aggregate is None:
            total = count_rows(query)
            query = query.group_by(keys).agg(nw.col(y).sum())
            query = query.with_columns(nw.col(y).fill_null(0))  # Polars' sum of no values
            bars = count_rows(query)
            prepared.notes.append(f"Summed {total:,} rows into {bars:,} bars.")
            prepared.details["aggregate"] = "sum"
        else:
            bars = count_rows(query)
        if bars > limit:
            totals = query.group_by(s.x).agg(nw.col(y).abs().sum().alias("_t"))
            totals = totals.with_columns(nw.col("_t").fill_null(0))  # Polars' sum of no values
            categories = count_rows(totals)
            keep_n = self._categories_kept(bars, categories)
            top = totals.sort(["_t", s.x], descending=[True, False], nulls_last=True).head(keep_n)
            keep = to_polars(top.select(s.x)).get_column(s.x)
            prepared.notes.append(
                f"Showing the top {keep.len():,} of {categories:,} categories by total."
            )
            # a null category never matches (as Polars' is_in without nulls_equal)
            query = query.filter(nw.col(s.x).is_in(keep.drop_nulls().to_list()))
            prepared.details["truncated"] = True
        query = query.sort(keys, nulls_last=True).head(limit)
        prepared.frame = to_polars(query).sort(keys, nulls_last=True)
        prepared.reduced = True
        return prepared

    def _sort(self, alt: Any) -> Any:
        s = self.settings
        value_channel = "y" if s.orientation == "vertical" else "x"
        if s.sort is None:
            return alt.Undefined
        if isinstance(s.sort, list):
            return alt.EncodingSortField(field=_ORDER, op="min", order="ascending")
        return {
            "x": "ascending",
            "-x": "descending",
            "ascending": "ascending",
            "descending": "descending",
            "y": value_channel,
            "-y": f"-{value_channel}",
        }[s.sort]

    def _chart(self, alt: Any, p: Prepared, names: Sequence[str]) -> Any:
        s = self.settings
        mark: dict[str, Any] = {}
        color = self._literal_color(names)
        if color:
            mark["color"] = color
        series = self._series_column(names)
        horizontal = s.orientation == "horizontal"
        cat_cls, val_cls = (alt.Y, alt.X) if horizontal else (alt.X, alt.Y)
        x_type = s.x_type or ("ordinal" if self._type(p, s.x) == "quantitative" else None)
        category = cat_cls(
            field=field_ref(s.x),
            type=x_type or self._type(p, s.x),
            title=s.x_title or s.x,
            axis=_axis(alt, s.x_format),
            sort=self._sort(alt),
        )
        stack: Any = alt.Undefined
        if series and s.mode == "normalized":
            stack = "normalize"
        elif series and s.mode == "grouped":
            stack = None
        y = self._y_column()
        value = val_cls(
            field=field_ref(y),
            type=self._type(p, y, s.y_type),
            title=s.y_title or (y if s.aggregate in (None, "count") else f"{y} ({s.aggregate})"),
            axis=_axis(alt, s.y_format),
            stack=stack,
            aggregate=self._rollup(p) or alt.Undefined,
        )
        enc: dict[str, Any] = (
            {"y": category, "x": value} if horizontal else {"x": category, "y": value}
        )
        colour = self._color(alt, p, names)
        if colour is not None:
            enc["color"] = colour
            if s.mode == "grouped":
                offset = alt.XOffset if s.orientation == "vertical" else alt.YOffset
                enc["xOffset" if s.orientation == "vertical" else "yOffset"] = offset(
                    field=field_ref(series or ""), type="nominal"
                )
        tooltip = self._tooltip(alt, p, [c for c in (s.x, self._y_column(), series) if c])
        if tooltip:
            enc["tooltip"] = tooltip
            mark["tooltip"] = True
        return alt.Chart(alt.Data(name="source")).mark_bar(**mark).encode(**enc)


class ScatterPlotConfig(ChartConfig):
    """ScatterPlot keys: the chart keys plus ``size`` (a column), ``shape`` (a column), ``opacity``."""

    size: str | None = None
    """A column whose values set each point's area (a legend shows the scale). Cannot be
    combined with ``aggregate``: the render fails. None: every point has the same size."""
    shape: str | None = None
    """A column whose values get distinct point shapes (circle, square, ...), treated as
    categories; a group key when ``aggregate`` is set. None: every point is a circle."""
    opacity: float = Field(default=0.7, ge=0.0, le=1.0)
    """Opacity of the points, from 0 (invisible) to 1 (opaque); below 1 dense regions show
    as darker."""

    @field_validator("sort")
    @classmethod
    def _no_sort(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError(
                "a scatter plot has no order to sort (both axes are scales); drop 'sort'"
            )
        return value


class ScatterPlot(_XYChart):
    """Scatter plot visualization with optional size, colour and shape encodings.

    Above ``max_points`` rows a reproducible random sample is drawn (seed 0); the subtitle says so.
    On a lazy input (Polars LazyFrame, DuckDB, Spark) the engine takes an evenly spaced sample
    of the rows ordered by x, y and the other columns instead (the same on every engine).

    Raises:
        ConfigError: the config is invalid when the chart is built (e.g. ``opacity`` outside
            0..1, or any ``sort``: a scatter plot has no order).
        ChartColumnNotFoundError: a configured column (also ``size`` or ``shape``) is not in the
            data.
        ChartRenderingError: ``size`` together with ``aggregate``, no ``y`` without
            ``aggregate: count``, or another problem listed under :class:`Chart`.

    Example:
        >>> chart = ScatterPlot(name="age_income", config={
        ...     "x": "age", "y": "income", "color": "region", "size": "quantity",
        ... })
        >>> chart.settings.size
        'quantity'
    """

    config_model: ClassVar[type[ConfigModel]] = ScatterPlotConfig

    def _columns(self, names: Sequence[str]) -> list[str]:
        s = self.settings
        return [c for c in dict.fromkeys([*super()._columns(names), s.size, s.shape]) if c]

    def _group_keys(self, names: Sequence[str]) -> list[str]:
        s = self.settings
        return [c for c in dict.fromkeys([*super()._group_keys(names), s.shape]) if c]

    def fields(self) -> list[str]:
        s = self.settings
        return [c for c in (*super().fields(), s.size, s.shape) if c]

    def _prepare(
        self,
        frame: Any,
        names: Sequence[str],
        wanted: list[str],
        *,
        extra_keys: Sequence[str] = (),
        call: RenderCall | None = None,
    ) -> Prepared:
        s = self.settings
        if s.aggregate is not None and s.size is not None:
            raise ChartRenderingError(
                "size cannot be combined with aggregate",
                component=self.label,
                hint="drop 'size' or 'aggregate'",
            )
        return super()._prepare(frame, names, wanted, extra_keys=extra_keys, call=call)

    def _reduce(self, prepared: Prepared) -> Prepared:
        limit = self.settings.max_points
        df = prepared.frame
        if df.height > limit:
            total = df.height
            import polars as pl

            df = (
                df.with_row_index("_dp_row").sample(n=limit, seed=0).sort("_dp_row").drop("_dp_row")
            )
            assert isinstance(df, pl.DataFrame)
            prepared.notes.append(f"Showing a random sample of {limit:,} of {total:,} points.")
            prepared.details["downsampled"] = "sample"
            prepared.frame = df
        return prepared

    def _reduce_lazy(self, prepared: Prepared) -> Prepared:
        """On the engine: ``max_points`` rows evenly spaced along the rows ordered by x, y and
        the other columns (a random sample would differ per engine and partitioning)."""
        limit = self.settings.max_points
        query = prepared.query
        columns = list(query.collect_schema().names())
        s = self.settings
        order = [s.x, self._y_column(), *(c for c in columns if c not in (s.x, self._y_column()))]
        total = count_rows(query)
        row = nw.col("_dp_row").cast(nw.Int64)
        picked = (
            query.with_row_index("_dp_row", order_by=list(dict.fromkeys(order)))
            .filter((row * limit) % total < limit)  # exactly `limit` rows, evenly spaced
            .sort("_dp_row")
            .select(columns)
        )
        prepared.frame = to_polars(picked)
        prepared.notes.append(
            f"Showing an evenly spaced sample of {limit:,} of {total:,} points (ordered by x)."
        )
        prepared.details["downsampled"] = "even"
        prepared.reduced = True
        return prepared

    def _chart(self, alt: Any, p: Prepared, names: Sequence[str]) -> Any:
        s = self.settings
        mark: dict[str, Any] = {"opacity": s.opacity, "filled": True}
        color = self._literal_color(names)
        if color:
            mark["color"] = color
        enc: dict[str, Any] = {
            "x": self._x(alt, p, scale=alt.Scale(zero=False)),
            "y": self._y(alt, p, scale=alt.Scale(zero=False)),
        }
        colour = self._color(alt, p, names)
        if colour is not None:
            enc["color"] = colour
        if s.size:
            enc["size"] = alt.Size(
                field=field_ref(s.size), type=self._type(p, s.size), title=s.size
            )
        if s.shape:
            enc["shape"] = alt.Shape(field=field_ref(s.shape), type="nominal", title=s.shape)
        series = self._series_column(names)
        tooltip = self._tooltip(
            alt, p, [c for c in (s.x, self._y_column(), series, s.size, s.shape) if c]
        )
        if tooltip:
            enc["tooltip"] = tooltip
            mark["tooltip"] = True
        return alt.Chart(alt.Data(name="source")).mark_point(**mark).encode(**enc)


class PieChartConfig(BaseChartConfig):
    """PieChart keys: ``category``, ``value`` (counted when absent), ``aggregate``, ``donut``, ..."""

    category: str
    """The column whose values are the slices; the group key of the aggregation."""
    value: str | None = None
    """The numeric column that sizes the slices, aggregated per category (see ``aggregate``).
    None: a slice is the number of rows of its category (in a column named ``count``)."""
    aggregate: Aggregate | None = None
    """How ``value`` is aggregated per category, on the input's engine: ``sum``, ``mean``,
    ``median``, ``min``, ``max``, ``count``, ``n_unique`` or ``std``. None: ``sum``. Without
    ``value`` the rows are counted whatever this says."""
    donut: bool = False
    """Draw a ring instead of a full disc: the hole has a radius of 60 pixels unless
    ``inner_radius`` says otherwise."""
    inner_radius: int | None = Field(default=None, ge=0)
    """Radius of the hole in pixels. A positive value makes a donut even without
    ``donut: true``. None: 60 pixels for a donut, no hole otherwise."""
    max_slices: int = Field(default=10, ge=2)
    """The most slices drawn (at least 2): with more categories, the ``max_slices - 1`` largest
    are kept and the values of the rest are summed into one slice named ``other_label``; the
    subtitle says how many were merged. ``max_points`` caps the slices too: the smaller of the
    two wins."""
    other_label: str = "Other"
    """The name of the slice that holds the categories beyond ``max_slices``."""
    width: int | Literal["container"] = 260
    """Width in pixels, or ``"container"`` to fill the element the chart is embedded in. In a
    dashboard a chart without an explicit ``width`` fills its card."""
    height: int | Literal["container"] = 260
    """Height in pixels, or ``"container"`` to fill the height of the embedding element."""


class PieChart(Chart):
    """Pie chart (or donut) visualization of ``value`` per ``category``.

    Values are aggregated per category on the input's engine (``sum`` by default, a row count
    when ``value`` is not given); categories beyond ``max_slices`` (or ``max_points``, when
    smaller) are summed into "Other".

    Raises:
        ConfigError: the config is invalid when the chart is built (no ``category``,
            ``max_slices`` below 2, ...).
        ChartColumnNotFoundError: ``category`` or ``value`` is not in the data.
        ChartRenderingError: rendering failed (the message names the chart).

    Example:
        >>> chart = PieChart(name="share", config={"category": "region", "value": "revenue", "donut": True})
        >>> chart.settings.max_slices
        10
    """

    config_model: ClassVar[type[ConfigModel]] = PieChartConfig

    def _columns(self, names: Sequence[str]) -> list[str]:
        s = self.settings
        return [c for c in (s.category, s.value) if c]

    def _group_keys(self, names: Sequence[str]) -> list[str]:
        return [str(self.settings.category)]

    def _aggregate(self) -> str | None:
        s = self.settings
        return str(s.aggregate or ("sum" if s.value else "count"))

    def _value_column(self) -> str | None:
        return self.settings.value  # type: ignore[no-any-return]

    def _series_column(self, names: Sequence[str]) -> str | None:
        return str(self.settings.category)

    def _literal_color(self, names: Sequence[str]) -> str | None:
        return None

    def _tooltip_columns(self) -> list[str]:
        return []

    def fields(self) -> list[str]:
        s = self.settings
        return [c for c in (s.category, s.value) if c]

    def _reduce(self, prepared: Prepared) -> Prepared:

        s = self.settings
        value = s.value or "count"
        df = prepared.frame
        limit = self._slices()
        if not prepared.reduced:  # (else _reduce_lazy merged on the engine)
            df = df.sort([value, s.category], descending=[True, False], nulls_last=True)
        if df.height > limit:
            keep = limit - 1
            rest = df.slice(keep)
            df = self._merge(df.head(keep), rest.height, rest.get_column(value).sum(), prepared)
        prepared.frame = df.with_row_index(_ORDER)
        return prepared

    def _slices(self) -> int:
        s = self.settings
        return int(min(s.max_slices, s.max_points))  # both cap the slices: the smaller wins

    def _merge(self, top: Any, merged: int, total: Any, prepared: Prepared) -> Any:
        """The ``top`` slices and one ``other_label`` slice of ``total`` (``merged`` categories)."""
        import polars as pl

        s = self.settings
        value = s.value or "count"
        other = pl.DataFrame(
            {s.category: [s.other_label], value: [0 if total is None else total]},
            schema={s.category: pl.String, value: top.schema[value]},
            strict=False,
        )
        prepared.notes.append(f"{merged:,} smaller categories are summed into {s.other_label!r}.")
        return pl.concat([top.with_columns(pl.col(s.category).cast(pl.String)), other])

    def _reduce_lazy(self, prepared: Prepared) -> Prepared:
        """On the engine: the largest slices, and the count and sum of the rest."""
        s = self.settings
        value = s.value or "count"
        query = prepared.query  # one row per category
        keep = self._slices() - 1
        top = to_polars(
            query.sort([value, s.category], descending=[True, False], nulls_last=True).head(keep)
        )
        categories = top.get_column(s.category)
        kept = nw.col(s.category).is_in(categories.drop_nulls().to_list()).fill_null(False)
        if categories.null_count():
            kept = kept | nw.col(s.category).is_null()
        rest = to_polars(
            query.filter(~kept).select(nw.len().alias("n"), nw.col(value).sum().alias("v"))
        ).row(0, named=True)
        prepared.frame = self._merge(top, int(rest["n"]), rest["v"], prepared)
        prepared.reduced = True
        return prepared

    def _chart(self, alt: Any, p: Prepared, names: Sequence[str]) -> Any:
        s = self.settings
        value = s.value or "count"
        mark: dict[str, Any] = {}
        if s.donut or s.inner_radius:
            mark["innerRadius"] = s.inner_radius if s.inner_radius is not None else 60
        scale = alt.Scale(scheme=s.scheme) if s.scheme else alt.Undefined
        enc: dict[str, Any] = {
            "theta": alt.Theta(
                field=field_ref(value), type="quantitative", stack=True, title=value
            ),
            "color": alt.Color(
                field=field_ref(s.category),
                type="nominal",
                title=s.category,
                scale=scale,
                sort=alt.EncodingSortField(field=_ORDER, op="min", order="ascending"),
            ),
            "order": alt.Order(field=_ORDER, type="quantitative", sort="ascending"),
        }
        tooltip = self._tooltip(alt, p, [s.category, value])
        if tooltip:
            enc["tooltip"] = tooltip
            mark["tooltip"] = True
        return alt.Chart(alt.Data(name="source")).mark_arc(**mark).encode(**enc)


class HeatmapConfig(BaseChartConfig):
    """Heatmap keys: ``x``, ``y``, ``value`` (counted when absent), ``aggregate``, ``scheme``."""

    x: str
    """The column whose values are the columns of cells; numbers are treated as ordered
    categories, dates and datetimes become ``YYYY-MM-DD`` labels."""
    y: str
    """The column whose values are the rows of cells (treated as ``x`` is)."""
    value: str | None = None
    """The numeric column aggregated per (x, y) cell and shown as the cell's colour. None: the
    number of rows per cell (in a column named ``count``)."""
    aggregate: Aggregate | None = None
    """How ``value`` is aggregated per cell, on the input's engine: ``sum``, ``mean``,
    ``median``, ``min``, ``max``, ``count``, ``n_unique`` or ``std``. None: ``mean``. Without
    ``value`` the rows are counted whatever this says."""
    x_title: str | None = None
    """The x axis title. None: the column name."""
    y_title: str | None = None
    """The y axis title. None: the column name."""
    value_title: str | None = None
    """The colour legend's title. None: the value column and its aggregation
    (``revenue (mean)``), or ``count``."""
    scheme: str | None = "blues"
    """The Vega colour scheme of the cells (a sequential one suits: ``blues``, ``viridis``,
    ``reds``, ...). None: Vega-Lite's default colour range."""


class Heatmap(Chart):
    """Heatmap visualization: ``value`` aggregated per (``x``, ``y``) cell, coloured by a scheme.

    Aggregation (``mean`` by default, a row count when ``value`` is not given) runs on the
    input's engine; dates become ``YYYY-MM-DD`` labels.

    Raises:
        ConfigError: the config is invalid when the chart is built (no ``x`` or ``y``, ...).
        ChartColumnNotFoundError: ``x``, ``y`` or ``value`` is not in the data.
        ChartRenderingError: rendering failed (the message names the chart).

    Example:
        >>> chart = Heatmap(name="hm", config={"x": "weekday", "y": "region", "value": "revenue",
        ...                                    "aggregate": "sum", "scheme": "viridis"})
        >>> chart.settings.scheme
        'viridis'
    """

    config_model: ClassVar[type[ConfigModel]] = HeatmapConfig
    supports_rollup: ClassVar[bool] = True

    def _columns(self, names: Sequence[str]) -> list[str]:
        s = self.settings
        return [c for c in dict.fromkeys([s.x, s.y, s.value]) if c]

    def _group_keys(self, names: Sequence[str]) -> list[str]:
        s = self.settings
        return list(dict.fromkeys([s.x, s.y]))

    def _aggregate(self) -> str | None:
        s = self.settings
        return str(s.aggregate or ("mean" if s.value else "count"))

    def _value_column(self) -> str | None:
        return self.settings.value  # type: ignore[no-any-return]

    def _series_column(self, names: Sequence[str]) -> str | None:
        return None

    def _literal_color(self, names: Sequence[str]) -> str | None:
        return None

    def _tooltip_columns(self) -> list[str]:
        return []

    def fields(self) -> list[str]:
        s = self.settings
        return [c for c in (s.x, s.y, s.value) if c]

    def _reduce(self, prepared: Prepared) -> Prepared:
        import polars as pl

        s = self.settings
        df = prepared.frame
        for c in {s.x, s.y}:
            if df.schema[c] == pl.Date or isinstance(df.schema[c], pl.Datetime):
                df = df.with_columns(pl.col(c).dt.strftime("%Y-%m-%d"))
        df = df.sort([s.y, s.x], nulls_last=True)
        prepared.frame = df
        return super()._reduce(prepared)

    def _reduce_lazy(self, prepared: Prepared) -> Prepared:
        """The first cells by (y, x) on the engine, dates made labels first (as ``_reduce``)."""
        s = self.settings
        query = prepared.query
        schema = query.collect_schema()
        dates = [c for c in {s.x, s.y} if schema[c] == nw.Date or schema[c] == nw.Datetime]
        if dates:
            query = query.with_columns([nw.col(c).dt.to_string("%Y-%m-%d") for c in dates])
        return self._first_rows(prepared, query, [s.y, s.x])

    def _chart(self, alt: Any, p: Prepared, names: Sequence[str]) -> Any:
        s = self.settings
        value = s.value or "count"

        def kind(c: str) -> str:
            return "ordinal" if self._type(p, c) == "quantitative" else "nominal"

        enc: dict[str, Any] = {
            "x": alt.X(field=field_ref(s.x), type=kind(s.x), title=s.x_title or s.x),
            "y": alt.Y(field=field_ref(s.y), type=kind(s.y), title=s.y_title or s.y),
            "color": alt.Color(
                field=field_ref(value),
                type="quantitative",
                title=s.value_title
                or (value if s.value is None else f"{value} ({self._aggregate()})"),
                scale=alt.Scale(scheme=s.scheme) if s.scheme else alt.Undefined,
                aggregate=self._rollup(p) or alt.Undefined,
            ),
        }
        mark: dict[str, Any] = {}
        tooltip = self._tooltip(alt, p, [s.x, s.y, value])
        if tooltip:
            enc["tooltip"] = tooltip
            mark["tooltip"] = True
        return alt.Chart(alt.Data(name="source")).mark_rect(**mark).encode(**enc)
