"""``engine: spark`` keeps the database passwords it sends to the executors out of Spark's files,
out of every Python log and out of the components' metadata (issue 12; docs/spark.md Secrets).

Three paths send a password to the executors: DatabaseSource's partitioned JDBC read
(``spark.read.format("jdbc")``, the password a connection property), RelationalDBStorage's
``df.write.jdbc`` into its staging table (likewise) and NoSQLDBStorage on MongoDB, whose
partitions connect with the storage's settings pickled into the ``mapInArrow`` task (here the
password is in the ``mongodb://`` URL). One pipeline file runs all three, with a distinctive
password given through ``${ENV}`` interpolation, in a child process (a process has one
SparkContext, and the event log is a setting of its start):

* on the standalone cluster of tests/e2e/conftest.py, with ``spark.eventLog.enabled``;
* over Spark Connect, the server on that cluster writing its own event log.

Then every file under the folders the test controls is searched for the password, plain,
URL-encoded and base64 (each of the three alignments): the event logs, the master's, worker's
and Connect server's logs, the worker's work dir (each executor's stdout and stderr, its
Python workers' output), the local dirs, the child's stdout and stderr, a log file that every
Python logger of the child writes to at DEBUG (py4j's commands included) and the components'
metadata. The oracle for the data: psycopg and pymongo reads of what was stored, compared with
the rows the test inserted; the event log must show the JDBC scan, the JDBC write and the
``MapInArrow`` write, so the paths under test did run on Spark.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from tests.conftest import JDBC_JARS, require_service
from tests.e2e.spark_cluster import events

pytestmark = pytest.mark.spark

#: the password: long enough to be unmistakable, with characters a URL must encode
SECRET = "Sp4rk-S3cr3t/pw@Q7:x%9~k"

#: run in a child process: the pipeline file with every Python logger writing to a file at
#: DEBUG; then the metadata of every component, in a file
RUN = """
import json, logging, sys, traceback
from pathlib import Path
out = Path(sys.argv[2])
handler = logging.FileHandler(out / "python.log", encoding="utf-8")
handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
logging.getLogger().addHandler(handler)
logging.getLogger().setLevel(logging.DEBUG)
from data_pipeline.pipeline import load_pipeline, run_pipeline
loaded = load_pipeline(sys.argv[1])
failed = None
try:
    run_pipeline(loaded)
except Exception:
    failed = traceback.format_exc()
meta = {name: c.get_metadata() for name, c in loaded.sources.items()}
meta.update({name: s.get_metadata() for name, (s, _) in loaded.storage.items()})
(out / "metadata.json").write_text(json.dumps(meta, default=str), encoding="utf-8")
print("@@" + json.dumps({"failed": failed}))
"""

PIPELINE = """
name: secrets
engine: spark
{spark}
sources:
  orders:
    type: DatabaseSource
    config:
      db_type: postgresql
      host: 127.0.0.1
      port: 5432
      database: test
      username: {role}
      password: "${{DP_TEST_PASSWORD}}"
      table: {table}
      spark: {{partition_column: id, num_partitions: 2}}
storage:
  pg:
    type: RelationalDBStorage
    config:
      db_type: postgresql
      host: 127.0.0.1
      port: 5432
      database: test
      username: {role}
      password: "${{DP_TEST_PASSWORD}}"
    store: [{{data: orders, table: {table}_out, if_exists: replace}}]
  docs:
    type: NoSQLDBStorage
    config:
      db_type: mongodb
      url: "mongodb://{role}:${{DP_TEST_PASSWORD}}@127.0.0.1:{mongo}/?authSource=admin"
      database: {database}
    store: [{{data: orders, table: orders, if_exists: replace}}]
"""

ROWS = [(i, f"g{i % 3}", i / 4) for i in range(1, 9)]


def forms(secret: str) -> dict[str, bytes]:
    """The password as it could be written: plain, URL-encoded, and base64 at each of the three
    alignments it can have inside a longer base64 text (the characters its bytes alone decide)."""
    raw = secret.encode()
    out = {
        "plain": raw,
        "url-encoded": quote(secret, safe="").encode(),
        "form-encoded": quote_plus(secret, safe="").encode(),
    }
    for pad in range(3):
        text = base64.b64encode(b"\0" * pad + raw)
        first = -(-8 * pad // 6)  # the first character made of the password's bits only
        last = 8 * (pad + len(raw)) // 6
        out[f"base64+{pad}"] = text[first:last]
    return out


def found(folders: list[Path], secret: str) -> list[str]:
    """Each file under ``folders`` that holds a form of ``secret``, with the form's name."""
    hits = []
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            data = path.read_bytes()
            hits += [f"{path} ({name})" for name, form in forms(secret).items() if form in data]
    return hits


@pytest.fixture(scope="module")
def mongo() -> Iterator[int]:
    from tests.integration.servers import secantus_server

    with secantus_server() as port:
        yield port


@pytest.fixture
def accounts(mongo: int) -> Iterator[dict[str, Any]]:
    """A PostgreSQL role and a MongoDB user whose password is SECRET (the local PostgreSQL
    trusts 127.0.0.1: any password is accepted, which is enough to follow where it travels),
    a table of ROWS owned by the role, dropped afterwards."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    if not JDBC_JARS:
        pytest.skip("no JDBC jars: apt-get install libpostgresql-jdbc-java")
    import psycopg
    import pymongo

    role = f"dp_secret_{uuid.uuid4().hex[:8]}"
    table = f"{role}_orders"
    admin = "host=127.0.0.1 port=5432 dbname=test user=postgres"
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{SECRET}'")
        con.execute(f"GRANT CREATE, USAGE ON SCHEMA public TO {role}")
        con.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, g TEXT, v DOUBLE PRECISION)")
        con.execute(f"ALTER TABLE {table} OWNER TO {role}")
        with con.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s)", ROWS)
    client: Any = pymongo.MongoClient("127.0.0.1", mongo)
    client.admin.command("createUser", role, pwd=SECRET, roles=["root"])
    try:
        yield {"role": role, "table": table, "mongo": mongo, "client": client}
    finally:
        client.close()
        with psycopg.connect(admin, autocommit=True) as con:
            con.execute(f"DROP OWNED BY {role}")
            con.execute(f"DROP ROLE {role}")


def run_child(tmp: Path, pipeline: str, env: dict[str, str]) -> None:
    path = tmp / "pipeline.yaml"
    path.write_text(pipeline, encoding="utf-8")
    env = {
        **env,
        # in the URL's password position it is percent-encoded by the interpolation
        "DP_TEST_PASSWORD": SECRET,
    }
    with (tmp / "stdout.txt").open("wb") as out, (tmp / "stderr.txt").open("wb") as err:
        done = subprocess.run(
            [sys.executable, "-c", RUN, str(path), str(tmp)], env=env, stdout=out, stderr=err
        )
    stdout = (tmp / "stdout.txt").read_text(errors="replace")
    if done.returncode != 0:
        stderr = (tmp / "stderr.txt").read_text(errors="replace")
        pytest.fail(f"child failed ({done.returncode}):\n{stdout[-3000:]}\n{stderr[-5000:]}")
    result = json.loads(next(x for x in stdout.splitlines() if x.startswith("@@"))[2:])
    assert result["failed"] is None, result["failed"]


def check_stored(accounts: dict[str, Any], database: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres") as con:
        got = con.execute(f"SELECT id, g, v FROM {accounts['table']}_out ORDER BY id").fetchall()
    assert got == ROWS
    coll = accounts["client"][database]["orders"]
    docs = sorted((d["id"], d["g"], d["v"]) for d in coll.find({}, {"_id": 0}))
    assert docs == ROWS


def check_paths_ran_on_spark(log: list[dict[str, Any]]) -> None:
    plans = "\n".join(
        e["physicalPlanDescription"]
        for e in log
        if e["Event"].endswith("SparkListenerSQLExecutionStart")
    )
    assert "JDBCRelation" in plans, plans  # the partitioned read
    assert "SaveIntoDataSourceCommand" in plans and "JdbcRelationProvider" in plans, plans
    assert "MapInArrow" in plans, plans  # the documents written by the partitions


def check_metadata(tmp: Path) -> None:
    meta = json.loads((tmp / "metadata.json").read_text(encoding="utf-8"))
    assert set(meta) == {"orders", "pg", "docs"}
    assert meta["orders"]["config"]["password"] == "***"
    assert meta["pg"]["config"]["password"] == "***"


def test_password_stays_out_of_spark_files_logs_and_metadata_on_a_cluster(
    cluster: dict[str, Any], accounts: dict[str, Any], tmp_path: Path
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
            "spark.local.dir": str(tmp_path / "local"),
            "spark.jars": ",".join(JDBC_JARS),
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.executor.memory": "512m",
            "spark.driver.memory": "512m",
            "spark.sql.shuffle.partitions": "2",
        },
    }
    database = f"{accounts['role']}_cluster"
    pipeline = PIPELINE.format(
        spark="spark: " + json.dumps(spark), database=database, **_names(accounts)
    )
    run_child(tmp_path, pipeline, cluster["env"])

    check_stored(accounts, database)
    check_paths_ran_on_spark(events(log_dir))
    check_metadata(tmp_path)
    assert (tmp_path / "python.log").stat().st_size > 0
    assert found([tmp_path, cluster["tmp"]], SECRET) == []


def test_password_stays_out_of_spark_files_logs_and_metadata_over_spark_connect(
    cluster: dict[str, Any],
    connect_server: dict[str, Any],
    accounts: dict[str, Any],
    tmp_path: Path,
) -> None:
    database = f"{accounts['role']}_connect"
    pipeline = PIPELINE.format(spark="", database=database, **_names(accounts))
    env = {**cluster["env"], "SPARK_REMOTE": connect_server["remote"]}
    run_child(tmp_path, pipeline, env)

    check_stored(accounts, database)
    log = events(connect_server["events"])
    check_paths_ran_on_spark(log)
    # the server logs each operation's plan as text, the JDBC options in it: the password's
    # option is there, masked by the redaction pattern the JDBC read and write set
    texts = "\n".join(e.get("statementText", "") for e in log)
    assert 'key: "partitionColumn"' in texts and 'key: "password"' not in texts
    check_metadata(tmp_path)
    assert found([tmp_path, connect_server["tmp"], cluster["tmp"]], SECRET) == []


def _names(accounts: dict[str, Any]) -> dict[str, Any]:
    return {"role": accounts["role"], "table": accounts["table"], "mongo": accounts["mongo"]}
