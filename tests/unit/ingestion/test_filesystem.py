"""FileSystemSource on real files in tmp_path: every format, compression, encodings, bad rows."""

from __future__ import annotations

import bz2
import gzip
import json
import os
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from data_pipeline.core.errors import ConfigError, InputNotFoundError, ParseError
from data_pipeline.ingestion.filesystem import FileSystemSource

FRAME = pl.DataFrame({"id": [1, 2, 3], "name": ["a", "b", None], "price": [1.5, 2.0, 3.25]})
CSV = b"id,name,price\n1,a,1.5\n2,b,2.0\n3,,3.25\n"


def source(config: dict[str, object], name: str = "src") -> FileSystemSource:
    return FileSystemSource(name=name, config=config)


def test_csv_basic_and_metadata(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(CSV)
    src = source({"path": str(tmp_path / "a.csv")})
    out = src.ingest()
    assert isinstance(out, pl.DataFrame)
    assert_frame_equal(out, FRAME)
    meta = src.get_metadata()
    assert meta["status"] == "succeeded"
    assert meta["rows_out"] == 3
    assert meta["details"]["format"] == "csv"


@pytest.mark.parametrize("output", ["polars", "lazy", "pandas", "arrow"])
def test_outputs(tmp_path: Path, output: str) -> None:
    (tmp_path / "a.csv").write_bytes(CSV)
    out = source({"path": str(tmp_path / "a.csv"), "output": output}).ingest()
    expected = {
        "polars": pl.DataFrame,
        "lazy": pl.LazyFrame,
        "pandas": pd.DataFrame,
        "arrow": pa.Table,
    }
    assert isinstance(out, expected[output])
    assert_frame_equal(
        pl.DataFrame(pl.from_pandas(out) if output == "pandas" else out)
        if output != "lazy"
        else out.collect(),
        FRAME,
    )


def test_lazy_output_is_lazy(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(CSV)
    lazy = source({"path": str(path), "output": "lazy"}).ingest()
    assert isinstance(lazy, pl.LazyFrame)
    # the plan is a scan (of the file, behind the ParseError guard), not an in-memory frame
    assert "scan" in lazy.explain().lower()
    assert lazy.filter(pl.col("id") > 1).collect()["id"].to_list() == [2, 3]


@pytest.mark.parametrize("ext", ["parquet", "json", "jsonl", "ndjson", "ipc", "arrow", "feather"])
def test_each_format_by_extension(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"data.{ext}"
    if ext == "parquet":
        FRAME.write_parquet(path)
    elif ext == "json":
        FRAME.write_json(path)
    elif ext in ("jsonl", "ndjson"):
        FRAME.write_ndjson(path)
    else:
        FRAME.write_ipc(path)
    assert_frame_equal(source({"path": str(path)}).ingest(), FRAME)


@pytest.mark.parametrize("compression", ["gz", "zst", "bz2"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_compression_by_extension(tmp_path: Path, compression: str, fmt: str) -> None:
    if fmt == "csv":
        raw = CSV
    elif fmt == "jsonl":
        raw = "".join(json.dumps(r) + "\n" for r in FRAME.to_dicts()).encode()
    else:
        raw = json.dumps(FRAME.to_dicts()).encode()
    if compression == "gz":
        data = gzip.compress(raw)
    elif compression == "bz2":
        data = bz2.compress(raw)
    else:
        buf = pa.BufferOutputStream()
        with pa.CompressedOutputStream(buf, "zstd") as out:
            out.write(raw)
        data = buf.getvalue().to_pybytes()
    path = tmp_path / f"data.{fmt}.{compression}"
    path.write_bytes(data)
    assert_frame_equal(source({"path": str(path)}).ingest(), FRAME)


def test_glob_with_source_file_column(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"part{i}.csv").write_text(f"id,v\n{i},{i * 10}\n")
    (tmp_path / "other.txt.bak").write_text("ignored")
    out = source({"path": str(tmp_path / "part*.csv"), "source_file_column": "file"}).ingest()
    assert out["id"].to_list() == [0, 1, 2]
    assert [Path(p).name for p in out["file"].to_list()] == ["part0.csv", "part1.csv", "part2.csv"]


def test_source_file_column_slow_path(tmp_path: Path) -> None:
    for i in range(2):
        (tmp_path / f"p{i}.csv").write_bytes(f"id,city\n{i},Zürich\n".encode("latin-1"))
    out = source(
        {"path": str(tmp_path / "p*.csv"), "encoding": "latin-1", "source_file_column": "src"}
    ).ingest()
    assert out["city"].to_list() == ["Zürich", "Zürich"]
    assert [Path(p).name for p in out["src"].to_list()] == ["p0.csv", "p1.csv"]


def test_csv_options(tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("# comment\nzip;amount;note\n'01234';NA;'x;y'\n'99999';5;-\n")
    out = source(
        {
            "path": str(path),
            "delimiter": ";",
            "quote_char": "'",
            "skip_rows": 1,
            "null_values": ["NA", "-"],
            "schema_overrides": {"zip": "string", "amount": "float64"},
        }
    ).ingest()
    assert out.schema == pl.Schema({"zip": pl.String, "amount": pl.Float64, "note": pl.String})
    assert out.to_dicts() == [
        {"zip": "01234", "amount": None, "note": "x;y"},
        {"zip": "99999", "amount": 5.0, "note": None},
    ]


def test_no_header_and_tsv(tmp_path: Path) -> None:
    path = tmp_path / "data.tsv"
    path.write_text("1\tx\n2\ty\n")
    out = source({"path": str(path), "has_header": False}).ingest()
    assert out.shape == (2, 2)
    assert out.to_series(1).to_list() == ["x", "y"]


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252"])
def test_latin1(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "l.csv"
    path.write_bytes("name,city\nJosé,Zürich\n".encode(encoding))
    out = source({"path": str(path), "encoding": encoding}).ingest()
    assert out.to_dicts() == [{"name": "José", "city": "Zürich"}]


def test_utf8_bom(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + CSV)
    out = source({"path": str(path)}).ingest()
    assert out.columns == ["id", "name", "price"]
    out = source({"path": str(path), "encoding": "utf-8-sig"}).ingest()
    assert out.columns == ["id", "name", "price"]


def test_wrong_encoding_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"a\nok\n" + "caf\xe9\n".encode("latin-1"))
    with pytest.raises(ParseError, match=r"bad\.csv.*line"):
        source({"path": str(path), "encoding": "ascii"}).ingest()


def test_json_data_selector_and_flatten(tmp_path: Path) -> None:
    body = {
        "meta": {"count": 2},
        "data": {
            "items": [
                {"id": 1, "customer": {"city": "Oslo", "zip": "0150"}, "tags": ["a"]},
                {"id": 2, "customer": {"city": "Rome"}, "tags": []},
            ]
        },
    }
    path = tmp_path / "body.json"
    path.write_text(json.dumps(body))
    out = source({"path": str(path), "data_selector": "data.items", "flatten": True}).ingest()
    assert out.columns == ["id", "customer__city", "customer__zip", "tags"]
    assert out["customer__city"].to_list() == ["Oslo", "Rome"]
    assert out["tags"].to_list() == [["a"], []]
    with pytest.raises(ParseError, match=r"data_selector 'data\.nope'"):
        source({"path": str(path), "data_selector": "data.nope"}).ingest()


def test_json_object_auto_detects_list(tmp_path: Path) -> None:
    path = tmp_path / "body.json"
    path.write_text(json.dumps({"results": [{"a": 1}, {"a": 2}], "next": None}))
    assert source({"path": str(path)}).ingest()["a"].to_list() == [1, 2]


def test_malformed_json_names_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[{"a": 1},\n {"a": }]')
    with pytest.raises(ParseError, match=r"bad\.json.*line 2, column"):
        source({"path": str(path)}).ingest()


def test_missing_file_and_empty_glob(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(InputNotFoundError, match=r"nope\.csv"):
        source({"path": str(missing)}).ingest()
    with pytest.raises(InputNotFoundError, match=r"nothing"):
        source({"path": str(tmp_path / "*.parquet")}).ingest()
    assert source({"path": str(missing)}).get_metadata()["status"] == "idle"


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="format"):
        FileSystemSource(name="x", config={"path": "a.csv", "format": "xml"})
    with pytest.raises(ConfigError, match="delimiter"):
        FileSystemSource(name="x", config={"path": "a.csv", "delimiter": ";;"})
    with pytest.raises(ConfigError, match="encoding"):
        FileSystemSource(name="x", config={"path": "a.csv", "encoding": "klingon"})
    with pytest.raises(ConfigError, match=r"schema_overrides.*unknown type"):
        FileSystemSource(name="x", config={"path": "a.csv", "schema_overrides": {"a": "bigint!"}})
    with pytest.raises(ConfigError, match="unknown key"):
        FileSystemSource(name="x", config={"path": "a.csv", "delimeter": ";"})


def test_unknown_extension_needs_format(tmp_path: Path) -> None:
    path = tmp_path / "data.dat"
    path.write_bytes(CSV)
    with pytest.raises(ConfigError, match="format"):
        source({"path": str(path)}).ingest()
    assert_frame_equal(source({"path": str(path), "format": "csv"}).ingest(), FRAME)


def test_parquet_hive_directory(tmp_path: Path) -> None:
    root = tmp_path / "sales"
    for region in ("eu", "us"):
        part = root / f"region={region}"
        part.mkdir(parents=True)
        pl.DataFrame({"amount": [1, 2] if region == "eu" else [3]}).write_parquet(
            part / "0.parquet"
        )
    out = source({"path": str(root)}).ingest().sort("amount")
    assert out.to_dicts() == [
        {"amount": 1, "region": "eu"},
        {"amount": 2, "region": "eu"},
        {"amount": 3, "region": "us"},
    ]


def test_memory_url_via_fsspec() -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    with fs.open("/dp-test/a.csv", "wb") as f:
        f.write(CSV)
    with fs.open("/dp-test/b.csv", "wb") as f:
        f.write(b"id,name,price\n4,d,4.0\n")
    try:
        out = source({"path": "memory://dp-test/*.csv", "source_file_column": "f"}).ingest()
        assert out["id"].to_list() == [1, 2, 3, 4]
        assert out["f"].to_list()[-1].endswith("b.csv")
    finally:
        fs.rm("/dp-test", recursive=True)


BAD_CSV = (
    "id,name,price\n"
    "1,a,1.5\n"
    "2,b\n"  # line 3: too few fields
    "3,c,3.0,extra\n"  # line 4: too many fields
    "x,d,4.0\n"  # line 5: id not an integer
    '5,"e,quoted",5.5\n'
    "6,f,abc\n"  # line 7: price not a number
)


def test_bad_rows_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    with pytest.raises(ParseError, match=r"bad\.csv' line 3: expected 3 fields, found 2"):
        source({"path": str(path), "infer_schema_length": 2}).ingest()


def test_bad_rows_skip(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    src = source({"path": str(path), "on_bad_rows": "skip", "infer_schema_length": 1})
    out = src.ingest()
    assert out.to_dicts() == [
        {"id": 1, "name": "a", "price": 1.5},
        {"id": 5, "name": "e,quoted", "price": 5.5},
    ]
    meta = src.get_metadata()
    assert (meta["rows_in"], meta["rows_out"], meta["rows_rejected"]) == (6, 2, 4)


def test_bad_rows_reject_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    rejects = tmp_path / "rejects" / "bad_rows.csv"
    src = source(
        {
            "path": str(path),
            "on_bad_rows": "reject",
            "reject_path": str(rejects),
            "infer_schema_length": 1,
            "output": "lazy",
        }
    )
    out = src.ingest()
    assert isinstance(out, pl.LazyFrame)
    assert out.collect()["id"].to_list() == [1, 5]
    rejected = pl.read_csv(rejects)
    assert rejected["line"].to_list() == [3, 4, 5, 7]
    assert rejected["raw"].to_list() == ["2,b", "3,c,3.0,extra", "x,d,4.0", "6,f,abc"]
    assert "expected 3 fields, found 4" in rejected["reason"][1]
    assert "column 'id'" in rejected["reason"][2]
    assert "column 'price'" in rejected["reason"][3]
    meta = src.get_metadata()
    assert meta["rows_rejected"] == 4
    assert meta["details"]["reject_path"] == str(rejects)


def test_reject_file_keeps_the_rejects_of_every_read(tmp_path: Path) -> None:
    """reject_path is appended to (the header once), as by StreamingSource: an incremental read
    of a new file rewrote it and lost the rejects of the earlier runs."""
    data = tmp_path / "data"
    data.mkdir()
    rejects = tmp_path / "rejects.csv"
    config = {
        "path": str(data / "*.csv"),
        "incremental": True,
        "state_path": str(tmp_path / "state.json"),
        "on_bad_rows": "reject",
        "reject_path": str(rejects),
    }
    (data / "a.csv").write_text("id,price\n1,1.5\n2\n")  # line 3: too few fields
    assert source(config).ingest()["id"].to_list() == [1]
    (data / "b.csv").write_text("id,price\n3,3.5\n4\n5,1,2\n")
    assert source(config).ingest()["id"].to_list() == [3]  # only the new file
    rejected = pl.read_csv(rejects)  # one header, then the rows of both runs
    assert rejected.columns == ["file", "line", "reason", "raw"]
    assert [(Path(f).name, n) for f, n in rejected.select("file", "line").iter_rows()] == [
        ("a.csv", 3),
        ("b.csv", 3),
        ("b.csv", 4),
    ]


def test_reject_file_with_other_columns_is_an_error(tmp_path: Path) -> None:
    """Appending rows of another layout (a stream's reject file) would garble both."""
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    rejects = tmp_path / "rejects.csv"
    rejects.write_text("stream,id,reason,raw\norders,1-0,not JSON,{\n")
    config = {"path": str(path), "on_bad_rows": "reject", "reject_path": str(rejects)}
    with pytest.raises(ConfigError, match=r"rejects\.csv.*stream,id,reason,raw"):
        source({**config, "infer_schema_length": 1}).ingest()
    assert rejects.read_text() == "stream,id,reason,raw\norders,1-0,not JSON,{\n"


def test_incremental_by_modification_time(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    data = tmp_path / "in"
    data.mkdir()
    (data / "a.csv").write_text("id\n1\n")
    config = {"path": str(data / "*.csv"), "incremental": True, "state_path": str(state)}
    assert source(config).ingest()["id"].to_list() == [1]
    assert source(config).ingest().height == 0  # nothing new
    (data / "b.csv").write_text("id\n2\n")
    (data / "a.csv").write_text("id\n1\n10\n")
    os.utime(data / "a.csv", ns=(1, 10**18))
    assert sorted(source(config).ingest()["id"].to_list()) == [1, 2, 10]
    assert source(config).ingest().height == 0


def test_excel(tmp_path: Path) -> None:
    pytest.importorskip("fastexcel")
    pytest.importorskip("xlsxwriter")
    path = tmp_path / "book.xlsx"
    FRAME.write_excel(path, worksheet="prices")
    out = source({"path": str(path), "sheet_name": "prices"}).ingest()
    assert out["id"].to_list() == [1, 2, 3]
    assert out["price"].to_list() == [1.5, 2.0, 3.25]


def test_jsonl_flatten_and_schema_overrides(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text(
        '{"id": 1, "user": {"name": "a", "geo": {"lat": 1.5}}}\n{"id": 2, "user": null}\n'
    )
    out = source({"path": str(path), "flatten": True, "schema_overrides": {"id": "int32"}}).ingest()
    assert out.columns == ["id", "user__name", "user__geo__lat"]
    assert out.schema["id"] == pl.Int32
    assert out["user__geo__lat"].to_list() == [1.5, None]


@pytest.mark.parametrize("mode", ["error", "skip"])
def test_invalid_utf8_names_line(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"name,n\nok,1\n" + "Zürich,2\n".encode("latin-1"))
    with pytest.raises(ParseError, match=r"mixed\.csv.*not valid UTF-8.*line 3") as info:
        source({"path": str(path), "on_bad_rows": mode}).ingest()
    assert "encoding" in str(info.value)


def test_jsonl_bad_lines_reject(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"id": 1}\n{"id": \n[1, 2]\n\n{"id": 4}\n')
    rejects = tmp_path / "rej.csv"
    src = source({"path": str(path), "on_bad_rows": "reject", "reject_path": str(rejects)})
    assert src.ingest()["id"].to_list() == [1, 4]
    rejected = pl.read_csv(rejects)
    assert rejected["line"].to_list() == [2, 3]
    assert rejected["raw"].to_list() == ['{"id": ', "[1, 2]"]
    assert (
        "invalid JSON" in rejected["reason"][0]
        and "expected a JSON object" in rejected["reason"][1]
    )
    assert src.get_metadata()["rows_rejected"] == 2


def test_bad_rows_mode_unsupported_for_parquet(tmp_path: Path) -> None:
    from data_pipeline.core.errors import UnsupportedOperationError

    FRAME.write_parquet(tmp_path / "a.parquet")
    with pytest.raises(UnsupportedOperationError, match="CSV and JSON Lines"):
        source({"path": str(tmp_path / "a.parquet"), "on_bad_rows": "skip"}).ingest()


@pytest.mark.parametrize("output", ["polars", "lazy"])
def test_jsonl_error_names_line(tmp_path: Path, output: str) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}\n{"id": oops}\n')
    with pytest.raises(ParseError, match=r"events\.jsonl' line 3: invalid JSON at column 8"):
        pl.LazyFrame(source({"path": str(path), "output": output}).ingest()).collect()


MULTILINE_CSV = (
    "id,note,price\n"
    '1,"first line\nsecond line",1.5\n'  # lines 2-3: one record, newline inside quotes
    "2,b\n"  # line 4: too few fields
    '3,"say ""hi""\n\nend",3.0\n'  # lines 5-7: escaped quotes and an empty line inside quotes
    "4,d,abc\n"  # line 8: price not a number
)


@pytest.mark.parametrize("mode", ["skip", "reject"])
def test_bad_rows_multiline_quoted_field_kept(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "multi.csv"
    path.write_text(MULTILINE_CSV)
    rejects = tmp_path / "rejects.csv"
    src = source(
        {
            "path": str(path),
            "on_bad_rows": mode,
            "reject_path": str(rejects),
            "infer_schema_length": 1,
        }
    )
    out = src.ingest()
    assert out.to_dicts() == [
        {"id": 1, "note": "first line\nsecond line", "price": 1.5},
        {"id": 3, "note": 'say "hi"\n\nend', "price": 3.0},
    ]
    meta = src.get_metadata()
    assert (meta["rows_in"], meta["rows_out"], meta["rows_rejected"]) == (4, 2, 2)
    if mode == "reject":
        rejected = pl.read_csv(rejects)
        assert rejected["line"].to_list() == [4, 8]
        assert rejected["raw"].to_list() == ["2,b", "4,d,abc"]
    else:
        assert not rejects.exists()


def test_bad_rows_error_lazy_names_file_and_line_at_collect(tmp_path: Path) -> None:
    # Lazy output is not parsed at ingest; the malformed row surfaces at collect() as our
    # ParseError naming the file and the line, as an eager read does.
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    src = source({"path": str(path), "infer_schema_length": 2, "output": "lazy"})
    out = src.ingest()
    assert isinstance(out, pl.LazyFrame)
    with pytest.raises(ParseError, match=r"bad\.csv' line 3") as info:
        out.collect()
    assert info.value.component == src.label
    with pytest.raises(ParseError, match="line 3"):  # the streaming engine raises the same
        out.select("id").collect(engine="streaming")


def test_lazy_output_reads_at_collect_with_pushdown(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("id,name\n1,a\n2,b\n")
    lazy = source({"path": str(path), "output": "lazy"}).ingest()
    with path.open("a") as handle:  # written after ingest(): a lazy scan still sees it
        handle.write("3,c\n")
    assert lazy.filter(pl.col("id") > 1).select("name").collect()["name"].to_list() == ["b", "c"]


# -- issue 14: values never lost at the edges ---------------------------------------------------

MIXED = [{"a": 1, "k": 1}, {"a": {"b": 2}, "k": 2}]


def _write_json(tmp_path: Path, fmt: str, records: list[dict[str, object]]) -> Path:
    path = tmp_path / f"data.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(records))
    else:
        path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
@pytest.mark.parametrize(
    ("records", "key", "kinds"),
    [
        (MIXED, "a", "an object in (record|line) 2 but a number in (record|line) 1"),
        ([{"a": True}, {"a": 5}], "a", "a number in (record|line) 2 but a boolean"),
        ([{"a": {"b": True}}, {"a": {"b": 1}}], "a", "at 'a.b'"),
        ([{"a": [1]}, {"a": [{"x": 1}]}], "a", r"at 'a\[\]'"),
    ],
)
def test_json_mixed_kinds_fail_naming_file_record_and_key(
    tmp_path: Path, fmt: str, records: list[dict[str, object]], key: str, kinds: str
) -> None:
    """The first record's value used to become null silently (JSON) while JSON Lines raised
    for the same data; now both name the file, the record and the key."""
    path = _write_json(tmp_path, fmt, records)
    with pytest.raises(ParseError, match=rf"data\.{fmt}.*key '{key}'.*{kinds}"):
        source({"path": str(path)}).ingest()


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_mixed_kinds_kept_as_json_text(tmp_path: Path, fmt: str) -> None:
    path = _write_json(tmp_path, fmt, [*MIXED, {"a": None, "k": 3}])
    out = source({"path": str(path), "mixed_types": "json"}).ingest()
    assert out.to_dicts() == [
        {"a": "1", "k": 1},
        {"a": '{"b": 2}', "k": 2},
        {"a": None, "k": 3},
    ]


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_numbers_and_strings_read_as_text_in_both_formats(tmp_path: Path, fmt: str) -> None:
    path = _write_json(tmp_path, fmt, [{"a": 1}, {"a": "x"}, {"a": True}])
    assert source({"path": str(path)}).ingest()["a"].to_list() == ["1", "x", "true"]


def test_jsonl_mixed_kinds_in_reject_mode_counts_every_line(tmp_path: Path) -> None:
    path = _write_json(tmp_path, "jsonl", [*MIXED, {"a": 3, "k": 3}])
    rejects = tmp_path / "rejects.csv"
    src = source({"path": str(path), "on_bad_rows": "reject", "reject_path": str(rejects)})
    out = src.ingest()
    assert out.to_dicts() == [{"a": 1, "k": 1}, {"a": 3, "k": 3}]
    rejected = pl.read_csv(rejects)
    assert rejected["line"].to_list() == [2]
    assert rejected["reason"][0] == "key 'a' holds an object in line 2 but a number in line 1"
    meta = src.get_metadata()
    assert meta["rows_in"] == meta["rows_out"] + meta["rows_rejected"] == 3


SHORT_CSV = "id,name,price\n1,a,1.5\n2,b\n3,c,3.0\n"


@pytest.mark.parametrize("output", ["polars", "lazy"])
def test_csv_row_with_too_few_fields_is_an_error(tmp_path: Path, output: str) -> None:
    """polars pads the short row with a null; by default that row is an error, as it is a bad
    row in skip and reject mode."""
    path = tmp_path / "short.csv"
    path.write_text(SHORT_CSV)
    with pytest.raises(ParseError, match=r"short\.csv' line 3: expected 3 fields, found 2"):
        out = source({"path": str(path), "output": output}).ingest()
        if output == "lazy":
            out.select("id").collect()  # the short row is found even when price is not read


@pytest.mark.parametrize("output", ["polars", "lazy"])
def test_csv_row_with_too_many_fields_is_an_error(tmp_path: Path, output: str) -> None:
    """A row with an extra field is an error by default too (skip/reject count it as bad)."""
    path = tmp_path / "long.csv"
    path.write_text("id,name,price\n1,a,1.5\n2,b,2.5,extra\n3,c,3.0\n")
    with pytest.raises(ParseError, match=r"long\.csv' line 3: expected 3 fields, found 4"):
        out = source({"path": str(path), "output": output}).ingest()
        if output == "lazy":
            out.select("id").collect()
    src = source({"path": str(path), "on_bad_rows": "skip"})
    assert src.ingest()["id"].to_list() == [1, 3]
    assert src.get_metadata()["rows_rejected"] == 1


def test_default_state_and_reject_files_have_safe_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source named like a path keeps its default state and reject files in
    .data_pipeline/{state,rejects}: the name is made one safe file name, nothing is written
    above the working directory."""
    work = tmp_path / "work"
    (work / "in").mkdir(parents=True)
    (work / "in" / "a.csv").write_text("id,name\n1,a\n2\n")
    monkeypatch.chdir(work)
    config = {"path": "in", "format": "csv", "incremental": True, "on_bad_rows": "reject"}
    assert source(config, name="../../up").ingest()["id"].to_list() == [1]
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == [
        "work/.data_pipeline/rejects/_.._.._up.csv",
        "work/.data_pipeline/state/_.._.._up.json",
        "work/in/a.csv",
    ]


def test_csv_trailing_empty_field_is_not_a_short_row(tmp_path: Path) -> None:
    path = tmp_path / "ok.csv"
    path.write_text("id,name,price\n1,a,1.5\n2,b,\n")
    assert source({"path": str(path)}).ingest()["price"].to_list() == [1.5, None]


@pytest.mark.parametrize("mode", ["error", "skip", "reject"])
def test_csv_whitespace_only_records_are_counted(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("id,name\n1,a\n   \n\n\t\n2,b\n")
    config = {"path": str(path), "on_bad_rows": mode, "reject_path": str(tmp_path / "r.csv")}
    if mode == "error":
        with pytest.raises(ParseError, match="line 3: expected 2 fields, found 1"):
            source(config).ingest()
        return
    src = source(config)
    assert src.ingest()["id"].to_list() == [1, 2]
    meta = src.get_metadata()
    # records: 1,a / blanks / tab / 2,b (the empty line is no record, as for every reader)
    assert (meta["rows_in"], meta["rows_out"], meta["rows_rejected"]) == (4, 2, 2)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_empty_increment_keeps_the_schema(tmp_path: Path, fmt: str) -> None:
    """No new file: 0 rows with the columns and types of the last delivered data (it used to be
    a frame without columns, which a DuckDB append then refused)."""
    data = tmp_path / "in"
    data.mkdir()
    first = pl.DataFrame({"id": [1, 2], "name": ["a", None], "day": [None, None]}).with_columns(
        pl.col("day").cast(pl.Date)
    )
    if fmt == "csv":
        first.drop("day").write_csv(data / "a.csv")
        first = first.drop("day")
    elif fmt == "parquet":
        first.write_parquet(data / "a.parquet")
    else:
        first.drop("day").write_ndjson(data / "a.jsonl")
        first = first.drop("day")
    config = {"path": str(data), "incremental": True, "state_path": str(tmp_path / "s.json")}
    got = source(config).ingest()
    assert got.schema == first.schema
    empty = source(config).ingest()
    assert empty.height == 0 and empty.schema == first.schema
    lazy = source({**config, "output": "lazy"}).ingest()
    assert lazy.collect_schema() == first.schema
    from data_pipeline.storage.warehouse import DataWarehouseStorage

    wh = DataWarehouseStorage(name="wh", config={"database": str(tmp_path / "w.duckdb")})
    wh.store(got, "t", if_exists="append")
    wh.store(empty, "t", if_exists="append")  # failed before: a frame without columns
    assert wh.retrieve("t").height == 2
