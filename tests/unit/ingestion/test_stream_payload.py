"""Message payloads to columns (streaming/_payload.py), without a broker: the decoder alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from data_pipeline.core.errors import ConfigError, ParseError
from data_pipeline.ingestion.streaming import StreamingSource
from data_pipeline.ingestion.streaming._payload import messages_to_frame


def decode(payloads: list[bytes], **config: Any) -> tuple[pl.DataFrame, dict[str, Any]]:
    source = StreamingSource(name="orders", config={"platform": "kafka", "topic": "t", **config})
    meta = {"_stream": ["t"] * len(payloads), "_id": [f"0:{i}" for i in range(len(payloads))]}
    op = source.current_operation
    frame = messages_to_frame(source, meta, payloads)
    counts = {"rows_in": op.rows_in, "rows_rejected": op.rows_rejected or 0, **op.details}
    return frame, counts


def test_types_come_from_every_payload_not_the_first_ones() -> None:
    payloads = [json.dumps({"id": i, "amount": i * 1.5}).encode() for i in range(300)]
    payloads.append(json.dumps({"id": 300, "amount": 2.0, "late": "only here"}).encode())
    frame, _ = decode(payloads)
    assert frame.height == 301
    assert frame["late"].drop_nulls().to_list() == ["only here"]
    # the oracle: json.loads of each payload
    expected = pl.from_dicts([json.loads(p) for p in payloads], infer_schema_length=None)
    assert_frame_equal(frame.drop("_stream", "_id"), expected)


def test_pretty_printed_payloads_and_nested_objects() -> None:
    payloads = [
        b'{\r\n  "id": 1,\r\n  "user": {"name": "a\\nb", "tier": 2}\r\n}',
        b'{"id": 2, "user": {"name": "c", "tier": 3}}',
    ]
    frame, _ = decode(payloads)
    assert frame.columns == ["_stream", "_id", "id", "user__name", "user__tier"]
    assert frame["user__name"].to_list() == ["a\nb", "c"]


def test_payload_schema_reads_exactly_those_columns() -> None:
    payloads = [
        b'{"id": 1, "amount": 2.5, "ts": "2024-01-01T10:00:00", "extra": true}',
        b'{"id": 2}',
    ]
    frame, counts = decode(
        payloads, payload_schema={"id": "int64", "amount": "float64", "ts": "datetime[us]"}
    )
    assert frame.columns == ["_stream", "_id", "id", "amount", "ts"]
    assert frame.schema["ts"] == pl.Datetime("us")
    assert frame["amount"].to_list() == [2.5, None]
    assert counts["rows_in"] == 2 and counts["rows_rejected"] == 0


def test_payload_schema_declares_nested_fields_by_their_flattened_names() -> None:
    payloads = [b'{"id": 1, "customer": {"age": 40, "region": "north", "x": 1}}', b'{"id": 2}']
    frame, _ = decode(
        payloads,
        payload_schema={"id": "int64", "customer__age": "int32", "customer__region": "string"},
    )
    assert frame.columns == ["_stream", "_id", "id", "customer__age", "customer__region"]
    assert frame.schema["customer__age"] == pl.Int32
    assert frame["customer__region"].to_list() == ["north", None]


def test_payload_schema_misfit_is_a_bad_row(tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.csv"
    payloads = [b'{"id": 1}', b'{"id": "abc"}', b'{"id": 3}', b"[1, 2]"]
    frame, counts = decode(
        payloads, payload_schema={"id": "int64"}, on_bad_rows="reject", reject_path=str(rejects)
    )
    assert frame["id"].to_list() == [1, 3]
    assert frame["_id"].to_list() == ["0:0", "0:2"]
    assert counts["rows_in"] == frame.height + counts["rows_rejected"] == 4
    rejected = pl.read_csv(rejects)
    assert rejected["id"].to_list() == ["0:1", "0:3"]
    assert "payload_schema" in rejected["reason"][0] and "not an object" in rejected["reason"][1]
    assert rejected["raw"].to_list() == ['{"id": "abc"}', "[1, 2]"]


def test_payload_schema_error_names_the_message() -> None:
    with pytest.raises(ParseError, match=r"message '0:1' of 't'.*payload_schema"):
        decode([b'{"id": 1}', b'{"id": 1.5}'], payload_schema={"id": "int64"})


def test_payload_schema_type_names_are_checked_at_construction() -> None:
    with pytest.raises(ConfigError, match="payload_schema"):
        StreamingSource(
            name="s", config={"platform": "kafka", "topic": "t", "payload_schema": {"a": "intt"}}
        )


@pytest.mark.parametrize("mode", ["skip", "reject", "error"])
def test_text_payload_with_invalid_utf8(tmp_path: Path, mode: str) -> None:
    payloads = [b"fine", b"\x00\xff\x10", "é".encode()]
    config = {"payload": "text", "on_bad_rows": mode, "reject_path": str(tmp_path / "r.csv")}
    if mode == "error":
        with pytest.raises(ParseError, match=r"message '0:1' of 't': payload is not valid UTF-8"):
            decode(payloads, **config)
        return
    frame, counts = decode(payloads, **config)
    assert frame["payload"].to_list() == ["fine", "é"]
    assert counts["rows_rejected"] == 1 and counts["rows_in"] == 3
    assert (tmp_path / "r.csv").exists() == (mode == "reject")


def test_bytes_payloads_are_kept_as_they_are() -> None:
    frame, _ = decode([b"\x00\xff", b""], payload="bytes")
    assert frame["payload"].to_list() == [b"\x00\xff", b""]
