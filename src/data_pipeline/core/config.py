"""Config models: pydantic v2 behind the spec's plain ``config={...}`` dicts.

Every component declares a :class:`ConfigModel` subclass. Unknown keys are rejected, and a bad key
or value raises :class:`~data_pipeline.core.errors.ConfigError` at construction, naming the field
path (``columns[1].strategy``) and, for a choice, the allowed values.
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections import abc
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from data_pipeline.core.errors import ConfigError
from data_pipeline.core.secrets import is_secret_key, register_secret, register_secrets_in

__all__ = [
    "ConfigModel",
    "SecretStr",
    "format_loc",
    "format_validation_error",
    "interpolate_env",
    "unknown_key_hint",
    "validate_config",
]

M = TypeVar("M", bound="ConfigModel")


class ConfigModel(BaseModel):
    """Base of every component's config model: strict about unknown keys."""

    model_config = ConfigDict(
        extra="forbid",
        validate_default=True,
        arbitrary_types_allowed=True,
        populate_by_name=True,
    )


def format_loc(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """``("columns", 1, "strategy")`` -> ``columns[1].strategy`` (after ``prefix`` if given)."""
    text = prefix
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "config"


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line per problem: the field path, what is wrong, and what was given."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(
            p for p in err["loc"] if not (isinstance(p, str) and "[" in p and p.endswith("]"))
        )
        path = format_loc(loc, prefix)
        kind = err["type"]
        msg = err["msg"]
        if kind == "extra_forbidden":
            msg = "unknown key"
        elif kind == "missing":
            msg = "required key is missing"
        given = err.get("input")
        shown = ""
        if kind not in ("missing", "extra_forbidden") and not isinstance(given, (dict, list)):
            shown = f" (got {given!r})" if not _looks_secret(path) else " (got ***)"
        lines.append(f"{path}: {msg}{shown}")
    return "; ".join(lines)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation may hold directly (through Optional and unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(annotation) for m in _models_in(a)]
    return []


def _step(annotation: Any, part: int | str) -> Any:
    """The annotation one location part further: a model's field, a dict's value, a list's item."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        found = [x for x in (_step(a, part) for a in args) if x is not None]
        return found[0] if found else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        return None
    if origin in (dict, abc.Mapping) and len(args) == 2:
        return args[1]
    if origin in (list, tuple, set, frozenset, abc.Sequence) and args and isinstance(part, int):
        return args[0]
    return None


def unknown_key_hint(model: type[BaseModel], exc: ValidationError, prefix: str = "") -> str | None:
    """For the first unknown key of ``exc``: the keys allowed where it was found (and the
    closest one), e.g. ``keys allowed at dashboards.sales.visualizations[0]: data, name, ...``."""
    import difflib

    for err in exc.errors(include_url=False):
        if err["type"] != "extra_forbidden":
            continue
        *parents, key = err["loc"]
        annotation: Any = model
        shown: list[int | str] = []
        for part in parents:
            members = {m.__name__: m for m in _models_in(annotation)}
            if isinstance(part, str) and part in members:  # the union member pydantic tried
                annotation = members[part]
                continue
            annotation = _step(annotation, part)
            shown.append(part)
            if annotation is None:
                return None
        models = _models_in(annotation)
        if not models:
            return None
        keys = sorted({info.alias or name for m in models for name, info in m.model_fields.items()})
        where = format_loc(tuple(shown), prefix) if shown or prefix else "the top level"
        close = difflib.get_close_matches(str(key), keys, n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        return f"{guess}keys allowed at {where}: {', '.join(keys)}"
    return None


def _looks_secret(path: str) -> bool:
    return is_secret_key(path.rsplit(".", 1)[-1])


def validate_config(
    model: type[M],
    config: Mapping[str, Any] | BaseModel | None,
    *,
    component: str | None = None,
    prefix: str = "config",
) -> M:
    """Validate ``config`` against ``model``; raise :class:`ConfigError` naming every bad field."""
    if isinstance(config, model):
        return config
    if isinstance(config, BaseModel):
        config = config.model_dump()
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"config must be a mapping of keys to values, got {type(config).__name__}",
            component=component,
            hint="pass config={...} as a dict",
        )
    try:
        validated = model.model_validate(dict(config))
    except ValidationError as exc:
        allowed = sorted(model.model_fields)
        raise ConfigError(
            f"invalid config: {format_validation_error(exc, prefix)}",
            component=component,
            hint=unknown_key_hint(model, exc, prefix)
            or f"the keys {model.__name__} accepts are: {', '.join(allowed)}",
        ) from None
    register_secrets_in(validated)
    return validated


_ENV = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
#: ``scheme://user:`` right before a ``${VAR}``: the variable is a URL's password
_BEFORE_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s/@:]*:$")


def interpolate_env(value: Any, *, path: str = "", environ: Mapping[str, str] | None = None) -> Any:
    """Replace ``${NAME}`` and ``${NAME:-default}`` in every string of a nested structure.

    A variable that is unset and has no default raises :class:`ConfigError` naming the path.
    ``$${NAME}`` keeps a literal ``${NAME}``. A variable in a URL's password position
    (``scheme://user:${PASSWORD}@host``) is percent-encoded, so a password holding ``@``, ``/``
    or ``:`` is read as a whole; it and every variable whose name says secret (``API_TOKEN``,
    ``DB_PASSWORD``) are registered as secrets.
    """
    env = os.environ if environ is None else environ
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            start = match.start()
            if start > 0 and match.string[start - 1] == "$":
                return match.group(0)
            name, default = match.group("name"), match.group("default")
            if name in env:
                value = env[name]
            elif default is not None:
                value = default
            else:
                value = None
            if value is not None:
                in_password = bool(_BEFORE_PASSWORD.search(match.string, 0, start)) and (
                    match.string.startswith("@", match.end())
                )
                if in_password or is_secret_key(name):  # masked wherever it is shown
                    register_secret(value)
                if in_password:  # scheme://user:${PW}@host: "@", "/" or ":" in it stay its own
                    return quote(value, safe="")
                return value
            raise ConfigError(
                f"{path or 'value'}: environment variable {name} is not set",
                hint=f"export {name}=... or write ${{{name}:-default}}",
            )

        result = _ENV.sub(sub, value)
        return result.replace("$${", "${")
    if isinstance(value, Mapping):
        return {
            k: interpolate_env(v, path=f"{path}.{k}" if path else str(k), environ=env)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [interpolate_env(v, path=f"{path}[{i}]", environ=env) for i, v in enumerate(value)]
    return value
