"""The Component base: a name, a validated config, and metadata kept by one shared mechanism.

Every source, transformer, storage system, processor and visualization is a Component. The layer
base classes own the public methods (``ingest``, ``transform``, ``store``, ``process``, ``render``)
and wrap the subclass hook in :meth:`Component._operation`, which times the call, sets the status,
records rows in and out, and turns any library error into this layer's error naming the component.
Metadata and error handling are written here once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar, Literal

from data_pipeline.core.config import ConfigModel, validate_config
from data_pipeline.core.errors import (
    ConfigError,
    DataConnectionError,
    DataPipelineError,
    DataTimeoutError,
    InputNotFoundError,
)
from data_pipeline.core.log import get_logger
from data_pipeline.core.secrets import redact, redact_text, scrub_exception

__all__ = ["Component", "Operation", "Status"]

Status = Literal["idle", "running", "succeeded", "failed"]


@dataclass
class Operation:
    """What one call of a public method did; filled in by the call, read by ``get_metadata``."""

    name: str
    rows_in: int | None = None
    rows_out: int | None = None
    rows_rejected: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: per-call inputs the component's hooks share (never on ``self``; not in metadata)
    context: Any = None


class Component:
    """Base of every named, configured part of a pipeline.

    Args:
        name: unique within its manager; used in every message and in metadata.
        config: a plain dict validated against the class's ``config_model``. An unknown key or a
            bad value raises :class:`~data_pipeline.core.errors.ConfigError` here, not at run time.

    Example:
        >>> from data_pipeline.transformation import ColumnRenamer
        >>> ColumnRenamer(name="rename", config={"mapping": {"a": "b"}}).get_metadata()["status"]
        'idle'
    """

    config_model: ClassVar[type[ConfigModel]] = ConfigModel
    layer: ClassVar[str] = "core"
    error_class: ClassVar[type[DataPipelineError]] = DataPipelineError

    def __init__(self, name: str, config: Mapping[str, Any] | None = None) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(
                f"{type(self).__name__} needs a non-empty string name, got {name!r}",
                hint='pass name="my_component"',
            )
        self.name = name
        self.settings = validate_config(self.config_model, config, component=self.label)
        self.config: dict[str, Any] = dict(config or {})
        self.logger = get_logger(type(self).__module__)
        self.status: Status = "idle"
        self._last: Operation | None = None
        self._last_time: datetime | None = None
        self._last_duration: float | None = None
        self._last_error: str | None = None

    @property
    def label(self) -> str:
        """``ClassName 'name'``: how messages refer to this component."""
        return f"{type(self).__name__} {self.name!r}"

    # -- the shared run mechanism ------------------------------------------------------------

    @contextmanager
    def _operation(self, name: str, *, rows_in: int | None = None) -> Iterator[Operation]:
        """Time an operation, keep its metadata, and translate any error into this layer's."""
        op = Operation(name=name, rows_in=rows_in)
        self.status = "running"
        self._last = op
        self._last_time = datetime.now(timezone.utc)
        self._last_error = None
        start = time.perf_counter()
        self.logger.debug("%s: %s started", self.label, name)
        try:
            yield op
        except BaseException as exc:
            self._last_duration = time.perf_counter() - start
            self.status = "failed"
            error = self._translate_error(exc, name)
            self._last_error = str(error) if error is not None else f"{type(exc).__name__}"
            detail = getattr(error, "detail", self._last_error)
            self.logger.error("%s: %s failed: %s", self.label, name, detail)
            if error is None or error is exc:
                scrub_exception(exc)
                raise
            error.__cause__ = exc
            scrub_exception(error)  # the causes chained to it show no secret either
            raise error from error.__cause__
        self._last_duration = time.perf_counter() - start
        self.status = "succeeded"
        self.logger.info(
            "%s: %s succeeded in %.3fs (rows in %s, out %s)",
            self.label,
            name,
            self._last_duration,
            op.rows_in,
            op.rows_out,
        )

    def _translate_error(self, exc: BaseException, operation: str) -> BaseException | None:
        """Map a library error to this layer's error; a subclass may add specific cases.

        Returns the error to raise (``exc`` itself to re-raise unchanged, ``None`` for
        ``KeyboardInterrupt`` and friends).
        """
        if not isinstance(exc, Exception):
            return None
        if isinstance(exc, DataPipelineError):
            return exc
        text = redact_text(f"{type(exc).__name__}: {exc}")
        layer = self.error_class
        if isinstance(exc, FileNotFoundError):
            return InputNotFoundError(
                f"{operation} failed: {text}",
                component=self.label,
                hint="check the path; globs must match at least one file",
            )
        if isinstance(exc, TimeoutError):
            return _combine(layer, DataTimeoutError)(
                f"{operation} timed out: {text}",
                component=self.label,
                hint="increase the 'timeout' value in the config",
            )
        if isinstance(exc, ConnectionError):
            return _combine(layer, DataConnectionError)(
                f"{operation} could not connect: {text}",
                component=self.label,
                hint="check the connection parameters (host, port) in the config",
            )
        return layer(f"{operation} failed: {text}", component=self.label)

    # -- metadata ---------------------------------------------------------------------------

    def get_metadata(self) -> dict[str, Any]:
        """Status, the last operation (UTC time, duration, rows), the last error, the config.

        Every secret in the config is shown as ``"***"``.
        """
        op = self._last
        return {
            "name": self.name,
            "type": type(self).__name__,
            "layer": self.layer,
            "status": self.status,
            "last_operation": op.name if op else None,
            "last_operation_time": self._last_time.isoformat() if self._last_time else None,
            "duration_seconds": round(self._last_duration, 6)
            if self._last_duration is not None
            else None,
            "rows_in": op.rows_in if op else None,
            "rows_out": op.rows_out if op else None,
            "rows_rejected": op.rows_rejected if op else None,
            "last_error": self._last_error,
            "details": redact(dict(op.details)) if op else {},
            "config": redact(self.config, model=self.settings),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, config={redact(self.config, model=self.settings)!r})"


_combined: dict[tuple[type, type], type] = {}


def _combine(
    layer: type[DataPipelineError], case: type[DataPipelineError]
) -> type[DataPipelineError]:
    """The most specific class that is both the layer's error and the case (cached)."""
    if issubclass(layer, case):
        return layer
    for sub in layer.__subclasses__():
        if issubclass(sub, case):
            return sub
    key = (layer, case)
    if key not in _combined:
        _combined[key] = type(f"{layer.__name__}{case.__name__}", (layer, case), {})
    return _combined[key]
