"""Helpers shared by the sources: JSON bodies to frames, dtype names, the state store."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_pipeline.core.errors import ConfigError, ParseError

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "FrameBody",
    "StateStore",
    "auto_records",
    "flatten_structs",
    "json_to_frame",
    "parse_dtype",
    "records_of",
    "select_path",
]

_SIMPLE_DTYPES = {
    "int8": "Int8",
    "int16": "Int16",
    "int32": "Int32",
    "int64": "Int64",
    "int": "Int64",
    "integer": "Int64",
    "uint8": "UInt8",
    "uint16": "UInt16",
    "uint32": "UInt32",
    "uint64": "UInt64",
    "float32": "Float32",
    "float64": "Float64",
    "float": "Float64",
    "double": "Float64",
    "str": "String",
    "string": "String",
    "utf8": "String",
    "text": "String",
    "bool": "Boolean",
    "boolean": "Boolean",
    "date": "Date",
    "time": "Time",
    "datetime": "Datetime",
    "timestamp": "Datetime",
    "binary": "Binary",
    "categorical": "Categorical",
}
_DECIMAL = re.compile(r"^decimal\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
_DATETIME = re.compile(r"^(?:datetime|timestamp)\s*\[\s*(ns|us|ms)\s*(?:,\s*([^\]]+?)\s*)?\]$")

DTYPE_NAMES = [*sorted(_SIMPLE_DTYPES), "decimal(p,s)", "datetime[us, UTC]"]


def check_dtype_name(name: str) -> str:
    """Validate a dtype name at config time (no polars import); return it normalised."""
    text = name.strip().lower()
    if text in _SIMPLE_DTYPES or _DECIMAL.match(text) or _DATETIME.match(name.strip()):
        return name.strip()
    raise ValueError(f"unknown type {name!r}; use one of {', '.join(DTYPE_NAMES)}")


def parse_dtype(name: str) -> Any:
    """``"int64"`` -> ``pl.Int64``; also ``decimal(10,2)`` and ``datetime[us, UTC]``."""
    import polars as pl

    text = name.strip()
    lower = text.lower()
    if lower in _SIMPLE_DTYPES:
        return getattr(pl, _SIMPLE_DTYPES[lower])
    if m := _DECIMAL.match(lower):
        return pl.Decimal(int(m.group(1)), int(m.group(2)))
    if m := _DATETIME.match(text):
        return pl.Datetime(m.group(1), m.group(2))  # type: ignore[arg-type]
    raise ConfigError(f"unknown type {name!r}", hint=f"use one of {', '.join(DTYPE_NAMES)}")


def flatten_structs(frame: pl.DataFrame, separator: str = "__") -> pl.DataFrame:
    """Unnest struct columns recursively into ``parent__child`` columns; lists stay lists."""
    import polars as pl

    while True:
        structs = [n for n, t in frame.schema.items() if isinstance(t, pl.Struct)]
        if not structs:
            return frame
        empty = [n for n in structs if not frame.schema[n].fields]  # type: ignore[attr-defined]
        if empty:
            frame = frame.drop(empty)
            structs = [n for n in structs if n not in empty]
            if not structs:
                return frame
        frame = frame.unnest(structs, separator=separator)


def select_path(value: Any, path: str | None) -> Any:
    """Follow a dotted ``data_selector`` (``data.items``; list indexes as ``items.0``)."""
    if not path:
        return value
    current = value
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            try:
                current = current[int(part)]
            except IndexError:
                raise KeyError(part) from None
        else:
            raise KeyError(part)
    return current


_LIST_KEYS = ("data", "results", "items", "records", "rows", "values", "entries", "objects")


def auto_records(value: Any) -> tuple[Any, str | None]:
    """Find the list of records in a decoded body: the body itself, or a likely key."""
    if isinstance(value, list):
        return value, None
    if isinstance(value, Mapping):
        for key in _LIST_KEYS:
            if isinstance(value.get(key), list):
                return value[key], key
        for key, item in value.items():
            if isinstance(item, list) and (not item or isinstance(item[0], Mapping)):
                return item, str(key)
        for key in _LIST_KEYS:  # {"data": {"items": [...]}}
            inner = value.get(key)
            if isinstance(inner, Mapping):
                found, sub = auto_records(inner)
                if isinstance(found, list):
                    return found, f"{key}.{sub}" if sub else key
        return [value], None  # one object is one record
    return [value], None


class FrameBody:
    """A JSON object parsed by polars into one row; values are read by dotted path."""

    __slots__ = ("frame",)

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame

    def get(self, path: str) -> Any:
        import polars as pl

        parts = path.split(".")
        if parts[0] not in self.frame.columns:
            raise KeyError(parts[0])
        expr = pl.col(parts[0])
        dtype: Any = self.frame.schema[parts[0]]
        for part in parts[1:]:
            if not isinstance(dtype, pl.Struct) or part not in {f.name for f in dtype.fields}:
                raise KeyError(part)
            dtype = next(f.dtype for f in dtype.fields if f.name == part)
            expr = expr.struct.field(part)
        return self.frame.select(expr).item()


def records_of(whole: pl.DataFrame, selector: str | None) -> pl.DataFrame | None:
    """The records inside a one-row frame of a JSON object, or None to use the slow path."""
    import polars as pl

    if whole.height != 1:
        return None
    schema = whole.schema
    if selector:
        parts = selector.split(".")
    else:
        lists = [c for c in _LIST_KEYS if isinstance(schema.get(c), pl.List)]
        lists += [
            c
            for c, t in schema.items()
            if isinstance(t, pl.List) and isinstance(t.inner, pl.Struct)
        ]
        if not lists:
            return None
        parts = [lists[0]]
    if parts[0] not in schema:
        return None
    expr = pl.col(parts[0])
    dtype: Any = schema[parts[0]]
    for part in parts[1:]:
        if not isinstance(dtype, pl.Struct) or part not in {f.name for f in dtype.fields}:
            return None
        dtype = next(f.dtype for f in dtype.fields if f.name == part)
        expr = expr.struct.field(part)
    if isinstance(dtype, pl.List):
        inner = dtype.inner
        count = whole.select(expr.list.len()).item()
        if not count:
            return pl.DataFrame()
        column = whole.select(expr.alias("_records")).explode("_records")
        if isinstance(inner, pl.Struct):
            return column.unnest("_records")
        if isinstance(inner, (pl.List, pl.Null)):
            return None
        return column.rename({"_records": "value"})
    if isinstance(dtype, pl.Struct):
        return whole.select(expr.alias("_records")).unnest("_records")
    return None


def json_position(body: bytes | str) -> str:
    """``line L, column C (char N)`` of the first JSON syntax error, or ``""`` if it parses."""
    try:
        json.loads(body)
    except json.JSONDecodeError as exc:
        return f"line {exc.lineno}, column {exc.colno} (char {exc.pos}): {exc.msg}"
    except (UnicodeDecodeError, ValueError) as exc:
        return str(exc)
    return ""


def decode_json(body: bytes | str, *, where: str, component: str | None) -> Any:
    """``json.loads`` whose error names ``where`` and the position."""
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        start = body[:80] if isinstance(body, str) else body[:80].decode("utf-8", "replace")
        raise ParseError(
            f"{where}: body is not valid JSON at line {exc.lineno}, column {exc.colno} "
            f"(char {exc.pos}): {exc.msg}; body starts with {start!r}",
            component=component,
            hint="check that the endpoint or file returns JSON (Content-Type, format)",
        ) from None
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"{where}: body is not UTF-8 text at byte {exc.start}",
            component=component,
            hint="check the encoding of the source",
        ) from None


def records_to_frame(records: Any, *, where: str, component: str | None) -> pl.DataFrame:
    """A decoded list of records (dicts or scalars) -> a polars DataFrame, parsed in Rust."""
    import polars as pl

    if not isinstance(records, list):
        records = [records]
    if not records:
        return pl.DataFrame()
    if not all(isinstance(r, Mapping) for r in records):
        if any(isinstance(r, Mapping) for r in records):
            raise ParseError(
                f"{where}: the records mix objects and plain values",
                component=component,
                hint="point data_selector at a list of objects",
            )
        return pl.DataFrame({"value": records}, strict=False)
    try:
        return pl.read_json(json.dumps(records).encode(), infer_schema_length=None)
    except Exception:  # mixed types across records: fall back to a lenient build
        return pl.from_dicts(records, infer_schema_length=None, strict=False)


def json_to_frame(
    body: bytes,
    *,
    data_selector: str | None,
    flatten: bool,
    where: str,
    component: str | None,
) -> pl.DataFrame:
    """A JSON body (array, or object holding the records) -> a polars DataFrame.

    The common case, an array of objects, is parsed by polars in Rust. An object is decoded
    once, the records are found by ``data_selector`` (or detected), and parsed in Rust again.
    """
    import polars as pl

    stripped = body.lstrip()
    if stripped.startswith(b"\xef\xbb\xbf"):
        stripped = stripped[3:].lstrip()
    frame: pl.DataFrame | None = None
    if not data_selector and stripped.startswith(b"[") and not stripped.startswith(b"[]"):
        try:
            frame = pl.read_json(stripped, infer_schema_length=None)
        except Exception:
            frame = None  # scalars, mixed types or bad JSON: the slow path explains
    elif stripped.startswith(b"{"):
        try:
            frame = records_of(pl.read_json(stripped, infer_schema_length=None), data_selector)
        except Exception:
            frame = None
    if frame is None:
        value = decode_json(stripped, where=where, component=component)
        if data_selector:
            try:
                records = select_path(value, data_selector)
            except KeyError as exc:
                keys = list(value) if isinstance(value, Mapping) else []
                raise ParseError(
                    f"{where}: data_selector {data_selector!r} not found (missing {exc.args[0]!r})",
                    component=component,
                    hint=f"the top-level keys are: {', '.join(map(repr, keys)) or '(none)'}",
                ) from None
        else:
            records, _ = auto_records(value)
        if records is None:
            records = []
        frame = records_to_frame(records, where=where, component=component)
    if flatten:
        frame = flatten_structs(frame)
    return frame


class StateStore:
    """Incremental state kept in a small JSON file, written atomically.

    One file per source by default: ``.data_pipeline/state/<source name>.json`` under the
    working directory; ``state_path`` in a source's config chooses another file.
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
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        return cls(Path(".data_pipeline") / "state" / f"{safe}.json")

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
