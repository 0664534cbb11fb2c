"""Redis Streams for :class:`StreamingSource`: XREAD / XREADGROUP into a bounded frame.

* Without a ``group``: XREAD from ``start_id`` (``0`` the beginning, ``$`` only new entries),
  continuing after the last entry read, per stream. The position is the last id read; a
  checkpoint (or ``state_path``) keeps it, so a restart continues after the last committed id.
* With a ``group``: XREADGROUP as consumer ``consumer`` of the group (created at ``start_id``,
  with the stream if missing). Entries stay pending in the group until acknowledged (XACK):
  after the checkpoint that holds the batch committed, or, read on its own, when the next batch
  is asked for (or on ``acknowledge()`` / ``close()``). On the first read after a start (or a
  restore) the consumer reads its own pending entries again (a batch read but not committed
  before the process stopped), then claims entries another consumer of the group left pending
  for ``claim_idle`` seconds (XAUTOCLAIM: a consumer that died). The ids of the last committed
  batch are in the checkpoint: if they are still pending (the process stopped between the commit
  and the XACK) they are acknowledged and dropped, not processed twice.

Fields are strings; ``decode_json`` fields holding JSON objects are unnested into
``field__key`` columns, and a value that is not a JSON object is a bad row (``on_bad_rows``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from data_pipeline.core.deps import import_optional
from data_pipeline.core.errors import IngestionAuthenticationError, IngestionConnectionError
from data_pipeline.ingestion._common import flatten_structs

if TYPE_CHECKING:
    import polars as pl

    from data_pipeline.ingestion.streaming.source import StreamingSource

Row = tuple[str, bytes, dict[bytes, bytes]]
"""(stream, entry id, fields) as Redis sends them."""

__all__ = ["Reader"]


def _client(source: StreamingSource) -> Any:
    redis = import_optional("redis", extra="redis", feature="Redis Streams")
    s = source.settings
    password = s.password.get_secret_value() if s.password else None
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    common = {
        "socket_connect_timeout": 5,
        "decode_responses": False,  # bytes: decoded column by column by polars
        "retry": Retry(NoBackoff(), 0),  # fail fast; the caller decides when to try again
    }
    from data_pipeline.core.redis_client import redis_client

    return redis_client(  # beside a url, the keys given replace the URL's
        redis,
        url=s.url,
        host=s.host,
        port=source.port,
        db=s.db if not s.url or "db" in s.model_fields_set else None,
        username=s.username,
        password=password,
        **common,
    )


class Reader:
    """One Redis client for the source's lifetime; see the module docstring."""

    def __init__(self, source: StreamingSource) -> None:
        self.source = source
        s = source.settings
        self.streams = [s.stream] if isinstance(s.stream, str) else list(s.stream)
        self.client = _client(source)
        self.group = s.group
        self.last_read: dict[str, str] = {}
        """Without a group: the id of the last entry read, per stream."""
        self.read_ids: dict[str, list[str]] = {}
        """With a group: ids read and not acknowledged yet, per stream (the batch)."""
        self.committed: set[tuple[str, str]] = set()
        """With a group: (stream, id) of the last committed batch, dropped if delivered again."""
        self.recovering = True
        self.pel_cursor: dict[str, str] = {}
        self.claim_cursor: dict[str, str] = {}
        self.group_ready = False

    # -- the Reader protocol (see source.py) --------------------------------------------------

    def restore(self, state: dict[str, Any] | None) -> None:
        state = state or {}
        if self.group:
            self.committed = {
                (stream, entry_id)
                for stream, ids in (state.get("pending") or {}).items()
                for entry_id in ids
            }
            self.read_ids = {}
            self.recovering = True  # re-read what this consumer holds, claim what others left
            self.pel_cursor, self.claim_cursor = {}, {}
        else:
            self.last_read = {k: str(v) for k, v in (state.get("positions") or {}).items()}

    def checkpoint_state(self) -> dict[str, Any]:
        if self.group:
            return {
                "consumer": self.source.settings.consumer,
                "pending": {k: list(v) for k, v in self.read_ids.items() if v},
            }
        return {"positions": dict(self.last_read)}

    def acknowledge(self) -> None:
        if not self.group or not self.source.settings.ack:
            self.read_ids = {}
            return
        with self._errors():
            for stream, ids in self.read_ids.items():
                if ids:
                    self.client.xack(stream, self.group, *ids)  # a reply: Redis has it
        self.read_ids = {}

    def close(self) -> None:
        self.client.close()

    def lag(self) -> dict[str, int] | None:
        """Entries of a group not delivered yet, per stream (as Redis 7 reports it); None
        without a group."""
        if not self.group:
            return None
        lags: dict[str, int] = {}
        with self._errors():
            for stream in self.streams:
                for info in self.client.xinfo_groups(stream):
                    found = {_text(k): v for k, v in info.items()}
                    if _text(found.get("name", b"")) == self.group and found.get("lag") is not None:
                        lags[stream] = int(found["lag"])
        return lags or None

    def read(self) -> pl.DataFrame:
        """At most ``max_messages`` entries, waiting at most ``timeout`` seconds for more."""
        s = self.source.settings
        rows: list[Row] = []
        before = dict(self.last_read)
        try:
            with self._errors():
                if self.group:
                    self._ensure_group()
                    if self.recovering:
                        rows += self._recover(s.max_messages)
                    while len(rows) < s.max_messages:
                        got = self._read_new(s.max_messages - len(rows))
                        if not got:  # nothing arrived within the timeout: the batch is done
                            break
                        rows += got
                else:
                    while len(rows) < s.max_messages:
                        got = self._xread(s.max_messages - len(rows))
                        if not got:
                            break
                        rows += got
            self.source.current_operation.details["messages"] = len(rows)
            frame = self._frame(rows)
        except BaseException:
            # nothing of this batch counts as read: without a group the position goes back;
            # with one, its entries stay pending for this consumer and are read again
            self.last_read = before
            if self.group and rows:
                self.recovering = True
                self.pel_cursor, self.claim_cursor = {}, {}
            raise
        if self.group:
            for stream, entry_id, _ in rows:
                self.read_ids.setdefault(stream, []).append(entry_id.decode())
        return frame

    # -- reading ------------------------------------------------------------------------------

    def _block(self) -> int | None:
        return int(self.source.settings.timeout * 1000) or None  # BLOCK 0 is "forever"

    def _ensure_group(self) -> None:
        import redis

        if self.group_ready:
            return
        for stream in self.streams:
            try:
                self.client.xgroup_create(
                    stream, self.group, id=self.source.settings.start_id, mkstream=True
                )
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self.group_ready = True

    def _xread(self, count: int) -> list[Row]:
        s = self.source.settings
        ids = {st: self.last_read.get(st, s.start_id) for st in self.streams}
        reply = self.client.xread(ids, count=count, block=self._block())
        rows: list[Row] = []
        for key, entries in reply or []:
            stream = _text(key)
            rows += [(stream, entry_id, fields) for entry_id, fields in entries]
            if entries:
                self.last_read[stream] = _text(entries[-1][0])
        return rows

    def _read_new(self, count: int) -> list[Row]:
        s = self.source.settings
        reply = self.client.xreadgroup(
            s.group, s.consumer, dict.fromkeys(self.streams, ">"), count=count, block=self._block()
        )
        return [(_text(key), i, f) for key, entries in reply or [] for i, f in entries]

    def _recover(self, limit: int) -> list[Row]:
        """This consumer's pending entries, then those other consumers left pending for
        ``claim_idle`` seconds (claimed); the ones of the last committed batch are acknowledged
        and dropped, entries deleted from the stream meanwhile acknowledged."""
        s = self.source.settings
        rows: list[Row] = []
        done: list[tuple[str, str]] = []  # to acknowledge: committed before, or deleted
        for stream in self.streams:
            while len(rows) < limit and self.pel_cursor.get(stream) != "done":
                cursor = self.pel_cursor.get(stream, "0")
                reply = self.client.xreadgroup(
                    s.group, s.consumer, {stream: cursor}, count=limit - len(rows)
                )
                entries = reply[0][1] if reply else []
                if not entries:
                    self.pel_cursor[stream] = "done"
                    break
                self.pel_cursor[stream] = _text(entries[-1][0])
                for entry_id, fields in entries:
                    self._sort(stream, entry_id, fields, rows, done)
            while len(rows) < limit and self.claim_cursor.get(stream) != "0-0":
                start = self.claim_cursor.get(stream, "0-0")
                reply = self.client.xautoclaim(
                    stream,
                    s.group,
                    s.consumer,
                    int(s.claim_idle * 1000),
                    start,
                    count=limit - len(rows),
                )
                self.claim_cursor[stream] = _text(reply[0])
                for entry_id, fields in reply[1]:
                    self._sort(stream, entry_id, fields, rows, done)
                done += [(stream, _text(i)) for i in (reply[2] if len(reply) > 2 else [])]
                if self.claim_cursor[stream] == "0-0":
                    break
        if all(
            self.pel_cursor.get(st) == "done" and self.claim_cursor.get(st) == "0-0"
            for st in self.streams
        ):
            self.recovering = False
        for stream in {st for st, _ in done}:
            self.client.xack(stream, s.group, *[i for st, i in done if st == stream])
        if done:
            details = self.source.current_operation.details
            details["duplicates_dropped"] = details.get("duplicates_dropped", 0) + len(done)
        return rows

    def _sort(
        self,
        stream: str,
        entry_id: bytes,
        fields: dict[bytes, bytes] | None,
        rows: list[Row],
        done: list[tuple[str, str]],
    ) -> None:
        if not fields or (stream, _text(entry_id)) in self.committed:
            done.append((stream, _text(entry_id)))  # deleted, or committed already
        else:
            rows.append((stream, entry_id, fields))

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return _translate(self.source)

    # -- the frame ----------------------------------------------------------------------------

    def _frame(self, rows: list[Row]) -> pl.DataFrame:
        import polars as pl

        from data_pipeline.ingestion.streaming._payload import without_bad

        s = self.source.settings
        op = self.source.current_operation
        op.rows_in = len(rows)
        if not rows:
            return pl.DataFrame(schema={"_stream": pl.String, "_id": pl.String})
        frame, bad, raw = _columns(rows)
        if bad:
            frame = without_bad(self.source, frame, frame.select("_stream", "_id"), raw, bad)
        if not s.decode_json:
            return frame
        for column in [c for c in s.decode_json if c in frame.columns]:
            values = frame[column].to_list()
            lines = "\n".join(v if v else "{}" for v in values)
            try:
                decoded = pl.read_ndjson(lines.encode(), infer_schema_length=None)
                if decoded.height != frame.height:
                    raise ValueError("not one object per entry")
                frame = frame.with_columns(decoded.to_struct(column))
            except Exception:
                bad = _bad_json(values, column)
                head = frame.select("_stream", "_id")
                raw = [(v or "").encode() for v in values]
                frame = without_bad(self.source, frame, head, raw, bad)
                if frame.height:
                    good = frame[column].to_list()
                    decoded = pl.read_ndjson(
                        "\n".join(v if v else "{}" for v in good).encode(),
                        infer_schema_length=None,
                    )
                    frame = frame.with_columns(decoded.to_struct(column))
        return flatten_structs(frame)


def _utf8_or_none(value: bytes | None) -> str | None:
    try:
        return None if value is None else value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _columns(rows: list[Row]) -> tuple[pl.DataFrame, list[tuple[int, str]], list[bytes]]:
    """The entries as String columns: ``_stream``, ``_id``, then every field in the order
    first seen (null where an entry lacks it); the bytes go to polars as Binary columns and are
    decoded there, not value by value. Also the entries whose fields are not UTF-8 (index,
    reason) and the raw text of each entry, for the bad-row rules."""
    import polars as pl

    streams, ids, fields = zip(*rows, strict=True)
    shapes = {tuple(f) for f in fields}
    names: dict[bytes, None] = {}
    for shape in shapes:
        names.update(dict.fromkeys(shape))
    columns: dict[bytes, Any] = {}
    if len(shapes) == 1:  # every entry has the same fields, in the same order (the usual case)
        columns.update(zip(names, zip(*(f.values() for f in fields), strict=True), strict=True))
    else:
        columns.update({name: [f.get(name) for f in fields] for name in names})
    series = [
        pl.Series("_stream", streams, dtype=pl.String),
        pl.Series("_id", ids, dtype=pl.Binary).cast(pl.String),
    ]
    bad: dict[int, str] = {}
    for name, values in columns.items():
        label = name.decode("utf-8", "replace")
        binary = pl.Series(label, values, dtype=pl.Binary)
        try:
            series.append(binary.cast(pl.String))
        except pl.exceptions.PolarsError:  # some value is not UTF-8 (the error path only)
            decoded = [_utf8_or_none(v) for v in values]
            for index, (value, text) in enumerate(zip(values, decoded, strict=True)):
                if value is not None and text is None:
                    bad.setdefault(index, f"field {label!r} is not UTF-8 text")
            series.append(pl.Series(label, decoded, dtype=pl.String))
    frame = pl.DataFrame(series)
    raw = [b"" for _ in rows]
    for index in bad:
        raw[index] = repr(
            {k.decode("utf-8", "replace"): v for k, v in fields[index].items()}
        ).encode()
    return frame, sorted(bad.items()), raw


def _bad_json(values: list[str | None], column: str) -> list[tuple[int, str]]:
    import json

    bad = []
    for i, value in enumerate(values):
        if not value:
            continue
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            bad.append((i, f"field {column!r} is not JSON: {exc}"))
            continue
        if not isinstance(parsed, dict):
            bad.append((i, f"field {column!r} is JSON {type(parsed).__name__}, not an object"))
    return bad


@contextlib.contextmanager
def _translate(source: StreamingSource) -> Iterator[None]:
    """Redis client errors as the ingestion errors that name the server."""
    import redis

    s, port = source.settings, source.port
    try:
        yield
    except redis.AuthenticationError as exc:
        raise IngestionAuthenticationError(
            f"Redis at {s.host}:{port} refused the credentials: {exc}",
            component=source.label,
            hint="check username and password",
        ) from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise IngestionConnectionError(
            f"cannot connect to Redis at {s.host}:{port}: {exc}",
            component=source.label,
            hint="check host and port, and that Redis is running",
        ) from None
