"""The transformation example runs on its own generated data."""

from __future__ import annotations

import pytest

from data_pipeline.transformation import example


def test_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    result = example.main()
    assert result.columns == ["order_date", "product_id", "qty", "unit_price", "revenue", "age"]
    assert result.null_count().sum_horizontal().item() == 0
    assert result["unit_price"].max() == 100.0
    assert result["revenue"].to_list() == [28.5, 20.0, 19.0, 0.0, 80.0, 200.0]
    out = capsys.readouterr().out
    assert "handle_missing_values" in out
