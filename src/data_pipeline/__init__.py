"""data-pipeline: ingest, transform, store, process and visualize data.

Five layers, one subpackage each: :mod:`data_pipeline.ingestion`, :mod:`data_pipeline.transformation`,
:mod:`data_pipeline.storage`, :mod:`data_pipeline.processing`, :mod:`data_pipeline.visualization`.
Importing this package is light: heavy libraries load inside the backend that needs them.
"""

from data_pipeline.core import log as _log  # noqa: F401  (cleans secrets from log records)
from data_pipeline.core.errors import DataPipelineError

__all__ = ["DataPipelineError", "__version__"]


def _version() -> str:
    """The installed distribution's version (one source: pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("data-pipeline")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


__version__ = _version()
