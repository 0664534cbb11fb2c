"""store_documents: an upsert into the embedded document store (montydb on SQLite files).

* ours: ``NoSQLDBStorage.store(frame, "docs", if_exists="upsert", primary_key="id")`` of ``rows``
  documents into a collection of ``rows`` documents (half the keys exist, half are new): the
  new content is built once (one read of the old documents, one insert into a staging
  collection) and swapped in atomically.
* replace_one (the baseline): the loop a montydb user writes, and the code before issue 14:
  ``collection.replace_one({"id": k}, doc, upsert=True)`` per document. montydb scans the
  collection for every call, so it is quadratic (2,000 rows took 58 s in the issue).

Target: ours at most 0.1x the loop's time (default 1,000 rows; the loop is quadratic, so at
2,000 rows it takes minutes on a busy machine).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import Benchmark


def _frames(rows: int) -> tuple[Any, Any]:
    import polars as pl

    old = pl.DataFrame(
        {"id": range(rows), "name": [f"n{i}" for i in range(rows)], "v": [1.0] * rows}
    )
    new = pl.DataFrame(
        {"id": range(rows // 2, rows + rows // 2), "name": ["new"] * rows, "v": [2.0] * rows}
    )
    return old, new


def prepare(rows: int) -> dict[str, Any]:
    import montydb  # noqa: F401  (imported before the timer)

    from data_pipeline.storage.nosql import NoSQLDBStorage

    old, new = _frames(rows)
    folder = Path(tempfile.mkdtemp(prefix="bench_docs_"))
    ours_store = NoSQLDBStorage(name="bench", config={"database": str(folder / "ours")})
    ours_store.store(old, "docs", if_exists="replace", primary_key="id")
    base_store = NoSQLDBStorage(name="bench", config={"database": str(folder / "loop")})
    base_store.store(old, "docs", if_exists="replace", primary_key="id")
    return {
        "rows": rows,
        "folder": folder,
        "ours": ours_store,
        "loop": base_store,
        "new": new,
        "new_docs": new.to_dicts(),
    }


def ours(params: dict[str, Any]) -> None:
    result = params["ours"].store(params["new"], "docs", if_exists="upsert", primary_key="id")
    assert result.rows == params["rows"]


def baseline(params: dict[str, Any]) -> None:
    collection = params["loop"]._database()["docs"]
    for doc in params["new_docs"]:
        collection.replace_one({"id": doc["id"]}, doc, upsert=True)


def check(params: dict[str, Any]) -> str:
    """The same upsert both ways on a sample, then the same documents in both (plain Python)."""
    sample = prepare(min(params["rows"], 300))
    ours(sample)
    baseline(sample)
    docs = [
        sorted(
            (d["id"], d["name"], d["v"]) for d in sample[k]._database()["docs"].find({}, {"_id": 0})
        )
        for k in ("ours", "loop")
    ]
    expected = sample["rows"] + sample["rows"] // 2
    shutil.rmtree(sample["folder"], ignore_errors=True)
    shutil.rmtree(params["folder"], ignore_errors=True)
    return (
        f"collections equal on a {sample['rows']}-row sample: {docs[0] == docs[1]} "
        f"({len(docs[0]):,} documents, expected {expected:,})"
    )


BENCHMARK = Benchmark(
    name="store_documents",
    description="upsert into the embedded document store: NoSQLDBStorage vs a replace_one loop",
    variants={"ours": ours, "replace_one": baseline},
    prepare=prepare,
    baseline="replace_one",
    targets={"ours": {"time": 0.1}},
    check=check,
    default_rows=1_000,
)
