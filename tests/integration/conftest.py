"""Integration fixtures: every StreamingSource a test opened is closed after it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def close_streaming_sources(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Streaming sources hold a client until closed; a test that does not close one has it
    closed here, as after an error (nothing acknowledged)."""
    from data_pipeline.ingestion.streaming import StreamingSource

    opened: list[StreamingSource] = []
    init = StreamingSource.__init__

    def tracked(self: StreamingSource, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(StreamingSource, "__init__", tracked)
    yield
    for source in opened:
        with contextlib.suppress(Exception):  # a broker already gone: nothing left to close
            source.__exit__(RuntimeError, RuntimeError("test over"), None)
