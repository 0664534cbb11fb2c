"""The ingestion example runs end to end on the data it generates."""

from __future__ import annotations

import pytest

from data_pipeline.ingestion.example import main


def test_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    results = main()
    assert results["sales"].height == 10
    assert results["sales"]["price"].null_count() == 2
    assert results["customers"]["name"].to_list() == ["Ada", "Grace"]
    assert results["orders"]["id"].to_list() == list(range(1, 51))
    out = capsys.readouterr().out
    assert "orders: 50 rows" in out
