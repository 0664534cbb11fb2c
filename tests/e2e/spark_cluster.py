"""A standalone Spark cluster and a Spark Connect server on 127.0.0.1, for the e2e tests.

The master and the worker are started with ``spark-class org.apache.spark.deploy.master.Master``
/ ``...deploy.worker.Worker`` from the pyspark wheel's ``bin/`` (the wheel has no ``sbin``
scripts); the Connect server with ``spark-submit --class ...SparkConnectServer`` (the connect
jar ships in the wheel). Every directory they write (logs, the worker's work dir, local dirs)
is under the ``tmp`` folder given, so a test can read all of it. The fixtures are in
``tests/e2e/conftest.py``.
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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


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
        SPARK_LOCAL_DIRS=str(tmp / "local"),  # the executors' block and shuffle files
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
    """End a process started here, with the JVM it launched (its own process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def standalone_cluster(tmp: Path) -> Iterator[dict[str, Any]]:
    """A standalone master and one worker (2 cores) on 127.0.0.1, stopped on exit."""
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


@contextmanager
def connect_server(
    cluster: dict[str, Any], tmp: Path, jars: list[str] | None = None
) -> Iterator[dict[str, Any]]:
    """A Spark Connect server whose executors are the cluster's; its event log, its local dir
    and its output (``connect.log``) are under ``tmp``."""
    log_dir = tmp / "events"
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
        "spark.local.dir": str(tmp / "local"),
    }
    server = start(
        [
            spark_bin("spark-submit"),
            *("--class", "org.apache.spark.sql.connect.service.SparkConnectServer"),
            *("--master", cluster["url"]),
            *(("--jars", ",".join(jars)) if jars else ()),
            *[x for k, v in confs.items() for x in ("--conf", f"{k}={v}")],
            "spark-internal",  # the server's class is on the wheel's classpath (jars/)
        ],
        tmp / "connect.log",
        cluster["env"],
    )
    try:
        wait_for(server, tmp / "connect.log", "Spark Connect server started")
        yield {"remote": f"sc://127.0.0.1:{port}", "events": log_dir, "tmp": tmp}
    finally:
        stop(server)


def events(folder: Path) -> list[dict[str, Any]]:
    """Every event of the event logs under ``folder`` (uncompressed, one JSON object a line)."""
    out: list[dict[str, Any]] = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith((".", "appstatus")):
            out += [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return out
