"""The storage example runs end to end on the data it generates."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_pipeline.storage.example import main


def test_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = main(tmp_path)
    assert results["lake"].height == 40
    for name in ("warehouse", "db", "docs"):
        assert results[name].height == 40, name
        assert sorted(results[name]["order_id"].to_list()) == list(range(1, 41))
    assert results["revenue"]["region"].to_list() == ["APAC", "EU", "US"]
    assert (tmp_path / "schemas.json").is_file()
    out = capsys.readouterr().out
    assert "warehouse: 40 rows after upsert" in out
