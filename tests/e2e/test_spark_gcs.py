"""``engine: spark`` on ``gs://`` (issue 12): FileSystemSource is a ``spark.read`` of ``gs://`` on
the executors, its gcsfs ``storage_options`` (``endpoint_url``, ``project``, ``token: anon``)
handed to Google's GCS connector as ``fs.gs.*``.

The GCS server is gcp-storage-emulator on 127.0.0.1 (tests/integration/test_filesystem_remote.py's
fixture). The connector is gcs-connector-hadoop3-2.2.6-shaded.jar (scripts/fetch-spark-jars.sh, from
PyPI), on the suite's one SparkSession (tests/conftest.py: ``spark.jars`` and the settings it
needs under Hadoop 3.5).

Oracle: gcsfs reads of the same objects, parsed by pyarrow.
"""

from __future__ import annotations

import io
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from data_pipeline.pipeline import run_pipeline
from tests.conftest import GCS_JARS, REQUIRE_SERVICES, SPARK_JARS_DIR, to_polars
from tests.integration.test_filesystem_remote import gcs, gcs_endpoint  # noqa: F401

pytestmark = [pytest.mark.spark, pytest.mark.service]


def plan(frame: Any) -> str:
    return str(frame._jdf.queryExecution().executedPlan().toString())


@pytest.fixture
def connector(spark: Any) -> None:
    if not GCS_JARS:
        message = (
            f"GCS connector jar missing in {SPARK_JARS_DIR}: run "
            "scripts/fetch-spark-jars.sh (make pytest does)"
        )
        if REQUIRE_SERVICES:
            pytest.fail(message + "; DATA_PIPELINE_REQUIRE_SERVICES=1 forbids skipping")
        pytest.skip(message)


def sales(n: int = 300) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(n)),
            "region": [("n", "s", "e")[i % 3] for i in range(n)],
            "amount": [float(i % 97) / 4 for i in range(n)],
        }
    )


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_gs_source_is_read_by_the_executors(
    spark: Any,
    connector: None,
    gcs: Any,  # noqa: F811 (the fixture imported above)
    fmt: str,
) -> None:
    fs, bucket, options = gcs
    keys = []
    for i, part in enumerate(sales().iter_slices(100)):
        if fmt == "csv":
            body = part.write_csv().encode()
        else:
            buffer = io.BytesIO()
            part.write_parquet(buffer)
            body = buffer.getvalue()
        keys.append(f"in/part{i}.{fmt}")
        fs.pipe(f"{bucket}/{keys[-1]}", body)

    spec = {
        "engine": "spark",
        "sources": {
            "sales": {
                "type": "FileSystemSource",
                "config": {
                    "path": f"gs://{bucket}/in/*.{fmt}",
                    "format": fmt,
                    "storage_options": options,
                },
            }
        },
    }
    source = run_pipeline(spec).data["sales"]
    text = plan(source)
    # the executors scanned the objects through the GCS connector: no rows came from the driver
    assert "FileScan" in text and "ExistingRDD" not in text and "LocalTableScan" not in text
    assert f"gs://{bucket}/in/part0.{fmt}" in text

    frames = []
    for key in keys:
        body = fs.cat(f"{bucket}/{key}")
        if fmt == "csv":
            import pyarrow.csv as pacsv

            table = pacsv.read_csv(io.BytesIO(body))
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(io.BytesIO(body))
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        frames.append(frame)
    oracle = pl.concat(frames)
    assert_frame_equal(to_polars(source).sort("id"), oracle.sort("id"), check_dtypes=False)
    assert len(oracle) == 300


def test_gcsfs_options_as_gcs_connector_settings(tmp_path: Any) -> None:
    """The mapping itself: a key file's path (its content never read), anon, and a refusal."""
    from data_pipeline._spark import hadoop_options
    from data_pipeline.core.errors import ConfigError

    key_file = tmp_path / "sa.json"
    key_file.write_text("{}", encoding="utf-8")
    got = hadoop_options(
        "gcs://b/k", {"endpoint_url": "http://h:1", "project": "p", "token": str(key_file)}
    )
    assert got == {
        "fs.gs.storage.root.url": "http://h:1",
        "fs.gs.project.id": "p",
        "fs.gs.auth.service.account.json.keyfile": str(key_file),
    }
    assert hadoop_options("gs://b/k", {"token": "anon"}) == {
        "fs.gs.auth.null.enable": "true",
        "fs.gs.auth.service.account.enable": "false",
    }
    for bad in ({"token": "cloud"}, {"token": str(tmp_path / "missing.json")}, {"x": 1}):
        with pytest.raises(ConfigError, match="no Spark"):
            hadoop_options("gs://b/k", bad)
