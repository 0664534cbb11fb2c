"""CustomTransformer: a Python function on the native frame, or safe column expressions.

Expressions such as ``"total = price * quantity"`` are parsed with sqlglot into a syntax tree
and translated node by node into Narwhals expressions from a fixed whitelist; nothing is ever
passed to ``eval``, and anything outside the whitelist is refused when the transformer is built.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from typing import Any

import narwhals as nw
from pydantic import Field, field_validator, model_validator

from data_pipeline.core.component import Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import ConfigError, TransformationError
from data_pipeline.core.frames import to_narwhals
from data_pipeline.transformation.base import DataFrameTransformer

__all__ = ["CustomTransformer", "parse_assignment"]


class CustomConfig(ConfigModel):
    """Config of :class:`CustomTransformer`."""

    function: Any = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    expression: list[str] | None = None
    requires: list[str] = Field(default_factory=list)

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
    earlier results): ``name = <SQL expression>``. Supported: columns (quote names with spaces:
    ``"unit price"``), numbers, 'text', TRUE/FALSE/NULL, + - * / %, ||, comparisons, AND/OR/NOT,
    IS [NOT] NULL, IN (...), BETWEEN, CASE WHEN, and the functions abs, round, floor, ceil, sqrt,
    exp, ln, lower, upper, length, trim, coalesce and CAST(x AS int|bigint|double|float|
    varchar|text|boolean|date). Division is true division. Anything else is refused at
    construction.

    Errors raised while running carry the transformer's name.

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
        self._assignments: list[tuple[str, Any, list[str]]] = []
        if s.function is not None:
            self._function = _resolve(s.function, self.label)
        else:
            for position, text in enumerate(s.expression or []):
                try:
                    self._assignments.append(parse_assignment(text))
                except ValueError as exc:
                    where = (
                        f"config.expression[{position}]"
                        if len(s.expression or []) > 1
                        else "config.expression"
                    )
                    raise ConfigError(
                        f"{where}: {exc}",
                        component=self.label,
                        hint="write 'name = <expression>', e.g. 'total = price * quantity'",
                    ) from None

    def required_columns(self, columns: Sequence[str]) -> list[str]:
        if self._function is not None:
            return list(self.settings.requires)
        made: set[str] = set()
        needed: list[str] = []
        for target, _, used in self._assignments:
            needed += [c for c in used if c not in made and c not in needed]
            made.add(target)
        return needed

    def output_columns(self, columns: Sequence[str]) -> list[str]:
        out = list(columns)
        for target, _, _ in self._assignments:
            if target not in out:
                out.append(target)
        return out

    def _apply_frame(self, frame: Any, op: Operation) -> Any:
        if self._function is None:
            for target, expr, _ in self._assignments:
                frame = frame.with_columns(expr.alias(target))
            op.details["assigned"] = [t for t, _, _ in self._assignments]
            return frame
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


# -- the expression language -----------------------------------------------------------------

_ASSIGN = re.compile(r'^\s*(?P<name>"[^"]+"|`[^`]+`|[^=<>!"`]+?)\s*=(?!=)(?P<expr>.+)$', re.S)


def parse_assignment(text: str) -> tuple[str, Any, list[str]]:
    """``"total = price * quantity"`` -> (``"total"``, Narwhals expression, columns used)."""
    match = _ASSIGN.match(text)
    if not match:
        raise ValueError(f"{text!r} is not an assignment 'name = expression'")
    name = match.group("name").strip()
    if name[0] in '"`':
        name = name[1:-1]
    if not name:
        raise ValueError(f"{text!r}: the column name is empty")
    source = match.group("expr").strip()
    import sqlglot
    from sqlglot.errors import ParseError, TokenError

    try:
        statements = [t for t in sqlglot.parse(source, read="duckdb") if t is not None]
    except (ParseError, TokenError) as exc:
        raise ValueError(f"{source!r} cannot be parsed: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1:
        raise ValueError(f"{text!r}: write one expression per assignment (no ';')")
    tree = statements[0]
    used: list[str] = []
    expr = _translate(tree, used)
    return name, expr, used


def _translate(node: Any, used: list[str]) -> Any:
    from sqlglot import exp

    def go(child: Any) -> Any:
        return _translate(child, used)

    if isinstance(node, exp.Column):
        if node.table:
            raise ValueError(
                f"qualified column {node.sql()!r} is not allowed; write the column name"
            )
        name = node.name
        if name not in used:
            used.append(name)
        return nw.col(name)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return nw.lit(node.this)
        text = node.this
        return nw.lit(int(text)) if re.fullmatch(r"\d+", text) else nw.lit(float(text))
    if isinstance(node, exp.Boolean):
        return nw.lit(bool(node.this))
    if isinstance(node, exp.Null):
        return nw.lit(None)
    if isinstance(node, exp.Paren):
        return go(node.this)
    if isinstance(node, exp.Neg):
        return -go(node.this)
    if isinstance(node, exp.Not):
        return ~go(node.this)
    if isinstance(node, exp.Is):
        if not isinstance(node.expression, exp.Null):
            raise ValueError("only IS NULL / IS NOT NULL are supported")
        return go(node.this).is_null()
    binary: dict[type, Callable[[Any, Any], Any]] = {
        exp.Add: lambda a, b: a + b,
        exp.Sub: lambda a, b: a - b,
        exp.Mul: lambda a, b: a * b,
        exp.Div: lambda a, b: a / b,
        exp.Mod: lambda a, b: a % b,
        exp.EQ: lambda a, b: a == b,
        exp.NEQ: lambda a, b: a != b,
        exp.GT: lambda a, b: a > b,
        exp.GTE: lambda a, b: a >= b,
        exp.LT: lambda a, b: a < b,
        exp.LTE: lambda a, b: a <= b,
        exp.And: lambda a, b: a & b,
        exp.Or: lambda a, b: a | b,
        exp.DPipe: lambda a, b: nw.concat_str([a, b]),
    }
    build = binary.get(type(node))
    if build is not None:
        return build(go(node.this), go(node.expression))
    if isinstance(node, exp.In):
        values = []
        for item in node.expressions:
            if not isinstance(item, (exp.Literal, exp.Boolean)):
                raise ValueError("IN (...) takes literal values only")
            values.append(_literal_value(item))
        return go(node.this).is_in(values)
    if isinstance(node, exp.Between):
        value = go(node.this)
        return (value >= go(node.args["low"])) & (value <= go(node.args["high"]))
    if isinstance(node, exp.Case):
        if node.this is not None:
            raise ValueError(
                "write CASE WHEN <condition> THEN ... (the simple CASE x WHEN form is not supported)"
            )
        chain: Any = None
        for branch in node.args.get("ifs") or []:
            cond, then = go(branch.this), go(branch.args["true"])
            chain = nw.when(cond).then(then) if chain is None else chain.when(cond).then(then)
        default = node.args.get("default")
        return chain.otherwise(go(default)) if default is not None else chain
    if isinstance(node, exp.Coalesce):
        return nw.coalesce(go(node.this), *[go(e) for e in node.expressions])
    if isinstance(node, exp.Round):
        digits = node.args.get("decimals")
        places = int(_literal_value(digits)) if digits is not None else 0
        return go(node.this).round(places)
    unary: dict[type, Callable[[Any], Any]] = {
        exp.Abs: lambda a: a.abs(),
        exp.Floor: lambda a: a.floor(),
        exp.Ceil: lambda a: a.ceil(),
        exp.Sqrt: lambda a: a.sqrt(),
        exp.Exp: lambda a: a.exp(),
        exp.Ln: lambda a: a.log(),
        exp.Lower: lambda a: a.str.to_lowercase(),
        exp.Upper: lambda a: a.str.to_uppercase(),
        exp.Length: lambda a: a.str.len_chars(),
        exp.Trim: lambda a: a.str.strip_chars(),
    }
    apply = unary.get(type(node))
    if apply is not None:
        if isinstance(node, (exp.Floor, exp.Ceil)) and node.args.get("decimals") is not None:
            raise ValueError(f"{node.key.upper()} takes one argument")
        return apply(go(node.this))
    if isinstance(node, exp.Cast):
        return go(node.this).cast(_cast_type(node.to))
    name = node.sql() if hasattr(node, "sql") else type(node).__name__
    raise ValueError(f"{name!r} is not supported in expressions (see CustomTransformer's docs)")


def _literal_value(node: Any) -> Any:
    from sqlglot import exp

    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Neg):
        return -_literal_value(node.this)
    if not isinstance(node, exp.Literal):
        raise ValueError(f"{node.sql()!r} must be a literal value")
    if node.is_string:
        return node.this
    return int(node.this) if re.fullmatch(r"\d+", node.this) else float(node.this)


def _cast_type(datatype: Any) -> Any:
    from sqlglot import exp

    kinds = {
        exp.DataType.Type.INT: nw.Int64,
        exp.DataType.Type.BIGINT: nw.Int64,
        exp.DataType.Type.SMALLINT: nw.Int16,
        exp.DataType.Type.DOUBLE: nw.Float64,
        exp.DataType.Type.FLOAT: nw.Float64,
        exp.DataType.Type.VARCHAR: nw.String,
        exp.DataType.Type.TEXT: nw.String,
        exp.DataType.Type.BOOLEAN: nw.Boolean,
        exp.DataType.Type.DATE: nw.Date,
    }
    kind = datatype.this
    if kind not in kinds:
        raise ValueError(
            f"CAST to {datatype.sql()!r} is not supported (use int, bigint, double, varchar, boolean, date)"
        )
    return kinds[kind]
