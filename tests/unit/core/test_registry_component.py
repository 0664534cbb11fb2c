from __future__ import annotations

import pytest

from data_pipeline.core.component import Component
from data_pipeline.core.errors import (
    ConfigError,
    DataPipelineError,
    DuplicateNameError,
    InputNotFoundError,
    NotFoundError,
)
from data_pipeline.core.registry import Registry


def test_registry_duplicate_and_unknown() -> None:
    reg: Registry[int] = Registry("data source", "DataIngestionManager")
    reg.add("orders", 1)
    reg.add("customers", 2)
    with pytest.raises(DuplicateNameError, match="'orders' is already registered"):
        reg.add("orders", 3)
    with pytest.raises(NotFoundError) as info:
        reg.get("order")
    msg = str(info.value)
    assert "unknown data source 'order'" in msg
    assert "did you mean 'orders'" in msg and "'customers'" in msg
    assert reg.remove("orders") == 1
    assert reg.names() == ["customers"]


def test_component_needs_a_name() -> None:
    with pytest.raises(ConfigError, match="non-empty string name"):
        Component("", {})


def test_operation_records_metadata() -> None:
    c = Component("c")
    assert c.get_metadata()["status"] == "idle"
    with c._operation("work", rows_in=3) as op:
        op.rows_out = 2
        op.details["x"] = 1
    meta = c.get_metadata()
    assert meta["status"] == "succeeded"
    assert meta["last_operation"] == "work"
    assert meta["rows_in"] == 3 and meta["rows_out"] == 2
    assert meta["last_operation_time"].endswith("+00:00")
    assert meta["duration_seconds"] >= 0
    assert meta["details"] == {"x": 1}


def test_operation_translates_library_errors() -> None:
    c = Component("c")
    with (
        pytest.raises(InputNotFoundError, match="Component 'c': read failed"),
        c._operation("read"),
    ):
        open("/nonexistent/file.csv")  # noqa: SIM115
    assert c.get_metadata()["status"] == "failed"
    with pytest.raises(DataPipelineError) as info, c._operation("read"):
        raise ValueError("boom")
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(TimeoutError), c._operation("read"):
        raise TimeoutError("slow")
