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

from data_pipeline.core.engines import engine_of
from data_pipeline.core.errors import ConfigError, UnsupportedOperationError

__all__ = [
    "AGGREGATIONS",
    "DECOMPOSABLE",
    "AggPlan",
    "agg_expr",
    "aggregate_frame",
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


def agg_expr(plan: AggPlan) -> nw.Expr:
    """The Narwhals aggregation expression of one plan, aliased to its output name."""
    if plan.column == "*":
        return nw.len().alias(plan.output)
    col = nw.col(plan.column)
    order = list(plan.order_by) or None
    func = plan.func
    if func == "first":
        expr = col.first(order_by=order)
    elif func == "last":
        expr = col.last(order_by=order)
    elif func == "std":
        expr = col.std(ddof=1)
    else:
        expr = getattr(col, func)()
    return expr.alias(plan.output)


def check_engine_support(frame: Any, plans: Sequence[AggPlan], component: str | None) -> None:
    """Raise UnsupportedOperationError for aggregations the frame's engine cannot compute."""
    if not isinstance(frame, nw.LazyFrame):
        return
    for plan in plans:
        if plan.func in _ORDERED and not plan.order_by:
            raise UnsupportedOperationError(
                f"the engine {engine_of(frame)!r} cannot compute {plan.func!r} of {plan.column!r} "
                "without an order: a lazy frame has no row order",
                component=component,
                hint=f'add "order_by": "<column>" to the aggregation (e.g. {{"agg": "{plan.func}", '
                '"order_by": "timestamp"}) or set the processor\'s "order_by", or pass an eager frame',
            )


def _spark_first_last(
    frame: Any, group_by: Sequence[str], plans: Sequence[AggPlan]
) -> tuple[Any, list[AggPlan]]:
    """Spark: Narwhals has no ``first``/``last`` there, so a window column holds each group's
    first/last value by ``order_by`` (nulls last, as in DuckDB); the plan then takes its max."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    def col(name: str) -> Any:
        return F.col("`" + name.replace("`", "``") + "`")

    native = frame.to_native()
    out: list[AggPlan] = []
    for index, plan in enumerate(plans):
        if plan.func not in _ORDERED:
            out.append(plan)
            continue
        helper = f"__dp_{plan.func}_{index}"
        window = (
            Window.partitionBy(*[col(c) for c in group_by])
            .orderBy(*[col(c).asc_nulls_last() for c in plan.order_by])
            .rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
        )
        pick = F.first if plan.func == "first" else F.last
        native = native.withColumn(helper, pick(col(plan.column)).over(window))
        out.append(AggPlan(column=helper, func="max", output=plan.output))
    return nw.from_native(native), out


def aggregate_frame(
    frame: Any,
    group_by: Sequence[str],
    plans: Sequence[AggPlan],
    *,
    component: str | None = None,
) -> Any:
    """Group ``frame`` by ``group_by`` (or aggregate globally when empty) and apply ``plans``.

    Null group keys form their own group. PyArrow's median in Narwhals is approximate, so a PyArrow
    table with a median is aggregated by Polars (zero-copy) and converted back to a table.
    """
    check_engine_support(frame, plans, component)
    if engine_of(frame) == "pyspark" and any(p.func in _ORDERED for p in plans):
        frame, plans = _spark_first_last(frame, group_by, plans)
    if engine_of(frame) == "pyarrow" and any(p.func == "median" for p in plans):
        as_polars = nw.from_native(frame.to_polars())
        result = aggregate_frame(as_polars, group_by, plans, component=component)
        return nw.from_native(result.to_arrow())
    exprs = [agg_expr(p) for p in plans]
    if group_by:
        return frame.group_by(*group_by, drop_null_keys=False).agg(*exprs)
    return frame.select(*exprs)


# -- partial aggregates: merged exactly across batches ---------------------------------------


@dataclass
class PartialAggregation:
    """Split aggregations into per-batch partials that merge exactly.

    ``sum`` -> sum of sums; ``count`` -> sum of counts; ``min``/``max`` -> min of mins / max of
    maxes; ``mean`` -> sum and count, divided at the end (never an average of averages); ``std``
    -> count, mean and sum of squared deviations from the mean (M2) of each batch, merged with
    Chan et al.'s update (``M2 = M2_a + M2_b + n_a n_b / n (mean_a - mean_b)^2``: no sum of
    squares, so no cancellation on large values such as epoch seconds); ``first``/``last`` ->
    the first/last of the batches in batch order (or by ``order_by``, carrying the order value). ``median`` and ``n_unique`` have no
    exact partial form and are refused with :class:`UnsupportedOperationError`.

    Partials are computed on the batch's engine; merged state is a Polars DataFrame.
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

    def _name(self, index: int, part: str) -> str:
        return f"__p{index}_{part}"

    def partial(self, frame: Any) -> Any:
        """Per-batch partial aggregates of a Narwhals frame (any engine)."""
        exprs: list[Any] = []
        for i, plan in enumerate(self.plans):
            name = self._name
            col = nw.col(plan.column) if plan.column != "*" else None
            func = plan.func
            if col is None:
                exprs.append(nw.len().alias(name(i, "n")))
            elif func in ("sum", "min", "max"):
                exprs.append(getattr(col, func)().alias(name(i, "v")))
            elif func == "count":
                exprs.append(col.count().alias(name(i, "n")))
            elif func == "mean":
                exprs += [col.sum().alias(name(i, "s")), col.count().alias(name(i, "n"))]
            elif func == "std":
                exprs += [
                    col.count().alias(name(i, "n")),
                    col.mean().alias(name(i, "m")),
                    col.var(ddof=0).alias(name(i, "v2")),
                ]
            elif func in _ORDERED:
                order = list(plan.order_by) or None
                exprs.append(getattr(col, func)(order_by=order).alias(name(i, "v")))
                if order:
                    bound = nw.col(order[0]).min() if func == "first" else nw.col(order[0]).max()
                    exprs.append(bound.alias(name(i, "o")))
        check_engine_support(frame, self.plans, self.component)
        if self.keys:
            result = frame.group_by(*self.keys, drop_null_keys=False).agg(*exprs)
        else:
            result = frame.select(*exprs)
        # std: population variance -> M2 = n * variance, in the position the merged state has it
        stds = [i for i, p in enumerate(self.plans) if p.func == "std" and p.column != "*"]
        if not stds:
            return result
        name = self._name
        result = result.with_columns(
            *[(nw.col(name(i, "n")) * nw.col(name(i, "v2"))).alias(name(i, "m2")) for i in stds]
        )
        renamed = {name(i, "v2"): name(i, "m2") for i in stds}
        return result.select(
            *[renamed.get(c, c) for c in result.columns if c not in renamed.values()]
        )

    def merge(self, state: Any) -> Any:
        """Re-aggregate concatenated partials (a Narwhals Polars frame, batch order kept).

        A ``std`` part is (count, mean, M2 = sum of squared deviations from the mean); a group
        without values has null mean and M2, taken as 0 (its weight is 0). Merged exactly:
        ``M2 = sum(M2_i) + sum(n_i (mean_i - mean)^2)`` with ``mean = sum(n_i mean_i) / n``.
        """
        fixes: list[Any] = []
        for i, plan in enumerate(self.plans):
            if plan.func == "std" and plan.column != "*":
                for part in ("m", "m2"):
                    col = nw.col(self._name(i, part))
                    fixes.append(col.fill_null(0).cast(nw.Float64).alias(self._name(i, part)))
        if fixes:
            state = state.with_columns(*fixes)
        exprs: list[Any] = []
        for i, plan in enumerate(self.plans):
            name = self._name
            func = plan.func
            if plan.column == "*" or func == "count":
                exprs.append(nw.col(name(i, "n")).sum())
            elif func in ("sum", "min", "max"):
                exprs.append(getattr(nw.col(name(i, "v")), func)())
            elif func == "mean":
                exprs += [nw.col(name(i, "s")).sum(), nw.col(name(i, "n")).sum()]
            elif func == "std":
                n, m = nw.col(name(i, "n")), nw.col(name(i, "m"))
                mean = (n * m).sum() / n.sum().clip(lower_bound=1)
                exprs += [
                    n.sum(),
                    mean.alias(name(i, "m")),
                    (nw.col(name(i, "m2")).sum() + (n * (m - mean) ** 2).sum()).alias(
                        name(i, "m2")
                    ),
                ]
            elif func in _ORDERED:
                order = name(i, "o") if plan.order_by else None
                exprs.append(getattr(nw.col(name(i, "v")), func)(order_by=order))
                if order:
                    bound = nw.col(order).min() if func == "first" else nw.col(order).max()
                    exprs.append(bound)
        if self.keys:
            return state.group_by(*self.keys, drop_null_keys=False).agg(*exprs)
        return state.select(*exprs)

    def finalize(self, state: Any) -> Any:
        """Merged partials -> the group keys and the output columns."""
        exprs: list[Any] = [nw.col(k) for k in self.keys]
        for i, plan in enumerate(self.plans):
            name = self._name
            func = plan.func
            if plan.column == "*" or func == "count":
                expr = nw.col(name(i, "n"))
            elif func == "mean":
                n = nw.col(name(i, "n"))
                expr = nw.when(n > 0).then(nw.col(name(i, "s")) / n)
            elif func == "std":
                n, m2 = nw.col(name(i, "n")), nw.col(name(i, "m2"))
                expr = nw.when(n > 1).then((m2 / (n - 1)).clip(lower_bound=0).sqrt())
            else:
                expr = nw.col(name(i, "v"))
            exprs.append(expr.alias(plan.output))
        return state.select(*exprs)
