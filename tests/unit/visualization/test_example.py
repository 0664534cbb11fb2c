from __future__ import annotations

from pathlib import Path

import pytest

from data_pipeline.visualization import example


def test_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = example.main(str(tmp_path))
    assert path.exists()
    text = path.read_text(encoding="utf-8")
    assert text.count("window.vegaEmbed=") == 1
    out = capsys.readouterr().out
    assert "rendered 7 visualizations" in out
    assert str(path) in out
