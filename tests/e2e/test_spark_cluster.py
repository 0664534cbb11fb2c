"""``engine: spark`` on a real standalone cluster and over Spark Connect (issue 12).

The ``cluster`` fixture (tests/e2e/conftest.py) starts a standalone master and one worker on
127.0.0.1 and, for the Connect test, a Spark Connect server whose master is that cluster
(tests/e2e/spark_cluster.py). Each test runs the same pipeline file (Parquet files ->
filter -> aggregate -> Parquet) in a separate Python process, since a process has one
SparkContext and the suite's local session is another.

What is asserted comes from Spark itself, not from our code: the application's event log (its
SQL plans, its stages' RDDs, the executor each task ran on) shows that the files were read by
``FileScanRDD`` tasks on an executor and the store was a write job on an executor, and that no
plan holds the data as ``LocalTableScan`` / ``Scan ExistingRDD``. The result is checked against
DuckDB SQL over the same input files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.e2e.spark_cluster import events

pytestmark = pytest.mark.spark

#: run in a child process: the pipeline file, then the source's physical plan and the stages
RUN = """
import contextlib, io, json, sys
from data_pipeline.pipeline import run_pipeline
run = run_pipeline(sys.argv[1])
text = io.StringIO()
with contextlib.redirect_stdout(text):
    run.data["sales"].explain()
print("@@" + json.dumps({"plan": text.getvalue(), "outputs": run.outputs}))
"""

PIPELINE = """
name: scale_out
engine: spark
{spark}
sources:
  sales:
    type: FileSystemSource
    config: {{path: {source}}}
processing:
  by_region:
    input: sales
    steps:
      - type: DataFilter
        config: {{conditions: [{{column: amount, op: ">", value: 3}}]}}
      - type: DataAggregator
        config: {{group_by: [region], aggregations: {{amount: [sum, count]}}}}
storage:
  lake:
    type: FileSystemStorage
    config: {{base_path: {lake}}}
    store: [{{data: by_region}}]
"""

ORACLE = """
SELECT region, sum(amount) AS amount_sum, count(amount)::BIGINT AS amount_count
FROM read_parquet('{source}/*.parquet') WHERE amount > 3 GROUP BY region ORDER BY region
"""


@pytest.fixture(scope="module")
def sales_files(cluster: dict[str, Any]) -> Path:
    """6,000 rows in three Parquet files (made here with polars, not by the code under test)."""
    folder = cluster["tmp"] / "sales"
    folder.mkdir()
    n = 6000
    frame = pl.DataFrame(
        {
            "id": list(range(n)),
            "region": [("north", "south", "east")[i % 3] for i in range(n)],
            "amount": [float(i % 97) / 4 for i in range(n)],
        }
    )
    for i, part in enumerate(frame.iter_slices(2000)):
        part.write_parquet(folder / f"part{i}.parquet")
    return folder


def oracle(source: Path) -> pl.DataFrame:
    return duckdb.sql(ORACLE.format(source=source)).pl()


def run_file(path: Path, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(path)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.fail(
            f"pipeline failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        )
    line = next(x for x in done.stdout.splitlines() if x.startswith("@@"))
    result: dict[str, Any] = json.loads(line[2:])
    return result


def executor_work(log: list[dict[str, Any]]) -> dict[str, set[str]]:
    """RDD name / SQL node -> the executor ids its tasks ran on (from stage and task events)."""
    rdds: dict[int, set[str]] = {}
    for e in log:
        if e["Event"] == "SparkListenerStageSubmitted":
            info = e["Stage Info"]
            names = {r["Name"] for r in info["RDD Info"]}
            names |= {json.loads(r["Scope"])["name"] for r in info["RDD Info"] if r.get("Scope")}
            rdds[info["Stage ID"]] = names
    ran: dict[str, set[str]] = {}
    for e in log:
        if e["Event"] == "SparkListenerTaskEnd":
            for name in rdds.get(e["Stage ID"], set()):
                ran.setdefault(name, set()).add(e["Task Info"]["Executor ID"])
    return ran


def sql_plans(log: list[dict[str, Any]]) -> list[str]:
    return [
        e["physicalPlanDescription"]
        for e in log
        if e["Event"].endswith("SparkListenerSQLExecutionStart")
    ]


def check_executors_did_the_work(log: list[dict[str, Any]]) -> None:
    executors = {e["Executor ID"] for e in log if e["Event"] == "SparkListenerExecutorAdded"}
    assert executors and "driver" not in executors
    plans = sql_plans(log)
    assert any("Scan parquet" in p for p in plans), plans  # "(1) Scan parquet" (formatted plan)
    assert not any("LocalTableScan" in p or "Scan ExistingRDD" in p for p in plans), plans
    writes = [p for p in plans if "InsertIntoHadoopFsRelationCommand" in p]
    assert writes, plans  # the store was a Spark write job
    ran = executor_work(log)
    # the files were opened by tasks on the worker's executor, and the write ran there too
    assert ran.get("FileScanRDD") and ran["FileScanRDD"] <= executors, ran
    assert ran.get("WriteFiles") and ran["WriteFiles"] <= executors, ran


def written(lake: Path) -> pl.DataFrame:
    return (
        pl.read_parquet(lake / "by_region" / "*.parquet")
        .select("region", "amount_sum", "amount_count")
        .sort("region")
    )


def test_pipeline_file_runs_on_the_executors_of_a_standalone_cluster(
    cluster: dict[str, Any], sales_files: Path, tmp_path: Path
) -> None:
    log_dir = tmp_path / "events"
    log_dir.mkdir()
    spark = {
        "master": cluster["url"],
        "conf": {
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": log_dir.as_uri(),
            "spark.eventLog.compress": "false",
            "spark.eventLog.rolling.enabled": "false",
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.executor.memory": "512m",
            "spark.driver.memory": "512m",
            "spark.sql.shuffle.partitions": "2",
        },
    }
    lake = tmp_path / "lake"
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        PIPELINE.format(spark="spark: " + json.dumps(spark), source=sales_files, lake=lake)
    )
    result = run_file(path, cluster["env"])

    assert "FileScan parquet" in result["plan"], result["plan"]
    check_executors_did_the_work(events(log_dir))
    assert_frame_equal(written(lake), oracle(sales_files), check_dtypes=False)


def test_same_file_over_spark_connect_sends_plans_not_data(
    connect_server: dict[str, Any], cluster: dict[str, Any], sales_files: Path, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    path = tmp_path / "pipeline.yaml"
    path.write_text(PIPELINE.format(spark="", source=sales_files, lake=lake))
    env = {**cluster["env"], "SPARK_REMOTE": connect_server["remote"]}
    result = run_file(path, env)

    plan = result["plan"]  # the source's plan, explained by the server
    assert "FileScan parquet" in plan and "LocalTableScan" not in plan, plan
    check_executors_did_the_work(events(connect_server["events"]))
    assert_frame_equal(written(lake), oracle(sales_files), check_dtypes=False)
