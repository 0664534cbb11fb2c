"""docs/semantics.md's type table is what core/types.py does: each logical type's dtype on every
engine and its column type in every SQL dialect (regenerate with
``python -m tests.unit.core.test_type_table`` and paste between the markers)."""

from __future__ import annotations

import re
from pathlib import Path

from data_pipeline.core.types import parse_type

DOC = Path(__file__).resolve().parents[3] / "docs" / "semantics.md"
NAMES = [
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float32", "float64", "decimal(10,2)", "bool", "string", "binary", "date", "time",
    "datetime", "datetime[us, UTC]", "duration", "category",
]  # fmt: skip
COLUMNS = [
    ("Polars", lambda t: t.polars()),
    ("PyArrow", lambda t: t.arrow()),
    ("pandas", lambda t: t.pandas()),
    ("DuckDB", lambda t: t.duckdb()),
    ("Spark", lambda t: t.spark()),
    ("PostgreSQL", lambda t: t.sql("postgresql")),
    ("MySQL/MariaDB", lambda t: t.sql("mysql")),
    ("SQLite", lambda t: t.sql("sqlite")),
]


def table() -> str:
    lines = [
        "| logical type | " + " | ".join(name for name, _ in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for name in NAMES:
        t = parse_type(name)
        cells = [f"`{f(t)}`".replace("|", "\\|") for _, f in COLUMNS]
        lines.append(f"| `{t.name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def test_the_type_table_in_the_docs_is_the_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(r"<!-- type-table -->\n(.*?)\n<!-- /type-table -->", text, re.S)
    assert found, "docs/semantics.md lost its type table markers"
    assert found.group(1) == table(), "regenerate: python -m tests.unit.core.test_type_table"


if __name__ == "__main__":
    print(table())
