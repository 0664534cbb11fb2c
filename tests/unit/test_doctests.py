"""Docstring examples: pytest runs every module's (``--doctest-modules`` over
``src/data_pipeline``, see pyproject.toml); this checks that each layer keeps some, and that every
class the spec names shows a runnable example."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import data_pipeline

from .test_public_api import EXPECTED

LAYERS = ("ingestion", "transformation", "storage", "processing", "visualization")


def _examples(module_name: str) -> int:
    module = importlib.import_module(module_name)
    return sum(len(t.examples) for t in doctest.DocTestFinder().find(module))


@pytest.mark.parametrize("layer", LAYERS)
def test_every_layer_has_docstring_examples(layer: str) -> None:
    package = importlib.import_module(f"data_pipeline.{layer}")
    names = [info.name for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")]
    assert sum(_examples(name) for name in names) > 0


def test_pytest_collects_the_package_doctests() -> None:
    from pathlib import Path

    import tomllib

    options = tomllib.loads(
        (Path(data_pipeline.__file__).parents[2] / "pyproject.toml").read_text()
    )["tool"]["pytest"]["ini_options"]
    assert "--doctest-modules" in options["addopts"]
    assert "src/data_pipeline" in options["testpaths"]


@pytest.mark.parametrize(
    ("layer", "name"),
    [(layer, name) for layer, names in sorted(EXPECTED.items()) for name in sorted(names)],
)
def test_every_spec_class_has_a_runnable_example(layer: str, name: str) -> None:
    cls = getattr(importlib.import_module(f"data_pipeline.{layer}"), name)
    assert ">>>" in (cls.__doc__ or ""), f"{name}'s docstring has no example"
