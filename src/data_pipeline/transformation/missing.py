"""MissingValueHandler: fill or drop missing values, per column, on every engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import narwhals as nw
from pydantic import Field, model_validator

from data_pipeline.core.component import Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import MissingValueError
from data_pipeline.core.frames import is_lazy
from data_pipeline.core.secrets import DATA_KEYS
from data_pipeline.transformation._common import (
    collect_row,
    count_true,
    is_numeric,
    missing_expr,
    nan_flags,
    schema_of,
    should_count,
    unsupported,
    value_expr,
)
from data_pipeline.transformation.base import DataFrameTransformer

__all__ = ["MissingValueConfig", "MissingValueHandler", "Strategy"]

Strategy = Literal[
    "fill",
    "mean",
    "median",
    "mode",
    "constant",
    "forward_fill",
    "backward_fill",
    "drop",
    "drop_columns",
]
_STATS = ("mean", "median")
_NEEDS_VALUE = ("constant",)


class ColumnStrategy(ConfigModel):
    """A per-column override: ``{"strategy": "constant", "value": 0}``."""

    strategy: Strategy
    """What to do with this column's missing values (a strategy name, as for the
    handler's ``strategy``)."""
    value: Any = None
    """The fill value of ``constant`` (required there) or ``fill``; it must fit the column's
    type exactly (an integer column takes whole numbers, a date column dates, ...)."""

    @model_validator(mode="after")
    def _value_given(self) -> ColumnStrategy:
        if self.strategy in _NEEDS_VALUE and self.value is None:
            raise ValueError("strategy 'constant' needs a 'value'")
        return self


class MissingValueConfig(ConfigModel):
    """Config of :class:`MissingValueHandler`."""

    strategy: Strategy = "fill"
    """How missing values are handled in ``columns``: ``fill`` (``value`` when given, else the
    median of a numeric column and the mode of any other), ``mean``, ``median`` (numeric only;
    integer columns become floats), ``mode`` (most frequent value, ties: the smallest),
    ``constant`` (``value``), ``forward_fill``/``backward_fill`` (previous/next value, see
    ``order_by``, ``limit``), ``drop`` (rows with a missing value in these columns) or
    ``drop_columns`` (columns missing more than ``max_missing_ratio``)."""
    columns: list[str] | None = None
    """The columns handled (one name or a list); absent: every column (where ``mean`` /
    ``median`` then skip the non-numeric ones instead of failing)."""
    value: Any = None
    """The fill value for ``constant`` (required there) and ``fill``: one scalar for every
    column, or ``{column: value}`` (``constant`` then fills only the columns it names). It must
    fit each column's type exactly (an integer column takes whole numbers, a date column
    dates, ...); a mismatch is an error, not a cast."""
    column_strategies: Annotated[dict[str, Strategy | ColumnStrategy], DATA_KEYS] = Field(
        default_factory=dict
    )
    """Column -> strategy name, or ``{strategy: ..., value: ...}``, overriding ``strategy``
    for that column; its columns are handled even when ``columns`` omits them."""
    order_by: list[str] | None = None
    """Column(s) giving the row order for ``forward_fill``/``backward_fill`` (required on
    lazy engines such as DuckDB and Spark, whose rows have no order); absent: the frame's
    current row order."""
    limit: int | None = Field(default=None, ge=1)
    """``forward_fill``/``backward_fill`` only: fill at most this many consecutive missing
    values per gap; absent: no limit."""
    max_missing_ratio: float = Field(default=0.5, ge=0.0, le=1.0)
    """``drop_columns`` only: a column whose fraction of missing values (0-1) is above this is
    dropped; ``0.5`` drops columns more than half empty."""
    nan_as_null: bool = True
    """Treat NaN in float columns as missing, like null; ``false`` keeps NaN as a value (pandas
    cannot tell NaN from null, so it is missing there either way)."""
    count: bool | None = None
    """Count the values filled per column into ``get_metadata()["details"]``; absent: count on
    eager frames only (counting a lazy frame computes it), ``true``/``false`` force it."""

    @model_validator(mode="before")
    @classmethod
    def _order_by_list(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("order_by", "columns"):
                if isinstance(data.get(key), str):
                    data = {**data, key: [data[key]]}
        return data

    @model_validator(mode="after")
    def _value_given(self) -> MissingValueConfig:
        if self.strategy in _NEEDS_VALUE and self.value is None:
            raise ValueError(
                "strategy 'constant' needs a 'value' (a scalar or a {column: value} dict)"
            )
        return self


class MissingValueHandler(DataFrameTransformer):
    """Fill or drop missing values (null, and NaN unless ``nan_as_null: false``).

    Strategies: ``fill`` (``value`` if given, else the median for numeric columns and the mode
    for every other type), ``mean``, ``median``, ``mode``, ``constant`` (needs ``value``),
    ``forward_fill``/``backward_fill`` (``order_by`` required on lazy engines), ``drop`` (rows
    with a missing value in the columns) and ``drop_columns`` (columns whose missing ratio is
    above ``max_missing_ratio``). ``columns`` defaults to every column; ``column_strategies``
    overrides the strategy per column. On eager frames ``get_metadata()["details"]`` holds the
    count filled per column; lazy frames are not counted unless ``count: true``.

    Raises:
        ConfigError: an invalid config (``constant`` without ``value``, an unknown strategy, ...).
        ColumnNotFoundError: a column of ``columns``, ``column_strategies`` or ``order_by`` is not
            in the data.
        MissingValueError: ``mean`` or ``median`` asked for a non-numeric column, or a ``value`` the
            column's type cannot hold exactly.
        UnsupportedOperationError: ``forward_fill`` / ``backward_fill`` on a lazy frame without
            ``order_by``.

    Example:
        >>> import polars as pl
        >>> handler = MissingValueHandler(name="handle_missing_values", config={
        ...     "strategy": "fill",
        ...     "columns": ["age", "income", "education"],
        ... })
        >>> df = pl.DataFrame({"age": [30, None, 50], "income": [1.0, 2.0, None],
        ...                    "education": ["BSc", None, "BSc"]})
        >>> handler.transform(df).row(1)
        (40.0, 2.0, 'BSc')
    """

    config_model = MissingValueConfig
    settings: MissingValueConfig

    # -- schema-only contract -----------------------------------------------------------------

    def required_columns(self, columns: Sequence[str]) -> list[str]:
        s = self.settings
        needed = list(s.columns or [])
        needed += [c for c in s.column_strategies if c not in needed]
        needed += [c for c in (s.order_by or []) if c not in needed]
        return needed

    def output_columns(self, columns: Sequence[str]) -> list[str]:
        # drop_columns depends on the data; the schema-only answer keeps every column.
        return list(columns)

    # -- planning ----------------------------------------------------------------------------

    def _plan(self, schema: dict[str, Any]) -> list[tuple[str, str, Any]]:
        """(column, strategy, value) for each column to handle, with ``fill`` resolved."""
        s = self.settings
        explicit = s.columns is not None
        targets = list(s.columns) if s.columns is not None else list(schema)
        targets += [c for c in s.column_strategies if c not in targets]
        plan: list[tuple[str, str, Any]] = []
        for column in targets:
            override = s.column_strategies.get(column)
            if isinstance(override, ColumnStrategy):
                strategy, value = override.strategy, override.value
            elif override is not None:
                strategy, value = override, None
            else:
                strategy, value = s.strategy, s.value
                if isinstance(value, dict):
                    value = value.get(column)
                    if strategy == "constant" and value is None:
                        continue  # a per-column value dict only fills the columns it names
            dtype = schema[column]
            numeric = is_numeric(dtype)
            if strategy == "fill":
                strategy = "constant" if value is not None else ("median" if numeric else "mode")
            if strategy in _STATS and not numeric:
                if not explicit and override is None:
                    continue  # default columns: mean/median apply to the numeric ones only
                raise MissingValueError(
                    f"strategy {strategy!r} needs a numeric column; column {column!r} is {dtype}",
                    component=self.label,
                    hint="use 'mode' or 'constant' for this column (column_strategies)",
                )
            if strategy == "constant":
                value = _constant(self.label, column, dtype, value)
            plan.append((column, strategy, value))
        return plan

    # -- the work ----------------------------------------------------------------------------

    def _apply_frame(self, frame: Any, op: Operation) -> Any:
        s = self.settings
        schema = schema_of(frame)
        plan = self._plan(schema)
        nan = nan_flags(frame, schema, s.nan_as_null)
        count = should_count(frame, s.count)
        op.details["strategies"] = {c: st for c, st, _ in plan}

        # 1. drop columns whose missing ratio is too high (needs one small aggregate query)
        drop_cols = [c for c, st, _ in plan if st == "drop_columns"]
        if drop_cols:
            ratios = collect_row(
                frame,
                [
                    missing_expr(c, schema[c], nan_as_null=nan[c]).cast(nw.Int64).mean().alias(c)
                    for c in drop_cols
                ],
            )
            dropped = [
                c
                for c in drop_cols
                if ratios.get(c) is not None and ratios[c] > s.max_missing_ratio
            ]
            if dropped:
                frame = frame.drop(dropped)
            op.details["columns_dropped"] = dropped
            op.details["missing_ratios"] = {c: ratios.get(c) for c in drop_cols}

        # 2. drop rows with a missing value in the 'drop' columns
        drop_rows = [c for c, st, _ in plan if st == "drop"]
        if drop_rows:
            rows_before = None if is_lazy(frame) else len(frame)
            any_missing = nw.any_horizontal(
                *[missing_expr(c, schema[c], nan_as_null=nan[c]) for c in drop_rows],
                ignore_nulls=True,
            )
            frame = frame.filter(~any_missing)
            if rows_before is not None:
                op.details["rows_dropped"] = rows_before - len(frame)

        # 3. fill
        fills = [(c, st, v) for c, st, v in plan if st not in ("drop", "drop_columns")]
        if not fills:
            return frame
        for _, st, _ in fills:
            if st in ("forward_fill", "backward_fill") and not s.order_by and is_lazy(frame):
                raise unsupported(
                    frame,
                    f"{st.replace('_', '-')} without an order (a lazy frame has no row order)",
                    "set 'order_by' to the column(s) that order the rows, e.g. "
                    "{'strategy': 'forward_fill', 'order_by': ['date']}",
                    component=self.label,
                )
        counted = [c for c, _, _ in fills]
        before = self._missing_counts(frame, counted, schema, nan) if count else None
        frame, modes = self._modes(frame, [c for c, st, _ in fills if st == "mode"], schema, nan)
        frame = frame.with_columns(
            *[self._fill_expr(c, st, modes.get(c, v), schema[c], nan[c]) for c, st, v in fills]
        )
        helpers = [m.name for m in modes.values() if isinstance(m, _Helper)]
        if helpers:
            frame = frame.drop(*helpers, _KEY)
        if before is not None:
            after = self._still_missing(frame, fills, before, schema, nan)
            op.details["filled"] = {c: int(before[c]) - int(after[c]) for c in counted}
            op.details["still_missing"] = {c: int(after[c]) for c in counted if after[c]}
        return frame

    def _still_missing(
        self,
        frame: Any,
        fills: list[tuple[str, str, Any]],
        before: dict[str, int],
        schema: dict[str, Any],
        nan: dict[str, bool],
    ) -> dict[str, int]:
        """Missing values left after filling, counted only where they can remain (eager frames).

        A statistic (mean, median, mode) is missing only when every value is, and a constant is
        never missing: those need no second pass. Forward/backward fill can leave gaps: counted.
        """
        if is_lazy(frame):  # counting was asked for (count: true): count again in one query
            return self._missing_counts(frame, [c for c, _, _ in fills], schema, nan)
        rows = len(frame)
        after: dict[str, int] = {}
        recount: list[str] = []
        for column, strategy, value in fills:
            if strategy in ("forward_fill", "backward_fill"):
                recount.append(column)
            elif strategy == "constant":
                nan_value = isinstance(value, float) and value != value
                after[column] = before[column] if nan_value and nan[column] else 0
            else:
                after[column] = before[column] if before[column] == rows else 0
        if recount:
            after.update(self._missing_counts(frame, recount, schema, nan))
        return after

    def _modes(
        self, frame: Any, columns: list[str], schema: dict[str, Any], nan: dict[str, bool]
    ) -> tuple[Any, dict[str, Any]]:
        """The most frequent non-missing value per column (ties: the smallest value).

        Polars (eager and lazy), pandas and PyArrow get one expression per column. SQL engines
        (DuckDB, Spark) cannot broadcast ``drop_nulls().mode()``: they get a helper column joined
        on from a one-row aggregate, so the frame stays lazy (their row order is undefined anyway).
        """
        modes: dict[str, Any] = {}
        if not columns:
            return frame, modes
        if frame.implementation is nw.Implementation.PANDAS and not is_lazy(frame):
            native = frame.to_native()
            for column in columns:
                dtype = schema[column]
                if (nan[column] and dtype.is_float()) or dtype == nw.Categorical:
                    continue  # NaN apart from null, or unordered categories: the expression below
                top = native[column].mode(dropna=True)  # no copy without the nulls (drop_nulls)
                value: Any = top.min() if len(top) else None
                modes[column] = _Scalar(value.item() if hasattr(value, "item") else value)
            columns = [c for c in columns if c not in modes]
        if frame.implementation in _EXPRESSION_MODE:
            # one expression per column: stays in with_columns, keeps row order, no join
            for column in columns:
                x = value_expr(column, schema[column], nan_as_null=nan[column])
                modes[column] = _Expr(x.drop_nulls().mode(keep="all").min())
            return frame, modes
        source = frame
        for position, column in enumerate(columns):
            x = value_expr(column, schema[column], nan_as_null=nan[column])
            top = (
                source.select(x.alias(_VALUE))
                .filter(~nw.col(_VALUE).is_null())
                .group_by(_VALUE)
                .agg(nw.len().alias(_COUNT))
                .sort([_COUNT, _VALUE], descending=[True, False])
                .head(1)
            )
            if not is_lazy(frame):
                rows = top.rows()
                modes[column] = rows[0][0] if rows else None
                continue
            helper = _Helper(f"__dp_mode_{position}")
            top = top.select(nw.col(_VALUE).alias(helper.name), nw.lit(1).alias(_KEY))
            if position == 0:
                frame = frame.with_columns(nw.lit(1).alias(_KEY))
            frame = frame.join(top, on=_KEY, how="left")
            modes[column] = helper
        return frame, modes

    def _missing_counts(
        self, frame: Any, columns: list[str], schema: dict[str, Any], nan: dict[str, bool]
    ) -> dict[str, int]:
        row = collect_row(
            frame,
            [
                count_true(frame, missing_expr(c, schema[c], nan_as_null=nan[c])).alias(c)
                for c in columns
            ],
        )
        return {c: int(row.get(c) or 0) for c in columns}

    def _fill_expr(
        self, column: str, strategy: str, value: Any, dtype: Any, nan_as_null: bool
    ) -> Any:
        s = self.settings
        x = value_expr(column, dtype, nan_as_null=nan_as_null)
        if strategy in _STATS and (dtype.is_integer() or dtype == nw.Decimal):
            # a mean or median is a float (as the aggregations say): the column becomes Float64
            # on every engine (PyArrow would truncate into the integers, a decimal would round)
            x = x.cast(nw.Float64)
        if strategy == "mean":
            return x.fill_null(x.mean()).alias(column)
        if strategy == "median":
            return x.fill_null(x.median()).alias(column)
        if strategy == "mode":
            if isinstance(value, _Expr):
                return x.fill_null(value.expr).alias(column)
            if isinstance(value, _Helper):
                return x.fill_null(nw.col(value.name)).alias(column)
            if isinstance(value, _Scalar):
                return (
                    x.alias(column)
                    if value.value is None
                    else x.fill_null(value.value).alias(column)
                )
            if value is None:
                return x.alias(column)  # no value at all: nothing to take a mode of
            return x.fill_null(nw.lit(value, dtype=dtype)).alias(column)
        if strategy == "constant":
            return x.fill_null(nw.lit(value, dtype=dtype)).alias(column)
        direction = "forward" if strategy == "forward_fill" else "backward"
        filled = x.fill_null(strategy=direction, limit=s.limit)
        if s.order_by:
            filled = filled.over(order_by=s.order_by)
        return filled.alias(column)


_KEY = "__dp_mode_key"
_VALUE = "__dp_value"
_COUNT = "__dp_count"


class _Helper:
    """A helper column that holds a lazily computed statistic."""

    def __init__(self, name: str) -> None:
        self.name = name


class _Scalar:
    """A statistic already computed as a plain value (pandas: filled without a literal column)."""

    def __init__(self, value: Any) -> None:
        self.value = value


class _Expr:
    """A statistic as a Narwhals expression (engines that broadcast length-changing ones)."""

    def __init__(self, expr: Any) -> None:
        self.expr = expr


_EXPRESSION_MODE = {
    nw.Implementation.POLARS,
    nw.Implementation.PANDAS,
    nw.Implementation.PYARROW,
    nw.Implementation.MODIN,
    nw.Implementation.CUDF,
}


def _constant(component: str, column: str, dtype: Any, value: Any) -> Any:
    """The constant as the column stores it; a value the column cannot hold exactly is an error.

    Integers take integers (and integral floats) in the column's range; floats take numbers;
    decimals take numbers exact at the column's scale; text and categories take text; booleans
    take booleans; dates take dates; datetimes take datetimes or dates (midnight), a naive value
    read in the column's zone, an aware one converted to it (never into a naive column).
    """
    import datetime as dt
    import decimal
    import math

    def bad(why: str) -> MissingValueError:
        return MissingValueError(
            f"cannot fill column {column!r} ({dtype}) with {value!r} "
            f"({type(value).__name__}): {why}",
            component=component,
            hint="give a value of the column's type, or convert the column first "
            "(DataTypeConverter)",
        )

    number = isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool)
    if dtype == nw.Boolean:
        if not isinstance(value, bool):
            raise bad("a boolean column takes true or false")
        return value
    if dtype.is_integer():
        whole = number and (
            isinstance(value, int) or (math.isfinite(value) and value == int(value))
        )
        if not whole:
            raise bad("an integer column takes whole numbers")
        bits = int("".join(ch for ch in str(dtype) if ch.isdigit()) or 64)
        low, high = (
            (0, 2**bits) if str(dtype).startswith("U") else (-(2 ** (bits - 1)), 2 ** (bits - 1))
        )
        if not low <= int(value) < high:
            raise bad(f"out of the range of {dtype}")
        return int(value)
    if dtype.is_float():
        if not number:
            raise bad("a float column takes numbers")
        return float(value)
    if dtype == nw.Decimal:
        if not number or (isinstance(value, float) and not math.isfinite(value)):
            raise bad("a decimal column takes numbers")
        exact = decimal.Decimal(str(value)) if isinstance(value, float) else decimal.Decimal(value)
        scale = getattr(dtype, "scale", None) or 0
        stored = exact.quantize(decimal.Decimal(1).scaleb(-scale))
        precision = getattr(dtype, "precision", None) or 38
        if stored != exact or len(stored.as_tuple().digits) > precision:
            raise bad(f"not exact in {dtype}")
        return stored
    if dtype == nw.String or dtype == nw.Categorical or dtype == nw.Enum:
        if not isinstance(value, str):
            raise bad("a text column takes text")
        return value
    if dtype == nw.Date:
        if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
            raise bad("a date column takes dates")
        return value
    if dtype == nw.Datetime:
        if not isinstance(value, dt.date):
            raise bad("a datetime column takes datetimes")
        if not isinstance(value, dt.datetime):
            value = dt.datetime(value.year, value.month, value.day)
        zone = getattr(dtype, "time_zone", None)
        if zone is None:
            if value.tzinfo is not None:
                raise bad("an aware datetime in a column without time zone")
            return value
        from zoneinfo import ZoneInfo

        tz = ZoneInfo(zone)
        return value.replace(tzinfo=tz) if value.tzinfo is None else value.astimezone(tz)
    return value
