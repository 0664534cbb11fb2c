"""FileSystemStorage: formats, atomic writes, base_path confinement, partitioned datasets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from data_pipeline.core.engines import engine_of
from data_pipeline.core.errors import (
    ColumnNotFoundError,
    ConfigError,
    InputNotFoundError,
    StorageError,
    StorageSchemaError,
)
from data_pipeline.storage.filesystem import FileSystemStorage

DATA = {
    "id": [1, 2, 3, 4],
    "region": ["EU", "US", "EU", "APAC"],
    "amount": [10.5, None, 3.25, 7.0],
    "day": [__import__("datetime").date(2024, 1, d) for d in (1, 2, 3, 4)],
}


def frame() -> pl.DataFrame:
    return pl.DataFrame(DATA)


def storage(tmp_path: Path, **config: Any) -> FileSystemStorage:
    return FileSystemStorage(name="files", config={"base_path": str(tmp_path / "lake"), **config})


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_parquet_roundtrip_every_engine(tmp_path: Path, make_frame: Any) -> None:
    store = storage(tmp_path)
    result = store.store(make_frame(DATA), "sales")
    # a Spark frame is written by the executors: a dataset directory of part files
    name = "sales" if engine_of(make_frame(DATA)) == "pyspark" else "sales.parquet"
    assert result.target == str(tmp_path / "lake" / name)
    assert result.rows == 4 or result.rows is None
    out = store.retrieve("sales")
    expected = frame()
    if out.schema["day"] != pl.Date:  # pandas turns dates into datetimes
        expected = expected.with_columns(pl.col("day").cast(out.schema["day"]))
    assert_frame_equal(out, expected)


@pytest.mark.parametrize(
    ("fmt", "compression", "suffix"),
    [
        ("parquet", None, ".parquet"),
        ("parquet", "snappy", ".parquet"),
        ("csv", None, ".csv"),
        ("csv", "gzip", ".csv.gz"),
        ("jsonl", None, ".jsonl"),
        ("jsonl", "zstd", ".jsonl.zst"),
        ("ipc", None, ".arrow"),
        ("ipc", "lz4", ".arrow"),
    ],
)
def test_formats_roundtrip_and_append(
    tmp_path: Path, fmt: str, compression: str | None, suffix: str
) -> None:
    store = storage(tmp_path, format=fmt, compression=compression)
    store.store(frame(), "sales")
    assert (tmp_path / "lake" / f"sales{suffix}").is_file()
    store.store(frame().lazy(), "sales", if_exists="append")
    out = store.retrieve("sales")
    expected = pl.concat([frame(), frame()])
    if fmt == "jsonl":  # JSON has no date type
        expected = expected.with_columns(pl.col("day").cast(pl.String))
    assert_frame_equal(out, expected)
    assert [p.name for p in (tmp_path / "lake").iterdir()] == [
        f"sales{suffix}"
    ]  # no temp files left


def test_parquet_compression_and_row_group_size(tmp_path: Path) -> None:
    store = storage(tmp_path, compression="gzip", row_group_size=1000)
    big = pl.DataFrame({"x": range(5000)})
    store.store(big, "big")
    meta = pq.ParquetFile(tmp_path / "lake" / "big.parquet").metadata
    assert meta.num_rows == 5000
    assert meta.num_row_groups == 5
    assert meta.row_group(0).column(0).compression == "GZIP"


def test_name_with_extension_and_subfolder(tmp_path: Path) -> None:
    store = storage(tmp_path)
    store.store(frame(), "year=2024/sales.parquet")
    assert (tmp_path / "lake" / "year=2024" / "sales.parquet").is_file()
    assert store.retrieve("year=2024/sales").height == 4


@pytest.mark.parametrize(
    "name",
    [
        "../escape",
        "a/../../escape",
        "/tmp/absolute",
        "..",
        "C:\\evil",
        "s3://bucket/x",
        "",
        "a\x00b",
    ],
)
def test_names_outside_base_path_are_rejected(tmp_path: Path, name: str) -> None:
    store = storage(tmp_path)
    before = listing(tmp_path)
    with pytest.raises(ConfigError):
        store.store(frame(), name)
    assert listing(tmp_path) == before


def test_symlink_escape_is_rejected(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "lake").mkdir()
    os.symlink(outside, tmp_path / "lake" / "link")
    store = storage(tmp_path)
    with pytest.raises(ConfigError, match="outside"):
        store.store(frame(), "link/sales")
    # deeper: the folders under the link must not be created outside either (issue 14)
    with pytest.raises(ConfigError, match="outside"):
        store.store(frame(), "link/new/sub/sales")
    with pytest.raises(ConfigError, match="outside"):
        store.store(frame(), "link/ds", partition_by=["region"])
    assert list(outside.iterdir()) == []


def test_append_through_a_symlinked_file_is_refused(tmp_path: Path) -> None:
    """A link in base_path to a file elsewhere: appending must not copy the outside rows in."""
    outside = tmp_path / "outside.parquet"
    pl.DataFrame({"id": [99], "region": ["secret"], "amount": [0.0]}).write_parquet(outside)
    before = outside.read_bytes()
    (tmp_path / "lake").mkdir()
    os.symlink(outside, tmp_path / "lake" / "sales.parquet")
    store = storage(tmp_path)
    for mode in ("append", "replace"):
        with pytest.raises(ConfigError, match="outside"):
            store.store(frame(), "sales", if_exists=mode)
    assert outside.read_bytes() == before
    assert os.path.islink(tmp_path / "lake" / "sales.parquet")


def test_dataset_link_to_a_foreign_folder_is_refused(tmp_path: Path) -> None:
    """A dataset name that links to a folder this storage did not write is neither read into
    an append nor deleted by a replace."""
    foreign = tmp_path / "lake" / "keep"
    foreign.mkdir(parents=True)
    (foreign / "x.txt").write_text("mine")
    os.symlink("keep", tmp_path / "lake" / "ds")
    store = storage(tmp_path)
    with pytest.raises(ConfigError, match="did not write"):
        store.store(frame(), "ds", partition_by=["region"], if_exists="replace")
    assert (foreign / "x.txt").read_text() == "mine"


def test_csv_header_names_with_quotes_round_trip(tmp_path: Path) -> None:
    """polars reads a quoted header field with its doubled quotes; the names come back as given."""
    names = ['dq"uote', 'two""quotes', "comma,name", "new\nline"]
    data = pl.DataFrame({n: [i] for i, n in enumerate(names)})
    store = storage(tmp_path, format="csv")
    store.store(data, "t")
    store.store(data, "t", if_exists="append")
    assert store.retrieve("t").columns == names


def test_if_exists_fail_replace_and_upsert(tmp_path: Path) -> None:
    store = storage(tmp_path)
    store.store(frame(), "sales")
    with pytest.raises(StorageError, match="already exists"):
        store.store(frame().head(1), "sales", if_exists="fail")
    assert store.retrieve("sales").height == 4
    store.store(frame().head(2), "sales", if_exists="replace")
    assert store.retrieve("sales").height == 2
    with pytest.raises(ConfigError, match="upsert"):
        store.store(frame(), "sales", if_exists="upsert")


def test_append_with_other_columns_is_a_schema_error(tmp_path: Path) -> None:
    store = storage(tmp_path)
    store.store(frame(), "sales")
    with pytest.raises(StorageSchemaError, match="'extra'"):
        store.store(frame().with_columns(extra=pl.lit(1)), "sales", if_exists="append")
    with pytest.raises(StorageSchemaError, match="'region'"):
        store.store(
            frame().with_columns(pl.col("region").cast(pl.Categorical).to_physical()),
            "sales",
            if_exists="append",
        )
    assert_frame_equal(store.retrieve("sales"), frame())


def test_append_reorders_columns_and_casts_numbers(tmp_path: Path) -> None:
    store = storage(tmp_path)
    store.store(frame(), "sales")
    other = (
        frame().select(["amount", "id", "region", "day"]).with_columns(pl.col("id").cast(pl.Int32))
    )
    store.store(other, "sales", if_exists="append")
    out = store.retrieve("sales")
    assert out.columns == ["id", "region", "amount", "day"]
    assert out.schema["id"] == pl.Int64
    assert out.height == 8


def failing_lazy() -> pl.LazyFrame:
    def boom(_: pl.DataFrame) -> pl.DataFrame:
        raise RuntimeError("source broke mid-write")

    return frame().lazy().map_batches(boom, schema=frame().schema)


def test_failed_write_leaves_old_file_and_no_temp_files(tmp_path: Path) -> None:
    store = storage(tmp_path)
    store.store(frame(), "sales")
    before = (tmp_path / "lake" / "sales.parquet").read_bytes()
    with pytest.raises(StorageError, match="source broke"):
        store.store(failing_lazy(), "sales", if_exists="replace")
    assert (tmp_path / "lake" / "sales.parquet").read_bytes() == before
    assert listing(tmp_path / "lake") == ["sales.parquet"]
    assert store.get_metadata()["status"] == "failed"


def test_partitioned_dataset_replace_append(tmp_path: Path) -> None:
    store = storage(tmp_path, partition_by=["region"])
    result = store.store(frame(), "sales")
    root = tmp_path / "lake" / "sales"
    assert result.rows == 4 and result.bytes and result.bytes > 0
    assert sorted(p.name for p in root.iterdir()) == ["region=APAC", "region=EU", "region=US"]
    store.store(frame(), "sales", if_exists="append")
    assert len(list((root / "region=EU").iterdir())) == 2
    out = store.retrieve("sales").sort("id")
    assert out.height == 8
    assert sorted(out.columns) == sorted(DATA)
    store.store(frame().filter(pl.col("region") == "EU"), "sales", if_exists="replace")
    assert sorted(p.name for p in root.iterdir()) == ["region=EU"]
    assert store.retrieve("sales").height == 2
    # exactly one hidden version directory remains beside the name
    hidden = [p.name for p in (tmp_path / "lake").iterdir() if p.name.startswith(".")]
    assert len(hidden) == 1 and hidden[0].startswith(".sales.v-")
    with pytest.raises(StorageError, match="already exists"):
        store.store(frame(), "sales", if_exists="fail")


def test_partitioned_failure_keeps_previous_version(tmp_path: Path) -> None:
    store = storage(tmp_path, partition_by="region")
    store.store(frame(), "sales")
    before = listing(tmp_path / "lake")
    with pytest.raises(StorageError):
        store.store(failing_lazy(), "sales", if_exists="replace")
    with pytest.raises(StorageError):
        store.store(failing_lazy(), "sales", if_exists="append")
    assert listing(tmp_path / "lake") == before
    assert store.retrieve("sales").height == 4


def test_partition_column_missing_names_it(tmp_path: Path) -> None:
    store = storage(tmp_path, partition_by=["country"])
    with pytest.raises(ColumnNotFoundError, match="country"):
        store.store(frame(), "sales")


def test_config_errors_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="format"):
        storage(tmp_path, format="xlsx")
    with pytest.raises(ConfigError, match="compression"):
        storage(tmp_path, format="csv", compression="snappy")
    with pytest.raises(ConfigError, match="partition_by"):
        storage(tmp_path, format="csv", partition_by=["region"])
    with pytest.raises(ConfigError, match="unknown key"):
        storage(tmp_path, base_pth="x")
    with pytest.raises(ConfigError, match="row_group_size"):
        storage(tmp_path, row_group_size=0)


def test_retrieve_missing_lists_known_names(tmp_path: Path) -> None:
    store = storage(tmp_path)
    store.store(frame(), "sales")
    with pytest.raises(InputNotFoundError, match="'sales'"):
        store.retrieve("sale")


def test_retrieve_columns_query_and_outputs(tmp_path: Path) -> None:
    store = storage(tmp_path)
    store.store(frame(), "sales")
    assert store.retrieve("sales", columns=["id"]).columns == ["id"]
    out = store.retrieve(
        "sales", query="SELECT region, SUM(id) AS n FROM sales GROUP BY region ORDER BY region"
    )
    assert out.to_dicts() == [
        {"region": "APAC", "n": 4},
        {"region": "EU", "n": 4},
        {"region": "US", "n": 2},
    ]
    assert isinstance(store.retrieve("sales", output="lazy"), pl.LazyFrame)
    assert type(store.retrieve("sales", output="arrow")).__name__ == "Table"
    assert type(store.retrieve("sales", output="pandas")).__name__ == "DataFrame"


def test_default_table_and_metadata(tmp_path: Path) -> None:
    store = storage(tmp_path, default_table="daily")
    store.store(frame())
    meta = store.get_metadata()
    assert meta["status"] == "succeeded"
    assert meta["rows_out"] == 4
    assert meta["details"]["bytes"] == os.path.getsize(tmp_path / "lake" / "daily.parquet")
    assert store.retrieve().height == 4


def test_fsspec_memory_url() -> None:
    import fsspec

    store = FileSystemStorage(
        name="mem", config={"base_path": "memory://dp-test-lake", "format": "csv"}
    )
    store.store(frame(), "sales")
    store.store(frame(), "sales", if_exists="append")
    assert store.retrieve("sales").height == 8
    fs = fsspec.filesystem("memory")
    assert [p.rsplit("/", 1)[-1] for p in fs.ls("/dp-test-lake", detail=False)] == ["sales.csv"]
    fs.rm("/dp-test-lake", recursive=True)


def test_leftovers_of_a_killed_writer_are_removed_by_the_next_load(tmp_path: Path) -> None:
    """Temporary files and versions of a killed load go at the next load of the same target
    (listed in its metadata), whatever their age; other targets' files stay."""
    store = storage(tmp_path)
    lake = tmp_path / "lake"
    lake.mkdir()
    dead_tmp = lake / ".sales.parquet.tmp-dead"
    dead_tmp.write_bytes(b"partial")
    dead_version = lake / ".ds.v-dead"
    dead_version.mkdir()
    (dead_version / "part.parquet").write_bytes(b"partial")
    other = lake / ".other.parquet.tmp-x"
    other.write_bytes(b"another target")
    result = store.store(frame(), "sales")
    assert result.details["leftovers_removed"] == [".sales.parquet.tmp-dead"]
    result = store.store(frame(), "ds", partition_by=["region"])
    assert result.details["leftovers_removed"] == [".ds.v-dead"]
    assert store.get_metadata()["details"]["leftovers_removed"] == [".ds.v-dead"]
    assert not dead_tmp.exists() and not dead_version.exists() and other.exists()
    version = os.readlink(lake / "ds")
    assert sorted(p.name for p in lake.iterdir()) == sorted(
        [version, ".other.parquet.tmp-x", "ds", "sales.parquet"]
    )
    assert store.retrieve("ds").height == 4


def test_a_load_waits_for_the_writer_holding_the_folder(tmp_path: Path) -> None:
    """The lock that makes the sweep safe: a second writer waits; it never removes the temp
    file of a writer that is alive."""
    import threading

    from data_pipeline.core.files import target_lock

    store = storage(tmp_path)
    lake = tmp_path / "lake"
    lake.mkdir()
    live_tmp = lake / ".sales.parquet.tmp-live"
    done = threading.Event()
    seen: list[bool] = []
    with target_lock(lake):  # a live writer holds the folder and has a temp file
        live_tmp.write_bytes(b"being written")
        thread = threading.Thread(target=lambda: (store.store(frame(), "sales"), done.set()))
        thread.start()
        thread.join(0.5)
        seen.append(done.is_set())
        seen.append(live_tmp.exists())
        live_tmp.unlink()  # the live writer finishes
    thread.join()
    assert seen == [False, True]
    assert done.is_set() and store.retrieve("sales").height == 4


def test_fsync_option_writes_durably(tmp_path: Path) -> None:
    store = storage(tmp_path, fsync=True)
    store.store(frame(), "sales")
    store.store(frame(), "ds", partition_by="region")
    assert store.retrieve("sales").height == 4
    assert store.retrieve("ds").height == 4


def test_the_sweep_does_not_take_the_files_of_a_committed_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction committed (its manifest written) but killed before its renames: the next
    plain store of the same name finishes those renames first, and its sweep does not take the
    staged files as a killed writer's leftovers (that would lose the committed data)."""
    from data_pipeline.core import checkpoint

    store = storage(tmp_path)
    store.store(frame(), "sales")

    def crash(operation: object) -> None:
        raise KeyboardInterrupt("killed after the commit point")

    monkeypatch.setattr(checkpoint, "apply_rename", crash)
    with pytest.raises(KeyboardInterrupt), store.transaction():
        store.store(frame().head(1), "sales")
    monkeypatch.undo()
    staged = [p.name for p in (tmp_path / "lake").iterdir() if ".tmp-" in p.name]
    assert len(staged) == 1  # the committed batch waits under its temporary name
    result = store.store(frame().head(2), "sales", if_exists="append")
    assert result.details["leftovers_removed"] == []
    assert store.retrieve("sales").height == 3  # the committed row, then the two appended
    assert not [p for p in (tmp_path / "lake").iterdir() if ".tmp-" in p.name]
