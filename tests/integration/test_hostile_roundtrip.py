"""Every hostile value of ``tests/hostile_values.py`` stored and read back on every backend.

One test per (backend, corpus column): the column is stored (create, then an append of the same
values under new ids) and read back; the oracle (``assert_same``, plain Python) compares every
value bit for bit. A backend that cannot hold a value must refuse it with an error naming the
column, and store nothing; it must never change it. :data:`EXPECT` writes down, per backend,
what is refused and why, and what comes back as the same values in another type (formats that
store no types). Cells marked :class:`Broken` are known failures with their owner (strict
xfail: fixing one makes its test fail until the mark is removed).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl
import pytest

from data_pipeline.core.errors import DataPipelineError, InputNotFoundError
from data_pipeline.storage import DataWarehouseStorage, FileSystemStorage
from data_pipeline.storage.nosql import NoSQLDBStorage
from tests.hostile_values import CORPUS, NAMES, assert_same, hostile_frame, names_frame
from tests.integration.servers import drop_redis_keys, redis_config, secantus_server


class Values(NamedTuple):
    """The same values come back in another type (the backend keeps no such type)."""

    why: str


class Refused(NamedTuple):
    """The backend cannot hold some value of the column: ``store`` raises, naming the column."""

    why: str


class Broken(NamedTuple):
    """A known failure, owned by ``owner`` (a strict xfail)."""

    owner: str
    what: str


# -- what each backend refuses, and why --------------------------------------------------------

_NO_BINARY_TEXT = Refused("a text format has no bytes type; store binary data in Parquet/IPC")
_NO_DURATION_TEXT = Refused("a text format has no duration type readers agree on")
_TEXT_TYPES = Values("CSV/JSON Lines store text; types are inferred when read")
_MONGO_MS = Refused("BSON datetimes hold milliseconds; microseconds would be cut")
_NOSQL_DOCS: dict[str, Any] = {
    "u64": Refused("BSON has no unsigned 64-bit integer; values above 2**63-1 do not fit"),
    "ts": _MONGO_MS,
    "ts_utc": _MONGO_MS,
    "ts_ns": _MONGO_MS,
    "dec": Refused("BSON Decimal128 holds 34 digits; the corpus has 38"),
    "dec_wide": Refused("BSON Decimal128 holds 34 digits; the corpus has 38"),
}

EXPECT: dict[str, dict[str, Any]] = {
    "parquet": {},
    "parquet-partitioned": {},
    "ipc": {},
    "csv": {
        "blob": _NO_BINARY_TEXT,
        "duration": _NO_DURATION_TEXT,
        "f32": _TEXT_TYPES,
        "i32": _TEXT_TYPES,
        "u64": _TEXT_TYPES,
        "dec_wide": _TEXT_TYPES,
        "ts_ns": Refused("CSV readers parse timestamps to microseconds; nanoseconds would be cut"),
        "dec": Refused("CSV readers parse decimals as floats; 38 digits do not fit a float"),
    },
    "jsonl": {
        "blob": _NO_BINARY_TEXT,
        "duration": _NO_DURATION_TEXT,
        "f64": Refused("JSON has no NaN or infinity"),
        "f32": Refused("JSON has no NaN or infinity"),
        "i32": _TEXT_TYPES,
        "u64": _TEXT_TYPES,
        "ts": _TEXT_TYPES,
        "ts_utc": _TEXT_TYPES,
        "ts_ns": _TEXT_TYPES,
        "date": _TEXT_TYPES,
        "time": _TEXT_TYPES,
        "dec": _TEXT_TYPES,
        "dec_wide": _TEXT_TYPES,
    },
    "duckdb": {
        "ts_utc": Values(
            "TIMESTAMPTZ keeps the instant, not the zone's name (read back as Etc/UTC)"
        ),
    },
    "delta": {
        "u64": Refused("Delta Lake has no unsigned integers"),
        "ts_ns": Refused("Delta Lake timestamps hold microseconds"),
        "time": Refused("Delta Lake has no time type"),
        "duration": Refused("Delta Lake has no duration type"),
    },
    "embedded": {**_NOSQL_DOCS},
    "mongodb": {**_NOSQL_DOCS},
    "redis-hash": {},
    "redis-json": {
        "blob": Refused("JSON has no bytes type"),
        "duration": Refused("JSON has no duration type readers agree on"),
        "f64": Refused("JSON has no NaN or infinity"),
        "f32": Refused("JSON has no NaN or infinity"),
    },
    "sqlite": {
        "ts_ns": Refused("SQLite timestamps are stored with microseconds"),
        "f64": Refused("SQLite turns NaN into NULL and -0.0 into 0.0"),
        "f32": Refused("SQLite turns NaN into NULL and -0.0 into 0.0"),
        "u64": Refused("SQLite integers hold 64 signed bits"),
        "dec": Refused("SQLite decimals are floats; 38 digits do not fit"),
        "dec_wide": Refused("SQLite decimals are floats; 38 digits do not fit"),
        "i32": Values("SQLite keeps one 64-bit integer type"),
        "bool": Values("SQLite has no boolean type: 0/1 integers"),
        "ts_utc": Values("stored as UTC text; the zone's name is not kept"),
        "duration": Values("microseconds as INTEGER"),
    },
    "postgresql": {
        "text_nul": Refused("PostgreSQL text cannot hold NUL"),
        "ts_ns": Refused("PostgreSQL timestamps hold microseconds"),
        "u64": Values("NUMERIC(20, 0): read back as a decimal"),
        "duration": Values("microseconds as BIGINT"),
    },
    "mariadb": {
        "ts_ns": Refused("MariaDB timestamps hold microseconds"),
        "f64": Refused("MySQL/MariaDB store no NaN or infinity, and -0.0 as 0.0"),
        "f32": Refused("MySQL/MariaDB store no NaN or infinity, and -0.0 as 0.0"),
        "u64": Values("DECIMAL(20, 0): read back as a decimal"),
        "ts_utc": Values("DATETIME(6) in UTC: the zone's name is not kept"),
        "duration": Values("microseconds as BIGINT"),
    },
}

# Known failures today (strict xfail); each owner removes the mark when it is fixed.
BROKEN: dict[str, dict[str, Broken]] = {}

# Column names a backend refuses (the rest of NAMES must come back verbatim).
LONG = "n" * 300
NAMES_REFUSED: dict[str, set[str]] = {
    "postgresql": {LONG},  # identifiers hold 63 bytes
    "mariadb": {LONG},  # identifiers hold 64 characters
    "embedded": {"dot.ted", "$dollar"},  # document keys: no '.', no leading '$'
    "mongodb": {"dot.ted", "$dollar"},
}

# -- the backends --------------------------------------------------------------------------------


@dataclass
class Backend:
    """A storage for one backend plus what to clean up afterwards."""

    name: str
    storage: Any
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        return f"hv_{uuid.uuid4().hex[:10]}"

    def read(self, table: str) -> pl.DataFrame:
        out = self.storage.retrieve(table)
        if isinstance(out, pl.LazyFrame):
            return out.collect()
        if not isinstance(out, pl.DataFrame):
            frame = pl.from_arrow(out)
            assert isinstance(frame, pl.DataFrame)
            return frame
        return out


@pytest.fixture(scope="module")
def mongo_port() -> Iterator[int]:
    with secantus_server() as port:
        yield port


def make_backend(name: str, tmp: Path, request: pytest.FixtureRequest) -> Backend:
    if name in ("parquet", "ipc", "csv", "jsonl"):
        return Backend(
            name, FileSystemStorage(name=name, config={"base_path": str(tmp), "format": name})
        )
    if name == "parquet-partitioned":
        config = {"base_path": str(tmp), "partition_by": ["id"]}
        return Backend(name, FileSystemStorage(name=name, config=config))
    if name == "duckdb":
        return Backend(
            name, DataWarehouseStorage(name=name, config={"database": str(tmp / "w.duckdb")})
        )
    if name == "delta":
        config = {"engine": "delta", "path": str(tmp / "delta")}
        return Backend(name, DataWarehouseStorage(name=name, config=config))
    if name == "embedded":
        storage = NoSQLDBStorage(name=name, config={"database": str(tmp / "docs")})
        return Backend(name, storage, [storage.close])
    if name == "mongodb":
        port = request.getfixturevalue("mongo_port")
        config = {
            "db_type": "mongodb",
            "host": "127.0.0.1",
            "port": port,
            "database": f"hv_{uuid.uuid4().hex[:8]}",
        }
        storage = NoSQLDBStorage(name=name, config=config)
        return Backend(name, storage, [storage.close])
    if name.startswith("redis"):
        config = redis_config(primary_key=["id"], value_format=name.split("-")[1])
        storage = NoSQLDBStorage(name=name, config=config)
        return Backend(
            name, storage, [storage.close, lambda: drop_redis_keys("hv_*", "__dp__:hv_*")]
        )
    from tests.integration.test_storage_relational import DB

    handle = DB(name, tmp)
    backend = Backend(name, handle.storage, [handle.drop_all])
    backend.table = handle.table  # type: ignore[method-assign]  # dropped by drop_all
    return backend


BACKENDS = list(EXPECT)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    handle = make_backend(str(request.param), tmp_path, request)
    yield handle
    for step in handle.cleanup:
        step()


def _expected(backend: str, column: str) -> Any:
    return BROKEN.get(backend, {}).get(column) or EXPECT[backend].get(column)


def _kept(backend: str) -> list[str]:
    """The corpus columns a backend must give back (exactly, or as the same values)."""
    return [c.name for c in CORPUS if not isinstance(_expected(backend, c.name), (Refused, Broken))]


def _round_trip(backend: Backend, columns: list[str], values_only: set[str]) -> None:
    """Store (create, then append under new ids), read back, compare with the oracle."""
    frame = hostile_frame(columns)
    table = backend.table()
    backend.storage.store(frame, table, if_exists="replace")
    more = frame.with_columns(pl.col("id") + frame.height)
    backend.storage.store(more, table, if_exists="append")
    assert_same(
        pl.concat([frame, more]), backend.read(table), values_only=values_only, label=backend.name
    )


def test_values_round_trip(backend: Backend) -> None:
    """Every column the backend keeps, in one frame (one load per backend)."""
    columns = _kept(backend.name)
    values_only = {c for c in columns if isinstance(_expected(backend.name, c), Values)}
    _round_trip(backend, columns, values_only)


_REFUSED = [
    (b, c)
    for b in BACKENDS
    for c, e in EXPECT[b].items()
    if isinstance(e, Refused) and not BROKEN.get(b, {}).get(c)
]


@pytest.mark.parametrize(("backend", "column"), _REFUSED, indirect=["backend"])
def test_unholdable_values_are_refused(backend: Backend, column: str) -> None:
    """A value the backend would change is refused: an error naming the column, nothing stored."""
    frame = hostile_frame([column])
    table = backend.table()
    with pytest.raises(DataPipelineError) as info:
        backend.storage.store(frame, table, if_exists="replace")
    assert column in str(info.value), f"the error does not name the column {column!r}: {info.value}"
    with pytest.raises(InputNotFoundError):  # nothing was stored
        backend.read(table)


_BROKEN = [(b, c) for b, cells in BROKEN.items() for c in cells]


@pytest.mark.parametrize(("backend", "column"), _BROKEN, indirect=["backend"])
def test_known_failures(backend: Backend, column: str, request: pytest.FixtureRequest) -> None:
    """Cells that fail today (strict xfail: a fix makes this fail until BROKEN is updated)."""
    broken = BROKEN[backend.name][column]
    request.applymarker(pytest.mark.xfail(strict=True, reason=f"{broken.owner}: {broken.what}"))
    expected = EXPECT[backend.name].get(column)
    if isinstance(expected, Refused):
        test_unholdable_values_are_refused(backend, column)
    else:
        _round_trip(backend, [column], {column} if isinstance(expected, Values) else set())


def test_hostile_names_round_trip(backend: Backend) -> None:
    refused = NAMES_REFUSED.get(backend.name, set())
    frame = names_frame([n for n in NAMES if n not in refused])
    table = backend.table()
    backend.storage.store(frame, table, if_exists="replace")
    assert_same(frame, backend.read(table), label=backend.name)
    for name in sorted(refused):
        with pytest.raises(DataPipelineError, match="column name"):
            backend.storage.store(names_frame([name]), backend.table(), if_exists="replace")
