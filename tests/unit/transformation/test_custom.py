"""CustomTransformer on every engine: expressions checked against the same SQL in DuckDB."""

from __future__ import annotations

from typing import Any

import narwhals as nw
import polars as pl
import pytest

from data_pipeline.core.errors import ColumnNotFoundError, ConfigError, TransformationError
from data_pipeline.transformation.custom import CustomTransformer
from tests.conftest import to_polars
from tests.unit.transformation.conftest import assert_same, oracle


def data() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "price": [2.5, 10.0, None, 4.0],
            "quantity": [3, 1, 2, 0],
            "région": ["north", "South", None, "east"],
            "unit cost": [1.0, 8.0, 1.0, 5.0],
        }
    )


def double_price(frame: Any, factor: float = 2.0) -> Any:
    """A user function written with Narwhals: runs on any native frame."""
    return nw.from_native(frame).with_columns((nw.col("price") * factor).alias("price")).to_native()


def test_spec_like_expression(make_frame: Any, check_type: Any) -> None:
    frame = make_frame(data())
    result = CustomTransformer(
        name="rev", config={"expression": "total = price * quantity"}
    ).transform(frame)
    check_type(frame, result)
    assert_same(result, oracle("select *, price * quantity as total from t", t=data()))


EXPRESSIONS = [
    'margin = price - "unit cost"',
    "ratio = price / (quantity + 1)",
    "big = price >= 4 and not quantity = 0",
    "size = case when price > 5 then 'large' when price > 3 then 'medium' else 'small' end",
    "p = coalesce(price, 0) + abs(-1)",
    "missing = price is null",
    "present = price is not null or quantity in (1, 2)",
    "mid = quantity between 1 and 2",
    "r = round(price / 3, 2)",
    "m = quantity % 2",
    'region_up = upper("région")',
    'n = length(lower("région"))',
    "q = cast(quantity as double) * 1.5",
    "f = floor(price) + ceil(price) + sqrt(quantity) + exp(0) + ln(1)",
    "tr = trim('  ' || \"région\")",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_expressions_match_duckdb(
    make_frame: Any, engine: str, expression: str, check_type: Any
) -> None:
    frame = make_frame(data())
    result = CustomTransformer(name="c", config={"expression": expression}).transform(frame)
    check_type(frame, result)
    name, sql = (part.strip() for part in expression.split("=", 1))
    expected = oracle(f'select *, {sql} as "{name}" from t', t=data())
    assert_same(result, expected, check_exact=False)  # nulls included: SQL's logic on pandas too


def test_chained_expressions_and_concat(make_frame: Any) -> None:
    config = {
        "expression": [
            "total = price * quantity",
            '"total x2" = total * 2',
            "label = \"région\" || '-' || 'x'",
        ]
    }
    transformer = CustomTransformer(name="c", config=config)
    assert transformer.required_columns(data().columns) == ["price", "quantity", "région"]
    assert transformer.output_columns(data().columns)[-3:] == ["total", "total x2", "label"]
    result = transformer.transform(make_frame(data()))
    expected = oracle(
        """select *, price * quantity as total, price * quantity * 2 as "total x2",
                  "région" || '-' || 'x' as label from t""",
        t=data(),
    )
    assert_same(result, expected)


def test_function_callable_and_import_string(make_frame: Any, check_type: Any) -> None:
    frame = make_frame(data())
    result = CustomTransformer(
        name="f",
        config={"function": double_price, "kwargs": {"factor": 3.0}, "requires": ["price"]},
    ).transform(frame)
    check_type(frame, result)
    assert_same(result, data().with_columns(pl.col("price") * 3.0))
    by_name = CustomTransformer(
        name="f", config={"function": "tests.unit.transformation.test_custom:double_price"}
    ).transform(make_frame(data()))
    assert_same(by_name, data().with_columns(pl.col("price") * 2.0))


def test_function_errors_carry_the_name(make_frame: Any) -> None:
    def broken(frame: Any) -> Any:
        raise ValueError("boom")

    with pytest.raises(TransformationError) as info:
        CustomTransformer(name="my_step", config={"function": broken}).transform(make_frame(data()))
    assert "CustomTransformer 'my_step'" in str(info.value) and "boom" in str(info.value)

    with pytest.raises(TransformationError, match="returned dict"):
        CustomTransformer(name="my_step", config={"function": lambda f: {}}).transform(
            make_frame(data())
        )
    with pytest.raises(ColumnNotFoundError, match="'nope'"):
        CustomTransformer(
            name="my_step", config={"function": double_price, "requires": ["nope"]}
        ).transform(make_frame(data()))
    with pytest.raises(ColumnNotFoundError, match="'cost'"):
        CustomTransformer(name="e", config={"expression": "x = cost * 2"}).transform(
            make_frame(data())
        )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "exactly one of"),
        ({"function": len, "expression": "a = 1"}, "exactly one of"),
        ({"function": "os.path"}, "not an import string"),
        ({"function": "os:nope"}, "cannot import"),
        ({"function": 42}, "callable"),
        ({"expression": "total price * quantity"}, "expected 'name = expression'"),
        ({"expression": "x = __import__('os').system('true')"}, "unsupported operator"),
        ({"expression": "x = a; drop table t"}, "write one expression"),
        ({"expression": "x = t.a"}, "qualified column"),
        ({"expression": "x = a +"}, "cannot parse"),
        ({"expression": ["x = a", "y = foo(b)"]}, "config.expression[1]"),
        ({"expression": "x = cast(a as blob)"}, "cannot CAST to binary"),
        ({"expression": "x = a / 0"}, "divides by the constant zero"),
    ],
)
def test_config_errors(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        CustomTransformer(name="bad", config=config)
    assert message in str(info.value) and "CustomTransformer 'bad'" in str(info.value)


def test_text_with_semicolon_and_empty_frame(make_frame: Any) -> None:
    out = CustomTransformer(name="s", config={"expression": "x = 'a;b'"}).transform(
        make_frame(data())
    )
    assert to_polars(out)["x"].to_list() == ["a;b"] * 4
    empty = make_frame(pl.DataFrame(schema={"price": pl.Float64, "quantity": pl.Int64}))
    got = CustomTransformer(name="s", config={"expression": "t = price * quantity"}).transform(
        empty
    )
    assert to_polars(got).columns == ["price", "quantity", "t"] and to_polars(got).height == 0
