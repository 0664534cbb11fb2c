"""data-pipeline: ingest, transform, store, process and visualize data.

Five layers, one subpackage each: :mod:`data_pipeline.ingestion`, :mod:`data_pipeline.transformation`,
:mod:`data_pipeline.storage`, :mod:`data_pipeline.processing`, :mod:`data_pipeline.visualization`.
Importing this package is light: heavy libraries load inside the backend that needs them.
"""

from data_pipeline.core import log as _log  # noqa: F401  (cleans secrets from log records)
from data_pipeline.core.errors import DataPipelineError

__all__ = ["DataPipelineError", "__version__"]
__version__ = "0.1.0"
