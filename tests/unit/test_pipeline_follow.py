"""Following a stream: StreamProcessor.snapshot() and the checks `run --follow` makes first.

The runs over a real Redis stream are in tests/e2e/test_follow_pipeline.py.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from data_pipeline.cli import app
from data_pipeline.core.errors import ConfigError, UnsupportedOperationError
from data_pipeline.core.frames import to_polars
from data_pipeline.pipeline import follow_pipeline, load_pipeline, validate_follow
from data_pipeline.processing import (
    DataAggregator,
    DataFilter,
    ProcessingPipeline,
    StreamProcessor,
)

BATCHES = [
    pl.DataFrame({"user_id": ["a", "b", "a", "c"], "amount": [10.0, 2.5, -1.0, 7.0]}),
    pl.DataFrame({"user_id": ["b", "b", "d"], "amount": [4.0, 1.5, 3.0]}),
    pl.DataFrame({"user_id": ["a", "c", "d", "e"], "amount": [0.5, 8.0, 1.25, 9.0]}),
]

# the oracle of the snapshot after each micro-batch: SQL over every row seen so far
ORACLE = """
    select user_id, sum(amount) as amount_sum, avg(amount) as avg_amount, count(*) as n
    from seen where amount > 0 group by user_id having count(*) >= 2 order by user_id
"""


def _as_engine(frame: pl.DataFrame, engine: str) -> Any:
    if engine == "pandas":
        return frame.to_pandas()
    if engine == "duckdb":
        return duckdb.from_arrow(frame.to_arrow())
    return frame


def _per_user() -> ProcessingPipeline:
    return (
        ProcessingPipeline("per_user")
        .add_processor(DataFilter(name="positive", config={"condition": "amount > 0"}))
        .add_processor(
            DataAggregator(
                name="totals",
                config={
                    "group_by": ["user_id"],
                    "aggregations": {
                        "amount": ["sum", {"agg": "mean", "as": "avg_amount"}],
                        "*": {"agg": "count", "as": "n"},
                    },
                },
            )
        )
        .add_processor(DataFilter(name="repeat_users", config={"condition": "n >= 2"}))
    )


@pytest.mark.parametrize("engine", ["polars", "pandas", "duckdb"])
def test_snapshot_is_the_whole_result_after_each_micro_batch(engine: str) -> None:
    stream = StreamProcessor(name="live", pipeline=_per_user())
    assert stream.snapshot() is None
    for i, batch in enumerate(BATCHES, start=1):
        stream.process_batch(_as_engine(batch, engine))
        snapshot = to_polars(stream.snapshot()).sort("user_id")
        with duckdb.connect() as con:
            con.register("seen", pl.concat(BATCHES[:i]))
            expected = con.sql(ORACLE).pl()
        assert snapshot.columns == expected.columns
        assert snapshot["user_id"].to_list() == expected["user_id"].to_list(), f"batch {i}"
        assert snapshot["n"].to_list() == expected["n"].to_list()
        for column in ("amount_sum", "avg_amount"):
            assert snapshot[column].to_list() == pytest.approx(expected[column].to_list())
    # after the last batch a, b, c and d have two positive rows or more; e only one
    assert to_polars(stream.snapshot())["user_id"].sort().to_list() == ["a", "b", "c", "d"]


def test_snapshot_keeps_the_engine_of_the_micro_batches() -> None:
    stream = StreamProcessor(name="live", pipeline=_per_user())
    stream.process_batch(BATCHES[0].to_pandas())
    assert type(stream.snapshot()).__module__.startswith("pandas")
    polars_out = StreamProcessor(name="live", config={"output": "polars"}, pipeline=_per_user())
    polars_out.process_batch(BATCHES[0].to_pandas())
    assert isinstance(polars_out.snapshot(), pl.DataFrame)


def test_snapshot_without_aggregation_is_the_last_batch() -> None:
    steps = ProcessingPipeline("positive").add_processor(
        DataFilter(name="positive", config={"condition": "amount > 0"})
    )
    stream = StreamProcessor(name="live", pipeline=steps)
    for batch in BATCHES:
        stream.process_batch(batch)
    assert stream.snapshot()["amount"].to_list() == [0.5, 8.0, 1.25, 9.0]
    stream.reset()
    assert stream.snapshot() is None


# -- what `--follow` checks before anything runs ------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


STREAM = """
sources:
  events:
    type: StreamingSource
    config: {platform: redis, host: 127.0.0.1, port: 1, stream: nowhere, timeout: 0.1}
"""


def test_a_file_without_streaming_source_cannot_be_followed(tmp_path: Path) -> None:
    (tmp_path / "sales.csv").write_text("id,amount\n1,2.5\n", encoding="utf-8")
    path = _write(
        tmp_path,
        """
        sources:
          sales: {type: FileSystemSource, config: {path: sales.csv}}
        """,
    )
    with pytest.raises(ConfigError) as info:
        follow_pipeline(path)
    assert str(path) in str(info.value)
    assert "--follow needs a StreamingSource" in str(info.value)
    assert "sales" in str(info.value)

    result = CliRunner().invoke(app, ["run", str(path), "--follow"])
    assert result.exit_code == 2, result.output
    assert "--follow needs a StreamingSource" in result.output
    # without --follow the same file runs as before
    assert CliRunner().invoke(app, ["run", str(path)]).exit_code == 0


def test_max_batches_needs_follow_and_is_positive(tmp_path: Path) -> None:
    path = _write(tmp_path, STREAM)
    result = CliRunner().invoke(app, ["run", str(path), "--max-batches", "2"])
    assert result.exit_code == 2
    assert "--max-batches needs --follow" in result.output
    assert (
        CliRunner().invoke(app, ["run", str(path), "--follow", "--max-batches", "0"]).exit_code == 2
    )
    with pytest.raises(ConfigError, match="max_batches must be at least 1"):
        follow_pipeline(path, max_batches=0)


def test_joining_two_streaming_data_sets_is_refused(tmp_path: Path) -> None:
    more = """
      more:
        type: StreamingSource
        config: {platform: redis, host: 127.0.0.1, port: 1, stream: other, timeout: 0.1}
    processing:
      joined:
        input: events
        steps:
          - type: DataJoiner
            config: {how: left, "on": [id], right_table: more}
    """
    path = _write(tmp_path, STREAM + textwrap.dedent(more).lstrip("\n"))
    with pytest.raises(UnsupportedOperationError, match="joins the streaming data set 'more'"):
        validate_follow(load_pipeline(path))


ORDERS_AND_USERS = """
sources:
  orders: {type: FileSystemSource, config: {path: orders.csv}}
  users: {type: FileSystemSource, config: {path: users.csv}}
"""


def _orders_and_users(tmp_path: Path) -> None:
    """Orders of users u1, u2 and u9 (who has no user row), and the users u1 and u2."""
    (tmp_path / "orders.csv").write_text(
        "user_id,amount\nu1,2.5\nu2,4.0\nu1,1.0\nu9,3.0\n", encoding="utf-8"
    )
    (tmp_path / "users.csv").write_text("user_id,region\nu1,north\nu2,south\n", encoding="utf-8")


def test_joins_and_lookups_name_data_sets_of_the_file(tmp_path: Path) -> None:
    """What a followed pipeline uses to join static data: also in a plain `run`."""
    from data_pipeline.pipeline import run_pipeline

    _orders_and_users(tmp_path)
    path = _write(
        tmp_path,
        ORDERS_AND_USERS
        + textwrap.dedent(
            """
        processing:
          joined:
            input: orders
            steps:
              - type: DataJoiner
                config: {how: inner, "on": [user_id], right_table: users}
          looked_up:
            input: orders
            steps:
              - type: DataEnricher
                config:
                  lookups:
                    - {reference: users, "on": user_id, defaults: {region: unknown}}
        """
        ),
    )
    result = run_pipeline(path)
    joined = to_polars(result.data["joined"]).sort("amount")
    assert joined.select("user_id", "region").rows() == [
        ("u1", "north"),
        ("u1", "north"),
        ("u2", "south"),
    ]
    looked_up = to_polars(result.data["looked_up"]).sort("amount")
    assert looked_up["region"].to_list() == ["north", "north", "unknown", "south"]


@pytest.mark.parametrize(
    ("step", "where"),
    [
        ('{type: DataJoiner, config: {"on": [user_id], right_table: userz}}', "right_table"),
        (
            '{type: DataEnricher, config: {lookups: [{reference: userz, "on": user_id}]}}',
            "lookups[0].reference",
        ),
        # declared after the pipeline that joins it: not made yet when the join runs
        ('{type: DataJoiner, config: {"on": [user_id], right_table: later}}', "right_table"),
    ],
)
def test_a_join_of_an_unknown_data_set_fails_at_load(tmp_path: Path, step: str, where: str) -> None:
    (tmp_path / "orders.csv").write_text("user_id,amount\nu1,2.5\n", encoding="utf-8")
    path = _write(
        tmp_path,
        f"""
        sources:
          orders: {{type: FileSystemSource, config: {{path: orders.csv}}}}
        processing:
          joined:
            input: orders
            steps: [{step}]
          later:
            input: orders
            steps: [{{type: DataFilter, config: {{condition: "amount > 0"}}}}]
        """,
    )
    with pytest.raises(ConfigError, match=rf"processing\.joined\[0\]\.config\.{re.escape(where)}"):
        load_pipeline(path)


def test_dashboard_command_recomputes_a_join_from_stored_data(tmp_path: Path) -> None:
    from data_pipeline.pipeline import render_dashboards, run_pipeline

    _orders_and_users(tmp_path)
    path = _write(
        tmp_path,
        ORDERS_AND_USERS
        + textwrap.dedent(
            """
        storage:
          lake:
            type: FileSystemStorage
            config: {base_path: lake, format: parquet}
            store: [{data: orders}, {data: users}]
        processing:
          by_region:
            input: orders
            steps:
              - type: DataJoiner
                config: {how: inner, "on": [user_id], right_table: users}
              - type: DataAggregator
                config: {group_by: [region], aggregations: {amount: sum}}
        dashboards:
          d:
            path: d.html
            visualizations:
              - {type: Table, name: totals, data: by_region}
        """
        ),
    )
    run_pipeline(path)
    (tmp_path / "d.html").unlink()
    written = render_dashboards(path)  # by_region is not stored: recomputed, join included
    html = Path(written["d"]).read_text(encoding="utf-8")
    assert "north" in html and "south" in html and "3.5" in html


# -- where the checkpoint lives and how outputs are stored (checked before anything runs) --------

WINDOWS = """
processing:
  per_minute:
    input: events
    stream: {stream}
    steps:
      - type: WindowedAggregator
        config: {{time_column: ts, window: 1m, group_by: [k], aggregations: {{v: sum}}}}
"""


def _follow_file(tmp_path: Path, storage: str, stream: str = "{emit: updates}") -> Path:
    return _write(
        tmp_path,
        STREAM + textwrap.dedent(WINDOWS.format(stream=stream)) + textwrap.dedent(storage),
    )


WAREHOUSE = """
storage:
  wh:
    type: DataWarehouseStorage
    config: {{database: out.duckdb}}
    store:
      - {{data: per_minute{entry}}}
"""


@pytest.mark.parametrize(
    ("entry", "mode"),
    [("", "upsert"), (", if_exists: upsert", "upsert")],
)
def test_a_processors_output_is_upserted_on_its_window_key(
    tmp_path: Path, entry: str, mode: str
) -> None:
    from data_pipeline._follow import _plan_follow

    plan = _plan_follow(load_pipeline(_follow_file(tmp_path, WAREHOUSE.format(entry=entry))))
    (output,) = plan.outputs
    assert (output.if_exists, output.key) == (mode, ["k", "window_start"])
    assert plan.store_storage == "wh" and plan.where == "storage.wh"
    assert plan.rejects_storage == "wh" and plan.rejects_table == "_dp_rejects"
    assert plan.stream_configs == {"per_minute": {"emit": "updates"}}


@pytest.mark.parametrize(
    ("entry", "stream", "message"),
    [
        (", if_exists: replace", "{emit: updates}", "if_exists 'replace' does not fit"),
        (", if_exists: append", "{emit: updates}", "append needs emit: final"),
    ],
)
def test_outputs_that_would_not_be_exact_are_refused(
    tmp_path: Path, entry: str, stream: str, message: str
) -> None:
    path = _follow_file(tmp_path, WAREHOUSE.format(entry=entry), stream)
    with pytest.raises(ConfigError, match=message):
        validate_follow(load_pipeline(path))


def test_append_of_final_windows_is_exact(tmp_path: Path) -> None:
    from data_pipeline._follow import _plan_follow

    path = _follow_file(tmp_path, WAREHOUSE.format(entry=", if_exists: append"), "{emit: final}")
    assert _plan_follow(load_pipeline(path)).outputs[0].if_exists == "append"


def test_stream_keys_are_validated_at_load(tmp_path: Path) -> None:
    path = _follow_file(tmp_path, WAREHOUSE.format(entry=""), "{emit: sometimes}")
    with pytest.raises(ConfigError, match=r"processing\.per_minute\.stream\.emit"):
        load_pipeline(path)


def test_several_stores_need_the_checkpoints_storage_named(tmp_path: Path) -> None:
    from data_pipeline._follow import _plan_follow

    two = """
    storage:
      wh:
        type: DataWarehouseStorage
        config: {database: out.duckdb}
        store: [{data: per_minute}]
      other:
        type: DataWarehouseStorage
        config: {database: other.duckdb}
        store: [{data: events, if_exists: append}]
    """
    path = _follow_file(tmp_path, two)
    with pytest.raises(ConfigError, match="say which one keeps the checkpoint"):
        validate_follow(load_pipeline(path))
    text = path.read_text(encoding="utf-8") + "checkpoint: {storage: wh}\n"
    path.write_text(text, encoding="utf-8")
    assert _plan_follow(load_pipeline(path)).store_storage == "wh"


def test_a_storage_without_transactions_cannot_hold_the_checkpoint(tmp_path: Path) -> None:
    from data_pipeline._follow import _plan_follow

    documents = """
    storage:
      docs:
        type: NoSQLDBStorage
        config: {db_type: embedded, database: docs, primary_key: [k, window_start]}
        store: [{data: per_minute}]
    """
    path = _follow_file(tmp_path, documents)
    with pytest.raises(ConfigError, match="cannot commit a batch's writes and the checkpoint"):
        validate_follow(load_pipeline(path))
    # a checkpoint in a folder instead: allowed, the stores are then at least once
    path.write_text(path.read_text("utf-8") + "checkpoint: {path: ckpt}\n", encoding="utf-8")
    plan = _plan_follow(load_pipeline(path))
    assert plan.where == str(tmp_path / "ckpt") and plan.store_storage is None
    # or none at all
    path.write_text(
        path.read_text("utf-8").replace("checkpoint: {path: ckpt}", "checkpoint: false"),
        encoding="utf-8",
    )
    assert _plan_follow(load_pipeline(path)).store is None


def test_nothing_stored_keeps_the_checkpoint_beside_the_file(tmp_path: Path) -> None:
    from data_pipeline._follow import _plan_follow

    plan = _plan_follow(load_pipeline(_follow_file(tmp_path, "")))
    assert plan.where == str(tmp_path / ".data_pipeline" / "checkpoints")
    assert plan.rejects_path == tmp_path / ".data_pipeline" / "rejects" / "pipeline.csv"


def test_reject_csv_of_follow_keeps_every_batch_under_one_header(tmp_path: Path) -> None:
    """`--follow` appends each batch's rejects to one CSV (the header once), as sources do."""
    import types

    import polars as pl

    from data_pipeline._follow import _Run

    path = tmp_path / "rejects" / "pipeline.csv"
    run = types.SimpleNamespace(
        plan=types.SimpleNamespace(rejects_storage=None, rejects_path=path),
        loaded=types.SimpleNamespace(source_file=tmp_path / "pipeline.yaml"),
        outputs={},
    )

    def batch(n: int) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "batch": [n],
                "dataset": ["events"],
                "step": ["read"],
                "id": [str(n)],
                "reason": ["not JSON"],
                "row": [f"raw {n}"],
            }
        )

    _Run._store_rejects(run, batch(1))  # type: ignore[arg-type]
    _Run._store_rejects(run, batch(2))  # type: ignore[arg-type]
    kept = pl.read_csv(path)
    assert kept["batch"].to_list() == [1, 2] and kept["row"].to_list() == ["raw 1", "raw 2"]
    assert path.read_text("utf-8").count("batch,dataset") == 1
    assert run.outputs == {"rejects": str(path)}
