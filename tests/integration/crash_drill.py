"""The crash drill: kill -9 a process in the middle of loads, then check the target.

One harness for every storage backend (``BACKENDS``) and write mode. Per round:

1. the parent stores the known starting state ``S(0)`` (a plain, unkilled load);
2. a child process loads versions 1, 2, 3, ... with the mode (``replace``: the whole table;
   ``append``: a new batch of rows; ``upsert``: a range of keys half new, half existing),
   printing ``start v`` before and ``done v <rows stored>`` after each ``store()``;
3. after a random number of finished loads the parent sleeps a random part of a load's
   duration and sends SIGKILL, so the kill lands inside a load;
4. the child must have died of that SIGKILL (any other exit is a failure, with its stderr);
   every finished load must report the rows it was given;
5. the target must be exactly ``S(v)`` or ``S(v + 1)``, where ``v`` is the last load the
   child reported finished: the old state or the new one. A vanished target, a partial
   batch, a mix of versions, a missing or doubled row is a failure;
6. orphans (staging tables or collections, temporary files and versions) are counted.

After the rounds one more unkilled load runs and must leave no orphan (the next load of a
target removes what killed loads left), except where a backend documents otherwise (Delta
Lake: files of uncommitted writes stay until ``VACUUM``).

The expected states are built here with plain polars expressions (the oracle), never with the
code under test. Sizes and seed come from the environment: ``DATA_PIPELINE_CRASH_ROUNDS``
(rounds per backend and mode, default 3), ``DATA_PIPELINE_CRASH_ROWS`` (rows per load; default
per backend), ``DATA_PIPELINE_CRASH_SEED`` (replay a run: the seed is printed and named in
every failure).

The child is ``python -m tests.integration.crash_drill '<json spec>'``; a spec may ask for a
deliberately broken writer (``broken``), which the drill must catch (see the tests).
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = int(os.environ.get("DATA_PIPELINE_CRASH_ROUNDS", "3"))
ROWS = (
    int(os.environ["DATA_PIPELINE_CRASH_ROWS"])
    if os.environ.get("DATA_PIPELINE_CRASH_ROWS")
    else None
)
SEED = int(os.environ.get("DATA_PIPELINE_CRASH_SEED") or random.SystemRandom().randrange(10**9))

#: rows per load by default: a load takes tens to hundreds of milliseconds on every backend
DEFAULT_ROWS = {
    "postgresql": 20_000,
    "mariadb": 10_000,
    "sqlite": 20_000,
    "duckdb": 50_000,
    "delta": 50_000,
    "parquet": 50_000,
    "parquet-partitioned": 50_000,
    "embedded": 1_000,
    "mongodb": 500,
    "redis": 2_000,
}
MODES = {
    "parquet": ("append", "replace"),  # FileSystemStorage has no upsert
    "parquet-partitioned": ("append", "replace"),
}
ALL_MODES = ("append", "replace", "upsert")


# -- the states (the oracle) ----------------------------------------------------------------------


def load_frame(mode: str, version: int, n: int) -> pl.DataFrame:
    """The rows load ``version`` writes: replace: ids 0..n-1; append: the next n ids;
    upsert: n ids from version * n/2 (half of them exist already)."""
    start = {"replace": 0, "append": version * n, "upsert": version * (n // 2)}[mode]
    ids = pl.int_range(start, start + n, dtype=pl.Int64, eager=True)
    return pl.DataFrame(
        {"id": ids, "version": pl.repeat(version, n, dtype=pl.Int64, eager=True)}
    ).with_columns(part=(pl.col("id") % 4).cast(pl.Int64), pad=pl.lit("x" * 20))


def expected_state(mode: str, version: int, n: int) -> pl.DataFrame:
    """The whole target after loads 0..version (sorted by id)."""
    if mode == "replace":
        return load_frame(mode, version, n)
    frames = [load_frame(mode, v, n) for v in range(version + 1)]
    union = pl.concat(frames)
    if mode == "upsert":  # the latest version of each id wins
        union = union.sort("version").unique("id", keep="last")
    return union.sort("id")


def describe(frame: pl.DataFrame) -> str:
    versions = frame.group_by("version").len().sort("version").rows() if frame.height else []
    return f"{frame.height} rows, rows per version {versions}"


# -- backends ----------------------------------------------------------------------------------


@dataclass
class Target:
    """One backend's storage config and table, how to read it, count orphans, clean up."""

    backend: str
    cls: str  # class name in data_pipeline.storage
    config: dict[str, Any]
    table: str
    tmp: Path
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def storage(self) -> Any:
        import data_pipeline.storage as layer

        return getattr(layer, self.cls)(name=f"drill_{self.backend}", config=self.config)

    def store(self, storage: Any, frame: pl.DataFrame, mode: str) -> Any:
        keyed = getattr(storage, "accepts_primary_key", False)  # upserts need the key
        options = {"primary_key": ["id"]} if keyed else {}
        return storage.store(frame, self.table, if_exists=mode, **options)

    def read(self) -> pl.DataFrame | None:
        """The target's rows (id, version) sorted by id, or None when it does not exist."""
        from data_pipeline.core.errors import InputNotFoundError

        storage = self.storage()
        try:
            out = storage.retrieve(self.table)
        except InputNotFoundError:
            return None
        finally:
            close = getattr(storage, "close", None)
            if close is not None:
                close()
        frame = out if isinstance(out, pl.DataFrame) else pl.from_arrow(out)
        if isinstance(frame, pl.LazyFrame):
            frame = frame.collect()
        assert isinstance(frame, pl.DataFrame)
        return frame.select(pl.col("id").cast(pl.Int64), pl.col("version").cast(pl.Int64)).sort(
            "id"
        )

    def orphans(self) -> list[str]:
        return ORPHANS[self.backend](self)


def _relational_orphans(target: Target) -> list[str]:
    storage = target.storage()
    prefix = storage._backend.stage_prefix(target.table)
    pattern = prefix.replace("_", "\\_") + "%"
    if target.backend == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE :p ESCAPE '\\'"
    elif target.backend == "postgresql":
        sql = "SELECT table_name AS name FROM information_schema.tables WHERE table_name LIKE :p"
    else:
        sql = (
            "SELECT table_name AS name FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name LIKE :p"
        )
    out = storage.retrieve(query=sql, params={"p": pattern})
    frame = out if isinstance(out, pl.DataFrame) else pl.from_arrow(out)
    assert isinstance(frame, pl.DataFrame)
    return [str(n) for n in frame.to_series(0).to_list()]


def _file_orphans(target: Target) -> list[str]:
    base = Path(target.config["base_path"])
    if not base.is_dir():
        return []
    link = base / target.table
    current = os.path.realpath(link) if link.is_symlink() else None
    markers = (".tmp-", ".v-", ".in-", ".lnk-", ".old-")
    return sorted(
        p.name
        for p in base.iterdir()
        if p.name.startswith(f".{target.table}.")
        and any(m in p.name for m in markers)
        and os.path.realpath(p) != current
    )


def _delta_orphans(target: Target) -> list[str]:
    """Data files no commit of the log names: the parts of killed, uncommitted writes."""
    table = Path(target.config["path"]) / target.table
    log = table / "_delta_log"
    if not log.is_dir():
        return []
    added: set[str] = set()
    for entry in log.glob("*.json"):
        for line in entry.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                added.add(action["add"]["path"])
    return sorted(
        str(p.relative_to(table))
        for p in table.rglob("*.parquet")
        if "_delta_log" not in p.parts and str(p.relative_to(table)) not in added
    )


def _document_orphans(target: Target) -> list[str]:
    from data_pipeline.storage.nosql import _stage_prefix

    storage = target.storage()
    try:
        names = storage._database().list_collection_names()
    finally:
        storage.close()
    return sorted(n for n in names if n.startswith(_stage_prefix(target.table)))


ORPHANS: dict[str, Callable[[Target], list[str]]] = {
    "postgresql": _relational_orphans,
    "mariadb": _relational_orphans,
    "sqlite": _relational_orphans,
    "duckdb": lambda t: [],  # loads copy from an in-memory Arrow view inside one transaction
    "delta": _delta_orphans,
    "parquet": _file_orphans,
    "parquet-partitioned": _file_orphans,
    "embedded": _document_orphans,
    "mongodb": _document_orphans,
    "redis": lambda t: [],  # one MULTI/EXEC: nothing is staged
}
#: backends whose next load does not remove a killed load's leftovers (documented)
KEEPS_ORPHANS = {"delta"}


# -- the drill -------------------------------------------------------------------------------------


@dataclass
class Report:
    backend: str
    seed: int
    rounds: int = 0
    loads_done: int = 0
    kills_mid_load: int = 0
    orphans_seen: int = 0
    orphans_after: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"crash drill {self.backend}: seed {self.seed}, {self.rounds} kills "
            f"({self.kills_mid_load} inside a load), {self.loads_done} loads finished, "
            f"{self.orphans_seen} orphans seen, {len(self.orphans_after)} left after the next "
            f"load, {len(self.failures)} failures"
        )


def _reader(stream: Any, lines: queue.Queue[tuple[float, str]]) -> None:
    for line in stream:
        lines.put((time.perf_counter(), line.strip()))
    lines.put((time.perf_counter(), ""))


def run_drill(
    target: Target,
    *,
    modes: tuple[str, ...] | None = None,
    rounds: int | None = None,
    rows: int | None = None,
    broken: str | None = None,
    seed: int | None = None,
    spark: bool = False,
) -> Report:
    """Kill loads of ``target`` ``rounds`` times per mode; returns what was found.

    ``spark``: the child stores Spark DataFrames (a local session of its own), so the loads are
    the executors' writes (JDBC into a staging table, merged by the driver)."""
    seed = SEED if seed is None else seed
    rng = random.Random(f"{seed}:{target.backend}:{broken}")
    n = rows or ROWS or DEFAULT_ROWS[target.backend]
    report = Report(target.backend, seed)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    for mode in modes or MODES.get(target.backend, ALL_MODES):
        for round_ in range(rounds or ROUNDS):
            where = f"{target.backend} {mode} round {round_} (seed {seed})"
            storage = target.storage()
            target.store(
                storage,
                load_frame(mode, 0, n) if mode != "upsert" else expected_state(mode, 0, n),
                "replace",
            )
            if hasattr(storage, "close"):
                storage.close()
            spec = {
                "target": _spec(target),
                "mode": mode,
                "rows": n,
                "broken": broken,
                "spark": spark,
            }
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.crash_drill", json.dumps(spec)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
                env=env,
            )
            lines: queue.Queue[tuple[float, str]] = queue.Queue()
            reader = threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True)
            reader.start()
            wanted = rng.randint(1, 2)  # loads to let finish before the kill
            done, started, last_start, durations, rows_done = 0, 0, 0.0, [], []
            while True:
                try:  # a Spark child first starts its session (tens of seconds when busy)
                    at, line = lines.get(timeout=600 if spark else 120)
                except queue.Empty:
                    line, at = "", time.perf_counter()
                if not line:  # the child ended (or hangs): that is not a kill
                    break
                kind, *rest = line.split()
                if kind == "start":
                    started, last_start = int(rest[0]), at
                elif kind == "done":
                    done = int(rest[0])
                    durations.append(at - last_start)
                    rows_done.append(int(rest[1]))
                    if done >= wanted:
                        time.sleep(rng.random() * 0.9 * (sum(durations) / len(durations)))
                        break
            proc.send_signal(signal.SIGKILL)
            code = proc.wait()
            reader.join(10)
            assert proc.stdout is not None and proc.stderr is not None
            stderr = proc.stderr.read()
            proc.stdout.close()
            proc.stderr.close()
            while not lines.empty():  # lines printed before the kill took effect
                _, line = lines.get()
                kind, *rest = line.split() or [""]
                if kind == "start":
                    started = int(rest[0])
                elif kind == "done":
                    done = int(rest[0])
                    rows_done.append(int(rest[1]))
            report.rounds += 1
            report.loads_done += done
            if code != -signal.SIGKILL:
                report.failures.append(
                    f"{where}: the child exited with {code}, not by the kill: {stderr[-800:]}"
                )
                continue
            if started > done:
                report.kills_mid_load += 1
            bad_counts = [r for r in rows_done if r != n]
            if bad_counts:
                report.failures.append(
                    f"{where}: store() reported {bad_counts} rows, loads had {n}"
                )
            if target.backend in ("mariadb", "postgresql", "mongodb"):
                # the server notices the dropped connection and rolls back; MongoDB finishes the
                # operation the killed client had sent (its staging collection appears late)
                time.sleep(0.5 if target.backend == "mongodb" else 0.2)
            state = target.read()
            old, new = expected_state(mode, done, n), expected_state(mode, done + 1, n)
            if state is None:
                report.failures.append(f"{where}: the target vanished (last load done: {done})")
            elif not (_same(state, old) or _same(state, new)):
                report.failures.append(
                    f"{where}: the target is neither the old state ({describe(old)}) nor the "
                    f"new one ({describe(new)}): {describe(state)}"
                )
            report.orphans_seen += len(target.orphans())
    # the next load removes what the killed ones left
    storage = target.storage()
    mode = (modes or MODES.get(target.backend, ALL_MODES))[0]
    target.store(storage, load_frame(mode, 0, n), "replace")
    if hasattr(storage, "close"):
        storage.close()
    report.orphans_after = target.orphans()
    if report.orphans_after and target.backend not in KEEPS_ORPHANS:
        report.failures.append(
            f"{target.backend} (seed {seed}): the next load left orphans {report.orphans_after[:5]}"
        )
    print(report.line(), flush=True)
    return report


def _same(state: pl.DataFrame, expected: pl.DataFrame) -> bool:
    return state.height == expected.height and state.equals(expected.select("id", "version"))


def _spec(target: Target) -> dict[str, Any]:
    return {
        "backend": target.backend,
        "cls": target.cls,
        "config": target.config,
        "table": target.table,
    }


def new_table() -> str:
    return f"drill_{uuid.uuid4().hex[:10]}"


# -- the child ------------------------------------------------------------------------------------


def _child(spec: dict[str, Any]) -> None:  # pragma: no cover - runs in the killed process
    t = spec["target"]
    target = Target(t["backend"], t["cls"], t["config"], t["table"], Path("."))
    mode, n, broken = spec["mode"], spec["rows"], spec["broken"]
    storage = target.storage()
    session = _spark_session() if spec.get("spark") else None
    print("ready", flush=True)
    version = 1
    while True:
        frame = load_frame(mode, version, n)
        if session is not None:
            frame = session.createDataFrame(frame.to_arrow())
        print(f"start {version}", flush=True)
        if broken == "drop-then-load":  # non-atomic replace: the old table goes first
            storage.execute(f'DROP TABLE IF EXISTS "{target.table}"')
            result = target.store(storage, frame, mode)
        elif broken == "append-per-chunk":  # non-atomic append: one commit per chunk
            rows = 0
            for chunk in frame.iter_slices(max(1, n // 8)):
                rows += target.store(storage, chunk, mode).rows
            result = type("R", (), {"rows": rows})()
        else:
            result = target.store(storage, frame, mode)
        print(f"done {version} {result.rows}", flush=True)
        version += 1


def _spark_session() -> Any:  # pragma: no cover - runs in the killed process
    """A small local session with the JDBC driver jars (the suite's settings)."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers (mapInArrow: Delta files, partitions sent to the driver) run this Python
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    from tests.conftest import JDBC_JARS

    session = (
        SparkSession.builder.master("local[1]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.jars", ",".join(JDBC_JARS))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


if __name__ == "__main__":  # pragma: no cover
    _child(json.loads(sys.argv[1]))
