"""Example: clean a small generated sales file with a transformation pipeline.

Run it with ``python -m data_pipeline.transformation.example``. It writes a CSV with missing
values, an outlier, text-typed numbers and untidy column names to a temp dir, then fills,
converts, clips, renames, selects and derives a revenue column, lazily, with one collect.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from data_pipeline.transformation import (
    ColumnRenamer,
    ColumnSelector,
    CustomTransformer,
    DataTypeConverter,
    MissingValueHandler,
    OutlierHandler,
    TransformationManager,
)
from data_pipeline.transformation.config import missing_value_config

__all__ = ["main"]


def _write_sample(directory: Path) -> Path:
    import polars as pl

    path = directory / "sales.csv"
    pl.DataFrame(
        {
            "Order Date": [
                "2024-01-05",
                "2024-01-05",
                "2024-01-06",
                "2024-01-07",
                "2024-01-07",
                "2024-01-08",
            ],
            "Product ID": ["p1", "p2", "p1", "p3", "p2", "p1"],
            "Qty": ["3", "1", "2", "", "4", "2"],
            "Unit Price": [9.5, 20.0, 9.5, 7.25, 20.0, 950.0],
            "age": [34, None, 51, 28, None, 45],
            "income": [52000.0, 61000.0, None, 38000.0, 75000.0, None],
            "education": ["BSc", "MSc", None, "BSc", None, "PhD"],
        }
    ).write_csv(path)
    return path


def main() -> Any:
    """Generate a CSV in a temp dir, clean it, print and return the result (a polars frame)."""
    import polars as pl

    with tempfile.TemporaryDirectory() as tmp:
        data = pl.read_csv(_write_sample(Path(tmp)), infer_schema=False)
        data = data.with_columns(pl.col("Unit Price", "age", "income").cast(pl.Float64))

        manager = TransformationManager()
        pipeline = manager.create_pipeline("transform_pipeline")
        pipeline.add_transformer(
            ColumnRenamer(name="tidy_names", config={"function": "snake_case"})
        )
        pipeline.add_transformer(
            DataTypeConverter(
                name="types",
                config={"columns": {"order_date": "date", "qty": "int"}, "errors": "raise"},
            )
        )
        pipeline.add_transformer(
            MissingValueHandler(name="handle_missing_values", config=missing_value_config)
        )
        pipeline.add_transformer(
            MissingValueHandler(
                name="qty_default", config={"strategy": "constant", "value": 0, "columns": ["qty"]}
            )
        )
        pipeline.add_transformer(
            OutlierHandler(
                name="clip_price",
                config={"method": "bounds", "upper": 100, "columns": ["unit_price"]},
            )
        )
        pipeline.add_transformer(
            CustomTransformer(name="revenue", config={"expression": "revenue = unit_price * qty"})
        )
        pipeline.add_transformer(
            ColumnSelector(
                name="keep",
                config={
                    "include": ["order_date", "product_id", "qty", "unit_price", "revenue", "age"]
                },
            )
        )
        # lazy end to end: the pipeline builds one plan (errors: raise runs one small check
        # query for bad values), and we collect once
        result = manager.transform(data.lazy(), "transform_pipeline").collect()

    print(result)
    for step in pipeline.get_metadata()["details"]["steps"]:
        print(f"{step['step']:>22}: {step['type']}")
    return result


if __name__ == "__main__":
    main()
