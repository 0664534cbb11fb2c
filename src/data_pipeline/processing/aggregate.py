"""DataAggregator: group by keys and aggregate, on any engine (Narwhals)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import narwhals as nw
from pydantic import Field, field_validator

from data_pipeline.core.component import Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import ConfigError
from data_pipeline.core.expr import Expression, where
from data_pipeline.core.secrets import DATA_KEYS
from data_pipeline.processing._aggregation import (
    AGGREGATIONS,
    AggPlan,
    aggregate_frame,
    parse_aggregations,
)
from data_pipeline.processing.base import DataProcessor

__all__ = ["DataAggregator", "DataAggregatorConfig", "SortKey", "parse_sort"]


class SortKey(ConfigModel):
    """One sort key: ``{"column": "revenue", "descending": true}``."""

    column: str
    """An output column (a group key or an aggregate's output name)."""
    descending: bool = False
    """Largest first; nulls come last in either direction."""


def _as_list(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return value


class DataAggregatorConfig(ConfigModel):
    """Config of :class:`DataAggregator` (see its docstring)."""

    group_by: list[str] = Field(default_factory=list)
    """The key columns (a name or a list): one output row per distinct combination, null keys
    forming their own group. Empty: the whole input is aggregated into one row."""
    aggregations: Annotated[dict[str, Any], DATA_KEYS]
    """What to compute, by input column: an aggregation name (``sum``, ``mean``, ``min``,
    ``max``, ``count``, ``median``, ``n_unique``, ``first``, ``last``, ``std``; the output keeps
    the column's name), ``{"agg": ..., "as": "name", "order_by": ...}``, or a list of those
    (outputs ``<column>_<agg>`` unless ``as`` names them); ``"*": "count"`` counts rows into
    ``count``. Output names must differ from each other and from the group keys."""
    having: str | None = None
    """A condition on the output columns (group keys and aggregate outputs) that keeps only
    some groups, in the expression language of DataFilter: ``"revenue > 1000 and count >= 3"``.
    None: every group is kept."""
    sort: list[str | SortKey] | bool | None = None
    """The order of the output rows: None or ``true`` by the group keys, ascending; ``false``
    no sort (the engine's order); or a list of output columns, each a name (``"revenue
    desc"`` / ``"revenue asc"`` allowed) or ``{"column": ..., "descending": ...}``. Nulls
    sort last."""
    order_by: list[str] = Field(default_factory=list)
    """Columns (a name or a list) that order the rows for ``first`` and ``last`` (ascending,
    nulls last), for each such aggregation without its own ``order_by``; other aggregations
    ignore it. Empty: eager frames use their row order, lazy ones (Polars lazy, DuckDB, Spark)
    refuse ``first`` / ``last``."""

    _as_lists = field_validator("group_by", "order_by", mode="before")(_as_list)


def parse_sort(
    sort: list[str | SortKey] | bool | None, default: Sequence[str]
) -> list[tuple[str, bool]]:
    """``sort`` config -> ``[(column, descending), ...]``; ``None``/``True`` sorts by ``default``."""
    if sort is None or sort is True:
        return [(c, False) for c in default]
    if sort is False:
        return []
    keys: list[tuple[str, bool]] = []
    for item in sort:
        if isinstance(item, SortKey):
            keys.append((item.column, item.descending))
            continue
        lowered = item.lower()
        if lowered.endswith(" desc"):
            keys.append((item[:-5].rstrip(), True))
        elif lowered.endswith(" asc"):
            keys.append((item[:-4].rstrip(), False))
        else:
            keys.append((item, False))
    return keys


def sort_frame(frame: Any, keys: Sequence[tuple[str, bool]]) -> Any:
    """Sort by ``keys`` with nulls last (the order DuckDB and PostgreSQL use for ascending)."""
    if not keys:
        return frame
    result = frame.sort([k for k, _ in keys], descending=[d for _, d in keys], nulls_last=True)
    if result.implementation is nw.Implementation.PANDAS:
        # a sorted pandas frame keeps the old row labels; they are not data (and would become
        # an __index_level_0__ column in Arrow, Parquet or a database)
        result = nw.from_native(result.to_native().reset_index(drop=True))
    return result


class DataAggregator(DataProcessor):
    """Group rows by key columns and aggregate the others.

    Aggregations: ``sum, mean, min, max, count, median, n_unique, first, last, std``. The dict
    form names the output after the input column; a list gives several aggregations of one
    column (``price_mean``, ``price_max``, or the name given with ``"as"``); ``"*": "count"``
    counts rows. ``having`` filters the groups with a SQL-like condition on the output columns.
    The output is sorted by the group keys (nulls last) unless ``sort`` says otherwise
    (``sort: false`` keeps the engine's order). With no ``group_by`` the whole input is
    aggregated into one row. Null keys form their own group; ``count`` counts non-null values,
    ``n_unique`` counts null as a value, ``sum`` of no values is 0, ``std`` is the sample
    standard deviation. ``first``/``last`` follow the row order of eager frames and need an
    ``order_by`` on lazy ones (Polars lazy, DuckDB, Spark).

    Raises:
        ConfigError: the config is invalid when the aggregator is built: an unknown aggregation,
            ``"*"`` with anything but ``count``, two outputs of one name or one named like a
            group key, a key listed twice, ``having`` that does not parse, ``sort`` naming a
            column the aggregation does not produce.
        ColumnNotFoundError: a group key or aggregated column is not in the data, or (when the
            aggregator is built) ``having`` names a column the aggregation does not produce.
        SchemaError: ``sum``, ``mean``, ``median`` or ``std`` of a non-numeric column.
        UnsupportedOperationError: ``first`` / ``last`` on a lazy frame without ``order_by``.
        ProcessingError: the engine failed otherwise (the message names the processor).

    Example:
        >>> import polars as pl
        >>> agg = DataAggregator(name="aggregate_data", config={
        ...     "group_by": ["date", "product_id"],
        ...     "aggregations": {
        ...         "quantity": "sum",
        ...         "price": [{"agg": "mean", "as": "avg_price"}, "max"],
        ...         "*": "count",
        ...     },
        ...     "having": "quantity > 1",
        ...     "sort": [{"column": "quantity", "descending": True}],
        ... })
        >>> df = pl.DataFrame({"date": ["d1", "d1", "d2"], "product_id": [1, 1, 2],
        ...                    "quantity": [1, 2, 5], "price": [2.0, 4.0, 1.0]})
        >>> agg.process(df).rows()
        [('d2', 2, 5, 1.0, 1.0, 1), ('d1', 1, 3, 3.0, 4.0, 2)]
    """

    config_model = DataAggregatorConfig
    settings: DataAggregatorConfig

    def __init__(self, name: str, config: Any = None) -> None:
        super().__init__(name, config)
        s = self.settings
        self.group_by: list[str] = list(s.group_by)
        if len(set(self.group_by)) != len(self.group_by):
            raise ConfigError(
                f"config.group_by lists a column twice: {self.group_by}",
                component=self.label,
            )
        self.plans: list[AggPlan] = parse_aggregations(
            s.aggregations,
            group_by=self.group_by,
            default_order_by=s.order_by,
            component=self.label,
        )
        outputs = self.group_by + [p.output for p in self.plans]
        self.having: Expression | None = None
        if s.having is not None:
            self.having = Expression(s.having, what="having condition", component=self.label)
            self.having.check_columns(outputs)
        self.sort_keys = parse_sort(s.sort, self.group_by)
        unknown = [k for k, _ in self.sort_keys if k not in outputs]
        if unknown:
            raise ConfigError(
                f"config.sort names column(s) {', '.join(map(repr, unknown))} "
                "that the aggregation does not produce",
                component=self.label,
                hint=f"the output columns are: {', '.join(map(repr, outputs))}",
            )

    @property
    def allowed_aggregations(self) -> tuple[str, ...]:
        return AGGREGATIONS

    def required_columns(self, columns: Sequence[str]) -> list[str]:
        needed = list(self.group_by)
        for plan in self.plans:
            needed.extend(c for c in plan.reads if c not in needed)
        return needed

    def output_columns(self, columns: Sequence[str]) -> list[str]:
        return self.group_by + [p.output for p in self.plans]

    @property
    def keys(self) -> list[str]:
        """The grouping keys (shared with WindowedAggregator for batch and stream runners)."""
        return list(self.group_by)

    def finish(self, aggregated: Any) -> Any:
        """Apply ``having`` and ``sort`` to aggregated rows."""
        if self.having is not None:
            aggregated = where(aggregated, self.having)
        return sort_frame(aggregated, self.sort_keys)

    def _apply_frame(self, frame: Any, op: Operation) -> Any:
        result = aggregate_frame(frame, self.group_by, self.plans, component=self.label)
        result = self.finish(result)
        op.details["groups"] = self.group_by
        op.details["aggregations"] = [f"{p.func}({p.column}) as {p.output}" for p in self.plans]
        return result
