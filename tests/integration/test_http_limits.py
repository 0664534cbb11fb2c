"""HTTP sources that end and keep their credentials: redirects, limits, retries, pagination rules.

Every case runs against a real HTTP server on 127.0.0.1 (two servers on two ports are two
origins). Each guarantee has a drill that was seen to fail against a deliberately broken
variant, kept below as a test.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from data_pipeline.core.errors import IngestionError, IngestionTimeoutError
from data_pipeline.ingestion import RESTAPISource
from data_pipeline.ingestion.http import Page, PageRequest, Paginator
from data_pipeline.ingestion.http import client as http_client
from data_pipeline.ingestion.http.paginators import DEFAULT_MAX_PAGES
from tests.integration.http_server import Handler, Recorder, serve

BEARER = "brr-0a1b2c3d4e5f6789"
HEADER_KEY = "hdr-key-77aa88bb99cc"
AUTH_TOKEN = "xat-5566778899aabbcc"
QUERY_KEY = "qk-1122334455667788"
PARAM_TOKEN = "ptok-99887766554433"
SECRETS = (BEARER, HEADER_KEY, AUTH_TOKEN, QUERY_KEY, PARAM_TOKEN)
ROWS = [{"id": i} for i in range(1, 26)]
PAGE_3_ASKED = threading.Event()
PARALLEL: dict[str, bool] = {}


def rest(config: dict[str, Any]) -> RESTAPISource:
    return RESTAPISource(name="http", config={"retry": {"backoff_factor": 0.01}, **config})


# -- redirects ------------------------------------------------------------------------------


@pytest.fixture
def two_origins() -> Iterator[tuple[str, Recorder, str, Recorder]]:
    """Origin A redirects /away to origin B's /data and /here to its own /data."""
    other: dict[str, str] = {}

    def data(h: Handler, q: dict[str, str]) -> None:
        h.send(200, [{"ok": 1}])

    routes_a = {
        "/away": lambda h, q: h.redirect(f"{other['b']}/data?page=1"),
        "/here": lambda h, q: h.redirect("/data"),
        "/data": data,
        "/next-elsewhere": lambda h, q: h.send(
            200, {"results": [{"id": 1}], "next": f"{other['b']}/data"}
        ),
    }
    with serve({"/data": data}) as (url_b, rec_b), serve(routes_a) as (url_a, rec_a):
        other["b"] = url_b
        yield url_a, rec_a, url_b, rec_b


def credentials(url: str, path: str) -> dict[str, Any]:
    """Every kind of credential at once: auth header and query key, secret headers and a param."""
    return {
        "url": f"{url}{path}",
        "headers": {"Authorization": f"Bearer {BEARER}", "X-API-Key": HEADER_KEY,
                    "X-Auth-Token": AUTH_TOKEN, "X-Trace": "visible"},
        "params": {"access_token": PARAM_TOKEN, "lang": "en"},
        "auth": {"type": "api_key", "key": QUERY_KEY, "name": "api_key", "in": "query"},
    }  # fmt: skip


def leaked(recorder: Recorder) -> list[str]:
    return [s for s in SECRETS if s in recorder.text()]


def test_same_origin_redirect_keeps_credentials(two_origins: Any) -> None:
    url_a, rec_a, _, _ = two_origins
    assert rest(credentials(url_a, "/here")).ingest().height == 1
    final = rec_a.requests[-1]
    assert final["path"] == "/data"
    assert final["headers"]["X-Auth-Token"] == AUTH_TOKEN
    assert final["query"]["api_key"] == QUERY_KEY


def test_cross_origin_redirect_is_refused_by_default(two_origins: Any) -> None:
    url_a, _, _, rec_b = two_origins
    with pytest.raises(IngestionError, match=r"refusing the redirect of GET .* to http://127"):
        rest(credentials(url_a, "/away")).ingest()
    assert rec_b.requests == []


def test_cross_origin_redirect_allowed_sends_no_credential(two_origins: Any) -> None:
    url_a, _, _, rec_b = two_origins
    config = {**credentials(url_a, "/away"), "redirects": {"cross_origin": "allow"}}
    assert rest(config).ingest().height == 1
    assert len(rec_b.requests) == 1
    assert leaked(rec_b) == []
    seen = rec_b.requests[0]
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-trace"] == "visible"  # what is not a credential still goes
    assert seen["query"] == {"page": "1"}
    assert "authorization" not in headers


def test_broken_variant_leaks_and_the_drill_sees_it(
    two_origins: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drill above fails when cross-origin requests keep their credentials (httpx's default)."""
    url_a, _, _, rec_b = two_origins
    monkeypatch.setattr(http_client.HttpClient, "_without_credentials", lambda self, r: r)
    monkeypatch.setattr(http_client.HttpClient, "_admit", lambda self, r, shown: (r, self.auth))
    config = {**credentials(url_a, "/away"), "redirects": {"cross_origin": "allow"}}
    rest(config).ingest()
    assert set(leaked(rec_b)) >= {HEADER_KEY, AUTH_TOKEN, QUERY_KEY}


def test_next_page_on_another_origin_is_refused(two_origins: Any) -> None:
    url_a, _, _, rec_b = two_origins
    config = {"url": f"{url_a}/next-elsewhere", "pagination": {"type": "next_url"}}
    with pytest.raises(IngestionError, match=r"refusing GET http://127\.0\.0\.1:\d+/data"):
        rest(config).ingest()
    assert rec_b.requests == []


def test_redirect_not_followed_is_an_error_naming_status_and_location() -> None:
    """redirects.follow: false: a 3xx is not a page (it was read as one: 0 rows, no error)."""
    signed = "sig-0f1e2d3c4b5a6978"
    routes = {
        "/moved": lambda h, q: h.redirect(f"/data?sig={signed}&page=1", status=301),
        "/data": lambda h, q: h.send(200, [{"ok": 1}]),
    }
    with serve(routes) as (url, recorder):
        source = rest({"url": f"{url}/moved", "redirects": {"follow": False}})
        with pytest.raises(IngestionError) as caught:
            source.ingest()
        assert recorder.paths() == ["/moved"]  # not followed
        text = str(caught.value)
        assert "HTTP 301" in text and f"{url}/data?sig=***&page=1" in text, text
        assert signed not in text
        assert "redirects.follow" in (caught.value.hint or "")
        # followed (the default), the same URL reads the row
        assert rest({"url": f"{url}/moved"}).ingest().to_dicts() == [{"ok": 1}]


# -- limits ---------------------------------------------------------------------------------


def _trickle(part: str, total: int = 24, pause: float = 0.15) -> Any:
    """A handler that sends the headers (or the body) one byte at a time."""

    def route(h: Handler, q: dict[str, str]) -> None:
        body = b"[" + b" " * (total - 2) + b"]"
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"X-Padding: {'p' * total}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        slow, fast = (head, b"") if part == "headers" else (b"", head)
        h.wfile.write(fast)
        h.wfile.flush()
        sent = 0
        try:
            for i in range(len(slow)):
                h.wfile.write(slow[i : i + 1])
                h.wfile.flush()
                sent += 1
                time.sleep(pause)
            for i in range(len(body)):
                if part == "headers":
                    h.wfile.write(body)
                    sent += len(body)
                    break
                h.wfile.write(body[i : i + 1])
                h.wfile.flush()
                sent += 1
                time.sleep(pause)
        except OSError:  # the client hung up: the time limit worked
            pass
        finally:
            h.recorder.sent[part] = sent
        h.close_connection = True

    return route


@pytest.mark.parametrize("part", ["headers", "body"])
def test_total_time_limit_stops_a_trickling_server(part: str) -> None:
    """Each byte comes well within the timeout; the whole answer would take 3.6 s: limit 0.6 s."""
    with serve({"/slow": _trickle(part)}) as (url, rec):
        source = rest({"url": f"{url}/slow", "timeout": 0.6, "retry": {"max_attempts": 1}})
        with pytest.raises(IngestionTimeoutError, match=r"time limit of 0.6s \(connect, headers"):
            source.ingest()
        time.sleep(0.5)  # let the server notice the closed connection
    assert rec.sent[part] < 24


def test_broken_variant_without_the_deadline_reads_the_trickle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the deadline backend, per-read timeouts let the trickle through (the old bug)."""
    monkeypatch.setattr(http_client, "_deadline_backend", lambda inner: inner)
    with serve({"/slow": _trickle("body", total=10, pause=0.1)}) as (url, _):
        source = rest({"url": f"{url}/slow", "timeout": 0.6, "retry": {"max_attempts": 1}})
        assert source.ingest().height == 0  # the whole body arrived: no limit held


def _big(declare: bool) -> Any:
    def route(h: Handler, q: dict[str, str]) -> None:
        chunk = b"[" + b'{"v": 1},' * 100_000  # about 0.9 MB a chunk
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        if declare:
            h.send_header("Content-Length", str(len(chunk) * 20))
        else:
            h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        try:
            for _ in range(20):
                if declare:
                    h.wfile.write(chunk)
                else:
                    h.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                h.recorder.sent["chunks"] = h.recorder.sent.get("chunks", 0) + 1
        except OSError:
            pass
        h.close_connection = True

    return route


@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
def test_body_larger_than_max_body_size_fails_clearly(declare: bool) -> None:
    with serve({"/big": _big(declare)}) as (url, _):
        source = rest({"url": f"{url}/big", "max_body_size": "2MB"})
        what = "announces 18,000,020 bytes" if declare else "sent more than 2,000,000 bytes"
        with pytest.raises(IngestionError, match=f"the response {what}, more than max_body_size"):
            source.ingest()
    assert source.settings.max_body_size == 2_000_000


def test_default_limits() -> None:
    s = rest({"url": "http://127.0.0.1:9/x"}).settings
    assert s.max_body_size == 100 * 1024 * 1024
    assert s.max_pages == DEFAULT_MAX_PAGES == 1000
    assert s.retry.methods == ["GET", "HEAD", "OPTIONS"]
    assert s.redirects.cross_origin == "refuse"


# -- retries --------------------------------------------------------------------------------


def _flaky() -> Any:
    def route(h: Handler, q: dict[str, str]) -> None:
        n = sum(1 for r in h.recorder.requests if r["path"] == "/flaky")
        h.send(503 if n <= 2 else 200, {"error": "busy"} if n <= 2 else [{"n": n}])

    return route


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_unsafe_methods_are_not_resent_without_opting_in(method: str) -> None:
    with serve({"/flaky": _flaky()}) as (url, rec):
        with pytest.raises(IngestionError, match="returned HTTP 503"):
            rest({"url": f"{url}/flaky", "method": method, "json": {"q": 1}}).ingest()
        assert len(rec.requests) == 1


def test_opting_in_retries_a_post_and_get_is_retried_by_default() -> None:
    with serve({"/flaky": _flaky()}) as (url, rec):
        config = {"url": f"{url}/flaky", "method": "POST", "retry": {"methods": ["post"]}}
        src = rest(config)
        assert src.ingest()["n"].to_list() == [3]
        assert [r["method"] for r in rec.requests] == ["POST"] * 3
        assert src.get_metadata()["details"]["retries"] == 2
    with serve({"/flaky": _flaky()}) as (url, rec):
        assert rest({"url": f"{url}/flaky"}).ingest()["n"].to_list() == [3]


def test_post_is_retried_when_the_connection_was_never_made() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    src = rest({"url": f"http://127.0.0.1:{port}/x", "method": "POST",
                "retry": {"max_attempts": 2, "backoff_factor": 0.01}})  # fmt: skip
    with pytest.raises(IngestionError, match="could not connect after 2 attempts"):
        src.ingest()


# -- pagination that ends -------------------------------------------------------------------


def _paged_routes() -> dict[str, Any]:
    def loop(h: Handler, q: dict[str, str]) -> None:  # page 2 points back to the start URL
        p = int(q.get("p", 1))
        nxt = "/loop?p=2" if p == 1 else "/loop"
        h.send(200, {"results": ROWS[(p - 1) * 10 : p * 10], "next": nxt})

    def aba(h: Handler, q: dict[str, str]) -> None:  # A, B, A, B, ...
        p = int(q.get("p", 1))
        h.send(200, {"results": ROWS[(p - 1) * 10 : p * 10], "next": f"/aba?p={3 - p}"})

    def ignore(h: Handler, q: dict[str, str]) -> None:  # ignores the offset, no total
        h.send(200, {"data": ROWS[:10]})

    def short(h: Handler, q: dict[str, str]) -> None:  # announces 50, has 40
        off = int(q.get("offset", 0))
        h.send(200, {"data": [{"id": i} for i in range(off, min(off + 10, 40))], "total": 50})

    def header_total(h: Handler, q: dict[str, str]) -> None:
        off, lim = int(q.get("offset", 0)), int(q.get("limit", 10))
        h.send(200, ROWS[off : off + lim], {"X-Total-Count": str(len(ROWS))})

    def pages_header(h: Handler, q: dict[str, str]) -> None:
        p, size = int(q.get("page", 1)), int(q.get("per_page", 10))
        h.send(200, ROWS[(p - 1) * size : p * size], {"X-Total-Pages": "3"})

    def link(h: Handler, q: dict[str, str]) -> None:
        p, size = int(q.get("p", 1)), int(q.get("per_page", 30))
        rows = ROWS[(p - 1) * size : p * size]
        more = p * size < len(ROWS)
        headers = (
            {"Link": f'<{h.base()}/link?p={p + 1}&per_page={size}>; rel="next"'} if more else {}
        )
        h.send(200, rows, headers)

    def github(h: Handler, q: dict[str, str]) -> None:  # ?page=N, rel="next" and rel="last"
        p, size = int(q.get("page", 1)), int(q.get("per_page", 30))
        pages = -(-len(ROWS) // size)
        if p == 2:  # answer page 2 once page 3 was asked for: proof that they run in parallel
            PARALLEL["page 3 asked while page 2 was open"] = PAGE_3_ASKED.wait(30)
        if p == 3:
            PAGE_3_ASKED.set()
        links = [] if p == pages else [
            f'<{h.base()}/gh?per_page={size}&page={p + 1}>; rel="next"',
            f'<{h.base()}/gh?per_page={size}&page={pages}>; rel="last"',
        ]  # fmt: skip
        h.send(200, ROWS[(p - 1) * size : p * size], {"Link": ", ".join(links)} if links else {})

    def link_total(h: Handler, q: dict[str, str]) -> None:  # rel="next" only, X-Total-Count
        p = int(q.get("p", 1))
        more = {"Link": f'<{h.base()}/lt?p={p + 1}>; rel="next"'} if p * 10 < len(ROWS) else {}
        h.send(200, ROWS[(p - 1) * 10 : p * 10], {"X-Total-Count": str(len(ROWS)), **more})

    def link_offset(h: Handler, q: dict[str, str]) -> None:  # links move by an offset
        off = int(q.get("offset", 0))
        links = [f'<{h.base()}/lo?offset=20>; rel="last"']
        if off + 10 < len(ROWS):
            links.append(f'<{h.base()}/lo?offset={off + 10}>; rel="next"')
        h.send(200, ROWS[off : off + 10], {"Link": ", ".join(links)})

    def same_cursor(h: Handler, q: dict[str, str]) -> None:
        h.send(200, {"records": [{"id": q.get("c", "first")}], "next": "c1"})

    def endless(h: Handler, q: dict[str, str]) -> None:
        off = int(q.get("offset", 0))
        h.send(200, {"data": [{"id": off}]})

    return {"/loop": loop, "/aba": aba, "/ignore": ignore, "/short": short,
            "/hdr": header_total, "/pages": pages_header, "/link": link,
            "/cursor": same_cursor, "/endless": endless, "/gh": github, "/lt": link_total,
            "/lo": link_offset}  # fmt: skip


@pytest.fixture(scope="module")
def paged() -> Iterator[tuple[str, Recorder]]:
    with serve(_paged_routes()) as server:
        yield server


def test_next_url_back_to_the_start_url_is_a_loop(paged: tuple[str, Recorder]) -> None:
    url, _ = paged
    src = rest({"url": f"{url}/loop", "pagination": {"type": "next_url"}})
    with pytest.raises(IngestionError, match=r"page 3 would ask for .*/loop again"):
        src.ingest()


def test_a_b_a_is_a_loop(paged: tuple[str, Recorder]) -> None:
    url, _ = paged
    with pytest.raises(IngestionError, match=r"page 4 would ask for .*/aba\?p=2 again"):
        rest({"url": f"{url}/aba", "pagination": {"type": "next_url"}}).ingest()


def test_repeated_cursor_is_a_loop(paged: tuple[str, Recorder]) -> None:
    url, _ = paged
    config = {"url": f"{url}/cursor", "pagination": {"type": "cursor", "cursor_path": "next",
                                                     "cursor_param": "c"}}  # fmt: skip
    with pytest.raises(IngestionError, match=r"page 3 would ask for .*c=c1 again"):
        rest(config).ingest()


def test_server_ignoring_the_offset_is_an_identical_page(paged: tuple[str, Recorder]) -> None:
    url, _ = paged
    src = rest({"url": f"{url}/ignore", "pagination": {"type": "offset", "limit": 10}})
    with pytest.raises(IngestionError, match="page 2 is identical to page 1"):
        src.ingest()


def test_broken_variant_without_the_identical_page_check_runs_to_max_pages(
    paged: tuple[str, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With digests that never match, the same drill only ends at max_pages (the old bug)."""
    from data_pipeline.ingestion import rest as rest_module

    real = rest_module.RESTAPISource._parse

    def no_digest(self: Any, response: Any) -> Page:
        page = real(self, response)
        page.digest = str(time.perf_counter_ns()).encode()
        return page

    monkeypatch.setattr(rest_module.RESTAPISource, "_parse", no_digest)
    url, _ = paged
    src = rest({"url": f"{url}/ignore", "pagination": {"type": "offset", "limit": 10},
                "max_pages": 5})  # fmt: skip
    with pytest.raises(IngestionError, match=r"max_pages \(5\) reached"):
        src.ingest()


def test_max_pages_stops_an_endless_api(paged: tuple[str, Recorder]) -> None:
    url, rec = paged
    before = len(rec.paths("/endless"))
    src = rest({"url": f"{url}/endless", "pagination": {"type": "offset", "limit": 1},
                "max_pages": 7})  # fmt: skip
    with pytest.raises(IngestionError, match=r"max_pages \(7\) reached and the API has more"):
        src.ingest()
    assert len(rec.paths("/endless")) - before == 7


def test_known_total_not_reached(paged: tuple[str, Recorder]) -> None:
    url, _ = paged
    config = {"url": f"{url}/short", "pagination": {"type": "offset", "limit": 10,
                                                    "total_path": "total"}}  # fmt: skip
    with pytest.raises(IngestionError, match="announced 50 records and 40 were read"):
        rest(config).ingest()
    src = rest({**config, "on_incomplete": "warn"})
    assert src.ingest()["id"].to_list() == list(range(40))
    assert "announced 50 records" in src.get_metadata()["details"]["incomplete"]


def test_total_from_a_header_fetches_pages_in_parallel(paged: tuple[str, Recorder]) -> None:
    url, rec = paged
    before = len(rec.paths("/hdr"))
    src = rest({"url": f"{url}/hdr", "pagination": {"type": "offset", "limit": 5,
                                                    "total_header": "X-Total-Count"}})  # fmt: skip
    assert src.ingest()["id"].to_list() == [r["id"] for r in ROWS]
    asked = [r for r in rec.requests if r["path"] == "/hdr"][before:]
    assert sorted(int(r["query"]["offset"]) for r in asked) == [0, 5, 10, 15, 20]  # no empty page


def test_total_pages_from_a_header(paged: tuple[str, Recorder]) -> None:
    url, rec = paged
    before = len(rec.paths("/pages"))
    src = rest({"url": f"{url}/pages", "pagination": {"type": "page", "limit": 10,
                                                      "total_pages_header": "X-Total-Pages"}})  # fmt: skip
    assert src.ingest()["id"].to_list() == [r["id"] for r in ROWS]
    assert len(rec.paths("/pages")) - before == 3
    asked = [r for r in rec.requests if r["path"] == "/pages"][before:]
    assert {r["query"]["per_page"] for r in asked} == {"10"}


def test_link_header_page_size(paged: tuple[str, Recorder]) -> None:
    url, rec = paged
    before = len(rec.paths("/link"))
    src = rest({"url": f"{url}/link", "pagination": {"type": "link_header", "limit": 7}})
    assert src.ingest()["id"].to_list() == [r["id"] for r in ROWS]
    asked = [r for r in rec.requests if r["path"] == "/link"][before:]
    assert [r["query"].get("per_page") for r in asked] == ["7"] * 4


def test_link_header_with_a_last_link_fetches_pages_in_parallel(
    paged: tuple[str, Recorder],
) -> None:
    """GitHub's form (``?page=N``, rel="next" and rel="last"): the pages between are known
    after the first one and fetched at once; each is asked for once."""
    url, rec = paged
    before = len(rec.paths("/gh"))
    src = rest({"url": f"{url}/gh", "pagination": {"type": "link_header", "limit": 5}})
    assert src.ingest()["id"].to_list() == [r["id"] for r in ROWS]
    asked = [r for r in rec.requests if r["path"] == "/gh"][before:]
    assert sorted(int(r["query"].get("page", 1)) for r in asked) == [1, 2, 3, 4, 5]
    assert PARALLEL == {"page 3 asked while page 2 was open": True}


def test_link_header_with_a_total_plans_the_pages(paged: tuple[str, Recorder]) -> None:
    url, rec = paged
    before = len(rec.paths("/lt"))
    src = rest({"url": f"{url}/lt", "pagination": {"type": "link_header",
                                                   "total_header": "X-Total-Count"}})  # fmt: skip
    assert src.ingest()["id"].to_list() == [r["id"] for r in ROWS]
    asked = [r for r in rec.requests if r["path"] == "/lt"][before:]
    assert sorted(int(r["query"].get("p", 1)) for r in asked) == [1, 2, 3]


def test_link_header_plan_that_does_not_hold_follows_the_links(
    paged: tuple[str, Recorder],
) -> None:
    """Links moving by an offset (first URL without it): the guessed page numbers are checked
    against each page's own next link and the read follows the links instead; every row once."""
    url, _ = paged
    src = rest({"url": f"{url}/lo", "pagination": {"type": "link_header"}})
    assert src.ingest()["id"].to_list() == [r["id"] for r in ROWS]


def test_a_paginator_of_your_own(paged: tuple[str, Recorder]) -> None:
    class TwoPages(Paginator):
        def first_request(self, request: PageRequest) -> PageRequest:
            return request.with_params(offset=0, limit=10)

        def next_request(self, page: Page, request: PageRequest) -> PageRequest | None:
            offset = int(request.params["offset"])
            return None if offset >= 10 else request.with_params(offset=offset + 10)

    url, _ = paged
    src = rest({"url": f"{url}/hdr", "pagination": TwoPages()})
    assert src.ingest()["id"].to_list() == list(range(1, 21))


# -- OAuth2 -------------------------------------------------------------------------------


def test_oauth2_token_is_renewed_with_the_refresh_token() -> None:
    """The first token expires at once; the next request renews it with its refresh_token."""

    def token(h: Handler, q: dict[str, str]) -> None:
        n = len(h.recorder.paths("/token"))
        h.send(200, {"access_token": f"at-{n}", "expires_in": 0, "refresh_token": f"rt-{n}"})

    def data(h: Handler, q: dict[str, str]) -> None:
        ok = h.headers.get("Authorization", "").startswith("Bearer at-")
        h.send(200 if ok else 401, [{"ok": 1}])

    with serve({"/token": token, "/data": data}) as (url, rec):
        src = rest({"url": f"{url}/data", "auth": {
            "type": "oauth2_client_credentials", "endpoint": f"{url}/token",
            "client_id": "cid", "client_secret": "cs-1234567890"}})  # fmt: skip
        src.ingest()
        time.sleep(1.1)  # the token's life: expires_in minus a 30 s margin, at least 1 s
        src.ingest()
    bodies = [r["body"] for r in rec.requests if r["path"] == "/token"]
    assert bodies == [
        "grant_type=client_credentials",
        "grant_type=refresh_token&refresh_token=rt-1",
    ]
    sent = [r["headers"]["Authorization"] for r in rec.requests if r["path"] == "/data"]
    assert sent == ["Bearer at-1", "Bearer at-2"]
