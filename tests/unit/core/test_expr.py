"""The one expression language: each decided answer on every engine, against plain Python.

Each test runs through the components users call (CustomTransformer for values, DataFilter for
conditions) on every engine of the ``engine`` fixture, and compares with an oracle computed in
the test from the Python values (math, decimal, str), never with our own code.
"""

from __future__ import annotations

import decimal
import math
from typing import Any

import polars as pl
import pytest

from data_pipeline.core.errors import ConfigError, DataTypeError, UnsupportedOperationError
from data_pipeline.core.expr import Expression
from data_pipeline.processing import DataFilter
from data_pipeline.transformation import CustomTransformer
from tests.conftest import to_polars

NAN = float("nan")


def values(make_frame: Any, data: dict[str, list[Any]], expression: str) -> list[Any]:
    """The column ``r`` that ``r = <expression>`` gives, in row order (an ``id`` column)."""
    frame = pl.DataFrame({"id": list(range(len(next(iter(data.values()))))), **data}, strict=False)
    out = CustomTransformer("c", {"expression": f"r = {expression}"}).transform(make_frame(frame))
    return to_polars(out).sort("id")["r"].to_list()


def kept(make_frame: Any, data: dict[str, list[Any]], condition: str) -> list[int]:
    """The ``id`` of the rows DataFilter keeps."""
    frame = pl.DataFrame({"id": list(range(len(next(iter(data.values()))))), **data}, strict=False)
    out = DataFilter("f", {"condition": condition}).process(make_frame(frame))
    return sorted(to_polars(out)["id"].to_list())


def same(got: list[Any], want: list[Any], engine: str) -> None:
    """Equal values; NaN equals NaN; on numpy-backed pandas NaN is the missing value."""

    def norm(v: Any) -> Any:
        if isinstance(v, float) and math.isnan(v):
            return None if engine == "pandas" else "NaN"
        return v

    assert [norm(v) for v in got] == [norm(v) for v in want]


# -- conditions ---------------------------------------------------------------------------------


def test_condition_of_constants_keeps_all_or_no_rows(make_frame: Any) -> None:
    data = {"x": [1, 2, 3]}
    assert kept(make_frame, data, "1 = 1") == [0, 1, 2]
    assert kept(make_frame, data, "1 = 2") == []
    assert kept(make_frame, data, "null") == []
    assert kept(make_frame, data, "x > 1 and 2 > 1") == [1, 2]


def test_in_and_not_in_with_null(make_frame: Any) -> None:
    data = {"x": [1, 2, None]}
    # SQL: x IN (1, NULL) is true or null; x NOT IN (1, NULL) is never true
    assert kept(make_frame, data, "x in (1, null)") == [0]
    assert kept(make_frame, data, "x not in (1, null)") == []
    assert kept(make_frame, data, "x not in (1)") == [1]
    assert values(make_frame, data, "x not in (1, null)") == [False, None, None]


def test_in_lists_mixing_ints_floats_and_null(make_frame: Any) -> None:
    data = {"x": [1, 2, 3], "f": [1.0, 2.5, None]}
    assert kept(make_frame, data, "x in (1, 2.5)") == [0]
    assert kept(make_frame, data, "x in (2, null)") == [1]
    assert kept(make_frame, data, "f in (1, 2.5)") == [0, 1]
    assert kept(make_frame, data, "f in (2.5, null)") == [1]


def test_in_takes_minus_zero_for_zero(make_frame: Any) -> None:
    """-0.0 = 0.0 (IEEE), in an IN list too (PyArrow's hashed is_in told them apart)."""
    data = {"f": [-0.0, 0.0, 1.0, None]}
    assert kept(make_frame, data, "f in (0.0)") == [0, 1]
    assert kept(make_frame, data, "f in (-0.0, 1)") == [0, 1, 2]
    assert kept(make_frame, data, "f not in (0)") == [2]
    assert kept(make_frame, data, "f = -0.0") == [0, 1]


def test_division_by_a_constant_zero_is_a_config_error() -> None:
    for text in ("x > 1 / 0", "x / 0 > 1", "x % 0 = 1"):
        with pytest.raises(ConfigError, match="divides by the constant zero"):
            DataFilter("f", {"condition": text})


def test_kleene_logic_with_null(make_frame: Any) -> None:
    data = {"a": [1, -1, None]}
    assert values(make_frame, data, "a > 0 and null") == [None, False, None]
    assert values(make_frame, data, "a > 0 or null") == [True, None, None]
    assert values(make_frame, data, "not (a > 0)") == [False, True, None]
    assert kept(make_frame, data, "a > 0 or null") == [0]


def test_big_integers_compared_with_floats(make_frame: Any) -> None:
    big = [2**53 + 1, 2**62 + 3, -(2**60), 7]
    data = {"n": big}
    # compared as floats (as Polars, DuckDB, Spark and pandas do), never an error
    want = [i for i, n in enumerate(big) if float(n) > 2.5]
    assert kept(make_frame, data, "n > 2.5") == want
    assert values(make_frame, data, "n * 1.5") == [float(n) * 1.5 for n in big]
    want_in = [i for i, n in enumerate(big) if float(n) in (float(2**53 + 1), 7.0)]
    assert kept(make_frame, data, f"n in ({float(2**53 + 1)!r}, 7.0)") == want_in


def test_nan_is_equal_to_itself_and_above_every_number(make_frame: Any, engine: str) -> None:
    data = {"x": [NAN, 1.0, 5.0, None]}
    gt = values(make_frame, data, "x > 2")
    eq = values(make_frame, data, "x = x")
    lt = values(make_frame, data, "x < 2")
    if engine == "pandas":  # numpy-backed pandas: NaN is the missing value
        assert (gt, eq, lt) == (
            [None, False, True, None],
            [None, True, True, None],
            [None, True, False, None],
        )
    else:
        assert gt == [True, False, True, None]
        assert eq == [True, True, True, None]
        assert lt == [False, True, False, None]


# -- numbers ------------------------------------------------------------------------------------


def _round_half_away(x: float, places: int) -> float:
    """The oracle: half away from zero on the exact value of x * 10**places (a float)."""
    scaled = x * 10**places if places else x
    if math.isnan(scaled) or math.isinf(scaled) or abs(scaled) >= 2**52:  # already whole
        return scaled / 10**places if places else scaled
    exact = decimal.Decimal(scaled).quantize(decimal.Decimal(1), rounding=decimal.ROUND_HALF_UP)
    return float(exact) / 10**places if places else float(exact)


ROUNDING = [2.5, -2.5, 0.5, 1.5, -0.5, 2.675, 1.005, 0.49999999999999994, 1e300, -0.0, 123.456]


@pytest.mark.parametrize("places", [0, 2])
def test_round_is_half_away_from_zero(make_frame: Any, engine: str, places: int) -> None:
    got = values(make_frame, {"x": ROUNDING}, f"round(x, {places})")
    want = [_round_half_away(x, places) for x in ROUNDING]
    assert got == want
    assert [math.copysign(1, v) for v in got] == [math.copysign(1, v) for v in want]


def test_round_of_a_decimal_is_exact(make_frame: Any, engine: str) -> None:
    data = pl.DataFrame(
        {"d": pl.Series([decimal.Decimal(v) for v in ("2.675", "-2.675", "2.665", "1.004")])},
    ).with_columns(pl.col("d").cast(pl.Decimal(10, 3)))
    if engine == "pandas":  # an Arrow decimal column in pandas: refused, naming the engine
        native = data.to_pandas(use_pyarrow_extension_array=True)
        with pytest.raises(UnsupportedOperationError, match="pandas engine cannot round"):
            CustomTransformer("c", {"expression": "r = round(d, 2)"}).transform(native)
        return
    out = CustomTransformer("c", {"expression": "r = round(d, 2)"}).transform(make_frame(data))
    got = to_polars(out)["r"].to_list()
    want = [
        decimal.Decimal(v).quantize(decimal.Decimal("0.01"), rounding=decimal.ROUND_HALF_UP)
        for v in ("2.675", "-2.675", "2.665", "1.004")
    ]
    assert [decimal.Decimal(g) for g in got] == want


def test_cast_to_int_truncates_toward_zero(make_frame: Any) -> None:
    data = {"x": [-1.5, 1.5, 2.7, -2.7, 0.0, None]}
    assert values(make_frame, data, "cast(x as int)") == [
        None if v is None else int(v) for v in data["x"]
    ]


def test_division_and_remainder(make_frame: Any, engine: str) -> None:
    data = {"a": [7, -7, 7, -7, 0, 5], "b": [3, 3, -3, -3, 0, 0]}
    # % has the sign of the dividend (math.fmod), and is null for a zero divisor
    assert values(make_frame, data, "a % b") == [
        None if b == 0 else int(math.fmod(a, b)) for a, b in zip(data["a"], data["b"], strict=True)
    ]

    def ieee(a: int, b: int) -> float:
        if b == 0:
            return NAN if a == 0 else math.copysign(math.inf, a)
        return a / b

    same(
        values(make_frame, data, "a / b"),
        [ieee(a, b) for a, b in zip(data["a"], data["b"], strict=True)],
        engine,
    )
    # IEEE's division, also by a constant (Polars would multiply by the reciprocal)
    floats = {"x": [7.0, 12346.0, 1.0, -0.1]}
    assert values(make_frame, floats, "x / 3") == [x / 3 for x in floats["x"]]
    assert values(make_frame, floats, "x / 100") == [x / 100 for x in floats["x"]]
    assert kept(make_frame, {"x": [1, 2, 3]}, "x in (2 * 3 - 4, 1 + 2)") == [1, 2]


def test_null_propagates(make_frame: Any) -> None:
    data = {"x": [1.5, None], "s": ["a", None]}
    for expression in ("x + 1", "abs(x)", "round(x)", "sqrt(x)", "cast(x as int)", "-x"):
        assert values(make_frame, data, expression)[1] is None, expression
    for expression in ("upper(s)", "s || 'b'", "trim(s)", "length(s)"):
        assert values(make_frame, data, expression)[1] is None, expression
    assert values(make_frame, data, "coalesce(x, 0)") == [1.5, 0.0]


# -- text ---------------------------------------------------------------------------------------

SPECIAL = ["ß", "straße", "ﬁx", "ŉ", "ǰ", "İstanbul", "ᾳ", "Σίσυφος", "plain", None]


def test_upper_and_lower_use_the_full_unicode_mapping(make_frame: Any) -> None:
    data = {"s": SPECIAL}
    assert values(make_frame, data, "upper(s)") == [s and s.upper() for s in SPECIAL]
    assert values(make_frame, data, "lower(s)") == [s and s.lower() for s in SPECIAL]
    assert values(make_frame, data, "length(s)") == [s and len(s) for s in SPECIAL]


def test_like_escape_and_trim(make_frame: Any) -> None:
    data = {"s": ["50% off", "500 off", "a_b", "axb", "  x\t\n", None]}
    assert kept(make_frame, data, "s like '%!%%' escape '!'") == [0]
    assert kept(make_frame, data, "s like 'a\\_b' escape '\\'") == [2]
    assert kept(make_frame, data, "s like 'a_b'") == [2, 3]
    assert values(make_frame, data, "trim(s)") == [s and s.strip(" \t\n\r\f\v") for s in data["s"]]


# -- types and errors -----------------------------------------------------------------------------


def test_type_mismatches_are_errors_on_every_engine(make_frame: Any) -> None:
    data = {"x": [1, 2], "s": ["a", "b"]}
    for condition in ("x = 'a'", "s > 1", "s + 1 > 0"):
        with pytest.raises(DataTypeError, match=r"cannot compare|needs numbers"):
            kept(make_frame, data, condition)


def test_output_types_are_the_same_on_every_engine(make_frame: Any, engine: str) -> None:
    data = pl.DataFrame({"i": [1, 2], "s": ["ab", "c"], "f": [1.5, 2.5]}).with_columns(
        pl.col("i").cast(pl.Int32)
    )
    out = CustomTransformer(
        "c", {"expression": ["n = length(s)", "k = i + 1", "b = f > 2", "q = i / 2"]}
    ).transform(make_frame(data))
    schema = to_polars(out).schema
    assert (schema["n"], schema["k"], schema["b"], schema["q"]) == (
        pl.Int64,
        pl.Int32,
        pl.Boolean,
        pl.Float64,
    )


def test_the_same_expression_object_in_two_components() -> None:
    """The language is one object: DataFilter's structured form means the same as its text."""
    frame = pl.DataFrame({"x": [1, 2, None, 4], "s": ["a%", "b", "a%c", None]})
    text = DataFilter("t", {"condition": "x not in (2, 4) and s like 'a\\%%' escape '\\'"})
    structured = DataFilter(
        "s",
        {
            "conditions": [
                {"column": "x", "op": "not_in", "value": [2, 4]},
                {"column": "s", "op": "starts_with", "value": "a%"},
            ]
        },
    )
    assert text.process(frame).equals(structured.process(frame))
    assert Expression("1 + 2 * 3").constant() == 7


# -- each fix beside its broken variant -----------------------------------------------------------

DRILLS = [
    # (the rule switched off, the engine it matters on, expression, data, oracle of each value)
    ("_HALF_EVEN", "polars", "round(x)", [2.5, -2.5, 0.5], lambda x: _round_half_away(x, 0)),
    ("_IEEE_COMPARE", "pyarrow", "x > 2", [NAN, 1.0], lambda x: math.isnan(x) or x > 2),
    ("_RECIPROCAL", "polars", "x / 3", [7.0, 0.1], lambda x: x / 3),
    ("_SIMPLE_CASE", "duckdb", "upper(s)", ["straße", "ﬁ"], str.upper),
]


@pytest.mark.parametrize(("rule", "on", "expression", "column", "oracle"), DRILLS)
def test_each_rule_is_what_gives_the_answer(
    monkeypatch: pytest.MonkeyPatch,
    duckdb_connection: Any,
    rule: str,
    on: str,
    expression: str,
    column: list[Any],
    oracle: Any,
) -> None:
    """The tests above pass because of each rule: without it, that engine answers otherwise."""
    from data_pipeline.core import expr

    name = "s" if isinstance(column[0], str) else "x"
    frame = pl.DataFrame({"id": range(len(column)), name: column})
    native = {"polars": frame, "pyarrow": frame.to_arrow()}.get(on)
    if on == "duckdb":
        native = duckdb_connection.from_arrow(frame.to_arrow())

    def run() -> list[Any]:
        out = CustomTransformer("c", {"expression": f"r = {expression}"}).transform(native)
        return to_polars(out).sort("id")["r"].to_list()

    want = [oracle(v) for v in column]
    assert run() == want
    monkeypatch.setattr(expr, rule, frozenset())  # the broken variant
    assert run() != want
