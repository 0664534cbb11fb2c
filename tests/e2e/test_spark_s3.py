"""``engine: spark`` on ``s3://`` (issue 12): FileSystemSource is a ``spark.read`` of ``s3a://``
on the executors, its ``storage_options`` handed to Hadoop's S3A file system as ``fs.s3a.*``;
FileSystemStorage with an ``s3://`` base_path stores the frame (collected, as docs/spark.md says).

The S3 server is moto's (``python -m moto.server``) on 127.0.0.1, recording each request: the
objects must have been fetched by Hadoop's S3A client (the AWS Java SDK) signing with the
source's key, so ``storage_options`` reached Spark. (moto cannot check the Java SDK's signatures:
it signs ``User-Agent``, which botocore, moto's verifier, never does.) Hadoop's S3A file system is hadoop-aws 3.3.1 with the AWS SDK
bundle 1.11.901 (scripts/fetch-s3a-jars.sh, from PyPI), on the suite's one SparkSession
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
            "scripts/fetch-s3a-jars.sh (make pytest does)"
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

    # FileSystemStorage on s3://: one object per name, read back with boto3 + pyarrow
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for row in sales().iter_rows(named=True):
        if row["amount"] > 3:
            sums[row["region"]] = sums.get(row["region"], 0.0) + row["amount"]
            counts[row["region"]] = counts.get(row["region"], 0) + 1
    stored = get_table(client, bucket, "lake_spark/by_region.parquet", "parquet").sort("region")
    assert stored.columns == ["region", "amount_sum", "amount_count"]
    assert stored["region"].to_list() == sorted(sums)
    assert stored["amount_sum"].to_list() == pytest.approx([sums[r] for r in sorted(sums)])
    assert stored["amount_count"].to_list() == [counts[r] for r in sorted(sums)]
    raw = get_table(client, bucket, "lake_spark/raw.parquet", "parquet")
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
