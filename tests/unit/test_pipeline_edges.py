"""Pipeline files at the edges (issue 14): which paths are files beside the YAML file, default
local files beside it whatever the working directory, every key of the Python API, hints for
nested keys, and a check of column names through the whole file before anything runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from data_pipeline.cli import app
from data_pipeline.core.errors import ConfigError
from data_pipeline.pipeline import load_pipeline, run_pipeline


def write(folder: Path, doc: dict[str, Any], name: str = "pipeline.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def test_database_is_a_file_only_for_file_databases(tmp_path: Path) -> None:
    """``database: test`` of a PostgreSQL or MariaDB config is the server's database name; it was
    turned into '<yaml folder>/test'. SQLite, DuckDB and the embedded store keep files there."""
    doc = {
        "sources": {
            "pg": {
                "type": "DatabaseSource",
                "config": {"db_type": "postgresql", "database": "test", "query": "select 1"},
            },
            "lite": {
                "type": "DatabaseSource",
                "config": {"db_type": "sqlite", "database": "db.sqlite", "query": "x"},
            },
        },
        "storage": {
            "pg_out": {
                "type": "RelationalDBStorage",
                "config": {"db_type": "postgresql", "host": "h", "database": "test"},
            },
            "my_out": {
                "type": "RelationalDBStorage",
                "config": {"url": "mysql://u@h/test"},
            },
            "wh": {"type": "DataWarehouseStorage", "config": {"database": "w.duckdb"}},
            "docs": {"type": "NoSQLDBStorage", "config": {"database": "docs"}},
            "cache": {"type": "NoSQLDBStorage", "config": {"db_type": "redis", "database": "3"}},
        },
    }
    loaded = load_pipeline(write(tmp_path, doc))
    assert loaded.sources["pg"].config["database"] == "test"
    assert loaded.sources["lite"].config["database"] == str(tmp_path / "db.sqlite")
    systems = {name: system for name, (system, _) in loaded.storage.items()}
    assert systems["pg_out"].config["database"] == "test"
    assert systems["wh"].config["database"] == str(tmp_path / "w.duckdb")
    assert systems["docs"].config["database"] == str(tmp_path / "docs")
    assert systems["cache"].config["database"] == "3"


def _incremental_doc(state_path: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {"path": "in", "incremental": True}
    if state_path:
        config["state_path"] = state_path
    return {
        "name": "inc",
        "sources": {"orders": {"type": "FileSystemSource", "config": config}},
        "storage": {
            "wh": {
                "type": "DataWarehouseStorage",
                "config": {"database": "out/w.duckdb"},
                "store": [{"data": "orders", "table": "orders", "if_exists": "append"}],
            }
        },
    }


@pytest.mark.parametrize("state_path", [None, "state/orders.json"])
def test_incremental_state_is_beside_the_yaml_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state_path: str | None
) -> None:
    """Run from one directory, then from another: the second run finds the state of the first
    (beside the YAML file) and loads nothing again. The state used to follow the working
    directory, and the table doubled (10,002 rows for 5,001 ids)."""
    project = tmp_path / "project"
    (project / "in").mkdir(parents=True)
    pl.DataFrame({"id": range(5_001), "v": [1.5] * 5_001}).write_parquet(
        project / "in" / "a.parquet"
    )
    path = write(project, _incremental_doc(state_path))
    for elsewhere in ("cwd1", "cwd2"):
        (tmp_path / elsewhere).mkdir()
        monkeypatch.chdir(tmp_path / elsewhere)
        run_pipeline(path)
        assert not (tmp_path / elsewhere / ".data_pipeline").exists()
    con = duckdb.connect(str(project / "out" / "w.duckdb"), read_only=True)
    assert con.execute("select count(*), count(distinct id) from orders").fetchone() == (
        5_001,
        5_001,
    )
    con.close()
    expected = project / (state_path or ".data_pipeline/state/orders.json")
    assert expected.is_file()


def test_default_reject_file_is_beside_the_yaml_and_a_safe_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "bad.csv").write_text("id,name\n1,a\n2\n3,c\n")
    doc = {
        "sources": {
            "../../escape": {
                "type": "FileSystemSource",
                "config": {"path": "bad.csv", "on_bad_rows": "reject"},
            }
        }
    }
    monkeypatch.chdir(tmp_path)
    run_pipeline(write(project, doc))
    rejects = list((project / ".data_pipeline" / "rejects").iterdir())
    assert [p.name for p in rejects] == ["_.._.._escape.csv"]
    assert pl.read_csv(rejects[0])["line"].to_list() == [3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]


def test_dashboard_item_accepts_every_key_of_the_python_api(tmp_path: Path) -> None:
    pl.DataFrame({"x": [1, 2], "y": [3, 4]}).write_parquet(tmp_path / "d.parquet")
    doc = {
        "sources": {"d": {"type": "FileSystemSource", "config": {"path": "d.parquet"}}},
        "dashboards": {
            "board": {
                "path": "board.html",
                "visualizations": [
                    {"type": "Table", "name": "rows", "span": 2},
                    {
                        "type": "BarChart",
                        "name": "bars",
                        "position": 0,
                        "config": {"x": "x", "y": "y"},
                    },
                ],
            }
        },
    }
    loaded = load_pipeline(write(tmp_path, doc))
    layout = loaded.dashboards["board"][0].render(
        {
            "rows": pl.read_parquet(tmp_path / "d.parquet"),
            "bars": pl.read_parquet(tmp_path / "d.parquet"),
        }
    )
    assert layout["layout"]["items"] == [{"name": "bars", "span": 1}, {"name": "rows", "span": 2}]


@pytest.mark.parametrize(
    ("doc", "where", "keys"),
    [
        (
            {"dashboards": {"b": {"visualizations": [{"type": "Table", "spam": 2}]}}},
            "dashboards.b.visualizations[0]",
            "config, data, name, position, span, type",
        ),
        ({"storage": {"s": {"type": "X", "stroe": []}}}, "storage.s", "config, name, store, type"),
        ({"checkpoint": {"paht": "x"}}, "checkpoint", "name, path, storage"),
        (
            {
                "sources": {
                    "api": {
                        "type": "RESTAPISource",
                        "config": {
                            "url": "http://x",
                            "incremental": {"param": "p", "statepath": "s"},
                        },
                    }
                }
            },
            "sources.api.config.incremental",
            "cursor_field, initial_value, lookback, param, primary_key, state_path",
        ),
    ],
)
def test_unknown_nested_key_lists_the_keys_allowed_there(
    tmp_path: Path, doc: dict[str, Any], where: str, keys: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_pipeline(write(tmp_path, doc))
    assert f"keys allowed at {where}: {keys}" in (info.value.hint or "")
    assert "did you mean" in (info.value.hint or "")


SALES = pl.DataFrame(
    {"date": ["2024-01-01", "2024-01-02"], "product": ["a", "b"], "revenue": [1.0, 2.0]}
)


def _validated_doc() -> dict[str, Any]:
    return {
        "sources": {"sales": {"type": "FileSystemSource", "config": {"path": "sales.csv"}}},
        "transformations": {
            "clean": [
                {
                    "type": "MissingValueHandler",
                    "config": {"strategy": "drop", "columns": ["revenue"]},
                }
            ]
        },
        "storage": {
            "lake": {
                "type": "FileSystemStorage",
                "config": {"base_path": "lake"},
                "store": [{"data": "clean", "table": "clean"}, {"data": "daily", "table": "daily"}],
            }
        },
        "processing": {
            "daily": {
                "input": "clean",
                "steps": [
                    {
                        "type": "DataAggregator",
                        "config": {"group_by": ["date"], "aggregations": {"revenu": "sum"}},
                    }
                ],
            }
        },
        "dashboards": {
            "d": {
                "path": "d.html",
                "visualizations": [
                    {"type": "LineChart", "data": "daily", "config": {"x": "day", "y": "revenue"}}
                ],
            }
        },
    }


def test_validate_reports_every_column_problem_before_anything_is_written(tmp_path: Path) -> None:
    """A misspelled aggregation column passed `validate`; `run` stored the clean data and then
    failed. Now both find it (and the chart's unknown column) from the CSV header, at once."""
    SALES.write_csv(tmp_path / "sales.csv")
    path = write(tmp_path, _validated_doc())
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code != 0
    text = " ".join(result.output.split())
    assert "2 problems" in text
    assert "processing.daily[0]: DataAggregator" in text and "'revenu'" in text
    assert "did you mean 'revenue'" in text
    assert "dashboards.d.visualizations[0].config: LineChart" in text and "'day'" in text
    with pytest.raises(ConfigError, match="2 problems"):
        run_pipeline(path)
    assert not (tmp_path / "lake").exists()  # nothing was written


def test_validate_reports_problems_of_several_components_together(tmp_path: Path) -> None:
    doc = {
        "sources": {
            "a": {"type": "FileSystemSource", "config": {"path": "a.csv", "delimiter": ";;"}},
            "b": {"type": "FileSytemSource", "config": {}},
        },
        "processing": {"p": {"input": "nope", "steps": []}},
    }
    with pytest.raises(ConfigError) as info:
        load_pipeline(write(tmp_path, doc))
    text = str(info.value)
    assert "3 problems" in text
    assert "sources.a.config.delimiter" in text
    assert "did you mean 'FileSystemSource'" in text
    assert "processing.p.input: unknown input 'nope'" in text


def test_empty_increment_flows_through_store_processing_and_charts(tmp_path: Path) -> None:
    """The second run finds no new file: 0 rows with the same columns reach the DuckDB append,
    the aggregation and the chart (the append used to fail on a frame without columns)."""
    (tmp_path / "in").mkdir()
    SALES.write_csv(tmp_path / "in" / "a.csv")
    doc = {
        "sources": {
            "sales": {"type": "FileSystemSource", "config": {"path": "in", "incremental": True}}
        },
        "storage": {
            "wh": {
                "type": "DataWarehouseStorage",
                "config": {"database": "w.duckdb"},
                "store": [
                    {"data": "sales", "table": "sales", "if_exists": "append"},
                    {"data": "daily", "table": "daily", "if_exists": "append"},
                ],
            }
        },
        "processing": {
            "daily": {
                "input": "sales",
                "steps": [
                    {
                        "type": "DataAggregator",
                        "config": {"group_by": ["date"], "aggregations": {"revenue": "sum"}},
                    }
                ],
            }
        },
        "dashboards": {
            "d": {
                "path": "d.html",
                "visualizations": [
                    {"type": "BarChart", "data": "daily", "config": {"x": "date", "y": "revenue"}}
                ],
            }
        },
    }
    path = write(tmp_path, doc)
    first = run_pipeline(path)
    second = run_pipeline(path)
    assert (
        second.data["sales"].collect().height == 0
        if hasattr(second.data["sales"], "collect")
        else True
    )
    assert set(second.outputs) == set(first.outputs)
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    assert con.execute("select count(*) from sales").fetchone() == (2,)
    assert con.execute("select count(*) from daily").fetchone() == (2,)
    con.close()
    assert os.path.getsize(tmp_path / "d.html") > 0


def test_validate_checks_column_names_of_a_database_table(tmp_path: Path) -> None:
    """Table columns are cheap to know too: a SQLite table's columns reach the steps' check."""
    import sqlite3

    con = sqlite3.connect(tmp_path / "shop.sqlite")
    con.execute("CREATE TABLE sales (date TEXT, product TEXT, revenue REAL)")
    con.commit()
    con.close()
    doc = {
        "sources": {
            "sales": {
                "type": "DatabaseSource",
                "config": {"db_type": "sqlite", "database": "shop.sqlite", "table": "sales"},
            }
        },
        "processing": {
            "daily": [
                {
                    "type": "DataAggregator",
                    "config": {"group_by": ["dat"], "aggregations": {"revenue": "sum"}},
                }
            ]
        },
    }
    with pytest.raises(ConfigError, match=r"processing\.daily\[0\]: DataAggregator .*'dat'"):
        load_pipeline(write(tmp_path, doc))
