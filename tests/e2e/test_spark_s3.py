"""``engine: spark`` on ``s3://`` (issue 12): FileSystemSource is a ``spark.read`` of ``s3a://``
on the executors, its ``storage_options`` handed to Hadoop's S3A file system as ``fs.s3a.*``;
FileSystemStorage with an ``s3://`` base_path is written by the executors too: part files into a
staging prefix, published by the driver under a manifest (storage/_objects.py).

The S3 server is moto's (``python -m moto.server``) on 127.0.0.1, recording each request: the
objects must have been fetched by Hadoop's S3A client (the AWS Java SDK) signing with the
source's key, so ``storage_options`` reached Spark. (moto cannot check the Java SDK's signatures:
it signs ``User-Agent``, which botocore, moto's verifier, never does.) Hadoop's S3A file system is hadoop-aws 3.3.1 with the AWS SDK
bundle 1.11.901 (scripts/fetch-spark-jars.sh, from PyPI), on the suite's one SparkSession
(tests/conftest.py: ``spark.jars`` and the settings that version needs under Hadoop 3.4+).

Oracles: boto3 GETs of the same objects, parsed by pyarrow; the aggregate in plain Python.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from data_pipeline.pipeline import run_pipeline
from tests.conftest import REQUIRE_SERVICES, S3A_JARS, SPARK_JARS_DIR, to_polars
from tests.integration.test_filesystem_remote import _free_port, _stop, _wait_http

pytestmark = [pytest.mark.spark, pytest.mark.service]


def plan(frame: Any) -> str:
    return str(frame._jdf.queryExecution().executedPlan().toString())


KEY = "AKIASPARKS3ATEST0001"
SECRET = "spark-s3a-secret-7c6b5a49"


@pytest.fixture(scope="module")
def s3a(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """moto's S3 server recording every request it gets (headers included) into a file; returns
    the endpoint, a boto3 client, ``storage_options`` and a function reading the recording."""
    if not S3A_JARS:
        message = (
            f"hadoop-aws / AWS SDK jars missing in {SPARK_JARS_DIR}: run "
            "scripts/fetch-spark-jars.sh (make pytest does)"
        )
        if REQUIRE_SERVICES:
            pytest.fail(message + "; DATA_PIPELINE_REQUIRE_SERVICES=1 forbids skipping")
        pytest.skip(message)
    import boto3

    recording = tmp_path_factory.mktemp("moto") / "requests.jsonl"
    port = _free_port()
    env = dict(os.environ, MOTO_RECORDER_FILEPATH=str(recording), MOTO_ENABLE_RECORDING="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_http(endpoint + "/moto-api/", process)
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="AKIAORACLE0000000001",
            aws_secret_access_key="oracle",
        )

        def requests() -> list[dict[str, Any]]:
            lines = recording.read_text(encoding="utf-8").splitlines()
            return [json.loads(line) for line in lines if line.strip()]

        options = {"endpoint_url": endpoint, "key": KEY, "secret": SECRET}
        yield {"endpoint": endpoint, "client": client, "options": options, "requests": requests}
    finally:
        _stop(process)


def sales(n: int = 600) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(n)),
            "region": [("n", "s", "e")[i % 3] for i in range(n)],
            "amount": [float(i % 97) / 4 for i in range(n)],
        }
    )


def spec(engine: str, bucket: str, fmt: str, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "engine": engine,
        "sources": {
            "sales": {
                "type": "FileSystemSource",
                "config": {
                    "path": f"s3://{bucket}/in/*.{fmt}",
                    "format": fmt,
                    "source_file_column": "file",
                    "storage_options": options,
                },
            }
        },
        "processing": {
            "by_region": {
                "input": "sales",
                "steps": [
                    {
                        "type": "DataFilter",
                        "config": {"conditions": [{"column": "amount", "op": ">", "value": 3}]},
                    },
                    {
                        "type": "DataAggregator",
                        "config": {
                            "group_by": ["region"],
                            "aggregations": {"amount": ["sum", "count"]},
                        },
                    },
                ],
            }
        },
        "storage": {
            "lake": {
                "type": "FileSystemStorage",
                "config": {"base_path": f"s3://{bucket}/lake_{engine}", "storage_options": options},
                "store": [{"data": "by_region"}, {"data": "sales", "table": "raw"}],
            }
        },
    }


def get_table(client: Any, bucket: str, key: str, fmt: str) -> pl.DataFrame:
    """An object read with boto3 and parsed by pyarrow (the oracle's reader)."""
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    if fmt == "csv":
        import pyarrow.csv as pacsv

        table = pacsv.read_csv(io.BytesIO(body))
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(body))
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_s3_source_is_read_by_the_executors_and_stored_back(
    spark: Any, s3a: dict[str, Any], fmt: str
) -> None:
    client = s3a["client"]
    bucket = f"b-{uuid.uuid4().hex[:12]}"  # S3A caches a file system per bucket: a new one
    client.create_bucket(Bucket=bucket)
    keys = []
    for i, part in enumerate(sales().iter_slices(200)):
        body = part.write_csv().encode() if fmt == "csv" else _parquet(part)
        keys.append(f"in/part{i}.{fmt}")
        client.put_object(Bucket=bucket, Key=keys[-1], Body=body)

    got = run_pipeline(spec("spark", bucket, fmt, s3a["options"]))
    to_polars(got.data["sales"])  # the executors read the objects now (a lazy frame until then)

    # every object was fetched by S3A (the Java SDK), signed with the source's key
    fetched: dict[str, list[str]] = {}
    for request in s3a["requests"]():
        headers = {k.lower(): v for k, v in request["headers"].items()}
        if "aws-sdk-java" in headers.get("user-agent", "") and request["method"] == "GET":
            path = request["url"].split("://", 1)[1].split("/", 1)[1].split("?", 1)[0]
            credential = headers["authorization"].split("Credential=", 1)[1].split("/", 1)[0]
            fetched.setdefault(path, []).append(credential)
    for key in keys:
        assert set(fetched.get(f"{bucket}/{key}", [])) == {KEY}, (key, fetched)

    source = got.data["sales"]
    text = plan(source)
    # the executors scanned the objects through S3A: no rows came from the driver
    assert "FileScan" in text and "ExistingRDD" not in text and "LocalTableScan" not in text
    assert f"s3a://{bucket}/in/part0.{fmt}" in text
    oracle = pl.concat(
        get_table(client, bucket, key, fmt).with_columns(file=pl.lit(f"s3://{bucket}/{key}"))
        for key in keys
    )
    assert_frame_equal(to_polars(source).sort("id"), oracle.sort("id"), check_dtypes=False)
    assert dict(to_polars(source).schema) == dict(oracle.schema)

    # FileSystemStorage on s3://: written by the executors as a dataset per name (part files
    # and a manifest), read back with boto3 + pyarrow
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for row in sales().iter_rows(named=True):
        if row["amount"] > 3:
            sums[row["region"]] = sums.get(row["region"], 0.0) + row["amount"]
            counts[row["region"]] = counts.get(row["region"], 0) + 1
    stored = s3_dataset(client, bucket, "lake_spark/by_region").sort("region")
    assert stored.columns == ["region", "amount_sum", "amount_count"]
    assert stored["region"].to_list() == sorted(sums)
    assert stored["amount_sum"].to_list() == pytest.approx([sums[r] for r in sorted(sums)])
    assert stored["amount_count"].to_list() == [counts[r] for r in sorted(sums)]
    raw = s3_dataset(client, bucket, "lake_spark/raw")
    assert_frame_equal(raw.sort("id"), oracle.sort("id"), check_dtypes=False)

    # the same file on Polars reads and stores the same
    want = run_pipeline(spec("polars", bucket, fmt, s3a["options"]))
    assert_frame_equal(
        to_polars(source).sort("id"), to_polars(want.data["sales"]).sort("id"), check_dtypes=True
    )
    on_polars = get_table(client, bucket, "lake_polars/by_region.parquet", "parquet")
    assert_frame_equal(stored, on_polars.sort("region"), check_dtypes=False)


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


# -- FileSystemStorage on s3:// written by the executors ------------------------------------------


def s3_keys(client: Any, bucket: str, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return sorted(keys)


def s3_dataset(client: Any, bucket: str, prefix: str) -> pl.DataFrame:
    """The oracle's read of a dataset: its manifest and each part it lists, GET with boto3 and
    parsed by pyarrow, hive partition values taken from the part's path; the prefix must hold
    exactly the manifest and those parts (nothing partial, nothing left over)."""
    import pyarrow.parquet as pq

    body = client.get_object(Bucket=bucket, Key=f"{prefix}/_dp_manifest.json")["Body"].read()
    parts = json.loads(body)["parts"]
    assert s3_keys(client, bucket, prefix + "/") == sorted(
        [f"{prefix}/_dp_manifest.json", *(f"{prefix}/{p}" for p in parts)]
    )
    frames = []
    for part in parts:
        data = client.get_object(Bucket=bucket, Key=f"{prefix}/{part}")["Body"].read()
        frame = pl.from_arrow(pq.read_table(io.BytesIO(data)))
        assert isinstance(frame, pl.DataFrame)
        for piece in part.split("/")[:-1]:
            column, value = piece.split("=", 1)
            frame = frame.with_columns(pl.lit(value).alias(column))
        frames.append(frame)
    return pl.concat(frames, how="diagonal")


def no_staging_left(client: Any, bucket: str) -> None:
    assert [k for k in s3_keys(client, bucket) if ".tmp-" in k] == []


def _bucket(s3a: dict[str, Any]) -> str:
    bucket = f"w-{uuid.uuid4().hex[:12]}"  # S3A caches a file system per bucket: a new one
    s3a["client"].create_bucket(Bucket=bucket)
    return bucket


def _storage(s3a: dict[str, Any], bucket: str) -> Any:
    from data_pipeline.storage import FileSystemStorage

    return FileSystemStorage(
        name="lake",
        config={"base_path": f"s3://{bucket}/lake", "storage_options": s3a["options"]},
    )


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(sorted(frame.columns)).sort("id")


def test_spark_frame_stored_to_s3_is_written_by_the_executors(
    spark: Any, s3a: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """replace, append, fail and partition_by on s3://: the executors write the part files
    (the server saw them PUT by the Java SDK, under the staging prefix), the driver never
    collects the frame (toArrow / toPandas / collect fail here), rows come from the footers, and
    what boto3 + pyarrow read is exactly the rows given. An append reads the stored dataset's
    schema from the footers, not its rows."""
    from data_pipeline.core.errors import StorageError
    from tests.conftest import spark_frame

    client = s3a["client"]
    bucket = _bucket(s3a)
    storage = _storage(s3a, bucket)
    rows = sales(600)
    frame = spark_frame(spark, rows).repartition(3)

    def collected(*_: Any, **__: Any) -> Any:
        raise AssertionError("the Spark frame was collected on the driver")

    for method in ("toArrow", "toPandas", "collect"):  # on the class Spark made
        monkeypatch.setattr(type(frame), method, collected)

    def stored_rows_read(*_: Any, **__: Any) -> Any:
        raise AssertionError("the driver read the stored rows")

    import data_pipeline.storage._objects as objects_module

    monkeypatch.setattr(objects_module, "read_dataset", stored_rows_read)  # append: footers only

    result = storage.store(frame, "sales")
    assert result.rows == 600 and result.details["engine"] == "spark"
    assert result.target == f"s3://{bucket}/lake/sales"
    assert_frame_equal(_sorted(s3_dataset(client, bucket, "lake/sales")), _sorted(rows))
    written = [
        r["url"].split("://", 1)[1].split("/", 1)[1].split("?", 1)[0]
        for r in s3a["requests"]()
        if r["method"] == "PUT"
        and "aws-sdk-java" in {k.lower(): v for k, v in r["headers"].items()}.get("user-agent", "")
    ]
    assert any(
        w.startswith(f"{bucket}/lake/.sales.tmp-") and w.endswith(".parquet") for w in written
    )

    more = frame.filter("id < 200")
    result = storage.store(more, "sales", if_exists="append")
    assert result.rows == 200
    want = pl.concat([rows, rows.filter(pl.col("id") < 200)])
    assert_frame_equal(_sorted(s3_dataset(client, bucket, "lake/sales")), _sorted(want))

    with pytest.raises(StorageError, match="exists"):
        storage.store(more, "sales", if_exists="fail")
    assert_frame_equal(_sorted(s3_dataset(client, bucket, "lake/sales")), _sorted(want))

    result = storage.store(frame.filter("id >= 500"), "sales", if_exists="replace")
    assert result.rows == 100 and result.details["objects_removed"] > 0
    want = rows.filter(pl.col("id") >= 500)
    assert_frame_equal(_sorted(s3_dataset(client, bucket, "lake/sales")), _sorted(want))

    # hive partitions written by the executors
    result = storage.store(frame, "by_region", partition_by=["region"])
    assert result.rows == 600
    keys = s3_keys(client, bucket, "lake/by_region/")
    assert {k.split("/")[2] for k in keys if k.endswith(".parquet")} == {
        "region=n",
        "region=s",
        "region=e",
    }
    assert_frame_equal(_sorted(s3_dataset(client, bucket, "lake/by_region")), _sorted(rows))
    no_staging_left(client, bucket)

    monkeypatch.undo()
    # read back by retrieve() (the manifest's parts); a driver-side frame appended stays one dataset
    assert_frame_equal(_sorted(to_polars(storage.retrieve("sales"))), _sorted(want))
    storage.store(rows.filter(pl.col("id") < 3), "sales", if_exists="append")
    want = pl.concat([want, rows.filter(pl.col("id") < 3)])
    assert_frame_equal(_sorted(s3_dataset(client, bucket, "lake/sales")), _sorted(want))
    assert_frame_equal(_sorted(to_polars(storage.retrieve("sales"))), _sorted(want))
    assert s3_keys(client, bucket, "lake/sales.parquet") == []


def _failing(frame: Any) -> Any:
    """``frame`` whose second partition raises inside a mapInArrow, after the first one wrote."""

    def fail_on_second(batches: Iterator[Any]) -> Iterator[Any]:
        from pyspark import TaskContext

        context = TaskContext.get()
        assert context is not None
        if context.partitionId() == 1:
            raise RuntimeError("boom: partition 1 fails midway")
        yield from batches

    return frame.mapInArrow(fail_on_second, frame.schema)


def _objects(client: Any, bucket: str, prefix: str) -> dict[str, str]:
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.update({item["Key"]: item["ETag"] for item in page.get("Contents", [])})
    return out


@pytest.mark.parametrize("if_exists", ["replace", "append"])
def test_failed_spark_write_to_s3_leaves_the_target_as_it_was(
    spark: Any, s3a: dict[str, Any], if_exists: str
) -> None:
    """A task that raises midway (one partition wrote, the next failed): the store raises, the
    dataset holds the same objects (same ETags) and rows, and the staging prefix is gone."""
    import warnings

    from data_pipeline.core.errors import DataPipelineError
    from tests.conftest import spark_frame

    client = s3a["client"]
    bucket = _bucket(s3a)
    storage = _storage(s3a, bucket)
    rows = sales(300)
    frame = spark_frame(spark, rows).repartition(3)
    storage.store(frame, "sales")
    before = _objects(client, bucket, "lake/")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas")
        with pytest.raises(DataPipelineError, match="boom: partition 1 fails midway"):
            storage.store(_failing(frame), "sales", if_exists=if_exists)
    assert _objects(client, bucket, "lake/") == before
    assert_frame_equal(_sorted(s3_dataset(client, bucket, "lake/sales")), _sorted(rows))
    no_staging_left(client, bucket)


@pytest.mark.parametrize("if_exists", ["replace", "append"])
def test_failed_publish_to_s3_leaves_the_target_as_it_was(
    spark: Any, s3a: dict[str, Any], monkeypatch: pytest.MonkeyPatch, if_exists: str
) -> None:
    """The executors wrote every part; copying the second one into the dataset fails: the
    parts already copied are removed, the old objects are all there, the staging prefix is
    gone, and the next store works."""
    import s3fs

    from data_pipeline.core.errors import StorageError
    from tests.conftest import spark_frame

    client = s3a["client"]
    bucket = _bucket(s3a)
    storage = _storage(s3a, bucket)
    rows = sales(300)
    frame = spark_frame(spark, rows).repartition(3)
    storage.store(frame, "sales")
    before = _objects(client, bucket, "lake/")

    copy = s3fs.S3FileSystem._cp_file
    calls = []

    async def flaky(self: Any, path1: str, path2: str, **kwargs: Any) -> Any:
        calls.append(path2)
        if len(calls) == 2:
            raise OSError("injected: the second copy fails")
        return await copy(self, path1, path2, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_cp_file", flaky)
    with pytest.raises(StorageError, match="injected: the second copy fails"):
        storage.store(frame.filter("id < 100"), "sales", if_exists=if_exists)
    monkeypatch.undo()
    assert len(calls) == 2 and calls[0].startswith(f"{bucket}/lake/sales/part-")
    assert _objects(client, bucket, "lake/") == before
    assert_frame_equal(_sorted(s3_dataset(client, bucket, "lake/sales")), _sorted(rows))
    no_staging_left(client, bucket)
    storage.store(frame.filter("id < 100"), "sales", if_exists=if_exists)
    want = rows.filter(pl.col("id") < 100)
    if if_exists == "append":
        want = pl.concat([rows, want])
    assert_frame_equal(_sorted(s3_dataset(client, bucket, "lake/sales")), _sorted(want))


# -- S3A failures read as what they are -----------------------------------------------------------


@pytest.fixture
def s3_with_auth(s3a: dict[str, Any]) -> Iterator[str]:
    """A second moto S3 server that checks access keys (it knows none): every request is 403."""
    port = _free_port()
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="0")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_http(endpoint + "/moto-api/", process)
        yield endpoint
    finally:
        _stop(process)


def test_s3a_errors_name_their_cause_and_never_the_secret(
    spark: Any, s3a: dict[str, Any], s3_with_auth: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Spark read refused by S3 (a key the server does not know) says the Java exception's
    own line (AccessDeniedException ... Status Code: 403; a HEAD has no error body) and a hint about the credentials,
    not Py4J's "An error occurred while calling o68.load"; a blank key says
    NoAwsCredentialsException. The secret appears nowhere in the error or its causes' text."""
    from data_pipeline._spark import read_files
    from data_pipeline.core.errors import DataPipelineError
    from data_pipeline.ingestion import FileSystemSource

    secret = "wrong-secret-0b1d2e3f4a"
    cases = [
        (s3_with_auth, "AKIAWRONGKEY00000001", "Status Code: 403", "AccessDeniedException"),
        (s3a["endpoint"], "", "NoAwsCredentials", "AccessDeniedException"),
    ]
    for endpoint, key, cause, java in cases:
        bucket = f"e-{uuid.uuid4().hex[:12]}"  # a new S3A file system, built with these options
        source = FileSystemSource(
            name="sales",
            config={
                "path": f"s3://{bucket}/in/x.parquet",
                "format": "parquet",
                "storage_options": {"endpoint_url": endpoint, "key": key, "secret": secret},
            },
        )
        # the driver's own listing (s3fs) is skipped, so that Spark's S3A client meets the server
        monkeypatch.setattr(type(source), "resolve_files", lambda self: [self.settings.path])
        with pytest.raises(DataPipelineError) as caught:
            read_files(source, spark)
        message = str(caught.value)
        assert "An error occurred while calling" not in message, message
        assert java in message and cause in message, message
        assert "credentials" in message.split("Hint:", 1)[1], message
        chain: list[str] = []
        error: BaseException | None = caught.value
        while error is not None:
            chain.append(str(error))
            error = error.__cause__
        assert all(secret not in text for text in chain), chain


def test_what_a_killed_s3_store_leaves_is_ignored_then_removed(
    spark: Any, s3a: dict[str, Any]
) -> None:
    """A driver killed between copying parts in and PUTting the manifest leaves unlisted part
    objects under the dataset (here put there by hand, as such a writer would): retrieve() reads
    only the manifest's parts, and the next replace deletes the strays."""
    from tests.conftest import spark_frame

    client = s3a["client"]
    bucket = _bucket(s3a)
    storage = _storage(s3a, bucket)
    rows = sales(90)
    frame = spark_frame(spark, rows).repartition(2)
    storage.store(frame, "sales")
    stray = _parquet(rows.filter(pl.col("id") < 5))
    client.put_object(Bucket=bucket, Key="lake/sales/part-deadbeef0000-part-0.parquet", Body=stray)
    assert_frame_equal(_sorted(to_polars(storage.retrieve("sales"))), _sorted(rows))

    storage.store(frame.filter("id >= 80"), "sales", if_exists="replace")
    want = rows.filter(pl.col("id") >= 80)
    assert_frame_equal(_sorted(s3_dataset(client, bucket, "lake/sales")), _sorted(want))
    assert_frame_equal(_sorted(to_polars(storage.retrieve("sales"))), _sorted(want))
