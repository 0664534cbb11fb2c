"""A durable local log of received messages, for platforms that acknowledge on receipt (MQTT).

A broker that must hear "got it" before it sends more (MQTT allows only a few unacknowledged
messages in flight) cannot wait for a checkpoint. The reader appends each message to this log,
fsyncs, and only then acknowledges it to the broker; the stream is then read from the log, whose
sequence numbers are the positions a checkpoint keeps. After a crash the messages logged after
the committed position are read again from the log, first.

Files in the log folder: ``log-<first sequence>.bin`` segments of records, and ``acknowledged``
(the sequence acknowledged by a reader that runs without a checkpoint). A record is::

    u32 length of the rest | u32 CRC-32 of the rest | u64 sequence | u16 packet id |
    u8 flags (bit 0-1 QoS, bit 2 dup, bit 3 retained) | u16 topic length | topic | payload

A record cut short by a crash (short or failing its CRC) ends the segment: it was never
acknowledged, so the broker delivers it again. Segments whose records are all at or before the
committed position are deleted.
"""

from __future__ import annotations

import itertools
import os
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from data_pipeline.core.checkpoint import fsync_dir

__all__ = ["Entry", "MessageLog"]

_HEAD = struct.Struct("<II")  # length, crc
_BODY = struct.Struct("<QHBH")  # sequence, packet id, flags, topic length
_SEGMENT_BYTES = 8 << 20
_RECENT = 1000


@dataclass(frozen=True)
class Entry:
    """One logged message."""

    sequence: int
    topic: str
    payload: bytes
    packet_id: int = 0
    qos: int = 0
    dup: bool = False
    retained: bool = False


class MessageLog:
    """Append-only, fsynced, segmented; see the module docstring."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)  # created at the first append
        self.next_sequence = 1
        self._handle: object | None = None
        self._segment: Path | None = None
        self._size = 0
        # (packet id, topic, payload CRC) of the last messages logged: a copy the broker
        # sends again (dup flag, same packet id) after a crash before its acknowledgement
        self._recent: OrderedDict[tuple[int, str, int], int] = OrderedDict()
        for entry in self.entries(0):
            self.next_sequence = entry.sequence + 1
            self._remember(entry)

    # -- reading ------------------------------------------------------------------------------

    def _segments(self) -> list[Path]:
        found = []
        for path in self.folder.glob("log-*.bin"):
            try:
                found.append((int(path.stem.split("-", 1)[1]), path))
            except ValueError:
                continue
        return [p for _, p in sorted(found)]

    def entries(self, after: int) -> list[Entry]:
        """Every whole record with a sequence above ``after``, in order (a torn tail is cut)."""
        out: list[Entry] = []
        for path in self._segments():
            data = path.read_bytes()
            pos = 0
            while pos + _HEAD.size <= len(data):
                length, crc = _HEAD.unpack_from(data, pos)
                body = data[pos + _HEAD.size : pos + _HEAD.size + length]
                if len(body) < length or zlib.crc32(body) != crc or length < _BODY.size:
                    break  # cut short by a crash: never acknowledged
                sequence, packet_id, flags, topic_len = _BODY.unpack_from(body)
                if sequence > after:
                    topic = body[_BODY.size : _BODY.size + topic_len].decode("utf-8", "replace")
                    out.append(
                        Entry(
                            sequence,
                            topic,
                            bytes(body[_BODY.size + topic_len :]),
                            packet_id,
                            flags & 3,
                            bool(flags & 4),
                            bool(flags & 8),
                        )
                    )
                pos += _HEAD.size + length
            if pos < len(data) and path == self._segments()[-1]:
                with open(path, "r+b") as handle:  # drop the torn tail before appending
                    handle.truncate(pos)
        return out

    def is_copy(self, packet_id: int, topic: str, payload: bytes) -> bool:
        """A message the broker sends again (dup flag) that is logged already."""
        return (packet_id, topic, zlib.crc32(payload)) in self._recent

    # -- writing ------------------------------------------------------------------------------

    def append(self, messages: list[tuple[str, bytes, int, int, bool, bool]]) -> list[Entry]:
        """Log ``(topic, payload, packet id, qos, dup, retained)`` messages and fsync: when
        this returns they survive a crash (then acknowledge them to the broker)."""
        if not messages:
            return []
        if self._handle is None or self._size > _SEGMENT_BYTES:
            self._roll()
        handle = self._handle
        assert handle is not None
        entries = []
        chunks = []
        for topic, payload, packet_id, qos, dup, retained in messages:
            entry = Entry(self.next_sequence, topic, payload, packet_id, qos, dup, retained)
            self.next_sequence += 1
            name = topic.encode("utf-8")
            flags = (qos & 3) | (4 if dup else 0) | (8 if retained else 0)
            body = _BODY.pack(entry.sequence, packet_id & 0xFFFF, flags, len(name)) + name + payload
            chunks.append(_HEAD.pack(len(body), zlib.crc32(body)) + body)
            entries.append(entry)
        data = b"".join(chunks)
        handle.write(data)  # type: ignore[attr-defined]
        handle.flush()  # type: ignore[attr-defined]
        os.fsync(handle.fileno())  # type: ignore[attr-defined]
        self._size += len(data)
        for entry in entries:
            self._remember(entry)
        return entries

    def _roll(self) -> None:
        self.close()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._segment = self.folder / f"log-{self.next_sequence:020d}.bin"
        self._handle = open(self._segment, "ab")  # noqa: SIM115 - kept open across appends
        self._size = self._segment.stat().st_size
        fsync_dir(self.folder)

    def _remember(self, entry: Entry) -> None:
        if entry.qos:
            self._recent[(entry.packet_id, entry.topic, zlib.crc32(entry.payload))] = entry.sequence
            while len(self._recent) > _RECENT:
                self._recent.popitem(last=False)

    # -- positions ----------------------------------------------------------------------------

    def acknowledged(self) -> int:
        """The sequence a reader without a checkpoint acknowledged last (0: none)."""
        try:
            return int((self.folder / "acknowledged").read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def acknowledge(self, sequence: int) -> None:
        """Everything up to ``sequence`` is done: remember it, delete whole segments before it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "acknowledged"
        tmp = self.folder / ".acknowledged.tmp"
        tmp.write_text(str(sequence))
        os.replace(tmp, path)
        segments = self._segments()
        for current, following in itertools.pairwise(segments):
            first_of_next = int(following.stem.split("-", 1)[1])
            if first_of_next - 1 <= sequence and current != self._segment:
                current.unlink(missing_ok=True)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()  # type: ignore[attr-defined]
            self._handle = None
