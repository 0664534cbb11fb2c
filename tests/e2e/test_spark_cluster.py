"""A pipeline file on a real standalone Spark cluster (a master and one worker on 127.0.0.1,
started here with ``spark-class``: the pyspark wheel has no ``sbin`` scripts).

The pipeline runs in a child process (a driver of its own; the suite's local session stays as it
is) with Spark's event log on. The event log is the oracle for *where* things ran: the source
is a ``FileScan`` whose tasks ran on the executor (not ``Scan ExistingRDD`` / ``LocalTableScan``,
which would mean the driver read the file and shipped it), and the stores are write commands
whose tasks ran on the executor. The stored result is checked against plain Polars.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from tests.conftest import spark_unavailable

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    while True:  # no time limit: a slow machine is not a failure
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``spark://127.0.0.1:<port>`` of a master with one registered worker (1 core, 1 GB)."""
    reason = spark_unavailable()
    if reason:
        pytest.skip(f"Spark unavailable: {reason}")
    import pyspark

    home = Path(pyspark.__file__).parent
    tmp = tmp_path_factory.mktemp("cluster")
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_WORKER_DIR": str(tmp / "work"),
    }
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    files: list[Any] = []

    def opened(path: Path) -> Any:
        files.append(path.open("wb"))
        return files[-1]

    try:
        master_log = tmp / "master.log"
        procs.append(
            subprocess.Popen(
                [str(home / "bin" / "spark-class"), "org.apache.spark.deploy.master.Master",
                 "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(free_port())],
                env=env, stdout=opened(master_log), stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        wait_for_port(port, procs[0], master_log)
        worker_log = tmp / "worker.log"
        procs.append(
            subprocess.Popen(
                [str(home / "bin" / "spark-class"), "org.apache.spark.deploy.worker.Worker",
                 f"spark://127.0.0.1:{port}", "--host", "127.0.0.1", "--cores", "1",
                 "--memory", "1g", "--webui-port", str(free_port()),
                 "--work-dir", str(tmp / "work")],
                env=env, stdout=opened(worker_log), stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        while "Successfully registered with master" not in worker_log.read_text(errors="replace"):
            if procs[1].poll() is not None:
                raise RuntimeError(f"the worker exited: {worker_log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"spark://127.0.0.1:{port}"
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait()
        for handle in files:
            handle.close()


def events(directory: Path) -> list[dict[str, Any]]:
    """The events of the one application logged in ``directory`` (Spark 4 writes a rolling
    log: a folder of ``events_<n>_...`` files; older Spark one file)."""
    files = sorted(
        p for p in directory.rglob("*") if p.is_file() and not p.name.startswith((".", "appstatus"))
    )
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]


def test_pipeline_reads_computes_and_writes_on_the_executors(cluster: str, tmp_path: Path) -> None:
    data = pl.DataFrame(
        {
            "region": [("n", "s", "e", "w")[i % 4] for i in range(4000)],
            "amount": [float(i % 101) for i in range(4000)],
        }
    )
    (tmp_path / "in").mkdir()
    for i, part in enumerate(data.iter_slices(1000)):
        part.write_parquet(tmp_path / "in" / f"p{i}.parquet")
    eventlog = tmp_path / "events"
    eventlog.mkdir()
    spec = {
        "name": "cluster",
        "engine": "spark",
        "spark": {
            "master": cluster,
            "conf": {
                "spark.eventLog.enabled": True,
                "spark.eventLog.dir": f"file://{eventlog}",
                "spark.eventLog.compress": False,  # plain JSON lines to read here
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
                "spark.ui.enabled": False,
                "spark.executor.memory": "512m",
                "spark.cores.max": 1,
                "spark.sql.shuffle.partitions": 2,
            },
        },
        "sources": {"sales": {"type": "FileSystemSource", "config": {"path": "in"}}},
        "processing": {
            "by_region": {
                "input": "sales",
                "steps": [
                    {
                        "type": "DataFilter",
                        "config": {"conditions": [{"column": "amount", "op": ">=", "value": 50}]},
                    },
                    {
                        "type": "DataAggregator",
                        "config": {"group_by": ["region"], "aggregations": {"amount": "sum"}},
                    },
                ],
            }
        },
        "storage": {
            "lake": {
                "type": "FileSystemStorage",
                "config": {"base_path": "out", "partition_by": ["region"]},
                "store": [{"data": "by_region"}],
            }
        },
    }
    yaml_path = tmp_path / "pipeline.yaml"
    yaml_path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", "from data_pipeline.cli import main; main()", "run", str(yaml_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    want = (
        data.filter(pl.col("amount") >= 50).group_by("region").agg(pl.col("amount").sum())
    ).sort("region")
    got = pl.read_parquet(
        tmp_path / "out" / "by_region" / "**" / "*.parquet", hive_partitioning=True
    )
    assert got.select("region", "amount").sort("region").to_dicts() == want.to_dicts()

    log = events(eventlog)
    plans = [
        e.get("physicalPlanDescription", "")
        for e in log
        if e["Event"].endswith("SparkListenerSQLExecutionStart")
    ]
    text = "\n".join(plans)
    # a file scan ("FileScan parquet" or, in the formatted plan, "Scan parquet" over an index
    # of the files), not rows the driver shipped
    assert "Scan parquet" in text and "InMemoryFileIndex" in text, text[:3000]
    assert "Scan ExistingRDD" not in text and "LocalTableScan" not in text
    assert "InsertIntoHadoopFsRelationCommand" in text  # the store is a Spark write job
    executors = {e["Task Info"]["Executor ID"] for e in log if e["Event"] == "SparkListenerTaskEnd"}
    assert executors and "driver" not in executors  # every task ran on the worker's executor
