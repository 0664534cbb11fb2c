"""The incremental state of batch sources: one implementation for all of them.

:class:`IncrementalCursor` is what DatabaseSource and RESTAPISource keep between runs: the last
value of a column that grows (``updated_at``, ``id``) and, with a primary key, the keys of the
rows delivered inside the lookback window (those the next run reads again), so late rows are
neither lost nor doubled. It is kept in a JSON file (:class:`StateStore`, the keys in a Parquet
sidecar, :class:`DeliveredKeys`), or — restored by a
:class:`~data_pipeline.core.checkpoint.Checkpointer` — in the pipeline's checkpoint, committed
with the data the run stored.

Cursor values keep their type: a datetime, date or decimal is written as ``{"datetime": iso}``
(``date``, ``decimal``), text and numbers as they are; ISO timestamps given as text (JSON APIs)
compare as instants and go back by ``lookback`` keeping their textual form.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_pipeline.core.errors import IngestionError, ParseError

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "KEY_HASH",
    "KEY_HASH_FORMAT",
    "DeliveredKeys",
    "IncrementalCursor",
    "MemoryState",
    "StateStore",
    "at_or_after",
    "dump_value",
    "key_hashes",
    "later",
    "load_value",
    "minus",
]


class StateStore:
    """Incremental state kept in a small JSON file, written atomically.

    One file per source by default: ``.data_pipeline/state/<source name>.json`` under the
    working directory (the pipeline file's folder when one runs); ``state_path`` in a source's config chooses another file.
    """

    _locks: dict[str, threading.Lock] = {}
    _guard = threading.Lock()

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with self._guard:
            self._lock = self._locks.setdefault(str(self.path.resolve()), threading.Lock())

    @classmethod
    def for_source(cls, name: str, state_path: str | None) -> StateStore:
        if state_path:
            return cls(state_path)
        from data_pipeline.core.files import local_path, safe_file_name

        return cls(local_path("state", f"{safe_file_name(name)}.json"))

    def load(self) -> dict[str, Any]:
        with self._lock:
            if not self.path.exists():
                return {}
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ParseError(
                    f"state file {str(self.path)!r} is not valid JSON: {exc.msg} at char {exc.pos}",
                    hint="delete the state file to start the incremental read from scratch",
                ) from None
            return data if isinstance(data, dict) else {}

    def save(self, state: Mapping[str, Any]) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(
                f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
            )
            tmp.write_text(
                json.dumps(state, indent=2, sort_keys=True, default=str), encoding="utf-8"
            )
            os.replace(tmp, self.path)


# -- keys of the rows already delivered (incremental reads with a lookback window) -------------

#: column of the key hash in a :class:`DeliveredKeys` sidecar
KEY_HASH = "_dp_key_hash"
#: the format of :func:`key_hashes`, written to the state file; bump it if the encoding changes
KEY_HASH_FORMAT = "xxh64-v1"

_M64 = (1 << 64) - 1
_P1 = 0x9E3779B185EBCA87
_P2 = 0xC2B2AE3D27D4EB4F
_P3 = 0x165667B19E3779F9
_P4 = 0x85EBCA77C2B2AE63
_P5 = 0x27D4EB2F165667C5


def _xxh64(data: Any, offsets: Any) -> Any:
    """XXH64 (seed 0) of each ``data[offsets[i]:offsets[i+1]]``, vectorised over the rows.

    ``data`` is a ``uint8`` array and ``offsets`` an ``int64`` array of ``n + 1`` positions.
    The loops run over byte positions inside a row (a few steps for short keys), never over rows.
    The result equals ``xxhash.xxh64_intdigest(row)`` of the reference implementation.
    """
    import numpy as np

    u64 = np.uint64
    p1, p2, p3, p4, p5 = (u64(p) for p in (_P1, _P2, _P3, _P4, _P5))
    starts = offsets[:-1].astype(np.int64)
    lengths = (offsets[1:] - offsets[:-1]).astype(np.int64)
    n = len(lengths)
    padded = np.concatenate([data, np.zeros(8, dtype=np.uint8)])  # reads past a row's end

    def word(pos: Any) -> Any:
        idx = pos[:, None] + np.arange(8, dtype=np.int64)
        return np.ascontiguousarray(padded[idx]).view("<u8").ravel()

    def word32(pos: Any) -> Any:
        idx = pos[:, None] + np.arange(4, dtype=np.int64)
        return np.ascontiguousarray(padded[idx]).view("<u4").ravel().astype(np.uint64)

    def rotl(x: Any, r: int) -> Any:
        return (x << u64(r)) | (x >> u64(64 - r))

    def round_(acc: Any, value: Any) -> Any:
        return rotl(acc + value * p2, 31) * p1

    with np.errstate(over="ignore"):
        h = np.full(n, _P5, dtype=np.uint64)
        stripes = lengths // 32
        big = np.flatnonzero(stripes > 0)
        if big.size:
            v = [
                np.full(big.size, (_P1 + _P2) & _M64, dtype=np.uint64),
                np.full(big.size, _P2, dtype=np.uint64),
                np.zeros(big.size, dtype=np.uint64),
                np.full(big.size, (-_P1) & _M64, dtype=np.uint64),
            ]
            count = stripes[big]
            for step in range(int(count.max())):
                live = np.flatnonzero(count > step)
                pos = starts[big[live]] + 32 * step
                for lane in range(4):
                    v[lane][live] = round_(v[lane][live], word(pos + 8 * lane))
            acc = rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)
            for lane in range(4):
                acc = (acc ^ round_(np.zeros_like(acc), v[lane])) * p1 + p4
            h[big] = acc
        h += lengths.astype(np.uint64)
        pos = starts + 32 * stripes
        left = lengths - 32 * stripes
        for _ in range(3):  # up to three 8-byte words
            live = np.flatnonzero(left >= 8)
            if not live.size:
                break
            k1 = round_(np.zeros(live.size, dtype=np.uint64), word(pos[live]))
            h[live] = rotl(h[live] ^ k1, 27) * p1 + p4
            pos[live] += 8
            left[live] -= 8
        live = np.flatnonzero(left >= 4)
        if live.size:
            h[live] = rotl(h[live] ^ (word32(pos[live]) * p1), 23) * p2 + p3
            pos[live] += 4
            left[live] -= 4
        for _ in range(3):  # up to three single bytes
            live = np.flatnonzero(left >= 1)
            if not live.size:
                break
            h[live] = rotl(h[live] ^ (padded[pos[live]].astype(np.uint64) * p5), 11) * p1
            pos[live] += 1
            left[live] -= 1
        h ^= h >> u64(33)
        h *= p2
        h ^= h >> u64(29)
        h *= p3
        h ^= h >> u64(32)
    return h


def _key_text(frame: pl.DataFrame, name: str) -> pl.Expr:
    """One key column as canonical text ``<tag><byte length>:<value>`` (``n`` for null).

    Integers, strings, booleans and decimals share the tag ``s`` (``1`` and ``"1"`` are one
    key, as JSON APIs may send either); temporal values are their integer count of days or
    microseconds (nanoseconds for times), floats their IEEE-754 bits. The encoding is
    prefix-free, so the row text of several columns is unambiguous.
    """
    import polars as pl

    dtype = frame.schema[name]
    col = pl.col(name)
    tag = "s"
    if dtype == pl.String:
        value = col
    elif isinstance(dtype, (pl.Categorical, pl.Enum)) or dtype.is_integer():
        value = col.cast(pl.String)
    elif dtype == pl.Boolean:
        value = pl.when(col).then(pl.lit("true")).otherwise(pl.lit("false"))
    elif isinstance(dtype, pl.Decimal):
        value = col.cast(pl.String)
        if dtype.scale:
            value = value.str.replace(r"0+$", "").str.replace(r"\.$", "")
    elif dtype.is_float():
        tag = "f"
        value = col.cast(pl.Float64).map_batches(_float_bits, return_dtype=pl.String)
    elif dtype == pl.Date:
        tag, value = "d", col.to_physical().cast(pl.String)
    elif isinstance(dtype, pl.Datetime):
        tag, value = "t", col.dt.cast_time_unit("us").to_physical().cast(pl.String)
    elif isinstance(dtype, pl.Duration):
        tag, value = "D", col.dt.cast_time_unit("us").to_physical().cast(pl.String)
    elif dtype == pl.Time:
        tag, value = "h", col.to_physical().cast(pl.String)
    elif dtype == pl.Binary:
        tag, value = "b", col.bin.encode("hex")
    elif dtype == pl.Null:
        return pl.lit("n")
    else:
        raise IngestionError(
            f"primary_key column {name!r} has type {dtype}, which cannot be a key",
            hint="use columns of plain values (numbers, text, dates) as primary_key",
        )
    piece = pl.concat_str([pl.lit(tag), value.str.len_bytes().cast(pl.String), pl.lit(":"), value])
    return pl.when(col.is_null()).then(pl.lit("n")).otherwise(piece)


def _float_bits(series: pl.Series) -> pl.Series:
    """Float64 values -> the decimal text of their IEEE-754 bits (-0.0 as 0.0, one NaN)."""
    import numpy as np
    import polars as pl

    values = series.fill_null(0.0).to_numpy().astype(np.float64)
    values = np.where(values == 0.0, 0.0, values)
    values = np.where(np.isnan(values), np.float64("nan"), values)
    return pl.Series(series.name, values.view(np.int64)).cast(pl.String)


def key_hashes(frame: pl.DataFrame, keys: list[str]) -> pl.Series:
    """A stable 64-bit hash of the ``keys`` columns of each row (``UInt64`` series).

    XXH64 (seed 0) of a canonical UTF-8 encoding of the key values (see :func:`_key_text`):
    a published algorithm over bytes we define, so the value of a key never changes across
    polars, pyarrow or Python versions (unlike ``DataFrame.hash_rows``). Two different keys
    with the same cursor value are confused with probability ``2**-64`` per pair: for a
    million new rows against a million delivered ones, about 5e-8.

    Example:
        >>> import polars as pl
        >>> key_hashes(pl.DataFrame({"id": [42]}), ["id"]).to_list()
        [5514751074008143329]
    """
    import numpy as np
    import polars as pl
    import pyarrow as pa

    if frame.height == 0:
        return pl.Series(KEY_HASH, [], dtype=pl.UInt64)
    text = frame.select(pl.concat_str([_key_text(frame, k) for k in keys]).alias("k"))["k"]
    array = text.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(pa.large_binary())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[
        array.offset : array.offset + len(array) + 1
    ]
    data = (
        np.frombuffer(data_buffer, dtype=np.uint8)
        if data_buffer is not None
        else np.zeros(0, dtype=np.uint8)
    )
    return pl.Series(KEY_HASH, _xxh64(data, offsets), dtype=pl.UInt64)


class DeliveredKeys:
    """The keys of the rows an incremental source delivered inside its lookback window.

    A source that re-reads a window before its last cursor value (to catch rows committed
    late) drops the rows it delivered already: same primary key, same cursor value. Those keys
    live beside the JSON state file in a Parquet sidecar, ``<state file>.keys.<id>.parquet``,
    one row per delivered row: :data:`KEY_HASH` (:func:`key_hashes` of the key columns) and
    the cursor value (under the cursor's column name). The JSON file keeps only the cursor and
    names the sidecar, so it stays small however wide the window is.

    A save writes a new sidecar (temp file, then ``os.replace``), then the JSON file that names
    it (the commit point), then removes the older sidecars: a crash at any point leaves a JSON
    file and the sidecar it names. State files of the old format, with the keys in
    ``boundary_rows``, are read and converted on the next save.

    Example:
        >>> import polars as pl
        >>> store = StateStore(getfixture("tmp_path") / "orders.json")
        >>> delivered = DeliveredKeys(store, ["id"], "ts")
        >>> batch = pl.DataFrame({"id": [1, 2], "ts": [10, 11]})
        >>> delivered.drop_delivered(batch)[1]
        0
        >>> delivered.remember(batch, pl.col("ts") >= 10)
        >>> delivered.save({"last_value": 11})
        >>> DeliveredKeys(store, ["id"], "ts").drop_delivered(batch)[1]
        2
    """

    def __init__(
        self,
        store: StateStore,
        keys: list[str],
        cursor: str,
        saved: Mapping[str, Any] | None = None,
        *,
        restore: Any = None,
        component: str | None = None,
    ) -> None:
        import polars as pl

        self.store = store
        self.keys = list(keys)
        self.cursor = cursor
        self.columns = list(dict.fromkeys([*self.keys, cursor]))
        """The key columns and the cursor column, each once."""
        self.component = component
        saved = store.load() if saved is None else saved
        self._legacy: list[Any] | None = saved.get("boundary_rows") or None
        self._restore = restore or (lambda value: value)
        self._frame: pl.DataFrame | None = None
        entry = saved.get("delivered_keys")
        if isinstance(entry, Mapping) and entry.get("file"):
            path = store.path.with_name(str(entry["file"]))
            if entry.get("format", KEY_HASH_FORMAT) != KEY_HASH_FORMAT or not path.exists():
                raise IngestionError(
                    f"state file {str(store.path)!r} names the delivered keys in {str(path)!r}, "
                    "which is missing or of another format",
                    component=component,
                    hint="restore the file, or delete the state file to read from scratch",
                )
            if list(entry.get("key_columns") or self.keys) != self.keys:
                raise IngestionError(
                    f"state file {str(store.path)!r} holds the delivered rows by primary_key "
                    f"{entry['key_columns']}, not {self.keys}",
                    component=component,
                    hint="restore the previous primary_key, or delete the state file "
                    "to read from scratch",
                )
            self._frame = pl.read_parquet(path)

    @property
    def sidecar_prefix(self) -> str:
        """File name prefix of the sidecars of this state file."""
        return f"{self.store.path.name}.keys."

    def __len__(self) -> int:
        if self._frame is not None:
            return self._frame.height
        return len(self._legacy or [])

    def _stored(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The delivered keys, the cursor cast to ``frame``'s type (old-format rows hashed)."""
        import polars as pl

        dtype = frame.schema[self.cursor]
        if self._frame is None and self._legacy:
            rows = [[self._restore(v) for v in row] for row in self._legacy]
            slots = [f"_dp_{i}" for i in range(len(self.keys) + 1)]
            raw = pl.DataFrame(rows, schema=slots, orient="row", strict=False)
            named = {**{k: raw[:, i] for i, k in enumerate(self.keys)}, self.cursor: raw[:, -1]}
            old = pl.DataFrame(
                [v.alias(n).cast(frame.schema[n], strict=False) for n, v in named.items()]
            )
            self._frame = pl.DataFrame([key_hashes(old, self.keys), old[self.cursor]])
            self._legacy = None
        if self._frame is None:
            return pl.DataFrame(
                [pl.Series(KEY_HASH, [], dtype=pl.UInt64), pl.Series(self.cursor, [], dtype=dtype)]
            )
        if self._frame.schema[self.cursor] != dtype:
            self._frame = self._frame.with_columns(pl.col(self.cursor).cast(dtype, strict=False))
        return self._frame

    def drop_delivered(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
        """``frame`` without the rows delivered before, and how many were dropped.

        Only rows whose cursor value is one of the delivered ones are hashed.
        """
        import numpy as np
        import polars as pl

        if frame.height == 0 or not len(self):
            return frame, 0

        stored = self._stored(frame)
        index = "_dp_row"
        candidates = frame.select(self.columns).with_row_index(index)
        candidates = candidates.join(
            stored.select(self.cursor).unique(), on=self.cursor, how="semi"
        )
        if candidates.height == 0:
            return frame, 0
        probe = pl.DataFrame(
            [candidates[index], key_hashes(candidates, self.keys), candidates[self.cursor]]
        )
        hits = probe.join(stored, on=[KEY_HASH, self.cursor], how="semi")[index]
        if hits.len() == 0:
            return frame, 0
        keep = np.ones(frame.height, dtype=bool)
        keep[hits.to_numpy()] = False
        return frame.filter(pl.Series(keep)), hits.len()

    def remember(self, frame: pl.DataFrame, since: pl.Expr) -> None:
        """Forget the keys outside the window (``since`` is false), add those of ``frame`` in it.

        ``since`` is a boolean expression on the cursor column, such as
        ``pl.col("updated_at") >= boundary``.
        """
        import polars as pl

        recent = frame.select(self.columns).filter(since)
        stored = self._stored(frame).filter(since)
        fresh = pl.DataFrame([key_hashes(recent, self.keys), recent[self.cursor]])
        self._frame = pl.concat([stored, fresh], how="vertical_relaxed") if fresh.height else stored

    def save(self, state: Mapping[str, Any]) -> None:
        """Write the sidecar, then ``state`` plus the sidecar's name to the JSON file."""
        import glob
        import uuid

        entry: dict[str, Any] | None = None
        written: Path | None = None
        if self._frame is not None and self._frame.height:
            name = f"{self.sidecar_prefix}{uuid.uuid4().hex[:12]}.parquet"
            written = self.store.path.with_name(name)
            written.parent.mkdir(parents=True, exist_ok=True)
            tmp = written.with_name(f".{name}.tmp")
            self._frame.write_parquet(tmp, statistics=False)
            os.replace(tmp, written)
            entry = {
                "file": name,
                "rows": self._frame.height,
                "format": KEY_HASH_FORMAT,
                "key_columns": [*self.keys],
            }
        elif self._legacy:  # nothing read yet: keep the old rows as they are
            self.store.save({**state, "boundary_rows": self._legacy})
            return
        self.store.save({**state, **({"delivered_keys": entry} if entry else {})})
        for old in self.store.path.parent.glob(f"{glob.escape(self.sidecar_prefix)}*.parquet"):
            if written is None or old.name != written.name:
                old.unlink(missing_ok=True)


class MemoryState:
    """The same ``load()`` / ``save()`` as :class:`StateStore`, held in memory: a source's state
    once a checkpoint restored it (the checkpoint, not a file, keeps it)."""

    def __init__(self, state: Mapping[str, Any] | None = None) -> None:
        self.state: dict[str, Any] = dict(state or {})

    def load(self) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(self.state, default=str))
        return copy

    def save(self, state: Mapping[str, Any]) -> None:
        self.state = json.loads(json.dumps(dict(state), default=str))


# -- cursor values ---------------------------------------------------------------------------


def dump_value(value: Any) -> Any:
    """A cursor value for JSON: datetimes, dates and decimals tagged, the rest as it is."""
    if isinstance(value, datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, list):
        return [dump_value(v) for v in value]
    return value


def load_value(value: Any) -> Any:
    """What :func:`dump_value` wrote, with its type back."""
    if isinstance(value, dict):
        if "datetime" in value:
            return datetime.fromisoformat(value["datetime"])
        if "date" in value:
            return date.fromisoformat(value["date"])
        if "decimal" in value:
            return Decimal(value["decimal"])
    return value


def _as_time(value: Any) -> datetime | None:
    """A datetime, or ISO text that is one (UTC when it names no zone); else None."""
    when: datetime | None = None
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when


def later(a: Any, b: Any) -> bool:
    """``a > b``: instants compared as instants (ISO text too), other values natively."""
    ta, tb = _as_time(a), _as_time(b)
    if ta is not None and tb is not None:
        return ta > tb
    try:
        return bool(a > b)
    except TypeError:
        return str(a) > str(b)


def minus(value: Any, lookback: float) -> Any:
    """``value - lookback``: seconds for timestamps (ISO text keeps its form), whole days of it
    for dates, units for numbers."""
    if not lookback or value is None or isinstance(value, bool):
        return value
    if isinstance(value, datetime):
        return value - timedelta(seconds=lookback)
    if isinstance(value, date):
        return value - timedelta(days=int(lookback // 86_400))
    if isinstance(value, Decimal):
        return value - Decimal(str(lookback))
    if isinstance(value, int):
        return value - int(lookback) if float(lookback).is_integer() else value - lookback
    if isinstance(value, float):
        return value - lookback
    if isinstance(value, str) and (when := _as_time(value)) is not None:
        earlier = when - timedelta(seconds=lookback)
        if "T" not in value and " " in value:
            text = earlier.isoformat(sep=" ")
        else:
            text = earlier.isoformat()
        if value.endswith("Z") and text.endswith("+00:00"):
            return text[:-6] + "Z"
        if not any(mark in value[10:] for mark in ("+", "-", "Z")) and text.endswith("+00:00"):
            return text[:-6]  # the input named no zone: neither does the result
        return text
    return value


def at_or_after(column: str, boundary: Any, frame: pl.DataFrame) -> pl.Expr:
    """``column >= boundary`` on ``frame``; ISO timestamps given as text compare as instants."""
    import polars as pl

    dtype = frame.schema[column]
    col = pl.col(column)
    when = _as_time(boundary)
    if dtype == pl.String and when is not None:
        parsed = col.str.to_datetime(time_zone="UTC", strict=False)
        text = pl.lit(str(boundary), dtype=pl.String)
        return pl.when(parsed.is_not_null()).then(parsed >= when).otherwise(col >= text)
    try:
        frame.head(1).select(col >= pl.lit(boundary).cast(dtype))
    except Exception:  # a boundary of another type: only the last value's rows
        return col == pl.lit(frame[column].max(), dtype=dtype)
    return col >= pl.lit(boundary).cast(dtype)


# -- the cursor --------------------------------------------------------------------------------


class IncrementalCursor:
    """The incremental state of one batch source (see the module docstring).

    Args:
        name: the source's name (the default state file is
            ``.data_pipeline/state/<name>.json``).
        cursor: the column (or record field) that grows.
        keys: the primary key columns; with them the rows delivered inside the lookback window
            are remembered and dropped when read again.
        lookback: read this much before the last value again (seconds, days, units).
        initial_value: where the first run starts (None: everything).
        state_path: the JSON state file instead of the default.
        component: the source's label, for messages.

    Read on its own the state is saved at each :meth:`apply` (the file is where the next run
    starts). Restored by a Checkpointer (:meth:`restore`) it is saved by the checkpoint, with the
    data the run stored, and the file is not used.

    Example:
        >>> import polars as pl
        >>> cursor = IncrementalCursor("orders", cursor="id", keys=[],
        ...                            state_path=str(getfixture("tmp_path") / "s.json"))
        >>> cursor.start()
        (None, False)
        >>> cursor.apply(pl.DataFrame({"id": [1, 2]}))["id"].to_list()
        [1, 2]
        >>> cursor.start()
        (2, False)
    """

    def __init__(
        self,
        name: str,
        *,
        cursor: str,
        keys: list[str] | None = None,
        lookback: float = 0,
        initial_value: Any = None,
        state_path: str | None = None,
        component: str | None = None,
    ) -> None:
        self.cursor = cursor
        self.keys = list(keys or [])
        self.lookback = lookback
        self.initial_value = initial_value
        self.component = component
        self.store = StateStore.for_source(name, state_path)
        self.managed = False
        self.dropped = 0
        self._load(self.store.load())

    def _load(self, saved: Mapping[str, Any]) -> None:
        last = saved.get("last_value")
        self.last = load_value(last) if last is not None else None
        self.delivered = (
            DeliveredKeys(
                self.store,
                self.keys,
                self.cursor,
                saved,
                restore=load_value,
                component=self.component,
            )
            if self.keys
            else None
        )

    # -- where the next read starts -----------------------------------------------------------

    def start(self) -> tuple[Any, bool]:
        """The value a query's cursor condition starts from, and whether it is inclusive:
        above the last value; with a primary key at or above it minus ``lookback`` (the rows
        read again are dropped by :meth:`apply`)."""
        if self.last is None:
            initial = self.initial_value
            return (load_value(initial) if initial is not None else None), False
        if not self.keys:
            return self.last, False
        return minus(self.last, self.lookback), True

    def since(self) -> Any:
        """The value to send an API (its parameter decides how it compares): the last value
        minus ``lookback``, or the initial value (None: nothing to send)."""
        if self.last is None:
            return self.initial_value
        return minus(self.last, self.lookback)

    # -- what a read brought -------------------------------------------------------------------

    def apply(self, table: Any) -> Any:
        """Drop the rows delivered before, advance the last value and the keys window; save the
        state (read on its own). Returns the new rows (a polars frame, or ``table`` unchanged
        when it is empty)."""
        import polars as pl

        frame = table if isinstance(table, pl.DataFrame) else pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        missing = [c for c in [*self.keys, self.cursor] if c not in frame.columns]
        if missing and frame.height:
            raise IngestionError(
                f"incremental column(s) {', '.join(map(repr, missing))} not in the result",
                component=self.component,
                hint=f"the result has columns: {', '.join(map(repr, frame.columns))}",
            )
        if frame.height == 0:
            return table
        if self.delivered is not None and len(self.delivered):
            frame, dropped = self.delivered.drop_delivered(frame)
            self.dropped += dropped
            if frame.height == 0:
                return frame
        value = frame[self.cursor].max()
        if value is not None and (self.last is None or later(value, self.last)):
            self.last = value
        if self.delivered is not None and self.last is not None:
            boundary = minus(self.last, self.lookback)
            self.delivered.remember(frame, at_or_after(self.cursor, boundary, frame))
        if not self.managed:
            self.save()
        return frame

    def advance(self, value: Any, recent: pl.DataFrame | None = None) -> None:
        """The last value after a read whose rows this process does not see (Spark's executors
        read them): the cursor moves to ``value`` (never back) and the state is saved (read on
        its own). With ``keys``, ``recent`` holds the key and cursor columns of the read's rows
        inside the new lookback window (at or above the new last value minus ``lookback``):
        they are remembered as delivered."""
        if value is not None and (self.last is None or later(value, self.last)):
            self.last = value
        if self.delivered is not None and self.last is not None:
            if recent is None:
                raise IngestionError(
                    "an incremental read with primary_key needs the keys of the rows it read",
                    component=self.component,
                    hint="pass the key and cursor columns of the rows in the lookback window",
                )
            if recent.height:
                boundary = minus(self.last, self.lookback)
                self.delivered.remember(recent, at_or_after(self.cursor, boundary, recent))
        if not self.managed:
            self.save()

    def track(self, batches: Iterator[Any]) -> Iterator[Any]:
        """:meth:`apply` to each batch as it is read (saved after each, read on its own)."""
        for batch in batches:
            out = self.apply(batch)
            if len(out):
                yield out

    def save(self) -> None:
        """Write the state file (the sidecar of delivered keys first)."""
        state = {"last_value": dump_value(self.last)}
        if self.delivered is not None:
            self.delivered.save(state)
        else:
            self.store.save(state)

    # -- the checkpoint protocol (core/checkpoint.py) ------------------------------------------

    def restore(self, state: Mapping[str, Any] | None) -> None:
        """Continue after a committed state (None: from ``initial_value``); from now on the
        checkpoint keeps the state, not the file."""
        self.managed = True
        saved = dict(state or {})
        keys = saved.pop("delivered_rows", None)
        self._load({k: v for k, v in saved.items() if k != "delivered_keys"})
        if keys and self.delivered is not None:
            import polars as pl

            self.delivered._frame = pl.read_ipc(base64.b64decode(keys))

    def checkpoint_state(self) -> dict[str, Any]:
        """The state after the rows read so far, JSON-able (the delivered keys as an Arrow IPC
        file in base64)."""
        state: dict[str, Any] = {"last_value": dump_value(self.last)}
        frame = self.delivered._frame if self.delivered is not None else None
        if frame is not None and frame.height:
            import io

            buffer = io.BytesIO()
            frame.write_ipc(buffer)
            state["delivered_rows"] = base64.b64encode(buffer.getvalue()).decode()
        return state

    def acknowledge(self) -> None:
        """Nothing to tell anyone: the checkpoint holds the state."""
