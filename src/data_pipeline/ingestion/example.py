"""Ingestion example: files, a SQLite database and a local REST API, through one manager.

Run it with ``python -m data_pipeline.ingestion.example``. Everything it reads is generated in a
temporary directory (and a REST server on 127.0.0.1 that lives for the duration of the example).
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from data_pipeline.ingestion import (
    DatabaseSource,
    DataIngestionManager,
    FileSystemSource,
    RESTAPISource,
)

ORDERS = [
    {
        "id": i,
        "product": ["apple", "pear", "plum"][i % 3],
        "customer": {"city": ["Oslo", "Rome"][i % 2]},
    }
    for i in range(1, 51)
]


class _Orders(BaseHTTPRequestHandler):
    """A tiny paginated JSON API: ``/orders?offset=&limit=`` -> ``{"data": [...], "total": n}``."""

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        offset, limit = int(query.get("offset", ["0"])[0]), int(query.get("limit", ["10"])[0])
        body = json.dumps({"data": ORDERS[offset : offset + limit], "total": len(ORDERS)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _write_inputs(root: Path) -> None:
    (root / "sales").mkdir()
    for month in (1, 2):
        rows = [
            f"2024-{month:02d}-{day:02d};{day * month};{'NA' if day == 3 else day * 1.5}"
            for day in range(1, 6)
        ]
        (root / "sales" / f"sales_2024_{month:02d}.csv").write_text(
            "date;quantity;price\n" + "\n".join(rows) + "\n", encoding="latin-1"
        )
    with sqlite3.connect(root / "shop.db") as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, age INTEGER)")
        conn.executemany(
            "INSERT INTO customers VALUES (?, ?, ?)",
            [(1, "Ada", 36), (2, "Linus", 28), (3, "Grace", 45)],
        )


def main() -> dict[str, Any]:
    """Ingest from three kinds of source and print what came in."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Orders)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            _write_inputs(root)
            manager = DataIngestionManager()
            manager.register_source(
                FileSystemSource(
                    name="sales",
                    config={
                        "path": str(root / "sales" / "sales_*.csv"),
                        "delimiter": ";",
                        "encoding": "latin-1",
                        "null_values": ["NA"],
                        "try_parse_dates": True,
                        "source_file_column": "source_file",
                    },
                )
            )
            manager.register_source(
                DatabaseSource(
                    name="customers",
                    config={
                        "url": f"sqlite:///{root / 'shop.db'}",
                        "query": "SELECT id, name, age FROM customers WHERE age > :min_age ORDER BY id",
                        "params": {"min_age": 30},
                    },
                )
            )
            manager.register_source(
                RESTAPISource(
                    name="orders",
                    config={
                        "url": f"http://127.0.0.1:{server.server_address[1]}/orders",
                        "data_selector": "data",
                        "pagination": {"type": "offset", "limit": 10, "total_path": "total"},
                        "max_concurrency": 4,
                    },
                )
            )
            results = manager.ingest_all()
            for name, frame in results.items():
                print(f"{name}: {frame.height} rows, columns {frame.columns}")
            print(results["orders"].group_by("customer__city").len().sort("customer__city"))
            return results
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


if __name__ == "__main__":
    main()
