"""The secret corpus: every credential shape, in every place a config can hold one, never shown.

Each secret below is sent through the framework the way a user would configure it (config,
``${ENV}``, URL userinfo with an unencoded ``@`` and ``/``, query string, headers, params,
``storage_options``, OAuth2 client secret, issued access and refresh tokens). Then everything the
framework produced is searched for them: what ``data-pipeline run -v`` prints, every log record of
every logger at DEBUG (ours and the libraries'), every error raised (message, repr, and the whole
traceback with its chained causes), ``get_metadata()`` and ``repr`` of each component, and every
file written (state, sidecars, rejects, the dashboard HTML). The corpus must find none; the last
test shows the search finds a leak when one is let through.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_service
from tests.integration.http_server import Handler, Recorder, serve

# every value is unique and long enough that a hit is a leak
SECRETS = {
    "bearer": "cps-bearer-1a2b3c4d5e",
    "basic_password": "cps-basic-5e6f7a8b9c",
    "api_key_header": "cps-apikey-hdr-9c0d1e",
    "api_key_query": "cps-apikey-qry-1e2f3a",
    "ocp_key": "cps-ocp-4b5c6d7e8f",
    "functions_key": "cps-func-8f9a0b1c2d",
    "x_auth_token": "cps-xauth-2d3e4f5a6b",
    "refresh_param": "cps-refresh-6b7c8d9e0f",
    "client_secret_param": "cps-clisec-0f1a2b3c4d",
    "amz_signature": "cps0amz0sig0deadbeef0",
    "amz_credential": "CPSAKIDEXAMPLE42",
    "env_token": "cps-env-token-9abc0def",
    "oauth_client_secret": "cps-oauth-cs-7a8b9c0d",
    "oauth_access": "cps-issued-access-1234",
    "oauth_refresh": "cps-issued-refresh-5678",
    "fs_token": "cps-fs-token-13572468",
    "so_header": "cps-so-bearer-24681357",
    "lookup_key": "cps-lookup-key-97531",
}
# passwords with an unencoded "@", "/" and ":" (from ${VAR}); their pieces must not show either
URL_PASSWORD = "Cps9@cpsAtPiece/cpsSlashPiece:x"
DB_PASSWORD = "Db7@cpsDbAtPiece/cpsDbSlashPiece"
PIECES = ["cpsAtPiece", "cpsSlashPiece", "cpsDbAtPiece", "cpsDbSlashPiece"]
NEEDLES = [*SECRETS.values(), URL_PASSWORD, DB_PASSWORD, *PIECES]


def find_leaks(text: str) -> list[str]:
    return [n for n in NEEDLES if n in text]


def _routes() -> dict[str, Any]:
    def data(h: Handler, q: dict[str, str]) -> None:
        h.send(200, {"data": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], "total": 2})

    def echo_401(h: Handler, q: dict[str, str]) -> None:  # a server that repeats what it got
        h.send(401, {"error": "denied", "you_sent": dict(h.headers), "query": q})

    def token(h: Handler, q: dict[str, str]) -> None:
        h.send(200, {"access_token": SECRETS["oauth_access"], "expires_in": 3600,
                     "refresh_token": SECRETS["oauth_refresh"], "token_type": "bearer"})  # fmt: skip

    def csv(h: Handler, q: dict[str, str]) -> None:
        body = b"id,amount\n1,10\n2,20,extra\n3,30\n"  # row 2 is rejected
        h.send_response(200)
        h.send_header("Content-Type", "text/csv")
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Last-Modified", "Wed, 01 Jan 2025 00:00:00 GMT")
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def product(h: Handler, q: dict[str, str]) -> None:
        h.send(200, {"category": "tools"})

    return {"/data": data, "/echo401": echo_401, "/token": token, "/orders.csv": csv,
            "/away": lambda h, q: h.redirect("http://127.0.0.2:9/elsewhere?token=x"),
            "/product/1": product, "/product/2": product}  # fmt: skip


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[str, Recorder]]:
    with serve(_routes()) as server:
        yield server


def sources(url: str) -> dict[str, dict[str, Any]]:
    """The corpus as pipeline-file sources (``${...}`` read from the environment)."""
    host = url.removeprefix("http://")
    amz = (f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={SECRETS['amz_credential']}"
           f"%2F20250101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature={SECRETS['amz_signature']}")  # fmt: skip
    return {
        "headers_and_params": {
            "type": "RESTAPISource",
            "config": {
                "url": f"{url}/data?{amz}",
                "headers": {"Ocp-Apim-Subscription-Key": SECRETS["ocp_key"],
                            "x-functions-key": SECRETS["functions_key"],
                            "X-Auth-Token": SECRETS["x_auth_token"]},
                "params": {"refresh_token": SECRETS["refresh_param"],
                           "client_secret": SECRETS["client_secret_param"]},
                "auth": {"type": "api_key", "key": SECRETS["api_key_query"], "name": "api_key",
                         "in": "query"},
                "data_selector": "data",
                "pagination": {"type": "offset", "limit": 10, "total_path": "total"},
            },
        },
        "env_bearer": {
            "type": "RESTAPISource",
            "config": {"url": f"{url}/data", "auth": {"type": "bearer", "token": "${API_TOKEN}"}},
        },
        "url_password": {
            "type": "RESTAPISource",
            "config": {"url": f"http://cps:${{URL_PASSWORD}}@{host}/data",
                       "headers": {"X-API-Key": SECRETS["api_key_header"]}},
        },
        "oauth": {
            "type": "RESTAPISource",
            "config": {"url": f"{url}/data",
                       "auth": {"type": "oauth2_client_credentials", "endpoint": f"{url}/token",
                                "client_id": "cps-client",
                                "client_secret": "${OAUTH_CLIENT_SECRET}"}},
        },
        "remote_csv": {
            "type": "FileSystemSource",
            "config": {"path": f"{url}/orders.csv?token={SECRETS['fs_token']}", "format": "csv",
                       "incremental": True, "on_bad_rows": "reject",
                       "source_file_column": "source_file",
                       "reject_path": "rejects/orders.csv",
                       "storage_options": {"headers": {"Authorization":
                                                       f"Bearer {SECRETS['so_header']}"}}},
        },
    }  # fmt: skip


def failing_sources(url: str) -> dict[str, dict[str, Any]]:
    """Configs that fail, so that their errors (and causes) are searched too."""
    return {
        "echo": {"type": "RESTAPISource", "config": {
            "url": f"{url}/echo401?client_secret={SECRETS['client_secret_param']}",
            "headers": {"Authorization": f"Bearer {SECRETS['bearer']}",
                        "x-functions-key": SECRETS["functions_key"]},
            "retry": {"max_attempts": 1}}},
        "basic": {"type": "RESTAPISource", "config": {
            "url": f"{url}/echo401",
            "auth": {"type": "basic", "username": "cps", "password": SECRETS["basic_password"]},
            "retry": {"max_attempts": 1}}},
        "away": {"type": "RESTAPISource", "config": {
            "url": f"{url}/away?api_key={SECRETS['api_key_query']}",
            "headers": {"X-API-Key": SECRETS["api_key_header"]}}},
        "bad_password_url": {"type": "RESTAPISource", "config": {
            "url": f"http://cps:{URL_PASSWORD}@127.0.0.1:9/data", "retry": {"max_attempts": 1}}},
        "database": {"type": "DatabaseSource", "config": {
            "url": "postgresql://cps_nobody:${DB_PASSWORD}@127.0.0.1:5432/postgres",
            "query": "SELECT 1"}},
    }  # fmt: skip


ENV = {
    "API_TOKEN": SECRETS["env_token"],
    "URL_PASSWORD": URL_PASSWORD,
    "OAUTH_CLIENT_SECRET": SECRETS["oauth_client_secret"],
    "DB_PASSWORD": DB_PASSWORD,
}


def _pipeline_file(folder: Path, url: str, name: str, srcs: dict[str, Any]) -> Path:
    import yaml

    spec = {"name": name, "sources": srcs}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def _run_cli(path: Path) -> str:
    env = {**os.environ, **ENV}
    done = subprocess.run(
        [sys.executable, "-m", "data_pipeline.cli", "run", "-v", str(path)],
        capture_output=True, text=True, env=env, cwd=path.parent, timeout=300,
    )  # fmt: skip
    return done.stdout + done.stderr


def _files_text(folder: Path) -> str:
    parts = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix != ".yaml":  # the pipeline files are the user's input
            parts.append(f"== {path}\n" + path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


def _in_process(url: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Build and run every corpus config here at DEBUG; everything shown, as one text."""
    from data_pipeline.core.config import interpolate_env
    from data_pipeline.ingestion import DatabaseSource, FileSystemSource, RESTAPISource
    from data_pipeline.processing import DataEnricher
    from data_pipeline.visualization import BarChart, Dashboard

    classes = {"RESTAPISource": RESTAPISource, "FileSystemSource": FileSystemSource,
               "DatabaseSource": DatabaseSource}  # fmt: skip
    monkeypatch.chdir(folder)
    records: list[str] = []
    handler = logging.Handler(level=logging.DEBUG)
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    handler.emit = lambda record: records.append(formatter.format(record))  # type: ignore[method-assign]
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    shown: list[str] = []
    frames = []
    try:
        for group in (sources(url), failing_sources(url)):
            for name, item in interpolate_env(group, environ=ENV).items():
                component = classes[item["type"]](name, item["config"])
                try:
                    frames.append(component.ingest())
                    if item["type"] == "FileSystemSource":
                        frames.append(component.ingest())  # again: the state file is read
                except Exception as exc:
                    shown += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
                shown += [repr(component), json.dumps(component.get_metadata(), default=str)]
        from data_pipeline.core.frames import to_polars

        shown += [str(to_polars(frame).to_dicts()) for frame in frames]  # the data too
        enricher = DataEnricher("lookup", {"rest_lookups": [{
            "url": f"{url}/product/{{id}}", "on": "id", "fields": {"category": "category"},
            "headers": {"X-Lookup-Key": SECRETS["lookup_key"]}}]})  # fmt: skip
        import polars as pl

        enriched = enricher.process(pl.DataFrame({"id": [1, 2, 3]}))
        shown += [repr(enricher), json.dumps(enricher.get_metadata(), default=str)]
        dashboard = Dashboard("d", {"title": "corpus"})
        dashboard.add_visualization(BarChart("b", {"x": "id", "y": "id"}))
        dashboard.save_html(folder / "dashboard.html", enriched)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    return "\n".join(records + shown)


@pytest.fixture(scope="module")
def database_up() -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)


def test_the_corpus_finds_no_secret(
    api: tuple[str, Recorder],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    database_up: None,
) -> None:
    url, recorder = api
    (tmp_path / "inproc").mkdir()
    inside = _in_process(url, tmp_path / "inproc", monkeypatch)
    assert "httpx INFO HTTP Request" in inside  # the libraries' records were captured
    assert "data_pipeline" in inside and "Traceback" in inside
    cli = tmp_path / "cli"
    cli.mkdir()
    ok = _pipeline_file(cli, url, "corpus_ok", sources(url))
    printed = _run_cli(ok)
    first_failure = dict(list(failing_sources(url).items())[:1])
    printed += _run_cli(_pipeline_file(cli, url, "corpus_fail", first_failure))
    assert "pipeline failed" in printed and "HTTP Request" in printed
    files = _files_text(tmp_path)
    assert "state" in files and "dashboard.html" in files and "rejects" in files
    leaks = {
        "in-process (logs at DEBUG, errors, tracebacks, metadata)": find_leaks(inside),
        "data-pipeline run -v": find_leaks(printed),
        "files written": find_leaks(files.replace(str(tmp_path), "")),
    }
    assert leaks == {k: [] for k in leaks}
    # the server did receive them: the corpus exercised every credential
    received = recorder.text()
    for key in ("ocp_key", "functions_key", "x_auth_token", "api_key_query", "oauth_access",
                "env_token", "so_header", "lookup_key"):  # fmt: skip
        assert SECRETS[key] in received, key


def test_the_search_finds_a_leak_when_libraries_are_not_cleaned(
    api: tuple[str, Recorder], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broken variant of issue 15: httpx's INFO line outside the redaction shows the keys."""
    from data_pipeline.core import log

    monkeypatch.setattr(log, "REDACTED_LOGGERS", frozenset({"data_pipeline"}))
    from data_pipeline.core.config import interpolate_env
    from data_pipeline.ingestion import RESTAPISource

    records: list[str] = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("httpx")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        item = interpolate_env(sources(api[0])["headers_and_params"], environ=ENV)
        RESTAPISource("leaky", item["config"]).ingest()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    leaked = find_leaks("\n".join(records))
    assert SECRETS["api_key_query"] in leaked and SECRETS["refresh_param"] in leaked
    assert SECRETS["amz_signature"] in leaked


def test_url_password_pieces_are_masked_in_text() -> None:
    from data_pipeline.core.secrets import redact_text

    text = f"could not reach http://cps:{URL_PASSWORD}@127.0.0.1:9/data (refused)"
    assert find_leaks(redact_text(text)) == []
    assert "http://cps:***@127.0.0.1:9/data" in redact_text(text)
