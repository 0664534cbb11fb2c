"""``engine: spark`` on a real standalone cluster and over Spark Connect (issue 12).

The module starts, once, a standalone master and one worker on 127.0.0.1
(``spark-class org.apache.spark.deploy.master.Master`` / ``...deploy.worker.Worker`` from the
pyspark wheel's ``bin/``: the wheel has no ``sbin`` scripts) and, for the Connect test, a Spark
Connect server (``spark-submit --class ...SparkConnectServer``, the connect jar ships in the
wheel) whose master is that cluster. Each test runs the same pipeline file (Parquet files ->
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
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.conftest import REQUIRE_SERVICES, spark_unavailable

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spark_bin(name: str) -> str:
    import pyspark

    return str(Path(pyspark.__file__).parent / "bin" / name)


def environment(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_LOG_DIR=str(tmp / "logs"),
        SPARK_WORKER_DIR=str(tmp / "work"),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        # no REST submission server (it would take the fixed port 6066)
        SPARK_MASTER_OPTS="-Dspark.master.rest.enabled=false",
        PYTHONPATH=os.pathsep.join(
            p for p in (str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")) if p
        ),
    )
    env.pop("SPARK_REMOTE", None)
    return env


def wait_for(proc: subprocess.Popen[bytes], log: Path, marker: str) -> None:
    """Until ``marker`` appears in ``log``; fails (with the log's end) if the process exits."""
    while marker not in log.read_text(errors="replace"):
        if proc.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            pytest.fail(f"{proc.args!r} exited with {proc.returncode} before {marker!r}:\n{tail}")
        time.sleep(0.5)


def start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            args, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End a process this module started, with the JVM it launched (its own process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A standalone master and one worker (2 cores) on 127.0.0.1; stopped after the module."""
    reason = spark_unavailable()
    if reason:
        if REQUIRE_SERVICES:
            pytest.fail(f"Spark unavailable: {reason}")
        pytest.skip(f"Spark unavailable: {reason}")
    tmp = tmp_path_factory.mktemp("cluster")
    env = environment(tmp)
    port = free_port()
    url = f"spark://127.0.0.1:{port}"
    master = start(
        [
            spark_bin("spark-class"),
            "org.apache.spark.deploy.master.Master",
            *("--host", "127.0.0.1", "--port", str(port)),
            *("--webui-port", str(free_port())),
        ],
        tmp / "master.log",
        env,
    )
    procs = [master]
    try:
        wait_for(master, tmp / "master.log", "New state: ALIVE")
        worker = start(
            [
                spark_bin("spark-class"),
                "org.apache.spark.deploy.worker.Worker",
                *("--host", "127.0.0.1", "--webui-port", str(free_port())),
                *("--cores", "2", "--memory", "2g", url),
            ],
            tmp / "worker.log",
            env,
        )
        procs.append(worker)
        wait_for(worker, tmp / "worker.log", "Successfully registered with master")
        yield {"url": url, "env": env, "tmp": tmp, "procs": procs}
    finally:
        for proc in reversed(procs):
            stop(proc)


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


def events(folder: Path) -> list[dict[str, Any]]:
    """Every event of the event logs under ``folder`` (uncompressed, one JSON object a line)."""
    out: list[dict[str, Any]] = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith((".", "appstatus")):
            out += [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return out


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


@pytest.fixture(scope="module")
def connect_server(cluster: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A Spark Connect server (the connect jar of the wheel) whose executors are the cluster's."""
    tmp: Path = cluster["tmp"]
    log_dir = tmp / "connect-events"
    log_dir.mkdir()
    port = free_port()
    confs = {
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.memory": "1g",
        "spark.executor.memory": "512m",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": log_dir.as_uri(),
        "spark.eventLog.compress": "false",
        "spark.eventLog.rolling.enabled": "false",
    }
    server = start(
        [
            spark_bin("spark-submit"),
            *("--class", "org.apache.spark.sql.connect.service.SparkConnectServer"),
            *("--master", cluster["url"]),
            *[x for k, v in confs.items() for x in ("--conf", f"{k}={v}")],
            "spark-internal",  # the server's class is on the wheel's classpath (jars/)
        ],
        tmp / "connect.log",
        cluster["env"],
    )
    try:
        wait_for(server, tmp / "connect.log", "Spark Connect server started")
        yield {"remote": f"sc://127.0.0.1:{port}", "events": log_dir}
    finally:
        stop(server)


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
