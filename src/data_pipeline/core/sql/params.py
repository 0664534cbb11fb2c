"""``:name`` parameters, everywhere: one scanner turns them into what each driver binds.

Users write ``WHERE country = :country`` and pass ``params={"country": "NO"}``, on every
database and every path. :func:`bind` finds the placeholders outside string literals, quoted
identifiers, comments and dollar-quoted bodies (so ``'10:30'``, ``"a:b"``, ``::int`` and
``-- :x`` are left alone) and rewrites them for the driver:

* ``numeric`` (``$1, $2``: PostgreSQL wire protocol, ADBC),
* ``format`` (``%s``: psycopg, PyMySQL; every literal ``%`` is doubled),
* ``qmark`` (``?``: sqlite3),
* ``dollar_named`` (``$name``: DuckDB).

Values are always bound by the driver, never written into the SQL text. Params must be a mapping;
a list (the driver's positional style) is a :class:`ConfigError` with the hint to name them.

Example:
    >>> from data_pipeline.core.sql.params import bind
    >>> bind("SELECT * FROM t WHERE a = :a AND b > :b AND a <> :a AND t = '10:30'",
    ...      {"a": 1, "b": 2}, "numeric")
    ("SELECT * FROM t WHERE a = $1 AND b > $2 AND a <> $1 AND t = '10:30'", [1, 2])
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from data_pipeline.core.errors import ConfigError

__all__ = ["ParamStyle", "bind", "check_params", "placeholders"]

ParamStyle = Literal["numeric", "format", "qmark", "dollar_named"]

# one alternative per token kind; only NAME is a placeholder
_TOKENS = re.compile(
    r"""
      (?P<single>'(?:[^']|'')*'?)                     # 'string' ('' inside)
    | (?P<double>"(?:[^"]|"")*"?)                     # "identifier"
    | (?P<back>`(?:[^`]|``)*`?)                       # `identifier`
    | (?P<line>--[^\n]*)                              # -- comment
    | (?P<block>/\*.*?(?:\*/|\Z))                     # /* comment */
    | (?P<dollar>\$(?P<tag>[A-Za-z_]\w*)?\$.*?(?:\$(?P=tag)?\$|\Z))  # $$body$$ / $tag$body$tag$
    | (?P<cast>::)                                    # PostgreSQL cast
    | (?P<name>(?<![\w:]):(?P<param>[A-Za-z_]\w*))    # :name
    | (?P<percent>%)
    """,
    re.VERBOSE | re.DOTALL,
)


def check_params(params: Any, *, component: str | None = None) -> dict[str, Any]:
    """``params`` as a dict; ``None`` is empty; a list or tuple is a :class:`ConfigError`."""
    if params is None:
        return {}
    if isinstance(params, Mapping):
        bad = [k for k in params if not isinstance(k, str)]
        if bad:
            raise ConfigError(
                f"parameter names must be strings, got {bad!r}",
                component=component,
                hint="params={'name': value} with :name in the SQL",
            )
        return dict(params)
    if isinstance(params, (list, tuple)):
        raise ConfigError(
            f"params must be a dict of :name parameters, got a {type(params).__name__}",
            component=component,
            hint="write the placeholders as :name in the SQL and pass params={'name': value} "
            "(driver styles such as %s or ? are not used, on any database)",
        )
    raise ConfigError(
        f"params must be a dict, got {type(params).__name__}",
        component=component,
        hint="pass params={'name': value}",
    )


def placeholders(sql: str) -> list[str]:
    """The ``:name`` placeholders of ``sql`` in order of first use."""
    seen: list[str] = []
    for match in _TOKENS.finditer(sql):
        name = match.group("param")
        if name and name not in seen:
            seen.append(name)
    return seen


def bind(
    sql: str,
    params: Mapping[str, Any] | None,
    style: ParamStyle,
    *,
    component: str | None = None,
) -> tuple[str, Any]:
    """Rewrite ``:name`` placeholders for a driver: ``(sql, values)``.

    ``values`` is a list in placeholder order (``numeric``, ``format``, ``qmark``; a name used
    twice is bound twice except with ``numeric``, which reuses ``$n``) or a dict
    (``dollar_named``). A placeholder without a value is a :class:`ConfigError`; values not used
    by the SQL are ignored (a shared params dict may hold more). SQL without placeholders is
    returned unchanged with no values (send it without parameters).
    """
    values = check_params(params, component=component)
    if not placeholders(sql):  # nothing to bind: the SQL is sent as written
        return sql, ({} if style == "dollar_named" else [])
    order: list[str] = []
    bound: list[Any] = []

    def value_of(name: str) -> Any:
        if name not in values:
            raise ConfigError(
                f"the SQL uses :{name} but params has no {name!r}",
                component=component,
                hint=f"add {name!r} to params (given: {', '.join(values) or 'none'})",
            )
        return values[name]

    def sub(match: re.Match[str]) -> str:
        if match.group("percent") is not None:
            return "%%" if style == "format" else "%"
        name = match.group("param")
        if name is None:
            text = match.group(0)
            return text.replace("%", "%%") if style == "format" else text
        value = value_of(name)
        if style == "numeric":
            if name not in order:
                order.append(name)
                bound.append(value)
            return f"${order.index(name) + 1}"
        if style == "dollar_named":
            order.append(name)
            return f"${name}"
        bound.append(value)
        return "%s" if style == "format" else "?"

    text = _TOKENS.sub(sub, sql)
    if style == "dollar_named":
        return text, {n: values[n] for n in order}
    return text, bound
