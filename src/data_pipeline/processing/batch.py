"""BatchProcessor: run a processing pipeline over data larger than memory, batch by batch."""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import narwhals as nw
from pydantic import Field

from data_pipeline.core.component import Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.engines import engine_of, match_engine, to_pandas
from data_pipeline.core.errors import (
    BatchProcessingError,
    InputNotFoundError,
    InputTypeError,
    UnsupportedOperationError,
)
from data_pipeline.core.frames import column_names, convert_output, to_narwhals, to_polars
from data_pipeline.processing._aggregation import PartialAggregation, check_engine_support
from data_pipeline.processing._incremental import IncrementalAggregation, split_steps
from data_pipeline.processing.base import DataProcessor
from data_pipeline.processing.pipeline import ProcessingPipeline

__all__ = ["BatchProcessor", "BatchProcessorConfig"]


class BatchProcessorConfig(ConfigModel):
    """Config of :class:`BatchProcessor` (see its docstring)."""

    batch_size: int = Field(default=100_000, gt=0)
    """Rows per batch: files are read, and a frame sliced, this many rows at a time (a
    Spark DataFrame is one batch). An iterable of frames keeps its own batches."""
    mode: Literal["batches", "polars_streaming"] = "batches"
    """For file input: ``batches`` runs the steps batch by batch (partial aggregates merged
    exactly; ``median`` and ``n_unique`` refused); ``polars_streaming`` runs the whole pipeline
    on a Polars scan collected by Polars' streaming engine (every aggregation exact; no
    per-batch progress). Frames and iterables always run in batches."""
    format: Literal["auto", "parquet", "csv"] = "auto"
    """The format of input files. ``auto``: from the extensions (``.parquet`` / ``.pq`` or
    ``.csv`` / ``.txt``; other or mixed extensions are a BatchProcessingError)."""
    table: str | None = None
    """The table the results are written to in the storage system given as ``storage=``.
    Without an aggregating step each processed batch is written as it is made; with one, the
    final result once. None (or no ``storage=``): nothing is written."""
    if_exists: Literal["append", "replace", "fail"] = "append"
    """What the first write does when ``table`` exists: ``append``, ``replace`` it, or
    ``fail``; later batches of the same run always append."""
    output: Literal["polars", "lazy", "pandas", "arrow", "native"] = "polars"
    """The type of the result: a Polars DataFrame, a Polars LazyFrame (``lazy``), pandas or
    PyArrow; ``native`` gives a frame input's own type (Polars for files and iterables)."""
    collect: bool = True
    """Without an aggregating step: ``true`` concatenates the processed batches into the
    result; ``false`` keeps none in memory and returns None (the batches are only written to
    ``table``). With an aggregating step the result is always returned."""


class BatchProcessor(DataProcessor):
    """Run a :class:`ProcessingPipeline` over data in batches of ``batch_size`` rows.

    Input (``process(data)``): a Parquet or CSV path or glob (or a list of them), read one batch
    at a time by Polars' streaming reader (only the columns the steps up to the aggregation
    read) so the files never need to fit in memory; an iterable
    of frames of any engine (e.g. ``DatabaseSource`` batches); or one frame, which is sliced.

    The pipeline's steps before its first aggregating step (:class:`DataAggregator` or
    :class:`WindowedAggregator`) run on each batch; the aggregation is computed as partial
    aggregates per batch merged exactly (sum of sums, count of counts, mean = sum / count, min of
    mins, std from count, mean and squared deviations (Chan's merge), first/last in batch
    order); then ``having``, ``sort`` and the steps after the aggregation run once on the merged
    result. ``median`` and
    ``n_unique`` cannot be merged and are refused with a hint. For files, ``mode:
    polars_streaming`` instead runs the whole pipeline on a Polars scan collected by Polars'
    streaming engine (bounded memory, every aggregation exact, median included). Without an aggregating step every
    processed batch is written to the storage system (``storage=``, an object with
    ``store(frame, table, if_exists=...)``) under ``table`` (the first write uses ``if_exists``,
    later ones append), and the batches are concatenated into the result unless
    ``collect: false``. With an aggregation the final result is written once. Progress
    (batches, rows, seconds) is kept in :attr:`progress` and in the metadata's details, and
    ``on_progress`` is called after each batch.

    The result is a Polars DataFrame (or ``output``: ``pandas``, ``arrow``, ``lazy``); for a
    frame input with ``output: native`` it has the input's type.

    Raises:
        InputTypeError: ``process`` got something that is neither a path, a list of paths, an
            iterable of frames nor a frame.
        InputNotFoundError: a file does not exist or a glob matches none.
        BatchProcessingError: the file format cannot be told from the extensions (set
            ``format``).
        UnsupportedOperationError: an aggregation that cannot be merged from batches (``median``,
            ``n_unique``; use ``mode: polars_streaming`` for files), or an input engine that
            cannot be sliced.
        ProcessingPipelineError: a step needs a column that no earlier step provides.
        ProcessingError: raised by a step (any subclass), passed on unchanged; errors of the
            storage system's ``store`` are passed on too.

    Example:
        >>> import polars as pl
        >>> from data_pipeline.processing import DataAggregator, ProcessingPipeline
        >>> pipeline = ProcessingPipeline("daily").add_processor(DataAggregator(
        ...     name="agg", config={"group_by": ["day"], "aggregations": {"amount": "mean"}}))
        >>> runner = BatchProcessor(name="batches", config={"batch_size": 2}, pipeline=pipeline)
        >>> df = pl.DataFrame({"day": [1, 1, 1, 2], "amount": [1.0, 2.0, 6.0, 5.0]})
        >>> runner.process(df).rows()
        [(1, 3.0), (2, 5.0)]
    """

    config_model = BatchProcessorConfig
    settings: BatchProcessorConfig

    def __init__(
        self,
        name: str,
        config: Any = None,
        *,
        pipeline: ProcessingPipeline | None = None,
        storage: Any = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__(name, config)
        self.pipeline = pipeline if pipeline is not None else ProcessingPipeline(f"{name}_steps")
        self.storage = storage
        self.on_progress = on_progress
        self.progress: dict[str, Any] = {}
        split_steps(self.pipeline.processors)  # nothing to check yet; steps may be added later

    def set_pipeline(self, pipeline: ProcessingPipeline) -> BatchProcessor:
        self.pipeline = pipeline
        return self

    def set_storage(self, storage: Any) -> BatchProcessor:
        self.storage = storage
        return self

    def required_columns(self, columns: Any) -> list[str]:
        steps = self.pipeline.processors
        return steps[0].required_columns(columns) if steps else []

    def output_columns(self, columns: Any) -> list[str]:
        current = list(columns)
        for step in self.pipeline.processors:
            current = step.output_columns(current)
        return current

    # -- the public entry point -----------------------------------------------------------

    def process(self, data: Any) -> Any:
        """Process files (path, glob, list), an iterable of frames, or one frame, in batches."""
        template = None
        if _is_frame(data):
            template = to_narwhals(data, component=self.label)
            batches: Iterable[Any] = self._slices(template)
            source = f"a {engine_of(template)} frame"
        elif isinstance(data, (str, os.PathLike)) or (
            isinstance(data, (list, tuple))
            and data
            and all(isinstance(p, (str, os.PathLike)) for p in data)
        ):
            paths = self._expand(data)
            if self.settings.mode == "polars_streaming":
                return self._streaming(paths)
            batches = self._read_files(paths)
            source = ", ".join(paths[:3]) + (
                f" and {len(paths) - 3} more" if len(paths) > 3 else ""
            )
        elif isinstance(data, Iterable):
            batches = iter(data)
            source = "an iterator of frames"
        else:
            raise InputTypeError(
                f"cannot read batches from a {type(data).__name__}",
                component=self.label,
                hint="pass a Parquet/CSV path or glob, a list of paths, an iterable of frames, "
                "or a frame",
            )
        with self._operation("process") as op:
            op.details["source"] = source
            if template is not None:
                self._check_order(template)
            result = self._run(batches, op)
            op.rows_out = None if result is None else int(to_polars(result).height)
        if result is None:
            return None
        if template is not None and self.settings.output == "native":
            return _to_engine(template, result)
        return convert_output(result, self.settings.output, component=self.label)

    def _apply_frame(self, frame: Any, op: Operation) -> Any:
        self._check_order(frame)
        result = self._run(self._slices(frame), op)
        return nw.from_native(_to_engine(frame, result)) if result is not None else frame

    def _streaming(self, paths: list[str]) -> Any:
        """The whole pipeline on a Polars scan, collected by Polars' streaming engine."""
        with self._operation("process") as op:
            scan = self._scan(paths)
            op.details["source"] = ", ".join(paths[:3])
            op.details["mode"] = "polars_streaming"
            start = time.perf_counter()
            lazy = self.pipeline.run_frame(nw.from_native(scan)).to_native()
            result = lazy.collect(engine="streaming")
            self.progress = {
                "batches": None,
                "rows_in": None,
                "rows_out": result.height,
                "seconds": round(time.perf_counter() - start, 3),
                "total_rows": None,
            }
            op.details["progress"] = self.progress
            op.rows_out = result.height
            if self.storage is not None and self.settings.table:
                self._store(result, False)
        return convert_output(result, self.settings.output, component=self.label)

    def _check_order(self, frame: Any) -> None:
        """A lazy input has no row order: first/last need an order_by, as in one pass."""
        _pre, agg_step, _post = split_steps(self.pipeline.processors)
        if agg_step is not None:
            PartialAggregation(agg_step.keys, agg_step.plans, self.label)  # mergeable at all?
            check_engine_support(frame, agg_step.plans, self.label)

    # -- reading ----------------------------------------------------------------------------

    def _expand(self, data: Any) -> list[str]:
        items = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        paths: list[str] = []
        for item in items:
            text = os.fspath(item)
            if any(ch in text for ch in "*?["):
                found = sorted(glob.glob(text, recursive=True))
                if not found:
                    raise InputNotFoundError(
                        f"the glob {text!r} matches no file",
                        component=self.label,
                        hint="check the directory and the pattern",
                    )
                paths.extend(found)
            elif not Path(text).exists():
                raise InputNotFoundError(
                    f"the file {text!r} does not exist",
                    component=self.label,
                    hint="check the path (relative paths start in the current directory)",
                )
            else:
                paths.append(text)
        return paths

    def _format(self, paths: list[str]) -> str:
        if self.settings.format != "auto":
            return self.settings.format
        suffixes = {Path(p).suffix.lower() for p in paths}
        if suffixes <= {".parquet", ".pq"}:
            return "parquet"
        if suffixes <= {".csv", ".txt"}:
            return "csv"
        raise BatchProcessingError(
            f"cannot tell the file format from the extension(s) {sorted(suffixes)}",
            component=self.label,
            hint='set "format": "parquet" or "csv" in the config',
        )

    def _read_files(self, paths: list[str]) -> Iterator[Any]:
        """Batches of ``batch_size`` rows, reading only the columns the pipeline needs.

        Read by Polars' streaming engine (``collect_batches``): decoding runs ahead in Polars'
        threads with bounded buffering, and batches come out in file order. CSV types are
        inferred from the first 10,000 rows with dates parsed; an empty CSV field is null.
        """
        import polars as pl

        fmt = self._format(paths)
        scan = self._scan(paths)
        names = scan.collect_schema().names()
        keep = self._input_columns(names)
        if keep is not None:
            scan = scan.select(keep)
        self.progress["total_rows"] = (
            scan.select(pl.len()).collect().item() if fmt == "parquet" else None
        )
        empty = True
        for frame in scan.collect_batches(chunk_size=self.settings.batch_size):
            if frame.height:
                empty = False
                yield frame
        if empty:  # no rows, but the files' schema: an empty input is still typed
            yield scan.head(0).collect()

    def _scan(self, paths: list[str]) -> Any:
        """A Polars scan of the files (CSV: dates parsed, types from the first 10,000 rows)."""
        import polars as pl

        if self._format(paths) == "parquet":
            return pl.scan_parquet(paths, glob=False)
        return pl.scan_csv(paths, glob=False, try_parse_dates=True, infer_schema_length=10_000)

    def _input_columns(self, names: list[str]) -> list[str] | None:
        """The input columns the pipeline reads, or None for all of them.

        Only when the pipeline aggregates (otherwise every batch is written out whole) and every
        step before the aggregation is one whose reads are known exactly: a DataFilter, a
        DataEnricher without lookups (derived columns, date parts, buckets), a DataJoiner whose
        right side is a frame. Walking back from the aggregation, a column a step makes is not
        needed from the input, the columns it reads are (for a join also the left columns whose
        names clash with right-side ones: they decide which columns get the suffix).
        """
        from data_pipeline.processing.enrich import DataEnricher
        from data_pipeline.processing.filter import DataFilter
        from data_pipeline.processing.join import DataJoiner
        from data_pipeline.processing.join import _is_frame as is_frame

        pre, agg_step, _post = split_steps(self.pipeline.processors)
        if agg_step is None:
            return None
        for step in pre:
            exact = (
                type(step) is DataFilter
                or (
                    type(step) is DataEnricher
                    and not step.settings.lookups
                    and not step.settings.rest_lookups
                )
                or (type(step) is DataJoiner and is_frame(step._right))
            )
            if not exact:
                return None
        before: list[list[str]] = []
        current = list(names)
        for step in pre:
            before.append(current)
            current = step.output_columns(current)
        needed = set(agg_step.required_columns(current))
        for step, columns in zip(reversed(pre), reversed(before), strict=True):
            made = set(step.output_columns(columns)) - set(columns)
            needed = (needed - made) | set(step.required_columns(columns))
            if isinstance(step, DataJoiner):
                needed |= set(columns) & set(column_names(step._right))
        keep = [c for c in names if c in needed]
        if len(keep) == len(names):
            return None
        return keep or names[:1]  # a count of rows still needs one column to count

    def _slices(self, frame: Any) -> Iterator[Any]:
        size = self.settings.batch_size
        if isinstance(frame, nw.DataFrame):
            self.progress["total_rows"] = frame.shape[0]
            for start in range(0, frame.shape[0], size):
                yield frame[start : start + size]
            if frame.shape[0] == 0:
                yield frame  # no rows, but the types: an empty input still has a schema
            return
        native = frame.to_native()
        engine = engine_of(frame)
        if engine == "polars-lazy":
            offset = 0
            while True:
                chunk = native.slice(offset, size).collect()
                if chunk.height == 0:
                    if offset == 0:
                        yield chunk  # an empty input still has a schema
                    return
                yield chunk
                offset += size
        if engine == "pyspark":
            # Spark spills to disk itself and cannot slice cheaply (no row order): the whole
            # DataFrame is one batch, run on Spark; only the partial aggregates are collected
            yield native
            return
        if engine == "duckdb":
            offset = 0
            while True:
                chunk = native.limit(size, offset).to_arrow_table()
                if chunk.num_rows == 0:
                    if offset == 0:
                        yield chunk  # an empty input still has a schema
                    return
                yield chunk
                offset += size
        raise UnsupportedOperationError(
            f"the engine {engine!r} cannot be sliced into batches here",
            component=self.label,
            hint="pass an eager frame, a Polars LazyFrame, a DuckDB relation, or files",
        )

    # -- running ----------------------------------------------------------------------------

    def _run(self, batches: Iterable[Any], op: Operation) -> Any:
        import polars as pl

        pre, agg_step, post = split_steps(self.pipeline.processors)
        incremental = IncrementalAggregation(agg_step, self.label) if agg_step else None
        self.progress = {
            "batches": 0,
            "rows_in": 0,
            "rows_out": 0,
            "seconds": 0.0,
            "total_rows": self.progress.get("total_rows"),
        }
        op.details["progress"] = self.progress
        start = time.perf_counter()
        outputs: list[Any] = []
        checked = False
        written = False
        for raw in batches:
            frame = to_narwhals(raw, component=self.label)
            if not checked:
                self.pipeline.check(column_names(frame))
                checked = True
            rows = frame.shape[0] if isinstance(frame, nw.DataFrame) else None
            for step in pre:
                frame = step.apply(frame)
            if incremental is not None:
                incremental.add(frame)
            else:
                if isinstance(frame, nw.LazyFrame):
                    frame = frame.collect()
                native = frame.to_native()
                if self.storage is not None and self.settings.table:
                    self._store(native, written)
                    written = True
                self.progress["rows_out"] += frame.shape[0]
                if self.settings.collect:
                    outputs.append(to_polars(native))
            self.progress["batches"] += 1
            self.progress["rows_in"] += rows or 0
            self.progress["seconds"] = round(time.perf_counter() - start, 3)
            if self.on_progress is not None:
                self.on_progress(dict(self.progress))
        op.rows_in = self.progress["rows_in"]
        if incremental is not None:
            if incremental.state is None:  # no batch at all: no schema to go by
                result = agg_step.finish(incremental.partials.empty())  # type: ignore[union-attr]
            else:
                result = incremental.result()
            for step in post:
                result = step.apply(result)
            final = to_polars(result.to_native())
            self.progress["rows_out"] = final.height
            if self.storage is not None and self.settings.table:
                self._store(final, False)
            return final
        if not self.settings.collect:
            return None
        if not outputs:
            return pl.DataFrame({c: [] for c in self.output_columns([])})
        return pl.concat(outputs, how="vertical_relaxed")

    def _store(self, frame: Any, appended_before: bool) -> None:
        mode = "append" if appended_before else self.settings.if_exists
        self.storage.store(frame, self.settings.table, if_exists=mode)


def _is_frame(data: Any) -> bool:
    if isinstance(data, (nw.DataFrame, nw.LazyFrame)):
        return True
    if isinstance(data, (str, bytes, os.PathLike, list, tuple, dict)):
        return False
    try:
        nw.from_native(data)
    except TypeError:
        return False
    return True


def _to_engine(template: Any, result: Any) -> Any:
    """A Polars result as a native frame of ``template``'s engine."""
    engine = engine_of(template)
    if engine == "pandas":  # keep the input's pandas dtypes (Arrow dates, nullable ints, ...)
        return to_pandas(result, like=template.to_native())
    return match_engine(template, to_polars(result)).to_native()
