"""A plain-Python, one-event-at-a-time model of the stream semantics (the tests' oracle).

It shares no code with StreamProcessor: it walks the events in arrival order, keeps the
watermark per partition in a dict, decides each event's fate (rejected, future, late, accepted)
from the rules written in the docs, and aggregates the accepted events per window with Python
arithmetic.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import polars as pl

EPOCH = dt.datetime(1970, 1, 1)


@dataclass
class Rules:
    """The window and watermark settings of one run."""

    kind: str  # "tumbling" | "sliding" | "session"
    window: dt.timedelta = dt.timedelta(0)
    slide: dt.timedelta | None = None
    gap: dt.timedelta | None = None
    lateness: dt.timedelta = dt.timedelta(0)
    partitioned: bool = False
    future: dt.timedelta | None = None  # max_out_of_orderness
    now: dt.datetime | None = None  # the processing-time clock (naive UTC)

    @property
    def pane(self) -> dt.timedelta:
        return self.slide or self.window


def floor(ts: dt.datetime, step: dt.timedelta) -> dt.datetime:
    return EPOCH + ((ts - EPOCH) // step) * step


def fates(events: list[dict[str, Any]], rules: Rules) -> list[str]:
    """Per event, in arrival order: ``rejected``, ``future``, ``late`` or ``accepted``."""
    maxima: dict[Any, dt.datetime] = {}
    watermark: dt.datetime | None = None
    out = []
    for event in events:
        ts = event["ts"]
        if ts is None:
            out.append("rejected")
            continue
        if rules.future is not None and rules.now is not None and ts > rules.now + rules.future:
            out.append("future")
            continue
        late = False
        if watermark is not None:
            if rules.kind == "session":
                late = ts + rules.lateness < watermark
            else:
                late = floor(ts, rules.pane) + rules.pane + rules.lateness <= watermark
        out.append("late" if late else "accepted")
        part = event["part"] if rules.partitioned else None
        maxima[part] = max(maxima.get(part, ts), ts)
        lowest = min(maxima.values())
        watermark = lowest if watermark is None else max(watermark, lowest)
    return out


def windows(events: list[dict[str, Any]], rules: Rules) -> pl.DataFrame:
    """The final windows over the accepted events: key, window_start, window_end, v_sum,
    v_max, count, sorted."""
    accepted = [
        e for e, fate in zip(events, fates(events, rules), strict=True) if fate == "accepted"
    ]
    members: dict[tuple[Any, dt.datetime, dt.datetime], list[int]] = defaultdict(list)
    if rules.kind == "session":
        assert rules.gap is not None
        by_key: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        for e in accepted:
            by_key[e["key"]].append(e)
        for key, rows in by_key.items():
            rows.sort(key=lambda e: e["ts"])
            session: list[dict[str, Any]] = []
            for e in rows:
                if session and e["ts"] - session[-1]["ts"] > rules.gap:
                    members[(key, session[0]["ts"], session[-1]["ts"] + rules.gap)] = [
                        s["v"] for s in session
                    ]
                    session = []
                session.append(e)
            if session:
                members[(key, session[0]["ts"], session[-1]["ts"] + rules.gap)] = [
                    s["v"] for s in session
                ]
    else:
        copies = int(rules.window / rules.pane)
        for e in accepted:
            pane = floor(e["ts"], rules.pane)
            for k in range(copies):
                start = pane - k * rules.pane
                members[(e["key"], start, start + rules.window)].append(e["v"])
    rows = [
        (key, start, end, sum(vs), max(vs), len(vs)) for (key, start, end), vs in members.items()
    ]
    frame = pl.DataFrame(
        rows,
        schema={
            "key": pl.String,
            "window_start": pl.Datetime("us"),
            "window_end": pl.Datetime("us"),
            "v_sum": pl.Int64,
            "v_max": pl.Int64,
            "count": pl.Int64,
        },
        orient="row",
    )
    return frame.sort("window_start", "key")
