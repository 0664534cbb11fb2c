"""The `data-pipeline` command's global options."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest
from typer.testing import CliRunner

from data_pipeline.cli import app


@pytest.mark.parametrize("args", [["--version"], ["-V"], ["version"]])
def test_version_options_print_the_installed_version(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0
    assert result.stdout.strip() == f"data-pipeline {version('data-pipeline')}"


def test_version_through_the_console_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from data_pipeline.cli import main; main()", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"data-pipeline {version('data-pipeline')}"


def test_version_is_listed_in_help() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert "--version" in result.stdout and "-V" in result.stdout
