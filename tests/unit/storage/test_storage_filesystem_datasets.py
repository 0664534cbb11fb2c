"""A name Spark's executors stored as a dataset directory, then stored from this process.

Spark writes ``<name>/`` (a link to a version directory of part files); a polars store of the
same name must add a version of that dataset, never a ``<name>.parquet`` beside it: reads take
the file first, so the dataset's rows would disappear behind it (and an append would lose them).
The dataset is laid out here by hand, as ``write_parquet_version`` + the link switch leave it.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from data_pipeline.storage import FileSystemStorage


def spark_like_dataset(base: Path, name: str, frame: pl.DataFrame) -> None:
    version = base / f".{name}.v-0123456789abcdef"
    version.mkdir(parents=True)
    frame.write_parquet(version / "part-00000-abc.snappy.parquet")
    os.symlink(version.name, base / name)
    dead = base / f".{name}.v-killedwriter"  # what a killed Spark write leaves
    dead.mkdir()
    (dead / "part-00000-x.parquet").write_bytes(b"partial")


def test_polars_store_of_a_spark_dataset_adds_a_version(tmp_path: Path) -> None:
    first = pl.DataFrame({"id": [1, 2], "v": ["a", "b"]})
    more = pl.DataFrame({"id": [3], "v": ["c"]})
    spark_like_dataset(tmp_path, "t", first)
    lake = FileSystemStorage(name="lake", config={"base_path": str(tmp_path)})

    assert lake.store(more, "t", if_exists="append").rows == 1
    assert not (tmp_path / "t.parquet").exists()
    assert_frame_equal(lake.retrieve("t").sort("id"), pl.concat([first, more]))
    assert not (tmp_path / ".t.v-killedwriter").exists()  # the next load sweeps leftovers

    assert lake.store(more, "t", if_exists="replace").rows == 1
    assert_frame_equal(lake.retrieve("t"), more)
    versions = [p.name for p in tmp_path.iterdir() if p.name.startswith(".t.v-")]
    assert len(versions) == 1 and (tmp_path / "t").is_symlink()


def test_a_file_left_beside_the_dataset_goes_with_the_next_store(tmp_path: Path) -> None:
    """A Spark write killed after its switch but before removing the single file it took in."""
    spark_like_dataset(tmp_path, "t", pl.DataFrame({"id": [1]}))
    pl.DataFrame({"id": [0]}).write_parquet(tmp_path / "t.parquet")
    lake = FileSystemStorage(name="lake", config={"base_path": str(tmp_path)})
    lake.store(pl.DataFrame({"id": [7]}), "t", if_exists="replace")
    assert not (tmp_path / "t.parquet").exists()
    assert lake.retrieve("t")["id"].to_list() == [7]
