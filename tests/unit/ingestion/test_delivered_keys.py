"""DeliveredKeys: the keys of the rows delivered inside a lookback window, in a Parquet sidecar."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from data_pipeline.core.cursor import (
    KEY_HASH,
    DeliveredKeys,
    StateStore,
    _xxh64,
    key_hashes,
)
from data_pipeline.core.errors import IngestionError
from data_pipeline.ingestion.database import DatabaseSource


def _sidecars(state: Path) -> list[Path]:
    return sorted(state.parent.glob(f"{state.name}.keys.*.parquet"))


def test_xxh64_matches_the_published_algorithm() -> None:
    """Reference values of XXH64 with seed 0 (the first three are the published test vectors)."""
    rows = [b"", b"a", b"abc", b"data-pipeline delivered keys: a row key longer than 32 bytes"]
    data = np.frombuffer(b"".join(rows), dtype=np.uint8)
    offsets = np.array([0, *np.cumsum([len(r) for r in rows])], dtype=np.int64)
    assert [int(h) for h in _xxh64(data, offsets)] == [
        0xEF46DB3751D8E999,
        0xD24EC4F1A98C6E5B,
        0x44BC2CF5AD770999,
        5582175329123037625,
    ]


def test_key_hash_is_stable() -> None:
    """A fixed key has a fixed hash: state files written by any version stay valid."""
    assert key_hashes(pl.DataFrame({"id": [42]}), ["id"]).to_list() == [5514751074008143329]
    frame = pl.DataFrame(
        {
            "tenant": ["acme", None],
            "id": [7, 8],
            "at": [datetime(2024, 5, 1, 10, tzinfo=timezone.utc)] * 2,
        }
    )
    assert key_hashes(frame, ["tenant", "id", "at"]).to_list() == [
        9636278506398202051,
        683103938392409297,
    ]
    # an id sent as text, as a narrower integer or as a decimal is the same key
    same = [
        pl.DataFrame({"id": ["42"]}),
        pl.DataFrame({"id": [42]}, schema={"id": pl.Int16}),
        pl.DataFrame({"id": [Decimal("42.00")]}),
    ]
    assert {key_hashes(f, ["id"]).item() for f in same} == {5514751074008143329}
    # column boundaries are part of the key: ("ab", "c") is not ("a", "bc")
    pair = pl.DataFrame({"a": ["ab", "a"], "b": ["c", "bc"]})
    assert key_hashes(pair, ["a", "b"]).n_unique() == 2


def test_key_hash_rejects_nested_columns() -> None:
    with pytest.raises(IngestionError, match="'tags' has type"):
        key_hashes(pl.DataFrame({"tags": [[1, 2]]}), ["tags"])


def test_200k_keys_in_the_window_stay_a_small_sidecar(tmp_path: Path) -> None:
    state = tmp_path / "busy.json"
    store = StateStore(state)
    frame = pl.DataFrame(
        {
            "id": np.arange(200_000),
            "ts": np.repeat(np.arange(1_000), 200),  # 200 rows per cursor value
        }
    )
    delivered = DeliveredKeys(store, ["id"], "ts", {})
    delivered.remember(frame, pl.col("ts") >= 0)  # every row is inside the window
    delivered.save({"last_value": 999})

    assert state.stat().st_size < 1_000  # the JSON file holds the cursor, not the keys
    saved = json.loads(state.read_text())
    assert "boundary_rows" not in saved
    assert saved["delivered_keys"]["rows"] == 200_000
    [sidecar] = _sidecars(state)
    assert sidecar.name == saved["delivered_keys"]["file"]
    keys = pl.read_parquet(sidecar)
    assert keys.height == 200_000 and keys.columns == [KEY_HASH, "ts"]
    assert keys[KEY_HASH].n_unique() == 200_000

    again = DeliveredKeys(store, ["id"], "ts")
    late = pl.DataFrame({"id": [200_000, 5], "ts": [999, 999]})  # a new row and a delivered id
    kept, dropped = again.drop_delivered(pl.concat([frame, late]))
    assert dropped == 200_000
    assert kept.to_dicts() == [{"id": 200_000, "ts": 999}, {"id": 5, "ts": 999}]


def test_save_prunes_to_the_window_and_replaces_the_sidecar(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    store = StateStore(state)
    first = DeliveredKeys(store, ["id"], "ts", {})
    first.remember(pl.DataFrame({"id": [1, 2, 3], "ts": [1, 2, 3]}), pl.col("ts") >= 2)
    first.save({"last_value": 3})
    [old] = _sidecars(state)

    second = DeliveredKeys(store, ["id"], "ts")
    second.remember(pl.DataFrame({"id": [4], "ts": [5]}), pl.col("ts") >= 3)
    second.save({"last_value": 5})
    [new] = _sidecars(state)
    assert new != old and not old.exists()
    assert pl.read_parquet(new)["ts"].to_list() == [3, 5]  # ts 2 fell out of the window
    assert json.loads(state.read_text())["delivered_keys"]["file"] == new.name

    new.unlink()
    with pytest.raises(IngestionError, match="delete the state file"):
        DeliveredKeys(store, ["id"], "ts")


def test_old_state_file_with_boundary_rows_is_migrated(tmp_path: Path) -> None:
    """A state file of the old format (keys in ``boundary_rows``) is read, then converted."""
    path = tmp_path / "v.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, version INTEGER, body TEXT)")
        conn.execute("INSERT INTO docs VALUES (1, 5, 'a'), (2, 6, 'b'), (3, 6, 'c')")
    state = tmp_path / "docs.json"
    # written by the previous version after delivering rows 1 and 2 (window: version >= 4)
    state.write_text(json.dumps({"last_value": 6, "boundary_rows": [[1, 5], [2, 6]]}))
    config = {
        "url": f"sqlite:///{path}",
        "table": "docs",
        "incremental": {
            "cursor_column": "version",
            "primary_key": "id",
            "lookback": 2,
            "state_path": str(state),
        },
    }
    source = DatabaseSource(name="docs", config=config)
    assert source.ingest()["id"].to_list() == [3]  # 1 and 2 were delivered before
    assert source.get_metadata()["details"]["duplicates_dropped"] == 2
    saved = json.loads(state.read_text())
    assert "boundary_rows" not in saved and saved["last_value"] == 6
    [sidecar] = _sidecars(state)
    keys = pl.read_parquet(sidecar)
    assert sorted(keys[KEY_HASH].to_list()) == sorted(
        key_hashes(pl.DataFrame({"id": [1, 2, 3]}), ["id"]).to_list()
    )
    assert DatabaseSource(name="docs", config=config).ingest().height == 0


def test_old_rest_state_with_text_cursor_is_migrated(tmp_path: Path) -> None:
    """Old REST state: JSON values, timestamps as ISO text; keys cast to the records' types."""
    state = tmp_path / "events.json"
    old = {
        "last_value": "2024-01-01T10:05:00Z",
        "boundary_rows": [["1", "2024-01-01T10:00:00Z"], ["2", "2024-01-01T10:05:00Z"]],
    }
    state.write_text(json.dumps(old))
    store = StateStore(state)
    delivered = DeliveredKeys(store, ["id"], "updated_at", store.load())
    assert len(delivered) == 2
    records = pl.DataFrame(
        {
            "id": [1, 2, 3],
            "updated_at": ["2024-01-01T10:00:00Z", "2024-01-01T10:05:00Z", "2024-01-01T10:05:00Z"],
        }
    )
    kept, dropped = delivered.drop_delivered(records)
    assert (kept["id"].to_list(), dropped) == ([3], 2)
    delivered.remember(kept, pl.col("updated_at") >= "2024-01-01T10:00:00Z")
    delivered.save({"last_value": "2024-01-01T10:05:00Z"})
    assert "boundary_rows" not in json.loads(state.read_text())
    assert pl.read_parquet(_sidecars(state)[0]).height == 3


def test_cursor_that_is_also_the_key(tmp_path: Path) -> None:
    """``cursor_column: id`` with ``primary_key: id`` (old and new state files)."""
    state = tmp_path / "ids.json"
    state.write_text(json.dumps({"last_value": 3, "boundary_rows": [[2, 2], [3, 3]]}))
    store = StateStore(state)
    delivered = DeliveredKeys(store, ["id"], "id")
    kept, dropped = delivered.drop_delivered(pl.DataFrame({"id": [2, 3, 4]}))
    assert (kept["id"].to_list(), dropped) == ([4], 2)
    delivered.remember(kept, pl.col("id") >= 3)
    delivered.save({"last_value": 4})
    assert pl.read_parquet(_sidecars(state)[0]).columns == [KEY_HASH, "id"]
    again = DeliveredKeys(store, ["id"], "id")
    assert again.drop_delivered(pl.DataFrame({"id": [3, 4, 5]}))[0]["id"].to_list() == [5]


def test_a_changed_primary_key_is_refused(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.json")
    delivered = DeliveredKeys(store, ["id"], "ts", {})
    delivered.remember(pl.DataFrame({"id": [1], "ts": [1]}), pl.col("ts") >= 0)
    delivered.save({"last_value": 1})
    with pytest.raises(IngestionError, match=r"by primary_key \['id'\], not \['id', 'kind'\]"):
        DeliveredKeys(store, ["id", "kind"], "ts")
