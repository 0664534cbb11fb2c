"""DataSource: the base of every source. ``ingest()`` owns metadata; ``_read()`` only reads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from data_pipeline.core.component import Component, Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import IngestionError
from data_pipeline.core.frames import convert_output, row_count, to_narwhals

if TYPE_CHECKING:
    from data_pipeline.core.cursor import IncrementalCursor, MemoryState, StateStore

__all__ = ["DataSource", "SourceConfig"]


class SourceConfig(ConfigModel):
    """Keys every source accepts."""

    output: Literal["polars", "lazy", "pandas", "arrow"] = "polars"
    """What ``ingest()`` returns: a polars DataFrame (default), a polars LazyFrame, pandas or Arrow."""


class DataSource(Component):
    """Abstract base class for all data sources.

    Subclasses set ``config_model`` (a :class:`SourceConfig` subclass) and implement ``_read()``,
    returning a polars DataFrame or LazyFrame, or a pyarrow Table (or an iterator of those, for
    sources that read in batches). ``ingest()`` converts it to the configured ``output``, times
    the call and keeps the metadata. While ``_read()`` runs, :attr:`current_operation` is the
    operation record, so a source can count rejected rows or add details.

    Raises:
        ConfigError: the config is invalid (raised when the source is built, naming the key and the
            allowed values), or ``ingest()`` got options the source does not take.
        DependencyError: the optional extra the source needs is not installed (the message gives the
            ``pip install`` command).
        InputNotFoundError: the file, table, topic, stream or queue does not exist.
        IngestionConnectionError: the server could not be reached.
        IngestionAuthenticationError: the credentials were refused.
        IngestionTimeoutError: the server did not answer in time.
        ParseError: the data could not be parsed (the file or URL and the row or record are named).
        IngestionError: any other failure; every message names the source.

    Example:
        >>> from data_pipeline.ingestion import FileSystemSource
        >>> FileSystemSource(name="sales", config={"path": "data/*.csv"}).get_metadata()["status"]
        'idle'
    """

    layer: ClassVar[str] = "ingestion"
    error_class = IngestionError
    config_model: ClassVar[type[ConfigModel]] = SourceConfig
    concurrent_safe: ClassVar[bool] = True
    """Whether ``DataIngestionManager.ingest_all`` may run this source beside others."""

    _active_op: Operation | None = None

    @property
    def current_operation(self) -> Operation:
        """The operation record of the ``ingest()`` call in progress (a scratch one otherwise)."""
        if self._active_op is None:
            self._active_op = Operation(name="read")
        return self._active_op

    def ingest(self, **options: Any) -> Any:
        """Read the source and return its data in the configured ``output`` form.

        A source configured to read in batches (``chunk_size``) returns an iterator of frames.
        """
        output = self.settings.output  # type: ignore[attr-defined]
        with self._operation("ingest") as op:
            self._active_op = op
            try:
                data = self._read(**options)
                if isinstance(data, Iterator):
                    return self._convert_batches(data, output, op)
                out = convert_output(data, output, component=self.label)
                op.rows_out = row_count(to_narwhals(out))
                return out
            finally:
                self._active_op = None

    def spark_unsupported(self) -> str | None:
        """Why ``engine: spark`` reads this source on the driver and sends it to Spark as Arrow;
        None when the executors read it (:meth:`ingest_spark`)."""
        return "this kind of source is read on the driver"

    def ingest_spark(self, session: Any) -> Any:
        """The source as a Spark DataFrame that the executors read (see
        :mod:`data_pipeline._spark`), or None when the driver's read serves better (an
        incremental read that finds nothing new). Call only when :meth:`spark_unsupported`
        gives None."""
        with self._operation("ingest") as op:
            self._active_op = op
            try:
                return self._read_spark(session)
            finally:
                self._active_op = None

    def _read_spark(self, session: Any) -> Any:
        raise NotImplementedError

    def _convert_batches(self, batches: Iterator[Any], output: str, op: Operation) -> Iterator[Any]:
        op.rows_out = 0
        op.details["batches"] = 0
        try:
            for batch in batches:
                out = convert_output(batch, output, component=self.label)
                op.rows_out += row_count(to_narwhals(out)) or 0
                op.details["batches"] += 1
                yield out
        except Exception as exc:
            self.status = "failed"
            error = self._translate_error(exc, "ingest")
            self._last_error = str(error)
            if error is None or error is exc:
                raise
            raise error from exc

    # -- incremental state and checkpoints (core/cursor.py, core/checkpoint.py) ----------------

    _restored: MemoryState | None = None
    _cursor: IncrementalCursor | None = None

    def incremental_cursor(self) -> IncrementalCursor | None:
        """The source's :class:`~data_pipeline.core.cursor.IncrementalCursor` (None: it keeps
        no cursor). A subclass with incremental reads returns one; it is kept across reads once
        a checkpoint restored it, and loaded from its state file on each read otherwise."""
        return None

    def _kept_cursor(self, **settings: Any) -> IncrementalCursor:
        """The cursor a checkpoint restored (kept across reads), or one loaded from the state
        file now; ``settings`` are :class:`~data_pipeline.core.cursor.IncrementalCursor`'s."""
        if self._cursor is not None and self._cursor.managed:
            return self._cursor
        from data_pipeline.core.cursor import IncrementalCursor

        return IncrementalCursor(self.name, component=self.label, **settings)

    def state_store(self, state_path: str | None) -> StateStore | MemoryState:
        """Where the source keeps other incremental state (a JSON document): its state file,
        or, once a checkpoint restored it, the checkpoint."""
        if self._restored is not None:
            return self._restored
        from data_pipeline.core.cursor import StateStore

        return StateStore.for_source(self.name, state_path)

    def restore(self, state: Any) -> None:
        """Continue after the incremental state a checkpoint committed (None: from the start);
        from now on the checkpoint keeps it, not the state file."""
        cursor = self.incremental_cursor()
        if cursor is not None:
            cursor.restore(state)
            self._cursor = cursor
            return
        from data_pipeline.core.cursor import MemoryState

        self._restored = MemoryState(state)

    def checkpoint_state(self) -> Any:
        """The incremental state after what was read (JSON-able), for the checkpoint."""
        if self._cursor is not None and self._cursor.managed:
            return self._cursor.checkpoint_state()
        return self._restored.load() if self._restored is not None else {}

    def acknowledge(self) -> None:
        """Nothing to acknowledge for a batch source: the checkpoint holds its state."""

    def _read(self, **options: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement _read()")
