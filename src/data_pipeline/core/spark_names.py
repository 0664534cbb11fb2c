"""PySpark column names with a dot (or a backtick): one mechanism for every step.

Spark parses a column name given as text: ``F.col("a.b")``, ``df.select("a.b")``,
``df.groupBy("a.b")``, ``Window.partitionBy("a.b")`` all mean field ``b`` of column ``a``
(``UNRESOLVED_COLUMN`` when there is no struct ``a``; another column when there is). Quoted,
``` `a.b` ``` is the column named ``a.b`` (a backtick inside is doubled). Narwhals hands names to
Spark unquoted (narwhals#3117), so every step failed on such a frame.

Our steps address columns only through Narwhals (and a few native Spark expressions, which use
:func:`spark_col`), so the quoting is done once, where Narwhals' Spark backend turns a name into a
Spark column. :func:`install` makes that backend quote:

* ``F.col(name)`` and the sort functions (``asc_nulls_first(name)``, ...) of the functions
  module Narwhals uses, and ``Window.partitionBy`` / ``orderBy`` of its ``Window``;
* the frame methods that pass names to Spark as text: ``simple_select`` (``select("a", "b")``),
  ``drop_nulls`` (``dropna(subset=...)``), the group-by's ``groupBy(*keys)``, and ``join``
  (``select(col_order)`` after the join, and ``df.key`` for a full join), which runs on frames
  whose columns are renamed to an injective encoding and renamed back.

These are Narwhals internals, so the patch is applied only to the Narwhals versions it was
checked against (:data:`CHECKED_NARWHALS`, by tests/unit/test_spark_dotted_names.py); with any
other version :func:`install` returns False and a step refuses such a frame with an
UnsupportedOperationError (core.engines.check_spark_dotted_names), as before. Only PySpark and
Spark Connect are patched (SQLFrame's dialects quote differently). ``unpivot`` and ``explode``
still pass names as text: no step uses them on a Spark frame.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import reduce
from operator import and_
from typing import Any

__all__ = ["CHECKED_NARWHALS", "install", "needs_quotes", "quote", "spark_col"]

#: Narwhals (major, minor) versions whose Spark backend internals the patch was checked against
CHECKED_NARWHALS: frozenset[tuple[int, int]] = frozenset({(2, 29)})

_SORTS = (
    "asc",
    "desc",
    "asc_nulls_first",
    "asc_nulls_last",
    "desc_nulls_first",
    "desc_nulls_last",
)
_lock = threading.Lock()
_state: dict[str, bool] = {}


def needs_quotes(name: str) -> bool:
    """Whether Spark would parse ``name`` as more than one column name part."""
    return "." in name or "`" in name


def quote(name: str) -> str:
    """``name`` as a quoted Spark identifier: ``a.b`` -> ```` `a.b` ````."""
    return "`" + name.replace("`", "``") + "`"


def spark_col(name: str) -> Any:
    """``pyspark.sql.functions.col`` of the column named ``name`` (never a struct field)."""
    from pyspark.sql import functions as F

    return F.col(quote(name))


def _quoted(value: Any) -> Any:
    """A column name (text) quoted; ``*``, columns and anything else as they are."""
    return quote(value) if isinstance(value, str) and value != "*" else value


def _each(cols: tuple[Any, ...]) -> list[Any]:
    """``f(a, b)`` or ``f([a, b])``: the columns as one list."""
    if len(cols) == 1 and isinstance(cols[0], (list, tuple)):
        return list(cols[0])
    return list(cols)


class _QuotingFunctions:
    """The functions module Narwhals uses, with column names quoted where it names columns."""

    def __init__(self, functions: Any) -> None:
        self._functions = functions

    def __getattr__(self, name: str) -> Any:
        return getattr(self._functions, name)

    def col(self, name: Any) -> Any:
        return self._functions.col(_quoted(name))

    column = col


def _sort(name: str) -> Callable[[_QuotingFunctions, Any], Any]:
    def sort(self: _QuotingFunctions, col: Any) -> Any:
        return getattr(self._functions, name)(_quoted(col))

    return sort


for _name in _SORTS:
    setattr(_QuotingFunctions, _name, _sort(_name))


class _QuotingWindow:
    """Narwhals' ``Window``, with column names quoted in ``partitionBy`` and ``orderBy``."""

    def __init__(self, window: Any) -> None:
        self._window = window

    def __getattr__(self, name: str) -> Any:
        return getattr(self._window, name)

    def partitionBy(self, *cols: Any) -> Any:
        return self._window.partitionBy(*[_quoted(c) for c in _each(cols)])

    def orderBy(self, *cols: Any) -> Any:
        return self._window.orderBy(*[_quoted(c) for c in _each(cols)])


def install() -> bool:
    """Make Narwhals' Spark backend quote column names (once per process); False when this
    Narwhals version is not one the patch was checked against (nothing is changed then)."""
    with _lock:
        if "active" not in _state:
            _state["active"] = _install()
        return _state["active"]


def _narwhals_version() -> tuple[int, int]:
    import narwhals

    major, minor, *_ = (int(p) if p.isdigit() else 0 for p in narwhals.__version__.split("."))
    return major, minor


def _install() -> bool:
    if _narwhals_version() not in CHECKED_NARWHALS:
        return False
    from narwhals._spark_like import dataframe, expr, group_by, namespace, utils
    from narwhals._utils import Implementation

    spark_kinds = (Implementation.PYSPARK, Implementation.PYSPARK_CONNECT)
    functions_of, window_of = utils.import_functions, utils.import_window
    wrapped: dict[int, Any] = {}

    def import_functions(implementation: Any, /) -> Any:
        module = functions_of(implementation)
        if implementation not in spark_kinds:
            return module
        return wrapped.setdefault(id(module), _QuotingFunctions(module))

    def import_window(implementation: Any, /) -> Any:
        window = window_of(implementation)
        if implementation not in spark_kinds:
            return window
        return wrapped.setdefault(id(window), _QuotingWindow(window))

    for module in (dataframe, expr, namespace):
        module.import_functions = import_functions  # type: ignore[attr-defined]
        if hasattr(module, "import_window"):
            module.import_window = import_window  # type: ignore[attr-defined]

    frame = dataframe.SparkLikeLazyFrame
    frame.simple_select = _simple_select  # type: ignore[method-assign]
    frame.drop_nulls = _drop_nulls(frame.drop_nulls)  # type: ignore[method-assign]
    frame.join = _join(frame.join)  # type: ignore[method-assign]
    group_by.SparkLikeLazyGroupBy.agg = _agg  # type: ignore[method-assign]
    return True


def _simple_select(self: Any, *column_names: str) -> Any:
    return self._with_native(self.native.select(*[self._F.col(c) for c in column_names]))


def _drop_nulls(original: Callable[..., Any]) -> Callable[..., Any]:
    def drop_nulls(self: Any, subset: Sequence[str] | None) -> Any:
        if not subset:  # every column: Spark's dropna() names none of them
            return original(self, subset)
        kept = reduce(and_, (self._F.col(c).isNotNull() for c in subset))
        return self._with_native(self.native.filter(kept))

    return drop_nulls


def _agg(self: Any, *exprs: Any) -> Any:
    """Narwhals' SparkLikeLazyGroupBy.agg with the keys as (quoted) columns, not text."""
    native = self.compliant.native
    keys = [self.compliant._F.col(k) for k in self._keys]
    agg_columns = tuple(self._evaluate_exprs(exprs))
    result = native.groupBy(*keys).agg(*agg_columns) if agg_columns else native.select(*keys)
    if not agg_columns:
        result = result.dropDuplicates()
    return self.compliant._with_native(result).rename(
        dict(zip(self._keys, self._output_key_names, strict=False))
    )


def _encode(name: str) -> str:
    """An injective plain name for ``name`` (equal names stay equal, so the join's suffixing of
    clashing names is unchanged)."""
    return "__dp_q" + name.encode().hex()


def _join(original: Callable[..., Any]) -> Callable[..., Any]:
    def join(
        self: Any,
        other: Any,
        *,
        how: Any,
        left_on: Sequence[str] | None,
        right_on: Sequence[str] | None,
        suffix: str,
    ) -> Any:
        names = [*self.columns, *other.columns]
        if not any(needs_quotes(n) for n in names):
            return original(self, other, how=how, left_on=left_on, right_on=right_on, suffix=suffix)
        result = original(
            self.rename({c: _encode(c) for c in self.columns}),
            other.rename({c: _encode(c) for c in other.columns}),
            how=how,
            left_on=_encoded(left_on),
            right_on=_encoded(right_on),
            suffix=suffix,
        )
        return result.rename(_decoding(result.columns, names, suffix))

    return join


def _encoded(names: Iterable[str] | None) -> list[str] | None:
    return None if names is None else [_encode(n) for n in names]


def _decoding(columns: Iterable[str], names: Iterable[str], suffix: str) -> Mapping[str, str]:
    """Result column -> its name: an encoded name, or an encoded name + ``suffix``."""
    plain = {_encode(n): n for n in names}
    back: dict[str, str] = {}
    for column in columns:
        if column in plain:
            back[column] = plain[column]
        elif suffix and column.endswith(suffix) and column[: -len(suffix)] in plain:
            back[column] = plain[column[: -len(suffix)]] + suffix
    return back
