"""`make demo`'s job: the sales pipeline writes a dashboard that Chromium draws offline."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import marks, open_dashboard

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.browser


def test_demo_dashboard_draws_offline(browser: Any, tmp_path: Path) -> None:
    example = tmp_path / "sales"
    shutil.copytree(
        ROOT / "examples" / "sales",
        example,
        ignore=shutil.ignore_patterns("data", "output", "__pycache__"),
    )
    subprocess.run(
        [
            sys.executable,
            str(example / "generate.py"),
            "--rows",
            "20000",
            "--out",
            str(example / "data" / "sales.csv"),
        ],
        check=True,
    )
    cli = Path(sys.executable).parent / "data-pipeline"
    run = subprocess.run(
        [str(cli), "run", str(example / "pipeline.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    html = example / "output" / "sales_dashboard.html"
    assert str(html) in run.stdout.replace("\n", "")

    page, visit = open_dashboard(browser, html)
    cards = page.evaluate(
        """Array.from(document.querySelectorAll('section.dp-card[data-kind="vega-lite"]')).map(e => e.id)"""
    )
    assert len(cards) >= 2
    for name in cards:
        assert marks(page, f"#{name}") > 0, f"chart {name} drew nothing"
    visit.assert_clean()
