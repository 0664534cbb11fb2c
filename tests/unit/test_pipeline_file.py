"""Pipelines as YAML files: validation before anything runs, and the `data-pipeline` command."""

from __future__ import annotations

import textwrap
from pathlib import Path

import duckdb
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from data_pipeline.cli import app
from data_pipeline.core.errors import ConfigError, InputNotFoundError
from data_pipeline.pipeline import load_pipeline, run_pipeline

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sales" / "pipeline.yaml"


@pytest.fixture
def sales_dir(tmp_path: Path) -> Path:
    """A copy of the sales example over 3,000 generated rows."""
    from examples.sales.generate import write_csv

    write_csv(tmp_path / "data" / "sales.csv", 3_000)
    (tmp_path / "pipeline.yaml").write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    return tmp_path


def edit(path: Path, change) -> Path:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_sales_example_runs_and_matches_duckdb(sales_dir: Path) -> None:
    result = run_pipeline(sales_dir / "pipeline.yaml")
    assert result.stages["ingestion"].rows is None  # a lazy scan: counted where it is computed
    assert result.stages["transformation"].rows == 3_000
    html = Path(result.outputs["dashboard:sales_dashboard"])
    assert html.is_file() and html.stat().st_size > 100_000  # the Vega bundle is inlined
    lake = pl.read_parquet(sales_dir / "output" / "lake" / "sales_clean.parquet")
    assert lake.height == 3_000
    assert (
        lake.select(pl.col("age", "income", "education", "price").null_count())
        .sum_horizontal()
        .item()
        == 0
    )

    # the oracle: aggregate the stored clean data with DuckDB SQL
    con = duckdb.connect(str(sales_dir / "output" / "warehouse.duckdb"), read_only=True)
    expected = pl.from_arrow(
        con.sql(
            "select date, product_id, sum(quantity) as quantity, avg(price) as price, sum(revenue) as revenue "
            "from sales_clean group by date, product_id order by date, product_id"
        ).arrow()
    )
    stored = pl.from_arrow(con.sql("select * from daily_revenue order by date, product_id").arrow())
    con.close()
    ours = result.data["daily_revenue"].sort("date", "product_id")
    for got in (ours, stored):
        assert got.columns == expected.columns
        assert got.height == expected.height
        assert (
            got["quantity"].cast(pl.Int64).to_list()
            == expected["quantity"].cast(pl.Int64).to_list()
        )
        assert (got["revenue"] - expected["revenue"]).abs().max() < 1e-6  # type: ignore[operator]
        assert (got["price"] - expected["price"]).abs().max() < 1e-6  # type: ignore[operator]


def test_validation_names_the_yaml_path_and_allowed_values(sales_dir: Path) -> None:
    def bad_strategy(doc: dict) -> None:  # type: ignore[type-arg]
        doc["transformations"]["clean"][1]["config"]["strategy"] = "guess"

    path = edit(sales_dir / "pipeline.yaml", bad_strategy)
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    msg = str(info.value)
    assert "transformations.clean[1].config.strategy" in msg
    assert "'median'" in msg and "'mean'" in msg


def test_unknown_type_and_unknown_reference(sales_dir: Path) -> None:
    def bad_type(doc: dict) -> None:  # type: ignore[type-arg]
        doc["sources"]["sales"]["type"] = "FileSystemSauce"

    with pytest.raises(
        ConfigError,
        match=r"(?s)sources.sales.type: unknown source type 'FileSystemSauce'.*FileSystemSource",
    ):
        load_pipeline(edit(sales_dir / "pipeline.yaml", bad_type))

    def bad_ref(doc: dict) -> None:  # type: ignore[type-arg]
        doc["sources"]["sales"]["type"] = "FileSystemSource"
        doc["processing"]["daily_revenue"]["input"] = "cleaned"

    with pytest.raises(
        ConfigError, match=r"processing.daily_revenue.input: unknown input 'cleaned'"
    ):
        load_pipeline(edit(sales_dir / "pipeline.yaml", bad_ref))


def test_unknown_top_level_key_and_env(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("sorces: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="sorces: unknown key"):
        load_pipeline(path)
    path.write_text(
        textwrap.dedent(
            """
            sources:
              s: {type: FileSystemSource, config: {path: "${NOT_SET_ANYWHERE_XYZ}"}}
            """
        ),
        encoding="utf-8",
    )
    with pytest.raises(
        ConfigError, match=r"sources.s.config.path: environment variable NOT_SET_ANYWHERE_XYZ"
    ):
        load_pipeline(path, environ={})


def test_missing_file() -> None:
    with pytest.raises(InputNotFoundError, match=r"does-not-exist\.yaml"):
        load_pipeline("does-not-exist.yaml")


def test_cli_exit_codes(sales_dir: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(sales_dir / "pipeline.yaml")])
    assert ok.exit_code == 0, ok.output
    assert "valid" in ok.output

    run = runner.invoke(app, ["run", str(sales_dir / "pipeline.yaml")])
    assert run.exit_code == 0, run.output
    for stage in ("ingestion", "transformation", "storage", "processing", "visualization"):
        assert stage in run.output
    assert "sales_dashboard.html" in run.output

    bad = sales_dir / "bad.yaml"
    bad.write_text("sources: {s: {type: Nope}}\n", encoding="utf-8")
    invalid = runner.invoke(app, ["run", str(bad)])
    assert invalid.exit_code == 2
    assert "sources.s.type" in invalid.output

    (sales_dir / "data" / "sales.csv").unlink()
    failed = runner.invoke(app, ["run", str(sales_dir / "pipeline.yaml")])
    assert failed.exit_code == 1
    assert "sales.csv" in failed.output


def test_dashboard_command_rerenders_from_stored_data(sales_dir: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["run", str(sales_dir / "pipeline.yaml")]).exit_code == 0
    html = sales_dir / "output" / "sales_dashboard.html"
    first = html.read_text(encoding="utf-8")
    html.unlink()
    (sales_dir / "data" / "sales.csv").unlink()  # no ingestion possible: the stored data must serve

    result = runner.invoke(app, ["dashboard", str(sales_dir / "pipeline.yaml")])
    assert result.exit_code == 0, result.output
    again = html.read_text(encoding="utf-8")
    # the same charts over the same numbers (the generated-at time differs)
    import re

    def names(html_text: str) -> list[str]:
        return re.findall(r'data-name="([^"]+)"', html_text)

    def revenues(html_text: str) -> list[float]:
        return sorted(
            round(float(v), 4) for v in re.findall(r'"revenue":(-?[0-9.eE+-]+)', html_text)
        )

    assert names(again) == names(first) and len(names(first)) == 5
    assert revenues(again) == revenues(first) and revenues(first)


def test_dashboard_command_names_unstored_data(sales_dir: Path) -> None:
    def no_storage(doc: dict) -> None:  # type: ignore[type-arg]
        doc["storage"] = {}

    path = edit(sales_dir / "pipeline.yaml", no_storage)
    result = CliRunner().invoke(app, ["dashboard", str(path)])
    assert result.exit_code == 1
    assert "is not stored by any storage system" in result.output


@pytest.mark.parametrize("engine", ["pandas", "duckdb", "arrow"])
def test_same_pipeline_on_every_engine_gives_the_polars_answer(
    sales_dir: Path, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from data_pipeline.core.frames import engine_name, to_polars

    monkeypatch.setenv("DATA_PIPELINE_ENGINE", "polars")
    reference = (
        run_pipeline(sales_dir / "pipeline.yaml").data["daily_revenue"].sort("date", "product_id")
    )
    monkeypatch.setenv("DATA_PIPELINE_ENGINE", engine)
    result = run_pipeline(sales_dir / "pipeline.yaml")
    native = result.data["daily_revenue"]
    assert engine_name(native) == {"arrow": "pyarrow"}.get(engine, engine)
    got = to_polars(native).sort("date", "product_id")
    assert got.columns == reference.columns and got.height == reference.height
    assert (
        got["quantity"].cast(pl.Int64).to_list() == reference["quantity"].cast(pl.Int64).to_list()
    )
    assert (got["price"] - reference["price"]).abs().max() < 1e-9  # type: ignore[operator]
    # revenue is round(quantity * price, 2) per row, half away from zero on every engine (no
    # half-cent apart); the daily sums may differ in the last bit (order of summation)
    assert (got["revenue"] - reference["revenue"]).abs().max() < 1e-9  # type: ignore[operator]
