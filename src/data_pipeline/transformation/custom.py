"""CustomTransformer: a Python function on the native frame, or safe column expressions.

Expressions such as ``"total = price * quantity"`` are the one expression language of
:mod:`data_pipeline.core.expr` (sqlglot, a fixed whitelist, never ``eval``); anything outside
the whitelist is refused when the transformer is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import narwhals as nw
from pydantic import Field, field_validator, model_validator

from data_pipeline.core.component import Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import ConfigError, TransformationError
from data_pipeline.core.expr import Expression, assign, parse_assignment
from data_pipeline.core.frames import to_narwhals
from data_pipeline.transformation.base import DataFrameTransformer

__all__ = ["CustomTransformer"]


class CustomConfig(ConfigModel):
    """Config of :class:`CustomTransformer`."""

    function: Any = None
    """A callable, or an import string ``"package.module:function"`` (imported when the
    transformer is built), called as ``function(native_frame, **kwargs)``; it must return a
    frame of the type it got (pandas in, pandas out). Exactly one of ``function`` and
    ``expression``."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments passed to ``function`` on every call (ignored with
    ``expression``)."""
    expression: list[str] | None = None
    """One assignment ``"name = <expression>"`` or a list of them, applied in order (later
    ones may use earlier results); it adds or replaces column ``name``. The safe expression
    language only (never ``eval``): anything outside it is refused when the transformer is
    built."""
    requires: list[str] = Field(default_factory=list)
    """With ``function``: the input columns it needs, so a pipeline's column check can fail
    before running; expressions find theirs themselves."""

    @field_validator("expression", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one(self) -> CustomConfig:
        if (self.function is None) == (self.expression is None):
            raise ValueError(
                "give exactly one of 'function' (a callable or 'module:attr') and 'expression' "
                "(e.g. 'total = price * quantity')"
            )
        if self.expression is not None and not self.expression:
            raise ValueError("'expression' is empty")
        if self.function is not None and not (
            callable(self.function) or isinstance(self.function, str)
        ):
            raise ValueError("'function' must be a callable or an import string 'module:attr'")
        return self


class CustomTransformer(DataFrameTransformer):
    """Run a Python function on the native frame, or add columns from safe expressions.

    ``function`` is a callable (or a ``"package.module:attr"`` import string) called as
    ``function(native_frame, **kwargs)``; it must return a frame of the same type. ``requires``
    lists the columns it needs, for the pipeline's schema check.

    ``expression`` is one assignment or a list of them, applied in order (later ones may use
    earlier results): ``name = <expression>`` in the one expression language shared with
    DataFilter and DataEnricher (docs/transformation.md, "Expressions"): columns (quote names
    with spaces: ``"unit price"``), numbers, 'text', TRUE/FALSE/NULL, + - * / %, ||,
    comparisons, AND/OR/NOT, IS [NOT] NULL, [NOT] IN, BETWEEN, [I]LIKE, CASE WHEN, abs, round,
    floor, ceil, sqrt, exp, ln, lower, upper, length, trim, coalesce, nullif and CAST. The
    answer is the same on every engine. Anything else is refused at construction.

    Errors raised while running carry the transformer's name.

    Raises:
        ConfigError: both or neither of ``function`` and ``expression``, an import string that
            cannot be imported, or an expression outside the safe language (all when it is built).
        ColumnNotFoundError: a column an expression (or ``requires``) names is not in the data.
        TransformationError: the function raised, or returned another frame type than it was given.

    Example:
        >>> import polars as pl
        >>> revenue = CustomTransformer(name="revenue", config={
        ...     "expression": "total = price * quantity",
        ... })
        >>> revenue.transform(pl.DataFrame({"price": [2.0], "quantity": [3]}))["total"].to_list()
        [6.0]
    """

    config_model = CustomConfig
    settings: CustomConfig

    def __init__(self, name: str, config: Any = None) -> None:
        super().__init__(name, config)
        s = self.settings
        self._function: Callable[..., Any] | None = None
        self._assignments: list[tuple[str, Expression]] = []
        if s.function is not None:
            self._function = _resolve(s.function, self.label)
        else:
            many = len(s.expression or []) > 1
            for position, text in enumerate(s.expression or []):
                where = f"config.expression[{position}]" if many else "config.expression"
                name, source = parse_assignment(text, component=self.label)
                self._assignments.append(
                    (name, Expression(source, what=f"{where} ({name!r})", component=self.label))
                )

    def required_columns(self, columns: Sequence[str]) -> list[str]:
        if self._function is not None:
            return list(self.settings.requires)
        made: set[str] = set()
        needed: list[str] = []
        for target, expression in self._assignments:
            needed += [c for c in expression.columns() if c not in made and c not in needed]
            made.add(target)
        return needed

    def output_columns(self, columns: Sequence[str]) -> list[str]:
        out = list(columns)
        for target, _ in self._assignments:
            if target not in out:
                out.append(target)
        return out

    def _apply_frame(self, frame: Any, op: Operation) -> Any:
        if self._function is None:
            op.details["assigned"] = [t for t, _ in self._assignments]
            return assign(frame, self._assignments)
        native = frame.to_native()
        result = self._function(native, **self.settings.kwargs)
        if isinstance(result, (nw.DataFrame, nw.LazyFrame)):
            result = result.to_native()
        if type(result) is not type(native):
            raise TransformationError(
                f"function {_name(self._function)} returned {type(result).__name__}, "
                f"expected {type(native).__name__} (the type it was given)",
                component=self.label,
                hint="return a frame of the same type as the input",
            )
        op.details["function"] = _name(self._function)
        return to_narwhals(result, component=self.label)


def _name(function: Any) -> str:
    return str(
        getattr(function, "__qualname__", None) or getattr(function, "__name__", repr(function))
    )


def _resolve(function: Any, component: str) -> Callable[..., Any]:
    if callable(function):
        return function  # type: ignore[no-any-return]
    text = str(function)
    module_name, _, attr = text.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"config.function: {text!r} is not an import string",
            component=component,
            hint="write 'package.module:function_name'",
        )
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"config.function: cannot import {text!r} ({exc})",
            component=component,
            hint="check the module path and the function name",
        ) from None
    if not callable(target):
        raise ConfigError(f"config.function: {text!r} is not callable", component=component)
    return target  # type: ignore[no-any-return]
