"""The docstring examples of the visualization layer run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "base",
    "charts",
    "dashboard",
    "html",
    "kpi",
    "manager",
    "sampling",
    "table",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"data_pipeline.visualization.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
