"""The one exception tree of data-pipeline.

Every error the framework raises derives from :class:`DataPipelineError`. Specific cases also
inherit the builtin a caller would naturally catch (``KeyError``, ``ValueError``, ``TimeoutError``,
...), so ``except KeyError`` keeps working for code that does not know our names.

::

    DataPipelineError
    ├── ConfigError (ValueError)                  a bad config key or value, caught at construction
    ├── DependencyError (ImportError)             an optional extra is not installed
    ├── NotFoundError (KeyError)                  an unknown component / pipeline / dashboard name
    ├── DuplicateNameError (ValueError)           a name registered twice
    ├── InputNotFoundError (FileNotFoundError)    a file, glob or table that does not exist
    ├── DataConnectionError (ConnectionError)     a server could not be reached
    ├── AuthenticationError (PermissionError)     credentials were refused
    ├── DataTimeoutError (TimeoutError)           an operation took longer than its timeout
    ├── SchemaError (ValueError)                  data does not fit the expected schema
    │   └── ColumnNotFoundError (KeyError)        a column a step needs is missing
    ├── InputTypeError (TypeError)                 an input that is not a supported data frame
    ├── UnsupportedOperationError (NotImplementedError)  an engine cannot do an operation
    ├── CheckpointError                           a stream checkpoint is unreadable or was
    │                                             committed by another run meanwhile
    ├── IngestionError
    │   ├── IngestionConnectionError, IngestionAuthenticationError, IngestionTimeoutError
    │   └── ParseError (ValueError)               a body or file that cannot be parsed
    ├── TransformationError
    │   ├── MissingValueError, DataTypeError (TypeError), TransformationPipelineError
    ├── StorageError
    │   ├── StorageConnectionError, StorageAuthenticationError, StorageSchemaError
    ├── ProcessingError
    │   ├── BatchProcessingError, StreamProcessingError, ProcessingPipelineError
    └── VisualizationError
        ├── ChartRenderingError, DashboardRenderingError, HTMLExportError (OSError)

A message names the component, the item (file, URL without credentials, table, column, row) and
ends with a hint saying what to do. ``transient`` tells retry logic whether trying again may help.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BatchProcessingError",
    "ChartRenderingError",
    "CheckpointError",
    "ColumnNotFoundError",
    "ConfigError",
    "DashboardRenderingError",
    "DataConnectionError",
    "DataPipelineError",
    "DataTimeoutError",
    "DataTypeError",
    "DependencyError",
    "DuplicateNameError",
    "HTMLExportError",
    "IngestionAuthenticationError",
    "IngestionConnectionError",
    "IngestionError",
    "IngestionTimeoutError",
    "InputNotFoundError",
    "InputTypeError",
    "MissingValueError",
    "NotFoundError",
    "ParseError",
    "ProcessingError",
    "ProcessingPipelineError",
    "SchemaError",
    "StorageAuthenticationError",
    "StorageConnectionError",
    "StorageError",
    "StorageSchemaError",
    "StreamProcessingError",
    "TransformationError",
    "TransformationPipelineError",
    "UnsupportedOperationError",
    "VisualizationError",
]


class DataPipelineError(Exception):
    """Root of every error raised by data-pipeline.

    Args:
        message: what went wrong, naming the item (file, table, column, URL without credentials).
        component: the name of the component that failed, put in front of the message.
        hint: what the user should do; appended as ``Hint: ...``.
        transient: True when retrying the same call may succeed (timeouts, 503, 429).
    """

    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        component: str | None = None,
        hint: str | None = None,
        transient: bool | None = None,
    ) -> None:
        from data_pipeline.core.secrets import redact_text

        self.component = component
        self.hint = hint
        self.detail = redact_text(message)
        if transient is not None:
            self.transient = transient
        text = self.detail
        if component:
            text = f"{component}: {text}"
        if hint:
            text = f"{text}\nHint: {redact_text(hint)}"
        self.message = text
        super().__init__(text)

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.message


# -- cases shared by every layer ------------------------------------------------------------


class ConfigError(DataPipelineError, ValueError):
    """A config key or value is invalid; raised when the component is built."""


class DependencyError(DataPipelineError, ImportError):
    """An optional dependency is missing; the message names the ``pip install`` to run."""


class NotFoundError(DataPipelineError, KeyError):
    """An unknown name was asked for; the message lists the known names."""


class DuplicateNameError(DataPipelineError, ValueError):
    """A name was registered twice."""


class InputNotFoundError(DataPipelineError, FileNotFoundError):
    """An input file, glob or table does not exist."""


class DataConnectionError(DataPipelineError, ConnectionError):
    """A server could not be reached."""

    transient = True


class AuthenticationError(DataPipelineError, PermissionError):
    """Credentials were refused."""


class DataTimeoutError(DataPipelineError, TimeoutError):
    """An operation took longer than its configured timeout."""

    transient = True


class SchemaError(DataPipelineError, ValueError):
    """Data does not fit the expected schema."""


class ColumnNotFoundError(SchemaError, KeyError):
    """A column that a step needs is not in the data."""


class InputTypeError(DataPipelineError, TypeError):
    """An input is not a data frame this framework can work with."""


class UnsupportedOperationError(DataPipelineError, NotImplementedError):
    """An engine or backend cannot perform an operation; the hint says what to use instead."""


class CheckpointError(DataPipelineError):
    """A checkpoint cannot be read, or another run of the same job committed meanwhile."""


# -- one subtree per layer ------------------------------------------------------------------


class IngestionError(DataPipelineError):
    """Ingesting data from a source failed."""


class IngestionConnectionError(IngestionError, DataConnectionError):
    """A data source could not be reached."""


class IngestionAuthenticationError(IngestionError, AuthenticationError):
    """A data source refused the credentials."""


class IngestionTimeoutError(IngestionError, DataTimeoutError):
    """A data source did not answer in time."""


class ParseError(IngestionError, ValueError):
    """A response body or a file could not be parsed."""


class TransformationError(DataPipelineError):
    """A transformer failed."""


class MissingValueError(TransformationError, ValueError):
    """Missing values could not be handled with the configured strategy."""


class DataTypeError(TransformationError, TypeError):
    """A column could not be converted to the requested type."""


class TransformationPipelineError(TransformationError):
    """A transformation pipeline is inconsistent (a step needs a column no earlier step makes)."""


class StorageError(DataPipelineError):
    """Storing or retrieving data failed."""


class StorageConnectionError(StorageError, DataConnectionError):
    """A storage system could not be reached."""


class StorageAuthenticationError(StorageError, AuthenticationError):
    """A storage system refused the credentials."""


class StorageSchemaError(StorageError, SchemaError):
    """Data does not fit the schema of the target table."""


class ProcessingError(DataPipelineError):
    """A processor failed."""


class BatchProcessingError(ProcessingError):
    """Batch processing failed."""


class StreamProcessingError(ProcessingError):
    """Stream processing failed."""


class ProcessingPipelineError(ProcessingError):
    """A processing pipeline is inconsistent."""


class VisualizationError(DataPipelineError):
    """Building a visualization failed."""


class ChartRenderingError(VisualizationError, ValueError):
    """A chart could not be rendered from its config and data."""


class DashboardRenderingError(VisualizationError):
    """A dashboard could not be rendered."""


class HTMLExportError(VisualizationError, OSError):
    """A dashboard could not be written as HTML."""
