"""`data-pipeline run FILE --follow` over a real Redis stream (127.0.0.1:6379).

Events go into a Redis stream before and during the run; the run stores every event once, keeps
a per-user aggregate (joined with a static users file) equal to SQL over the produced rows,
re-renders a dashboard after each batch, and stops by itself when the stream is idle.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from data_pipeline.core.frames import to_polars
from data_pipeline.pipeline import BatchSummary, follow_pipeline, load_pipeline
from tests.conftest import require_service

pytestmark = pytest.mark.service

USERS = ["u1", "u2", "u3", "u4", "u5"]
REGIONS = {"u1": "north", "u2": "south", "u3": "north", "u4": "east"}  # u5: not in the file

PIPELINE = """
name: live_orders
engine: {engine}
sources:
  events:
    type: StreamingSource
    config:
      platform: redis
      host: 127.0.0.1
      port: 6379
      stream: {stream}
      max_messages: 50
      timeout: 0.2
  users:
    type: FileSystemSource
    config: {{path: users.csv}}
transformations:
  clean:
    input: events
    steps:
      - type: DataTypeConverter
        config: {{columns: {{amount: float, quantity: int}}}}
storage:
  warehouse:
    type: DataWarehouseStorage
    config: {{database: out/warehouse.duckdb}}
    store:
      - {{data: clean, table: events, if_exists: append}}
      - {{data: per_user, table: per_user, if_exists: upsert}}
processing:
  per_user:
    input: clean
    steps:
      - type: DataJoiner
        config: {{how: left, "on": [user_id], right_table: users, validate: many_to_one}}
      - type: DataAggregator
        config:
          group_by: [user_id, region]
          aggregations:
            amount: sum
            quantity: sum
            "*": {{agg: count, as: orders}}
          sort: [user_id]
  per_region:                 # fed by per_user's whole current result: runs whole each batch
    input: per_user
    steps:
      - type: DataAggregator
        config: {{group_by: [region], aggregations: {{amount: sum, orders: sum}}}}
dashboards:
  live:
    title: Live orders
    path: out/live.html
    visualizations:
      - type: Table
        name: totals
        data: per_user
        config: {{columns: [user_id, region, amount, orders], float_format: ",.2f"}}
      - type: Table           # fed by a streaming transformation: every row so far
        name: events
        data: clean
        config: {{columns: [_id, user_id], max_rows: 1000}}
"""


@pytest.fixture
def stream() -> Iterator[tuple[Any, str]]:
    require_service("Redis", "127.0.0.1", 6379)
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, decode_responses=True)
    key = f"dp-follow-{uuid.uuid4().hex[:10]}"
    try:
        yield client, key
    finally:
        client.delete(key)
        client.close()


class Producer:
    """Writes order events to the stream and remembers them (the oracle's input)."""

    def __init__(self, client: Any, key: str) -> None:
        self.client, self.key = client, key
        self.rows: list[dict[str, Any]] = []

    def produce(self, n: int, users: list[str] = USERS) -> None:
        for _ in range(n):
            i = len(self.rows)
            row = {
                "user_id": users[i % len(users)],
                "amount": round(1.25 * (i % 17) + 0.5, 2),
                "quantity": i % 4 + 1,
            }
            entry_id = self.client.xadd(self.key, {k: str(v) for k, v in row.items()})
            self.rows.append({"_id": entry_id, **row})

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows)


def write_pipeline(folder: Path, key: str, engine: str = "polars") -> Path:
    users = pl.DataFrame({"user_id": list(REGIONS), "region": list(REGIONS.values())})
    users.write_csv(folder / "users.csv")
    path = folder / "pipeline.yaml"
    path.write_text(textwrap.dedent(PIPELINE).format(engine=engine, stream=key), encoding="utf-8")
    return path


def expected_totals(produced: pl.DataFrame) -> pl.DataFrame:
    """The oracle: DuckDB SQL over the produced rows, left-joined with the users file's rows."""
    users = pl.DataFrame({"user_id": list(REGIONS), "region": list(REGIONS.values())})
    with duckdb.connect() as con:
        con.register("produced", produced)
        con.register("users", users)
        return con.sql(
            """
            select e.user_id, u.region, sum(e.amount) as amount, sum(e.quantity) as quantity,
                   count(*) as orders
            from produced e left join users u using (user_id)
            group by e.user_id, u.region order by e.user_id
            """
        ).pl()


def stored(folder: Path, table: str) -> pl.DataFrame:
    with duckdb.connect(str(folder / "out" / "warehouse.duckdb"), read_only=True) as con:
        return con.sql(f"select * from {table}").pl()


@pytest.mark.parametrize(
    "engine",
    ["polars", "pandas", "duckdb", "arrow", pytest.param("spark", marks=pytest.mark.spark)],
)
def test_follow_stores_every_event_once_and_keeps_the_aggregate_whole(
    stream: tuple[Any, str], tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    if engine == "spark":
        request.getfixturevalue("spark")  # the test run's shared local session (or a skip)
    client, key = stream
    producer = Producer(client, key)
    producer.produce(70)
    path = write_pipeline(tmp_path, key, engine)
    loaded = load_pipeline(path)
    warehouse = loaded.storage["warehouse"][0]
    seen: list[tuple[int, BatchSummary]] = []
    html = tmp_path / "out" / "live.html"

    def on_batch(number: int, summary: BatchSummary) -> None:
        seen.append((number, summary))
        # after each batch the stored aggregate is the whole result over the events read so far
        read = sum(s.total_rows for _, s in seen)
        so_far = producer.frame().head(read)
        now = to_polars(warehouse.retrieve("per_user")).sort("user_id")
        assert now.drop("quantity").rows() == expected_totals(so_far).drop("quantity").rows()
        assert html.is_file()
        if number == 1:  # more events arrive while the pipeline runs
            producer.produce(30)
        elif number == 2:  # batch 3 touches u1 and u2 only: the others stay in the aggregate
            producer.produce(30, users=["u1", "u2"])

    result = follow_pipeline(loaded, on_batch=on_batch)

    assert len(producer.rows) == 130
    assert result.stopped == "idle"  # it stopped by itself: every source returned nothing
    assert result.batches == 3
    assert [n for n, _ in seen] == [1, 2, 3]
    assert [s.rows for _, s in seen] == [{"events": 50}, {"events": 50}, {"events": 30}]
    assert result.rows == {"events": 130}
    assert {"warehouse:events", "warehouse:per_user", "dashboard:live"} <= set(result.outputs)

    produced = producer.frame()
    events = stored(tmp_path, "events")
    assert events.height == 130
    assert sorted(events["_id"].to_list()) == sorted(produced["_id"].to_list())
    assert events["amount"].dtype == pl.Float64 and events["quantity"].dtype == pl.Int64

    totals = stored(tmp_path, "per_user").sort("user_id")
    expected = expected_totals(produced)
    assert totals.columns == expected.columns
    assert totals.select("user_id", "region", "quantity", "orders").rows() == (
        expected.select("user_id", "region", "quantity", "orders").rows()
    )
    assert totals["amount"].to_list() == pytest.approx(expected["amount"].to_list())
    assert totals.filter(pl.col("user_id") == "u5")["region"].to_list() == [None]

    per_region = to_polars(result.data["per_region"]).sort("region", nulls_last=True)
    with duckdb.connect() as con:
        con.register("expected", expected)
        oracle = con.sql(
            "select region, sum(amount) as amount, sum(orders) as orders from expected "
            "group by region order by region nulls last"
        ).pl()
    assert per_region["region"].to_list() == oracle["region"].to_list()
    assert per_region["orders"].to_list() == oracle["orders"].to_list()
    assert per_region["amount"].to_list() == pytest.approx(oracle["amount"].to_list())

    # the dashboard's table shows the final totals (cells as the Table formats them)
    bodies = re.findall(r"<tbody>(.*?)</tbody>", html.read_text(encoding="utf-8"), re.S)
    totals_cells, events_cells = (
        [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body)]
        for body in bodies
    )
    assert sorted(events_cells) == sorted(map(list, produced.select("_id", "user_id").rows()))
    assert totals_cells == [
        [user, region or "", f"{amount:,.2f}", str(orders)]
        for user, region, amount, orders in expected.select(
            "user_id", "region", "amount", "orders"
        ).rows()
    ]


def test_max_batches_stops_early(stream: tuple[Any, str], tmp_path: Path) -> None:
    client, key = stream
    producer = Producer(client, key)
    producer.produce(130)
    result = follow_pipeline(write_pipeline(tmp_path, key), max_batches=2)
    assert result.stopped == "max_batches"
    assert result.batches == 2
    assert result.rows == {"events": 100}
    events = stored(tmp_path, "events")
    assert sorted(events["_id"].to_list()) == sorted(producer.frame().head(100)["_id"].to_list())
    totals = stored(tmp_path, "per_user").sort("user_id")
    assert (
        totals["orders"].to_list()
        == expected_totals(producer.frame().head(100))["orders"].to_list()
    )


def test_ctrl_c_stops_after_the_current_batch(stream: tuple[Any, str], tmp_path: Path) -> None:
    client, key = stream
    Producer(client, key).produce(130)
    before = signal.getsignal(signal.SIGINT)

    def on_batch(number: int, summary: BatchSummary) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C during the first batch

    result = follow_pipeline(write_pipeline(tmp_path, key), on_batch=on_batch)
    assert result.stopped == "interrupted"
    assert result.batches == 1
    assert stored(tmp_path, "events").height == 50
    assert signal.getsignal(signal.SIGINT) is before  # the handler is given back


def test_cli_follow_prints_a_line_per_batch(stream: tuple[Any, str], tmp_path: Path) -> None:
    client, key = stream
    Producer(client, key).produce(130)
    path = write_pipeline(tmp_path, key)
    cli = Path(sys.executable).parent / "data-pipeline"
    run = subprocess.run(
        [str(cli), "run", str(path), "--follow"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    batch_lines = [line for line in lines if line.startswith("batch ")]
    assert [line.split(":")[0] for line in batch_lines] == ["batch 1", "batch 2", "batch 3"]
    assert "50 rows read (events 50)" in batch_lines[0]
    assert "30 rows read (events 30)" in batch_lines[2]
    assert any("followed 3 batches" in line and "the stream is idle" in line for line in lines)
    assert any(str(tmp_path / "out" / "live.html") in line for line in lines)
    assert stored(tmp_path, "events").height == 130

    # a second run continues after the committed checkpoint; --max-batches from the command line
    Producer(client, key).produce(60)
    again = subprocess.run(
        [str(cli), "run", str(path), "--follow", "--max-batches", "1"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert again.returncode == 0, again.stdout + again.stderr
    again_lines = [line for line in again.stdout.splitlines() if line.startswith("batch ")]
    assert len(again_lines) == 1
    assert again_lines[0].startswith("batch 1: 50 rows read (events 50)")
    assert "checkpoint 4;" in again_lines[0]
    assert "--max-batches 1 reached" in again.stdout
    assert "continued after batch 3" in again.stdout
    assert stored(tmp_path, "events").height == 180


def test_the_docs_example_follows(stream: tuple[Any, str], tmp_path: Path) -> None:
    """The YAML of docs/pipelines.md "Following a stream" runs as written (stream key and
    timeout swapped for this test's)."""
    client, key = stream
    docs = (Path(__file__).resolve().parents[2] / "docs" / "pipelines.md").read_text("utf-8")
    section = docs.split("## Following a stream", 1)[1]
    text = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert "stream: orders" in text and "timeout: 5 " in text
    text = text.replace("stream: orders", f"stream: {key}").replace("timeout: 5 ", "timeout: 0.2 ")
    (tmp_path / "data").mkdir()
    pl.DataFrame({"user_id": list(REGIONS), "region": list(REGIONS.values())}).write_csv(
        tmp_path / "data" / "users.csv"
    )
    path = tmp_path / "live.yaml"
    path.write_text(text, encoding="utf-8")
    producer = Producer(client, key)
    producer.produce(40)

    result = follow_pipeline(path, environ={"REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert result.stopped == "idle"
    assert result.rows == {"events": 40}
    with duckdb.connect(str(tmp_path / "output" / "live.duckdb"), read_only=True) as con:
        assert con.sql("select count(*) from orders").fetchall() == [(40,)]
        totals = con.sql("select user_id, amount from per_user order by user_id").fetchall()
    expected = expected_totals(producer.frame())
    assert [u for u, _ in totals] == expected["user_id"].to_list()
    assert [a for _, a in totals] == pytest.approx(expected["amount"].to_list())
    assert client.xpending(key, "live-orders")["pending"] == 0  # the group acknowledged them
    assert (tmp_path / "output" / "live.html").is_file()


WINDOWED = """
name: minutes
sources:
  events:
    type: StreamingSource
    config: {{platform: redis, host: 127.0.0.1, port: 6379, stream: {stream}, max_messages: 4,
              timeout: 0.2}}
transformations:
  clean:
    input: events
    steps:
      - type: DataTypeConverter
        config: {{columns: {{v: int, ts: datetime}}}}
storage:
  warehouse:
    type: DataWarehouseStorage
    config: {{database: out/minutes.duckdb}}
    store:
      - {{data: per_minute, table: per_minute, if_exists: append}}
processing:
  per_minute:
    input: clean
    stream: {{emit: final, allowed_lateness: 0s}}
    steps:
      - type: WindowedAggregator
        config: {{time_column: ts, window: 1m, aggregations: {{v: sum}}}}
"""


def test_final_windows_are_appended_once_and_late_rows_are_kept_with_the_reason(
    stream: tuple[Any, str], tmp_path: Path
) -> None:
    client, key = stream
    path = tmp_path / "minutes.yaml"
    path.write_text(textwrap.dedent(WINDOWED).format(stream=key), encoding="utf-8")
    events = [  # minute 0, minute 1, minute 2 (closes 0 and 1), then one late for minute 0
        ("2024-06-01T12:00:05", 1),
        ("2024-06-01T12:00:40", 2),
        ("2024-06-01T12:01:10", 4),
        ("2024-06-01T12:01:50", 8),
        ("2024-06-01T12:02:30", 16),
        ("2024-06-01T12:00:30", 32),
    ]
    for ts, v in events:
        client.xadd(key, {"ts": ts, "v": str(v)})
    result = follow_pipeline(path)
    assert result.rows == {"events": 6}
    with duckdb.connect(str(tmp_path / "out" / "minutes.duckdb"), read_only=True) as con:
        windows = con.sql("select window_start, v from per_minute order by 1").fetchall()
        rejects = con.sql("select dataset, reason, row from _dp_rejects").fetchall()
    # closed windows, each once; minute 2 is still open (it stays in the checkpoint)
    assert [(w.strftime("%H:%M"), v) for w, v in windows] == [("12:00", 3), ("12:01", 12)]
    ((dataset, reason, row),) = rejects
    assert dataset == "per_minute" and reason.startswith("late")
    assert '"v": 32' in row
    # the open window is not lost: the next run continues with it
    client.xadd(key, {"ts": "2024-06-01T12:03:30", "v": "64"})
    follow_pipeline(path)
    with duckdb.connect(str(tmp_path / "out" / "minutes.duckdb"), read_only=True) as con:
        later = con.sql("select window_start, v from per_minute order by 1").fetchall()
    assert [(w.strftime("%H:%M"), v) for w, v in later][-1] == ("12:02", 16)
