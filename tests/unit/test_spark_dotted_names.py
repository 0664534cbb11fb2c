"""Column names with a dot on PySpark: every step kind answers what it answers on Polars.

Spark reads an unquoted ``a.b`` as field ``b`` of column ``a``; Narwhals passed names unquoted,
so every step but the aggregations failed (UNRESOLVED_COLUMN) or was refused. core.spark_names
makes Narwhals quote them (checked for the Narwhals versions in CHECKED_NARWHALS). One Spark
session (the shared fixture), a few rows per case.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import polars as pl
import pytest

from data_pipeline.core import spark_names
from data_pipeline.core.engines import to_polars
from data_pipeline.core.errors import UnsupportedOperationError
from data_pipeline.processing import (
    BatchProcessor,
    DataAggregator,
    DataEnricher,
    DataFilter,
    DataJoiner,
    ProcessingPipeline,
    StreamProcessor,
    WindowedAggregator,
)
from data_pipeline.transformation import (
    ColumnRenamer,
    ColumnSelector,
    CustomTransformer,
    DataTypeConverter,
    MissingValueHandler,
    OutlierHandler,
)
from tests.conftest import spark_frame

pytestmark = pytest.mark.spark

T0 = dt.datetime(2024, 1, 1)
DATA = pl.DataFrame(
    {
        "k.ey": [1, 1, 2, 2, None, 2],
        "a.b": [1.0, None, 3.0, 250.0, 5.0, 3.0],
        "s.t": ["x", "y", None, "x", "z", None],
        "t.s": [T0 + dt.timedelta(minutes=25 * i) for i in range(6)],
        "n`q": ["1", "2", "x", None, "5", "6"],
    }
)
RIGHT = pl.DataFrame({"k.ey": [1, 2], "r.v": ["one", "two"], "a.b": [10.0, 20.0]})

Make = Callable[[Any], Any]  # the right-hand frame (same engine) -> a step


def _aggregator(median: bool = True) -> DataAggregator:
    """``median`` cannot be batched (BatchProcessor refuses it on every engine)."""
    return DataAggregator(
        "g",
        {
            "group_by": ["k.ey"],
            "aggregations": {
                "a.b": [
                    "sum",
                    "max",
                    *(["median"] if median else []),
                    {"agg": "first", "order_by": "t.s", "as": "f.x"},
                ],
                "*": "count",
            },
            "having": '"a.b_sum" > 1',
            "sort": [{"column": "k.ey", "descending": True}],
        },
    )


def _windows() -> WindowedAggregator:
    return WindowedAggregator(
        "w",
        {
            "time_column": "t.s",
            "window": "1h",
            "group_by": ["k.ey"],
            "aggregations": {"a.b": "sum", "*": "count"},
        },
    )


def _batches(step: Callable[[], Any]) -> Make:
    return lambda right: BatchProcessor(
        "b", {"batch_size": 2}, pipeline=ProcessingPipeline("p").add(step())
    )


CASES: dict[str, Make] = {
    "ColumnRenamer": lambda right: ColumnRenamer("r", {"mapping": {"a.b": "a.c", "s.t": "st"}}),
    "ColumnSelector": lambda right: ColumnSelector("s", {"include": ["s.t", "a.b"]}),
    "CustomTransformer": lambda right: CustomTransformer(
        "c", {"expression": '"x.y" = "a.b" * 2 + length("s.t")'}
    ),
    "MissingValueHandler": lambda right: MissingValueHandler(
        "m", {"strategy": "fill", "columns": ["a.b", "s.t"]}
    ),
    "MissingValueHandler-drop": lambda right: MissingValueHandler(
        "m", {"strategy": "drop", "columns": ["a.b", "s.t"]}
    ),
    "OutlierHandler-clip": lambda right: OutlierHandler(
        "o", {"method": "bounds", "lower": 0, "upper": 100, "action": "clip", "columns": ["a.b"]}
    ),
    "OutlierHandler-iqr": lambda right: OutlierHandler(
        "o", {"method": "iqr", "action": "remove", "columns": ["a.b"]}
    ),
    "DataTypeConverter": lambda right: DataTypeConverter(
        "t", {"columns": {"n`q": "int", "a.b": "int32"}, "errors": "coerce"}
    ),
    "DataAggregator": lambda right: _aggregator(),
    "BatchProcessor": _batches(lambda: _aggregator(median=False)),
    "DataEnricher": lambda right: DataEnricher(
        "e",
        {
            "derived": ['"d.x" = "a.b" + 1'],
            "date_parts": {"t.s": ["hour", "minute", "weekday"]},
            "buckets": [{"column": "a.b", "breaks": [10], "labels": ["lo", "hi"], "as": "b.x"}],
            "lookups": [{"reference": "r", "on": "k.ey", "columns": ["r.v"]}],
        },
        references={"r": right},
    ),
    "DataFilter": lambda right: DataFilter("f", {"condition": '"a.b" > 2 or "s.t" is null'}),
    "DataFilter-conditions": lambda right: DataFilter(
        "f",
        {
            "conditions": [
                {"column": "a.b", "op": ">", "value": 2},
                {"column": "s.t", "op": "in", "value": ["x", "z"]},
            ],
            "combine": "or",
        },
    ),
    "DataJoiner-left": lambda right: DataJoiner("j", {"how": "left", "on": ["k.ey"]}, right=right),
    "DataJoiner-full": lambda right: DataJoiner(
        "j", {"how": "full", "left_on": ["k.ey"], "right_on": ["k.ey"]}, right=right
    ),
    "WindowedAggregator": lambda right: _windows(),
    "WindowedAggregator-batches": _batches(_windows),
}


def _rows(frame: pl.DataFrame) -> list[tuple[Any, ...]]:
    return sorted(frame.rows(), key=repr)


@pytest.mark.parametrize("case", list(CASES))
def test_a_step_on_dotted_names_answers_on_spark_as_on_polars(spark: Any, case: str) -> None:
    make = CASES[case]
    want = to_polars(make(RIGHT).run(DATA))
    got = to_polars(make(spark_frame(spark, RIGHT)).run(spark_frame(spark, DATA)))
    assert got.columns == want.columns
    assert _rows(got) == _rows(want)


def test_windows_of_a_stream_on_dotted_names(spark: Any) -> None:
    """StreamProcessor(WindowedAggregator) over Spark micro-batches: the windows of Polars."""

    def run(batches: list[Any]) -> list[pl.DataFrame]:
        steps = ProcessingPipeline("p").add(_windows())
        stream = StreamProcessor("s", {"emit": "final", "output": "polars"}, pipeline=steps)
        return list(stream.process_stream(batches))

    halves = [DATA.head(3), DATA.tail(3)]
    want = pl.concat(run(halves))
    got = pl.concat(run([spark_frame(spark, h) for h in halves]))
    assert got.columns == want.columns
    assert _rows(got) == _rows(want)
    assert want.height > 0


def test_a_struct_field_is_not_read_for_a_dotted_column(spark: Any) -> None:
    """A struct column ``a`` with field ``b`` beside a column named ``a.b``: unquoted, Spark
    reads the struct field (1000, 2000) instead of the column (1, 2). Oracle: the values."""
    from pyspark.sql import functions as F

    native = spark.createDataFrame([(1.0, 1000.0), (2.0, 2000.0)], "`a.b` double, v double")
    native = native.withColumn("a", F.struct(F.col("v").alias("b"))).drop("v")
    out = DataFilter("f", {"condition": '"a.b" > 1.5'}).process(native)
    assert [r["a.b"] for r in out.collect()] == [2.0]
    out = CustomTransformer("c", {"expression": '"x" = "a.b" * 10'}).transform(native)
    assert sorted(r["x"] for r in out.collect()) == [10.0, 20.0]


def test_an_unchecked_narwhals_version_refuses_dotted_names(monkeypatch: Any, spark: Any) -> None:
    """Without the quoting (a Narwhals version it was not checked against) a step refuses a
    dotted name with an UnsupportedOperationError naming it, never a raw AnalysisException."""
    monkeypatch.setattr(spark_names, "install", lambda: False)
    frame = spark_frame(spark, DATA)
    with pytest.raises(UnsupportedOperationError, match=r"'a\.b'.*field b of column a"):
        MissingValueHandler("m", {"strategy": "fill", "columns": ["a.b"]}).transform(frame)
    plain = spark_frame(spark, pl.DataFrame({"a": [1.0, None]}))
    out = MissingValueHandler("m", {"strategy": "constant", "value": 0}).transform(plain)
    assert [r["a"] for r in out.collect()] == [1.0, 0.0]


def test_the_installed_narwhals_is_one_the_quoting_was_checked_against() -> None:
    """Fails when Narwhals is upgraded past the test extra's pin (pyproject.toml): re-run this
    module with the new version, check core/spark_names.py's patched internals, add the version
    to CHECKED_NARWHALS and move the pin."""
    assert spark_names.install()


def test_narwhals_frame_methods_take_dotted_names_on_spark(spark: Any) -> None:
    """The patched Narwhals methods themselves (oracle: the values written here)."""
    import narwhals as nw

    from data_pipeline.core.engines import check_spark_dotted_names

    check_spark_dotted_names(["a.b"], "pyspark")  # installs the quoting
    data = pl.DataFrame({"a.b": [1, None, 1, 3], "c`d": ["x", "y", "x", None]})
    frame = nw.from_native(spark_frame(spark, data))

    def rows(f: Any) -> list[tuple[Any, ...]]:
        return _rows(to_polars(f.to_native()))

    assert rows(frame.drop_nulls(["a.b"])) == sorted([(1, "x"), (1, "x"), (3, None)], key=repr)
    unique = frame.select("c`d", "a.b").unique()
    assert rows(unique) == sorted([(None, 3), ("x", 1), ("y", None)], key=repr)
    assert rows(frame.group_by("a.b", drop_null_keys=True).agg(nw.len())) == [(1, 2), (3, 1)]
    assert rows(frame.sort("a.b", nulls_last=True).head(1)) == [(1, "x")]


def test_a_spark_frame_with_dotted_and_backticked_names_appends_to_parquet(
    spark: Any, tmp_path: Any
) -> None:
    """The executors' Parquet append reorders the columns to the stored ones by name (quoted:
    a backtick inside a name is doubled). Oracle: Polars reads the part files back."""
    from data_pipeline.storage import FileSystemStorage

    store = FileSystemStorage("lake", {"base_path": str(tmp_path)})
    first = pl.DataFrame({"a.b": [1, 2], "c`d": ["x", "y"]})
    later = pl.DataFrame({"c`d": ["z"], "a.b": [3]})  # another column order
    store.store(spark_frame(spark, first), "t")
    store.store(spark_frame(spark, later), "t", if_exists="append")
    back = pl.read_parquet(str(tmp_path / "t" / "**" / "*.parquet"))
    assert sorted(back.select("a.b", "c`d").rows()) == [(1, "x"), (2, "y"), (3, "z")]


def test_a_spark_frame_partitioned_by_a_dotted_column_writes_hive_directories(
    spark: Any, tmp_path: Any
) -> None:
    """``partition_by`` with a dotted name: the executors write ``r.g=<value>/`` directories
    (partitionBy takes names, not expressions). Oracle: the directories and the rows Polars
    reads back with hive partitioning."""
    from data_pipeline.storage import FileSystemStorage

    store = FileSystemStorage("lake", {"base_path": str(tmp_path), "partition_by": ["r.g"]})
    data = pl.DataFrame({"a.b": [1, 2, 3], "r.g": ["x", "y", "x"]})
    assert store.store(spark_frame(spark, data), "t").rows == 3
    dirs = sorted(p.name for p in (tmp_path / "t").iterdir() if p.is_dir())
    assert dirs == ["r.g=x", "r.g=y"]
    back = pl.read_parquet(str(tmp_path / "t" / "**" / "*.parquet"), hive_partitioning=True)
    assert sorted(back.select("a.b", "r.g").rows()) == [(1, "x"), (2, "y"), (3, "x")]


def test_a_pipeline_file_on_spark_with_dotted_csv_headers(spark: Any, tmp_path: Any) -> None:
    """``engine: spark`` end to end (spark.read of a CSV whose header has dots, a filter, an
    aggregation, a Parquet store). Oracle: the sums and counts computed here."""
    from data_pipeline.pipeline import run_pipeline

    data = pl.DataFrame(
        {
            "re.gion": [("n", "s")[i % 2] for i in range(10)],
            "am.ount": [float(i) for i in range(10)],
        }
    )
    (tmp_path / "in").mkdir()
    data.write_csv(tmp_path / "in" / "part.csv")
    spec = {
        "engine": "spark",
        "sources": {
            "sales": {
                "type": "FileSystemSource",
                "config": {"path": str(tmp_path / "in"), "format": "csv"},
            }
        },
        "processing": {
            "by_region": {
                "input": "sales",
                "steps": [
                    {
                        "type": "DataFilter",
                        "config": {"conditions": [{"column": "am.ount", "op": ">", "value": 3}]},
                    },
                    {
                        "type": "DataAggregator",
                        "config": {
                            "group_by": ["re.gion"],
                            "aggregations": {"am.ount": ["sum", "count"]},
                        },
                    },
                ],
            }
        },
        "storage": {
            "lake": {
                "type": "FileSystemStorage",
                "config": {"base_path": str(tmp_path / "lake")},
                "store": [{"data": "by_region"}],
            }
        },
    }
    run_pipeline(spec)
    stored = pl.read_parquet(str(tmp_path / "lake" / "by_region" / "*.parquet"))
    # n: 4, 6, 8 -> sum 18, count 3; s: 5, 7, 9 -> 21, 3
    assert sorted(stored.rows()) == [("n", 18.0, 3), ("s", 21.0, 3)]
    assert stored.columns == ["re.gion", "am.ount_sum", "am.ount_count"]
