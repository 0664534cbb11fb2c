"""A logger per module, each masking secrets in what it writes."""

from __future__ import annotations

import logging

from data_pipeline.core.secrets import RedactingFilter

__all__ = ["get_logger"]

_FILTER = RedactingFilter()


def get_logger(name: str) -> logging.Logger:
    """``get_logger(__name__)`` -> the module's logger with the redacting filter attached."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
