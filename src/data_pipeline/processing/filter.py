"""DataFilter: keep the rows that match a SQL-like condition or a list of structured conditions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import reduce
from typing import Any, Literal

import narwhals as nw
from pydantic import model_validator

from data_pipeline.core.component import Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import ConfigError
from data_pipeline.core.frames import column_names, require_columns, row_count
from data_pipeline.processing._expr import SqlExpression
from data_pipeline.processing.base import DataProcessor

__all__ = ["OPERATORS", "Condition", "DataFilter", "DataFilterConfig"]

#: Operators of the structured form, with their SQL spellings as aliases.
OPERATORS: dict[str, str] = {
    "eq": "eq",
    "==": "eq",
    "=": "eq",
    "ne": "ne",
    "!=": "ne",
    "<>": "ne",
    "gt": "gt",
    ">": "gt",
    "ge": "ge",
    ">=": "ge",
    "lt": "lt",
    "<": "lt",
    "le": "le",
    "<=": "le",
    "in": "in",
    "not_in": "not_in",
    "between": "between",
    "is_null": "is_null",
    "is_not_null": "is_not_null",
    "like": "like",
    "contains": "contains",
    "starts_with": "starts_with",
    "ends_with": "ends_with",
}
_NO_VALUE = frozenset({"is_null", "is_not_null"})


class Condition(ConfigModel):
    """One structured condition: ``{"column": "price", "op": ">", "value": 10}``."""

    column: str
    op: str
    value: Any = None


class DataFilterConfig(ConfigModel):
    """Config of :class:`DataFilter`: ``condition`` or ``conditions`` (+ ``combine``)."""

    condition: str | None = None
    conditions: list[Condition] | None = None
    combine: Literal["and", "or"] = "and"

    @model_validator(mode="after")
    def _one_form(self) -> DataFilterConfig:
        if (self.condition is None) == (self.conditions is None):
            raise ValueError("give exactly one of 'condition' (a string) or 'conditions' (a list)")
        if self.conditions is not None and not self.conditions:
            raise ValueError("'conditions' must not be empty")
        return self


class DataFilter(DataProcessor):
    """Keep the rows for which a condition is true (rows where it is null are dropped, as in SQL).

    ``condition`` is a SQL-like string parsed safely by sqlglot into Narwhals expressions (never
    ``eval``): comparisons, ``and``/``or``/``not``, ``in (...)``, ``between``, ``is [not] null``,
    ``like``, arithmetic, ``"quoted names"``. An unknown column or operator is reported with its
    position in the string. Or ``conditions``: a list of ``{column, op, value}`` joined by
    ``combine`` (``and`` or ``or``); ops: ``eq ne gt ge lt le`` (or ``= != > >= < <=``), ``in``,
    ``not_in``, ``between`` (value ``[low, high]``), ``is_null``, ``is_not_null``, ``like``,
    ``contains``, ``starts_with``, ``ends_with``.

    Example:
        >>> import polars as pl
        >>> f = DataFilter(name="big_sales", config={
        ...     "condition": "price > 10 and region in ('north', 'south') and age is not null",
        ... })
        >>> df = pl.DataFrame({"price": [5, 20, 30], "region": ["north", "south", "east"],
        ...                    "age": [30, 40, 50]})
        >>> f.process(df)["price"].to_list()
        [20]
        >>> DataFilter(name="structured", config={
        ...     "conditions": [{"column": "price", "op": ">", "value": 10},
        ...                    {"column": "region", "op": "in", "value": ["east"]}],
        ...     "combine": "and",
        ... }).process(df)["price"].to_list()
        [30]
    """

    config_model = DataFilterConfig
    settings: DataFilterConfig

    def __init__(self, name: str, config: Any = None) -> None:
        super().__init__(name, config)
        self.expression: SqlExpression | None = None
        if self.settings.condition is not None:
            self.expression = SqlExpression(self.settings.condition, component=self.label)
        else:
            for index, cond in enumerate(self.settings.conditions or []):
                self._check_condition(index, cond)

    def _check_condition(self, index: int, cond: Condition) -> None:
        where = f"config.conditions[{index}]"
        op = OPERATORS.get(cond.op.lower() if isinstance(cond.op, str) else cond.op)
        if op is None:
            raise ConfigError(
                f"{where}.op: unknown operator {cond.op!r}",
                component=self.label,
                hint=f"allowed operators: {', '.join(OPERATORS)}",
            )
        if op in ("in", "not_in") and not isinstance(cond.value, (list, tuple)):
            raise ConfigError(
                f"{where}.value: {cond.op!r} takes a list of values, got {cond.value!r}",
                component=self.label,
            )
        if op == "between" and not (isinstance(cond.value, (list, tuple)) and len(cond.value) == 2):
            raise ConfigError(
                f"{where}.value: 'between' takes [low, high], got {cond.value!r}",
                component=self.label,
            )
        if op in ("like", "contains", "starts_with", "ends_with") and not isinstance(
            cond.value, str
        ):
            raise ConfigError(
                f"{where}.value: {cond.op!r} takes a string, got {cond.value!r}",
                component=self.label,
            )

    def required_columns(self, columns: Sequence[str]) -> list[str]:
        if self.expression is not None:
            return self.expression.columns()
        return list(dict.fromkeys(c.column for c in self.settings.conditions or []))

    def predicate(self, schema: Mapping[str, Any]) -> nw.Expr:
        """The Narwhals predicate (true rows kept), checked against ``schema``'s columns."""
        if self.expression is not None:
            return self.expression.to_narwhals(schema, predicate=True)
        columns = list(schema)
        require_columns(
            columns_frame(columns), self.required_columns(columns), component=self.label
        )
        parts = [_structured(c) for c in self.settings.conditions or []]
        if self.settings.combine == "and":
            return reduce(lambda a, b: a & b, parts)
        return reduce(lambda a, b: a | b, parts)

    def apply(self, frame: Any) -> Any:
        if self.expression is not None:  # name an unknown column with its position in the text
            names = column_names(frame)
            if any(c not in names for c in self.expression.columns()):
                with self._operation(self.operation_name, rows_in=row_count(frame)):
                    self.expression.check_columns(names)
        return super().apply(frame)

    def _apply_frame(self, frame: Any, op: Operation) -> Any:
        schema = dict(frame.collect_schema())
        if self.expression is not None and not self.expression.columns():
            keep = self.expression.constant()
            result = frame if keep is True else frame.head(0)
        else:
            result = frame.filter(self.predicate(schema))
        before, after = row_count(frame), row_count(result)
        if before is not None and after is not None:
            op.details["rows_removed"] = before - after
        return result


def columns_frame(columns: Sequence[str]) -> Any:
    """A zero-row frame with ``columns`` (to reuse ``require_columns`` on a column list)."""
    return nw.from_dict({c: [] for c in columns}, backend="polars")


def _structured(cond: Condition) -> nw.Expr:
    from data_pipeline.processing._expr import _like_to_regex

    col = nw.col(cond.column)
    op = OPERATORS[cond.op.lower()]
    value = cond.value
    simple: dict[str, Callable[[], nw.Expr]] = {
        "eq": lambda: col == value,
        "ne": lambda: col != value,
        "gt": lambda: col > value,
        "ge": lambda: col >= value,
        "lt": lambda: col < value,
        "le": lambda: col <= value,
        "is_null": lambda: col.is_null(),
        "is_not_null": lambda: ~col.is_null(),
        "in": lambda: col.is_in([v for v in value if v is not None]),
        "not_in": lambda: ~col.is_in([v for v in value if v is not None]),
        "between": lambda: (col >= value[0]) & (col <= value[1]),
        "like": lambda: col.str.contains(_like_to_regex(value, ignore_case=False)),
        "contains": lambda: col.str.contains(value, literal=True),
        "starts_with": lambda: col.str.starts_with(value),
        "ends_with": lambda: col.str.ends_with(value),
    }
    expr: nw.Expr = simple[op]()
    if op in _NO_VALUE:
        return expr
    return expr & ~col.is_null()  # SQL: a comparison with null is not true (pandas included)
