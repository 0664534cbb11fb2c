"""The process the kill -9 drill starts, kills and starts again (see drills.py).

    python drill_child.py follow  PIPELINE.yaml   # data-pipeline run PIPELINE.yaml --follow
    python drill_child.py python  CONFIG.json     # the same job written with the Python API

Environment:
    DP_DRILL_CRASH_AFTER_READS=k   die (os._exit) right after the k-th read that brought rows,
                                   before its batch is committed
    DP_DRILL_CRASH_BEFORE_ACK=k    die after the k-th commit, before the broker is acknowledged
    DP_DRILL_BROKEN=ack_before_commit
                                   the broken variant: every read is acknowledged at once and the
                                   position comes from the broker, not the checkpoint (what every
                                   platform did before checkpoints)
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any


def patch() -> None:
    from data_pipeline.ingestion.streaming import StreamingSource

    crash_after = int(os.environ.get("DP_DRILL_CRASH_AFTER_READS") or 0)
    broken = os.environ.get("DP_DRILL_BROKEN") == "ack_before_commit"
    read = StreamingSource._read
    reads = [0]

    def patched_read(self: StreamingSource, **options: Any) -> Any:
        frame = read(self, **options)
        if broken:
            self.reader().acknowledge()
        if len(frame):
            reads[0] += 1
            if reads[0] == crash_after:
                os._exit(9)
        return frame

    StreamingSource._read = patched_read  # type: ignore[method-assign]
    crash_before_ack = int(os.environ.get("DP_DRILL_CRASH_BEFORE_ACK") or 0)
    if crash_before_ack:
        acknowledge = StreamingSource.acknowledge
        acks = [0]

        def patched_acknowledge(self: StreamingSource) -> None:
            acks[0] += 1
            if acks[0] == crash_before_ack:
                os._exit(9)  # the batch is committed; the broker was not told
            acknowledge(self)

        StreamingSource.acknowledge = patched_acknowledge  # type: ignore[method-assign]
    if broken:
        restore = StreamingSource.restore

        def from_the_broker(self: StreamingSource, state: Any) -> None:
            restore(self, None)

        StreamingSource.restore = from_the_broker  # type: ignore[method-assign]


def follow(path: str) -> None:
    from data_pipeline.cli import app

    app(["run", path, "--follow"])


def python_api(path: str) -> None:
    """The drill's job with the Python API: read, convert, window, store + checkpoint, ack."""
    import polars as pl

    from data_pipeline.core.checkpoint import Checkpointer
    from data_pipeline.ingestion import StreamingSource
    from data_pipeline.processing import ProcessingPipeline, StreamProcessor, WindowedAggregator
    from data_pipeline.storage import DataWarehouseStorage
    from data_pipeline.transformation import DataTypeConverter, TransformationPipeline

    config = json.loads(Path(path).read_text(encoding="utf-8"))
    source = StreamingSource(name="events", config=config["source"])
    source.collect_rejects = True  # bad messages are stored with the batch, below
    clean = TransformationPipeline("clean").add(
        DataTypeConverter(name="types", config=config["convert"])
    )
    windows = StreamProcessor(
        name="windows",
        config=config["stream"],
        pipeline=ProcessingPipeline("windows").add_processor(
            WindowedAggregator(name="per_minute", config=config["windows"])
        ),
    )
    warehouse = DataWarehouseStorage(name="warehouse", config={"database": config["database"]})
    job = Checkpointer(
        "drill", warehouse, sources={"events": source}, operators={"windows": windows}
    )
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))  # finish the batch, then stop
    job.restore()
    with source:
        for batch in source.batches(until_empty=True):
            rows = clean.transform(batch)
            out = windows.process_batch(rows)
            reasons = [
                str(r)
                for frame in clean.rejects.values()
                for r in pl.from_dataframe(frame)["_reject_reason"].to_list()
            ]
            if source.last_rejects is not None:
                reasons += source.last_rejects["reason"].to_list()
            with job.commit():
                warehouse.store(rows, "events", if_exists="append")
                warehouse.store(
                    out, "windows", if_exists="upsert", primary_key=["sensor", "window_start"]
                )
                if reasons:
                    table = pl.DataFrame({"reason": reasons})
                    warehouse.store(table, "_dp_rejects", if_exists="append")
            print(f"batch {job.batch} committed", flush=True)
            if stop:
                break


if __name__ == "__main__":
    patch()
    mode, target = sys.argv[1], sys.argv[2]
    if mode == "follow":
        follow(target)
    else:
        python_api(target)
