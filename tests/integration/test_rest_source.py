"""RESTAPISource against a real HTTP server on 127.0.0.1, started by the test (no mocks)."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import polars as pl
import pytest

from data_pipeline.core.errors import (
    ConfigError,
    IngestionAuthenticationError,
    IngestionConnectionError,
    IngestionError,
    IngestionTimeoutError,
    ParseError,
)
from data_pipeline.ingestion.rest import RESTAPISource, parse_retry_after
from tests.integration.http_server import Handler as HttpHandler

TOKEN = "s3cr3t-token-value"
API_KEY = "k3y-abcdef-123456"
ITEMS = [
    {
        "id": i,
        "name": f"item{i}",
        "customer": {"city": ["Oslo", "Rome", "Lima"][i % 3], "geo": {"lat": i / 10}},
        "tags": [f"t{i}"] * (i % 2),
    }
    for i in range(1, 26)
]


class Api:
    """The state of the test server: requests seen, counters, events for incremental reads."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.counters: dict[str, int] = {}
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def count(self, key: str) -> int:
        with self.lock:
            self.counters[key] = self.counters.get(key, 0) + 1
            return self.counters[key]

    def paths(self, prefix: str) -> list[str]:
        return [r["path"] for r in self.requests if r["path"].startswith(prefix)]


def _handler(api: Api) -> type[BaseHTTPRequestHandler]:
    class Handler(HttpHandler):  # send() and quiet logs from the shared test server
        def do_GET(self) -> None:
            self.route()

        def do_POST(self) -> None:
            self.route()

        def route(self) -> None:
            parts = urlsplit(self.path)
            q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw_body = self.rfile.read(length) if length else b""
            body = (
                json.loads(raw_body)
                if raw_body and "json" in self.headers.get("Content-Type", "")
                else None
            )
            with api.lock:
                api.requests.append(
                    {
                        "path": parts.path,
                        "query": q,
                        "headers": dict(self.headers),
                        "body": body,
                        "method": self.command,
                    }
                )
            path = parts.path
            if path == "/array":
                self.send(200, ITEMS[:3])
            elif path == "/mixed":  # issue 14: one key, an object here and a number there
                self.send(200, [{"a": 1, "k": 1}, {"a": {"b": 2}, "k": 2}])
            elif path == "/mixed-bool":  # polars' read_json made the boolean a 1
                self.send(200, {"data": [{"a": True}, {"a": 5}]})
            elif path == "/empty":
                self.send(200, [])
            elif path == "/wrapped":
                self.send(200, {"meta": {"n": 3}, "results": ITEMS[:3]})
            elif path == "/deep":
                self.send(200, {"payload": {"rows": ITEMS[:2]}})
            elif path == "/echo":
                self.send(
                    200, [{"method": self.command, "body": json.dumps(body), "q": json.dumps(q)}]
                )
            elif path == "/offset":  # {"data": [...], "meta": {"total": N}}
                off, lim = int(q.get("offset", 0)), int(q.get("limit", 10))
                page = ITEMS[off : off + lim]
                payload: dict[str, Any] = {"data": page}
                if q.get("with_total") == "1":
                    payload["meta"] = {"total": len(ITEMS)}
                time.sleep(0.01)
                self.send(200, payload)
            elif path == "/page":
                page, size = int(q.get("page", 1)), int(q.get("per_page", 10))
                rows = ITEMS[(page - 1) * size : page * size]
                self.send(200, {"items": rows, "has_more": page * size < len(ITEMS)})
            elif path == "/cursor":
                cursor = (body or {}).get("cursor") if self.command == "POST" else q.get("cursor")
                start = int(cursor or 0)
                rows = ITEMS[start : start + 10]
                nxt = start + 10 if start + 10 < len(ITEMS) else None
                self.send(
                    200, {"records": rows, "paging": {"next": None if nxt is None else str(nxt)}}
                )
            elif path == "/next":
                page = int(q.get("p", 1))
                rows = ITEMS[(page - 1) * 10 : page * 10]
                nxt = f"/next?p={page + 1}" if page * 10 < len(ITEMS) else None
                self.send(200, {"results": rows, "next": nxt})
            elif path == "/link":
                page = int(q.get("p", 1))
                rows = ITEMS[(page - 1) * 10 : page * 10]
                host = self.headers["Host"]
                links = [f'<http://{host}/link?p=1>; rel="first"']
                if page * 10 < len(ITEMS):
                    links.append(f'<http://{host}/link?p={page + 1}>; rel="next"')
                self.send(200, rows, {"Link": ", ".join(links)})
            elif path == "/bearer":
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self.send(401, {"error": "bad token"})
                else:
                    self.send(200, [{"ok": 1}])
            elif path == "/basic":
                want = "Basic " + base64.b64encode(f"alice:{TOKEN}".encode()).decode()
                self.send(200 if self.headers.get("Authorization") == want else 401, [{"ok": 1}])
            elif path == "/apikey-header":
                self.send(200 if self.headers.get("X-API-Key") == API_KEY else 403, [{"ok": 1}])
            elif path == "/apikey-query":
                self.send(200 if q.get("api_key") == API_KEY else 403, [{"ok": 1}])
            elif path == "/token":
                auth = self.headers.get("Authorization", "")
                want = "Basic " + base64.b64encode(f"client:{TOKEN}".encode()).decode()
                if auth != want:
                    self.send(401, {"error": "invalid_client"})
                else:
                    n = api.count("token")
                    self.send(200, {"access_token": f"issued-token-{n:04d}", "expires_in": 3600})
            elif path == "/oauth-data":
                if self.headers.get("Authorization", "").startswith("Bearer issued-token-"):
                    self.send(200, [{"ok": 1}])
                else:
                    self.send(401, {"error": "no token"})
            elif path == "/oauth-strict":  # only tokens issued after the first are valid
                token = self.headers.get("Authorization", "")
                ok = token.startswith("Bearer issued-token-") and int(token[-4:]) >= 2
                self.send(200 if ok else 401, [{"ok": 1}] if ok else {"error": "expired"})
            elif path == "/retry-later":
                self.send(503, {"error": "maintenance"}, {"Retry-After": "3600"})
            elif path == "/flaky500":
                n = api.count("flaky500")
                self.send(500 if n <= 2 else 200, {"error": "boom"} if n <= 2 else [{"ok": n}])
            elif path == "/ratelimited":
                n = api.count("ratelimited")
                if n == 1:
                    self.send(429, {"error": "slow down"}, {"Retry-After": "1"})
                elif n == 2:
                    when = datetime.now(timezone.utc) + timedelta(seconds=1)
                    self.send(
                        429,
                        {"error": "slow down"},
                        {"Retry-After": format_datetime(when, usegmt=True)},
                    )
                else:
                    self.send(200, [{"ok": n}])
            elif path == "/always503":
                self.send(503, {"error": "down"})
            elif path == "/slow":
                time.sleep(0.5)
                self.send(200, [{"ok": 1}])
            elif path == "/missing":
                self.send(404, b"<html>Not Found: no such resource</html>")
            elif path == "/badjson":
                self.send(200, b'[{"a": 1},\n {"a": }]')
            elif path == "/html":
                self.send(200, b"<!doctype html><html><body>Login</body></html>")
            elif path == "/events":
                since = q.get("since")
                rows = [e for e in api.events if since is None or e["updated_at"] >= since]
                self.send(200, {"data": sorted(rows, key=lambda e: e["updated_at"])})
            else:
                self.send(404, {"error": f"no route {path}"})

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Api]]:
    api = Api()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    httpd.daemon_threads = True
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", api
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def rest(config: dict[str, Any], name: str = "api") -> RESTAPISource:
    config.setdefault("retry", {"backoff_factor": 0.01})
    return RESTAPISource(name=name, config=config)


# -- records ------------------------------------------------------------------------------


def test_array_flattened_lists_kept(server: tuple[str, Api]) -> None:
    url, _ = server
    out = rest({"url": f"{url}/array"}).ingest()
    assert out.columns == ["id", "name", "customer__city", "customer__geo__lat", "tags"]
    assert out["customer__city"].to_list() == ["Rome", "Lima", "Oslo"]
    assert out["tags"].to_list() == [["t1"], [], ["t3"]]


def test_no_flatten_keeps_structs(server: tuple[str, Api]) -> None:
    url, _ = server
    out = rest({"url": f"{url}/array", "flatten": False}).ingest()
    assert isinstance(out.schema["customer"], pl.Struct)


def test_selector_and_auto_detection(server: tuple[str, Api]) -> None:
    url, _ = server
    assert rest({"url": f"{url}/wrapped"}).ingest()["id"].to_list() == [1, 2, 3]
    assert rest({"url": f"{url}/deep", "data_selector": "payload.rows"}).ingest().height == 2
    with pytest.raises(IngestionError, match=r"data_selector 'payload.nope'.*\n.*'payload'"):
        rest({"url": f"{url}/deep", "data_selector": "payload.nope"}).ingest()


@pytest.mark.parametrize(
    ("route", "flag"),
    [("mixed", "an object in record 2"), ("mixed-bool", "a number in record 2 but a boolean")],
)
def test_page_with_mixed_kinds_fails_naming_url_record_and_key(
    server: tuple[str, Api], route: str, flag: str
) -> None:
    """The first record's value used to become null silently (issue 14)."""
    url, _ = server
    with pytest.raises(ParseError, match=rf"GET {url}/{route}: key 'a' holds {flag}"):
        rest({"url": f"{url}/{route}"}).ingest()
    out = rest({"url": f"{url}/{route}", "mixed_types": "json"}).ingest()
    assert out["a"].to_list() == (["1", '{"b": 2}'] if route == "mixed" else ["true", "5"])


def test_empty_result(server: tuple[str, Api]) -> None:
    url, _ = server
    src = rest({"url": f"{url}/empty"})
    out = src.ingest()
    assert out.shape == (0, 0)
    assert src.get_metadata()["rows_out"] == 0


@pytest.mark.parametrize("output", ["pandas", "arrow", "lazy"])
def test_outputs(server: tuple[str, Api], output: str) -> None:
    url, _ = server
    out = rest({"url": f"{url}/array", "output": output}).ingest()
    assert (
        type(out).__module__.split(".")[0]
        == {"pandas": "pandas", "arrow": "pyarrow", "lazy": "polars"}[output]
    )


def test_post_json_body_params_and_headers(server: tuple[str, Api]) -> None:
    url, api = server
    out = rest(
        {
            "url": f"{url}/echo",
            "method": "post",
            "json": {"filter": {"status": "open"}},
            "params": {"limit": 5},
            "headers": {"X-Trace": "abc"},
        }
    ).ingest()
    assert json.loads(out["body"][0]) == {"filter": {"status": "open"}}
    assert json.loads(out["q"][0]) == {"limit": "5"}
    assert api.requests[-1]["headers"]["X-Trace"] == "abc"


def test_spec_config_runs(server: tuple[str, Api]) -> None:
    from data_pipeline.ingestion.config import rest_api_config

    config = {**rest_api_config, "url": f"{url_of(server)}/array"}
    out = RESTAPISource(name="spec", config=config).ingest()
    assert out.height == 3


def url_of(server: tuple[str, Api]) -> str:
    return server[0]


# -- auth and secrets ---------------------------------------------------------------------


def test_bearer_auth_and_header_secret(
    server: tuple[str, Api], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = server
    assert (
        rest({"url": f"{url}/bearer", "auth": {"type": "bearer", "token": TOKEN}}).ingest().height
        == 1
    )
    src = rest({"url": f"{url}/bearer", "headers": {"Authorization": f"Bearer {TOKEN}"}})
    assert src.ingest().height == 1
    assert TOKEN not in json.dumps(src.get_metadata())
    assert TOKEN not in repr(src)


def test_wrong_token_is_auth_error_without_secret(
    server: tuple[str, Api], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = server
    caplog.set_level(logging.DEBUG, logger="data_pipeline")
    wrong = "wrong-token-0123456789"
    src = rest({"url": f"{url}/bearer?x=1", "headers": {"Authorization": f"Bearer {wrong}"}})
    with pytest.raises(
        IngestionAuthenticationError, match=r"GET .*/bearer\?x=1 returned HTTP 401"
    ) as info:
        src.ingest()
    for text in (str(info.value), caplog.text, json.dumps(src.get_metadata())):
        assert wrong not in text
    assert "bad token" in str(info.value)  # start of the body


def test_basic_and_api_key_auth(server: tuple[str, Api], caplog: pytest.LogCaptureFixture) -> None:
    url, api = server
    caplog.set_level(logging.DEBUG, logger="data_pipeline")
    basic = {"type": "basic", "username": "alice", "password": TOKEN}
    assert rest({"url": f"{url}/basic", "auth": basic}).ingest().height == 1
    header = {"type": "api_key", "key": API_KEY}
    assert rest({"url": f"{url}/apikey-header", "auth": header}).ingest().height == 1
    query = {"type": "api_key", "key": API_KEY, "name": "api_key", "in": "query"}
    src = rest({"url": f"{url}/apikey-query", "auth": query})
    assert src.ingest().height == 1
    assert api.requests[-1]["query"]["api_key"] == API_KEY
    bad = rest({"url": f"{url}/apikey-query", "auth": {**query, "key": "nope-nope-nope"}})
    with pytest.raises(IngestionAuthenticationError, match="403") as info:
        bad.ingest()
    assert "nope-nope-nope" not in str(info.value)
    for text in (caplog.text, json.dumps(src.get_metadata()), json.dumps(bad.get_metadata())):
        assert API_KEY not in text and TOKEN not in text


def test_oauth2_client_credentials(server: tuple[str, Api]) -> None:
    url, api = server
    auth = {
        "type": "oauth2_client_credentials",
        "endpoint": f"{url}/token",
        "client_id": "client",
        "client_secret": TOKEN,
    }
    src = rest({"url": f"{url}/oauth-data", "auth": auth})
    assert src.ingest().height == 1
    assert src.ingest().height == 1
    assert api.counters["token"] == 1  # the token is reused until it expires
    assert TOKEN not in json.dumps(src.get_metadata())


# -- faults -------------------------------------------------------------------------------


def test_500_then_success(server: tuple[str, Api]) -> None:
    url, api = server
    src = rest({"url": f"{url}/flaky500"})
    assert src.ingest()["ok"].to_list() == [3]
    assert api.counters["flaky500"] == 3
    assert src.get_metadata()["details"]["retries"] == 2


def test_429_honours_retry_after_seconds_and_http_date(server: tuple[str, Api]) -> None:
    url, _ = server
    start = time.monotonic()
    out = rest({"url": f"{url}/ratelimited"}).ingest()
    elapsed = time.monotonic() - start
    assert out["ok"].to_list() == [3]
    assert (
        elapsed >= 1.0
    )  # waited at least the first Retry-After (1 s); the date one may round to 0


def test_parse_retry_after() -> None:
    assert parse_retry_after("5") == 5.0
    future = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (parse_retry_after(future) or 0) <= 31
    assert parse_retry_after("garbage") is None


def test_retries_exhausted(server: tuple[str, Api]) -> None:
    url, api = server
    src = rest({"url": f"{url}/always503", "retry": {"max_attempts": 3, "backoff_factor": 0.01}})
    with pytest.raises(IngestionError, match="HTTP 503") as info:
        src.ingest()
    assert info.value.transient
    assert len(api.paths("/always503")) == 3


def test_4xx_fails_at_once(server: tuple[str, Api]) -> None:
    url, api = server
    with pytest.raises(
        IngestionError, match=r"GET http://127\.0\.0\.1:\d+/missing returned HTTP 404.*Not Found"
    ):
        rest({"url": f"{url}/missing"}).ingest()
    assert len(api.paths("/missing")) == 1


def test_timeout(server: tuple[str, Api]) -> None:
    url, _ = server
    src = rest(
        {"url": f"{url}/slow", "timeout": 0.1, "retry": {"max_attempts": 2, "backoff_factor": 0.01}}
    )
    with pytest.raises(IngestionTimeoutError, match=r"/slow timed out after 2 attempt"):
        src.ingest()
    assert src.get_metadata()["status"] == "failed"


def test_connection_refused() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = rest(
        {"url": f"http://127.0.0.1:{port}/x", "retry": {"max_attempts": 2, "backoff_factor": 0.01}}
    )
    with pytest.raises(IngestionConnectionError, match=f"127.0.0.1:{port}/x could not connect"):
        src.ingest()


def test_malformed_json_and_html(server: tuple[str, Api]) -> None:
    url, _ = server
    with pytest.raises(ParseError, match=r"/badjson: body is not valid JSON at line 2, column 8"):
        rest({"url": f"{url}/badjson"}).ingest()
    with pytest.raises(
        ParseError, match=r"/html: body is not valid JSON at line 1, column 1.*doctype"
    ):
        rest({"url": f"{url}/html"}).ingest()


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="url"):
        RESTAPISource(name="x", config={"url": "ftp://x"})
    with pytest.raises(ConfigError, match=r"auth.*bearer"):
        RESTAPISource(name="x", config={"url": "http://x", "auth": {"type": "magic"}})
    with pytest.raises(ConfigError, match="cursor_path"):
        RESTAPISource(name="x", config={"url": "http://x", "pagination": {"type": "cursor"}})
    with pytest.raises(ConfigError, match=r"config\.auth\.token.*\(got \*\*\*\)|auth"):
        RESTAPISource(name="x", config={"url": "http://x", "auth": {"type": "bearer", "token": 5}})


# -- pagination ---------------------------------------------------------------------------


def test_offset_with_total_concurrent_in_order(server: tuple[str, Api]) -> None:
    url, api = server
    src = rest(
        {
            "url": f"{url}/offset",
            "params": {"with_total": 1},
            "data_selector": "data",
            "pagination": {"type": "offset", "limit": 4, "total_path": "meta.total"},
            "max_concurrency": 4,
        }
    )
    out = src.ingest()
    assert out["id"].to_list() == list(range(1, 26))
    assert len(api.paths("/offset")) == 7
    assert src.get_metadata()["details"]["pages"] == 7


def test_offset_until_empty_page(server: tuple[str, Api]) -> None:
    url, api = server
    src = rest(
        {
            "url": f"{url}/offset",
            "params": {"limit": 10, "offset": 0},
            "pagination": {"type": "offset"},
        }
    )
    assert src.ingest()["id"].to_list() == list(range(1, 26))
    assert len(api.paths("/offset")) == 4  # 10, 10, 5, then an empty page


@pytest.mark.parametrize("first", ["start", "params"])
def test_offset_with_total_from_a_later_first_offset(server: tuple[str, Api], first: str) -> None:
    """The announced total counts from offset 0: starting at 10 of 25 reads the 15 left
    (it read one page and failed as incomplete when the total was taken as counted from start)."""
    url, api = server
    pagination: dict[str, Any] = {"type": "offset", "limit": 4, "total_path": "meta.total"}
    params: dict[str, Any] = {"with_total": 1}
    if first == "start":
        pagination["start"] = 10
    else:
        params["offset"] = 10
    src = rest(
        {
            "url": f"{url}/offset",
            "params": params,
            "data_selector": "data",
            "pagination": pagination,
            "max_concurrency": 2,
        }
    )
    oracle = [item["id"] for item in ITEMS[10:]]
    assert src.ingest()["id"].to_list() == oracle
    assert "incomplete" not in src.get_metadata()["details"]
    offsets = sorted(int(r["query"]["offset"]) for r in api.requests if r["path"] == "/offset")
    assert offsets == list(range(10, len(ITEMS), 4))  # 10, 14, 18, 22: no page twice, none past


def test_max_pages_reached_is_an_error_or_a_warning(server: tuple[str, Api]) -> None:
    url, _ = server
    config = {"url": f"{url}/offset", "pagination": {"type": "offset", "limit": 5}, "max_pages": 2}
    with pytest.raises(IngestionError, match=r"max_pages \(2\) reached and the API has more"):
        rest(config).ingest()
    src = rest({**config, "on_incomplete": "warn"})
    assert src.ingest()["id"].to_list() == list(range(1, 11))
    assert "max_pages (2) reached" in src.get_metadata()["details"]["incomplete"]
    # the last page within max_pages: complete, no warning
    done = rest({**config, "max_pages": 6})
    assert done.ingest().height == len(ITEMS)
    assert "incomplete" not in done.get_metadata()["details"]


def test_page_number_has_more(server: tuple[str, Api]) -> None:
    url, api = server
    src = rest(
        {
            "url": f"{url}/page",
            "pagination": {
                "type": "page",
                "limit": 10,
                "page_size_param": "per_page",
                "has_more_path": "has_more",
            },
        }
    )
    assert src.ingest()["id"].to_list() == list(range(1, 26))
    assert [r["query"]["page"] for r in api.requests] == ["1", "2", "3"]


def test_cursor_in_params_and_in_post_body(server: tuple[str, Api]) -> None:
    url, api = server
    pag = {"type": "cursor", "cursor_path": "paging.next"}
    assert rest({"url": f"{url}/cursor", "pagination": pag}).ingest()["id"].to_list() == list(
        range(1, 26)
    )
    out = rest(
        {
            "url": f"{url}/cursor",
            "method": "POST",
            "json": {},
            "pagination": {**pag, "cursor_in": "body"},
        }
    ).ingest()
    assert out["id"].to_list() == list(range(1, 26))
    assert [r["body"] for r in api.requests if r["method"] == "POST"] == [
        {},
        {"cursor": "10"},
        {"cursor": "20"},
    ]


def test_next_url_in_body(server: tuple[str, Api]) -> None:
    url, _ = server
    src = rest({"url": f"{url}/next", "pagination": {"type": "next_url"}})
    assert src.ingest()["id"].to_list() == list(range(1, 26))


def test_link_header(server: tuple[str, Api]) -> None:
    url, api = server
    src = rest({"url": f"{url}/link", "pagination": {"type": "link_header"}})
    assert src.ingest()["id"].to_list() == list(range(1, 26))
    assert len(api.paths("/link")) == 3


def test_params_list_concurrent_order(server: tuple[str, Api]) -> None:
    url, _ = server
    src = rest(
        {
            "url": f"{url}/offset",
            "data_selector": "data",
            "params_list": [{"offset": o, "limit": 5} for o in (20, 0, 10)],
            "max_concurrency": 3,
        }
    )
    assert src.ingest()["id"].to_list() == [21, 22, 23, 24, 25, 1, 2, 3, 4, 5, 11, 12, 13, 14, 15]


def test_rate_limit_shared_by_parallel_requests(server: tuple[str, Api]) -> None:
    url, _ = server
    src = rest(
        {
            "url": f"{url}/offset",
            "data_selector": "data",
            "params_list": [{"offset": o, "limit": 1} for o in range(6)],
            "max_concurrency": 6,
            "rate_limit": 20,
        }
    )
    start = time.monotonic()
    src.ingest()
    assert time.monotonic() - start >= 0.25  # 6 requests at 20/s need at least 5 intervals


# -- incremental --------------------------------------------------------------------------


def test_incremental_with_late_rows(server: tuple[str, Api], tmp_path: Path) -> None:
    url, api = server
    api.events = [
        {"id": 1, "updated_at": "2024-01-01T10:00:00Z", "v": "a"},
        {"id": 2, "updated_at": "2024-01-01T10:05:00Z", "v": "b"},
    ]
    config = {
        "url": f"{url}/events",
        "incremental": {
            "cursor_field": "updated_at",
            "param": "since",
            "lookback": 600,
            "primary_key": "id",
            "state_path": str(tmp_path / "events.json"),
        },
    }
    first = rest(dict(config)).ingest()
    assert first["id"].to_list() == [1, 2]
    state = json.loads((tmp_path / "events.json").read_text())
    assert state["last_value"] == "2024-01-01T10:05:00Z"
    # a row committed late with an older timestamp, a new row, and an update of row 1
    api.events += [
        {"id": 3, "updated_at": "2024-01-01T10:04:00Z", "v": "late"},
        {"id": 4, "updated_at": "2024-01-01T10:10:00Z", "v": "new"},
    ]
    api.events[0] = {"id": 1, "updated_at": "2024-01-01T10:08:00Z", "v": "a2"}
    src = rest(dict(config))
    second = src.ingest()
    assert api.requests[-1]["query"]["since"] == "2024-01-01T09:55:00Z"
    assert sorted(second["id"].to_list()) == [1, 3, 4]  # row 2 not doubled, row 3 not lost
    assert src.get_metadata()["details"]["duplicates_dropped"] == 1
    third = rest(dict(config)).ingest()
    assert third.height == 0


def test_incremental_late_rows_at_the_boundary_over_three_runs(
    server: tuple[str, Api], tmp_path: Path
) -> None:
    """Late rows at the boundary are neither lost nor doubled; the keys sit in a sidecar."""
    url, api = server
    state = tmp_path / "late.json"
    config = {
        "url": f"{url}/events",
        "incremental": {
            "cursor_field": "updated_at",
            "param": "since",
            "lookback": 300,
            "primary_key": "id",
            "state_path": str(state),
        },
    }

    def run() -> tuple[list[int], Any]:
        src = rest(dict(config))
        frame = src.ingest()
        ids = frame["id"].to_list() if frame.height else []
        return ids, src.get_metadata()["details"].get("duplicates_dropped")

    api.events = [
        {"id": 1, "updated_at": "2024-01-01T10:00:00Z"},
        {"id": 2, "updated_at": "2024-01-01T10:05:00Z"},
    ]
    assert run() == ([1, 2], None)
    api.events += [
        {"id": 3, "updated_at": "2024-01-01T10:05:00Z"},  # late, tied with the last value
        {"id": 4, "updated_at": "2024-01-01T10:02:30.5Z"},  # late, inside the window
        {"id": 5, "updated_at": "2024-01-01T10:08:00Z"},  # new
    ]
    assert run() == ([4, 3, 5], 2)
    assert api.requests[-1]["query"]["since"] == "2024-01-01T10:00:00Z"
    api.events += [
        {"id": 6, "updated_at": "2024-01-01T10:04:00Z"},  # late, inside the moved window
        {"id": 7, "updated_at": "2024-01-01T10:01:00Z"},  # older than the window: not asked for
    ]
    api.events[1] = {"id": 2, "updated_at": "2024-01-01T10:09:00Z"}  # a new version of row 2
    assert run() == ([6, 2], 2)
    assert api.requests[-1]["query"]["since"] == "2024-01-01T10:03:00Z"
    assert run() == ([], 4)
    saved = json.loads(state.read_text())
    assert saved["last_value"] == "2024-01-01T10:09:00Z"
    assert "boundary_rows" not in saved
    keys = pl.read_parquet(tmp_path / saved["delivered_keys"]["file"])
    assert sorted(keys["updated_at"].to_list()) == [  # the window: 10:04 and later
        "2024-01-01T10:04:00Z",
        "2024-01-01T10:05:00Z",  # row 2's first version
        "2024-01-01T10:05:00Z",
        "2024-01-01T10:08:00Z",
        "2024-01-01T10:09:00Z",
    ]


def test_oauth2_token_refreshed_on_401(server: tuple[str, Api]) -> None:
    url, api = server
    auth = {
        "type": "oauth2_client_credentials",
        "endpoint": f"{url}/token",
        "client_id": "client",
        "client_secret": TOKEN,
    }
    assert rest({"url": f"{url}/oauth-strict", "auth": auth}).ingest().height == 1
    assert api.counters["token"] == 2


def test_oauth2_bad_client_secret(server: tuple[str, Api]) -> None:
    url, _ = server
    auth = {
        "type": "oauth2_client_credentials",
        "endpoint": f"{url}/token",
        "client_id": "client",
        "client_secret": "not-the-secret-42",
    }
    with pytest.raises(IngestionAuthenticationError, match="401") as info:
        rest({"url": f"{url}/oauth-data", "auth": auth}).ingest()
    assert "not-the-secret-42" not in str(info.value)


def test_retry_after_too_long_fails_at_once(server: tuple[str, Api]) -> None:
    url, api = server
    src = rest(
        {"url": f"{url}/retry-later", "retry": {"max_retry_after": 60, "backoff_factor": 0.01}}
    )
    with pytest.raises(IngestionError, match=r"HTTP 503.*retry after 3600s"):
        src.ingest()
    assert len(api.paths("/retry-later")) == 1
