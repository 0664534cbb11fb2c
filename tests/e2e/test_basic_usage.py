"""The spec's Basic Usage, as written, against a real local HTTP server and the local PostgreSQL.

Only the addresses change (the REST URL points at a server this test starts on 127.0.0.1, the
database at the local PostgreSQL) and the chart's ``y`` (the spec charts ``sales``, a column its own
aggregation does not produce; that case is checked separately). The numbers are checked against an
independent DuckDB SQL computation of the same steps.
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from tests.conftest import require_service

API_KEY = "YOUR_API_KEY"


def records(n: int = 400) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        out.append(
            {
                "date": f"2024-01-{1 + i % 7:02d}",
                "product_id": f"P{i % 3}",
                "quantity": 1 + (i * 7) % 5,
                "price": None if i % 11 == 0 else round(10 + (i * 13) % 17 * 0.5, 2),
                "revenue": round((1 + (i * 7) % 5) * (10 + (i * 13) % 17 * 0.5), 2),
                "age": None if i % 5 == 0 else 20 + (i * 3) % 50,
                "income": None if i % 6 == 0 else 30000.0 + (i * 977) % 40000,
                "education": None
                if i % 9 == 0
                else ["bachelor", "master", "bachelor", "phd"][i % 4],
            }
        )
    return out


@pytest.fixture
def api() -> Iterator[str]:
    body = json.dumps(records()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                self.send_response(401)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/data"
    server.shutdown()
    server.server_close()


def test_basic_usage_as_written(api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    monkeypatch.chdir(tmp_path)
    table = f"customers_{uuid.uuid4().hex[:8]}"

    # ---- the spec's Basic Usage, verbatim but for addresses and the chart's y ----
    from data_pipeline.ingestion import DataIngestionManager, RESTAPISource
    from data_pipeline.processing import DataAggregator, ProcessingManager
    from data_pipeline.storage import RelationalDBStorage, StorageManager
    from data_pipeline.transformation import MissingValueHandler, TransformationManager
    from data_pipeline.visualization import DashboardManager, LineChart

    ingestion_manager = DataIngestionManager()
    transformation_manager = TransformationManager()
    storage_manager = StorageManager()
    processing_manager = ProcessingManager()
    dashboard_manager = DashboardManager()

    rest_api_source = RESTAPISource(
        name="api_source",
        config={
            "url": api,
            "method": "GET",
            "headers": {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        },
    )
    ingestion_manager.register_source(rest_api_source)
    data = ingestion_manager.ingest("api_source")

    pipeline = transformation_manager.create_pipeline("transform_pipeline")
    pipeline.add_transformer(
        MissingValueHandler(
            name="handle_missing_values",
            config={"strategy": "fill", "columns": ["age", "income", "education"]},
        )
    )
    transformed_data = transformation_manager.transform(data, "transform_pipeline")

    db_storage = RelationalDBStorage(
        name="customer_db",
        config={
            "db_type": "postgresql",
            "host": "127.0.0.1",
            "port": 5432,
            "database": "test",
            "username": "postgres",
            "password": "pass",
            "default_table": table,
        },
    )
    storage_manager.register_storage_system(db_storage)
    storage_manager.store_data(transformed_data, "customer_db")

    process_pipeline = processing_manager.create_pipeline("process_pipeline")
    process_pipeline.add_processor(
        DataAggregator(
            name="aggregate_data",
            config={
                "group_by": ["date", "product_id"],
                "aggregations": {"quantity": "sum", "price": "mean", "revenue": "sum"},
            },
        )
    )
    processed_data = processing_manager.process(transformed_data, "process_pipeline")

    dashboard = dashboard_manager.create_dashboard("sales_dashboard")
    dashboard.add_visualization(
        LineChart(
            name="sales_chart", config={"x": "date", "y": "revenue", "title": "Sales Over Time"}
        )
    )
    dashboard_spec = dashboard_manager.render_dashboard(
        "sales_dashboard", {"sales_chart": processed_data}
    )
    dashboard.save_html("sales_dashboard.html", {"sales_chart": processed_data})
    # ---- end of the spec's example ----

    # the oracle: the same steps in DuckDB SQL over the raw records
    raw = pl.DataFrame(records())  # noqa: F841 - read by DuckDB's replacement scan
    con = duckdb.connect()
    filled = con.sql(
        """
        select date, product_id, quantity, price, revenue,
               coalesce(age, median(age) over ()) as age,
               coalesce(income, median(income) over ()) as income,
               coalesce(education, mode(education) over ()) as education
        from raw
        """
    )
    expected = pl.from_arrow(
        con.sql(
            "select date, product_id, sum(quantity) as quantity, avg(price) as price, "
            "sum(revenue) as revenue from filled group by all order by date, product_id"
        ).arrow()
    )
    expected_filled = pl.from_arrow(filled.arrow())

    assert isinstance(data, pl.DataFrame) and data.height == 400
    assert (
        transformed_data.select(pl.col("age", "income", "education").null_count())
        .sum_horizontal()
        .item()
        == 0
    )
    assert sorted(transformed_data["age"].to_list()) == sorted(expected_filled["age"].to_list())
    assert sorted(transformed_data["education"].to_list()) == sorted(
        expected_filled["education"].to_list()
    )

    got = processed_data.sort("date", "product_id")
    assert got["quantity"].to_list() == expected["quantity"].to_list()
    for column in ("price", "revenue"):
        for a, b in zip(got[column].to_list(), expected[column].to_list(), strict=True):
            assert math.isclose(a, b, rel_tol=1e-9), column

    stored = storage_manager.retrieve_data("customer_db", table)
    assert stored.height == 400
    assert (
        stored.select(pl.col("age", "income", "education").null_count()).sum_horizontal().item()
        == 0
    )

    assert dashboard_spec["name"] == "sales_dashboard"
    (chart,) = dashboard_spec["visualizations"]
    assert chart["name"] == "sales_chart" and chart["spec"]["encoding"]["y"]["field"] == "revenue"
    html = (tmp_path / "sales_dashboard.html").read_text(encoding="utf-8")
    assert "Sales Over Time" in html and "<script src=" not in html

    # no secret in metadata
    for component in (rest_api_source, db_storage):
        text = json.dumps(component.get_metadata(), default=str)
        assert API_KEY not in text and '"pass"' not in text

    db_storage.store(pl.DataFrame({"x": [1]}), f"{table}_drop", if_exists="replace")
    import psycopg

    with psycopg.connect(
        "host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True
    ) as conn:
        conn.execute(f'drop table if exists "{table}", "{table}_drop"')


def test_spec_chart_of_a_column_the_aggregation_does_not_make_names_it() -> None:
    from data_pipeline.core.errors import ChartRenderingError
    from data_pipeline.visualization import DashboardManager, LineChart

    manager = DashboardManager()
    dashboard = manager.create_dashboard("sales_dashboard")
    dashboard.add_visualization(
        LineChart(
            name="sales_chart", config={"x": "date", "y": "sales", "title": "Sales Over Time"}
        )
    )
    processed = pl.DataFrame({"date": ["2024-01-01"], "product_id": ["P1"], "revenue": [1.0]})
    with pytest.raises(ChartRenderingError) as info:
        manager.render_dashboard("sales_dashboard", {"sales_chart": processed})
    assert "'sales'" in str(info.value) and "'revenue'" in str(info.value)
