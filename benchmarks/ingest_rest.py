"""ingest_rest: RESTAPISource vs a sequential httpx loop, against a local API with 20 ms latency.

The API is a stdlib ``ThreadingHTTPServer`` (HTTP/1.1 keep-alive, one thread per connection)
that the benchmark starts in a separate process on 127.0.0.1 and a free port. It serves
``GET /orders?offset=O&limit=L`` as ``{"total": N, "offset": O, "limit": L, "data": [...]}``:
sales records with a nested ``customer`` object, 1,000 records a page, 500 pages by default
(``--rows`` is the total number of records). Each request sleeps 20 ms before it answers.

Each measured variant runs in its own process, so ``prepare()`` starts one server per process
(outside the timed part). The server stops by itself when the process that started it exits (it
polls its parent) and after 15 minutes at the latest; it only listens on 127.0.0.1.

- ``ours``: ``RESTAPISource`` with offset pagination, ``total_path`` (so the pages are known
  after the first one and fetched concurrently, ``max_concurrency: 16``), nested objects
  flattened into ``customer__age`` columns (the default).
- ``httpx_sequential``: one ``httpx.Client``, the pages fetched one after the other, each page's
  JSON decoded with ``response.json()``, the records gathered and turned into one polars frame at
  the end (the nested object unnested the same way).

Target: ours at least 5x faster (time ratio <= 0.2). Each variant also writes its own time to
a side file (``benchmarks/.data/ingest_rest_times.json``, reset at the start of a run), so
``check`` prints records/s of the best run of each variant of the table above; it then reads
once more with both in this process and tells whether the two frames are equal.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import time
from typing import Any

from benchmarks.harness import ROOT, Benchmark

PAGE_SIZE = 1_000
LATENCY = 0.020
CONCURRENCY = 16
MAX_LIFETIME = 900.0

_servers: dict[int, tuple[subprocess.Popen[str], str]] = {}


def prepare(rows: int) -> dict[str, Any]:
    """Start (once per process) the local API serving ``rows`` records; return its URL.

    The libraries both variants use are imported here, outside the timed part.
    """
    import httpx  # noqa: F401
    import polars  # noqa: F401

    import data_pipeline.ingestion  # noqa: F401

    if rows not in _servers:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.ingest_rest",
                "--serve",
                str(rows),
                str(os.getpid()),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()  # the port, once the pages are built
        if not line.isdigit():
            proc.kill()
            raise SystemExit(f"the benchmark API did not start: {line!r}")
        atexit.register(_stop, proc)
        _servers[rows] = (proc, f"http://127.0.0.1:{line}/orders")
    return {"url": _servers[rows][1], "rows": rows}


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()


def ours(params: dict[str, Any]) -> Any:
    from data_pipeline.ingestion import RESTAPISource

    source = RESTAPISource(
        name="orders",
        config={
            "url": params["url"],
            "data_selector": "data",
            "pagination": {"type": "offset", "limit": PAGE_SIZE, "total_path": "total"},
            "max_concurrency": CONCURRENCY,
        },
    )
    frame = source.ingest()
    assert frame.height == params["rows"], frame.height
    return frame


def baseline(params: dict[str, Any]) -> Any:
    import httpx
    import polars as pl

    records: list[dict[str, Any]] = []
    with httpx.Client(timeout=30) as client:
        offset = 0
        while True:
            response = client.get(params["url"], params={"offset": offset, "limit": PAGE_SIZE})
            response.raise_for_status()
            page = response.json()["data"]
            if not page:
                break
            records.extend(page)
            offset += PAGE_SIZE
            if len(page) < PAGE_SIZE:
                break
    frame = pl.DataFrame(records, infer_schema_length=None).unnest("customer", separator="__")
    assert frame.height == params["rows"], frame.height
    return frame


def check(params: dict[str, Any]) -> str:
    """Records/s of the best run of each variant above; whether the two frames agree."""
    lines = []
    times = params.get("measured", {})
    for label in ("ours", "httpx_sequential"):
        if times.get(label):
            best = min(times[label])
            lines.append(
                f"{label}: {params['rows'] / best:,.0f} records/s (best run, {best:.3f} s)"
            )
    a, b = ours(params), baseline(params)
    same = a.columns == b.columns and a.equals(b.select(a.columns).cast(a.schema))  # type: ignore[arg-type]
    lines.append(f"frames equal: {same} ({a.height:,} rows x {a.width} columns)")
    return "\n".join(lines)


# -- the local API (run as ``python -m benchmarks.ingest_rest --serve ROWS PARENT_PID``) -------


def _pages(rows: int) -> list[bytes]:
    """The JSON body of each page: sales records with a nested customer object."""
    import polars as pl
    from examples.sales.generate import generate

    df = generate(rows).select(
        "order_id",
        pl.col("date").cast(pl.String),
        "product_id",
        "product",
        "category",
        "region",
        "quantity",
        "price",
        "revenue",
        pl.struct("age", "income", "education").alias("customer"),
    )
    bodies = []
    for offset in range(0, rows, PAGE_SIZE):
        data = df.slice(offset, PAGE_SIZE).write_json().encode()
        head = f'{{"total": {rows}, "offset": {offset}, "limit": {PAGE_SIZE}, "data": '.encode()
        bodies.append(head + data + b"}")
    return bodies


def serve(rows: int, parent: int) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    pages = _pages(rows)
    empty = f'{{"total": {rows}, "data": []}}'.encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            offset = int(query.get("offset", ["0"])[0])
            index = offset // PAGE_SIZE
            body = pages[index] if offset % PAGE_SIZE == 0 and 0 <= index < len(pages) else empty
            time.sleep(LATENCY)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 128
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)

    def watchdog() -> None:
        deadline = time.monotonic() + MAX_LIFETIME
        while time.monotonic() < deadline and os.getppid() == parent:
            time.sleep(0.2)
        server.shutdown()

    threading.Thread(target=watchdog, daemon=True).start()
    print(server.server_address[1], flush=True)
    server.serve_forever(poll_interval=0.1)
    server.server_close()


BENCHMARK = Benchmark(
    name="ingest_rest",
    description="local JSON API, 20 ms/page, 1,000 records/page (RESTAPISource vs sequential httpx loop)",
    variants={
        "ours": ours,
        "httpx_sequential": baseline,
    },
    prepare=prepare,
    baseline="httpx_sequential",
    targets={"ours": {"time": 0.2}},
    check=check,
    default_rows=500_000,
)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]), int(sys.argv[3]))
