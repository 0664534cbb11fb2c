"""SQL-like expressions parsed safely (sqlglot) into Narwhals expressions; never ``eval``.

The grammar is a small, explicit subset of SQL; anything else is refused with its position::

    comparisons   =  !=  <>  <  <=  >  >=
    logic         and  or  not  ( ... )
    membership    x in (1, 2)   x not in ('a', 'b')   x between 1 and 5
    nulls         x is null   x is not null
    text          x like 'a%'   x not like '%z'   x ilike 'A%'
    arithmetic    +  -  *  /  %  unary -
    literals      numbers, 'strings', true, false, null, DATE '2024-01-01', TIMESTAMP '...'
    functions     abs(x) round(x[, n]) lower(x) upper(x) length(x) coalesce(x, y, ...)
    columns       name  or  "a quoted name" (any characters, unicode included)

Column names are checked against the frame's columns; an unknown one names itself, its position in
the text and the columns that exist.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import narwhals as nw

from data_pipeline.core.errors import ColumnNotFoundError, ConfigError

__all__ = ["SqlExpression", "parse_assignment"]


class _Unsupported(Exception):
    def __init__(self, message: str, node: Any) -> None:
        super().__init__(message)
        self.node = node


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


@dataclass
class SqlExpression:
    """A parsed SQL-like expression; :meth:`to_narwhals` checks columns and builds the expression.

    Args:
        text: the expression, e.g. ``"price > 10 and region in ('north', 'south')"``.
        what: how messages name it (``"condition"``, ``"having"``, ``"expression 'revenue'"``).
        component: the owning component's label, for messages.
    """

    text: str
    what: str = "condition"
    component: str | None = None
    tree: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        import sqlglot
        from sqlglot.errors import ParseError, TokenError

        if not isinstance(self.text, str) or not self.text.strip():
            raise ConfigError(
                f"the {self.what} must be a non-empty string, got {self.text!r}",
                component=self.component,
                hint="write e.g. \"price > 10 and region in ('north', 'south')\"",
            )
        try:
            tree = sqlglot.parse_one(self.text, read="duckdb")
        except (ParseError, TokenError) as exc:
            position = None
            errors = getattr(exc, "errors", None) or []
            if errors and isinstance(errors[0], dict):
                col = errors[0].get("col")
                position = int(col) - 1 if isinstance(col, int) and col > 0 else None
            raise ConfigError(
                f"cannot parse the {self.what} {self.text!r}{_where(self.text, position)}",
                component=self.component,
                hint="use SQL syntax: comparisons, and/or/not, in (...), between, is [not] null, "
                "like, + - * / %; quote column names with spaces in double quotes",
            ) from None
        self.tree = tree
        try:  # check the operators now (with a placeholder column list), columns at run time
            self._compile(self.tree, None)
        except _Unsupported as exc:
            position = _position(self.text, exc.node)
            raise ConfigError(
                f"{exc} in the {self.what} {self.text!r}{_where(self.text, position)}",
                component=self.component,
                hint="supported: = != <> < <= > >=, and, or, not, in, between, is [not] null, "
                "like, ilike, + - * / %, abs, round, lower, upper, length, coalesce",
            ) from None

    def columns(self) -> list[str]:
        """Column names the expression reads, in order of first appearance."""
        from sqlglot import exp

        seen: list[str] = []
        for node in self.tree.find_all(exp.Column):
            if node.name not in seen:
                seen.append(node.name)
        return sorted(seen, key=lambda n: self.text.find(n))

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

    def to_narwhals(
        self, available: Sequence[str] | Mapping[str, Any] | None = None, *, predicate: bool = False
    ) -> nw.Expr:
        """The Narwhals expression; checks the columns against ``available`` when given.

        ``available`` may be a schema (name -> Narwhals dtype): a ``DATE '...'`` literal compared
        with a datetime column then becomes a datetime. With ``predicate=True`` the result is the
        "definitely true" mask of SQL's three-valued logic (null counts as not true), computed the
        same way on every engine, pandas included.
        """
        if available is not None:
            self.check_columns(list(available))
        schema = dict(available) if isinstance(available, Mapping) else {}
        compiler = _Compiler(schema)
        if predicate:
            if not self.columns():
                value = compiler.value(self.tree)
                result: nw.Expr = nw.lit(bool(value) if not isinstance(value, nw.Expr) else True)
                return result
            truth: nw.Expr = compiler.truth(self.tree)[0]
            return truth
        expr: nw.Expr = _as_expr(compiler.value(self.tree))
        return expr

    def constant(self) -> Any:
        """The value of an expression that reads no column (``true``, ``1 + 1``), else raise."""
        value = _Compiler({}).value(self.tree)
        if isinstance(value, nw.Expr):
            raise TypeError("not a constant")
        return value

    def _compile(self, node: Any, available: Sequence[str] | None) -> Any:
        return _Compiler({}).value(node)


_BOOLEAN_NODES: tuple[str, ...] = (
    "EQ", "NEQ", "GT", "GTE", "LT", "LTE", "And", "Or", "Not", "Is", "In", "Between", "Like",
    "ILike",
)  # fmt: skip


class _Compiler:
    """sqlglot tree -> Narwhals. ``value`` for values, ``truth`` for (definitely true, definitely
    false) masks of SQL's three-valued logic."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema

    def _is_boolean(self, node: Any) -> bool:
        from sqlglot import exp

        while isinstance(node, exp.Paren):
            node = node.this
        return type(node).__name__ in _BOOLEAN_NODES

    # -- three-valued logic ----------------------------------------------------------------

    def truth(self, node: Any) -> tuple[Any, Any]:
        from sqlglot import exp

        if isinstance(node, exp.Paren):
            return self.truth(node.this)
        if isinstance(node, exp.And):
            t1, f1 = self.truth(node.this)
            t2, f2 = self.truth(node.expression)
            return t1 & t2, f1 | f2
        if isinstance(node, exp.Or):
            t1, f1 = self.truth(node.this)
            t2, f2 = self.truth(node.expression)
            return t1 | t2, f1 & f2
        if isinstance(node, exp.Not):
            t, f = self.truth(node.this)
            return f, t
        if isinstance(node, exp.Is):
            if not isinstance(node.expression, exp.Null):
                raise _Unsupported(f"IS takes NULL, got {node.expression.sql()!r}", node)
            is_null = _as_expr(self.value(node.this)).is_null()
            return is_null, ~is_null
        if isinstance(node, (exp.Boolean, exp.Null)):
            lit = bool(node.this) if isinstance(node, exp.Boolean) else None
            return nw.lit(lit is True), nw.lit(lit is False)
        operands, raw = self._comparison(node)
        guard = None
        for operand in operands:
            if operand is None:
                return nw.lit(False), nw.lit(False)
            if isinstance(operand, nw.Expr):
                ok = ~operand.is_null()
                guard = ok if guard is None else guard & ok
        raw = _as_expr(raw)
        if guard is None:
            return raw, ~raw
        if isinstance(node, exp.In) and any(isinstance(v, exp.Null) for v in node.expressions):
            return raw & guard, nw.lit(False)  # x IN (..., NULL) is true or null, never false
        return raw & guard, ~raw & guard

    def _comparison(self, node: Any) -> tuple[list[Any], Any]:
        """The operands (for null guards) and the raw two-valued result of a comparison."""
        from sqlglot import exp

        ops: dict[type, Callable[[Any, Any], Any]] = {
            exp.EQ: lambda a, b: a == b,
            exp.NEQ: lambda a, b: a != b,
            exp.GT: lambda a, b: a > b,
            exp.GTE: lambda a, b: a >= b,
            exp.LT: lambda a, b: a < b,
            exp.LTE: lambda a, b: a <= b,
        }
        fn = ops.get(type(node))
        if fn is not None:
            left, right = self._pair(node.this, node.expression)
            if left is None or right is None:
                return [None], None
            return [left, right], fn(_as_expr(left), right)
        if isinstance(node, exp.In):
            if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
                raise _Unsupported("IN with a subquery is not supported", node)
            values = [self.value(v) for v in node.expressions]
            if any(isinstance(v, nw.Expr) for v in values):
                raise _Unsupported("IN takes a list of literal values", node)
            target = _as_expr(self.value(node.this))
            return [target], target.is_in([v for v in values if v is not None])
        if isinstance(node, exp.Between):
            target = self.value(node.this)
            low, high = self.value(node.args["low"]), self.value(node.args["high"])
            if self._is_datetime(node.this):
                low, high = _to_datetime(low), _to_datetime(high)
            target = _as_expr(target)
            return [target, low, high], (target >= low) & (target <= high)
        if isinstance(node, (exp.Like, exp.ILike)):
            pattern = self.value(node.expression)
            if not isinstance(pattern, str):
                raise _Unsupported("LIKE takes a string literal pattern", node)
            target = _as_expr(self.value(node.this))
            ignore = isinstance(node, exp.ILike)
            regex = _like_to_regex(pattern, ignore_case=ignore)
            text = target.str.to_lowercase() if ignore else target
            return [target], text.str.contains(regex)
        value = self.value(node)
        return [value], value

    def _is_datetime(self, node: Any) -> bool:
        from sqlglot import exp

        if not isinstance(node, exp.Column) or node.name not in self.schema:
            return False
        dtype = self.schema[node.name]
        return dtype == nw.Datetime or isinstance(dtype, nw.Datetime)

    def _pair(self, left_node: Any, right_node: Any) -> tuple[Any, Any]:
        left, right = self.value(left_node), self.value(right_node)
        if self._is_datetime(left_node):
            right = _to_datetime(right)
        if self._is_datetime(right_node):
            left = _to_datetime(left)
        return left, right

    # -- values -----------------------------------------------------------------------------

    def value(self, node: Any) -> Any:
        from sqlglot import exp

        if self._is_boolean(node):
            t, f = self.truth(node)
            return nw.when(t | f).then(t)
        arith: dict[type, Callable[[Any, Any], Any]] = {
            exp.Add: lambda a, b: a + b,
            exp.Sub: lambda a, b: a - b,
            exp.Mul: lambda a, b: a * b,
            exp.Div: lambda a, b: a / b,
            exp.Mod: lambda a, b: a % b,
        }
        op = arith.get(type(node))
        if op is not None:
            left, right = self.value(node.this), self.value(node.expression)
            if not isinstance(left, nw.Expr) and not isinstance(right, nw.Expr):
                return op(left, right)
            return op(_as_expr(left), right)
        if isinstance(node, exp.Paren):
            return self.value(node.this)
        if isinstance(node, exp.Column):
            if node.table:
                raise _Unsupported(f"qualified column {node.sql()!r} is not supported", node)
            return nw.col(node.name)
        if isinstance(node, exp.Literal):
            if node.is_string:
                return node.this
            number = str(node.this)
            return float(number) if any(ch in number for ch in ".eE") else int(number)
        if isinstance(node, exp.Boolean):
            return bool(node.this)
        if isinstance(node, exp.Null):
            return None
        if isinstance(node, exp.Neg):
            inner = self.value(node.this)
            return inner * -1 if isinstance(inner, nw.Expr) else -inner
        if isinstance(node, exp.Cast):
            return self._cast(node)
        if isinstance(node, exp.Func):
            return self._function(node)
        raise _Unsupported(f"unsupported operator {node.key.upper()!r} ({node.sql()!r})", node)

    def _cast(self, node: Any) -> Any:
        from sqlglot import exp

        target = node.to.this
        value = self.value(node.this)
        if isinstance(value, str):
            try:
                if target == exp.DataType.Type.DATE:
                    return dt.date.fromisoformat(value)
                if target in (exp.DataType.Type.TIMESTAMP, exp.DataType.Type.DATETIME):
                    return dt.datetime.fromisoformat(value)
            except ValueError:
                raise _Unsupported(f"bad {target.value} literal {value!r}", node) from None
        dtypes = {
            exp.DataType.Type.INT: nw.Int64,
            exp.DataType.Type.BIGINT: nw.Int64,
            exp.DataType.Type.DOUBLE: nw.Float64,
            exp.DataType.Type.FLOAT: nw.Float64,
            exp.DataType.Type.VARCHAR: nw.String,
            exp.DataType.Type.TEXT: nw.String,
            exp.DataType.Type.DATE: nw.Date,
        }
        if target in dtypes:
            return _as_expr(value).cast(dtypes[target])
        raise _Unsupported(f"unsupported cast to {node.to.sql()!r}", node)

    def _function(self, node: Any) -> Any:
        from sqlglot import exp

        if isinstance(node, exp.Abs):
            return _as_expr(self.value(node.this)).abs()
        if isinstance(node, exp.Round):
            digits = node.args.get("decimals")
            n = self.value(digits) if digits is not None else 0
            if not isinstance(n, int):
                raise _Unsupported("round() takes an integer number of decimals", node)
            return _as_expr(self.value(node.this)).round(n)
        if isinstance(node, exp.Lower):
            return _as_expr(self.value(node.this)).str.to_lowercase()
        if isinstance(node, exp.Upper):
            return _as_expr(self.value(node.this)).str.to_uppercase()
        if isinstance(node, exp.Length):
            return _as_expr(self.value(node.this)).str.len_chars()
        if isinstance(node, exp.Coalesce):
            parts = [node.this, *node.expressions]
            return nw.coalesce(*[_as_expr(self.value(p)) for p in parts])
        name = node.name if isinstance(node, exp.Anonymous) else node.key
        raise _Unsupported(f"unsupported function {str(name).lower()!r}", node)


def _to_datetime(value: Any) -> Any:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day)
    return value


def _as_expr(value: Any) -> Any:
    return value if isinstance(value, nw.Expr) else nw.lit(value)


def _like_to_regex(pattern: str, *, ignore_case: bool) -> str:
    out = []
    for ch in pattern.lower() if ignore_case else pattern:
        if ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return "^" + "".join(out) + "$"


_ASSIGN = re.compile(r'^\s*("(?P<q>[^"]+)"|(?P<n>[^\s="]+))\s*=(?!=)\s*(?P<expr>.+)$', re.DOTALL)


def parse_assignment(text: str, *, component: str | None = None) -> tuple[str, str]:
    """``"revenue = quantity * price"`` -> ``("revenue", "quantity * price")``."""
    match = _ASSIGN.match(text) if isinstance(text, str) else None
    if not match:
        raise ConfigError(
            f"cannot read the derived column {text!r}: expected 'name = expression'",
            component=component,
            hint='write e.g. "revenue = quantity * price", or use a mapping '
            '{"revenue": "quantity * price"}',
        )
    name = match.group("q") or match.group("n")
    return name, match.group("expr").strip()
