"""Optional dependencies, imported lazily by the backend that needs them.

``import data_pipeline`` must stay light: it never imports pyspark, psycopg, sqlalchemy or altair.
A backend calls :func:`import_optional` at first use; a missing package raises
:class:`~data_pipeline.core.errors.DependencyError` naming the exact ``pip install`` to run.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from data_pipeline.core.errors import DependencyError

__all__ = ["import_optional"]


def import_optional(module: str, *, extra: str, feature: str | None = None) -> ModuleType:
    """Import ``module`` or explain which extra installs it.

    >>> import_optional("json", extra="core").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = feature or f"This feature ({module})"
        raise DependencyError(
            f"{what} needs `pip install 'data-pipeline[{extra}]'`",
            hint=f"install the extra, then retry (import of {module!r} failed: {exc})",
        ) from exc
