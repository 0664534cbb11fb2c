"""Message payloads to one frame: shared by every platform that carries a payload per message.

NATS, RabbitMQ, MQTT and Kafka deliver a byte payload per message (Redis Streams delivers a field
map and does not use this module). A platform module collects the payloads and the per-message
metadata columns (``_stream``, ``_id`` and any platform extras such as ``_partition``), then calls
:func:`messages_to_frame`, which:

* ``payload: json`` — parses all payloads in one native pass (``polars.read_ndjson`` over the
  joined payloads), one column per top-level key; nested objects become ``parent__child`` columns.
  Only when that pass fails are payloads checked one by one, to find the bad ones.
* ``payload: text`` — one ``payload`` String column (UTF-8; invalid bytes make a bad row).
* ``payload: bytes`` — one ``payload`` Binary column (never bad).

Bad payloads follow ``on_bad_rows``: ``error`` raises ParseError naming the stream, the message id
and the reason; ``skip`` drops them (counted as ``rows_skipped``); ``reject`` writes them with
the reason to ``reject_path`` (CSV: stream, id, reason, raw; appended to). Counts: rows_in = rows_out +
rows_rejected.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from data_pipeline.core.errors import ParseError
from data_pipeline.ingestion._common import append_rejects, reject_file

if TYPE_CHECKING:
    import polars as pl

    from data_pipeline.ingestion.streaming.source import StreamingSource

__all__ = ["messages_to_frame"]


def messages_to_frame(
    source: StreamingSource,
    meta: dict[str, Any],
    payloads: list[bytes],
    meta_types: dict[str, Any] | None = None,
) -> pl.DataFrame:
    """One frame for a batch of messages: ``meta`` columns first, then the payload columns.

    ``meta`` maps column name -> one value per message, as a list or a polars Series
    (``_stream`` and ``_id`` at least);
    ``meta_types`` optionally gives their polars dtypes (String otherwise).
    """
    import polars as pl

    types = meta_types or {}
    head = pl.DataFrame(
        {
            name: pl.Series(name, values, dtype=types.get(name, pl.String))
            for name, values in meta.items()
        }
    )
    mode = source.settings.payload
    op = source.current_operation
    op.rows_in = len(payloads)
    if not payloads:
        return head
    if mode == "bytes":
        return head.with_columns(pl.Series("payload", payloads, dtype=pl.Binary))
    if mode == "text":
        binary = pl.Series("payload", payloads, dtype=pl.Binary)
        try:
            text = binary.cast(pl.String)
            bad: list[tuple[int, str]] = []
        except pl.exceptions.ComputeError:  # invalid UTF-8 somewhere: find it (error path only)
            decoded = [_utf8_or_none(p) for p in payloads]
            bad = [(i, "payload is not valid UTF-8") for i, v in enumerate(decoded) if v is None]
            text = pl.Series("payload", decoded, dtype=pl.String)
        return without_bad(source, head.with_columns(text), head, payloads, bad)
    schema = _schema(source)
    body = _parse_json(payloads, schema)
    if body is not None:
        return pl.concat([head, body], how="horizontal")
    bad = _find_bad_json(payloads, schema)
    dropped = {i for i, _ in bad}
    kept = [p for i, p in enumerate(payloads) if i not in dropped]
    parsed = _parse_json(kept, schema) if kept else pl.DataFrame()
    if parsed is None:  # pragma: no cover - every kept payload parsed on its own
        raise ParseError(
            f"{len(kept)} payloads parse one by one but not together",
            component=source.label,
            hint="report this with the payloads; set payload: text to read them as they are",
        )
    # the rows of ``head`` and ``parsed`` line up once the bad payloads' rows are gone
    good_head = without_bad(source, head, head, payloads, bad)
    return pl.concat([good_head, parsed], how="horizontal") if parsed.width else good_head


def _utf8_or_none(payload: bytes) -> str | None:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _schema(source: StreamingSource) -> dict[str, Any] | None:
    """``payload_schema`` as polars dtypes (None: infer from every payload of the batch)."""
    from data_pipeline.ingestion._common import parse_dtype

    declared = source.settings.payload_schema
    if not declared:
        return None
    # ``customer__age`` (the flattened column name) declares the field ``age`` of the object
    # ``customer``: nested names become polars Structs, flattened again after the read.
    tree: dict[str, Any] = {}
    for name, kind in declared.items():
        *parents, leaf = name.split("__")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = parse_dtype(kind)
    return {name: _dtype(value) for name, value in tree.items()}


def _dtype(node: Any) -> Any:
    import polars as pl

    if isinstance(node, dict):
        return pl.Struct({name: _dtype(value) for name, value in node.items()})
    return node


def _parse_json(payloads: list[bytes], schema: dict[str, Any] | None = None) -> pl.DataFrame | None:
    """All payloads as JSON objects in one native pass; None when any of them is not one.

    With ``schema`` the payloads are read as those columns and types (no inference); otherwise
    the types are inferred from every payload, so a field that first appears late in the batch
    is not dropped.
    """
    import polars as pl

    from data_pipeline.ingestion._common import flatten_structs

    # A newline is only whitespace in a JSON document (inside strings it must be escaped), so
    # pretty-printed payloads become one line each without changing their meaning. The common
    # case (one-line payloads, none empty) is checked on the joined bytes, without a Python loop.
    lines = b"\n".join(payloads)
    if not all(payloads) or lines.count(b"\n") != len(payloads) - 1 or b"\r" in lines:
        lines = b"\n".join(p.replace(b"\r", b" ").replace(b"\n", b" ") or b"null" for p in payloads)
    try:
        if schema is not None:
            frame = pl.read_ndjson(lines, schema=schema)
        else:
            frame = pl.read_ndjson(lines, infer_schema_length=None)
    except Exception:
        return None
    if frame.height != len(payloads):
        return None
    return flatten_structs(frame)


def _find_bad_json(
    payloads: list[bytes], schema: dict[str, Any] | None = None
) -> list[tuple[int, str]]:
    """(index, reason) of every payload that is not a JSON object, or does not fit ``schema``
    (the slow, error-only path)."""
    import polars as pl

    bad: list[tuple[int, str]] = []
    for i, payload in enumerate(payloads):
        try:
            value = json.loads(payload)
        except (UnicodeDecodeError, ValueError) as exc:
            bad.append((i, f"payload is not JSON: {exc}"))
            continue
        if not isinstance(value, dict):
            bad.append((i, f"payload is JSON {type(value).__name__}, not an object"))
            continue
        if schema is not None:
            try:
                pl.read_ndjson(json.dumps(value).encode(), schema=schema)
            except Exception as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                bad.append((i, f"payload does not fit payload_schema: {reason}"))
    return bad


def without_bad(
    source: StreamingSource,
    frame: pl.DataFrame,
    head: pl.DataFrame,
    payloads: list[bytes],
    bad: list[tuple[int, str]],
) -> pl.DataFrame:
    """``frame`` (one row per message) without the ``bad`` messages' rows, after following
    ``on_bad_rows`` for them: raise (error), count (skip) or write them to the reject file."""
    import polars as pl

    if not bad:
        return frame
    op = source.current_operation
    s = source.settings
    first_index, first_reason = bad[0]
    first = head.row(first_index, named=True)
    where = f"message {first.get('_id')!r} of {first.get('_stream')!r}"
    if s.on_bad_rows == "error":
        raise ParseError(
            f"{where}: {first_reason} (payload starts {payloads[first_index][:120]!r})",
            component=source.label,
            hint="fix the producer, set 'payload: text' or 'bytes' to take payloads as they "
            "are, or set on_bad_rows: skip or reject",
        )
    op.rows_rejected = len(bad)
    if s.on_bad_rows == "skip":
        op.details["rows_skipped"] = len(bad)
    else:
        rejected = pl.DataFrame(
            {
                "stream": [str(head["_stream"][i]) for i, _ in bad],
                "id": [str(head["_id"][i]) for i, _ in bad],
                "reason": [reason for _, reason in bad],
                "raw": [payloads[i].decode("utf-8", "replace") for i, _ in bad],
            }
        )
        source.last_rejects = rejected
    if s.on_bad_rows == "reject" and not source.collect_rejects:
        path = reject_file(source.name, s.reject_path)
        append_rejects(path, rejected, component=source.label)
        op.details["reject_path"] = str(path)
    source.logger.warning(
        "%s: %d bad message(s) %s (first: %s: %s)",
        source.label,
        len(bad),
        "skipped" if s.on_bad_rows == "skip" else "rejected",
        where,
        first_reason,
    )
    dropped = pl.Series([i for i, _ in bad], dtype=pl.UInt32)
    return frame.with_row_index("_row").filter(~pl.col("_row").is_in(dropped)).drop("_row")
