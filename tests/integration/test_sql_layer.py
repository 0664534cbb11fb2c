"""The one SQL layer (core/sql) against real PostgreSQL, MariaDB and SQLite.

Each guarantee of issue 14's SQL half has a regression test here, and where a guarantee is a
drill (the row count check, native upserts, staging locks, transactions, identifier limits),
a second test runs the same drill against a deliberately broken variant and asserts that the
drill reports it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from data_pipeline.core.errors import (
    ConfigError,
    IngestionAuthenticationError,
    IngestionConnectionError,
    IngestionError,
    InputNotFoundError,
    StorageAuthenticationError,
    StorageConnectionError,
    StorageError,
    StorageSchemaError,
)
from data_pipeline.ingestion import DatabaseSource
from data_pipeline.storage import relational
from data_pipeline.storage.relational import STAGE_PREFIX, RelationalDBStorage
from tests.conftest import require_service
from tests.integration.test_storage_relational import DB, MY_HOST, MY_PORT, PG_HOST, PG_PORT

SERVERS = ["postgresql", "mariadb"]
ROUNDS = int(os.environ.get("DATA_PIPELINE_UPSERT_RACE_ROUNDS", "5"))
RACE_ROWS = int(os.environ.get("DATA_PIPELINE_UPSERT_RACE_ROWS", "20000"))


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DB]:
    handle = DB(str(request.param), tmp_path)
    yield handle
    handle.drop_all()


def hostile_text(n: int = 30) -> pl.DataFrame:
    """One text column: ``\\.`` early on (it ended PostgreSQL's CSV COPY), then other markers."""
    values: list[str | None] = [f"row {i}" for i in range(n)]
    values[3] = "\\."
    values[5] = "\\N"
    values[6] = ""
    values[7] = None
    values[8] = 'a "quoted", value'
    values[9] = "two\nlines\r\nand CR"
    values[10] = "NULL"
    values[11] = "\\.\n\\."
    return pl.DataFrame({"t": values})


# -- COPY cannot misread a value; the stored row count is checked ----------------------------


@pytest.mark.parametrize("mode", ["replace", "append", "upsert"])
def test_text_markers_survive_every_mode(db: DB, mode: str) -> None:
    table = db.table()
    frame = hostile_text().with_row_index("id").with_columns(pl.col("id").cast(pl.Int64))
    if mode != "replace":  # append / upsert into an existing table (one row there first)
        db.storage.store(pl.DataFrame({"id": [-1], "t": ["old"]}), table, primary_key="id")
    result = db.storage.store(frame, table, if_exists=mode, primary_key="id")
    assert result.rows == frame.height and result.details["rows_stored"] == frame.height
    out = db.storage.retrieve(table).filter(pl.col("id") >= 0).sort("id")
    assert out["t"].to_list() == frame["t"].to_list()  # the oracle: the values we sent


def test_row_count_check_catches_a_misreading_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The broken variant: the old CSV encoding (``\\.`` unquoted) loses rows; the count check
    turns that into an error and the table is unchanged (it lost 27 of 30 rows silently)."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    handle = DB("postgresql", Path("."))

    def unquoted(data: pl.DataFrame, step: int) -> Iterator[bytes]:
        yield data.write_csv(include_header=False, quote_style="necessary").encode()

    monkeypatch.setattr(relational, "_csv_chunks", unquoted)
    table = handle.table()
    try:
        handle.storage.store(pl.DataFrame({"t": ["kept"]}), table)
        for mode in ("replace", "append"):
            with pytest.raises(StorageError, match="stored 3 rows but the data has 30"):
                handle.storage.store(hostile_text(), table, if_exists=mode)
            assert handle.storage.retrieve(table)["t"].to_list() == ["kept"]
    finally:
        handle.drop_all()


# -- native upserts: two concurrent loads of the same new keys both succeed -------------------


def _race(handle: DB, table: str, rounds: int) -> list[BaseException]:
    """``rounds`` times: two clients upsert the same new keys at the same moment."""
    errors: list[BaseException] = []
    for r in range(rounds):
        keys = range(r * RACE_ROWS, (r + 1) * RACE_ROWS)
        barrier = threading.Barrier(2)

        def client(value: str, keys: range = keys, barrier: threading.Barrier = barrier) -> None:
            storage = handle.make(primary_key=["id"])  # its own connection
            frame = pl.DataFrame({"id": keys, "v": [value] * RACE_ROWS})
            barrier.wait()
            try:
                storage.store(frame, table, if_exists="upsert")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(v,)) for v in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return errors


@pytest.mark.parametrize("system", ["postgresql", "mariadb", "sqlite"])
def test_concurrent_upserts_of_new_keys_both_succeed(system: str, tmp_path: Path) -> None:
    handle = DB(system, tmp_path)
    table = handle.table("race")
    try:
        handle.storage.store(pl.DataFrame({"id": [-1], "v": ["seed"]}), table, primary_key="id")
        errors = _race(handle, table, ROUNDS)
        assert errors == []
        out = handle.storage.retrieve(table)
        assert out.height == 1 + ROUNDS * RACE_ROWS  # no key twice, none lost
        assert out["id"].n_unique() == out.height
        assert set(out.filter(pl.col("id") >= 0)["v"].unique()) <= {"a", "b"}
    finally:
        handle.drop_all()


def test_concurrent_upsert_drill_catches_update_then_insert(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broken variant: the old ``UPDATE`` then ``INSERT ... WHERE NOT EXISTS`` upsert.

    Two transactions each see the new keys as absent and both insert: the second fails with a
    duplicate key, which the drill above reports.
    """
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    from data_pipeline.core.sql.dialects import Dialect

    def update_then_insert(self: Dialect, target: str, source: str, columns: Any, key: Any) -> str:
        on = " AND ".join(f"t.{self.quote(k)} = s.{self.quote(k)}" for k in key)
        cols = ", ".join(self.quote(c) for c in columns)
        scols = ", ".join(f"s.{self.quote(c)}" for c in columns)
        sets = ", ".join(f"{self.quote(c)} = s.{self.quote(c)}" for c in columns if c not in key)
        return (
            f"UPDATE {target} AS t SET {sets} FROM {source} AS s WHERE {on}; "
            f"INSERT INTO {target} ({cols}) SELECT {scols} FROM {source} AS s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {on})"
        )

    monkeypatch.setattr(Dialect, "upsert_sql", update_then_insert)
    monkeypatch.setattr(relational._Backend, "count_check", lambda *a, **k: None)
    handle = DB("postgresql", Path("."))
    table = handle.table("race")
    try:
        handle.storage.store(pl.DataFrame({"id": [-1], "v": ["seed"]}), table, primary_key="id")
        errors = _race(handle, table, ROUNDS)
        assert errors, "the drill did not catch the racy upsert"
        assert all("duplicate key" in str(e) or "constraint" in str(e) for e in errors)
    finally:
        handle.drop_all()


def test_upsert_needs_a_unique_key(db: DB) -> None:
    table = db.table()
    db.storage.store(pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}), table)  # no primary key
    with pytest.raises(StorageSchemaError, match=r"no PRIMARY KEY or UNIQUE constraint on \(id\)"):
        db.storage.store(
            pl.DataFrame({"id": [2], "v": ["B"]}), table, if_exists="upsert", primary_key="id"
        )
    assert db.storage.retrieve(table).sort("id")["v"].to_list() == ["a", "b"]


# -- identifiers the database would cut or refuse ---------------------------------------------


@pytest.mark.parametrize(
    ("system", "name", "ok"),
    [
        ("postgresql", "c" * 63, True),
        ("postgresql", "c" * 64, False),  # PostgreSQL cuts to 63 bytes
        ("postgresql", "é" * 32, False),  # 64 bytes in UTF-8
        ("mariadb", "c" * 64, True),
        ("mariadb", "é" * 64, True),  # MariaDB counts characters
        ("mariadb", "c" * 65, False),
    ],
    ids=["pg-63", "pg-64", "pg-64-bytes", "maria-64", "maria-64-chars", "maria-65"],
)
def test_identifier_length_checked_before_writing(
    system: str, name: str, ok: bool, tmp_path: Path
) -> None:
    handle = DB(system, tmp_path)
    table = handle.table()
    frame = pl.DataFrame({"id": [1], name: ["v"]})
    try:
        if ok:
            handle.storage.store(frame, table)
            handle.storage.store(frame, table, if_exists="append")
            assert handle.storage.retrieve(table).columns == ["id", name]
        else:
            with pytest.raises(ConfigError, match=f"column name '{name}' is"):
                handle.storage.store(frame, table)
            assert table not in handle.storage.list_tables()  # nothing was written
            with pytest.raises(ConfigError, match="table name"):
                handle.storage.store(pl.DataFrame({"id": [1]}), name)
    finally:
        handle.drop_all()


def test_identifier_drill_catches_a_silent_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    """The broken variant (no length check): PostgreSQL cuts the 64-byte column name, and the
    next append of the same frame fails. The check above stops the first store instead."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    from data_pipeline.core.sql import dialects

    unlimited = dialects.Dialect("postgresql", '"', None, "bytes", "format")
    monkeypatch.setitem(dialects._DIALECTS, "postgresql", unlimited)
    handle = DB("postgresql", Path("."))
    table = handle.table()
    frame = pl.DataFrame({"id": [1], "c" * 64: ["v"]})
    try:
        handle.storage.store(frame, table)
        assert handle.storage.retrieve(table).columns == ["id", "c" * 63]  # silently cut
        with pytest.raises(StorageSchemaError):
            handle.storage.store(frame, table, if_exists="append")
    finally:
        handle.drop_all()


# -- a dead server: connect_timeout honoured, reported as a connection problem ----------------


@pytest.mark.parametrize("system", SERVERS)
@pytest.mark.parametrize("server_kind", ["closed port", "silent listener"])
def test_dead_server_is_a_connection_error_within_connect_timeout(
    system: str, server_kind: str
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    if server_kind == "closed port":
        listener.close()
    else:
        listener.listen(0)  # accepts the TCP handshake, never answers
    config = {
        "db_type": system,
        "host": "127.0.0.1",
        "port": port,
        "database": "test",
        "username": "loader",
        "password": "Dead-Server-PW-1",
        "connect_timeout": 2,
    }
    try:
        for make, error in (
            (
                lambda: RelationalDBStorage(name="dead", config=config).retrieve(query="SELECT 1"),
                StorageConnectionError,
            ),
            (
                lambda: DatabaseSource(
                    name="dead", config={**config, "query": "SELECT :x AS x", "params": {"x": 1}}
                ).ingest(),
                IngestionConnectionError,
            ),
            (
                lambda: DatabaseSource(name="dead", config={**config, "table": "t"}).ingest(),
                IngestionConnectionError,
            ),
        ):
            with pytest.raises(error) as info:
                make()
            message = str(info.value)
            assert "cannot connect to" in message and f"127.0.0.1:{port}/test" in message
            assert "check the query" not in message and "Dead-Server-PW-1" not in message
            assert info.value.transient
            if server_kind == "silent listener":
                # the driver's own connect_timeout ended the wait (libpq: "timeout expired",
                # PyMySQL: "timed out"); before, a query read waited out ConnectorX's 30 s pool
                # and failed with the pool's message. No clock in the test: the machine is shared.
                assert "timeout expired" in message or "timed out" in message, message
    finally:
        listener.close()


# -- errors by class and SQLSTATE on real servers ---------------------------------------------


def test_a_value_saying_connection_refused_is_a_data_error(db: DB) -> None:
    table = db.table()
    db.storage.store(pl.DataFrame({"n": [1]}), table)
    if db.system == "sqlite":
        pytest.skip("SQLite stores any value in any column")
    with pytest.raises(StorageSchemaError) as info:
        db.storage.store(pl.DataFrame({"n": ["connection refused"]}), table, if_exists="append")
    assert not isinstance(info.value, StorageConnectionError) and not info.value.transient
    if db.system == "postgresql":
        with pytest.raises(StorageSchemaError) as read:
            db.storage.retrieve(query="SELECT 'connection refused'::int AS n")
        assert not read.value.transient
        src = DatabaseSource(
            name="v", config={**db.config, "query": "SELECT 'connection refused'::int AS n"}
        )
        with pytest.raises(IngestionError) as ingest:
            src.ingest()
        assert not isinstance(ingest.value, IngestionConnectionError)
        assert "22P02" in str(ingest.value)


def test_unknown_role_is_an_authentication_error() -> None:
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    config = {
        "db_type": "postgresql",
        "host": PG_HOST,
        "port": PG_PORT,
        "database": "test",
        "username": f"dp_no_role_{uuid.uuid4().hex[:6]}",
    }
    with pytest.raises(StorageAuthenticationError, match="does not exist") as info:
        RelationalDBStorage(name="r", config=config).retrieve(query="SELECT 1")
    assert "check host, port" not in str(info.value)
    with pytest.raises(IngestionAuthenticationError):
        DatabaseSource(name="r", config={**config, "query": "SELECT 1"}).ingest()
    bad_db = {**config, "username": "postgres", "database": f"dp_no_db_{uuid.uuid4().hex[:6]}"}
    with pytest.raises(StorageConnectionError, match="cannot open the database") as missing:
        RelationalDBStorage(name="r", config=bad_db).retrieve(query="SELECT 1")
    assert not missing.value.transient


def test_missing_table_on_every_database(db: DB) -> None:
    with pytest.raises(InputNotFoundError):
        db.storage.retrieve(query="SELECT * FROM dp_surely_missing_table")


# -- types come back as stored, with or without params ----------------------------------------


def test_int32_and_decimal_scale_through_retrieve_with_params(db: DB) -> None:
    table = db.table()
    frame = pl.DataFrame(
        {
            "i": pl.Series([1, -2, 2_000_000_000, None], dtype=pl.Int32),
            "d": pl.Series(
                [Decimal("1.0000000001"), Decimal("-1234567890.0123456789"), Decimal("0"), None],
                dtype=pl.Decimal(20, 10),
            ),
        }
    )
    if db.system == "sqlite":  # decimals are REAL there: 20 digits are refused, not rounded
        with pytest.raises(StorageSchemaError, match="column 'd' cannot be stored"):
            db.storage.store(frame, table)
        frame = frame.select("i")
    db.storage.store(frame, table)
    q = f'"{table}"' if not db.system.startswith("mariadb") else f"`{table}`"
    plain = db.storage.retrieve(query=f"SELECT * FROM {q}")
    bound = db.storage.retrieve(
        query=f"SELECT * FROM {q} WHERE i > :low OR i IS NULL", params={"low": -10}
    )
    if db.system == "sqlite":  # one INTEGER and one REAL type: the values are what SQLite keeps
        assert bound["i"].to_list() == frame["i"].to_list()
        return
    assert bound.schema["i"] == pl.Int32 and plain.schema["i"] == pl.Int32
    for out in (plain, bound):
        assert out.schema["d"].scale == 10  # type: ignore[attr-defined]
        assert out["d"].to_list() == frame["d"].to_list()  # exact, all ten digits
    if db.system == "postgresql":
        assert bound.schema["d"] == pl.Decimal(20, 10)
    assert bound.equals(plain)


# -- leftovers of killed loads are dropped by the next load of the same target ----------------

KILLED = textwrap.dedent(
    """
    import json, sys, polars as pl
    from data_pipeline.storage.relational import RelationalDBStorage
    storage = RelationalDBStorage(name="killed", config=json.loads(sys.argv[1]))
    n = int(sys.argv[3])
    print("ready", flush=True)
    storage.store(pl.DataFrame({"i": range(n), "s": ["x" * 40] * n}), sys.argv[2], if_exists="replace")
    """
)


def _stages(handle: DB, table: str) -> list[str]:
    prefix = handle.storage._backend.stage_prefix(table)
    return [t for t in handle.storage.list_tables() if t.startswith(prefix)]


def test_killed_mariadb_replace_leftover_dropped_by_next_load(tmp_path: Path) -> None:
    import json

    handle = DB("mariadb", tmp_path)
    table = handle.table("killed")
    try:
        handle.storage.store(pl.DataFrame({"i": [1], "s": ["old"]}), table)
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED, json.dumps(handle.config), table, "3000000"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 120
        while not _stages(handle, table) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        left = _stages(handle, table)
        proc.kill()
        proc.wait()
        proc.stdout.close()
        assert left, "the child finished before it could be killed mid-load"
        with handle.storage.connect() as con, con.cursor() as cur:  # wait for the server
            while time.monotonic() < deadline:  # to end the killed session (locks freed)
                cur.execute("SELECT IS_FREE_LOCK(%s)", [left[0]])
                if cur.fetchone()[0] == 1:
                    break
                time.sleep(0.1)
        assert handle.storage.retrieve(table)["s"].to_list() == ["old"]  # old state kept
        result = handle.storage.store(
            pl.DataFrame({"i": [2], "s": ["new"]}), table, if_exists="append"
        )
        assert set(left) <= set(result.details["leftovers_dropped"])
        assert (
            handle.storage.get_metadata()["details"]["leftovers_dropped"]
            == result.details["leftovers_dropped"]
        )
        assert _stages(handle, table) == []
    finally:
        handle.names += [n for n in handle.storage.list_tables() if n.startswith(STAGE_PREFIX)]
        handle.drop_all()


@pytest.mark.parametrize("system", SERVERS)
def test_a_running_loads_staging_table_is_kept(system: str, tmp_path: Path) -> None:
    """A staging table whose writer is alive (lock held) survives other loads of the target; a
    leftover without a live writer is dropped and listed."""
    handle = DB(system, tmp_path)
    table = handle.table()
    storage = handle.make(primary_key=["id"])
    fake = storage._backend.staging_name(table)
    try:
        handle.storage.store(pl.DataFrame({"id": [1]}), table, primary_key="id")
        with handle.storage.connect() as con:  # a leftover: nobody holds its lock
            q = "`" if system == "mariadb" else '"'
            con.cursor().execute(f"CREATE TABLE {q}{fake}{q} (id INT)")
            con.commit()
        with storage.staging_table(table, pl.DataFrame({"id": [1]}).schema) as live:
            result = storage.store(pl.DataFrame({"id": [2]}), table, if_exists="append")
            assert result.details["leftovers_dropped"] == [fake]
            assert live in handle.storage.list_tables()
        assert live not in handle.storage.list_tables()
    finally:
        handle.names += [fake]
        handle.drop_all()


def test_staging_lock_drill_catches_an_unlocked_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The broken variant: a staging table without its lock is taken for a leftover and
    dropped under the running writer; the test above would fail on it."""
    require_service("MariaDB", MY_HOST, MY_PORT)
    monkeypatch.setattr(relational._MySQLBackend, "hold", lambda self, con, name: None)
    handle = DB("mariadb", Path("."))
    table = handle.table()
    try:
        handle.storage.store(pl.DataFrame({"id": [1]}), table, primary_key="id")
        with handle.storage.staging_table(table, pl.DataFrame({"id": [1]}).schema) as live:
            result = handle.storage.store(pl.DataFrame({"id": [2]}), table, if_exists="append")
            assert live in result.details["leftovers_dropped"]  # a live table, dropped
    finally:
        handle.drop_all()


# -- one transaction for a store and the caller's statements (i11-streams' checkpoints) -------


def _checkpoint_table(handle: DB) -> str:
    name = handle.table("ckpt")
    q = "`" if handle.system.startswith("mariadb") else '"'
    handle.storage.execute(f"CREATE TABLE {q}{name}{q} (id VARCHAR(20) PRIMARY KEY, pos INTEGER)")
    handle.storage.execute(
        f"INSERT INTO {q}{name}{q} (id, pos) VALUES (:id, :pos)", {"id": "s", "pos": 0}
    )
    return f"{q}{name}{q}"


@pytest.mark.parametrize("mode", ["append", "upsert", "replace"])
def test_store_and_checkpoint_commit_together(db: DB, mode: str) -> None:
    table = db.table()
    ckpt = _checkpoint_table(db)
    storage = db.make(primary_key=["id"])
    storage.store(pl.DataFrame({"id": [0], "v": ["before"]}), table)
    batch = pl.DataFrame({"id": [1, 2], "v": ["x", "y"]})
    # a failure after the store and the checkpoint: neither is kept
    with pytest.raises(RuntimeError, match="crash"), storage.transaction() as tx:
        storage.store(batch, table, if_exists=mode)
        assert (
            tx.execute(f"UPDATE {ckpt} SET pos = :pos WHERE id = :id", {"pos": 7, "id": "s"}) == 1
        )
        assert tx.query(f"SELECT pos FROM {ckpt} WHERE id = :id", {"id": "s"})["pos"].item() == 7
        raise RuntimeError("crash")
    assert storage.retrieve(table)["v"].to_list() == ["before"]
    assert storage.retrieve(query=f"SELECT pos FROM {ckpt}")["pos"].item() == 0
    # and without the failure, both
    with storage.transaction() as tx:
        storage.store(batch, table, if_exists=mode)
        tx.execute(f"UPDATE {ckpt} SET pos = :pos WHERE id = :id", {"pos": 7, "id": "s"})
    expected = {"replace": ["x", "y"]}.get(mode, ["before", "x", "y"])
    assert storage.retrieve(table).sort("id")["v"].to_list() == expected
    assert storage.retrieve(query=f"SELECT pos FROM {ckpt}")["pos"].item() == 7


def test_store_in_transaction_creates_a_new_table(db: DB) -> None:
    table = db.table()
    with db.storage.transaction():
        db.storage.store(pl.DataFrame({"id": [1]}), table)
    assert db.storage.retrieve(table)["id"].to_list() == [1]


def test_transaction_drill_catches_a_store_outside_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The broken variant: store() ignores the open transaction (its own connection and
    commit); the rollback drill above then finds the stored batch after the crash."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    handle = DB("postgresql", Path("."))
    table = handle.table()
    try:
        ckpt = _checkpoint_table(handle)
        monkeypatch.setattr(RelationalDBStorage, "_current_tx", lambda self: None)
        handle.storage.store(pl.DataFrame({"id": [0], "v": ["before"]}), table)
        with pytest.raises(RuntimeError), handle.storage.transaction() as tx:
            handle.storage.store(pl.DataFrame({"id": [1], "v": ["x"]}), table, if_exists="append")
            tx.execute(f"UPDATE {ckpt} SET pos = 7")
            raise RuntimeError("crash")
        assert handle.storage.retrieve(table).height == 2  # the drill's assertion fails here
    finally:
        handle.drop_all()


# -- staging tables filled by an outside writer (Spark) and merged in one transaction --------


def test_merge_staging_modes(server: DB) -> None:
    system = server.system
    table = server.table()
    storage = server.make(primary_key=["id"])
    url, props = storage.jdbc()
    assert url.startswith(f"jdbc:{'postgresql' if system == 'postgresql' else 'mariadb'}://")
    assert props["user"] and props["driver"]
    schema = pl.DataFrame({"id": [1], "v": ["a"]}).schema

    def fill(stage: str, rows: list[tuple[int, str]]) -> None:  # the "outside writer"
        with server.storage.connect() as con:
            q = "`" if system == "mariadb" else '"'
            cur = con.cursor()
            for row in rows:
                cur.execute(f"INSERT INTO {q}{stage}{q} (id, v) VALUES (%s, %s)", row)
            con.commit()

    with storage.staging_table(table, schema) as stage:
        fill(stage, [(1, "a"), (2, "b")])
        assert storage.merge_staging(stage, table, expected_rows=2).details["action"] == "created"
    with storage.staging_table(table, schema) as stage:
        fill(stage, [(2, "B"), (3, "c")])
        with pytest.raises(StorageError, match="holds 2 rows but the writer sent 3"):
            storage.merge_staging(stage, table, if_exists="upsert", expected_rows=3)
        storage.merge_staging(stage, table, if_exists="upsert", expected_rows=2)
    out = storage.retrieve(table).sort("id")
    assert out.rows() == [(1, "a"), (2, "B"), (3, "c")]
    with storage.staging_table(table, schema) as stage:
        fill(stage, [(4, "d")])
        storage.merge_staging(stage, table, if_exists="append")
    with storage.staging_table(table, schema) as stage:
        fill(stage, [(9, "z")])
        storage.merge_staging(stage, table, if_exists="replace")
    assert storage.retrieve(table).rows() == [(9, "z")]
    assert not [t for t in storage.list_tables() if t.startswith(STAGE_PREFIX)]


# -- the checkpoint store of core/checkpoint.py (i11-streams' Checkpointer) -------------------


def test_checkpoints_commit_with_the_batch(db: DB) -> None:
    from data_pipeline.core.checkpoint import STATE_TABLE, Checkpointer
    from data_pipeline.core.errors import CheckpointError

    table = db.table()
    name = f"job_{uuid.uuid4().hex[:8]}"
    storage = db.make(primary_key=["id"])
    assert storage.supports_transactions()
    job = Checkpointer(name, storage)
    assert job.restore() is None
    with job.commit():
        storage.store(pl.DataFrame({"id": [1], "v": ["a"]}), table, if_exists="upsert")
    with pytest.raises(RuntimeError), job.commit():  # the batch and its checkpoint: neither
        storage.store(pl.DataFrame({"id": [2], "v": ["b"]}), table, if_exists="upsert")
        raise RuntimeError("crash before the commit")
    assert storage.retrieve(table)["id"].to_list() == [1]
    checkpoint = storage.load_checkpoint(name)
    assert checkpoint is not None and checkpoint.batch == 1
    again = Checkpointer(name, storage)
    assert again.restore().batch == 1  # type: ignore[union-attr]
    other = Checkpointer(name, storage)
    other.restore()
    with again.commit():
        storage.store(pl.DataFrame({"id": [2], "v": ["b"]}), table, if_exists="upsert")
    with pytest.raises(CheckpointError, match="another run"), other.commit():  # fenced
        storage.store(pl.DataFrame({"id": [3], "v": ["c"]}), table, if_exists="upsert")
    assert storage.retrieve(table).sort("id")["id"].to_list() == [1, 2]
    assert storage.load_checkpoint(name).batch == 2  # type: ignore[union-attr]
    db.storage.execute(
        f"DELETE FROM {db.storage._backend.qualified(STATE_TABLE)} WHERE name = :n", {"n": name}
    )
