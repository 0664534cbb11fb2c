"""KPI: one number, its change against a comparison (coloured up/down), an optional sparkline."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from data_pipeline.core.component import Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import ChartRenderingError
from data_pipeline.core.frames import to_polars
from data_pipeline.visualization.base import (
    Aggregate,
    Visualization,
    VisualizationConfig,
    agg_expr,
    field_ref,
    to_records,
)
from data_pipeline.visualization.table import _check_spec

__all__ = ["KPI", "KPIConfig"]


class KPIConfig(VisualizationConfig):
    """KPI keys: ``value``, ``aggregate``, ``period``, ``comparison``, ``format``, ..."""

    value: str
    """The numeric column aggregated into the tile's number."""
    aggregate: Aggregate = "sum"
    """How ``value`` is aggregated (over all rows, or per period for the sparkline and
    ``comparison: previous``), on the input's engine: ``sum``, ``mean``, ``median``, ``min``,
    ``max``, ``count``, ``n_unique`` or ``std``."""
    period: str | None = None
    """A column that splits the rows into periods (a date, a month, ...): the tile draws a
    sparkline of the value per period (rows with a null period are left out of it), and
    ``comparison: previous`` compares the last two periods. None: no sparkline."""
    comparison: float | Literal["previous"] | None = None
    """What the delta under the number is measured against: a number (a target; the number is
    then the aggregate over all rows), or ``previous``: the number is the last period's and the
    delta is against the period before (needs ``period``). The delta is shown in percent of
    the comparison (an absolute difference when it is 0). None: no delta."""
    format: str = ",.0f"
    """A Python format spec for the number (and for a numeric target in the delta text):
    ``,.0f``, ``,.2f``, ``.1%``, ... Checked when the KPI is built."""
    prefix: str = ""
    """Text put before the formatted number, e.g. ``$``."""
    suffix: str = ""
    """Text put after the formatted number, e.g. `` kg`` or ``%``."""
    higher_is_better: bool = True
    """Colours the delta: ``true`` shows a rise as good (green) and a fall as bad (red);
    ``false`` the reverse, for costs, latencies or error counts."""
    sparkline: bool = True
    """Draw the sparkline of the value per period (only with ``period`` and at least two
    periods)."""
    max_points: int = Field(default=500, ge=10)
    """The most periods the sparkline embeds (at least 10); above it the line is downsampled
    with LTTB, which keeps peaks and troughs."""

    @field_validator("format")
    @classmethod
    def _check_format(cls, value: str) -> str:
        return _check_spec(value)


class KPI(Visualization):
    """KPI tile: an aggregated value, its delta against a comparison, an optional sparkline.

    ``comparison`` is a number (a target) or ``"previous"``: then ``period`` (a column such as a
    date) splits the data, the value is the last period's and the delta is against the one
    before. With ``period`` the tile also draws a sparkline of the value per period.

    Raises:
        ConfigError: the config is invalid when the tile is built (no ``value``, a ``format``
            Python cannot apply to a number, ...).
        ChartColumnNotFoundError: ``value`` or ``period`` is not in the data.
        ChartRenderingError: ``comparison: previous`` without a ``period``.
        VisualizationError: rendering failed otherwise (the message names the tile).

    Example:
        >>> kpi = KPI(name="revenue_kpi", config={
        ...     "value": "revenue", "aggregate": "sum", "period": "date",
        ...     "comparison": "previous", "title": "Revenue", "prefix": "$",
        ... })
        >>> kpi.settings.comparison
        'previous'
    """

    config_model: ClassVar[type[ConfigModel]] = KPIConfig
    kind: ClassVar[str] = "kpi"
    settings: KPIConfig

    def fields(self) -> list[str]:
        s = self.settings
        return [c for c in (s.value, s.period) if c]

    def _render(self, frame: Any, op: Operation) -> dict[str, Any]:
        import polars as pl

        s = self.settings
        if s.comparison == "previous" and s.period is None:
            raise ChartRenderingError(
                'comparison "previous" needs a period column',
                component=self.label,
                hint='set "period" to a date or period column, or give a number as comparison',
            )
        self._require(frame, [s.value, s.period])
        series = None
        if s.period is not None:
            series = (
                to_polars(frame.group_by(s.period).agg(agg_expr(s.value, s.aggregate)))
                .sort(s.period)
                .filter(pl.col(s.period).is_not_null())
            )
        vs: str | None
        if s.comparison == "previous":
            assert series is not None
            vals = series.get_column(s.value).to_list()
            current = vals[-1] if vals else None
            compared = vals[-2] if len(vals) > 1 else None
            vs = f"previous {s.period}"
        else:
            current = to_polars(frame.select(agg_expr(s.value, s.aggregate))).item()
            compared = s.comparison
            vs = None if compared is None else self._fmt(compared)
        delta = delta_pct = None
        direction = tone = "flat"
        text = None
        if current is not None and compared is not None:
            delta = float(current) - float(compared)
            delta_pct = delta / abs(float(compared)) if compared else None
            direction = "up" if delta > 0 else "down" if delta < 0 else "flat"
            if direction != "flat":
                tone = "good" if (direction == "up") == s.higher_is_better else "bad"
            arrow = {"up": "\u25b2", "down": "\u25bc", "flat": "\u25c6"}[direction]
            change = f"{delta_pct:+.1%}" if delta_pct is not None else f"{delta:+,.2f}"
            text = f"{arrow} {change} vs {vs}"
        sparkline = None
        if series is not None and s.sparkline and series.height > 1:
            sparkline = self._sparkline(series)
        op.rows_out = 1
        return {
            "type": "kpi",
            "name": self.name,
            "title": self.title,
            "description": s.description,
            "value": _plain(current),
            "formatted_value": self._fmt(current),
            "comparison": _plain(compared),
            "delta": delta,
            "delta_pct": delta_pct,
            "direction": direction,
            "tone": tone,
            "delta_text": text,
            "sparkline": sparkline,
        }

    def _fmt(self, value: Any) -> str:
        if value is None:
            return "\u2013"
        s = self.settings
        try:
            return f"{s.prefix}{format(value, s.format)}{s.suffix}"
        except (ValueError, TypeError):
            return f"{s.prefix}{value}{s.suffix}"

    def _sparkline(self, series: Any) -> dict[str, Any]:
        import altair as alt
        import polars as pl

        from data_pipeline.visualization.base import infer_type
        from data_pipeline.visualization.sampling import lttb_indices

        s = self.settings
        assert s.period is not None
        if series.height > s.max_points:
            xs = series.get_column(s.period)
            xs = xs.to_physical() if xs.dtype.is_temporal() else pl.Series(range(series.height))
            ys = series.get_column(s.value).cast(pl.Float64).fill_null(0.0)
            series = series[
                lttb_indices(xs.cast(pl.Float64).to_numpy(), ys.to_numpy(), s.max_points)
            ]
        x_type = infer_type(series.schema[s.period])
        chart = (
            alt.Chart(alt.Data(name="source"))  # type: ignore[no-untyped-call]
            .mark_line(tooltip=True)
            .encode(
                x=alt.X(
                    field=field_ref(s.period),
                    type=x_type if x_type != "nominal" else "ordinal",
                    axis=None,
                ),
                y=alt.Y(
                    field=field_ref(s.value),
                    type="quantitative",
                    axis=None,
                    scale=alt.Scale(zero=False),
                ),
                tooltip=[
                    alt.Tooltip(field=field_ref(s.period), type=x_type, title=s.period),
                    alt.Tooltip(
                        field=field_ref(s.value), type="quantitative", title=s.value, format=",.4~f"
                    ),
                ],
            )
            .properties(width=200, height=40)
            .configure_view(stroke=None)
        )
        spec: dict[str, Any] = chart.to_dict()
        spec["config"] = {"view": {"stroke": None}}
        spec["data"] = {"name": "source"}
        spec["datasets"] = {"source": to_records(series)}
        return spec


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (int, float, str, bool)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
