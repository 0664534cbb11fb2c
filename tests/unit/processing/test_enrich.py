"""DataEnricher on every engine, compared with DuckDB SQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

from data_pipeline.core.errors import ConfigError, UnsupportedOperationError
from data_pipeline.processing import DataEnricher
from data_pipeline.processing.join import JoinValidationError
from tests.conftest import to_polars
from tests.unit.processing.oracle import assert_same, duck

SALES = {
    "ts": [
        dt.datetime(2024, 1, 1, 9),
        dt.datetime(2024, 5, 17, 23, 5),
        None,
        dt.datetime(2023, 12, 31, 0, 30),
    ],
    "product_id": [1, 2, 3, None],
    "quantity": [2, None, 5, 1],
    "price": [9.5, 20.0, 64.99, None],
    "discount": [None, 1.0, 0.5, None],
}
PRODUCTS = {"product_id": [1, 2], "category": ["toys", None], "brand": ["Åkë", "Zed"]}


def test_derived_columns(make_frame: Any) -> None:
    config = {
        "derived": [
            "revenue = quantity * price",
            "net = revenue - coalesce(discount, 0)",
            "big = price > 10",
            '"prix ttc" = round(price * 1.2, 2)',
        ]
    }
    native = make_frame(SALES)
    result = DataEnricher(name="d", config=config).process(native)
    assert type(result) is type(native)
    expected = duck(
        "select *, quantity * price as revenue, quantity * price - coalesce(discount, 0) as net, "
        'price > 10 as big, round(price * 1.2, 2) as "prix ttc" from t',
        t=SALES,
    )
    got = to_polars(result).with_columns(pl.col("big").cast(pl.Boolean))
    assert_same(got, expected)


def test_date_parts(make_frame: Any) -> None:
    parts = ["year", "quarter", "month", "day", "weekday", "day_of_year", "hour", "minute"]
    native = make_frame(SALES)
    result = DataEnricher(name="dp", config={"date_parts": {"ts": parts}}).process(native)
    assert type(result) is type(native)
    expected = duck(
        "select *, year(ts) as ts_year, quarter(ts) as ts_quarter, month(ts) as ts_month, "
        "day(ts) as ts_day, isodow(ts) as ts_weekday, dayofyear(ts) as ts_day_of_year, "
        "hour(ts) as ts_hour, minute(ts) as ts_minute from t",
        t=SALES,
    )
    assert_same(result, expected)


def test_date_parts_and_lookup_columns_have_one_schema(make_frame: Any) -> None:
    """Every number date part is Int64 (Polars gave Int8/16/32, pandas Float64 where a datetime
    was null) and a lookup's columns keep their types on the unmatched rows (numpy pandas gave
    float64 and object)."""
    import narwhals as nw

    config = {
        "date_parts": {"ts": ["year", "quarter", "day_of_year", "second"]},
        "lookups": [{"reference": "products", "on": "product_id", "columns": ["n", "ok"]}],
    }
    ref = make_frame({"product_id": [1], "n": [7], "ok": [True]})
    enricher = DataEnricher(name="e", config=config, references={"products": ref})
    result = nw.from_native(enricher.process(make_frame(SALES)))
    schema = dict(result.collect_schema())
    parts = ["ts_year", "ts_quarter", "ts_day_of_year", "ts_second"]
    assert {c: schema[c] for c in [*parts, "n", "ok"]} == {
        **dict.fromkeys(parts, nw.Int64()),
        "n": nw.Int64(),
        "ok": nw.Boolean(),
    }


def test_date_part_date(make_frame: Any, engine: str) -> None:
    enricher = DataEnricher(name="dd", config={"date_parts": {"ts": "date"}})
    native = make_frame(SALES)
    if engine == "pandas":
        with pytest.raises(UnsupportedOperationError, match=r"'pandas'.*'date'"):
            enricher.process(native)
        return
    result = enricher.process(native)
    assert_same(result, duck("select *, ts::date as ts_date from t", t=SALES))


def test_buckets(make_frame: Any) -> None:
    config = {
        "buckets": [
            {"column": "price", "breaks": [10, 50], "labels": ["low", "mid", "high"], "as": "band"},
            {"column": "quantity", "breaks": [2]},
        ]
    }
    native = make_frame(SALES)
    result = DataEnricher(name="b", config=config).process(native)
    assert type(result) is type(native)
    expected = duck(
        "select *, case when price < 10 then 'low' when price < 50 then 'mid' "
        "when price is not null then 'high' end as band, "
        "case when quantity < 2 then '< 2' when quantity >= 2 then '>= 2' end as quantity_bucket from t",
        t=SALES,
    )
    assert_same(result, expected)


def test_lookup_with_defaults(make_frame: Any) -> None:
    config = {
        "lookups": [
            {
                "reference": "products",
                "on": "product_id",
                "columns": ["category", "brand"],
                "defaults": {"category": "unknown", "brand": "n/a"},
            }
        ]
    }
    native = make_frame(SALES)
    enricher = DataEnricher(name="l", config=config, references={"products": make_frame(PRODUCTS)})
    result = enricher.process(native)
    assert type(result) is type(native)
    expected = duck(
        "select t.*, case when p.product_id is null then 'unknown' else p.category end as category, "
        "coalesce(p.brand, 'n/a') as brand from t left join p using (product_id)",
        t=SALES,
        p=PRODUCTS,
    )
    assert_same(result, expected)
    if (
        to_polars(native) is not None
        and not hasattr(native, "collect")
        and type(native).__name__ != "DuckDBPyRelation"
    ):
        assert enricher.get_metadata()["details"]["lookup_misses"] == {"products": 2}


def test_lookup_left_on_right_on_and_errors() -> None:
    ref = pl.DataFrame({"pid": [1, 1], "category": ["a", "b"]})
    enricher = DataEnricher(
        name="l",
        config={"lookups": [{"reference": "p", "left_on": "product_id", "right_on": "pid"}]},
    )
    with pytest.raises(ConfigError, match="no reference frame named 'p'"):
        enricher.process(pl.DataFrame(SALES))
    enricher.set_reference("p", ref)
    with pytest.raises(JoinValidationError, match="duplicate keys"):
        enricher.process(pl.DataFrame(SALES))
    enricher.set_reference("p", ref.head(1))
    out = enricher.process(pl.DataFrame(SALES))
    assert out.columns == [*SALES, "category"]
    assert out["category"].to_list() == ["a", None, None, None]


def test_empty_input(make_frame: Any) -> None:
    native = make_frame(pl.DataFrame(SALES).clear())
    result = DataEnricher(name="e", config={"derived": {"revenue": "quantity * price"}}).process(
        native
    )
    assert type(result) is type(native)
    assert to_polars(result).columns[-1] == "revenue"
    assert to_polars(result).height == 0


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"derived": ["revenue quantity * price"]}, "expected 'name = expression'"),
        ({"derived": {"x": "import os"}}, "cannot parse|unsupported"),
        ({"derived": {"x": "__import__('os')"}}, "unsupported function"),
        ({"date_parts": {"ts": ["century"]}}, "unknown date part"),
        ({"buckets": [{"column": "a", "breaks": [5, 1]}]}, "strictly increasing"),
        ({"buckets": [{"column": "a", "breaks": [5], "labels": ["x"]}]}, "give 2 labels"),
        ({"lookups": [{"reference": "p"}]}, "needs 'on'"),
    ],
)
def test_bad_config(config: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DataEnricher(name="bad", config=config)


def test_schema_hooks() -> None:
    enricher = DataEnricher(
        name="s",
        config={
            "derived": ["revenue = quantity * price", "r2 = revenue * 2"],
            "date_parts": {"ts": ["year"]},
        },
    )
    assert enricher.required_columns(list(SALES)) == ["quantity", "price", "ts"]
    assert enricher.output_columns(["ts", "quantity", "price"])[-3:] == ["revenue", "r2", "ts_year"]


# -- REST enrichment against a real local HTTP server -----------------------------------------

import json  # noqa: E402
import threading  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

CATALOG = {
    "1": {"category": "toys", "details": {"brand": "Åkë"}},
    "2": {"category": "food", "details": {}},
}


class _Handler(BaseHTTPRequestHandler):
    calls: list[str] = []
    flaky: dict[str, int] = {}

    def do_GET(self) -> None:
        _Handler.calls.append(self.path)
        key = self.path.rsplit("/", 1)[-1]
        if self.headers.get("Authorization") != "Bearer s3cret":
            self._send(401, {"error": "no token"})
        elif key == "3":  # always broken
            self._send(500, {"error": "boom"})
        elif key in CATALOG:
            if _Handler.flaky.get(key, 0) > 0:  # first call rate-limited, then fine
                _Handler.flaky[key] -= 1
                self.send_response(429)
                self.send_header("Retry-After", "0")
                self.end_headers()
                return
            self._send(200, CATALOG[key])
        else:
            self._send(404, {"error": "not found"})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def catalog_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.calls = []
    _Handler.flaky = {"2": 1}
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_rest_lookup_per_distinct_key(make_frame: Any, catalog_url: str) -> None:
    data = {"product_id": [1, 2, 1, 3, 4, None, 2], "quantity": [1, 2, 3, 4, 5, 6, 7]}
    config = {
        "rest_lookups": [
            {
                "url": catalog_url + "/products/{product_id}",
                "on": "product_id",
                "fields": {"category": "category", "brand": "details.brand"},
                "defaults": {"category": "unknown"},
                "headers": {"Authorization": "Bearer s3cret"},
                "max_concurrency": 2,
                "requests_per_second": 200,
                "retries": 1,
                "backoff": 0,
            }
        ]
    }
    enricher = DataEnricher(name="rest", config=config)
    native = make_frame(data)
    result = enricher.process(native)
    assert type(result) is type(native)
    catalog = {"product_id": [1, 2], "category": ["toys", "food"], "brand": ["Åkë", None]}
    expected = duck(
        "select t.*, case when c.product_id is null then 'unknown' else c.category end as category, c.brand "
        "from t left join c using (product_id)",
        t=data,
        c=catalog,
    )
    assert_same(result, expected)
    stats = next(iter(enricher.get_metadata()["details"]["rest_lookups"].values()))
    assert stats == {"keys": 4, "requests": 5, "cache_hits": 0, "misses": 1, "failures": 1}
    assert "s3cret" not in str(enricher.get_metadata())
    # second run: found and missed keys come from the cache, the failed one is asked again
    _Handler.calls = []
    enricher.process(make_frame(data))
    assert _Handler.calls == ["/products/3"]


def test_rest_lookup_bad_url_template() -> None:
    with pytest.raises(ConfigError, match="placeholders"):
        DataEnricher(
            name="bad",
            config={
                "rest_lookups": [
                    {"url": "http://x/{sku}", "on": "product_id", "fields": {"c": "c"}}
                ]
            },
        )
