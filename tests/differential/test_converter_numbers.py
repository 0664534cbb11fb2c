"""DataTypeConverter between number types on every engine against a plain-Python oracle.

Hypothesis draws an Int64 column (nulls, values around the int8/uint8 bounds and 2**40), a
Float64 column (NaN, ±inf, -0.0, fractions, whole numbers) or a Decimal(10, 2) column and a
target: ``int8``, ``uint8``, ``int32``, ``int64``, ``float32``, ``float64``, ``decimal(p,s)``,
``bool``, with ``errors`` ``coerce`` (a bad value is null), ``raise`` (a DataTypeError) or
``reject`` (the good rows). The documented answer (docs/semantics.md, DataTypeConverter):
an integer target takes whole values within its range (a fraction, NaN, ±inf or a value out of
range is bad, from a float or a decimal alike; NaN is missing: null); a float target takes the nearest float; a
decimal target takes values with at most ``p - s`` digits before the point, the fraction
rounded to ``s`` digits half away from zero (a float as ``round(x, s)``: of ``x * 10^s`` in binary
floating point; a decimal exactly); ``bool`` takes 0 and 1; ``string`` writes a float as Python's ``repr`` and a decimal with its scale.
"""

from __future__ import annotations

import decimal
import math
import struct
from typing import Any

import narwhals as nw
import polars as pl
from hypothesis import strategies as st

from data_pipeline.core.errors import DataTypeError, UnsupportedOperationError
from data_pipeline.transformation import DataTypeConverter
from tests.differential.harness import LAZY, Expected, check, engine_test, input_view, to_engine

D = decimal.Decimal
INTS = {"int8": (-128, 127, nw.Int8()), "uint8": (0, 255, nw.UInt8())}
INTS |= {"int32": (-(2**31), 2**31 - 1, nw.Int32()), "int64": (-(2**63), 2**63 - 1, nw.Int64())}
SOURCES = {
    "int": (pl.Int64, st.sampled_from([0, 1, -1, 127, 128, -128, -129, 255, 256, 2**40, 7])),
    "float": (
        pl.Float64,
        st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, 0.05, 127.0, 128.0, 255.0, 1e10, 0.001])
        | st.sampled_from([math.nan, math.inf, -math.inf, 99999.9, 1e5, 12.345])
        | st.sampled_from([0.25, -0.25, 0.15, 1.25, 2.675, 0.0005, 99999.95, -99999.94])
        | st.sampled_from([1e-7, 2.5e-5, 1e15, 1e16, 1e22, 123456789012.5, 5e-324]),
    ),
    "decimal": (
        pl.Decimal(10, 2),
        st.sampled_from([D("1.00"), D("2.50"), D("-2.55"), D("0.05"), D("255.00"), D("-1.00")])
        | st.sampled_from([D("127.00"), D("128.00"), D("99999.99"), D("12.34"), D("0.00")]),
    ),
}
TARGETS = (*INTS, "float64", "float32", "decimal(6,1)", "decimal(12,3)", "bool", "string")


def float32(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0])


def convert(value: Any, kind: str, target: str) -> tuple[bool, Any]:
    """(good, converted value) for one non-null value. NaN is missing, never bad
    (docs/transformation.md): NaN in a float target, null elsewhere."""
    if target == "string":  # as Python writes it: repr of a float (nan, -0.0, 1e-07)
        return True, repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, float) and math.isnan(value):
        return True, value if target.startswith("float") else None
    if target in INTS:
        lo, hi, _ = INTS[target]
        if isinstance(value, float) and not math.isfinite(value):
            return False, None
        whole = value == int(value)
        return (True, int(value)) if whole and lo <= value <= hi else (False, None)
    if target in ("float64", "float32"):
        exact = float(str(value)) if kind == "decimal" else float(value)
        return True, exact if target == "float64" else float32(exact)
    if target == "bool":
        return (True, bool(value)) if value in (0, 1) else (False, None)
    precision, scale = (int(x) for x in target[len("decimal(") : -1].split(","))
    if isinstance(value, float) and not math.isfinite(value):
        return False, None
    step = D(1).scaleb(-scale)
    if isinstance(value, float):  # as round(x, s): half away from zero of x * 10^s in binary
        scaled = D(value * float(10**scale)).quantize(D(1), rounding=decimal.ROUND_HALF_UP)
        rounded = D(repr(float(scaled) / float(10**scale))).quantize(step)
    else:  # a decimal: exactly, half away from zero
        rounded = D(value).quantize(step, rounding=decimal.ROUND_HALF_UP)
    if abs(rounded) >= D(10) ** (precision - scale):
        return False, None
    return True, rounded


def dtype_of(target: str) -> Any:
    if target in INTS:
        return INTS[target][2]
    if target.startswith("decimal"):
        precision, scale = (int(x) for x in target[len("decimal(") : -1].split(","))
        return nw.Decimal(precision, scale)
    return {"float64": nw.Float64(), "float32": nw.Float32(), "bool": nw.Boolean()}.get(
        target, nw.String()
    )


@st.composite
def cases(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(SOURCES)))
    dtype, values = SOURCES[kind]
    size = draw(st.integers(0, 6))
    data = draw(st.lists(st.none() | values, min_size=size, max_size=size))
    frame = pl.DataFrame({"id": list(range(size)), "x": data}, schema={"id": pl.Int64, "x": dtype})
    target = draw(st.sampled_from(TARGETS))
    errors = draw(st.sampled_from(["coerce", "coerce", "raise", "reject"]))
    return {"frame": frame, "kind": kind, "target": target, "errors": errors}


def run_case(engine: str, case: dict[str, Any], request: Any) -> None:
    frame, kind, target, errors = case["frame"], case["kind"], case["target"], case["errors"]
    view = input_view(frame, engine)  # pandas: NaN is the missing value
    rows, bad = [], False
    for row_id, value in view.iter_rows():
        good, out = (True, None) if value is None else convert(value, kind, target)
        bad = bad or not good
        if good or errors == "coerce":
            rows.append((row_id, out))
    schema = {"id": nw.Int64(), "x": dtype_of(target)}
    if engine == "pyspark" and target == "uint8":  # Spark has no unsigned types
        expected = Expected(error=UnsupportedOperationError, match="no unsigned integer type")
    elif engine == "pyspark" and kind == "float" and target == "string":  # Java's text
        expected = Expected(error=UnsupportedOperationError, match="writes floats as Java does")
    elif engine == "pandas" and kind == "decimal" and target == "decimal(6,1)":
        # rounding a decimal to fewer digits: not the same on pandas (docs/semantics.md)
        expected = Expected(error=UnsupportedOperationError, match="round a decimal")
    elif bad and errors == "raise":
        expected = Expected(error=DataTypeError, match="'x'")
    else:
        expected = Expected(rows=rows, schema=schema, ordered=engine not in LAZY)
    step = DataTypeConverter(name="t", config={"columns": {"x": target}, "errors": errors})
    check(engine, step.transform, to_engine(frame, engine, request), expected, context=repr(case))


test_data_type_converter_numbers = engine_test(cases(), run_case)
