"""OutlierHandler: find outliers per column (IQR, z-score, percentiles, fixed bounds) and act."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import narwhals as nw
from pydantic import Field, model_validator

from data_pipeline.core.component import Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import DataTypeError
from data_pipeline.core.frames import is_lazy
from data_pipeline.core.secrets import DATA_KEYS
from data_pipeline.transformation._common import (
    collect_row,
    count_true,
    is_numeric,
    nan_flags,
    schema_of,
    should_count,
    value_expr,
)
from data_pipeline.transformation.base import DataFrameTransformer

__all__ = ["OutlierConfig", "OutlierHandler"]

Method = Literal["iqr", "zscore", "percentile", "bounds"]
Action = Literal["clip", "remove", "flag", "null"]


class OutlierRule(ConfigModel):
    """Per-column settings; any key left out is taken from the top level."""

    method: Method | None = None
    """This column's detection method (see the handler's ``method``)."""
    factor: float | None = Field(default=None, gt=0)
    """This column's IQR multiplier (``iqr``)."""
    threshold: float | None = Field(default=None, gt=0)
    """This column's z-score limit in standard deviations (``zscore``)."""
    lower_percentile: float | None = Field(default=None, ge=0, le=1)
    """This column's lower quantile as a fraction 0-1 (``percentile``)."""
    upper_percentile: float | None = Field(default=None, ge=0, le=1)
    """This column's upper quantile as a fraction 0-1 (``percentile``)."""
    lower: float | None = None
    """This column's fixed lower bound (``bounds``)."""
    upper: float | None = None
    """This column's fixed upper bound (``bounds``)."""
    action: Action | None = None
    """What to do with this column's outliers (see the handler's ``action``)."""


class OutlierConfig(ConfigModel):
    """Config of :class:`OutlierHandler`."""

    method: Method = "iqr"
    """How outliers are found, per column from its finite values: ``iqr`` (outside ``[Q1 -
    factor*IQR, Q3 + factor*IQR]``), ``zscore`` (more than ``threshold`` sample standard
    deviations from the mean), ``percentile`` (outside the ``lower_percentile`` /
    ``upper_percentile`` quantiles) or ``bounds`` (outside fixed ``lower`` / ``upper``)."""
    columns: list[str] | None = None
    """The numeric columns checked (one name or a list; a non-numeric one named here is an
    error); absent: every numeric column."""
    factor: float = Field(default=1.5, gt=0)
    """``iqr``: the multiple of the interquartile range beyond the quartiles that is an
    outlier; 1.5 is Tukey's fences, 3 keeps only far outliers."""
    threshold: float = Field(default=3.0, gt=0)
    """``zscore``: how many sample standard deviations from the mean a value may be before it
    is an outlier."""
    lower_percentile: float = Field(default=0.01, ge=0, le=1)
    """``percentile``: the lower quantile as a fraction 0-1 (``0.01`` = the 1st percentile,
    linear interpolation); values below it are outliers. Must be below ``upper_percentile``."""
    upper_percentile: float = Field(default=0.99, ge=0, le=1)
    """``percentile``: the upper quantile as a fraction 0-1; values above it are outliers."""
    lower: float | None = None
    """``bounds``: values below this are outliers (absent: no lower bound; ``bounds`` needs
    ``lower`` and/or ``upper``). Ignored by the other methods."""
    upper: float | None = None
    """``bounds``: values above this are outliers (absent: no upper bound). Ignored by the
    other methods."""
    action: Action = "clip"
    """What happens to an outlier: ``clip`` it to the nearest bound (an integer column becomes
    float unless the bounds are fixed integers), ``remove`` its row, ``null`` it, or ``flag``
    it in a new boolean column ``<column><flag_suffix>`` leaving the value as it is."""
    flag_suffix: str = Field(default="_outlier", min_length=1)
    """``action: flag``: appended to the column name to name its flag column (``price`` ->
    ``price_outlier``)."""
    column_settings: Annotated[dict[str, OutlierRule], DATA_KEYS] = Field(default_factory=dict)
    """Column -> a mapping of any of ``method``, ``factor``, ``threshold``,
    ``lower_percentile``, ``upper_percentile``, ``lower``, ``upper``, ``action`` overriding the
    top-level keys for that column; its columns are checked even when ``columns`` omits them."""
    nan_as_null: bool = True
    """Has no effect here: NaN (like null and infinities) is never an outlier, never enters a
    statistic and is kept as it is, whatever this says. Accepted for symmetry with
    MissingValueHandler."""
    count: bool | None = None
    """Compute the bounds and the outlier count per column into ``get_metadata()["details"]``;
    absent: on eager frames only (counting a lazy frame computes it); ``true``/``false`` force
    it."""

    @model_validator(mode="before")
    @classmethod
    def _columns_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("columns"), str):
            data = {**data, "columns": [data["columns"]]}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> OutlierConfig:
        rules: list[tuple[str, Any]] = [("", self)]
        rules += [(f"column_settings.{c}.", r) for c, r in self.column_settings.items()]
        for where, rule in rules:
            method = rule.method or self.method
            lower = rule.lower if rule.lower is not None else self.lower
            upper = rule.upper if rule.upper is not None else self.upper
            if method == "bounds" and lower is None and upper is None:
                raise ValueError(f"{where}method 'bounds' needs 'lower' and/or 'upper'")
            if lower is not None and upper is not None and lower > upper:
                raise ValueError(f"{where}lower ({lower}) is above upper ({upper})")
            lp = (
                rule.lower_percentile
                if rule.lower_percentile is not None
                else self.lower_percentile
            )
            up = (
                rule.upper_percentile
                if rule.upper_percentile is not None
                else self.upper_percentile
            )
            if method == "percentile" and lp >= up:
                raise ValueError(
                    f"{where}lower_percentile ({lp}) must be below upper_percentile ({up})"
                )
        return self


class OutlierHandler(DataFrameTransformer):
    """Detect outliers per numeric column and clip, remove, flag or null them.

    Methods: ``iqr`` (outside ``[Q1 - factor*IQR, Q3 + factor*IQR]``, linear quantiles),
    ``zscore`` (further than ``threshold`` sample standard deviations from the mean),
    ``percentile`` (outside the ``lower_percentile``/``upper_percentile`` quantiles, as fractions
    0..1) and ``bounds`` (outside fixed ``lower``/``upper``). Actions: ``clip`` to the bounds,
    ``remove`` the rows, ``flag`` (adds a boolean column ``<column><flag_suffix>``) or ``null``.
    Missing values (and NaN) are never outliers and are kept as they are. ``columns`` defaults to
    every numeric column; ``column_settings`` overrides any key per column. On eager frames
    ``get_metadata()["details"]`` holds the bounds and the outlier count per column.

    Clipping an integer column gives a float column unless the bounds are fixed integers.

    Raises:
        ConfigError: an invalid config (``bounds`` without ``lower``/``upper``, ``lower`` above
            ``upper``, percentiles out of order, ...).
        ColumnNotFoundError: a column of ``columns`` or ``column_settings`` is not in the data.
        DataTypeError: a column named in ``columns`` or ``column_settings`` is not numeric.

    Example:
        >>> import polars as pl
        >>> handler = OutlierHandler(name="clip_prices", config={
        ...     "method": "bounds", "lower": 0, "upper": 100, "action": "clip",
        ...     "columns": ["price"],
        ... })
        >>> handler.transform(pl.DataFrame({"price": [-5.0, 50.0, 500.0]}))["price"].to_list()
        [0.0, 50.0, 100.0]
    """

    config_model = OutlierConfig
    settings: OutlierConfig

    def required_columns(self, columns: Sequence[str]) -> list[str]:
        needed = list(self.settings.columns or [])
        return needed + [c for c in self.settings.column_settings if c not in needed]

    def output_columns(self, columns: Sequence[str]) -> list[str]:
        out = list(columns)
        flagged = [
            c for c in self._targets_from_names(columns) if self._rule(c)["action"] == "flag"
        ]
        return out + [
            c + self.settings.flag_suffix
            for c in flagged
            if c + self.settings.flag_suffix not in out
        ]

    # -- planning ----------------------------------------------------------------------------

    def _targets_from_names(self, columns: Sequence[str]) -> list[str]:
        s = self.settings
        targets = list(s.columns) if s.columns is not None else list(columns)
        return targets + [c for c in s.column_settings if c not in targets]

    def _targets(self, schema: dict[str, Any]) -> list[str]:
        s = self.settings
        targets = self._targets_from_names(list(schema))
        out = []
        for column in targets:
            dtype = schema[column]
            if is_numeric(dtype):
                out.append(column)
            elif s.columns is not None or column in s.column_settings:
                raise DataTypeError(
                    f"outliers need a numeric column; column {column!r} is {dtype}",
                    component=self.label,
                    hint="convert it first (DataTypeConverter) or leave it out of 'columns'",
                )
        return out

    def _rule(self, column: str) -> dict[str, Any]:
        s = self.settings
        merged = {k: getattr(s, k) for k in OutlierRule.model_fields}
        rule = s.column_settings.get(column)
        if rule is not None:
            merged.update({k: v for k, v in rule.model_dump().items() if v is not None})
        return merged

    def _stats(
        self, column: str, dtype: Any, rule: dict[str, Any], nan_as_null: bool
    ) -> dict[str, Any]:
        """The aggregate expressions a method needs, each computed once."""
        x = value_expr(column, dtype, nan_as_null=nan_as_null)
        if dtype.is_integer() or dtype == nw.Decimal:
            x = x.cast(nw.Float64)
        elif dtype.is_float():
            x = nw.when(x.is_finite()).then(x)  # ±inf and NaN never enter a statistic
        method = rule["method"]
        if method == "iqr":
            return {
                "q1": x.quantile(0.25, interpolation="linear"),
                "q3": x.quantile(0.75, interpolation="linear"),
            }
        if method == "zscore":
            return {"mean": x.mean(), "sd": x.std(ddof=1)}
        return {
            "lo": x.quantile(rule["lower_percentile"], interpolation="linear"),
            "hi": x.quantile(rule["upper_percentile"], interpolation="linear"),
        }

    @staticmethod
    def _combine(rule: dict[str, Any], v: dict[str, Any]) -> tuple[Any, Any]:
        """Bounds from the statistics (plain numbers or expressions alike)."""
        method = rule["method"]
        if method == "iqr":
            spread = (v["q3"] - v["q1"]) * rule["factor"]
            return v["q1"] - spread, v["q3"] + spread
        if method == "zscore":
            return v["mean"] - v["sd"] * rule["threshold"], v["mean"] + v["sd"] * rule["threshold"]
        return v["lo"], v["hi"]

    # -- the work ----------------------------------------------------------------------------

    def _apply_frame(self, frame: Any, op: Operation) -> Any:
        s = self.settings
        schema = schema_of(frame)
        targets = self._targets(schema)
        op.details["columns"] = list(targets)
        if not targets:
            return frame
        rules = {c: self._rule(c) for c in targets}
        op.details["methods"] = {c: rules[c]["method"] for c in targets}
        op.details["actions"] = {c: rules[c]["action"] for c in targets}
        # NaN is never an outlier and never in a statistic, whatever nan_as_null: compared as
        # null (Polars and DuckDB would order it above +inf)
        nan = nan_flags(frame, schema, True)
        native_clip = frame.implementation in _NATIVE_CLIP
        frame, bounds, helpers, known = self._resolve_bounds(frame, schema, targets, rules, nan)
        masks = {c: self._mask(c, schema[c], nan[c], *bounds[c]) for c in targets}

        if should_count(frame, s.count):
            # below and above counted apart (lower <= upper, so no value is counted twice):
            # plain comparisons and sums, no combined mask to build
            exprs = []
            for i, c in enumerate(targets):
                x = value_expr(c, schema[c], nan_as_null=nan[c])
                lo, hi = bounds[c]
                exprs.append(
                    count_true(frame, x < lo).alias(f"nlo{i}")
                    if lo is not None
                    else nw.lit(0).alias(f"nlo{i}")
                )
                exprs.append(
                    count_true(frame, x > hi).alias(f"nhi{i}")
                    if hi is not None
                    else nw.lit(0).alias(f"nhi{i}")
                )
            for i, c in enumerate(targets):
                if c not in known:
                    lo, hi = bounds[c]
                    exprs.append((lo if lo is not None else nw.lit(None)).max().alias(f"lo{i}"))
                    exprs.append((hi if hi is not None else nw.lit(None)).max().alias(f"hi{i}"))
            row = collect_row(frame, exprs)
            op.details["outliers"] = {
                c: int(row[f"nlo{i}"] or 0) + int(row[f"nhi{i}"] or 0)
                for i, c in enumerate(targets)
            }
            op.details["bounds"] = {
                c: known[c] if c in known else [_plain(row[f"lo{i}"]), _plain(row[f"hi{i}"])]
                for i, c in enumerate(targets)
            }

        nulled = [c for c in targets if rules[c]["action"] == "null"]
        if nulled:
            frame = _nullable(frame, nulled)
        updates = []
        removing = []
        for c in targets:
            action = rules[c]["action"]
            if action == "clip":
                updates.append(self._clip(c, schema[c], rules[c], nan[c], native_clip, *bounds[c]))
            elif action == "null":
                updates.append(nw.when(~masks[c]).then(nw.col(c)).alias(c))
            elif action == "flag":
                updates.append(masks[c].alias(c + s.flag_suffix))
            else:
                removing.append(masks[c])
        if updates:
            frame = frame.with_columns(*updates)
        if removing:
            rows_before = None if is_lazy(frame) else len(frame)
            frame = frame.filter(~nw.any_horizontal(*removing, ignore_nulls=True))
            if rows_before is not None:
                op.details["rows_removed"] = rows_before - len(frame)
        return frame.drop(*helpers) if helpers else frame

    def _resolve_bounds(
        self,
        frame: Any,
        schema: dict[str, Any],
        targets: list[str],
        rules: dict[str, Any],
        nan: dict[str, bool],
    ) -> tuple[Any, dict[str, tuple[Any, Any]], list[str], dict[str, list[Any]]]:
        """Compute each statistic once.

        Eager frames: one aggregate pass, then the bounds are literals. Lazy frames: the bounds
        become helper columns in one ``with_columns`` (so an engine computes each quantile once,
        and SQL engines never filter on a window function); they are dropped at the end.
        Returns the frame, the bound expressions, the helper names and the bounds already known
        as plain values (for metadata).
        """
        stats = [c for c in targets if rules[c]["method"] != "bounds"]
        known: dict[str, list[Any]] = {}
        bounds: dict[str, tuple[Any, Any]] = {}
        for c in targets:
            if c not in stats:
                lower, upper = rules[c]["lower"], rules[c]["upper"]
                known[c] = [_plain(lower), _plain(upper)]
                bounds[c] = (
                    lower,  # plain numbers: no literal column is built (pandas would)
                    upper,
                )
        helpers: list[str] = []
        if not stats:
            return frame, bounds, helpers, known
        exprs = {c: self._stats(c, schema[c], rules[c], nan[c]) for c in stats}
        names = {c: {k: f"__dp_{k}_{i}" for k in exprs[c]} for i, c in enumerate(stats)}
        if not is_lazy(frame):
            native = self._pandas_quantiles(frame, stats, rules, nan)
            row = collect_row(
                frame,
                [
                    e.alias(names[c][k])
                    for c in stats
                    if c not in native
                    for k, e in exprs[c].items()
                ],
            )
            for c in stats:
                values = native.get(c) or {k: _plain(row[names[c][k]]) for k in exprs[c]}
                lo, hi = (
                    (None, None)
                    if any(v is None for v in values.values())
                    else self._combine(rules[c], values)
                )
                known[c] = [lo, hi]
                bounds[c] = (
                    lo,  # plain floats: no literal column is built (pandas would)
                    hi,
                )
            return frame, bounds, helpers, known
        columns = []
        for c in stats:
            columns += [e.alias(names[c][k]) for k, e in exprs[c].items()]
            helpers += list(names[c].values())
            bounds[c] = self._combine(rules[c], {k: nw.col(n) for k, n in names[c].items()})
        return frame.with_columns(*columns), bounds, helpers, known

    @staticmethod
    def _pandas_quantiles(
        frame: Any, stats: list[str], rules: dict[str, Any], nan: dict[str, bool]
    ) -> dict[str, dict[str, Any]]:
        """pandas: both quantiles of a column in one ``Series.quantile([..])`` (one partial sort
        instead of two; the values are the ones Narwhals gets, one quantile at a time)."""
        if not frame.implementation.is_pandas_like():
            return {}
        import numpy as np
        import pandas as pd

        native = frame.to_native()
        out: dict[str, dict[str, Any]] = {}
        for c in stats:
            rule = rules[c]
            series = native[c]
            numpy_backed = isinstance(series.dtype, np.dtype) and series.dtype.kind in "iuf"
            if nan[c] or not numpy_backed or rule["method"] not in ("iqr", "percentile"):
                continue
            if series.dtype.kind == "f":
                values = series.to_numpy()
                if np.isinf(values).any():  # ±inf never enter a statistic (one pass, no copy)
                    series = series[np.isfinite(values)]
            if rule["method"] == "iqr":
                wanted = {"q1": 0.25, "q3": 0.75}
            else:
                wanted = {"lo": rule["lower_percentile"], "hi": rule["upper_percentile"]}
            result = series.quantile(list(wanted.values()), interpolation="linear")
            out[c] = {
                k: None if pd.isna(v) else float(v)
                for k, v in zip(wanted, result.tolist(), strict=True)
            }
        return out

    def _mask(self, column: str, dtype: Any, nan_as_null: bool, lower: Any, upper: Any) -> Any:
        x = value_expr(column, dtype, nan_as_null=nan_as_null)
        parts = []
        if lower is not None:
            parts.append((x < lower).fill_null(False))
        if upper is not None:
            parts.append((x > upper).fill_null(False))
        if not parts:
            return x.is_null() & ~x.is_null()  # no bound at all: nothing is an outlier
        return nw.any_horizontal(*parts, ignore_nulls=True) if len(parts) > 1 else parts[0]

    def _clip(
        self,
        column: str,
        dtype: Any,
        rule: dict[str, Any],
        nan_as_null: bool,
        native_clip: bool,
        lower: Any,
        upper: Any,
    ) -> Any:
        """Clip to the bounds; missing values and NaN are kept as they are.

        Polars and pandas clip natively (one pass; both pass NaN and null through); other engines
        get ``when/then`` (DuckDB and Spark order NaN above every number).
        """
        x = value_expr(column, dtype, nan_as_null=nan_as_null)
        original = nw.col(column)
        if dtype.is_integer() or dtype == nw.Decimal:
            fixed = _fixed_bounds(dtype, rule)
            if fixed is not None:
                lower, upper = (
                    None if b is None else b if native_clip else nw.lit(b, dtype=dtype)
                    for b in fixed
                )
            else:
                x = x.cast(nw.Float64)
                original = original.cast(nw.Float64)
        expr: Any = None
        if lower is None and upper is None:
            return original.alias(column)
        if native_clip:
            return original.clip(lower, upper).alias(column)
        if lower is not None:
            expr = nw.when((x < lower).fill_null(False)).then(lower)
        if upper is not None:
            cond = (x > upper).fill_null(False)
            expr = nw.when(cond).then(upper) if expr is None else expr.when(cond).then(upper)
        return expr.otherwise(original).alias(column)


_NATIVE_CLIP = {nw.Implementation.POLARS, nw.Implementation.PANDAS}


def _nullable(frame: Any, columns: list[str]) -> Any:
    """pandas: numpy integer columns that may receive nulls take the nullable dtype (Int64, ...),
    so an integer column stays an integer column (numpy would make it float64)."""
    if frame.implementation is not nw.Implementation.PANDAS or is_lazy(frame):
        return frame
    import numpy as np

    native = frame.to_native()
    casts = {
        c: native[c].dtype.name.capitalize().replace("Uint", "UInt")
        for c in columns
        if isinstance(native[c].dtype, np.dtype) and native[c].dtype.kind in "iu"
    }
    return nw.from_native(native.astype(casts)) if casts else frame


def _fixed_bounds(dtype: Any, rule: dict[str, Any]) -> tuple[Any, Any] | None:
    """Fixed bounds as values of an integer or decimal column, when it holds them exactly (then
    clipping keeps the column's type); None otherwise (the column becomes Float64)."""
    import decimal

    if rule["method"] != "bounds":
        return None
    bounds = (rule["lower"], rule["upper"])
    if dtype.is_integer():
        if all(b is None or float(b).is_integer() for b in bounds):
            return tuple(None if b is None else int(b) for b in bounds)  # type: ignore[return-value]
        return None
    scale = decimal.Decimal(1).scaleb(-(getattr(dtype, "scale", None) or 0))
    exact = [None if b is None else decimal.Decimal(str(b)) for b in bounds]
    if all(b is None or b == b.quantize(scale) for b in exact):
        return tuple(None if b is None else b.quantize(scale) for b in exact)  # type: ignore[return-value]
    return None


def _plain(value: Any) -> Any:
    """A bound as a plain float for metadata (``None`` stays ``None``)."""
    return None if value is None else float(value)
