"""Every Python block in docs/ingestion.md runs, on local data and a local HTTP server.

``https://api.example.com`` is replaced by a server on 127.0.0.1; the Redis block runs against
the local Redis with a unique stream name (skipped when Redis is not running).
"""

from __future__ import annotations

import gzip
import json
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import require_service

DOC = Path(__file__).resolve().parents[3] / "docs" / "ingestion.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
ORDERS = [{"id": i, "customer": {"city": "Oslo"}} for i in range(1, 251)]


class _Api(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.headers.get("Authorization") != "Bearer YOUR_API_KEY":
            body, status = b'{"error": "unauthorized"}', 401
        else:
            q = parse_qs(urlsplit(self.path).query)
            offset, limit = int(q.get("offset", ["0"])[0]), int(q.get("limit", ["100"])[0])
            page = ORDERS[offset : offset + limit]
            body, status = json.dumps({"data": page, "meta": {"total": len(ORDERS)}}).encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "sales_2024.csv").write_text("date,amount\n2024-01-01,3\n")
    rows = "zip;amount;city\n01234;12.50;Zürich\n99999;NA;Köln\n55555;oops;Bad row\n"
    (data / "sales_2024.csv.gz").write_bytes(gzip.compress(rows.encode("latin-1")))
    with sqlite3.connect(data / "app.db") as conn:
        conn.execute("CREATE TABLE orders (id INTEGER, customer_id INTEGER, amount REAL)")
        conn.execute("INSERT INTO orders VALUES (1, 1, 5.0), (2, 1, 0.0)")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_doc_blocks_run(api: str, workdir: Path) -> None:
    require_service("Redis", "127.0.0.1", 6379)
    import redis

    stream = f"dp-docs-{uuid.uuid4().hex[:8]}"
    client = redis.Redis(host="127.0.0.1", port=6379, decode_responses=True)
    client.xadd(stream, {"user": "u1", "payload": json.dumps({"kind": "click"})})
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    try:
        for code in BLOCKS:
            code = code.replace("https://api.example.com", api)
            code = code.replace('"stream": "events"', f'"stream": "{stream}"').replace(
                '"timeout": 5,', '"timeout": 0.1,'
            )
            exec(compile(code, str(DOC), "exec"), namespace)
    finally:
        client.delete(stream)
        client.close()
    assert namespace["orders"].height == 250
    assert namespace["orders"].columns == ["id", "customer__city"]
    assert namespace["batch"]["payload__kind"].to_list() == ["click"]
    frame = namespace["frame"].collect()
    assert frame["city"].to_list() == ["Zürich", "Köln"]
    assert (workdir / "rejects" / "sales.csv").exists()
