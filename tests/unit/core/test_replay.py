"""Replay (core/replay.py): a Narwhals computation planned once per input schema, run on each
call's frames. Checked against the same Narwhals function run directly (the oracle is plain
Polars written here), and that a kept plan never answers for other data, another schema or
another key."""

from __future__ import annotations

import threading
from typing import Any

import narwhals as nw
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from data_pipeline.core.replay import Replay


def _totals(rows: Any) -> Any:
    return (
        rows.filter(nw.col("v") > 0)
        .group_by("k")
        .agg(nw.col("v").sum().alias("total"), nw.len().alias("n"))
        .sort("k")
    )


def _oracle(frame: pl.DataFrame) -> pl.DataFrame:
    totals: dict[Any, list[Any]] = {}
    for k, v in frame.select("k", "v").rows():
        if v is not None and v > 0:
            entry = totals.setdefault(k, [0, 0])
            entry[0] += v
            entry[1] += 1
    keys = sorted(totals)
    return pl.DataFrame(
        {
            "k": pl.Series(keys, dtype=frame.schema["k"]),
            "total": pl.Series([totals[k][0] for k in keys], dtype=frame.schema["v"]),
            "n": pl.Series([totals[k][1] for k in keys], dtype=pl.UInt32),
        }
    )


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 5), st.none() | st.integers(-50, 50)), max_size=30),
        min_size=1,
        max_size=5,
    )
)
def test_each_call_computes_its_own_frame(batches: list[list[tuple[int, int | None]]]) -> None:
    """One plan, many batches: every result is that batch's answer (never a kept one)."""
    built = []

    def build(rows: Any) -> Any:
        built.append(1)
        return _totals(rows)

    replay = Replay(build)
    for rows in batches:
        frame = pl.DataFrame(rows, schema={"k": pl.Int64, "v": pl.Int64}, orient="row")
        assert_frame_equal(replay(frame), _oracle(frame), check_dtypes=False)
    assert len(built) == 1  # planned once for the one schema


def test_a_new_schema_or_key_gets_a_new_plan() -> None:
    seen: list[Any] = []

    def build(rows: Any) -> Any:
        seen.append(rows.collect_schema()["v"])
        return _totals(rows)

    replay = Replay(build)
    ints = pl.DataFrame({"k": [1, 1, 2], "v": [1, 2, 3]})
    floats = pl.DataFrame({"k": [1, 1, 2], "v": [1.5, 2.5, -3.0]})
    assert replay(ints)["total"].to_list() == [3, 3]
    assert replay(floats)["total"].to_list() == [4.0]
    assert replay(ints)["total"].to_list() == [3, 3]
    assert seen == [nw.Int64, nw.Float64]
    replay(ints, key="other")
    assert len(seen) == 3


def test_several_inputs_and_pushdown() -> None:
    """Two inputs in one plan; the filter and the projection Polars pushes into the sources."""

    def build(left: Any, right: Any) -> Any:
        return left.join(right, on="k", how="left").filter(nw.col("w") > 1).select("k", "w")

    replay = Replay(build)
    left = pl.DataFrame({"k": [1, 2, 3], "unused": ["a", "b", "c"]})
    right = pl.DataFrame({"k": [1, 2, 3], "w": [1, 2, 3]})
    assert_frame_equal(replay(left, right).sort("k"), pl.DataFrame({"k": [2, 3], "w": [2, 3]}))
    assert replay(left, right.with_columns(pl.col("w") * 0)).height == 0


def test_calls_from_threads_do_not_mix_their_frames() -> None:
    replay = Replay(lambda rows: rows.select(nw.col("v").sum()))
    errors: list[str] = []

    def work(value: int) -> None:
        frame = pl.DataFrame({"v": [value] * 100})
        for _ in range(50):
            got = replay(frame).item()
            if got != value * 100:
                errors.append(f"{value}: {got}")

    threads = [threading.Thread(target=work, args=(v,)) for v in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_an_error_leaves_the_slots_empty() -> None:
    replay = Replay(lambda rows: rows.select(nw.col("v").cast(nw.UInt8)))
    with pytest.raises(Exception, match=r"conversion|cast|strict"):
        replay(pl.DataFrame({"v": [1000]}))
    assert replay(pl.DataFrame({"v": [7]})).item() == 7
