"""Following a stream: ``data-pipeline run FILE --follow`` and :func:`follow_pipeline`.

Each micro-batch is read from every streaming source, transformed, fed to one
:class:`~data_pipeline.processing.StreamProcessor` per streaming processing pipeline, and
stored; what the batch stored and the job's checkpoint (source positions and operator state)
commit together in one transaction of the checkpoint's storage system
(:mod:`data_pipeline.core.checkpoint`), and only then are the brokers acknowledged. A restart
restores the operators and continues after the committed positions: the stored results are
exactly once, however the process stopped.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from data_pipeline.core.errors import ConfigError, UnsupportedOperationError
from data_pipeline.core.frames import row_count, to_narwhals
from data_pipeline.core.log import get_logger

if TYPE_CHECKING:
    from data_pipeline.pipeline import LoadedPipeline, StoreSpec

__all__ = ["BatchSummary", "FollowRun", "follow_pipeline", "validate_follow"]

logger = get_logger("data_pipeline.pipeline")

REJECTS_TABLE = "_dp_rejects"
"""Default table of the rows a followed pipeline rejects, beside the checkpoint."""


@dataclass
class BatchSummary:
    """One micro-batch of :func:`follow_pipeline`.

    ``rows``: rows read per streaming source; ``stored_rows``: rows written by the store
    entries; ``emitted``: rows the streaming processing pipelines emitted (changed or closed
    windows / groups); ``late``: rows that arrived for windows already closed; ``rejected``:
    rows sent to the reject output (bad messages and rows a transformation rejected);
    ``duplicates``: messages delivered again and dropped because a committed checkpoint holds
    them; ``watermark``: per streaming processing pipeline; ``lag``: per source, messages not
    read yet (per partition or stream, where the platform says); ``state_bytes``: the size of
    the operators' state in the checkpoint; ``checkpoint``: the number of the batch committed
    (None without a checkpoint); ``seconds``: the batch's latency, read to commit.
    """

    batch: int
    rows: dict[str, int]
    seconds: float
    stored_rows: int = 0
    emitted: int = 0
    late: int = 0
    rejected: int = 0
    duplicates: int = 0
    watermark: dict[str, Any] = field(default_factory=dict)
    lag: dict[str, Any] = field(default_factory=dict)
    state_bytes: int = 0
    checkpoint: int | None = None

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


@dataclass
class FollowRun:
    """What :func:`follow_pipeline` did.

    ``batches``: the non-empty micro-batches processed; ``rows``: rows read per streaming source;
    ``data``: every data set as it is at the end (a streaming source or transformation: its last
    batch; a streaming processing pipeline: its full current result); ``stopped``: ``idle``
    (every streaming source returned an empty batch), ``max_batches`` or ``interrupted``
    (Ctrl-C or SIGTERM, after the batch that was running); ``checkpoint``: where the checkpoint
    is kept (None with ``checkpoint: false``); ``restored``: the committed batch the run
    continued from (0: a first run).
    """

    batches: int
    rows: dict[str, int]
    outputs: dict[str, str]
    data: dict[str, Any]
    seconds: float
    stopped: Literal["idle", "max_batches", "interrupted"]
    checkpoint: str | None = None
    restored: int = 0


# -- the plan: what is streaming, where the checkpoint lives, how outputs are stored ----------


@dataclass
class _Output:
    """How one store entry of a streaming data set is written each batch."""

    storage: str
    entry: StoreSpec
    table: str
    if_exists: str
    key: list[str] | None = None


@dataclass
class _FollowPlan:
    streaming_sources: list[str]
    streaming: set[str]  # every data set derived from a streaming source
    stateful: dict[str, list[str]]  # processing name -> its upsert key ([]: no aggregation)
    derived: set[str]  # processing fed by another processing output: recomputed whole
    outputs: list[_Output]
    checkpoint_name: str
    store: Any  # a CheckpointStore, or None (checkpoint: false)
    store_storage: str | None  # the storage system holding the checkpoint
    where: str | None
    rejects_storage: str | None
    rejects_table: str
    rejects_path: Path | None
    stream_configs: dict[str, dict[str, Any]]


def validate_follow(pipeline: LoadedPipeline) -> None:
    """Raise when the pipeline cannot be followed (nothing runs): see :func:`follow_pipeline`."""
    _plan_follow(pipeline)


def _what(loaded: LoadedPipeline) -> str:
    return str(loaded.source_file) if loaded.source_file else f"pipeline {loaded.spec.name!r}"


def _plan_follow(loaded: LoadedPipeline) -> _FollowPlan:
    from data_pipeline.ingestion import StreamingSource
    from data_pipeline.pipeline import _dataset_references
    from data_pipeline.processing._incremental import split_steps
    from data_pipeline.processing.window import WindowedAggregator

    what = _what(loaded)
    live = [n for n, s in loaded.sources.items() if isinstance(s, StreamingSource)]
    if not live:
        raise ConfigError(
            f"{what}: --follow needs a StreamingSource among the sources, and there is none "
            f"(sources: {', '.join(loaded.sources) or 'none'})",
            component="pipeline file",
            hint="add a source of type StreamingSource, or run the file without --follow",
        )
    streaming = set(live)
    for name, (inp, _) in loaded.transformations.items():  # declared order: inputs come first
        if inp in streaming:
            streaming.add(name)
    datasets = {*loaded.sources, *loaded.transformations, *loaded.processing}
    stateful: dict[str, list[str]] = {}
    derived: set[str] = set()
    finals: set[str] = set()
    stream_configs: dict[str, dict[str, Any]] = {}
    for name, (inp, ppipe) in loaded.processing.items():
        if inp in streaming:
            streaming.add(name)
            if inp in loaded.processing:
                derived.add(name)
            else:
                _, agg, _ = split_steps(ppipe.processors)
                stateful[name] = list(agg.keys) if agg is not None else []
                config = dict(loaded.spec.processing[name].stream or {})
                stream_configs[name] = config
                if config.get("emit") == "final" and isinstance(agg, WindowedAggregator):
                    finals.add(name)
        for _, ref in _dataset_references(ppipe, datasets):
            if ref in streaming:
                raise UnsupportedOperationError(
                    f"processing.{name} joins the streaming data set {ref!r}: a followed "
                    "pipeline joins or looks up static data sets only",
                    component="pipeline file",
                    hint=f"join {ref!r} from a static source, or run without --follow",
                )

    outputs: list[_Output] = []
    for sname, (system, entries) in loaded.storage.items():
        for i, entry in enumerate(entries):
            if entry.data not in streaming:
                continue
            where = f"storage.{sname}.store[{i}]"
            table = entry.table or entry.data
            mode = entry.if_exists
            key: list[str] | None = None
            if entry.data in stateful:
                key = stateful[entry.data]
                mode = _stateful_mode(where, entry.data, mode, key, entry.data in finals)
                if mode == "upsert" and "upsert" not in system.supported_if_exists:
                    raise ConfigError(
                        f"{where}: {entry.data!r} is stored as upserts of the windows / groups "
                        f"that changed, and {type(system).__name__} cannot upsert",
                        component="pipeline file",
                        hint="store it in a DataWarehouseStorage or RelationalDBStorage, or "
                        "use emit: final with if_exists: append",
                    )
            elif entry.data in derived:
                mode = mode or "replace"
            else:
                mode = mode or system.default_if_exists()
                if mode == "replace":
                    logger.warning(
                        "%s: %r is stored once per batch; if_exists 'replace' keeps only the "
                        "last batch (use 'append')",
                        where,
                        entry.data,
                    )
            outputs.append(_Output(sname, entry, table, mode, key or None))

    store, store_storage, where_kept, name = _checkpoint_store(loaded, outputs)
    rejects_storage, rejects_table, rejects_path = _rejects_output(loaded, store_storage)
    return _FollowPlan(
        live,
        streaming,
        stateful,
        derived,
        outputs,
        name,
        store,
        store_storage,
        where_kept,
        rejects_storage,
        rejects_table,
        rejects_path,
        stream_configs,
    )


def _stateful_mode(where: str, data: str, mode: str | None, key: list[str], final: bool) -> str:
    """The if_exists of a StreamProcessor's output: upserts of what changed (by default)."""
    if not key:  # no aggregation: each batch's rows, once
        if mode not in (None, "append"):
            raise ConfigError(
                f"{where}: {data!r} has no aggregation: each batch's rows are new rows; "
                f"if_exists {mode!r} does not fit",
                component="pipeline file",
                hint="use if_exists: append (or leave it out)",
            )
        return "append"
    if mode in (None, "upsert"):
        return "upsert"
    if mode == "append" and final:
        return "append"
    raise ConfigError(
        f"{where}: {data!r} is kept by a StreamProcessor; each batch stores the windows / "
        f"groups that changed, upserted on {key}; if_exists {mode!r} does not fit"
        + (
            " (append needs emit: final, where each window is emitted once)"
            if mode == "append"
            else ""
        ),
        component="pipeline file",
        hint="use if_exists: upsert (or leave it out); after a restart the processor continues "
        "from its checkpointed state, so the stored result stays whole",
    )


def _supports_transactions(system: Any) -> bool:
    check = getattr(system, "supports_transactions", None)
    return bool(check()) if callable(check) else False


def _checkpoint_store(
    loaded: LoadedPipeline, outputs: list[_Output]
) -> tuple[Any, str | None, str | None, str]:
    """(store, storage name, description, checkpoint name) from the file's ``checkpoint:``."""
    from data_pipeline.core.checkpoint import FileCheckpointStore, check_name

    spec = loaded.spec.checkpoint
    what = _what(loaded)
    name = loaded.spec.name
    if spec is False:
        return None, None, None, name
    settings = spec if spec is not None and spec is not True else None
    if settings is not None and settings.name:
        name = settings.name
    try:
        check_name(name)
    except ConfigError:
        raise ConfigError(
            f"{what}: the checkpoint name {name!r} (the pipeline's name) is not valid",
            component="pipeline file",
            hint="set checkpoint.name to letters, digits, '_', '.' or '-'",
        ) from None
    targets = list(dict.fromkeys(o.storage for o in outputs))
    chosen: str | None = None
    if settings is not None and settings.path:
        folder = Path(settings.path)
        if not folder.is_absolute():
            folder = loaded.base_dir / folder
        return FileCheckpointStore(folder), None, str(folder), name
    if settings is not None and settings.storage:
        chosen = settings.storage
        if chosen not in loaded.storage:
            raise ConfigError(
                f"{what}: checkpoint.storage {chosen!r} is not a storage system of the file",
                component="pipeline file",
                hint=f"storage systems: {', '.join(loaded.storage) or '(none)'}",
            )
    elif len(targets) == 1:
        chosen = targets[0]
    elif len(targets) > 1:
        raise ConfigError(
            f"{what}: the streaming data sets are stored in {', '.join(targets)}: say which "
            "one keeps the checkpoint (its writes commit with it; the others are at least once)",
            component="pipeline file",
            hint=f"add checkpoint: {{storage: {targets[0]}}}",
        )
    if chosen is None:  # nothing streaming is stored: a checkpoint file beside the pipeline
        folder = loaded.base_dir / ".data_pipeline" / "checkpoints"
        return FileCheckpointStore(folder), None, str(folder), name
    system = loaded.storage[chosen][0]
    if not _supports_transactions(system):
        raise ConfigError(
            f"{what}: storage.{chosen} ({type(system).__name__}) cannot commit a batch's writes "
            "and the checkpoint together",
            component="pipeline file",
            hint="store the streaming data in a DataWarehouseStorage (DuckDB), a "
            "RelationalDBStorage or a local FileSystemStorage; or set checkpoint: {path: DIR} "
            "(at least once for the stores) or checkpoint: false",
        )
    for other in targets:
        if other != chosen:
            logger.warning(
                "%s: the checkpoint commits with storage.%s; the stores into storage.%s are at "
                "least once (a batch stored there may be stored again after a crash)",
                what,
                chosen,
                other,
            )
    return system, chosen, f"storage.{chosen}", name


def batch_checkpointer(loaded: LoadedPipeline) -> Any:
    """A plain run's Checkpointer when the file has ``checkpoint:`` (None otherwise): the
    sources' positions and incremental cursors then commit with what the run stores, in the
    transaction of the checkpoint's storage, instead of being saved when they are read."""
    from data_pipeline.core.checkpoint import Checkpointer, FileCheckpointStore, check_name
    from data_pipeline.ingestion import StreamingSource

    spec = loaded.spec.checkpoint
    if spec is None or spec is False:
        return None
    what = _what(loaded)
    settings = spec if spec is not True else None
    name = (settings.name if settings is not None else None) or loaded.spec.name
    check_name(name)
    store: Any
    if settings is not None and settings.path:
        folder = Path(settings.path)
        store = FileCheckpointStore(folder if folder.is_absolute() else loaded.base_dir / folder)
    else:
        candidates = (
            [settings.storage]
            if settings is not None and settings.storage
            else [n for n, (system, _) in loaded.storage.items() if _supports_transactions(system)]
        )
        if len(candidates) != 1 or candidates[0] not in loaded.storage:
            raise ConfigError(
                f"{what}: checkpoint: name the storage system that keeps it "
                f"(candidates: {', '.join(candidates) or 'none'})",
                component="pipeline file",
                hint="write checkpoint: {storage: NAME} (or {path: DIR})",
            )
        store = loaded.storage[candidates[0]][0]
        if not _supports_transactions(store):
            raise ConfigError(
                f"{what}: storage.{candidates[0]} cannot commit a run's writes and a checkpoint "
                "together",
                component="pipeline file",
                hint="keep it in a DataWarehouseStorage, RelationalDBStorage or local "
                "FileSystemStorage, or in a folder (checkpoint: {path: DIR})",
            )
    streaming = {n: s for n, s in loaded.sources.items() if isinstance(s, StreamingSource)}
    cursors = {n: s for n, s in loaded.sources.items() if n not in streaming}
    return Checkpointer(name, store, sources=streaming, cursors=cursors)


def _rejects_output(
    loaded: LoadedPipeline, store_storage: str | None
) -> tuple[str | None, str, Path | None]:
    spec = loaded.spec.rejects
    if spec is not None and spec.path:
        path = Path(spec.path)
        return None, REJECTS_TABLE, path if path.is_absolute() else loaded.base_dir / path
    if spec is not None and spec.storage:
        if spec.storage not in loaded.storage:
            raise ConfigError(
                f"{_what(loaded)}: rejects.storage {spec.storage!r} is not a storage system of "
                "the file",
                component="pipeline file",
                hint=f"storage systems: {', '.join(loaded.storage) or '(none)'}",
            )
        return spec.storage, spec.table or REJECTS_TABLE, None
    if store_storage is not None:
        return store_storage, (spec.table if spec and spec.table else REJECTS_TABLE), None
    folder = loaded.base_dir / ".data_pipeline" / "rejects"
    return None, REJECTS_TABLE, folder / f"{loaded.spec.name}.csv"


# -- signals ----------------------------------------------------------------------------------


class _StopOnSignals:
    """While following: SIGTERM or the first Ctrl-C stops after the current batch (committed and
    acknowledged); a second Ctrl-C raises KeyboardInterrupt at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopOnSignals:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        import signal

        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        name = "SIGTERM" if signum == signal.SIGTERM else "interrupted"
        logger.warning(
            "%s: stopping after the current batch (committed and acknowledged first)%s",
            name,
            "" if signum == signal.SIGTERM else "; Ctrl-C again stops at once",
        )

    def __exit__(self, *exc: object) -> None:
        import signal

        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)


# -- running ----------------------------------------------------------------------------------


def _store_entries(
    loaded: LoadedPipeline, data: Mapping[str, Any], names: Collection[str], outputs: dict[str, str]
) -> int:
    """Run the store entries of the data sets ``names`` (static data); return the rows stored."""
    rows = 0
    for sname, (system, entries) in loaded.storage.items():
        for entry in entries:
            if entry.data in names and entry.data in data:
                table = entry.table or entry.data
                result = system.store(data[entry.data], table, if_exists=entry.if_exists)
                rows += result.rows
                outputs[f"{sname}:{table}"] = str(result.target)
    return rows


def _reject_rows(batch: int, dataset: str, step: str, frame: Any, reason_column: str) -> Any:
    """Rejected rows in the one reject-output shape: batch, dataset, step, id, reason, row."""
    import polars as pl

    from data_pipeline.core.frames import to_polars

    rows = to_polars(frame)
    reasons = rows[reason_column].cast(pl.String) if reason_column in rows.columns else None
    body = rows.drop([c for c in (reason_column,) if c in rows.columns])
    ids = body["_id"].cast(pl.String) if "_id" in body.columns else pl.Series([None] * rows.height)
    if "raw" in body.columns and set(body.columns) <= {"stream", "id", "raw", "_stream", "_id"}:
        text = body["raw"].cast(pl.String)
        if "id" in body.columns:
            ids = body["id"].cast(pl.String)
    else:
        text = pl.Series(
            [json.dumps(r, default=str, ensure_ascii=False) for r in body.to_dicts()],
            dtype=pl.String,
        )
    return pl.DataFrame(
        {
            "batch": pl.Series([batch] * rows.height, dtype=pl.Int64),
            "dataset": pl.Series([dataset] * rows.height, dtype=pl.String),
            "step": pl.Series([step] * rows.height, dtype=pl.String),
            "id": ids.cast(pl.String).alias("id"),
            "reason": reasons if reasons is not None else pl.Series([None] * rows.height),
            "row": text,
        }
    )


def follow_pipeline(
    pipeline: LoadedPipeline | str | Path | Mapping[str, Any],
    *,
    max_batches: int | None = None,
    on_batch: Callable[[int, BatchSummary], None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> FollowRun:
    """Run a pipeline file continuously over its streaming sources, one micro-batch at a time.

    Data sets derived from a :class:`StreamingSource` (its transformations, and processing
    pipelines whose input is one of those) are *streaming*; the others are *static*. The static
    part runs once first: sources ingested, transformations and processing run, store entries
    written. Then each iteration reads one bounded batch from every streaming source, runs the
    streaming transformations on it, feeds each streaming processing pipeline one micro-batch
    (a :class:`StreamProcessor` keeps its state across batches, set by the pipeline's
    ``stream:`` keys: ``emit``, ``allowed_lateness``, ...), and stores, in one transaction of
    the checkpoint's storage: each batch's rows of streaming sources and transformations
    (``append``), the windows / groups each processor emitted (``upsert`` on their key; never
    the whole result again), the rejected rows, and the checkpoint. Only then are the brokers
    acknowledged, and the dashboards re-rendered.

    A restart (after a crash, a kill, SIGTERM or Ctrl-C) restores the processors' state and
    continues after the committed positions: what is stored is exactly once.

    It stops when every streaming source returned an empty batch (nothing arrived within its
    ``timeout``), after ``max_batches`` batches, or after the current batch on SIGTERM or
    Ctrl-C (a second Ctrl-C raises KeyboardInterrupt at once). ``on_batch(number, summary)`` is
    called after each non-empty batch.

    Raises:
        ConfigError: the file has no StreamingSource, or its stores cannot hold a checkpoint
            (before anything runs).
        UnsupportedOperationError: a join or lookup of a streaming data set.
    """
    from data_pipeline.pipeline import LoadedPipeline, load_pipeline

    loaded = (
        pipeline
        if isinstance(pipeline, LoadedPipeline)
        else load_pipeline(pipeline, environ=environ)
    )
    if max_batches is not None and max_batches < 1:
        raise ConfigError(
            f"max_batches must be at least 1 (got {max_batches})",
            component="pipeline",
            hint="omit it to follow until the stream is idle",
        )
    from data_pipeline.core.files import local_root

    plan = _plan_follow(loaded)
    with local_root(loaded.base_dir):  # default local files (MQTT log, state) beside the YAML
        run = _Run(loaded, plan)
        try:
            return run.follow(max_batches, on_batch)
        finally:
            run.close()


class _Run:
    """One :func:`follow_pipeline` run (the loop and what it keeps between batches)."""

    def __init__(self, loaded: LoadedPipeline, plan: _FollowPlan) -> None:
        from data_pipeline.core.checkpoint import Checkpointer
        from data_pipeline.processing import StreamProcessor

        self.loaded = loaded
        self.plan = plan
        self.data: dict[str, Any] = {}
        self.outputs: dict[str, str] = {}
        self.sources = {n: loaded.sources[n] for n in plan.streaming_sources}
        self.processors: dict[str, Any] = {
            name: StreamProcessor(
                name=name,
                config=plan.stream_configs.get(name) or None,
                pipeline=loaded.processing[name][1],
            )
            for name in plan.stateful
        }
        self.checkpointer = (
            Checkpointer(
                plan.checkpoint_name,
                plan.store,
                sources=self.sources,
                operators=self.processors,
            )
            if plan.store is not None
            else None
        )
        collect = plan.rejects_storage is not None or plan.rejects_path is not None
        for source in self.sources.values():
            source.collect_rejects = collect

    def close(self) -> None:
        for source in self.sources.values():
            with contextlib.suppress(Exception):
                if self.checkpointer is None:
                    source.close()  # read on its own: what was read is acknowledged
                else:
                    source.__exit__(RuntimeError, RuntimeError("stopped"), None)

    def follow(
        self, max_batches: int | None, on_batch: Callable[[int, BatchSummary], None] | None
    ) -> FollowRun:
        from data_pipeline.pipeline import _materialize, _render_dashboard, _to_engine

        loaded, plan = self.loaded, self.plan
        engine, spark = loaded.spec.engine, loaded.spec.spark
        started = time.perf_counter()
        restored = self.checkpointer.restore() if self.checkpointer is not None else None

        # the static part, once
        for name, source in loaded.sources.items():
            if name not in plan.streaming:
                self.data[name] = _to_engine(source.ingest(), engine, spark)
        for name, (inp, tpipe) in loaded.transformations.items():
            if name not in plan.streaming:
                self.data[name] = _materialize(tpipe.transform(self.data[inp]))
        _store_entries(loaded, self.data, set(self.data), self.outputs)
        from data_pipeline.pipeline import _wire_references

        for name, (inp, ppipe) in loaded.processing.items():
            if name not in plan.streaming:
                _wire_references(ppipe, self.data)
                self.data[name] = _materialize(ppipe.process(self.data[inp]))
                _store_entries(loaded, self.data, {name}, self.outputs)
        self.feeds = {
            name: {d for d in feeds.values() if d in plan.streaming}
            for name, (_, _, feeds) in loaded.dashboards.items()
        }
        for name, feeds in self.feeds.items():
            if not feeds:
                _render_dashboard(loaded, name, self.data, self.outputs)
        for name, (_, ppipe) in loaded.processing.items():
            if name in plan.streaming:
                _wire_references(ppipe, self.data)
        # charts fed by a streaming source or transformation show every row so far (kept here)
        self.history_names = {
            d for feeds in self.feeds.values() for d in feeds if d not in loaded.processing
        }
        self.history: dict[str, Any] = {}

        rows = dict.fromkeys(plan.streaming_sources, 0)
        batches = 0
        stopped: Literal["idle", "max_batches", "interrupted"] = "max_batches"
        batch: dict[str, Any] = {}
        with _StopOnSignals() as stop:
            while max_batches is None or batches < max_batches:
                from data_pipeline.pipeline import _release

                _release(batch)  # Spark: the previous batch's cached frames
                summary, batch = self._one_batch(batches + 1)
                if summary is None:
                    stopped = "idle"
                    break
                batches += 1
                for name, n in summary.rows.items():
                    rows[name] += n
                if on_batch is not None:
                    on_batch(batches, summary)
                if stop.requested:
                    stopped = "interrupted"
                    break
        for name, processor in self.processors.items():
            snapshot = processor.snapshot()
            if snapshot is not None:
                self.data[name] = snapshot
        return FollowRun(
            batches,
            rows,
            self.outputs,
            self.data,
            time.perf_counter() - started,
            stopped,
            checkpoint=plan.where,
            restored=restored.batch if restored is not None else 0,
        )

    def _one_batch(self, number: int) -> tuple[BatchSummary | None, dict[str, Any]]:
        import polars as pl

        from data_pipeline.core.frames import to_polars
        from data_pipeline.pipeline import _materialize, _to_engine

        loaded, plan = self.loaded, self.plan
        engine, spark = loaded.spec.engine, loaded.spec.spark
        batch_started = time.perf_counter()
        batch: dict[str, Any] = {}
        read: dict[str, int] = {}
        rejects: list[Any] = []
        duplicates = 0
        checkpoint = (self.checkpointer.batch + 1) if self.checkpointer is not None else number
        for name in plan.streaming_sources:
            source = loaded.sources[name]
            frame = source.ingest()
            read[name] = row_count(to_narwhals(frame)) or 0
            details = source.get_metadata()["details"]
            duplicates += int(details.get("duplicates_dropped") or 0)
            bad = getattr(source, "last_rejects", None)
            if bad is not None and len(bad):
                rejects.append(_reject_rows(checkpoint, name, "source", bad, "reason"))
            if read[name]:
                # eager: a micro-batch is small, and its transformations' rejects are counted
                batch[name] = _materialize(_to_engine(frame, engine, spark))
        if not batch and not rejects:
            return None, batch
        for name, (inp, tpipe) in loaded.transformations.items():
            if inp in batch:
                batch[name] = _materialize(tpipe.transform(batch[inp]))
                for step, frame in (getattr(tpipe, "rejects", None) or {}).items():
                    rejects.append(_reject_rows(checkpoint, name, step, frame, "_reject_reason"))
        emitted: dict[str, Any] = {}
        late = 0
        watermarks: dict[str, Any] = {}
        for name, (inp, _) in loaded.processing.items():
            if inp not in batch or name in plan.derived:
                continue
            if name in self.processors:
                processor = self.processors[name]
                out = processor.process_batch(_materialize(batch[inp]))
                done = processor.last_batch
                if done is not None:
                    late += int(done.metrics.get("late") or 0)
                    # late rows (with their reason) and rows without an event time go to the
                    # reject output, stored with the batch
                    for frame, column in (
                        (done.late, "_late_reason"),
                        (done.rejected, "_reject_reason"),
                    ):
                        if frame is not None and len(frame):
                            rejects.append(
                                _reject_rows(checkpoint, name, processor.name, frame, column)
                            )
                watermarks[name] = processor.watermark
                emitted[name] = out
                batch[name] = out
        for name, (inp, ppipe) in loaded.processing.items():  # fed by a processing output
            if name in plan.derived and inp in self.processors:
                batch[name] = _materialize(ppipe.process(self.processors[inp].snapshot()))

        stored = 0
        commit = (
            self.checkpointer.commit()
            if self.checkpointer is not None
            else contextlib.nullcontext()
        )
        with commit:
            for output in plan.outputs:
                data = batch.get(output.entry.data)
                if data is None or row_count(to_narwhals(data)) == 0:
                    continue
                system = loaded.storage[output.storage][0]
                options: dict[str, Any] = {}
                if output.key:
                    options["primary_key"] = output.key
                result = system.store(data, output.table, if_exists=output.if_exists, **options)
                stored += result.rows
                self.outputs[f"{output.storage}:{output.table}"] = str(result.target)
            rejected = sum(len(r) for r in rejects)
            if rejects:
                self._store_rejects(pl.concat(rejects, how="vertical_relaxed"))
        state_bytes = 0
        if self.checkpointer is not None and self.checkpointer.last is not None:
            state_bytes = sum(len(v) for v in self.checkpointer.last.states.values())
        self.data.update({k: v for k, v in batch.items() if k not in self.processors})
        self._dashboards(batch, to_polars)
        lag: dict[str, Any] = {}
        for name in plan.streaming_sources:
            lag_of = getattr(loaded.sources[name], "lag", None)
            if lag_of is not None:
                with contextlib.suppress(Exception):
                    lag[name] = lag_of()
        summary = BatchSummary(
            number,
            read,
            time.perf_counter() - batch_started,
            stored_rows=stored,
            emitted=sum(row_count(to_narwhals(o)) or 0 for o in emitted.values()),
            late=late,
            rejected=rejected,
            duplicates=duplicates,
            watermark=watermarks,
            lag=lag,
            state_bytes=state_bytes,
            checkpoint=self.checkpointer.batch if self.checkpointer is not None else None,
        )
        return summary, batch

    def _store_rejects(self, frame: Any) -> None:
        plan = self.plan
        logger.warning(
            "%d row(s) rejected in this batch (first: %s: %s)",
            frame.height,
            frame["dataset"][0],
            frame["reason"][0],
        )
        if plan.rejects_storage is not None:
            system = self.loaded.storage[plan.rejects_storage][0]
            result = system.store(frame, plan.rejects_table, if_exists="append")
            self.outputs[f"{plan.rejects_storage}:{plan.rejects_table}"] = str(result.target)
            return
        assert plan.rejects_path is not None
        from data_pipeline.ingestion._common import append_rejects

        path = plan.rejects_path
        path.parent.mkdir(parents=True, exist_ok=True)
        append_rejects(path, frame, component=_what(self.loaded))
        self.outputs["rejects"] = str(path)

    def _dashboards(self, batch: dict[str, Any], to_polars: Callable[[Any], Any]) -> None:
        import polars as pl

        from data_pipeline.pipeline import _render_dashboard

        loaded = self.loaded
        if not any(feeds & set(batch) for feeds in self.feeds.values()):
            return
        for name in self.history_names & set(batch):
            new = to_polars(batch[name])
            previous = self.history.get(name)
            self.history[name] = (
                new if previous is None else pl.concat([previous, new], how="diagonal_relaxed")
            )
        view = {**self.data, **self.history}
        for name, processor in self.processors.items():
            if any(name in feeds for feeds in self.feeds.values()):
                snapshot = processor.snapshot()
                if snapshot is not None:
                    view[name] = snapshot
        for name in self.plan.derived:
            if name in batch:
                view[name] = batch[name]
        for name, feeds in self.feeds.items():
            if feeds & set(batch) and feeds <= set(view):
                _render_dashboard(loaded, name, view, self.outputs)
