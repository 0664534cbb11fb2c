"""The runnable examples of docs/storage.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "storage.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_quick_start_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    quick = next(b for b in blocks() if "StorageManager()" in b)
    exec(compile(quick, "docs/storage.md", "exec"), {})
    assert "['lake', 'warehouse']" in capsys.readouterr().out
    assert (tmp_path / "data" / "lake" / "sales.parquet").is_file()


def test_schema_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import polars as pl

    from data_pipeline.storage import DataWarehouseStorage

    monkeypatch.chdir(tmp_path)
    code = next(b for b in blocks() if 'SchemaRegistry("schemas.json"' in b)
    namespace = {
        "frame": pl.DataFrame({"order_id": [1], "region": ["EU"], "amount": [1.0]}),
        "warehouse": DataWarehouseStorage(name="w", config={}),
    }
    exec(compile(code, "docs/storage.md", "exec"), namespace)
    assert namespace["problems"] == []
    assert (tmp_path / "schemas.json").is_file()


def test_transaction_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code = next(b for b in blocks() if "events.transaction()" in b)
    exec(compile(code, "docs/storage.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "42 2"


def test_class_configs_in_docs_are_valid() -> None:
    """Every ``X(name=..., config={...})`` in the docs builds (no server is contacted)."""
    from data_pipeline import storage

    text = DOC.read_text(encoding="utf-8")
    calls = re.findall(r"(\w+Storage)\(name=\"\w+\", config=(\{.*?\n?\})\)", text, re.S)
    assert len(calls) >= 6
    for cls_name, config_text in calls:
        config = eval(config_text, {})  # the docs' own literals
        getattr(storage, cls_name)(name="doc", config=config)
