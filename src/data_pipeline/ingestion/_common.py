"""Helpers shared by the sources: JSON bodies to frames, dtype names, the state store."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

# the state store and the delivered keys live in core/cursor.py (one implementation for every
# incremental source and the checkpoints); re-exported here for the sources that import them
from data_pipeline.core.cursor import (
    KEY_HASH,
    DeliveredKeys,
    StateStore,
    key_hashes,
)
from data_pipeline.core.errors import ConfigError, ParseError
from data_pipeline.core.types import check_type_name, parse_type

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "KEY_HASH",
    "DeliveredKeys",
    "FrameBody",
    "MixedTypes",
    "StateStore",
    "auto_records",
    "flatten_structs",
    "json_to_frame",
    "key_hashes",
    "mixed_json_keys",
    "parse_dtype",
    "records_of",
    "select_path",
    "suspect_json_coercion",
]


def check_dtype_name(name: str) -> str:
    """Validate a type name at config time (no polars import): the one vocabulary of
    :mod:`data_pipeline.core.types`."""
    return check_type_name(name)


def parse_dtype(name: str) -> Any:
    """``"int64"``, ``"decimal(10,2)"``, ``"datetime[us, UTC]"``, ... -> the Polars dtype."""
    return parse_type(name).polars()


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


# -- values of one key in different JSON kinds ------------------------------------------------

MixedTypes = Literal["error", "json"]
"""What a source does when one key holds values of different JSON kinds (an object in one
record, a number in another; a boolean and a number): ``error`` (the default) names the
source, the record and the key; ``json`` keeps that key's values as JSON text."""

_KINDS: dict[type, str] = {
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "a string",
    dict: "an object",
    list: "an array",
}


class _Conflict:
    __slots__ = ("first", "first_kind", "key", "path", "second", "second_kind")

    def __init__(self, path: str, key: str, first: int, first_kind: str, second: int, kind: str):
        self.path, self.key = path, key
        self.first, self.first_kind = first, first_kind
        self.second, self.second_kind = second, kind


def _clash(kinds: set[str]) -> bool:
    """Whether polars cannot hold these kinds in one column as given: an object or array beside
    anything else, or booleans beside numbers (read as 1/0). Numbers or booleans beside strings
    become text (their JSON text), the same in JSON and JSON Lines."""
    if kinds & {"an object", "an array"}:
        return len(kinds) > 1
    return {"a boolean", "a number"} <= kinds and "a string" not in kinds


class KindTracker:
    """The JSON kinds seen under each path of the records so far (``a``, ``a.b``, ``a[]``)."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, str, set[str]]] = {}

    def _kinds(self, record: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
        def walk(value: Any, path: str, top: str) -> Iterator[tuple[str, str, str]]:
            if value is None:
                return
            yield path, top, _KINDS.get(type(value), "a value")
            if isinstance(value, dict):
                for k, v in value.items():
                    yield from walk(v, f"{path}.{k}", top)
            elif isinstance(value, list):
                for v in value:
                    yield from walk(v, f"{path}[]", top)

        for key, value in record.items():
            yield from walk(value, str(key), str(key))

    def clash(self, record: Mapping[str, Any], number: int) -> _Conflict | None:
        """The first clash ``record`` would make with what was seen (nothing is remembered)."""
        added: dict[str, set[str]] = {}
        for path, top, kind in self._kinds(record):
            first = self.seen.get(path, (number, kind, set()))
            kinds = added.setdefault(path, set(first[2]))
            kinds.add(kind)
            if _clash(kinds):
                return _Conflict(path, top, first[0], first[1], number, kind)
        return None

    def add(self, record: Mapping[str, Any], number: int) -> dict[str, _Conflict]:
        """Remember ``record``'s kinds; returns the clashes it made, by top-level key."""
        conflicts: dict[str, _Conflict] = {}
        for path, top, kind in self._kinds(record):
            first = self.seen.get(path)
            if first is None:
                self.seen[path] = (number, kind, {kind})
            elif kind not in first[2]:
                first[2].add(kind)
                if _clash(first[2]) and top not in conflicts:
                    conflicts[top] = _Conflict(path, top, first[0], first[1], number, kind)
        return conflicts


def mixed_json_keys(records: list[Any]) -> dict[str, _Conflict]:
    """Top-level key -> the first place where its values (or values nested under it) mix JSON
    kinds that polars would change; records are numbered from 1."""
    tracker = KindTracker()
    conflicts: dict[str, _Conflict] = {}
    for number, record in enumerate(records, start=1):
        if isinstance(record, Mapping):
            for key, conflict in tracker.add(record, number).items():
                conflicts.setdefault(key, conflict)
    return conflicts


def conflict_text(conflict: _Conflict, unit: str) -> str:
    """``key 'a' holds an object in record 2 but a number in record 1``."""
    inside = f" (at {conflict.path!r})" if conflict.path != conflict.key else ""
    return (
        f"key {conflict.key!r}{inside} holds {conflict.second_kind} in {unit} "
        f"{conflict.second} but {conflict.first_kind} in {unit} {conflict.first}"
    )


def conflict_error(
    conflict: _Conflict, *, where: str, unit: str, component: str | None
) -> ParseError:
    return ParseError(
        f"{where}: {conflict_text(conflict, unit)}; one column cannot hold both without "
        "changing values",
        component=component,
        hint="fix the source, or set mixed_types: json to keep that key's values as JSON text",
    )


def as_json_text(records: list[Any], keys: Any) -> list[Any]:
    """The records with the values of ``keys`` replaced by their JSON text (null stays null)."""
    keys = set(keys)
    out = []
    for record in records:
        if isinstance(record, Mapping) and keys.intersection(record):
            record = {
                k: (json.dumps(v, ensure_ascii=False) if k in keys and v is not None else v)
                for k, v in record.items()
            }
        out.append(record)
    return out


def suspect_json_coercion(frame: pl.DataFrame, body: bytes) -> bool:
    """Whether polars may have read booleans as numbers (the one mix ``read_json`` changes
    silently): a numeric column, and ``true``/``false`` somewhere in the body."""
    import polars as pl

    def numeric(dtype: Any) -> bool:
        if isinstance(dtype, pl.Struct):
            return any(numeric(f.dtype) for f in dtype.fields)
        if isinstance(dtype, (pl.List, pl.Array)):
            return numeric(dtype.inner)
        return bool(dtype.is_numeric())

    if not any(numeric(t) for t in frame.schema.values()):
        return False
    return b"true" in body or b"false" in body


def records_to_frame(
    records: Any,
    *,
    where: str,
    component: str | None,
    mixed_types: MixedTypes = "error",
    unit: str = "record",
) -> pl.DataFrame:
    """A decoded list of records (dicts or scalars) -> a polars DataFrame, parsed in Rust.

    A key whose values mix JSON kinds that one column cannot hold as given is an error naming
    ``where``, the record and the key, or (``mixed_types="json"``) is kept as JSON text; never
    a silent null.
    """
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
        conflicts = mixed_json_keys([{"value": r} for r in records])
        if conflicts and mixed_types == "error":
            raise conflict_error(conflicts["value"], where=where, unit=unit, component=component)
        if conflicts:
            records = [None if r is None else json.dumps(r, ensure_ascii=False) for r in records]
        return pl.DataFrame({"value": records}, strict=False)
    conflicts = mixed_json_keys(records)
    if conflicts:
        if mixed_types == "error":
            first = min(conflicts.values(), key=lambda c: c.second)
            raise conflict_error(first, where=where, unit=unit, component=component)
        records = as_json_text(records, conflicts)
    try:
        return pl.read_json(json.dumps(records).encode(), infer_schema_length=None)
    except Exception as exc:  # e.g. a number no column type holds
        raise ParseError(
            f"{where}: the records cannot be read into columns: {str(exc).splitlines()[0]}",
            component=component,
            hint="check the values of the source (e.g. numbers beyond 64 bits)",
        ) from None


def json_to_frame(
    body: bytes,
    *,
    data_selector: str | None,
    flatten: bool,
    where: str,
    component: str | None,
    mixed_types: MixedTypes = "error",
) -> pl.DataFrame:
    """A JSON body (array, or object holding the records) -> a polars DataFrame.

    The common case, an array of objects, is parsed by polars in Rust. An object is decoded
    once, the records are found by ``data_selector`` (or detected), and parsed in Rust again.
    """
    frame, _ = parse_json_records(
        body, data_selector=data_selector, where=where, component=component,
        mixed_types=mixed_types,
    )  # fmt: skip
    return flatten_structs(frame) if flatten else frame


def parse_json_records(
    body: bytes,
    *,
    data_selector: str | None,
    where: str,
    component: str | None,
    mixed_types: MixedTypes = "error",
) -> tuple[pl.DataFrame, Any]:
    """The records of a JSON body as a frame, and the body for reading other values from it.

    The body comes back as a :class:`FrameBody` over the object polars parsed, as the decoded
    Python value when the slow path ran, or ``None`` for an array read by polars. One mechanism
    for files (:func:`json_to_frame`) and REST pages (which read paging values from the body).
    """
    import polars as pl

    stripped = body.lstrip()
    if stripped.startswith(b"\xef\xbb\xbf"):
        stripped = stripped[3:].lstrip()
    frame: pl.DataFrame | None = None
    parsed: Any = None
    if not data_selector and stripped.startswith(b"[") and not stripped.startswith(b"[]"):
        try:
            frame = pl.read_json(stripped, infer_schema_length=None)
        except Exception:
            frame = None  # scalars, mixed types or bad JSON: the slow path explains
    elif stripped.startswith(b"{"):
        try:  # the whole object parsed in Rust; records (and paging values) read from it
            whole = pl.read_json(stripped, infer_schema_length=None)
            frame = records_of(whole, data_selector)
            parsed = FrameBody(whole) if frame is not None else None
        except Exception:
            frame, parsed = None, None
    if frame is not None and suspect_json_coercion(frame, stripped):
        frame = None  # booleans may have become numbers: the slow path checks each key
    if frame is None:
        parsed = decode_json(stripped, where=where, component=component)
        if data_selector:
            try:
                records = select_path(parsed, data_selector)
            except KeyError as exc:
                keys = list(parsed) if isinstance(parsed, Mapping) else []
                raise ParseError(
                    f"{where}: data_selector {data_selector!r} not found (missing {exc.args[0]!r})",
                    component=component,
                    hint=f"the top-level keys are: {', '.join(map(repr, keys)) or '(none)'}",
                ) from None
        else:
            records, _ = auto_records(parsed)
        if records is None:
            records = []
        frame = records_to_frame(records, where=where, component=component, mixed_types=mixed_types)
    return frame, parsed


def reject_file(source_name: str, reject_path: str | None) -> Path:
    """Where a source writes rejected rows: ``reject_path``, else
    ``.data_pipeline/rejects/<source name>.csv`` (the name made a safe file name; under the
    pipeline file's folder when one runs). Its folder is created."""
    from data_pipeline.core.files import local_path, safe_file_name

    path = (
        Path(reject_path)
        if reject_path
        else local_path("rejects", f"{safe_file_name(source_name)}.csv")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def append_rejects(path: Path, rejected: pl.DataFrame, *, component: str | None) -> None:
    """Append ``rejected`` to the CSV file ``path``: its header once, when the file is new or
    empty, so the rejects of every read and batch are kept. A file whose header names other
    columns (another kind of source's rejects) is refused rather than garbled."""
    header = rejected.head(0).write_csv()
    if not (path.exists() and path.stat().st_size):
        rejected.write_csv(path)
        return
    with path.open("rb") as handle:
        first = handle.readline().decode("utf-8", "replace")
    if first.rstrip("\r\n") != header.rstrip("\n"):
        raise ConfigError(
            f"reject file {str(path)!r} has the columns {first.strip()!r}, not "
            f"{header.strip()!r}: rejected rows are appended to it",
            component=component,
            hint="give this source its own reject_path, or move the old file away",
        )
    with path.open("ab") as handle:
        rejected.write_csv(handle, include_header=False)
