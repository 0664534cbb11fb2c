"""One expression language: SQL text parsed by sqlglot into Narwhals expressions, never ``eval``.

CustomTransformer (``expression``), DataFilter (``condition``), DataEnricher (``derived``) and
WindowedAggregator (``having``) all use :class:`Expression`. The grammar is a small, explicit
subset of SQL; anything else is refused when the component is built, with its position in the
text. The answer is the same on every engine (pandas, Polars eager and lazy, PyArrow, DuckDB,
PySpark) or an :class:`UnsupportedOperationError` names the engine and what to do instead:

=====================  ==========================================================================
operators              ``= == != <> < <= > >=``, ``and or not``, ``+ - * / %``, unary ``-``, ``||``
predicates             ``x [not] in (1, 2)``, ``x [not] between a and b``, ``x is [not] null``,
                       ``x [not] like 'a%'``, ``x [not] ilike 'A%'`` (``%`` any text, ``_`` one
                       character; ``escape '\\'`` makes them literal after ``\\``)
conditional            ``case when c then v [when ...] [else v] end``, ``case x when v then ...``,
                       ``coalesce(a, b, ...)``, ``nullif(a, b)``
numbers                ``abs round floor ceil sqrt exp ln``
text                   ``lower upper length trim``
types                  ``cast(x as <type>)``, ``try_cast(...)`` (type names of
                       docs/semantics.md), ``DATE '2024-01-31'``, ``TIMESTAMP '2024-01-31 12:00'``
literals               numbers, ``'text'``, ``true``, ``false``, ``null``
columns                ``name`` or ``"a quoted name"`` (any characters)
=====================  ==========================================================================

Semantics (docs/semantics.md gives the reasons):

* **Nulls**: SQL's three-valued logic. A comparison with null is null; ``and``/``or`` are
  Kleene's (``null and false`` is false, ``null or true`` is true); arithmetic and functions
  of null are null; a condition that is null keeps no row.
* **NaN** (a float value, not null) equals NaN and sorts above every number (``NaN > 1`` is
  true), as in PostgreSQL, DuckDB, Spark and Polars. On numpy-backed pandas NaN *is* the
  missing value of a float column, so there it is null.
* **Division**: ``/`` is true division (``7 / 2 = 3.5``); by zero it gives IEEE 754's ``inf``,
  ``-inf`` or ``NaN``. ``%`` has the sign of the dividend (``-7 % 3 = -1``, as in SQL) and is
  null when the divisor is 0. A divisor written as the constant ``0`` is a configuration error.
* **round(x, n)** rounds half away from zero (``round(2.5) = 3``, ``round(-2.5) = -3``), as
  ``round(x * 10^n) / 10^n`` in binary floating point; ``n`` is 0 or more.
* **cast(x as int)** truncates toward zero (``-1.5 -> -1``); NaN, infinity or a value out of
  range fails. Integers compared with floats are compared as floats.
* **upper/lower** use Unicode's full case mapping (``upper('ß') = 'SS'``), as Python does;
  ``length`` counts characters; ``trim`` removes spaces, tabs and line breaks at both ends.

Example:
    >>> import narwhals as nw
    >>> import polars as pl
    >>> frame = nw.from_native(pl.DataFrame({"price": [2.0, 5.0, None], "region": ["n", "e", "n"]}))
    >>> big = Expression("price * 3 > 10 or region in ('n')")
    >>> frame.select(big.to_narwhals(frame.schema).alias("big"))["big"].to_list()
    [True, True, True]
    >>> where(frame, Expression("price > 1 and region = 'n'"))["price"].to_list()
    [2.0]
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import narwhals as nw

from data_pipeline.core.errors import (
    ColumnNotFoundError,
    ConfigError,
    DataTypeError,
    UnsupportedOperationError,
)
from data_pipeline.core.types import DataType, from_narwhals, parse_type

__all__ = ["FUNCTIONS", "Expression", "assign", "parse_assignment", "where"]

#: the functions of the language (lower case)
FUNCTIONS: tuple[str, ...] = (
    "abs",
    "round",
    "floor",
    "ceil",
    "sqrt",
    "exp",
    "ln",
    "lower",
    "upper",
    "length",
    "trim",
    "coalesce",
    "nullif",
    "cast",
    "try_cast",
)

_SUPPORTED = (
    "supported: = != <> < <= > >=, and, or, not, in, between, is [not] null, like, ilike, "
    "+ - * / %, ||, case when, cast, try_cast, abs, round, floor, ceil, sqrt, exp, ln, lower, "
    "upper, length, trim, coalesce, nullif"
)

# the characters whose full upper case mapping is more than one character (SpecialCasing.txt,
# unconditional): engines with only the simple mapping upper them one by one, differently
_MULTI_UPPER = "".join(
    chr(c) for c in range(0x80, 0x10000) if not 0xD800 <= c < 0xE000 and len(chr(c).upper()) > 1
)
_MULTI_LOWER = "\u0130"  # İ -> i̇ (the only one)
_TRIM = " \t\n\r\f\v"
# engines whose upper()/lower() follow only the simple mapping
_SIMPLE_CASE = frozenset({"pandas", "pyarrow", "duckdb"})
# engines whose float comparisons follow IEEE 754 (NaN compares false): we give NaN its place
_IEEE_COMPARE = frozenset({"pandas", "pyarrow"})
# engines that divide by a constant as a product with its reciprocal (not IEEE's division)
_RECIPROCAL = frozenset({"polars", "polars-lazy"})
# engines whose native round() rounds half to even
_HALF_EVEN = frozenset({"pandas", "polars", "polars-lazy"})


class _Unsupported(Exception):
    def __init__(self, message: str, node: Any) -> None:
        super().__init__(message)
        self.node = node


# -- positions in the text ------------------------------------------------------------------------


def _operator_position(text: str, node: Any) -> int | None:
    """0-based offset of a binary node's operator (``>>`` in ``price >> 2``), if it can be found."""
    from sqlglot import exp

    left, right = node.args.get("this"), node.args.get("expression")
    if not isinstance(left, exp.Expression) or not isinstance(right, exp.Expression):
        return None
    full, left_sql, right_sql = node.sql(), left.sql(), right.sql()
    if not (full.startswith(left_sql) and full.endswith(right_sql)):
        return None
    operator = full[len(left_sql) : len(full) - len(right_sql)].strip()
    if not operator:
        return None
    after = _position(text, left) or 0
    found = text.lower().find(operator.lower(), after)
    return found if found >= 0 else None


def _position(text: str, node: Any) -> int | None:
    """0-based offset of ``node`` in ``text`` when sqlglot kept it, else a best-effort search."""
    from sqlglot import exp

    if isinstance(node, exp.Anonymous) and node.name:
        call = re.search(rf"\b{re.escape(str(node.name))}\s*\(", text, flags=re.IGNORECASE)
        if call:
            return call.start()
    if not isinstance(node, (exp.Column, exp.Identifier, exp.Func)):
        operator = _operator_position(text, node)
        if operator is not None:
            return operator
    for candidate in [node, *(node.find_all(exp.Identifier) if hasattr(node, "find_all") else [])]:
        meta = getattr(candidate, "meta", None) or {}
        if "start" in meta:
            return int(meta["start"])
    key = getattr(node, "key", "") or ""
    name = node.name if isinstance(node, exp.Func) and node.name else key
    if name:
        found = text.lower().find(str(name).lower())
        if found >= 0:
            return found
    return None


def _where(text: str, position: int | None) -> str:
    if position is None:
        return ""
    line = text.replace("\n", " ")
    return f" at position {position + 1}:\n    {line}\n    {' ' * position}^"


# -- values while compiling -----------------------------------------------------------------------

_NUMERIC = frozenset({"int", "uint", "float", "decimal"})


@dataclass
class _V:
    """A compiled value: a Narwhals expression, or a Python constant (``expr is None``)."""

    expr: Any = None
    value: Any = None
    dtype: DataType | None = None  # None: unknown (or the null constant)

    @property
    def const(self) -> bool:
        return self.expr is None

    @property
    def kind(self) -> str:
        if self.dtype is not None:
            return self.dtype.kind
        return "null" if self.const and self.value is None else "unknown"


_INT64 = DataType("int", 64)
_FLOAT64 = DataType("float", 64)
_BOOL = DataType("bool")
_STRING = DataType("string")


def _const(value: Any) -> _V:
    if value is None:
        return _V(None, None, None)
    if isinstance(value, bool):
        return _V(None, value, _BOOL)
    if isinstance(value, int):
        return _V(None, value, _INT64)
    if isinstance(value, float):
        return _V(None, value, _FLOAT64)
    if isinstance(value, str):
        return _V(None, value, _STRING)
    if isinstance(value, dt.datetime):
        zone = value.tzinfo and str(getattr(value.tzinfo, "key", "UTC"))
        return _V(None, value, DataType("datetime", unit="us", time_zone=zone or None))
    if isinstance(value, dt.date):
        return _V(None, value, DataType("date"))
    raise TypeError(f"no constant of type {type(value).__name__}")


@dataclass
class _Native:
    """A step Narwhals cannot say as an expression on an eager engine (PyArrow, pandas):
    ``source`` is computed into a column, ``function`` maps that native column (a PyArrow
    ChunkedArray or a pandas Series) to the column ``name`` that the expression reads."""

    source: Any
    function: Callable[[Any], Any]
    name: str
    dtype: Any


@dataclass
class Compiled:
    """An expression compiled for one schema and engine: ``expr`` and its logical ``dtype``.

    ``natives``: columns to compute natively first (see :func:`prepare`); :func:`assign` and
    :func:`where` do it.
    """

    expr: Any
    dtype: DataType | None
    natives: list[_Native] = field(default_factory=list)
    constant: Any = None
    """The value when the expression is a constant once compiled (``x IN (NULL)``)."""
    is_constant: bool = False

    def prepare(self, frame: Any) -> Any:
        """``frame`` with the native helper columns :attr:`expr` reads (eager frames only)."""
        for step in self.natives:
            frame = frame.with_columns(step.source.alias(step.name))
            native = frame.to_native()
            column = (
                native[step.name] if not hasattr(native, "column") else native.column(step.name)
            )
            result = step.function(column)
            frame = frame.with_columns(
                nw.new_series(step.name, result, step.dtype, backend=frame.implementation)
            )
        return frame

    def cleanup(self, frame: Any) -> Any:
        """``frame`` without the helper columns."""
        return frame.drop(*[s.name for s in self.natives]) if self.natives else frame


class Expression:
    """A parsed SQL expression; :meth:`to_narwhals` checks the columns and builds it.

    Args:
        text: the expression, e.g. ``"price > 10 and region in ('north', 'south')"``.
        what: how messages name it (``"condition"``, ``"having"``, ``"expression 'revenue'"``).
        component: the owning component's label, for messages.

    Operators, functions and constants are checked when it is built (a ``ConfigError`` with
    the position); columns when it is compiled for a frame (:meth:`to_narwhals`).
    """

    def __init__(self, text: str, *, what: str = "expression", component: str | None = None):
        import sqlglot
        from sqlglot.errors import ParseError, TokenError

        self.text = text
        self.what = what
        self.component = component
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(
                f"the {what} must be a non-empty string, got {text!r}",
                component=component,
                hint="write e.g. \"price > 10 and region in ('north', 'south')\"",
            )
        try:
            trees = [t for t in sqlglot.parse(text, read="duckdb") if t is not None]
        except (ParseError, TokenError) as exc:
            position = None
            errors = getattr(exc, "errors", None) or []
            if errors and isinstance(errors[0], dict):
                col = errors[0].get("col")
                position = int(col) - 1 if isinstance(col, int) and col > 0 else None
            raise ConfigError(
                f"cannot parse the {what} {text!r}{_where(text, position)}",
                component=component,
                hint="use SQL syntax: comparisons, and/or/not, in (...), between, is [not] null, "
                "like, + - * / %; quote column names with spaces in double quotes",
            ) from None
        if len(trees) != 1:
            raise ConfigError(
                f"the {what} {text!r} holds {len(trees)} expressions",
                component=component,
                hint="write one expression (no ';')",
            )
        self.tree = trees[0]
        self._constant: Any = _NOT_CONSTANT
        try:  # operators, functions and constants now; columns (and their types) later
            compiled = _Compiler({}, None, self).compile(self.tree)
        except _Unsupported as exc:
            position = _position(text, exc.node)
            raise ConfigError(
                f"{exc} in the {what} {text!r}{_where(text, position)}",
                component=component,
                hint=_SUPPORTED,
            ) from None
        if not self.columns():
            self._constant = _evaluate(compiled, self)

    # -- columns --------------------------------------------------------------------------------

    def columns(self) -> list[str]:
        """Column names the expression reads, in order of first appearance."""
        from sqlglot import exp

        seen: list[str] = []
        for node in self.tree.find_all(exp.Column):
            if node.name not in seen:
                seen.append(node.name)
        return sorted(seen, key=lambda n: _first(self.text, n))

    def check_columns(self, available: Sequence[str]) -> None:
        """Raise ColumnNotFoundError naming an unknown column, its position and the columns."""
        from sqlglot import exp

        present = set(available)
        for node in self.tree.find_all(exp.Column):
            if node.name not in present:
                import difflib

                position = _position(self.text, node)
                close = difflib.get_close_matches(node.name, list(available), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ColumnNotFoundError(
                    f"unknown column {node.name!r} in the {self.what} "
                    f"{self.text!r}{_where(self.text, position)}",
                    component=self.component,
                    hint=hint + f"the columns are: {', '.join(map(repr, available))}",
                )

    @property
    def is_constant(self) -> bool:
        """True when it reads no column (``1 = 1``, ``true``, ``2 * 3``)."""
        return self._constant is not _NOT_CONSTANT

    def constant(self) -> Any:
        """The value of an expression that reads no column (``true``, ``1 + 1``)."""
        if not self.is_constant:
            raise ConfigError(
                f"the {self.what} {self.text!r} reads columns; it has no constant value",
                component=self.component,
            )
        return self._constant

    # -- compiling ------------------------------------------------------------------------------

    def compile(
        self,
        schema: Mapping[str, Any] | Sequence[str] | None = None,
        *,
        engine: str | None = None,
        predicate: bool = False,
    ) -> Compiled:
        """The Narwhals expression for a frame of ``schema`` (name -> Narwhals dtype) on ``engine``.

        With ``predicate=True`` the result is the "definitely true" mask of three-valued logic
        (never null): the rows a filter keeps.
        """
        names = list(schema) if schema is not None else None
        if names is not None:
            self.check_columns(names)
        types: dict[str, DataType | None] = {}
        if isinstance(schema, Mapping):
            for name, dtype in schema.items():
                try:
                    types[str(name)] = from_narwhals(dtype)
                except (UnsupportedOperationError, TypeError):
                    types[str(name)] = None
        compiler = _Compiler(types, engine, self)
        try:
            if predicate:
                truth = compiler.truth(self.tree)[0]
                if isinstance(truth, bool):
                    return Compiled(nw.lit(truth), _BOOL, [], truth, True)
                return Compiled(truth, _BOOL, compiler.natives)
            return compiler.compile(self.tree)
        except _Unsupported as exc:
            position = _position(self.text, exc.node)
            raise DataTypeError(
                f"{exc} in the {self.what} {self.text!r}{_where(self.text, position)}",
                component=self.component,
                hint="CAST the value to the type it is compared or combined with",
            ) from None

    def to_narwhals(
        self,
        schema: Mapping[str, Any] | Sequence[str] | None = None,
        *,
        engine: str | None = None,
        predicate: bool = False,
    ) -> Any:
        """The Narwhals expression (see :meth:`compile`); :func:`assign` and :func:`where` run
        it on a frame, including the native steps some engines need."""
        compiled = self.compile(schema, engine=engine, predicate=predicate)
        if compiled.natives:
            raise UnsupportedOperationError(
                f"the {self.what} {self.text!r} needs native steps on the {engine} engine",
                component=self.component,
                hint="run it with data_pipeline.core.expr.assign() or where()",
            )
        return compiled.expr

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


class _NotConstant:
    pass


_NOT_CONSTANT = _NotConstant()


def _first(text: str, name: str) -> int:
    found = text.find(name)
    return found if found >= 0 else len(text)


def _evaluate(compiled: Compiled, expression: Expression) -> Any:
    """The value of a constant expression, computed once with the same Narwhals expression."""
    import polars as pl

    frame = nw.from_native(pl.DataFrame({"__dp_one": [0]}))
    try:
        return frame.select(compiled.expr.alias("v")).item()
    except Exception as exc:  # an engine error on constants is a mistake in the text
        raise ConfigError(
            f"the {expression.what} {expression.text!r} cannot be computed: {exc}",
            component=expression.component,
        ) from None


def _lift(value: Any, dtype: DataType | None) -> Any:
    """A constant as a Narwhals literal of ``dtype`` (a null literal gets the type too)."""
    if isinstance(value, nw.Expr):
        return value
    if dtype is None or dtype.kind in ("unknown",):
        return nw.lit(value)
    return nw.lit(value, dtype=dtype.narwhals())


# -- the compiler ---------------------------------------------------------------------------------


class _Compiler:
    """sqlglot tree -> Narwhals, typed. ``compile`` for values, ``truth`` for (definitely true,
    definitely false) masks of three-valued logic (Python bools when constant)."""

    def __init__(
        self, schema: Mapping[str, DataType | None], engine: str | None, owner: Expression
    ) -> None:
        self.schema = schema
        self.engine = engine
        self.owner = owner
        self.natives: list[_Native] = []

    def compile(self, node: Any) -> Compiled:
        v = self.value(node)
        if v.const:
            return Compiled(_lift(v.value, v.dtype), v.dtype, [], v.value, True)
        return Compiled(v.expr, v.dtype, self.natives)

    def native(self, source: Any, function: Callable[[Any], Any], dtype: Any) -> Any:
        """An expression reading ``function`` of ``source``, computed natively first."""
        name = f"__dp_expr_{id(self):x}_{len(self.natives)}"
        self.natives.append(_Native(source, function, name, dtype))
        return nw.col(name)

    # -- three-valued logic ---------------------------------------------------------------------

    def _is_boolean(self, node: Any) -> bool:
        from sqlglot import exp

        while isinstance(node, exp.Paren):
            node = node.this
        return isinstance(
            node,
            (
                exp.EQ,
                exp.NEQ,
                exp.GT,
                exp.GTE,
                exp.LT,
                exp.LTE,
                exp.And,
                exp.Or,
                exp.Not,
                exp.Is,
                exp.In,
                exp.Between,
                exp.Like,
                exp.ILike,
                exp.Escape,
            ),
        )

    def truth(self, node: Any) -> tuple[Any, Any]:
        from sqlglot import exp

        if isinstance(node, exp.Paren):
            return self.truth(node.this)
        if isinstance(node, exp.And):
            t1, f1 = self.truth(node.this)
            t2, f2 = self.truth(node.expression)
            return _and(t1, t2), _or(f1, f2)
        if isinstance(node, exp.Or):
            t1, f1 = self.truth(node.this)
            t2, f2 = self.truth(node.expression)
            return _or(t1, t2), _and(f1, f2)
        if isinstance(node, exp.Not):
            t, f = self.truth(node.this)
            return f, t
        if isinstance(node, exp.Is):
            if not isinstance(node.expression, exp.Null):
                raise _Unsupported(
                    f"IS takes NULL (IS [NOT] NULL), got {node.expression.sql()!r}", node
                )
            v = self.value(node.this)
            if v.const:
                return v.value is None, v.value is not None
            is_null = v.expr.is_null()
            return is_null, ~is_null
        if isinstance(node, exp.Escape):
            inner = node.this
            escape = self.value(node.expression)
            if not isinstance(inner, (exp.Like, exp.ILike)):
                raise _Unsupported("ESCAPE follows LIKE or ILIKE", node)
            if not escape.const or not isinstance(escape.value, str) or len(escape.value) != 1:
                raise _Unsupported("ESCAPE takes one character, e.g. ESCAPE '\\'", node)
            t, f = self._like(inner, escape=escape.value)
            return (f, t) if inner.args.get("negate") else (t, f)
        if isinstance(node, (exp.Like, exp.ILike)) and node.args.get("negate"):
            t, f = self._predicate(node)
            return f, t
        if self._is_boolean(node):
            return self._predicate(node)
        v = self.value(node)  # a boolean column, literal, CASE, coalesce, ...
        if v.kind not in ("bool", "null", "unknown"):
            raise _Unsupported(f"{node.sql()!r} is a {v.kind}, not a condition", node)
        if v.const:
            return v.value is True, v.value is False
        known = ~v.expr.is_null()
        return v.expr.fill_null(False) & known, ~v.expr.fill_null(True) & known

    def _predicate(self, node: Any) -> tuple[Any, Any]:
        """(true, false) masks of a comparison, IN, BETWEEN or LIKE."""
        from sqlglot import exp

        operators = {
            exp.EQ: "eq",
            exp.NEQ: "ne",
            exp.GT: "gt",
            exp.GTE: "ge",
            exp.LT: "lt",
            exp.LTE: "le",
        }
        op = operators.get(type(node))
        if op is not None:
            a, b = self.value(node.this), self.value(node.expression)
            return self._compare(op, a, b, node)
        if isinstance(node, exp.In):
            return self._in(node)
        if isinstance(node, exp.Between):
            target = self.value(node.this)
            low = self.value(node.args["low"])
            high = self.value(node.args["high"])
            t1, f1 = self._compare("ge", target, low, node)
            t2, f2 = self._compare("le", target, high, node)
            return _and(t1, t2), _or(f1, f2)
        if isinstance(node, (exp.Like, exp.ILike)):
            return self._like(node)
        raise _Unsupported(f"unsupported operator {node.key.upper()!r} ({node.sql()!r})", node)

    def _compare(self, op: str, a: _V, b: _V, node: Any) -> tuple[Any, Any]:
        if a.kind == "null" or b.kind == "null":
            return False, False
        a, b = self._common(a, b, node, what="compare")
        if a.const and b.const:
            result = _COMPARE[op](a.value, b.value)
            return bool(result), not result
        left, right = _lift(a.value if a.const else a.expr, a.dtype), b
        raw = self._raw_compare(op, left, a, right.value if right.const else right.expr, b)
        guard = _and(_not_null(a), _not_null(b))
        return _and(raw, guard), _and(~raw, guard)

    def _raw_compare(self, op: str, left: Any, a: _V, right: Any, b: _V) -> Any:
        floats = a.kind == "float" or b.kind == "float"
        if not floats or self.engine not in _IEEE_COMPARE:
            return _COMPARE[op](left, right)
        # NaN = NaN and NaN above every number, where the engine follows IEEE 754
        nan_a = left.is_nan() if a.kind == "float" and not a.const else _isnan_const(a)
        nan_b = (
            (right.is_nan() if isinstance(right, nw.Expr) else _isnan_const(b))
            if b.kind == "float"
            else False
        )
        eq = _or(left == right, _and(nan_a, nan_b))
        if op == "eq":
            return eq
        if op == "ne":
            return ~eq
        lt = _or(left < right, _and(_not(nan_a), nan_b))
        gt = _or(left > right, _and(nan_a, _not(nan_b)))
        return {"lt": lt, "le": _or(lt, eq), "gt": gt, "ge": _or(gt, eq)}[op]

    def _common(self, a: _V, b: _V, node: Any, *, what: str) -> tuple[_V, _V]:
        """Bring two operands to one type: numbers to the wider (ints with floats as floats),
        a text constant compared with a date or datetime to that type; else they must agree."""
        ka, kb = a.kind, b.kind
        if "unknown" in (ka, kb) or "null" in (ka, kb) or ka == kb == "string":
            return a, b
        if ka in _NUMERIC and kb in _NUMERIC:
            if "float" in (ka, kb) and (ka != "float" or kb != "float"):
                return self._to_float(a), self._to_float(b)
            return a, b
        temporal = ("date", "datetime")
        if ka in temporal and kb == "string" and b.const:
            return a, self._temporal_constant(b, a, node)
        if kb in temporal and ka == "string" and a.const:
            return self._temporal_constant(a, b, node), b
        if ka == "datetime" and kb == "date":
            return a, self._date_to_datetime(b, a)
        if kb == "datetime" and ka == "date":
            return self._date_to_datetime(a, b), b
        if ka == kb:
            if ka == "datetime" and a.dtype and b.dtype and a.dtype.time_zone != b.dtype.time_zone:
                if a.const:
                    return self._zone_constant(a, b), b
                if b.const:
                    return a, self._zone_constant(b, a)
                raise _Unsupported(
                    f"cannot {what} a datetime in {a.dtype.time_zone or 'no time zone'} with one "
                    f"in {b.dtype.time_zone or 'no time zone'}",
                    node,
                )
            return a, b
        if {ka, kb} == {"category", "string"}:
            return a, b
        raise _Unsupported(
            f"cannot {what} {_describe(a, node.this)} ({ka}) with "
            f"{_describe(b, node.args.get('expression'))} ({kb})",
            node,
        )

    def _to_float(self, v: _V) -> _V:
        if v.kind == "float":
            return v
        if v.const:
            return _V(None, float(v.value), _FLOAT64)
        return _V(self._float_expr(v.expr, v), None, _FLOAT64)

    def _float_expr(self, expr: Any, v: _V) -> Any:
        if self.engine == "pyarrow" and v.kind in ("int", "uint"):
            # PyArrow's cast refuses integers above 2**53 (not exact in a float): every other
            # engine rounds them to the nearest float, and so do we
            return self.native(expr, _to_float_unsafe, nw.Float64)
        return expr.cast(nw.Float64)

    def _temporal_constant(self, text: _V, other: _V, node: Any) -> _V:
        value = str(text.value)
        try:
            if other.kind == "date":
                return _V(None, dt.date.fromisoformat(value), DataType("date"))
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise _Unsupported(
                f"{value!r} is not an ISO {other.kind} (write e.g. '2024-01-31'"
                + (" or '2024-01-31 12:00:00'" if other.kind == "datetime" else "")
                + ")",
                node,
            ) from None
        return self._zone_constant(_const(parsed), other)

    def _zone_constant(self, v: _V, like: _V) -> _V:
        import zoneinfo

        zone = like.dtype.time_zone if like.dtype else None
        value = v.value
        if isinstance(value, dt.datetime):
            if zone is None:
                value = value.replace(tzinfo=None) if value.tzinfo is None else value
                if value.tzinfo is not None:
                    value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
            elif value.tzinfo is None:
                value = value.replace(tzinfo=zoneinfo.ZoneInfo(zone))
            else:
                value = value.astimezone(zoneinfo.ZoneInfo(zone))
        return _V(None, value, DataType("datetime", unit="us", time_zone=zone))

    def _date_to_datetime(self, v: _V, like: _V) -> _V:
        if v.const:
            day = v.value
            return self._zone_constant(_const(dt.datetime(day.year, day.month, day.day)), like)
        zone = like.dtype.time_zone if like.dtype else None
        expr = v.expr.cast(nw.Datetime("us"))
        if zone:
            expr = expr.dt.replace_time_zone(zone)
        return _V(expr, None, DataType("datetime", unit="us", time_zone=zone))

    def _in(self, node: Any) -> tuple[Any, Any]:
        if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
            raise _Unsupported("IN with a subquery is not supported", node)
        target = self.value(node.this)
        values = [self.value(item) for item in node.expressions]
        if any(not v.const for v in values):
            raise _Unsupported("IN takes a list of constant values", node)
        has_null = any(v.value is None for v in values)
        present = [v for v in values if v.value is not None]
        if target.kind == "null" or not present:  # x IN (NULL): never true, never false
            return False, False
        # one type for the target and the list: ints with floats compare as floats
        as_float = target.kind == "float" or (
            target.kind in _NUMERIC and any(v.kind == "float" for v in present)
        )
        if as_float:
            target = self._to_float(target)
        items = []
        for item in present:
            _, converted = self._common(target, item, node, what="compare")
            items.append(float(converted.value) if as_float else converted.value)
        if target.const:
            hit = target.value in items
            return hit, (not hit and not has_null)
        if as_float and 0.0 in items:  # -0.0 = 0.0 (IEEE); PyArrow's hashed is_in tells them apart
            items += [-0.0, 0.0]
        raw = target.expr.is_in(items)
        if self.engine in _IEEE_COMPARE and as_float:
            import math

            if any(math.isnan(v) for v in items):
                raw = raw | target.expr.is_nan()
        guard = ~target.expr.is_null()
        if has_null:  # x IN (..., NULL) is true or null, never false
            return raw & guard, False
        return raw & guard, ~raw & guard

    def _like(self, node: Any, escape: str | None = None) -> tuple[Any, Any]:
        target = self.value(node.this)
        pattern = self.value(node.expression)
        if not pattern.const or not isinstance(pattern.value, str):
            raise _Unsupported("LIKE takes a constant text pattern", node)
        if target.kind not in ("string", "category", "unknown", "null"):
            raise _Unsupported(f"LIKE needs text, {node.this.sql()!r} is a {target.kind}", node)
        if target.kind == "null":
            return False, False
        from sqlglot import exp

        ignore = isinstance(node, exp.ILike)
        text = self._case(target, lower=True) if ignore else target
        regex = _like_to_regex(pattern.value.lower() if ignore else pattern.value, escape)
        if text.const:
            hit = re.search(regex, text.value) is not None
            return hit, not hit
        raw = text.expr.str.contains(regex)
        guard = ~text.expr.is_null()
        return raw & guard, ~raw & guard

    # -- values ---------------------------------------------------------------------------------

    def value(self, node: Any) -> _V:
        from sqlglot import exp

        if isinstance(node, exp.Paren):
            return self.value(node.this)
        if self._is_boolean(node):
            t, f = self.truth(node)
            if isinstance(t, bool) and isinstance(f, bool):
                return _V(None, True if t else False if f else None, _BOOL)
            t_expr = _lift(t, _BOOL)
            return _V(nw.when(_lift(_or(t, f), _BOOL)).then(t_expr), None, _BOOL)
        if isinstance(node, exp.Column):
            if node.table:
                raise _Unsupported(f"qualified column {node.sql()!r} is not supported", node)
            return _V(nw.col(node.name), None, self.schema.get(node.name))
        if isinstance(node, exp.Literal):
            if node.is_string:
                return _const(str(node.this))
            number = str(node.this)
            if re.fullmatch(r"\d+", number):
                return _const(int(number))
            return _const(float(number))
        if isinstance(node, exp.Boolean):
            return _const(bool(node.this))
        if isinstance(node, exp.Null):
            return _const(None)
        if isinstance(node, exp.Neg):
            inner = self.value(node.this)
            if inner.kind not in _NUMERIC | {"null", "unknown"}:
                raise _Unsupported(f"cannot negate {node.this.sql()!r} ({inner.kind})", node)
            if inner.const:
                return _V(None, None if inner.value is None else -inner.value, inner.dtype)
            return _V(-inner.expr, None, inner.dtype)
        arithmetic = {exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/", exp.Mod: "%"}
        if type(node) in arithmetic:
            return self._arithmetic(arithmetic[type(node)], node)
        if isinstance(node, exp.DPipe):
            return self._concat(node)
        if isinstance(node, exp.Case):
            return self._case_when(node)
        if isinstance(node, (exp.Cast, exp.TryCast)):
            return self._cast(node)
        if isinstance(node, exp.Func):
            return self._function(node)
        raise _Unsupported(f"unsupported operator {node.key.upper()!r} ({node.sql()!r})", node)

    def _arithmetic(self, op: str, node: Any) -> _V:
        a, b = self.value(node.this), self.value(node.expression)
        for side, v in ((node.this, a), (node.expression, b)):
            if v.kind not in _NUMERIC | {"null", "unknown"}:
                hint = " (use || to join text)" if op == "+" and v.kind == "string" else ""
                raise _Unsupported(
                    f"{op!r} needs numbers, {side.sql()!r} is a {v.kind}{hint}", node
                )
        if op in "/%" and b.const and b.value == 0:
            raise _Unsupported(f"{node.sql()!r} divides by the constant zero", node)
        if a.kind == "null" or b.kind == "null":
            return _V(None, None, _result_type(op, a, b))
        a, b = self._common(a, b, node, what="combine")
        dtype = _result_type(op, a, b)
        if op == "/" and a.kind != "float" and b.kind != "float":
            a, b = self._to_float(a), self._to_float(b)
        left = _lift(a.value, a.dtype) if a.const else a.expr
        right = b.value if b.const else b.expr
        if b.const and op in "/%" and self.engine in _RECIPROCAL:
            right = _as_column(right, left)
        if op == "%":
            result = _V(self._modulo(left, right, b), None, dtype)
        else:
            fn: Callable[[Any, Any], Any] = {
                "+": lambda x, y: x + y,
                "-": lambda x, y: x - y,
                "*": lambda x, y: x * y,
                "/": lambda x, y: x / y,
            }[op]
            result = _V(fn(left, right), None, dtype)
        return _evaluate_value(result) if a.const and b.const else result

    def _modulo(self, left: Any, right: Any, b: _V) -> Any:
        """SQL's remainder: the sign of the dividend, null for a zero divisor."""
        divisor = right if b.const else nw.when(right != 0).then(right)
        m = left % divisor  # Narwhals gives Python's floored remainder on every engine
        wrong_sign = (m != 0) & ((m < 0) != (left < 0))
        return nw.when(wrong_sign).then(m - divisor).otherwise(m)

    def _concat(self, node: Any) -> _V:
        parts = []
        for side in (node.this, node.expression):
            v = self.value(side)
            if v.kind not in ("string", "category", "null", "unknown"):
                raise _Unsupported(
                    f"|| joins text, {side.sql()!r} is a {v.kind} (CAST it to text first)", node
                )
            parts.append(v)
        if any(v.kind == "null" for v in parts):
            return _V(None, None, _STRING)
        if all(v.const for v in parts):
            return _const("".join(str(v.value) for v in parts))
        exprs = [_lift(v.value, _STRING) if v.const else v.expr.cast(nw.String) for v in parts]
        return _V(nw.concat_str(exprs), None, _STRING)

    def _case_when(self, node: Any) -> _V:
        from sqlglot import exp

        subject = node.this
        branches = []
        for branch in node.args.get("ifs") or []:
            condition = branch.this
            if subject is not None:  # CASE x WHEN v THEN ...: x = v
                condition = exp.EQ(this=subject.copy(), expression=condition.copy())
            branches.append((self.truth(condition)[0], self.value(branch.args["true"]), branch))
        default = node.args.get("default")
        other = self.value(default) if default is not None else _const(None)
        results = [v for _, v, _ in branches] + [other]
        dtype = self._common_type(results, node)
        if all(isinstance(t, bool) for t, _, _ in branches):  # constant conditions
            for t, v, _ in branches:
                if t:
                    return self._as_type(v, dtype)
            return self._as_type(other, dtype)
        chain: Any = None
        for t, v, _ in branches:
            cond = _lift(t, _BOOL)
            then = _lift_value(self._as_type(v, dtype))
            chain = nw.when(cond).then(then) if chain is None else chain.when(cond).then(then)
        if other.kind != "null":
            chain = chain.otherwise(_lift_value(self._as_type(other, dtype)))
        return _V(chain, None, dtype)

    def _common_type(self, values: Sequence[_V], node: Any) -> DataType | None:
        kinds = {v.kind for v in values} - {"null", "unknown"}
        if not kinds:
            return None
        if kinds <= _NUMERIC:
            if "float" in kinds:
                return _FLOAT64
            if "decimal" in kinds:
                decimals = [v.dtype for v in values if v.kind == "decimal" and v.dtype]
                return decimals[0] if len({d.name for d in decimals}) == 1 else _FLOAT64
            ints = [v.dtype for v in values if v.dtype is not None and v.kind in ("int", "uint")]
            return ints[0] if len({d.name for d in ints}) == 1 else _INT64
        if len(kinds) == 1:
            types = [v.dtype for v in values if v.dtype is not None]
            return types[0]
        if kinds == {"string", "category"}:
            return _STRING
        raise _Unsupported(f"the branches give different types ({', '.join(sorted(kinds))})", node)

    def _as_type(self, v: _V, dtype: DataType | None) -> _V:
        if dtype is None or v.kind in ("null", "unknown") or v.dtype == dtype:
            return _V(v.expr, v.value, dtype if v.kind == "null" else v.dtype or dtype)
        if dtype.kind == "float":
            return self._to_float(v)
        if v.const:
            return _V(None, v.value, dtype)
        return _V(v.expr.cast(dtype.narwhals()), None, dtype)

    # -- functions ------------------------------------------------------------------------------

    def _function(self, node: Any) -> _V:
        from sqlglot import exp

        if isinstance(node, exp.Coalesce):
            parts = [self.value(p) for p in [node.this, *node.expressions]]
            dtype = self._common_type(parts, node)
            present = [p for p in parts if p.kind != "null"]
            if not present:
                return _V(None, None, dtype)
            if present[0].const:
                return self._as_type(present[0], dtype)
            return _V(
                nw.coalesce(*[_lift_value(self._as_type(p, dtype)) for p in present]), None, dtype
            )
        if isinstance(node, exp.Nullif):
            a, b = self.value(node.this), self.value(node.expression)
            t, _ = self._compare("eq", a, b, node)
            if a.const and isinstance(t, bool):
                return _V(None, None if t else a.value, a.dtype)
            return _V(nw.when(~_lift(t, _BOOL)).then(_lift_value(a)), None, a.dtype)
        if isinstance(node, exp.Round):
            return self._round(node)
        numeric = {
            exp.Abs: "abs",
            exp.Floor: "floor",
            exp.Ceil: "ceil",
            exp.Sqrt: "sqrt",
            exp.Exp: "exp",
            exp.Ln: "ln",
        }
        name = numeric.get(type(node))
        if name is not None:
            if isinstance(node, (exp.Floor, exp.Ceil)) and node.args.get("decimals") is not None:
                raise _Unsupported(f"{name}() takes one argument", node)
            return self._numeric_function(name, self.value(node.this), node)
        text = {exp.Lower: "lower", exp.Upper: "upper", exp.Length: "length", exp.Trim: "trim"}
        name = text.get(type(node))
        if name is not None:
            if isinstance(node, exp.Trim) and (
                node.args.get("expression") is not None or node.args.get("position")
            ):
                raise _Unsupported("trim() takes one argument (spaces and line breaks go)", node)
            v = self.value(node.this)
            if v.kind not in ("string", "category", "null", "unknown"):
                raise _Unsupported(f"{name}() needs text, {node.this.sql()!r} is a {v.kind}", node)
            if v.kind == "null":
                return _V(None, None, _INT64 if name == "length" else _STRING)
            if name == "lower":
                return self._case(v, lower=True)
            if name == "upper":
                return self._case(v, lower=False)
            if name == "length":
                if v.const:
                    return _const(len(v.value))
                length = v.expr.cast(nw.String).str.len_chars()
                if self.engine != "pandas":  # pandas: Int64 at the end (NaN for null until then)
                    length = length.cast(nw.Int64)
                return _V(length, None, _INT64)
            if v.const:
                return _const(v.value.strip(_TRIM))
            return _V(v.expr.cast(nw.String).str.strip_chars(_TRIM), None, _STRING)
        shown = node.name if isinstance(node, exp.Anonymous) else node.key
        raise _Unsupported(f"unsupported function {str(shown).lower()!r}", node)

    def _numeric_function(self, name: str, v: _V, node: Any) -> _V:
        if v.kind not in _NUMERIC | {"null", "unknown"}:
            raise _Unsupported(f"{name}() needs a number, {node.this.sql()!r} is a {v.kind}", node)
        if name in ("floor", "ceil") and v.kind in ("int", "uint"):
            return v
        floating = name in ("sqrt", "exp", "ln")
        dtype = _FLOAT64 if floating or v.kind == "unknown" else v.dtype
        if v.kind == "null":
            return _V(None, None, dtype)
        if floating:
            v = self._to_float(v)
        if v.const:  # computed once, by the same expression
            lifted = _lift(v.value, v.dtype)
            return _evaluate_value(_V(self._apply_numeric(name, lifted, v), None, dtype))
        return _V(self._apply_numeric(name, v.expr, v), None, dtype)

    def _apply_numeric(self, name: str, expr: Any, v: _V) -> Any:
        if name == "abs":
            return expr.abs()
        if name in ("floor", "ceil"):
            result = expr.floor() if name == "floor" else expr.ceil()
            if self.engine == "pyspark" and v.kind == "float":
                # Spark's floor/ceil return a bigint (floor(NaN) = 0): keep the float
                return nw.when(expr.is_finite()).then(result.cast(nw.Float64)).otherwise(expr)
            return result
        if name == "sqrt":
            return expr.sqrt()
        if name == "exp":
            return expr.exp()
        return expr.log()

    def _round(self, node: Any) -> _V:
        digits = node.args.get("decimals")
        n = self.value(digits) if digits is not None else _const(0)
        if not n.const or not isinstance(n.value, int) or isinstance(n.value, bool) or n.value < 0:
            raise _Unsupported("round() takes a constant number of decimals, 0 or more", node)
        v = self.value(node.this)
        if v.kind not in _NUMERIC | {"null", "unknown"}:
            raise _Unsupported(f"round() needs a number, {node.this.sql()!r} is a {v.kind}", node)
        if v.kind in ("int", "uint", "null"):
            return v
        if v.kind == "decimal":
            return self._round_decimal(v, n.value, node)
        expr = _lift(v.value, _FLOAT64) if v.const else v.expr
        out = _V(round_float(expr, n.value, self.engine), None, _FLOAT64)
        return _evaluate_value(out) if v.const else out

    def _round_decimal(self, v: _V, places: int, node: Any) -> _V:
        dtype = v.dtype
        assert dtype is not None and dtype.scale is not None
        if places >= dtype.scale:
            return v
        result = round_decimal(v.expr, places, dtype.narwhals(), self.engine, self.owner.component)
        return _V(result, None, dtype)

    def _case(self, v: _V, *, lower: bool) -> _V:
        """lower()/upper() with Unicode's full mapping on every engine."""
        if v.const:
            return _const(v.value.lower() if lower else v.value.upper())
        expr = v.expr.cast(nw.String) if v.kind == "category" else v.expr
        special = _MULTI_LOWER if lower else _MULTI_UPPER
        if self.engine in _SIMPLE_CASE:
            if self.engine == "duckdb":
                expr = _full_case_first(expr, special, lower=lower)
            else:  # PyArrow and pandas: natively, on the rows holding such a character
                function = _native_lower if lower else _native_upper
                return _V(self.native(expr, function, nw.String), None, _STRING)
        return _V(expr.str.to_lowercase() if lower else expr.str.to_uppercase(), None, _STRING)

    # -- casts ----------------------------------------------------------------------------------

    def _cast(self, node: Any) -> _V:
        from sqlglot import exp

        target = _cast_target(node)
        v = self.value(node.this)
        if target is None:
            raise _Unsupported(f"unsupported type in {node.sql()!r}", node)
        if target.kind in ("binary", "time", "duration", "category"):
            raise _Unsupported(
                f"cannot CAST to {target.name} (the types are integers, floats, decimal, bool, "
                "text, date and datetime)",
                node,
            )
        if v.kind == "null":
            return _V(None, None, target)
        if v.const and v.kind == "string" and target.kind in ("date", "datetime", "time"):
            try:
                if target.kind == "date":
                    return _V(None, dt.date.fromisoformat(v.value), target)
                if target.kind == "time":
                    return _V(None, dt.time.fromisoformat(v.value), target)
                value = dt.datetime.fromisoformat(v.value)
            except ValueError:
                raise _Unsupported(f"bad {target.name} literal {v.value!r}", node) from None
            return self._zone_constant(_const(value), _V(None, None, target))
        converted = self._convert(v, target, node, strict=not isinstance(node, exp.TryCast))
        if v.const:
            return _evaluate_value(converted)
        return converted

    def _convert(self, v: _V, target: DataType, node: Any, *, strict: bool) -> _V:
        source = v.kind
        expr = _lift(v.value, v.dtype) if v.const else v.expr
        kind = target.kind
        if source == "unknown":  # checked again when the column's type is known
            return _V(expr.cast(target.narwhals()), None, target)
        if source == kind and source not in ("decimal", "datetime", "int", "uint", "float"):
            return _V(expr, None, target)
        if kind in ("int", "uint") and self.engine == "pandas":
            # numpy holds no null in an int column: whole floats here, Int64 at the end
            if source == "bool":
                one = nw.when(expr).then(nw.lit(1.0)).otherwise(nw.lit(0.0))
                return _V(nw.when(~expr.is_null()).then(one), None, target)
            if source == "float":
                return _V(nw.when(expr < 0).then(expr.ceil()).otherwise(expr.floor()), None, target)
            if source in ("int", "uint"):
                return _V(expr, None, target)
        if kind in ("int", "uint"):
            if source in ("int", "uint", "bool", "unknown"):
                return _V(expr.cast(target.narwhals()), None, target)
            if source == "float":
                if self.engine in ("pyarrow", "duckdb"):  # PyArrow refuses, DuckDB rounds
                    expr = nw.when(expr < 0).then(expr.ceil()).otherwise(expr.floor())
                return _V(expr.cast(target.narwhals()), None, target)
            if source == "string" and strict:
                text = expr.str.strip_chars(_TRIM)
                return _V(text.cast(target.narwhals()), None, target)
        if kind == "float":
            if source in _NUMERIC or source in ("bool", "unknown"):
                if source in ("int", "uint"):
                    return _V(self._float_expr(expr, v).cast(target.narwhals()), None, target)
                return _V(expr.cast(target.narwhals()), None, target)
            if source == "string" and strict:
                text = expr.str.strip_chars(_TRIM)
                return _V(text.cast(target.narwhals()), None, target)
        if kind == "decimal" and source in ("int", "uint", "decimal", "unknown"):
            return _V(expr.cast(target.narwhals()), None, target)
        if kind == "string":
            if source in ("int", "uint", "string", "category", "unknown"):
                return _V(expr.cast(nw.String), None, target)
            if source == "bool":
                text = nw.when(expr).then(nw.lit("true")).otherwise(nw.lit("false"))
                return _V(nw.when(~expr.is_null()).then(text), None, target)
            if source == "date":
                return _V(expr.dt.to_string("%Y-%m-%d"), None, target)
        if kind == "bool" and source in ("int", "uint"):
            return _V(nw.when(~expr.is_null()).then(expr != 0), None, target)
        if kind == "date" and source == "datetime":
            return _V(expr.dt.date(), None, target)
        if kind == "datetime" and source == "date":
            result = expr.cast(nw.Datetime("us"))
            if target.time_zone:
                result = result.dt.replace_time_zone(target.time_zone)
            return _V(result, None, target)
        if kind == "datetime" and source == "datetime":
            zone = v.dtype.time_zone if v.dtype else None
            if zone == target.time_zone:
                return _V(expr, None, target)
        if kind == "category" and source in ("string", "category"):
            return _V(expr.cast(nw.String), None, _STRING)
        raise UnsupportedOperationError(
            f"{'CAST' if strict else 'TRY_CAST'} from {v.dtype.name if v.dtype else source} to "
            f"{target.name} in the {self.owner.what} {self.owner.text!r} is not the same on every "
            "engine",
            component=self.owner.component,
            hint="convert the column with a DataTypeConverter step first (it checks every value "
            "the same way on every engine)",
        )


# -- helpers --------------------------------------------------------------------------------------

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


def _and(a: Any, b: Any) -> Any:
    if a is False or b is False:
        return False
    if a is True:
        return b
    if b is True:
        return a
    return a & b


def _or(a: Any, b: Any) -> Any:
    if a is True or b is True:
        return True
    if a is False:
        return b
    if b is False:
        return a
    return a | b


def _not(a: Any) -> Any:
    return (not a) if isinstance(a, bool) else ~a


def _not_null(v: _V) -> Any:
    if v.const:
        return v.value is not None
    return ~v.expr.is_null()


def _isnan_const(v: _V) -> bool:
    import math

    return v.const and isinstance(v.value, float) and math.isnan(v.value)


def _describe(v: _V, node: Any) -> str:
    if v.const:
        return repr(v.value)
    return repr(node.sql()) if node is not None else "a value"


def _result_type(op: str, a: _V, b: _V) -> DataType | None:
    """The type of ``a op b``: ``/`` a float; with a float, a float; decimals as SQL types them
    (``+ -``: the larger scale and one more digit; ``*``: the sum of precisions and scales;
    at most 38 digits); integers the wider operand (a constant adapts)."""
    if op == "/":
        return _FLOAT64
    kinds = {a.kind, b.kind} - {"null"}
    if "float" in kinds:
        return _FLOAT64
    if "unknown" in kinds:
        return None
    if "decimal" in kinds:
        (p1, s1), (p2, s2) = _decimal_shape(a), _decimal_shape(b)
        if op == "*":
            scale, precision = s1 + s2, p1 + p2
        elif op == "%":
            scale, precision = max(s1, s2), max(p1, p2)
        else:
            scale = max(s1, s2)
            precision = max(p1 - s1, p2 - s2) + scale + 1
        return DataType("decimal", precision=min(precision, 38), scale=min(scale, 38))
    columns = [v.dtype for v in (a, b) if v.dtype is not None and not v.const]
    if not columns:
        return _INT64
    return max(columns, key=lambda t: (t.bits or 64, t.kind == "int"))


def _decimal_shape(v: _V) -> tuple[int, int]:
    """(precision, scale) of a decimal or an integer operand (a constant: its digits)."""
    if v.kind == "decimal" and v.dtype is not None:
        return v.dtype.precision or 38, v.dtype.scale or 0
    if v.const and isinstance(v.value, int):
        return max(len(str(abs(v.value))), 1), 0
    bits = v.dtype.bits if v.dtype is not None and v.dtype.bits else 64
    return {8: 3, 16: 5, 32: 10, 64: 19}[bits], 0


def _lift_value(v: _V) -> Any:
    return _lift(v.value, v.dtype) if v.const else v.expr


def _evaluate_value(v: _V) -> _V:
    """A constant sub-expression computed once (Polars), so constants stay constants."""
    import polars as pl

    frame = nw.from_native(pl.DataFrame({"__dp_one": [0]}))
    value = frame.select(_lift_value(v).alias("v")).item()
    return _V(None, value, v.dtype)


def _as_column(value: Any, like: Any) -> Any:
    """A constant as a column of the frame's length (Polars divides by a constant as a product
    with its reciprocal: ``7 / 3.0`` would not be IEEE's ``7 / 3``)."""
    return like.is_null().cast(nw.Float64) * 0.0 + value


def round_float(expr: Any, places: int, engine: str | None) -> Any:
    """A float column rounded half away from zero to ``places`` digits, computed as
    ``round(x * 10^places) / 10^places`` in binary floating point (``round(2.675, 2)`` is 2.67:
    the float 2.675 is below it), the same on every engine."""
    scaled = expr * float(10**places) if places else expr
    if engine in _HALF_EVEN or engine is None:
        rounded = _half_away(scaled)
    else:  # PyArrow, DuckDB and Spark round half away from zero themselves
        rounded = scaled.round(0)
        if engine == "pyspark":  # Spark's decimal rounding drops the sign of zero
            rounded = nw.when(rounded == 0).then(scaled * 0.0).otherwise(rounded)
    scale: Any = float(10**places)
    if engine in _RECIPROCAL:
        scale = _as_column(scale, expr)
    return rounded / scale if places else rounded


def round_decimal(
    expr: Any, places: int, dtype: Any, engine: str | None, component: str | None
) -> Any:
    """A decimal column rounded half away from zero to ``places`` digits, as ``dtype``; pandas
    raises UnsupportedOperationError (its decimals cannot be rounded the same way)."""
    if engine == "pandas":
        raise UnsupportedOperationError(
            "the pandas engine cannot round a decimal column the same way as the others",
            component=component,
            hint="CAST it to double first, or round it on Polars, PyArrow or DuckDB",
        )
    if engine in ("polars", "polars-lazy", None):
        # exact decimal arithmetic: ties (a remainder of exactly one half) go away from zero
        scaled = expr * (10**places)
        down = scaled.floor()
        rest = scaled - down
        up = (rest > 0.5) | ((rest == 0.5) & (scaled >= 0))
        whole = nw.when(up).then(down + 1).otherwise(down)
        return (whole / (10**places)).cast(dtype)
    # PyArrow, DuckDB and Spark round decimals half away from zero
    return expr.round(places).cast(dtype)


def _half_away(x: Any) -> Any:
    """Round half away from zero with floor, subtraction and comparisons (exact in IEEE 754)."""
    down = x.floor()
    rest = x - down
    return (
        nw.when(rest > 0.5)
        .then(down + 1)
        .when(rest < 0.5)
        .then(down)
        .otherwise(nw.when(x >= 0).then(down + 1).otherwise(down))
    )


def _to_float_unsafe(column: Any) -> Any:
    """Integers as floats, rounded to the nearest (PyArrow's own cast refuses above 2**53)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        return pc.cast(column, pa.float64(), safe=False)
    return column.astype("float64")


def _full_case_first(expr: Any, special: str, *, lower: bool) -> Any:
    """DuckDB: replace the characters whose full case mapping is several characters by it, on
    the rows holding one (a CASE: DuckDB computes the replacements for those rows only)."""
    replaced = expr
    for char in special:
        replaced = replaced.str.replace_all(
            char, char.lower() if lower else char.upper(), literal=True
        )
    pattern = "[" + re.escape(special) + "]"
    return nw.when(expr.str.contains(pattern)).then(replaced).otherwise(expr)


def _full_case(column: Any, special: str, lower: bool) -> Any:
    """PyArrow/pandas: the engine's case mapping, then the full mapping of the rows that hold a
    character whose case is several characters (a vectorised pass over those rows only)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    pandas = not isinstance(column, (pa.Array, pa.ChunkedArray))
    if pandas:
        if column.dtype == object:  # Python strings: Python's own (full) mapping
            return column.str.lower() if lower else column.str.upper()
        arrow = pa.array(column, type=pa.large_string(), from_pandas=True)
    else:
        arrow = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    pattern = "[" + re.escape(special) + "]"
    mask = pc.fill_null(pc.match_substring_regex(arrow, pattern), False)
    if pc.any(mask).as_py():
        part = pc.filter(arrow, mask)
        for char in special:
            part = pc.replace_substring(part, char, char.lower() if lower else char.upper())
        arrow = pc.replace_with_mask(arrow, mask, part.cast(arrow.type))
    result = pc.utf8_lower(arrow) if lower else pc.utf8_upper(arrow)
    if pandas:
        import pandas as pd

        return pd.Series(result.to_pandas(), index=column.index, name=column.name).astype(
            column.dtype
        )
    return result


def _native_upper(column: Any) -> Any:
    return _full_case(column, _MULTI_UPPER, lower=False)


def _native_lower(column: Any) -> Any:
    return _full_case(column, _MULTI_LOWER, lower=True)


def _like_to_regex(pattern: str, escape: str | None = None) -> str:
    """A LIKE pattern as an anchored regular expression (``%`` any text, ``_`` one character;
    after the ``escape`` character, either stands for itself)."""
    out = []
    literal = False
    for ch in pattern:
        if literal:
            out.append(ch if ch.isalnum() or ch == " " else re.escape(ch))
            literal = False
        elif escape is not None and ch == escape:
            literal = True
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        elif ch.isalnum() or ch == " ":
            out.append(ch)
        else:
            out.append(re.escape(ch))
    return "(?s)^" + "".join(out) + "$"


def _cast_target(node: Any) -> DataType | None:
    to = node.to
    name = str(to.this.value).lower()
    params = [e.sql() for e in to.expressions]
    aliases = {
        "int": "int64",
        "bigint": "int64",
        "smallint": "int16",
        "tinyint": "int8",
        "float": "float64",
        "double": "float64",
        "text": "string",
        "varchar": "string",
        "boolean": "bool",
        "timestamp": "datetime",
        "timestampntz": "datetime",
        "timestamptz": "datetime[us, UTC]",
        "varbinary": "binary",
    }
    text = aliases.get(name, name)
    if name == "decimal" and params:
        text = f"decimal({','.join(params)})"
    try:
        return parse_type(text)
    except ConfigError:
        return None


# -- assignments and filters: what the components call ----------------------------------------

_ASSIGN = re.compile(
    r'^\s*(?P<name>"(?:[^"]|"")+"|`[^`]+`|[^=<>!"`]+?)\s*=(?!=)(?P<expr>.+)$', re.DOTALL
)


def parse_assignment(text: str, *, component: str | None = None) -> tuple[str, str]:
    """``"revenue = quantity * price"`` -> ``("revenue", "quantity * price")``.

    The name may be quoted (``"unit price" = ...``) and holds any characters then.
    """
    match = _ASSIGN.match(text) if isinstance(text, str) else None
    if not match or not match.group("expr").strip():
        raise ConfigError(
            f"cannot read the derived column {text!r}: expected 'name = expression'",
            component=component,
            hint='write e.g. "revenue = quantity * price", or use a mapping '
            '{"revenue": "quantity * price"}',
        )
    name = match.group("name").strip()
    if name[0] == '"':
        name = name[1:-1].replace('""', '"')
    elif name[0] == "`":
        name = name[1:-1]
    if not name:
        raise ConfigError(f"{text!r}: the column name is empty", component=component)
    return name, match.group("expr").strip()


def assign(frame: Any, assignments: Sequence[tuple[str, Expression]]) -> Any:
    """``frame`` (Narwhals) with each ``name = expression`` added in order (later ones may read
    earlier ones), typed as the language says on every engine."""
    from data_pipeline.core.engines import engine_of

    engine = engine_of(frame)
    for name, expression in assignments:
        compiled = expression.compile(dict(frame.collect_schema()), engine=engine)
        frame = compiled.prepare(frame)
        frame = compiled.cleanup(frame.with_columns(compiled.expr.alias(name)))
        # typed at once, so a later assignment reads the language's type, not the engine's
        # (Polars' i % 3 was a Float64 until the end: abs() of it became a float)
        frame = _language_type(frame, engine, name, compiled.dtype)
    return frame


def _language_type(frame: Any, engine: str, name: str, dtype: DataType | None) -> Any:
    """Column ``name`` in the language's type: each engine's own width (UInt32 lengths, Int128
    sums, decimal precisions, floats where nulls met ints on pandas) becomes it."""
    if engine == "pandas":
        return _pandas_nullable(frame, {name: dtype})
    if dtype is None or dtype.kind in ("category",):
        return frame
    wanted = dtype.narwhals()
    if frame.collect_schema()[name] == wanted:
        return frame
    return frame.with_columns(nw.col(name).cast(wanted))


def where(frame: Any, expression: Expression) -> Any:
    """The rows of ``frame`` (Narwhals) for which ``expression`` is true (not null)."""
    from data_pipeline.core.engines import engine_of

    if expression.is_constant:
        return frame if expression.constant() is True else frame.head(0)
    schema = dict(frame.collect_schema())
    compiled = expression.compile(schema, engine=engine_of(frame), predicate=True)
    if compiled.is_constant:  # e.g. x NOT IN (1, NULL): never true
        return frame if compiled.constant is True else frame.head(0)
    return compiled.cleanup(compiled.prepare(frame).filter(compiled.expr))


def _pandas_nullable(frame: Any, made: Mapping[str, DataType | None]) -> Any:
    """numpy-backed pandas holds no null in a bool or int column: pandas' nullable dtypes."""
    native = frame.to_native()
    changed = {}
    for name, dtype in made.items():
        if dtype is None or dtype.kind not in ("bool", "int", "uint"):
            continue
        series = native[name]
        if str(series.dtype) == dtype.pandas(nullable=False):
            continue
        if series.isna().any() or series.dtype == object:
            changed[name] = series.astype(dtype.pandas(nullable=True))
        else:
            changed[name] = series.astype(dtype.pandas(nullable=False))
    if not changed:
        return frame
    return nw.from_native(native.assign(**changed))
