"""DataFilter: keep the rows that match a SQL-like condition or a list of structured conditions."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import narwhals as nw
from pydantic import model_validator

from data_pipeline.core.component import Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.engines import engine_of
from data_pipeline.core.errors import ConfigError
from data_pipeline.core.expr import Expression, where
from data_pipeline.core.frames import column_names, row_count
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
    """The column to test (any name; it is quoted for you)."""
    op: str
    """The operator: ``eq ne gt ge lt le`` (or ``= == != <> > >= < <=``), ``in``, ``not_in``,
    ``between``, ``is_null``, ``is_not_null``, ``like``, ``contains``, ``starts_with``,
    ``ends_with``. Another one is a ConfigError when the filter is built."""
    value: Any = None
    """The operand: a number, text, boolean, date or datetime; a non-empty list for ``in`` /
    ``not_in``; ``[low, high]`` for ``between`` (both inclusive); text for ``like`` (SQL
    pattern: ``%`` any run, ``_`` one character) and for ``contains`` / ``starts_with`` /
    ``ends_with`` (matched literally). Unused by ``is_null`` / ``is_not_null``; a null with
    ``eq`` matches no row, as in SQL."""


class DataFilterConfig(ConfigModel):
    """Config of :class:`DataFilter`: ``condition`` or ``conditions`` (+ ``combine``)."""

    condition: str | None = None
    """The condition as one expression (``"price > 10 and region in ('north', 'south')"``):
    rows where it is true are kept, rows where it is false or null are dropped. Give exactly
    one of ``condition`` and ``conditions``."""
    conditions: list[Condition] | None = None
    """The condition as a non-empty list of ``{column, op, value}`` mappings (keys below),
    joined by ``combine``; each becomes the same expression ``condition`` would be."""
    combine: Literal["and", "or"] = "and"
    """How ``conditions`` are joined: ``and`` keeps rows meeting all, ``or`` rows meeting any.
    Not used with ``condition``."""

    @model_validator(mode="after")
    def _one_form(self) -> DataFilterConfig:
        if (self.condition is None) == (self.conditions is None):
            raise ValueError("give exactly one of 'condition' (a string) or 'conditions' (a list)")
        if self.conditions is not None and not self.conditions:
            raise ValueError("'conditions' must not be empty")
        return self


class DataFilter(DataProcessor):
    """Keep the rows for which a condition is true (rows where it is null are dropped, as in SQL).

    ``condition`` is an expression of the one expression language (docs/transformation.md,
    "Expressions"): comparisons, ``and``/``or``/``not``, ``in (...)``, ``between``,
    ``is [not] null``, ``like``, arithmetic, functions, ``"quoted names"``, parsed safely by
    sqlglot (never ``eval``). An unknown column or operator is reported with its position in the
    string. Or ``conditions``: a list of ``{column, op, value}`` joined by ``combine`` (``and`` or
    ``or``); ops: ``eq ne gt ge lt le`` (or ``= != > >= < <=``), ``in``, ``not_in``,
    ``between`` (value ``[low, high]``), ``is_null``, ``is_not_null``, ``like``, ``contains``,
    ``starts_with``, ``ends_with``. Each becomes the same expression (``price > 10``,
    ``region IN ('a', 'b')``, ...), so both forms give the same answer.

    Raises:
        ConfigError: the config is invalid when the filter is built: both or neither of
            ``condition`` and ``conditions``, an expression that does not parse (its position
            is named), an unknown operator, or a value that does not suit its operator.
        ColumnNotFoundError: the condition names a column that is not in the data (with its
            position in the text).
        ProcessingError: the engine failed otherwise (the message names the processor).

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
        if self.settings.condition is not None:
            text, what = self.settings.condition, "condition"
        else:
            parts = [
                self._condition_sql(index, cond)
                for index, cond in enumerate(self.settings.conditions or [])
            ]
            text = f" {self.settings.combine} ".join(f"({p})" for p in parts)
            what = "conditions"
        self.expression = Expression(text, what=what, component=self.label)

    def _condition_sql(self, index: int, cond: Condition) -> str:
        """One structured condition as the expression language's text (values quoted)."""
        where = f"config.conditions[{index}]"
        op = OPERATORS.get(cond.op.lower() if isinstance(cond.op, str) else cond.op)
        if op is None:
            raise ConfigError(
                f"{where}.op: unknown operator {cond.op!r}",
                component=self.label,
                hint=f"allowed operators: {', '.join(OPERATORS)}",
            )
        value = cond.value
        column = _quote_name(cond.column)
        if op in ("in", "not_in"):
            if not isinstance(value, (list, tuple)) or not value:
                raise ConfigError(
                    f"{where}.value: {cond.op!r} takes a non-empty list of values, got {value!r}",
                    component=self.label,
                )
            items = ", ".join(_literal(v, where, self.label) for v in value)
            return f"{column} {'NOT IN' if op == 'not_in' else 'IN'} ({items})"
        if op == "between":
            if not (isinstance(value, (list, tuple)) and len(value) == 2):
                raise ConfigError(
                    f"{where}.value: 'between' takes [low, high], got {value!r}",
                    component=self.label,
                )
            low, high = (_literal(v, where, self.label) for v in value)
            return f"{column} BETWEEN {low} AND {high}"
        if op in _NO_VALUE:
            return f"{column} IS {'NOT ' if op == 'is_not_null' else ''}NULL"
        if op in ("like", "contains", "starts_with", "ends_with"):
            if not isinstance(value, str):
                raise ConfigError(
                    f"{where}.value: {cond.op!r} takes a string, got {value!r}",
                    component=self.label,
                )
            if op == "like":
                return f"{column} LIKE {_literal(value, where, self.label)}"
            escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = {
                "contains": f"%{escaped}%",
                "starts_with": f"{escaped}%",
                "ends_with": f"%{escaped}",
            }[op]
            return f"{column} LIKE {_literal(pattern, where, self.label)} ESCAPE '\\'"
        symbol = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}[op]
        return f"{column} {symbol} {_literal(value, where, self.label)}"

    def required_columns(self, columns: Sequence[str]) -> list[str]:
        return self.expression.columns()

    def predicate(self, schema: Mapping[str, Any], engine: str | None = None) -> nw.Expr:
        """The Narwhals predicate (true rows kept), checked against ``schema``'s columns."""
        result: nw.Expr = self.expression.to_narwhals(schema, engine=engine, predicate=True)
        return result

    def apply(self, frame: Any) -> Any:
        names = column_names(frame)  # name an unknown column with its position in the text
        if any(c not in names for c in self.expression.columns()):
            with self._operation(self.operation_name, rows_in=row_count(frame)):
                self.expression.check_columns(names)
        return super().apply(frame)

    def _apply_frame(self, frame: Any, op: Operation) -> Any:
        result = where(frame, self.expression)
        before, after = row_count(frame), row_count(result)
        if before is not None and after is not None:
            op.details["rows_removed"] = before - after
        op.details["engine"] = engine_of(frame)
        return result


def _quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: Any, where: str, component: str) -> str:
    """A config value as a literal of the expression language."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return f"CAST('{value}' AS double)"
        return repr(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    raise ConfigError(
        f"{where}.value: {value!r} is not a number, text, boolean, date or null",
        component=component,
    )
