"""Each layer's __all__ matches the spec's API Reference; importing stays light."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "data-pipeline.md"

EXPECTED = {
    "ingestion": {
        "DataSource",
        "RESTAPISource",
        "DatabaseSource",
        "FileSystemSource",
        "StreamingSource",
        "DataIngestionManager",
    },
    "transformation": {
        "Transformer",
        "DataFrameTransformer",
        "MissingValueHandler",
        "OutlierHandler",
        "DataTypeConverter",
        "ColumnRenamer",
        "ColumnSelector",
        "CustomTransformer",
        "TransformationPipeline",
        "TransformationManager",
    },
    "storage": {
        "StorageSystem",
        "RelationalDBStorage",
        "NoSQLDBStorage",
        "DataWarehouseStorage",
        "FileSystemStorage",
        "SchemaField",
        "Schema",
        "SchemaRegistry",
        "StorageManager",
    },
    "processing": {
        "DataProcessor",
        "BatchProcessor",
        "StreamProcessor",
        "DataAggregator",
        "DataFilter",
        "DataJoiner",
        "DataEnricher",
        "WindowedAggregator",
        "ProcessingPipeline",
        "ProcessingManager",
    },
    "visualization": {
        "Visualization",
        "Chart",
        "LineChart",
        "BarChart",
        "ScatterPlot",
        "PieChart",
        "Heatmap",
        "Table",
        "Dashboard",
        "DashboardManager",
    },
}
EXTRAS = {"visualization": {"KPI"}}


def spec_names() -> dict[str, set[str]]:
    """Parse the API Reference of the spec (when the shared folder is beside the checkout)."""
    text = SPEC.read_text(encoding="utf-8").split("## API Reference", 1)[1]
    layers: dict[str, set[str]] = {}
    current = None
    for line in text.splitlines():
        head = re.match(r"### (\w+) Layer API", line)
        if head:
            current = head.group(1).lower()
            layers[current] = set()
        item = re.match(r"- `(\w+)`", line)
        if item and current:
            layers[current].add(item.group(1))
    return layers


@pytest.mark.skipif(not SPEC.exists(), reason="the spec is not beside this checkout")
def test_expected_matches_the_spec() -> None:
    assert spec_names() == EXPECTED


@pytest.mark.parametrize("layer", sorted(EXPECTED))
def test_layer_exports_exactly_the_spec_names(layer: str) -> None:
    module = importlib.import_module(f"data_pipeline.{layer}")
    exported = set(module.__all__)
    assert EXPECTED[layer] <= exported
    assert exported - EXPECTED[layer] <= EXTRAS.get(layer, set())
    for name in exported:
        assert getattr(module, name).__doc__, f"{layer}.{name} needs a docstring"


def test_import_is_light() -> None:
    code = (
        "import sys, data_pipeline, data_pipeline.ingestion, data_pipeline.transformation, "
        "data_pipeline.storage, data_pipeline.processing, data_pipeline.visualization, data_pipeline.pipeline;"
        "heavy = {'polars','pandas','pyarrow','duckdb','altair','pyspark','psycopg','sqlalchemy','pymysql',"
        "'httpx','vl_convert','connectorx','adbc_driver_postgresql','pymongo','redis','deltalake','sqlglot','fsspec','montydb'};"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
