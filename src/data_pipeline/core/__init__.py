"""Core contracts shared by every layer: components, config, errors, frames, registries."""

from data_pipeline.core.component import Component, Operation
from data_pipeline.core.config import ConfigModel, interpolate_env, validate_config
from data_pipeline.core.errors import *  # noqa: F403
from data_pipeline.core.errors import __all__ as _errors
from data_pipeline.core.registry import Registry
from data_pipeline.core.step import FrameStep, StepPipeline

__all__ = [
    "Component",
    "ConfigModel",
    "FrameStep",
    "Operation",
    "Registry",
    "StepPipeline",
    "interpolate_env",
    "validate_config",
    *_errors,
]
