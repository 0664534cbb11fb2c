"""Checkpoints (core/checkpoint.py): encoding, the DuckDB state table, checkpoint files, the
driver, and a crash inside the commit that must leave data and checkpoint in step."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from data_pipeline.core.checkpoint import (
    Checkpoint,
    Checkpointer,
    FileCheckpointStore,
    Manifest,
    restore_operator,
    snapshot_operator,
)
from data_pipeline.core.errors import CheckpointError, ConfigError
from data_pipeline.processing import (
    DataAggregator,
    ProcessingPipeline,
    StreamProcessor,
    WindowedAggregator,
)
from data_pipeline.storage import DataWarehouseStorage


class FakeSource:
    """A position-keeping source without a broker: numbers, read in order."""

    def __init__(self) -> None:
        self.position = 0
        self.read_to = 0
        self.acked: list[int] = []
        self.restored: Any = "never"

    def restore(self, state: Any) -> None:
        self.restored = state
        self.position = self.read_to = (state or {}).get("position", 0)

    def read(self, n: int) -> list[int]:
        out = list(range(self.read_to, self.read_to + n))
        self.read_to += n
        return out

    def checkpoint_state(self) -> dict[str, int]:
        return {"position": self.read_to}

    def acknowledge(self) -> None:
        self.acked.append(self.read_to)


def test_encode_decode_round_trip() -> None:
    cp = Checkpoint(
        name="job",
        batch=7,
        sources={"events": {"positions": {"s": "1-0"}, "pending": {"s": ["1-0"]}}},
        states={"per_minute": b"\x00\xffstate", "empty": b""},
        cursors={"orders": {"last_value": "2024-01-01T00:00:00"}},
        metrics={"rows": 3},
    )
    back = Checkpoint.decode(cp.encode())
    assert back == cp
    assert back.meta()["state_bytes"] == {"per_minute": 7, "empty": 0}


def test_decode_refuses_what_is_not_a_checkpoint() -> None:
    with pytest.raises(CheckpointError, match="not a data-pipeline checkpoint"):
        Checkpoint.decode(b"garbage", where="x")


def test_names_are_checked() -> None:
    with pytest.raises(ConfigError, match="not valid"):
        Checkpointer("a/b", "folder")


def test_duckdb_commit_holds_stores_and_checkpoint(tmp_path: Path) -> None:
    db = tmp_path / "wh.duckdb"
    wh = DataWarehouseStorage(name="wh", config={"database": str(db), "schema": "live"})
    source = FakeSource()
    job = Checkpointer("orders", wh, sources={"events": source})
    assert job.restore() is None and source.restored is None
    for _ in range(3):
        rows = source.read(2)
        with job.commit():
            wh.store(pl.DataFrame({"n": rows}), "numbers", if_exists="append")
    assert source.acked == [2, 4, 6]
    # a failing batch: neither its rows nor its checkpoint, and no acknowledgement
    rows = source.read(2)
    with pytest.raises(RuntimeError), job.commit():
        wh.store(pl.DataFrame({"n": rows}), "numbers", if_exists="append")
        raise RuntimeError("the batch failed")
    assert source.acked == [2, 4, 6]
    with pytest.raises(CheckpointError, match="restore"), job.commit():
        pass
    fresh = FakeSource()
    again = Checkpointer("orders", wh, sources={"events": fresh})
    restored = again.restore()
    assert restored is not None and restored.batch == 3
    assert fresh.position == 6
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.sql("select count(*), sum(n) from live.numbers").fetchall() == [(6, 15)]
        meta = json.loads(
            con.execute("select meta from live._dp_checkpoints where name = 'orders'").fetchall()[
                0
            ][0]
        )
    assert meta["batch"] == 3 and meta["sources"] == {"events": {"position": 6}}


def test_a_second_writer_is_fenced_off(tmp_path: Path) -> None:
    wh = DataWarehouseStorage(name="wh", config={"database": str(tmp_path / "wh.duckdb")})
    first, second = Checkpointer("job", wh), Checkpointer("job", wh)
    first.restore()
    second.restore()
    with first.commit():
        wh.store(pl.DataFrame({"n": [1]}), "t", if_exists="append")
    with pytest.raises(CheckpointError, match="another run"), second.commit():
        wh.store(pl.DataFrame({"n": [2]}), "t", if_exists="append")
    assert wh.retrieve("t")["n"].to_list() == [1]


def test_file_store_and_manifest(tmp_path: Path) -> None:
    source = FakeSource()
    job = Checkpointer("job", tmp_path / "ckpt", sources={"s": source})
    job.restore()
    source.read(5)
    with job.commit():
        pass
    assert FileCheckpointStore(tmp_path / "ckpt").load_checkpoint("job").batch == 1  # type: ignore[union-attr]
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files[1] == "job.manifest.json" and files[0].startswith("job.1.")
    # a crash after the new checkpoint file but before the manifest rename: the old one stands
    (tmp_path / "ckpt" / "job.2.deadbeef.ckpt").write_bytes(b"half written")
    assert Manifest(tmp_path / "ckpt", "job").load().batch == 1  # type: ignore[union-attr]


def test_manifest_operations_are_applied_again_after_a_crash(tmp_path: Path) -> None:
    applied: list[str] = []
    manifest = Manifest(tmp_path, "job")

    def crash(op: Any) -> None:
        raise OSError("the process stops here")

    with pytest.raises(OSError):
        manifest.commit(Checkpoint("job", batch=1), 0, [{"rename": "a"}], crash)
    assert manifest.load().batch == 1  # type: ignore[union-attr]  # committed by the rename
    assert manifest.recover(lambda op: applied.append(op["rename"])) == 1
    assert applied == ["a"]
    assert manifest.recover(lambda op: applied.append(op["rename"])) == 0


def _per_minute(emit: str = "updates") -> StreamProcessor:
    steps = ProcessingPipeline("p").add_processor(
        WindowedAggregator(
            name="w",
            config={
                "time_column": "ts",
                "window": "1m",
                "group_by": ["k"],
                "aggregations": {"v": ["sum", "mean"], "*": "count"},
            },
        )
    )
    return StreamProcessor(name="s", config={"emit": emit}, pipeline=steps)


def _batches() -> list[pl.DataFrame]:
    t0 = dt.datetime(2024, 1, 1)
    out = []
    for b in range(4):
        out.append(
            pl.DataFrame(
                {
                    "ts": [t0 + dt.timedelta(seconds=17 * (b * 5 + i)) for i in range(5)],
                    "k": [f"k{(b + i) % 2}" for i in range(5)],
                    "v": [float(b * 5 + i) for i in range(5)],
                }
            )
        )
    return out


@pytest.mark.parametrize("emit", ["updates", "final"])
def test_operator_state_round_trip(emit: str) -> None:
    """A processor restored from a snapshot after batch 2 ends where one that never stopped
    ends."""
    batches = _batches()
    whole = _per_minute(emit)
    whole_out = [whole.process_batch(b) for b in batches]
    first = _per_minute(emit)
    for b in batches[:2]:
        first.process_batch(b)
    blob = snapshot_operator(first)
    second = _per_minute(emit)
    restore_operator(second, blob)
    out = [second.process_batch(b) for b in batches[2:]]
    for got, expected in zip(out, whole_out[2:], strict=True):
        assert got.sort("k", "window_start").rows() == expected.sort("k", "window_start").rows()
    assert second.snapshot().sort("k", "window_start").rows() == (
        whole.snapshot().sort("k", "window_start").rows()
    )
    assert second.progress["rows_in"] == whole.progress["rows_in"]


def test_operator_without_state_restores_fresh() -> None:
    steps = ProcessingPipeline("p").add_processor(
        DataAggregator(name="a", config={"group_by": ["k"], "aggregations": {"v": "sum"}})
    )
    stream = StreamProcessor(name="s", pipeline=steps)
    restore_operator(stream, snapshot_operator(stream))
    assert stream.get_state() is None
    stream.process_batch(pl.DataFrame({"k": ["a"], "v": [1]}))
    restore_operator(stream, None)
    assert stream.get_state() is None


# -- a crash inside the commit: the stores and the checkpoint land together or not at all ---

CHILD = textwrap.dedent(
    """
    import json, os, sys
    import polars as pl
    from data_pipeline.core import checkpoint as ck
    from data_pipeline.storage import DataWarehouseStorage, FileSystemStorage

    kind, config, crash_at, where, broken = json.loads(sys.argv[1])
    cls = {"duckdb": DataWarehouseStorage, "delta": DataWarehouseStorage,
           "parquet": FileSystemStorage}[kind]
    if broken:  # the stores do not join the transaction: each lands on its own
        cls._open_tx = lambda self: None
    storage = cls(name="s", config=config)
    job = ck.Checkpointer("job", storage)
    restored = job.restore()
    start = restored.batch if restored else 0
    if where == "before-checkpoint":  # after the batch's stores, before its checkpoint
        real_snapshot = job.snapshot

        def snapshot():
            if job.batch + 1 == crash_at:
                os._exit(9)
            return real_snapshot()

        job.snapshot = snapshot
    else:  # after the manifest's rename (the commit point), before its writes are applied
        real_commit = ck.Manifest.commit

        def commit(self, checkpoint, previous, operations=(), apply=None):
            if checkpoint.batch == crash_at:
                apply = lambda op: os._exit(9)
            return real_commit(self, checkpoint, previous, operations, apply)

        ck.Manifest.commit = commit
    for batch in range(start + 1, 6):
        with job.commit():
            storage.store(pl.DataFrame({"batch": [batch] * 3}), "rows", if_exists="append")
            storage.store(pl.DataFrame({"batch": [batch]}), "batches", if_exists="append")
    """
)

STORES = {
    "duckdb": lambda tmp: {"database": str(tmp / "wh.duckdb")},
    "parquet": lambda tmp: {"base_path": str(tmp / "lake")},
    "delta": lambda tmp: {"engine": "delta", "path": str(tmp / "delta")},
}


def _storage(kind: str, tmp_path: Path) -> Any:
    from data_pipeline.storage import FileSystemStorage

    cls = FileSystemStorage if kind == "parquet" else DataWarehouseStorage
    return cls(name="s", config=STORES[kind](tmp_path))


def crash_drill(
    tmp_path: Path, kind: str, *, where: str = "before-checkpoint", broken: bool = False
) -> tuple[int, list[int], list[int]]:
    """Kill the child in the commit of batch 3 (``where``); return the committed batch and the
    batches in the two tables as a new process finds them (the checkpoint load finishes a
    committed manifest first)."""
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    args = json.dumps([kind, STORES[kind](tmp_path), 3, where, broken])
    first = subprocess.run([sys.executable, str(script), args], check=False)
    assert first.returncode == 9
    storage = _storage(kind, tmp_path)
    checkpoint = storage.load_checkpoint("job")
    rows = sorted(storage.retrieve("rows")["batch"].to_list())
    batches = sorted(storage.retrieve("batches")["batch"].to_list())
    return checkpoint.batch, rows, batches


@pytest.mark.parametrize("kind", ["duckdb", "parquet", "delta"])
def test_crash_before_the_checkpoint_loses_and_doubles_nothing(tmp_path: Path, kind: str) -> None:
    batch, rows, batches = crash_drill(tmp_path, kind)
    assert batch == 2
    assert batches == [1, 2]  # batch 3's stores went with its checkpoint
    assert rows == [1, 1, 1, 2, 2, 2]


@pytest.mark.parametrize("kind", ["parquet", "delta"])
def test_crash_after_the_manifest_is_finished_on_the_next_start(tmp_path: Path, kind: str) -> None:
    """Killed after the commit point, before the files are renamed (Parquet) or the Delta
    commits written: the next start applies them, once."""
    batch, rows, batches = crash_drill(tmp_path, kind, where="after-manifest")
    assert batch == 3
    assert batches == [1, 2, 3]
    assert rows == [1, 1, 1, 2, 2, 2, 3, 3, 3]


@pytest.mark.parametrize("kind", ["duckdb", "parquet", "delta"])
def test_crash_drill_catches_stores_outside_the_transaction(tmp_path: Path, kind: str) -> None:
    """The broken variant (stores that land on their own) leaves batch 3 stored while the
    checkpoint says 2: a restart would store it twice. The drill sees it."""
    batch, _, batches = crash_drill(tmp_path, kind, broken=True)
    assert batch == 2
    assert batches == [1, 2, 3]


def test_delta_applies_a_staged_write_once(tmp_path: Path) -> None:
    """Applying a committed manifest's Delta write again (a crash after the Delta commit,
    before the manifest was rewritten) does not write it twice."""
    import polars as pl

    storage = _storage("delta", tmp_path)
    storage.store(pl.DataFrame({"n": [1, 2]}), "t")
    with storage.transaction() as tx:
        storage.store(pl.DataFrame({"n": [0]}), "t", if_exists="append")
        operation = dict(tx.operations[0])
        tx.operations.clear()  # applied by hand below
    assert operation["how"] == "append"
    operation["txn"] = {"app_id": "data-pipeline:tx-test", "version": 1}
    staged = storage._stage_file(pl.DataFrame({"n": [3]}).to_arrow())
    storage._apply_staged({**operation, "staged": staged})
    again = storage._stage_file(pl.DataFrame({"n": [3]}).to_arrow())
    storage._apply_staged({**operation, "staged": again})  # the same version: skipped
    assert sorted(storage.retrieve("t")["n"].to_list()) == [1, 2, 3]
