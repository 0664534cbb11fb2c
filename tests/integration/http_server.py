"""A real HTTP server on 127.0.0.1 for the HTTP tests: routes are plain functions, requests recorded."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Route = Callable[["Handler", dict[str, str]], None]


class Recorder:
    """What the server saw: one dict per request (method, path, raw target, query, headers)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.sent: dict[str, int] = {}

    def paths(self, prefix: str = "") -> list[str]:
        return [r["path"] for r in self.requests if r["path"].startswith(prefix)]

    def text(self) -> str:
        """Everything the server received, as one text (to look for secrets in)."""
        return json.dumps(self.requests)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    routes: dict[str, Route] = {}
    recorder: Recorder

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def redirect(self, location: str, status: int = 302) -> None:
        self.send(status, b"", {"Location": location})

    def base(self) -> str:
        return f"http://{self.headers['Host']}"

    def _route(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        with self.recorder.lock:
            self.recorder.requests.append(
                {
                    "method": self.command,
                    "path": parts.path,
                    "target": self.path,
                    "query": query,
                    "headers": dict(self.headers),
                    "body": body,
                }
            )
        route = self.routes.get(parts.path)
        if route is None:
            self.send(404, {"error": "not found"})
            return
        route(self, query)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _route


@contextmanager
def serve(routes: dict[str, Route]) -> Iterator[tuple[str, Recorder]]:
    """Serve ``routes`` on a free port of 127.0.0.1; yields the base URL and the recorder."""
    recorder = Recorder()
    handler = type("RouteHandler", (Handler,), {"routes": routes, "recorder": recorder})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", recorder
    finally:
        server.shutdown()
        server.server_close()
