"""One checkpoint per stream job, committed in one atomic unit with what its batch wrote.

A :class:`Checkpoint` holds where every source stands (``sources``: per source, what its reader
needs to resume: positions per partition / stream, the ids of the last committed batch), the
state of every stream operator (``states``: opaque bytes; an Arrow IPC stream for a
StreamProcessor), the incremental state of batch sources (``cursors``) and the number of the
last committed batch. It is written by the storage system that received the batch's output, in
the same commit, the way Flink's two-phase-commit sinks and dlt's state table do it:

* DuckDB (and, through the SQL layer, PostgreSQL, MariaDB, SQLite): a row of the state table
  ``_dp_checkpoints`` beside the data, written in the transaction that stored the batch
  (:class:`StateTable`).
* Files (FileSystemStorage) and Delta tables: the batch's writes are staged, then one atomic
  rename of a manifest holding the checkpoint and the staged operations commits them; the
  operations are applied after the rename, and again on the next start if the process died
  first (:class:`Manifest`).
* No storage: a checkpoint file, written by an atomic rename (:class:`FileCheckpointStore`).

:class:`Checkpointer` drives it. ``restore()`` hands every source its saved position and every
operator its state; ``with checkpointer.commit():`` opens the storage's transaction, the
``store()`` calls inside join it, the checkpoint is written last, and only after the commit are
the sources told to acknowledge the batch to their brokers. A message at or before a committed
position is dropped by the source: exactly-once results over at-least-once delivery.

Example:
    >>> import polars as pl
    >>> from data_pipeline.storage import DataWarehouseStorage
    >>> warehouse = DataWarehouseStorage(name="wh", config={"database": ":memory:"})
    >>> job = Checkpointer("orders", warehouse)
    >>> job.restore() is None      # nothing committed yet
    True
    >>> with job.commit():
    ...     _ = warehouse.store(pl.DataFrame({"id": [1]}), "orders")
    >>> job.restore().batch
    1
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from data_pipeline.core.errors import CheckpointError, ConfigError
from data_pipeline.core.log import get_logger

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

__all__ = [
    "FORMAT",
    "STATE_TABLE",
    "Checkpoint",
    "CheckpointStore",
    "Checkpointed",
    "Checkpointer",
    "FileCheckpointStore",
    "Manifest",
    "StagedTransaction",
    "StateTable",
    "apply_rename",
]

logger = get_logger(__name__)

FORMAT = "data-pipeline-checkpoint-1"
"""The encoding of :meth:`Checkpoint.encode`; bump it when the encoding changes."""
STATE_TABLE = "_dp_checkpoints"
"""The table beside the data that holds one row per checkpoint name."""
_META_KEY = b"data_pipeline.checkpoint"


@dataclass
class Checkpoint:
    """What a stream job had done when a batch committed.

    ``sources``: source name -> the JSON-able state its reader resumes from;
    ``states``: operator name -> its state as bytes; ``cursors``: batch source name -> its
    incremental state (JSON-able); ``batch``: the number of the last committed batch (from 1);
    ``metrics``: counters of the run, for people reading the state table.
    """

    name: str
    batch: int = 0
    sources: dict[str, Any] = field(default_factory=dict)
    states: dict[str, bytes] = field(default_factory=dict)
    cursors: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    committed_at: str = ""

    def meta(self) -> dict[str, Any]:
        """Everything but the operator states, JSON-able."""
        return {
            "format": FORMAT,
            "name": self.name,
            "batch": self.batch,
            "sources": self.sources,
            "cursors": self.cursors,
            "metrics": self.metrics,
            "committed_at": self.committed_at,
            "state_bytes": {k: len(v) for k, v in self.states.items()},
        }

    def encode(self) -> bytes:
        """One Arrow IPC stream: a row per operator state, the rest as JSON in the schema
        metadata."""
        import pyarrow as pa

        meta = json.dumps(self.meta(), sort_keys=True, default=_json_default).encode()
        table = pa.table(
            {
                "name": pa.array(list(self.states), pa.string()),
                "state": pa.array(list(self.states.values()), pa.large_binary()),
            }
        ).replace_schema_metadata({_META_KEY: meta})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return bytes(sink.getvalue().to_pybytes())

    @classmethod
    def decode(cls, data: bytes, *, where: str = "checkpoint") -> Checkpoint:
        import pyarrow as pa

        try:
            reader = pa.ipc.open_stream(pa.py_buffer(data))
            table = reader.read_all()
            meta = json.loads((table.schema.metadata or {})[_META_KEY])
        except (pa.ArrowInvalid, KeyError, ValueError) as exc:
            raise CheckpointError(
                f"{where} is not a data-pipeline checkpoint: {exc}",
                hint="restore it from a backup, or delete it to start the job from scratch",
            ) from None
        if meta.get("format") != FORMAT:
            raise CheckpointError(
                f"{where} has format {meta.get('format')!r}, this version reads {FORMAT!r}",
                hint="run the version that wrote it, or delete it to start from scratch",
            )
        names = table.column("name").to_pylist()
        blobs = table.column("state").to_pylist()
        return cls(
            name=str(meta["name"]),
            batch=int(meta["batch"]),
            sources=dict(meta.get("sources") or {}),
            states=dict(zip(names, blobs, strict=True)),
            cursors=dict(meta.get("cursors") or {}),
            metrics=dict(meta.get("metrics") or {}),
            committed_at=str(meta.get("committed_at") or ""),
        )


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


def check_name(name: str) -> str:
    """A checkpoint name: letters, digits, ``_ . -`` (it becomes a file name and a key)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]{1,200}", name):
        raise ConfigError(
            f"checkpoint name {name!r} is not valid",
            hint="use 1-200 letters, digits, '_', '.' or '-' (e.g. the pipeline's name)",
        )
    return name


# -- where a checkpoint is kept ----------------------------------------------------------------


class CheckpointTransaction(Protocol):
    """The open transaction of a storage system (or file store) a checkpoint commits with."""

    def save_checkpoint(self, checkpoint: Checkpoint, previous: int) -> None:
        """Write ``checkpoint`` in this transaction; ``previous`` is the batch the job restored
        from (a different one stored means another run committed meanwhile)."""


@runtime_checkable
class CheckpointStore(Protocol):
    """What :class:`Checkpointer` needs from where the checkpoint lives: a storage system
    (DataWarehouseStorage, FileSystemStorage, ...) or a :class:`FileCheckpointStore`."""

    def load_checkpoint(self, name: str) -> Checkpoint | None: ...

    def transaction(self) -> AbstractContextManager[Any]: ...


@runtime_checkable
class Checkpointed(Protocol):
    """A source whose position a checkpoint keeps (StreamingSource; batch sources' cursors)."""

    def restore(self, state: Any) -> None:
        """Continue after ``state`` (None: from the configured start), forgetting anything read
        and not committed."""

    def checkpoint_state(self) -> Any:
        """The JSON-able state after everything read so far (committed with the batch)."""

    def acknowledge(self) -> None:
        """Tell the broker that everything read so far is done (after the commit)."""


def conflict_error(name: str, expected: int, found: Any, where: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {name!r} in {where} is at batch {found}, not {expected} as this run "
        "restored: another run of the same job committed meanwhile",
        hint="run one process per checkpoint name; restart this one to continue from the "
        "committed state",
    )


class StateTable:
    """The SQL of the state table (one row per checkpoint name) in one dialect.

    Columns: ``name`` (primary key), ``batch``, ``meta`` (the checkpoint without operator
    state, as JSON: readable with SQL), ``state`` (:meth:`Checkpoint.encode`), ``committed_at``.
    A save inserts the first row or updates the row of the batch the run restored from; any
    other batch found there means a second writer, and the transaction fails (fencing).
    """

    _TYPES = {
        "duckdb": ("VARCHAR", "BIGINT", "VARCHAR", "BLOB", "TIMESTAMPTZ"),
        "postgresql": ("VARCHAR(200)", "BIGINT", "TEXT", "BYTEA", "TIMESTAMPTZ"),
        "mysql": ("VARCHAR(200)", "BIGINT", "LONGTEXT", "LONGBLOB", "DATETIME(6)"),
        "sqlite": ("TEXT", "INTEGER", "TEXT", "BLOB", "TEXT"),
    }

    def __init__(self, dialect: str, qualified: str, quote: Callable[[str], str]) -> None:
        if dialect not in self._TYPES:
            raise ConfigError(f"no state table for SQL dialect {dialect!r}")
        self.dialect = dialect
        self.qualified = qualified
        self.quote = quote

    def create_sql(self) -> str:
        name, batch, meta, state, stamp = self._TYPES[self.dialect]
        q = self.quote
        return (
            f"CREATE TABLE IF NOT EXISTS {self.qualified} ({q('name')} {name} PRIMARY KEY, "
            f"{q('batch')} {batch} NOT NULL, {q('meta')} {meta} NOT NULL, "
            f"{q('state')} {state} NOT NULL, {q('committed_at')} {stamp} NOT NULL)"
        )

    def select_sql(self) -> str:
        q = self.quote
        return f"SELECT {q('state')}, {q('batch')} FROM {self.qualified} WHERE {q('name')} = :name"  # noqa: S608

    def batch_sql(self) -> str:
        q = self.quote
        return f"SELECT {q('batch')} FROM {self.qualified} WHERE {q('name')} = :name"  # noqa: S608

    def insert_sql(self) -> str:
        q = self.quote
        cols = ", ".join(q(c) for c in ("name", "batch", "meta", "state", "committed_at"))
        return (
            f"INSERT INTO {self.qualified} ({cols}) "  # noqa: S608
            "VALUES (:name, :batch, :meta, :state, :committed_at)"
        )

    def update_sql(self) -> str:
        q = self.quote
        return (
            f"UPDATE {self.qualified} SET {q('batch')} = :batch, {q('meta')} = :meta, "  # noqa: S608
            f"{q('state')} = :state, {q('committed_at')} = :committed_at "
            f"WHERE {q('name')} = :name AND {q('batch')} = :previous"
        )

    def params(self, checkpoint: Checkpoint, previous: int) -> dict[str, Any]:
        stamp: Any = dt.datetime.now(dt.timezone.utc)
        checkpoint.committed_at = stamp.isoformat()
        if self.dialect == "sqlite":
            stamp = checkpoint.committed_at
        elif self.dialect == "mysql":
            stamp = stamp.replace(tzinfo=None)
        return {
            "name": checkpoint.name,
            "batch": checkpoint.batch,
            "meta": json.dumps(checkpoint.meta(), sort_keys=True, default=_json_default),
            "state": checkpoint.encode(),
            "committed_at": stamp,
            "previous": previous,
        }


# -- files: one atomic rename ------------------------------------------------------------------


def _fsync_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsynced, renamed over it, and the
    folder fsynced: after return the file is whole on disk, before it the old one is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so a rename inside it survives a power loss (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Manifest:
    """The commit point of file-based storage: ``<folder>/<name>.manifest.json``.

    A commit writes the checkpoint to a new file ``<name>.<batch>.ckpt``, then renames the
    manifest naming it and listing the batch's staged operations (each a JSON object a storage
    system knows how to apply, idempotently) over the old one: that rename is the commit. The
    operations are applied after it and the manifest rewritten without them; a process that
    died in between finds them in the manifest on its next start and applies them again
    (:meth:`recover`). Older checkpoint files are removed after the commit.
    """

    def __init__(self, folder: str | os.PathLike[str], name: str) -> None:
        self.folder = Path(folder)
        self.name = check_name(name)
        self.path = self.folder / f"{self.name}.manifest.json"

    def read(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CheckpointError(
                f"manifest {str(self.path)!r} is not valid JSON: {exc.msg}",
                hint="restore it from a backup, or delete it to start from scratch",
            ) from None
        return value if isinstance(value, dict) else None

    def load(self) -> Checkpoint | None:
        manifest = self.read()
        if manifest is None or not manifest.get("checkpoint"):
            return None
        path = self.folder / str(manifest["checkpoint"])
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CheckpointError(
                f"manifest {str(self.path)!r} names {str(path)!r}, which is missing",
                hint="restore the file, or delete the manifest to start from scratch",
            ) from None
        return Checkpoint.decode(data, where=str(path))

    def commit(
        self,
        checkpoint: Checkpoint,
        previous: int,
        operations: Sequence[Mapping[str, Any]] = (),
        apply: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> None:
        manifest = self.read()
        found = int(manifest.get("batch", 0)) if manifest else 0
        if found != previous:
            raise conflict_error(self.name, previous, found, str(self.path))
        checkpoint.committed_at = dt.datetime.now(dt.timezone.utc).isoformat()
        file = f"{self.name}.{checkpoint.batch}.{uuid.uuid4().hex[:8]}.ckpt"
        _fsync_write(self.folder / file, checkpoint.encode())
        body = {
            "format": FORMAT,
            "name": self.name,
            "batch": checkpoint.batch,
            "checkpoint": file,
            "committed_at": checkpoint.committed_at,
            "operations": list(operations),
        }
        _fsync_write(self.path, json.dumps(body, indent=1, default=_json_default).encode())
        # committed: from here on the operations are applied, now or by recover()
        if operations:
            self._apply(body, apply)
        for old in self.folder.glob(f"{self.name}.*.ckpt"):
            if old.name != file:
                old.unlink(missing_ok=True)

    def discard(self) -> None:
        """Remove the manifest and its checkpoint files (a transaction's own, once applied)."""
        for old in self.folder.glob(f"{self.name}.*.ckpt"):
            old.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)

    def recover(self, apply: Callable[[Mapping[str, Any]], None]) -> int:
        """Apply the operations a committed manifest still lists; return how many."""
        manifest = self.read()
        if not manifest or not manifest.get("operations"):
            return 0
        count = len(manifest["operations"])
        logger.warning(
            "checkpoint %r: batch %s was committed but %d of its writes were not applied "
            "(the process stopped); applying them now",
            self.name,
            manifest.get("batch"),
            count,
        )
        self._apply(manifest, apply)
        return count

    def _apply(
        self, body: dict[str, Any], apply: Callable[[Mapping[str, Any]], None] | None
    ) -> None:
        if apply is None:
            raise CheckpointError(f"manifest {str(self.path)!r} lists operations to apply")
        for operation in body["operations"]:
            apply(operation)
        done = {**body, "operations": []}
        _fsync_write(self.path, json.dumps(done, indent=1, default=_json_default).encode())


class StagedTransaction:
    """The transaction of a storage system without one of its own (files, Delta tables).

    Its stores stage their writes (a file written under a temporary name, a data file for a
    Delta commit) and register an *operation* (a JSON object) here. The commit writes one
    manifest holding the operations and the checkpoint, renamed into place (the commit point),
    then applies the operations with ``apply`` (each one idempotent: applied twice, it lands
    once). A process that dies between the rename and the end of the applying finds the
    operations in the manifest on its next start (:meth:`recover`), before anything else is
    written. Without a checkpoint the manifest has a name of its own and is deleted after.
    """

    def __init__(
        self, folder: str | os.PathLike[str], apply: Callable[[Mapping[str, Any]], None]
    ) -> None:
        self.folder = Path(folder)
        self.apply = apply
        self.operations: list[dict[str, Any]] = []
        self.checkpoint: tuple[Checkpoint, int] | None = None
        self.targets: set[str] = set()

    def stage(self, operation: Mapping[str, Any], target: str) -> None:
        """Register one operation; ``target`` (a path or table) may be written once per
        transaction."""
        if target in self.targets:
            raise ConfigError(
                f"{target!r} is written twice in one transaction",
                hint="write each table or file once per transaction (combine the frames first)",
            )
        self.targets.add(target)
        self.operations.append(dict(operation))

    def save_checkpoint(self, checkpoint: Checkpoint, previous: int) -> None:
        self.checkpoint = (checkpoint, previous)

    def commit(self) -> None:
        """Write the manifest (the commit point), then apply the operations. Each operation
        gets ``txn`` (an application id and version: the checkpoint's name and batch) for
        targets that can record which commits they applied (Delta)."""
        if self.checkpoint is not None:
            checkpoint, previous = self.checkpoint
            self._number(checkpoint.name, checkpoint.batch)
            Manifest(self.folder, checkpoint.name).commit(
                checkpoint, previous, self.operations, self.apply
            )
            return
        if not self.operations:
            return
        name = f"tx-{uuid.uuid4().hex[:16]}"
        self._number(name, 1)
        manifest = Manifest(self.folder, name)
        manifest.commit(Checkpoint(name, batch=1), 0, self.operations, self.apply)
        manifest.discard()

    def _number(self, name: str, batch: int) -> None:
        for operation in self.operations:
            operation.setdefault("txn", {"app_id": f"data-pipeline:{name}", "version": batch})

    @staticmethod
    def recover(folder: str | os.PathLike[str], apply: Callable[[Mapping[str, Any]], None]) -> int:
        """Apply what every committed manifest in ``folder`` still lists; return how many."""
        root = Path(folder)
        done = 0
        for path in sorted(root.glob("*.manifest.json")) if root.is_dir() else []:
            name = path.name[: -len(".manifest.json")]
            manifest = Manifest(root, name)
            done += manifest.recover(apply)
            if name.startswith("tx-"):
                manifest.discard()
        return done


def apply_rename(operation: Mapping[str, Any]) -> None:
    """The operation ``{"kind": "rename", "from": tmp, "to": path}``: the staged file (or link)
    replaces the target, once (a missing ``from`` was renamed already)."""
    source, target = str(operation["from"]), str(operation["to"])
    try:
        os.replace(source, target)
    except FileNotFoundError:
        if not os.path.lexists(source):
            return  # applied before
        raise
    fsync_dir(os.path.dirname(target) or ".")


class FileCheckpointStore:
    """A checkpoint kept in a local folder, for jobs whose output is not stored (or stored where
    no transaction can hold it): the checkpoint is written by one atomic rename.

    Example:
        >>> store = FileCheckpointStore(getfixture("tmp_path"))
        >>> store.load_checkpoint("job") is None
        True
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def load_checkpoint(self, name: str) -> Checkpoint | None:
        return Manifest(self.folder, name).load()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_FileTransaction]:
        tx = _FileTransaction(self.folder)
        yield tx
        tx.finish()


class _FileTransaction:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pending: tuple[Checkpoint, int] | None = None

    def save_checkpoint(self, checkpoint: Checkpoint, previous: int) -> None:
        self.pending = (checkpoint, previous)

    def finish(self) -> None:
        if self.pending is not None:
            checkpoint, previous = self.pending
            Manifest(self.folder, checkpoint.name).commit(checkpoint, previous)


# -- the driver --------------------------------------------------------------------------------


class Checkpointer:
    """Restore a stream job, and commit each batch's output with its checkpoint, then ack.

    Args:
        name: the job's checkpoint name (one row of the state table, one manifest).
        store: where the checkpoint lives: the storage system the batch's output is stored in
            (its writes and the checkpoint commit together), or a folder (a
            :class:`FileCheckpointStore`) when nothing is stored.
        sources: name -> a source that keeps positions (``restore``/``checkpoint_state``/
            ``acknowledge``), e.g. a :class:`~data_pipeline.ingestion.StreamingSource`.
        operators: name -> a stream operator with ``state_snapshot()`` / ``restore_state()``
            (a :class:`~data_pipeline.processing.StreamProcessor`).

    Example:
        >>> from data_pipeline.ingestion import StreamingSource  # doctest: +SKIP
        >>> job = Checkpointer("per_minute", warehouse, sources={"events": source},
        ...                    operators={"per_minute": stream})   # doctest: +SKIP
        >>> job.restore()                                            # doctest: +SKIP
        >>> for batch in source.batches(until_empty=False):          # doctest: +SKIP
        ...     windows = stream.process_batch(batch)
        ...     with job.commit():             # store + checkpoint in one transaction, then ack
        ...         warehouse.store(windows, "per_minute", if_exists="upsert",
        ...                         primary_key=["sensor", "window_start"])
    """

    def __init__(
        self,
        name: str,
        store: CheckpointStore | str | os.PathLike[str],
        *,
        sources: Mapping[str, Any] | None = None,
        operators: Mapping[str, Any] | None = None,
        cursors: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = check_name(name)
        if isinstance(store, str | os.PathLike):
            store = FileCheckpointStore(store)
        if not isinstance(store, CheckpointStore):
            raise ConfigError(
                f"checkpoint {name!r}: {type(store).__name__} cannot keep a checkpoint",
                hint="pass a storage system or a folder",
            )
        self.store: CheckpointStore = store
        self.sources: dict[str, Any] = dict(sources or {})
        self.operators: dict[str, Any] = dict(operators or {})
        self.cursors: dict[str, Any] = dict(cursors or {})
        self.batch = 0
        self.restored: Checkpoint | None = None
        self.last: Checkpoint | None = None
        """The checkpoint of the last commit (or the one restored)."""
        self.metrics: dict[str, Any] = {}
        self._broken = False
        self._lock = threading.Lock()

    def restore(self) -> Checkpoint | None:
        """Load the committed checkpoint; hand the operators their state and the sources their
        positions (from the start when there is none). Returns it (None on a first run)."""
        recover = getattr(self.store, "recover_checkpoint", None)
        if recover is not None:
            recover(self.name)
        checkpoint = self.store.load_checkpoint(self.name)
        self.restored = self.last = checkpoint
        self.batch = checkpoint.batch if checkpoint else 0
        for name, operator in self.operators.items():
            blob = checkpoint.states.get(name) if checkpoint else None
            restore_operator(operator, blob)
        for name, source in self.sources.items():
            source.restore(checkpoint.sources.get(name) if checkpoint else None)
        for name, source in self.cursors.items():
            source.restore(checkpoint.cursors.get(name) if checkpoint else None)
        self.metrics = dict(checkpoint.metrics) if checkpoint else {}
        self._broken = False
        if checkpoint is not None:
            logger.info(
                "checkpoint %r: restored batch %d (committed %s)",
                self.name,
                checkpoint.batch,
                checkpoint.committed_at,
            )
        return checkpoint

    def snapshot(self) -> Checkpoint:
        """The checkpoint of everything read and processed so far (the next batch number)."""
        return Checkpoint(
            name=self.name,
            batch=self.batch + 1,
            sources={n: s.checkpoint_state() for n, s in self.sources.items()},
            states={n: snapshot_operator(o) for n, o in self.operators.items()},
            cursors={n: s.checkpoint_state() for n, s in self.cursors.items()},
            metrics=dict(self.metrics),
        )

    @contextlib.contextmanager
    def commit(self) -> Iterator[Any]:
        """Open the store's transaction; on a clean exit write the checkpoint in it, commit,
        then acknowledge every source. On an error nothing is committed or acknowledged, and
        the job must be restored (:meth:`restore`) before the next commit."""
        if self._broken:
            raise CheckpointError(
                f"checkpoint {self.name!r}: a previous commit failed",
                hint="call restore() to continue from the committed state",
            )
        with self._lock:
            self._broken = True  # until the commit went through
            with self.store.transaction() as tx:
                yield tx
                checkpoint = self.snapshot()
                tx.save_checkpoint(checkpoint, self.batch)
            self.batch = checkpoint.batch
            self.last = checkpoint
            self._broken = False
            for source in self.sources.values():
                source.acknowledge()
            for source in self.cursors.values():
                source.acknowledge()


# -- operator state ----------------------------------------------------------------------------


def snapshot_operator(operator: Any) -> bytes:
    """The state of a stream operator as bytes: its ``state_snapshot()`` (bytes, or an Arrow
    table, kept as an Arrow IPC stream)."""
    snap = getattr(operator, "state_snapshot", None)
    if snap is None:
        raise ConfigError(
            f"{type(operator).__name__} has no state_snapshot(): a checkpoint cannot keep its state",
            hint="checkpoint StreamProcessor operators (or give yours state_snapshot() and "
            "restore_state())",
        )
    value = snap()
    if isinstance(value, bytes):
        return b"B" + value
    return b"T" + _table_bytes(value)


def restore_operator(operator: Any, blob: bytes | None) -> None:
    """Give an operator the state :func:`snapshot_operator` made (None: a fresh start)."""
    if blob is None:
        operator.restore_state(None)
        return
    operator.restore_state(_bytes_table(blob[1:]) if blob[:1] == b"T" else blob[1:])


def _table_bytes(table: Any) -> bytes:
    import pyarrow as pa

    if not isinstance(table, pa.Table):
        from data_pipeline.core.frames import to_polars

        table = to_polars(table).to_arrow()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _bytes_table(blob: bytes) -> Any:
    import pyarrow as pa

    return pa.ipc.open_stream(pa.py_buffer(blob)).read_all()
