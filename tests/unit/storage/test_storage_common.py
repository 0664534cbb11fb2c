"""Shared storage helpers: the PostgreSQL COPY encoder and the common errors."""

from __future__ import annotations

import threading

import polars as pl
import pytest

from data_pipeline.core.errors import (
    ConfigError,
    StorageAuthenticationError,
    StorageConnectionError,
)
from data_pipeline.storage._common import (
    connection_error,
    primary_key,
    reject_unknown_options,
)
from data_pipeline.storage.relational import _csv_chunks


def test_csv_chunks_cover_the_data_in_order() -> None:
    frame = pl.DataFrame({"a": range(25), "b": [f'x "{i}", y' for i in range(25)]})
    joined = b"".join(bytes(c) for c in _csv_chunks(frame, 7))
    assert joined == frame.write_csv(include_header=False, quote_style="non_numeric").encode()
    assert list(_csv_chunks(frame.head(0), 7)) == []
    assert b"".join(bytes(c) for c in _csv_chunks(frame, 100)) == joined


def test_csv_chunks_stop_their_thread_when_closed_early() -> None:
    frame = pl.DataFrame({"a": range(10_000)})
    chunks = _csv_chunks(frame, 10)
    next(chunks)
    chunks.close()
    assert not any(t.name == "data-pipeline-copy-encoder" for t in threading.enumerate())


def test_common_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown option\(s\) b"):
        reject_unknown_options({"a": 1, "b": 2}, ("a",), hint="h", component="c")
    assert primary_key({"primary_key": "id"}, None) == ["id"]
    assert primary_key({}, ["k"]) == ["k"]
    auth = connection_error(
        RuntimeError("refused"),
        what="mongodb",
        where="h:1/db",
        component="c",
        user="bob",
        auth=True,
    )
    assert isinstance(auth, StorageAuthenticationError)
    assert "at h:1/db as user 'bob'" in str(auth)
    down = connection_error(
        RuntimeError("refused\nmore"), what="redis", where="h:2/0", component="c", lines=1
    )
    assert isinstance(down, StorageConnectionError) and "as user" not in str(down)
