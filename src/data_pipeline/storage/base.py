"""StorageSystem: the base of every storage backend. Public methods own metadata; hooks store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from data_pipeline.core.component import Component
from data_pipeline.core.errors import ConfigError, StorageError
from data_pipeline.core.frames import convert_output, row_count, to_narwhals

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from data_pipeline.core.checkpoint import Checkpoint

__all__ = ["IF_EXISTS", "IfExists", "StorageSystem", "StoreResult"]

IfExists = Literal["fail", "replace", "append", "upsert"]
IF_EXISTS: tuple[str, ...] = ("fail", "replace", "append", "upsert")


@dataclass
class StoreResult:
    """What one ``store`` call wrote."""

    target: str
    rows: int
    bytes: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


class StorageSystem(Component):
    """Abstract base class for all storage systems.

    Subclasses implement ``_store(data, target, if_exists, **options) -> StoreResult`` and
    ``_retrieve(target, query, params, **options)`` returning a polars or Arrow frame; the base
    owns ``store``/``retrieve``: it checks ``if_exists``, applies a :class:`Schema` when one is
    given, times the call and records rows in and out in the metadata.

    Raises:
        ConfigError: no table given and no ``default_table``, or an ``if_exists`` the backend
            does not support.
        StorageConnectionError: the server cannot be reached.
        StorageAuthenticationError: the credentials were refused.
        StorageSchemaError: the data does not fit the declared or stored schema.
        StorageError: any other storage failure; the message names the storage system.

    Example:
        >>> import polars as pl
        >>> from data_pipeline.storage import DataWarehouseStorage, StorageSystem
        >>> warehouse = DataWarehouseStorage(name="wh", config={
        ...     "database": str(getfixture("tmp_path") / "wh.duckdb")})
        >>> isinstance(warehouse, StorageSystem)
        True
        >>> warehouse.store(pl.DataFrame({"id": [1, 2]}), "orders", if_exists="replace").rows
        2
        >>> warehouse.retrieve(query="SELECT count(*) AS n FROM orders")["n"].to_list()
        [2]
    """

    layer: ClassVar[str] = "storage"
    error_class = StorageError
    supported_if_exists: ClassVar[tuple[str, ...]] = IF_EXISTS
    accepts_primary_key: ClassVar[bool] = False

    def default_target(self) -> str | None:
        """The table, key or path used when ``store`` is called without one (``default_table``)."""
        value = getattr(self.settings, "default_table", None)
        return str(value) if value is not None else None

    def default_if_exists(self) -> str:
        """The config's ``default_if_exists`` (``append`` when the config has none)."""
        return str(getattr(self.settings, "default_if_exists", "append"))

    def writes_spark(self, if_exists: str | None = None) -> bool:
        """Whether :meth:`store` of a Spark DataFrame writes from Spark's executors or takes the
        frame a partition at a time (True), or collects the whole frame to this process first
        (False: the frame must fit in the driver)."""
        return False

    def _spark_writes(self, data: Any) -> bool:
        """``data`` is a Spark frame this storage takes as :meth:`writes_spark` says."""
        from data_pipeline.core.engines import is_spark

        return is_spark(data) and self.writes_spark()

    def store(
        self,
        data: Any,
        table: str | None = None,
        *,
        if_exists: str | None = None,
        **options: Any,
    ) -> StoreResult:
        """Store a frame of any supported engine under ``table`` (a table, key or file name).

        ``schema=`` (a :class:`~data_pipeline.storage.schema.Schema`) validates the data first,
        raising :class:`StorageSchemaError` with every violation, casts it to the declared
        types, and supplies the primary key to backends that use one.
        """
        target = table or self.default_target()
        mode = if_exists or self.default_if_exists()
        if target is None:
            raise ConfigError(
                "no table given and no default configured",
                component=self.label,
                hint="pass table=... or set default_table in the config",
            )
        if mode not in self.supported_if_exists:
            raise ConfigError(
                f"if_exists={mode!r} is not supported here",
                component=self.label,
                hint=f"use one of {', '.join(self.supported_if_exists)}",
            )
        schema = options.pop("schema", None)
        with self._operation("store") as op:
            op.rows_in = row_count(to_narwhals(data, component=self.label))
            if schema is not None:
                data = self._apply_schema(schema, data, options)
            result = self._store(data, target, mode, **options)
            op.rows_out = result.rows
            op.details.update({"target": result.target, "bytes": result.bytes, **result.details})
            return result

    def retrieve(
        self,
        table: str | None = None,
        *,
        query: str | None = None,
        params: Any = None,
        output: str = "polars",
        **options: Any,
    ) -> Any:
        """Read a table (or run a query with bound ``params``) into a frame (polars by default)."""
        target = table if table is not None or query is not None else self.default_target()
        with self._operation("retrieve") as op:
            data = self._retrieve(target, query=query, params=params, **options)
            out = convert_output(data, output, component=self.label)
            op.rows_out = row_count(to_narwhals(out))
            return out

    # -- transactions and checkpoints (core/checkpoint.py) ---------------------------------------

    def supports_transactions(self) -> bool:
        """Whether :meth:`transaction` can hold this storage's writes and a checkpoint."""
        return False

    def transaction(self) -> AbstractContextManager[Any]:
        """One atomic unit: every ``store()`` inside the ``with`` block joins it, and the whole
        lands or nothing does. The object it yields writes a stream job's checkpoint in the same
        commit (``save_checkpoint``). Backends that cannot do this raise
        :class:`UnsupportedOperationError`.

        Example:
            >>> with warehouse.transaction():          # doctest: +SKIP
            ...     warehouse.store(orders, "orders", if_exists="append")
            ...     warehouse.store(totals, "totals", if_exists="upsert")
        """
        from data_pipeline.core.errors import UnsupportedOperationError

        raise UnsupportedOperationError(
            f"{type(self).__name__} cannot store several writes and a checkpoint atomically",
            component=self.label,
            hint="keep the checkpoint in a DataWarehouseStorage (DuckDB, Delta), a "
            "RelationalDBStorage or a local FileSystemStorage, or in a folder (checkpoint.path)",
        )

    def load_checkpoint(self, name: str) -> Checkpoint | None:
        """The checkpoint ``name`` committed with this storage's data (None: none yet)."""
        self.transaction()  # raises where checkpoints are not supported
        return None  # pragma: no cover

    def _apply_schema(self, schema: Any, data: Any, options: dict[str, Any]) -> Any:
        """Check ``data`` against a registered Schema (every violation at once), then cast to it."""
        from data_pipeline.storage.schema import Schema

        if not isinstance(schema, Schema):
            raise ConfigError(
                f"schema= expects a Schema, got {type(schema).__name__}",
                component=self.label,
                hint="pass registry.get('name') or Schema(...)",
            )
        schema.check(data, component=self.label)
        if self.accepts_primary_key:
            if schema.primary_key:
                options.setdefault("primary_key", list(schema.primary_key))
            options.setdefault("not_null", [f.name for f in schema.fields if not f.nullable])
        return schema.cast(data)

    def _store(self, data: Any, target: str, if_exists: str, **options: Any) -> StoreResult:
        raise NotImplementedError(f"{type(self).__name__} must implement _store()")

    def _retrieve(
        self, target: str | None, *, query: str | None, params: Any, **options: Any
    ) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement _retrieve()")
