"""FileSystemSource on remote URLs against real servers the fixtures start on 127.0.0.1.

* ``s3://``: moto's S3 server (``python -m moto.server``) in a subprocess, written with s3fs.
* ``gs://``: gcp-storage-emulator in a thread, written with gcsfs.
* ``http://`` / ``https://``: ``http.server`` in a thread, one server that answers byte-range
  requests (so polars scans it natively) and one that does not (read through fsspec); https with
  a self-signed certificate made by ``openssl``.

Every read is compared with an oracle: polars reading the same bytes from a local copy.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from data_pipeline.core.errors import (
    IngestionAuthenticationError,
    IngestionConnectionError,
    InputNotFoundError,
)
from data_pipeline.ingestion import FileSystemSource

pytestmark = pytest.mark.service

KEY = "AKIAREMOTETEST0001"
SECRET = "remote-test-secret-0f9e8d7c"
SALES = pl.DataFrame(
    {
        "id": [1, 2, 3, 4],
        "region": ["north", "south", "east", "west"],
        "amount": [10.5, 20.25, 30.0, 41.75],
    }
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``url`` answers (bounded: 300 tries)."""
    for _ in range(300):
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def _source(config: dict[str, Any], name: str = "remote") -> FileSystemSource:
    return FileSystemSource(name=name, config=config)


def _csv(frame: pl.DataFrame) -> bytes:
    return frame.write_csv().encode()


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


# -- S3 (moto) ----------------------------------------------------------------------------------


def _start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    _wait_http(endpoint + "/moto-api/", process)
    return process, endpoint


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    process, endpoint = _start_moto()
    yield endpoint
    _stop(process)


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    """A new bucket on the moto server; returns (s3fs file system, bucket, storage_options)."""
    import s3fs

    fs = s3fs.S3FileSystem(
        key=KEY, secret=SECRET, endpoint_url=s3_endpoint, skip_instance_cache=True
    )
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    options = {"endpoint_url": s3_endpoint, "key": KEY, "secret": SECRET}
    return fs, bucket, options


def test_s3_glob_csv_equals_local_read(s3: Any, tmp_path: Path) -> None:
    fs, bucket, options = s3
    parts = {"a.csv": SALES.head(2), "b.csv": SALES.tail(2)}
    for name, part in parts.items():
        fs.pipe(f"{bucket}/sales/{name}", _csv(part))
        (tmp_path / name).write_bytes(_csv(part))
    fs.pipe(f"{bucket}/sales/readme.txt", b"not data")
    fs.pipe(f"{bucket}/other/c.csv", _csv(SALES))

    source = _source(
        {
            "path": f"s3://{bucket}/sales/*.csv",
            "storage_options": options,
            "source_file_column": "file",
        }
    )
    out = source.ingest()

    assert source.resolve_files() == [f"s3://{bucket}/sales/a.csv", f"s3://{bucket}/sales/b.csv"]
    local = _source({"path": str(tmp_path / "*.csv")}, name="local").ingest()
    assert_frame_equal(out.drop("file"), local)
    assert (
        out["file"].to_list()
        == [f"s3://{bucket}/sales/a.csv"] * 2 + [f"s3://{bucket}/sales/b.csv"] * 2
    )


def test_s3_parquet_is_scanned_lazily(s3: Any, tmp_path: Path) -> None:
    fs, bucket, options = s3
    fs.pipe(f"{bucket}/data/sales.parquet", _parquet(SALES))
    SALES.write_parquet(tmp_path / "sales.parquet")
    url = f"s3://{bucket}/data/sales.parquet"

    lazy = _source({"path": url, "storage_options": options, "output": "lazy"}).ingest()

    assert isinstance(lazy, pl.LazyFrame)
    plan = lazy.select("amount").explain()
    assert "Parquet SCAN" in plan
    assert url in plan  # polars reads the object itself: no copy in memory first
    assert "1/3 COLUMNS" in plan  # only the selected column is fetched
    oracle = pl.read_parquet(tmp_path / "sales.parquet")
    assert_frame_equal(lazy.select("amount").collect(), oracle.select("amount"))
    assert_frame_equal(lazy.filter(pl.col("id") > 2).collect(), oracle.filter(pl.col("id") > 2))


def test_s3_directory_reads_data_files_only(s3: Any) -> None:
    fs, bucket, options = s3
    fs.pipe(f"{bucket}/lake/2024/part-0.parquet", _parquet(SALES.head(1)))
    fs.pipe(f"{bucket}/lake/2025/part-0.parquet", _parquet(SALES.tail(3)))
    fs.pipe(f"{bucket}/lake/_SUCCESS", b"")
    fs.pipe(f"{bucket}/lake/.hidden/x.parquet", _parquet(SALES))

    source = _source({"path": f"s3://{bucket}/lake", "storage_options": options})

    assert source.resolve_files() == [
        f"s3://{bucket}/lake/2024/part-0.parquet",
        f"s3://{bucket}/lake/2025/part-0.parquet",
    ]
    assert_frame_equal(source.ingest(), SALES)


def test_s3_every_format(s3: Any) -> None:
    fs, bucket, options = s3
    ipc = io.BytesIO()
    SALES.write_ipc(ipc)
    excel = io.BytesIO()
    SALES.write_excel(excel)
    fs.pipe(f"{bucket}/in/sales.csv.gz", gzip.compress(_csv(SALES)))
    fs.pipe(f"{bucket}/in/sales.jsonl", SALES.write_ndjson().encode())
    fs.pipe(f"{bucket}/in/sales.arrow", ipc.getvalue())
    fs.pipe(f"{bucket}/in/sales.xlsx", excel.getvalue())
    fs.pipe(f"{bucket}/in/sales.csv.bz2", bz2.compress(_csv(SALES)))
    fs.pipe(f"{bucket}/in/sales.json", json.dumps({"data": {"items": SALES.to_dicts()}}).encode())

    for name, extra in [
        ("sales.csv.gz", {}),
        ("sales.jsonl", {}),
        ("sales.arrow", {}),
        ("sales.xlsx", {}),  # read through fsspec
        ("sales.csv.bz2", {}),  # read through fsspec
        ("sales.json", {"data_selector": "data.items"}),  # read through fsspec
    ]:
        config = {"path": f"s3://{bucket}/in/{name}", "storage_options": options, **extra}
        assert_frame_equal(_source(config).ingest(), SALES, check_dtypes=name != "sales.xlsx")


def test_s3_latin1_csv_is_transcoded(s3: Any) -> None:
    fs, bucket, options = s3
    fs.pipe(f"{bucket}/l1.csv", "city;n\nZürich;1\nMálaga;2\n".encode("latin-1"))
    out = _source(
        {
            "path": f"s3://{bucket}/l1.csv",
            "storage_options": options,
            "encoding": "latin-1",
            "delimiter": ";",
        }
    ).ingest()
    assert out["city"].to_list() == ["Zürich", "Málaga"]


def test_s3_incremental_reads_only_new_and_changed_objects(s3: Any, tmp_path: Path) -> None:
    fs, bucket, options = s3
    fs.pipe(f"{bucket}/inc/a.csv", _csv(SALES.head(1)))
    fs.pipe(f"{bucket}/inc/b.csv", _csv(SALES.slice(1, 1)))
    config = {
        "path": f"s3://{bucket}/inc/*.csv",
        "storage_options": options,
        "incremental": True,
        "state_path": str(tmp_path / "state.json"),
        "source_file_column": "file",
    }
    source = _source(config)

    first = source.ingest()
    assert sorted(first["id"].to_list()) == [1, 2]

    fs.pipe(f"{bucket}/inc/c.csv", _csv(SALES.slice(2, 1)))  # new
    fs.pipe(f"{bucket}/inc/a.csv", _csv(SALES.slice(3, 1)))  # changed (new ETag)
    second = source.ingest()
    assert sorted(second["id"].to_list()) == [3, 4]
    assert set(second["file"].to_list()) == {f"s3://{bucket}/inc/a.csv", f"s3://{bucket}/inc/c.csv"}
    assert source.get_metadata()["details"]["files_skipped_unchanged"] == 1

    third = _source(config).ingest()  # a new source object: the state is on disk
    assert third.height == 0


def test_s3_missing_object_bucket_and_glob(s3: Any) -> None:
    _fs, bucket, options = s3
    cases = [
        f"s3://{bucket}/nope/sales.csv",
        f"s3://{bucket}/nope/*.csv",
        f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/sales.csv",
        f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/x/*.parquet",
    ]
    for url in cases:
        source = _source({"path": url, "storage_options": options})
        with pytest.raises(InputNotFoundError) as info:
            source.ingest()
        message = str(info.value)
        assert url in message
        assert "Hint:" in message
        assert SECRET not in message and KEY not in message
        assert source.get_metadata()["status"] == "failed"


def test_s3_bad_credentials_raise_authentication_error() -> None:
    import s3fs

    process, endpoint = _start_moto()  # its own server: authentication is switched on below
    try:
        fs = s3fs.S3FileSystem(key=KEY, secret=SECRET, endpoint_url=endpoint)
        fs.mkdir("locked")
        fs.pipe("locked/a.csv", _csv(SALES))
        request = urllib.request.Request(
            endpoint + "/moto-api/reset-auth",
            data=b"0",  # from now on every request must carry credentials moto knows
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        urllib.request.urlopen(request, timeout=10).close()
        wrong_secret = "wrong-secret-5a4b3c2d1e"
        for path in ["s3://locked/a.csv", "s3://locked/*.csv"]:
            source = _source(
                {
                    "path": path,
                    "storage_options": {
                        "endpoint_url": endpoint,
                        "key": "AKIAWRONGKEY00000001",
                        "secret": wrong_secret,
                    },
                }
            )
            with pytest.raises(IngestionAuthenticationError) as info:
                source.ingest()
            message = str(info.value)
            assert path in message
            assert "credentials" in message
            assert wrong_secret not in message and "AKIAWRONGKEY00000001" not in message
    finally:
        _stop(process)


def test_s3_server_down_raises_connection_error() -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    source = _source(
        {
            "path": "s3://bucket/sales/*.csv",
            "storage_options": {
                "endpoint_url": endpoint,
                "key": KEY,
                "secret": SECRET,
                "config_kwargs": {"retries": {"max_attempts": 1}},
            },
        }
    )
    with pytest.raises(IngestionConnectionError) as info:
        source.ingest()
    message = str(info.value)
    assert "s3://bucket/sales/*.csv" in message
    assert "endpoint_url" in message  # the hint
    assert SECRET not in message and KEY not in message


def test_storage_options_credentials_are_masked(s3: Any) -> None:
    fs, bucket, options = s3
    fs.pipe(f"{bucket}/m.csv", _csv(SALES))
    source = _source(
        {
            "path": f"s3://{bucket}/m.csv",
            "storage_options": {**options, "client_kwargs": {"region_name": "eu-west-1"}},
        }
    )
    source.ingest()

    metadata = source.get_metadata()
    shown = metadata["config"]["storage_options"]
    assert shown["key"] == "***" and shown["secret"] == "***"
    assert shown["endpoint_url"] == options["endpoint_url"]
    assert shown["client_kwargs"] == {"region_name": "eu-west-1"}
    text = json.dumps(metadata, default=str) + repr(source)
    assert KEY not in text and SECRET not in text


def test_native_s3_read_errors_are_translated(s3: Any) -> None:
    """An error polars' own S3 reader raises (object gone) becomes InputNotFoundError."""
    _fs, bucket, options = s3
    url = f"s3://{bucket}/gone.parquet"
    source = _source({"path": url, "storage_options": options})
    with pytest.raises(FileNotFoundError) as raw:  # polars' object store, against moto
        pl.scan_parquet(
            url,
            storage_options={
                "aws_endpoint_url": options["endpoint_url"],
                "aws_access_key_id": KEY,
                "aws_secret_access_key": SECRET,
                "aws_region": "us-east-1",
                "aws_allow_http": "true",
            },
        ).collect()
    error = source._translate_error(raw.value, "ingest")
    assert isinstance(error, InputNotFoundError)
    assert url in str(error)


# -- GCS (gcp-storage-emulator) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def gcs_endpoint() -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    _wait_http(endpoint + "/storage/v1/b")
    yield endpoint
    server.stop()


@pytest.fixture
def gcs(gcs_endpoint: str) -> Any:
    from gcsfs.core import GCSFileSystem

    options = {"endpoint_url": gcs_endpoint, "token": "anon", "project": "test"}
    fs = GCSFileSystem(**options, skip_instance_cache=True)
    bucket = f"g-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    return fs, bucket, options


def test_gcs_glob_directory_and_formats(gcs: Any, tmp_path: Path) -> None:
    fs, bucket, options = gcs
    fs.pipe(f"{bucket}/sales/a.csv", _csv(SALES.head(2)))
    fs.pipe(f"{bucket}/sales/b.csv", _csv(SALES.tail(2)))
    fs.pipe(f"{bucket}/lake/p.parquet", _parquet(SALES))
    fs.pipe(f"{bucket}/lake/_SUCCESS", b"")
    SALES.head(2).write_csv(tmp_path / "a.csv")
    SALES.tail(2).write_csv(tmp_path / "b.csv")

    glob = _source(
        {
            "path": f"gs://{bucket}/sales/*.csv",
            "storage_options": options,
            "source_file_column": "file",
        }
    )
    out = glob.ingest()
    local = _source({"path": str(tmp_path / "*.csv")}, name="local").ingest()
    assert_frame_equal(out.drop("file"), local)
    assert out["file"].unique(maintain_order=True).to_list() == [
        f"gs://{bucket}/sales/a.csv",
        f"gs://{bucket}/sales/b.csv",
    ]

    directory = _source({"path": f"gs://{bucket}/lake", "storage_options": options})
    assert directory.resolve_files() == [f"gs://{bucket}/lake/p.parquet"]
    assert_frame_equal(directory.ingest(), SALES)


def test_gcs_incremental(gcs: Any, tmp_path: Path) -> None:
    fs, bucket, options = gcs
    fs.pipe(f"{bucket}/inc/a.jsonl", SALES.head(2).write_ndjson().encode())
    config = {
        "path": f"gs://{bucket}/inc/",
        "storage_options": options,
        "incremental": True,
        "state_path": str(tmp_path / "state.json"),
    }
    source = _source(config)
    assert source.ingest()["id"].to_list() == [1, 2]
    assert source.ingest().height == 0
    fs.pipe(f"{bucket}/inc/b.jsonl", SALES.tail(2).write_ndjson().encode())
    assert source.ingest()["id"].to_list() == [3, 4]


def test_gcs_missing_object_and_server_down(gcs: Any) -> None:
    _fs, bucket, options = gcs
    for url in [f"gs://{bucket}/nope.csv", f"gs://{bucket}/nope/*.csv"]:
        with pytest.raises(InputNotFoundError) as info:
            _source({"path": url, "storage_options": options}).ingest()
        assert url in str(info.value)

    down = {**options, "endpoint_url": f"http://127.0.0.1:{_free_port()}"}
    with pytest.raises(IngestionConnectionError) as error:
        _source({"path": f"gs://{bucket}/a.csv", "storage_options": down}).ingest()
    assert f"gs://{bucket}/a.csv" in str(error.value)


# -- HTTP(S) (http.server) ------------------------------------------------------------------------


class _RangeHandler(SimpleHTTPRequestHandler):
    """``http.server`` plus byte ranges (``Range: bytes=a-b``), as real web servers serve."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_head(self) -> Any:
        header = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not header or not header.startswith("bytes=") or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        first, _, last = header[len("bytes=") :].partition("-")
        if first:
            start, end = int(first), min(int(last) if last else size - 1, size - 1)
        else:
            start, end = max(size - int(last), 0), size - 1
        handle = path.open("rb")
        handle.seek(start)
        body = io.BytesIO(handle.read(end - start + 1))
        handle.close()
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return body

    def end_headers(self) -> None:
        if self.command == "HEAD" or not self.headers.get("Range"):
            self.send_header("Accept-Ranges", "bytes")
        super().end_headers()


class _PlainHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(
    directory: Path, handler: type[SimpleHTTPRequestHandler], tls: Path | None = None
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=directory))
    if tls is not None:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls / "cert.pem", tls / "key.pem")
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("www")
    (root / "files").mkdir()
    SALES.write_parquet(root / "files" / "sales.parquet")
    (root / "files" / "sales.csv.gz").write_bytes(gzip.compress(_csv(SALES)))
    (root / "files" / "sales.csv").write_bytes(_csv(SALES))
    servers = {
        "ranged": _serve(root, _RangeHandler),
        "plain": _serve(root, _PlainHandler),
    }
    yield {
        "root": root,
        **{
            name: f"http://127.0.0.1:{server.server_address[1]}"
            for name, (server, _t) in servers.items()
        },
    }
    for server, thread in servers.values():
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_parquet_and_csv_gz_from_a_range_server_are_scanned_natively(
    web: dict[str, Any],
) -> None:
    url = f"{web['ranged']}/files/sales.parquet"
    lazy = _source({"path": url, "output": "lazy"}).ingest()
    plan = lazy.select("region").explain()
    assert "Parquet SCAN" in plan and "1/3 COLUMNS" in plan
    oracle = pl.read_parquet(web["root"] / "files" / "sales.parquet")
    assert_frame_equal(lazy.collect(), oracle)

    out = _source({"path": f"{web['ranged']}/files/sales.csv.gz"}).ingest()
    assert_frame_equal(out, pl.read_csv(web["root"] / "files" / "sales.csv"))


def test_http_without_ranges_is_read_through_fsspec(web: dict[str, Any]) -> None:
    oracle = pl.read_parquet(web["root"] / "files" / "sales.parquet")
    for name in ["sales.parquet", "sales.csv.gz", "sales.csv"]:
        url = f"{web['plain']}/files/{name}"
        source = _source({"path": url, "source_file_column": "file"})
        out = source.ingest()
        assert_frame_equal(out.drop("file"), oracle)
        assert out["file"].unique().to_list() == [url]


def test_http_directory_index_and_glob(web: dict[str, Any]) -> None:
    base = f"{web['plain']}/files"
    csvs = [f"{base}/sales.csv", f"{base}/sales.csv.gz"]
    # a directory URL is the server's HTML index page; its links are the files
    for path in [f"{base}/", base]:
        source = _source({"path": path, "format": "csv"})
        assert source.resolve_files() == csvs
        assert_frame_equal(source.ingest(), pl.concat([SALES, SALES]))
    glob = _source({"path": f"{base}/*.parquet"})
    assert glob.resolve_files() == [f"{base}/sales.parquet"]
    assert_frame_equal(glob.ingest(), SALES)


def test_http_incremental_uses_last_modified_and_size(web: dict[str, Any], tmp_path: Path) -> None:
    folder = web["root"] / f"inc-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    (folder / "a.csv").write_bytes(_csv(SALES.head(1)))
    source = _source(
        {
            "path": f"{web['plain']}/{folder.name}/",
            "incremental": True,
            "state_path": str(tmp_path / "state.json"),
        }
    )
    assert source.ingest()["id"].to_list() == [1]
    assert source.ingest().height == 0
    (folder / "a.csv").write_bytes(_csv(SALES.head(3)))  # another size
    (folder / "b.csv").write_bytes(_csv(SALES.tail(1)))
    assert sorted(source.ingest()["id"].to_list()) == [1, 2, 3, 4]
    assert source.ingest().height == 0


def test_http_404_names_the_url_without_credentials(web: dict[str, Any]) -> None:
    password = "http-pass-7e6d5c"
    port = web["plain"].rsplit(":", 1)[1]
    url = f"http://reader:{password}@127.0.0.1:{port}/files/missing.csv"
    with pytest.raises(InputNotFoundError) as info:
        _source({"path": url}).ingest()
    message = str(info.value)
    assert f"http://reader:***@127.0.0.1:{port}/files/missing.csv" in message
    assert password not in message


def test_http_server_down_raises_connection_error() -> None:
    url = f"http://127.0.0.1:{_free_port()}/files/sales.csv"
    with pytest.raises(IngestionConnectionError) as info:
        _source({"path": url}).ingest()
    assert url in str(info.value)


@pytest.fixture(scope="module")
def tls_web(web: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    tls = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(tls / "key.pem"),
            "-out",
            str(tls / "cert.pem"),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "OPENSSL_CONF": os.devnull},
    )
    server, thread = _serve(web["root"], _PlainHandler, tls=tls)
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_https_with_storage_options(tls_web: str, web: dict[str, Any]) -> None:
    # the certificate is self-signed: fsspec's HTTP file system passes ssl=False to aiohttp
    url = f"{tls_web}/files/sales.parquet"
    out = _source({"path": url, "storage_options": {"ssl": False}}).ingest()
    assert_frame_equal(out, pl.read_parquet(web["root"] / "files" / "sales.parquet"))
