"""Keys of a pipeline file that were silently ignored or overridden: ``name:`` on a source or a
storage entry, a dashboard without ``path``, a dashboard's ``title``/``description`` given twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from data_pipeline.core.errors import ConfigError
from data_pipeline.pipeline import load_pipeline, render_dashboards, run_pipeline

ROWS = pl.DataFrame({"x": [1, 2, 3], "y": [10.0, 20.0, 30.0]})


def write(folder: Path, doc: dict[str, Any]) -> Path:
    ROWS.write_parquet(folder / "d.parquet")
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def doc(**dashboard: Any) -> dict[str, Any]:
    return {
        "sources": {"d": {"type": "FileSystemSource", "config": {"path": "d.parquet"}}},
        "storage": {
            "lake": {
                "type": "FileSystemStorage",
                "config": {"base_path": "lake"},
                "store": [{"data": "d", "table": "d"}],
            }
        },
        "dashboards": {
            "board": {
                **dashboard,
                "visualizations": [{"type": "Table", "name": "rows", "data": "d"}],
            }
        },
    }


# -- name: on sources and storage systems ------------------------------------------------------


@pytest.mark.parametrize("section", ["sources", "storage"])
def test_a_name_other_than_the_key_is_an_error_naming_both(tmp_path: Path, section: str) -> None:
    """Sources and storage systems are named by their key; a different ``name:`` was ignored."""
    d = doc()
    key = next(iter(d[section]))
    d[section][key]["name"] = "other"
    with pytest.raises(ConfigError) as info:
        load_pipeline(write(tmp_path, d))
    text = str(info.value)
    assert f"{section}.{key}.name" in text and "'other'" in text and f"'{key}'" in text, text
    assert "key" in (info.value.hint or "")


@pytest.mark.parametrize("section", ["sources", "storage"])
def test_a_name_equal_to_the_key_is_accepted(tmp_path: Path, section: str) -> None:
    d = doc()
    key = next(iter(d[section]))
    d[section][key]["name"] = key
    loaded = load_pipeline(write(tmp_path, d))
    built = loaded.sources[key] if section == "sources" else loaded.storage[key][0]
    assert built.name == key


# -- a dashboard without path ------------------------------------------------------------------


def test_dashboard_without_path_is_written_by_run_as_by_render_dashboards(tmp_path: Path) -> None:
    """``run`` rendered it and dropped the HTML; ``render_dashboards`` wrote ``<name>.html``."""
    path = write(tmp_path, doc())
    expected = tmp_path / "board.html"
    result = run_pipeline(path)
    assert result.outputs["dashboard:board"] == str(expected)
    assert expected.is_file() and 'data-name="rows"' in expected.read_text(encoding="utf-8")
    expected.unlink()
    assert render_dashboards(path) == {"board": str(expected)}
    assert expected.is_file()


def test_default_dashboard_file_is_a_safe_name_beside_the_yaml(tmp_path: Path) -> None:
    d = doc()
    d["dashboards"] = {"../up": d["dashboards"]["board"]}
    (tmp_path / "in").mkdir()
    result = run_pipeline(write(tmp_path / "in", d))
    assert result.outputs["dashboard:../up"] == str(tmp_path / "in" / "_.._up.html")
    assert not (tmp_path / "up.html").exists()


# -- title / description at the top and inside config -----------------------------------------


@pytest.mark.parametrize("key", ["title", "description"])
def test_title_and_description_given_twice_differently_is_an_error(
    tmp_path: Path, key: str
) -> None:
    """Top-level ``title: A`` with ``config: {title: B}`` drew B without a word."""
    with pytest.raises(ConfigError) as info:
        load_pipeline(write(tmp_path, doc(**{key: "Top", "config": {key: "Inner"}})))
    text = str(info.value)
    assert f"dashboards.board.{key}" in text and "'Top'" in text and "'Inner'" in text, text


@pytest.mark.parametrize("key", ["title", "description"])
def test_title_and_description_at_the_top_or_both_the_same(tmp_path: Path, key: str) -> None:
    for given in ({key: "Top"}, {key: "Top", "config": {key: "Top"}}):
        loaded = load_pipeline(write(tmp_path, doc(**given)))
        assert getattr(loaded.dashboards["board"][0].settings, key) == "Top"
