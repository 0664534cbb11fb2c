"""The aggregation definitions shared by DataAggregator, WindowedAggregator and BatchProcessor.

One place parses the user's ``aggregations`` mapping into :class:`AggPlan` objects, builds the
Narwhals expression of each, and knows how to split an aggregation into partial aggregates that can
be merged across batches (sum of sums, count of counts, mean = sum / count, ...).

The forms of ``aggregations`` (all may be mixed)::

    {"quantity": "sum"}                                  # output column "quantity"
    {"price": {"agg": "mean", "as": "avg_price"}}        # output column "avg_price"
    {"price": ["mean", "max"]}                           # outputs "price_mean", "price_max"
    {"price": [{"agg": "mean", "as": "avg_price"}, "max"]}  # outputs "avg_price", "price_max"
    {"*": "count"}                                       # rows per group, output "count"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import narwhals as nw

from data_pipeline.core.engines import engine_of, to_pandas, to_polars
from data_pipeline.core.errors import ConfigError, SchemaError, UnsupportedOperationError

__all__ = [
    "AGGREGATIONS",
    "DECOMPOSABLE",
    "NUMERIC_ONLY",
    "AggPlan",
    "aggregate_frame",
    "check_types",
    "conform",
    "output_dtype",
    "parse_aggregations",
]

#: Every aggregation name the processors accept.
AGGREGATIONS: tuple[str, ...] = (
    "sum",
    "mean",
    "min",
    "max",
    "count",
    "median",
    "n_unique",
    "first",
    "last",
    "std",
)

#: Aggregations that can be merged exactly from per-batch partial aggregates.
DECOMPOSABLE: frozenset[str] = frozenset(
    {"sum", "mean", "min", "max", "count", "first", "last", "std"}
)

_ORDERED = frozenset({"first", "last"})
_SPEC_KEYS = frozenset({"agg", "as", "order_by"})


@dataclass(frozen=True)
class AggPlan:
    """One output column: ``func`` applied to ``column`` (``"*"`` = rows), named ``output``."""

    column: str
    func: str
    output: str
    order_by: tuple[str, ...] = ()

    @property
    def reads(self) -> list[str]:
        """Input columns this aggregation reads."""
        cols = [] if self.column == "*" else [self.column]
        return cols + [c for c in self.order_by if c not in cols]


def _bad(message: str, component: str | None, hint: str | None = None) -> ConfigError:
    return ConfigError(
        message,
        component=component,
        hint=hint or f"allowed aggregations: {', '.join(AGGREGATIONS)}",
    )


def parse_aggregations(
    raw: Mapping[str, Any],
    *,
    group_by: Sequence[str] = (),
    default_order_by: Sequence[str] = (),
    component: str | None = None,
) -> list[AggPlan]:
    """Turn the user's ``aggregations`` mapping into plans; every problem is a ConfigError."""
    if not isinstance(raw, Mapping) or not raw:
        raise _bad(
            "config.aggregations must be a non-empty mapping of column -> aggregation",
            component,
            hint='e.g. {"quantity": "sum", "price": "mean"}',
        )
    plans: list[AggPlan] = []
    for column, spec in raw.items():
        if not isinstance(column, str) or not column:
            raise _bad(f"config.aggregations: bad column name {column!r}", component)
        is_list = isinstance(spec, (list, tuple))
        items = list(spec) if is_list else [spec]
        if not items:
            raise _bad(f"config.aggregations.{column}: empty list of aggregations", component)
        for index, item in enumerate(items):
            where = f"config.aggregations.{column}" + (f"[{index}]" if is_list else "")
            plans.append(_parse_one(column, item, where, is_list, default_order_by, component))
    seen: dict[str, str] = {}
    for plan in plans:
        if plan.output in group_by:
            raise _bad(
                f"config.aggregations: output column {plan.output!r} "
                f"({plan.func} of {plan.column!r}) has the name of a group_by column",
                component,
                hint='name it with {"agg": ..., "as": "other_name"}',
            )
        if plan.output in seen:
            raise _bad(
                f"config.aggregations: two aggregations produce the column {plan.output!r} "
                f"({seen[plan.output]} and {plan.func} of {plan.column!r})",
                component,
                hint='give one of them another name with {"agg": ..., "as": "other_name"}',
            )
        seen[plan.output] = f"{plan.func} of {plan.column!r}"
    return plans


def _parse_one(
    column: str,
    item: Any,
    where: str,
    in_list: bool,
    default_order_by: Sequence[str],
    component: str | None,
) -> AggPlan:
    alias: str | None = None
    order_by: Sequence[str] = default_order_by
    if isinstance(item, str):
        func = item
    elif isinstance(item, Mapping):
        unknown = set(item) - _SPEC_KEYS
        if unknown:
            raise _bad(
                f"{where}: unknown key(s) {', '.join(map(repr, sorted(unknown)))}",
                component,
                hint='an aggregation spec has the keys "agg", "as" and "order_by"',
            )
        if "agg" not in item:
            raise _bad(f"{where}: the key 'agg' is missing", component)
        func = item["agg"]
        alias = item.get("as")
        if alias is not None and (not isinstance(alias, str) or not alias):
            raise _bad(f"{where}.as: must be a non-empty string, got {alias!r}", component)
        if "order_by" in item:
            raw_order = item["order_by"]
            order_by = [raw_order] if isinstance(raw_order, str) else list(raw_order)
    else:
        raise _bad(
            f"{where}: expected an aggregation name or a mapping, got {type(item).__name__}",
            component,
        )
    if not isinstance(func, str) or func not in AGGREGATIONS:
        raise _bad(f"{where}: unknown aggregation {func!r}", component)
    if column == "*" and func != "count":
        raise _bad(
            f"{where}: the column '*' (all rows) only takes 'count', got {func!r}",
            component,
            hint='use {"*": "count"} to count rows, or name a column',
        )
    if order_by and func not in _ORDERED:
        order_by = ()
    if alias is not None:
        output = alias
    elif column == "*":
        output = "count"
    elif in_list:
        output = f"{column}_{func}"
    else:
        output = column
    return AggPlan(column=column, func=func, output=output, order_by=tuple(order_by))


#: aggregations that need a numeric column (integer, float or decimal)
NUMERIC_ONLY: frozenset[str] = frozenset({"sum", "mean", "median", "std"})

#: aggregations computed in Float64 (sum: in Int64 for integers); ``var_pop`` is internal (the
#: partial of ``std``)
_STATS = frozenset({"sum", "mean", "median", "std", "var_pop"})

#: engines that order NaN above every number in min/max (SQL); the others ignore NaN there
_NAN_IS_MAX = frozenset({"duckdb", "pyspark"})


def output_dtype(plan: AggPlan, dtype: Any) -> Any:
    """The logical type of an aggregation's output on every engine (docs/semantics.md).

    Counts are Int64; ``sum`` of integers Int64 (never UInt32, Int128 or a decimal), of a
    Decimal(p, s) Decimal(38, s), of floats Float64; ``mean``, ``median`` and ``std`` Float64;
    ``min``, ``max``, ``first`` and ``last`` keep the input's type.
    """
    if plan.column == "*" or plan.func in ("count", "n_unique"):
        return nw.Int64()
    if dtype is None or dtype == nw.Unknown:
        return None  # a column of unknown type (all null, no dtype): whatever the engine gives
    if plan.func == "sum":
        if dtype.is_integer():
            return nw.Int64()
        if dtype == nw.Decimal:
            return nw.Decimal(38, dtype.scale)
        return nw.Float64()
    if plan.func in ("mean", "median", "std", "var_pop"):
        return nw.Float64()
    return dtype


def check_types(schema: Mapping[str, Any], plans: Sequence[AggPlan], component: str | None) -> None:
    """A numeric aggregation of a non-numeric column is a SchemaError on every engine."""
    for plan in plans:
        if plan.func in NUMERIC_ONLY and plan.column != "*":
            dtype = schema[plan.column]
            if not dtype.is_numeric() and dtype != nw.Unknown:
                raise SchemaError(
                    f"{plan.func!r} needs a numeric column; column {plan.column!r} is {dtype}",
                    component=component,
                    hint="aggregate it with min, max, count, n_unique, first or last, or convert "
                    "it first (DataTypeConverter)",
                )


def check_engine_support(frame: Any, plans: Sequence[AggPlan], component: str | None) -> None:
    """Raise UnsupportedOperationError for aggregations the frame's engine cannot compute."""
    if isinstance(frame, nw.LazyFrame):
        engine = engine_of(frame)
        for plan in plans:
            if plan.func in _ORDERED and not plan.order_by:
                raise UnsupportedOperationError(
                    f"the engine {engine!r} cannot compute {plan.func!r} of {plan.column!r} "
                    "without an order: a lazy frame has no row order",
                    component=component,
                    hint=f'add "order_by": "<column>" to the aggregation (e.g. {{"agg": '
                    f'"{plan.func}", "order_by": "timestamp"}}) or set the processor\'s '
                    '"order_by", or pass an eager frame',
                )


def _spark_windows(
    frame: Any, group_by: Sequence[str], plans: Sequence[AggPlan]
) -> tuple[Any, list[AggPlan]]:
    """Spark: what Narwhals cannot say there becomes a window column per group, and the plan
    takes its max: ``first``/``last`` by ``order_by`` (nulls last), and ``median`` as the mean
    of the two middle values (``percentile_disc`` ascending and descending: Spark's own median
    interpolates linearly, which makes -inf and 2 NaN)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from data_pipeline.core.spark_names import quote as quoted
    from data_pipeline.core.spark_names import spark_col as col

    native = frame.to_native()
    partition = ", ".join(quoted(c) for c in group_by)
    over = f"over (partition by {partition})" if group_by else "over ()"
    out: list[AggPlan] = []
    for index, plan in enumerate(plans):
        helper = f"__dp_{plan.func}_{index}"
        if plan.func == "median":
            x = f"cast({quoted(plan.column)} as double)"
            middle = (
                f"(percentile_disc(0.5) within group (order by {x}) {over} + "
                f"percentile_disc(0.5) within group (order by {x} desc) {over}) / 2"
            )
            native = native.withColumn(helper, F.expr(middle))
        elif plan.func in _ORDERED:
            window = (
                Window.partitionBy(*[col(c) for c in group_by])
                .orderBy(*[col(c).asc_nulls_last() for c in plan.order_by])
                .rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
            )
            pick = F.first if plan.func == "first" else F.last
            native = native.withColumn(helper, pick(col(plan.column)).over(window))
        else:
            out.append(plan)
            continue
        out.append(AggPlan(column=helper, func="max", output=plan.output))
    return nw.from_native(native), out


def _cast_first(func: str, dtype: Any, want: Any) -> bool:
    """Whether the input must be cast before aggregating (not only the result after): a sum of
    narrow integers or Float32 would overflow or round in the input's width, and engines
    disagree on statistics of decimals (DuckDB's median keeps the scale). Everything else is
    cast after aggregating, where it costs nothing (see :func:`conform`)."""
    if func == "sum":
        return bool(dtype != want and dtype != nw.Decimal)
    if func in ("mean", "median", "std", "var_pop"):
        return bool(dtype == nw.Decimal or dtype == nw.Float32)
    return False


def _null_flag(column: str) -> str:
    return f"__dp_null_{column}"


def _order_key(order_by: Sequence[str]) -> list[str]:
    """``ORDER BY c1 NULLS LAST, c2 NULLS LAST`` as Narwhals order_by columns (Narwhals puts
    nulls first): each column preceded by its is-null flag."""
    key: list[str] = []
    for column in order_by:
        key += [_null_flag(column), column]
    return key


def _needs_polars(frame: Any, schema: Mapping[str, Any], plans: Sequence[AggPlan]) -> bool:
    """PyArrow lacks an exact median; its ``first``/``last`` skip nulls and have no kernel for
    decimals or null-typed columns; it takes one order per aggregation."""
    if engine_of(frame) != "pyarrow":
        return False
    orders = {p.order_by for p in plans if p.func in _ORDERED and p.order_by}
    return len(orders) > 1 or any(p.func in ("median", *_ORDERED) for p in plans)


def aggregate_frame(
    frame: Any,
    group_by: Sequence[str],
    plans: Sequence[AggPlan],
    *,
    component: str | None = None,
    _safe: bool = False,
) -> Any:
    """Group ``frame`` by ``group_by`` (or aggregate globally when empty) and apply ``plans``.

    One answer and one output schema on every engine (docs/semantics.md): null group keys form
    their own group; every output has the type :func:`output_dtype` names; ``min``/``max``
    ignore NaN (NaN only when every value is NaN); ``first``/``last`` by ``order_by`` order the
    rows nulls last; a global aggregation is one row, also of an empty input. What PyArrow
    lacks (see :func:`_needs_polars`) is aggregated by Polars (zero-copy) and converted back.
    """
    schema = dict(frame.collect_schema())
    check_engine_support(frame, plans, component)
    check_types(schema, plans, component)
    if engine_of(frame) == "pandas":
        return _pandas_via_polars(frame, group_by, plans, component)
    if _needs_polars(frame, schema, plans):
        as_polars = nw.from_native(frame.to_polars())
        result = aggregate_frame(as_polars, group_by, plans, component=component)
        return nw.from_native(result.to_arrow())
    engine = engine_of(frame)
    if engine in _SQL_NAMES and not _safe:
        return _with_safe_names(frame, group_by, plans, component)
    helpers: dict[str, Any] = {}
    aggs: list[Any] = []
    finals: list[Any] = [nw.col(k) for k in group_by]
    work = list(plans)
    if engine == "pyspark" and any(p.func in (*_ORDERED, "median") for p in plans):
        frame, work = _spark_windows(frame, group_by, plans)
    for index, (plan, done) in enumerate(zip(plans, work, strict=True)):
        name = f"__dp_agg_{index}"
        want = output_dtype(plan, schema.get(plan.column))
        if done.column == "*":
            aggs.append(nw.len().alias(name))
            finals.append(nw.col(name).alias(plan.output))
            continue
        dtype = schema.get(done.column)
        source = done.column
        if want is not None and dtype is not None and _cast_first(done.func, dtype, want):
            source = f"__dp_in_{index}"  # sum of Int32 as Int64, median of a Decimal as Float64
            helpers[source] = nw.col(done.column).cast(want if done.func == "sum" else nw.Float64)
        col = nw.col(source)
        func = done.func
        if func in _ORDERED:
            key = _order_key(done.order_by) if done.order_by else None
            for column in done.order_by:
                helpers.setdefault(_null_flag(column), nw.col(column).is_null())
            aggs.append(getattr(col, func)(order_by=key).alias(name))
            final = nw.col(name)
        elif (
            func in ("min", "max")
            and engine in _NAN_IS_MAX
            and dtype is not None
            and dtype.is_float()
        ):
            helper = f"__dp_in_{index}"
            helpers[helper] = col.fill_nan(None)
            aggs.append(getattr(nw.col(helper), func)().alias(name))
            aggs.append(getattr(col, func)().alias(name + "_nan"))
            final = nw.coalesce(nw.col(name), nw.col(name + "_nan"))
        elif func in ("std", "var_pop"):
            ddof = 1 if func == "std" else 0
            aggs.append((col.std(ddof=1) if ddof else col.var(ddof=0)).alias(name))
            final = nw.col(name)
        elif func == "median" and engine in ("polars", "polars-lazy"):
            # the mean of the two middle values: Polars' linear median makes -inf and 2 NaN
            aggs.append(col.quantile(0.5, interpolation="midpoint").alias(name))
            final = nw.col(name)
        else:
            aggs.append(getattr(col, func)().alias(name))
            final = nw.col(name)
        if func == "n_unique" and engine in _NAN_IS_MAX:
            final = final.fill_null(0)  # SQL's count(distinct) of no rows is NULL there
        finals.append(final.alias(plan.output))
    if helpers:
        frame = frame.with_columns(**helpers)
    if group_by:
        result = frame.group_by(*group_by, drop_null_keys=False).agg(*aggs)
    else:
        result = frame.select(*aggs)
    result = result.select(*finals)
    return conform(result, {p.output: output_dtype(p, schema.get(p.column)) for p in plans})


#: engines where Narwhals passes column names as SQL text somewhere (``"x.y"`` is column ``y`` of
#: table ``x`` in DuckDB's group-by keys). PySpark is not here: Narwhals quotes its names
#: (core.spark_names), or a step refuses them (core.engines.check_spark_dotted_names).
_SQL_NAMES = frozenset({"duckdb"})


def _with_safe_names(
    frame: Any, group_by: Sequence[str], plans: Sequence[AggPlan], component: str | None
) -> Any:
    """DuckDB: aggregate under plain column names and rename the result back."""
    safe = {c: f"__dp_c{i}" for i, c in enumerate(frame.collect_schema().names())}
    renamed = [
        AggPlan(
            column=safe.get(p.column, p.column),
            func=p.func,
            output=f"__dp_o{i}",
            order_by=tuple(safe[o] for o in p.order_by),
        )
        for i, p in enumerate(plans)
    ]
    keys = [safe[k] for k in group_by]
    result = aggregate_frame(frame.rename(safe), keys, renamed, component=component, _safe=True)
    back = {safe[k]: k for k in group_by} | {
        p.output: o.output for p, o in zip(renamed, plans, strict=True)
    }
    return result.rename(back)


def _pandas_via_polars(
    frame: Any, group_by: Sequence[str], plans: Sequence[AggPlan], component: str | None
) -> Any:
    """pandas: aggregated by Polars and converted back, each column in the pandas dtype of its
    input (the nullable one where nulls appeared in a numpy int/bool column).

    pandas' own group-by splits null keys of several key columns into duplicate groups, loses
    integer types to NaN and cannot take several first/last orders; a round trip through Arrow
    costs less than working around each.
    """
    import polars as pl

    native = frame.to_native()
    reads = list(dict.fromkeys([*group_by, *(c for p in plans for c in p.reads)]))
    if reads:
        polars_frame = pl.from_pandas(native[reads])
    else:  # only {"*": "count"}: the number of rows is all that is read
        polars_frame = pl.int_range(len(native), eager=True).alias("__dp_rows").to_frame()
    result = aggregate_frame(nw.from_native(polars_frame), group_by, plans, component=component)
    templates = {k: native[k].dtype for k in group_by}
    for plan in plans:
        if plan.func in ("min", "max", "first", "last"):
            templates[plan.output] = native[plan.column].dtype
    return nw.from_native(to_pandas(result.to_native(), like=templates))


def conform(frame: Any, dtypes: Mapping[str, Any]) -> Any:
    """Cast the columns whose engine type differs from the logical one (UInt32 counts on
    Polars, Int128 sums on DuckDB, ...); a no-op where they agree."""
    actual = frame.collect_schema()
    casts = [nw.col(c).cast(t) for c, t in dtypes.items() if t is not None and actual[c] != t]
    return frame.with_columns(*casts) if casts else frame


# -- partial aggregates: merged exactly across batches ---------------------------------------


@dataclass
class PartialAggregation:
    """Split aggregations into per-batch partials that merge exactly.

    ``sum`` -> sum of sums; ``count`` -> sum of counts; ``min``/``max`` -> min of mins / max of
    maxes; ``mean`` -> sum and count, divided at the end (never an average of averages); ``std``
    -> count, mean and sum of squared deviations from the mean (M2) of each batch, merged with
    Chan et al.'s update (``M2 = M2_a + M2_b + n_a n_b / n (mean_a - mean_b)^2``: no sum of
    squares, so no cancellation on large values such as epoch seconds); ``first``/``last`` ->
    the first/last of the batches in batch order, or by ``order_by`` (nulls last, as one pass
    orders them) carrying the order value of the row each batch chose. ``median`` and
    ``n_unique`` have no exact partial form and are refused with
    :class:`UnsupportedOperationError`.

    Partials are computed by :func:`aggregate_frame` on the batch's engine (the same semantics
    and types as one pass); the merged state is a Polars DataFrame, and :meth:`finalize` gives
    every output the type :func:`output_dtype` names.
    """

    keys: list[str]
    plans: list[AggPlan]
    component: str | None = None

    def __post_init__(self) -> None:
        for plan in self.plans:
            if plan.func not in DECOMPOSABLE:
                raise UnsupportedOperationError(
                    f"{plan.func!r} of {plan.column!r} cannot be combined from partial "
                    "aggregates of batches or micro-batches (it needs all the values at once)",
                    component=self.component,
                    hint='aggregate in one pass instead: BatchProcessor with "mode": '
                    '"polars_streaming" for files, a DataAggregator on a Polars LazyFrame '
                    "(pl.scan_parquet) or DuckDB; or replace "
                    f"{plan.func!r} by a decomposable aggregation "
                    f"({', '.join(sorted(DECOMPOSABLE))})",
                )
            if plan.func in _ORDERED and len(plan.order_by) > 1:
                raise UnsupportedOperationError(
                    f"{plan.func!r} of {plan.column!r} with several order_by columns cannot be "
                    "combined across batches",
                    component=self.component,
                    hint="order by one column (e.g. a timestamp)",
                )
        self.parts: list[AggPlan] = [
            p for i, plan in enumerate(self.plans) for p in self._split(i, plan)
        ]
        self.dtypes: dict[str, Any] = {}  # input types (Narwhals) of the columns read, first batch

    def _name(self, index: int, part: str) -> str:
        return f"__p{index}_{part}"

    def _split(self, i: int, plan: AggPlan) -> list[AggPlan]:
        """The partial aggregates of one plan (plain plans, run by :func:`aggregate_frame`)."""
        name = self._name
        column, func = plan.column, plan.func
        if column == "*" or func == "count":
            return [AggPlan(column, "count", name(i, "n"))]
        if func in ("sum", "min", "max"):
            return [AggPlan(column, func, name(i, "v"))]
        if func == "mean":
            return [AggPlan(column, "sum", name(i, "s")), AggPlan(column, "count", name(i, "n"))]
        if func == "std":
            return [
                AggPlan(column, "count", name(i, "n")),
                AggPlan(column, "mean", name(i, "m")),
                AggPlan(column, "var_pop", name(i, "v2")),
            ]
        parts = [AggPlan(column, func, name(i, "v"), plan.order_by)]
        if plan.order_by:
            order = plan.order_by[0]
            # the order value of the row chosen: first -> the smallest (null only when every
            # value is null); last -> null when a row has a null order value (nulls last), else
            # the largest; "o" holds min/max, "on" and "rows" tell whether nulls were there
            parts.append(AggPlan(order, "min" if func == "first" else "max", name(i, "o")))
            if func == "last":
                parts += [
                    AggPlan(order, "count", name(i, "on")),
                    AggPlan("*", "count", name(i, "rows")),
                ]
        return parts

    def partial(self, frame: Any) -> Any:
        """Per-batch partial aggregates of a Narwhals frame (any engine), as a Narwhals Polars
        frame."""
        # partials are small (a row per group): Polars from here on, whatever the batch's engine
        return self._typed(nw.from_native(to_polars(self._aggregated(frame))))

    def partial_plan(self, frame: Any) -> Any:
        """:meth:`partial` of a Polars LazyFrame (a Narwhals frame), left lazy: the plan that
        :class:`~data_pipeline.core.replay.Replay` keeps for a stream's micro-batches."""
        return self._typed(self._aggregated(frame))

    def _aggregated(self, frame: Any) -> Any:
        check_engine_support(frame, self.plans, self.component)
        schema = dict(frame.collect_schema())
        check_types(schema, self.plans, self.component)
        if not self.dtypes:
            reads = {*self.keys, *(c for p in self.plans for c in p.reads)}
            self.dtypes = {c: t for c, t in schema.items() if c in reads}
        return aggregate_frame(frame, self.keys, self.parts, component=self.component)

    def _typed(self, result: Any) -> Any:
        """Partials in their logical types; ``std``'s population variance becomes M2."""
        wanted = {k: self.dtypes[k] for k in self.keys if k in self.dtypes}
        wanted.update({p.output: output_dtype(p, self.dtypes.get(p.column)) for p in self.parts})
        result = conform(result, wanted)
        # std: the population variance -> M2 = n * variance (what merge and the window panes
        # of _window_state.py add up), in the variance's place
        stds = [i for i, p in enumerate(self.plans) if p.func == "std" and p.column != "*"]
        if not stds:
            return result
        name = self._name
        result = result.with_columns(
            *[(nw.col(name(i, "n")) * nw.col(name(i, "v2"))).alias(name(i, "v2")) for i in stds]
        )
        return result.rename({name(i, "v2"): name(i, "m2") for i in stds})

    def merge(self, state: Any) -> Any:
        """Re-aggregate concatenated partials (a Narwhals Polars frame, batch order kept).

        A ``std`` part is (count, mean, M2 = n * population variance); a group without values
        has null mean and M2, taken as 0 (its weight is 0). Merged exactly:
        ``M2 = sum(M2_i) + sum(n_i (mean_i - mean)^2)`` with ``mean = sum(n_i mean_i) / n``.
        """
        import polars as pl

        native = state.to_native()
        exprs: list[Any] = []
        for i, plan in enumerate(self.plans):
            name = self._name
            func = plan.func
            if plan.column == "*" or func == "count":
                exprs.append(pl.col(name(i, "n")).sum())
            elif func in ("sum", "min", "max"):
                exprs.append(getattr(pl.col(name(i, "v")), func)())
            elif func == "mean":
                exprs += [pl.col(name(i, "s")).sum(), pl.col(name(i, "n")).sum()]
            elif func == "std":
                n = pl.col(name(i, "n"))
                m = pl.col(name(i, "m")).fill_null(0.0)
                m2 = pl.col(name(i, "m2")).fill_null(0.0)
                mean = (n * m).sum() / n.sum().clip(lower_bound=1)
                exprs += [
                    n.sum(),
                    mean.alias(name(i, "m")),
                    (m2.sum() + (n * (m - mean) ** 2).sum()).alias(name(i, "m2")),
                ]
            elif not plan.order_by:
                exprs.append(getattr(pl.col(name(i, "v")), func)())
            else:
                bound = pl.col(name(i, "o"))
                if func == "last":
                    rows, seen = pl.col(name(i, "rows")), pl.col(name(i, "on"))
                    bound = pl.when(seen == rows).then(bound)
                    exprs += [seen.sum(), rows.sum()]
                order = [bound.is_null(), bound]
                exprs.append(getattr(pl.col(name(i, "v")).sort_by(order), func)())
                exprs.append((bound.min() if func == "first" else bound.max()).alias(name(i, "o")))
        merged = native.group_by(self.keys).agg(exprs) if self.keys else native.select(exprs)
        return nw.from_native(merged.select(state.columns))

    def empty(self) -> Any:
        """The result when no batch came at all (so no types are known): no groups, or for a
        global aggregation one row with 0 for the counts and null for everything else."""
        import polars as pl

        counts = {
            p.output for p in self.plans if p.column == "*" or p.func in ("count", "n_unique")
        }
        columns = [*self.keys, *(p.output for p in self.plans)]
        if self.keys:
            schema = {c: pl.Int64 if c in counts else pl.Null for c in columns}
            return nw.from_native(pl.DataFrame(schema=schema))
        return nw.from_native(pl.DataFrame({c: [0] if c in counts else [None] for c in columns}))

    def finalize(self, state: Any) -> Any:
        """Merged partials -> the group keys and the output columns, in their logical types."""
        exprs: list[Any] = [nw.col(k) for k in self.keys]
        for i, plan in enumerate(self.plans):
            name = self._name
            func = plan.func
            if plan.column == "*" or func == "count":
                expr = nw.col(name(i, "n"))
            elif func == "mean":
                n = nw.col(name(i, "n"))
                expr = nw.when(n > 0).then(nw.col(name(i, "s")).cast(nw.Float64) / n)
            elif func == "std":
                n, m2 = nw.col(name(i, "n")), nw.col(name(i, "m2"))
                expr = nw.when(n > 1).then((m2 / (n - 1)).clip(lower_bound=0).sqrt())
            else:
                expr = nw.col(name(i, "v"))
            exprs.append(expr.alias(plan.output))
        wanted = {k: self.dtypes[k] for k in self.keys if k in self.dtypes}
        wanted.update({p.output: output_dtype(p, self.dtypes.get(p.column)) for p in self.plans})
        return conform(state.select(*exprs), {k: v for k, v in wanted.items() if v is not None})
