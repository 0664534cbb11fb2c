"""The documentation site's extensions (``mkdocs.yml`` names this file twice).

* ``ConfigKeys``, a griffe extension (under ``mkdocstrings`` ``extensions:``): every class with a
  pydantic ``config_model`` gets a "Config keys" table appended to its docstring, so the reference
  shows each key's name, type, default and description right under the class's own text. The
  description is the attribute docstring written under the field in the config model (read
  statically by griffe: importing the package costs nothing for it). Nested models (``auth``,
  ``pagination``, ...) get tables of their own.
* MkDocs hooks (under ``hooks:``): ``<!-- config-keys: dotted.path.Model -->`` in a page becomes
  the table of that model (the pipeline file reference), ``<!-- cli-help -->`` becomes the
  ``--help`` of every ``data-pipeline`` command.

Strict builds fail on a warning: a public class without a docstring or a key without a
description is logged as one, so the reference cannot fall behind the code.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("ingestion", "transformation", "storage", "processing", "visualization")
MARKER = re.compile(r"^<!-- config-keys: (?P<path>[\w.]+) -->$", re.MULTILINE)
CLI_MARKER = "<!-- cli-help -->"
log = logging.getLogger("mkdocs.plugins.data_pipeline_reference")


def _ensure_src() -> None:
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)


def _import(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def public_classes() -> dict[type, str]:
    """Every class a layer exports, mapped to its public path (``data_pipeline.ingestion.X``)."""
    _ensure_src()
    found: dict[type, str] = {}
    for layer in LAYERS:
        module = importlib.import_module(f"data_pipeline.{layer}")
        for name in module.__all__:
            found[getattr(module, name)] = f"data_pipeline.{layer}.{name}"
    return found


# -- tables ----------------------------------------------------------------------------------------


class _Tables:
    """Markdown tables of config models, with descriptions looked up in a griffe package."""

    def __init__(self, package: Any) -> None:
        self.package = package
        self.problems: list[str] = []

    def _griffe_class(self, cls: type) -> Any:
        obj = self.package
        for part in f"{cls.__module__}.{cls.__qualname__}".split(".")[1:]:
            obj = obj.members[part]
        return obj

    def description(self, model: type, name: str) -> str:
        for klass in model.__mro__:
            if name in inspect.get_annotations(klass):
                try:
                    member = self._griffe_class(klass).members.get(name)
                except KeyError:
                    return ""
                if member is not None and member.docstring is not None:
                    return " ".join(member.docstring.value.split())
                return ""
        return ""

    def table(self, model: type, owner: str) -> str:
        nested: list[type] = []
        done: set[type] = set()
        chunks: list[str] = []
        queue: list[tuple[type, str | None]] = [(model, None)]
        while queue:
            current, title = queue.pop(0)
            if current in done:
                continue
            done.add(current)
            lines = [] if title is None else [f"*{title}*", ""]
            lines += ["| key | type | default | description |", "|---|---|---|---|"]
            for name, info in current.model_fields.items():
                key = info.alias or name
                text = self.description(current, name)
                if not text:
                    self.problems.append(
                        f"{owner}: config key {key!r} ({current.__name__}.{name}) has no "
                        "description (write a docstring under the field)"
                    )
                kind = _type_text(info.annotation, nested)
                lines.append(
                    f"| `{key}` | {_cell(kind)} | {_cell(_default(info))} | {_cell(text)} |"
                )
            chunks.append("\n".join(lines))
            queue += [(sub, f"{sub.__name__}: the keys of a nested mapping") for sub in nested]
        return "\n\n".join(chunks)


def _is_model(tp: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _type_text(tp: Any, nested: list[type]) -> str:
    """A readable type: ``"a" | "b"``, ``list[str]``, ``int | None``; models are collected."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _type_text(args[0], nested)
    if origin is typing.Literal:
        return " | ".join(f'"{a}"' if isinstance(a, str) else repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_text(a, nested) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_type_text(a, nested) for a in args)}]"
    if tp is type(None):
        return "None"
    if tp is Any:
        return "any"
    if _is_model(tp):
        if tp not in nested:
            nested.append(tp)
        return f"{tp.__name__} (mapping)"
    name = getattr(tp, "__name__", str(tp))
    return "secret string" if name == "SecretStr" else name


def _default(info: Any) -> str:
    from pydantic_core import PydanticUndefined

    if info.default_factory is not None:
        try:
            return f"`{info.default_factory()!r}`"
        except TypeError:  # a factory that takes the validated data
            return "computed"
    if info.default is PydanticUndefined:
        return "**required**"
    return f"`{info.default!r}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- the griffe extension --------------------------------------------------------------------------

_EXAMPLE = re.compile(r"^(\s*)Example:$", re.MULTILINE)
# reST roles in our docstrings (:class:`~pkg.Name`, :meth:`x`) shown as code in Markdown
_ROLE = re.compile(r":(?:class|meth|func|attr|mod|obj|exc|data):`~?([^`]+)`")


def _all_classes(obj: Any) -> Any:
    for member in obj.members.values():
        if member.is_alias:
            continue
        if member.is_class or member.is_function or member.is_attribute or member.is_module:
            yield member
        if member.is_module or member.is_class:
            yield from _all_classes(member)


try:
    import griffe
except ImportError:  # pragma: no cover - only the docs build imports this module
    griffe = None  # type: ignore[assignment]

if griffe is not None:

    class ConfigKeys(griffe.Extension):  # type: ignore[misc]
        """Append a "Config keys" table to the docstring of every class with a config model."""

        def on_package(self, *, pkg: Any, **kwargs: Any) -> None:
            if pkg.name != "data_pipeline":
                return
            tables = _Tables(pkg)
            for obj in _all_classes(pkg):
                if obj.docstring is not None:  # "Example:" is an admonition in griffe's Google
                    # parser (its doctest text would be read as Markdown); "Examples:" is code
                    value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
                    obj.docstring.value = _ROLE.sub(lambda m: f"`{m.group(1)}`", value)
            for cls, path in public_classes().items():
                try:
                    node = tables._griffe_class(cls)
                except KeyError:
                    continue
                if not (cls.__doc__ or "").strip():
                    tables.problems.append(f"{path}: the class has no docstring")
                model = getattr(cls, "config_model", None)
                if model is None or not model.model_fields:
                    continue
                text = f"**Config keys** (`config={{...}}`):\n\n{tables.table(model, path)}"
                if node.docstring is None:
                    node.docstring = griffe.Docstring(text, parent=node)
                else:
                    node.docstring.value = f"{node.docstring.value}\n\n{text}"
            for problem in tables.problems:
                log.warning("API reference: %s", problem)


# -- MkDocs hooks ----------------------------------------------------------------------------------

_mkdocs_tables: _Tables | None = None


def _page_tables() -> _Tables:
    global _mkdocs_tables
    if _mkdocs_tables is None:
        import griffe as g

        _mkdocs_tables = _Tables(
            g.load("data_pipeline", search_paths=[str(ROOT / "src")], resolve_aliases=False)
        )
    return _mkdocs_tables


def _cli_help() -> str:
    """The ``--help`` of the command and of each subcommand, as the terminal shows it."""
    import os
    import subprocess

    from data_pipeline.cli import app

    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    names = [c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands]
    parts = []
    for args in [[], *[[name] for name in names]]:
        out = subprocess.run(
            [sys.executable, "-c", "from data_pipeline.cli import main; main()", *args, "--help"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout
        text = "\n".join(line.rstrip() for line in out.strip("\n").splitlines())
        parts.append((" ".join(["data-pipeline", *args]), text))
    return "\n\n".join(f"### `{title}`\n\n```text\n{text}\n```" for title, text in parts)


def on_startup(command: str, dirty: bool) -> None:
    _ensure_src()


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER.search(markdown):
        tables = _page_tables()

        def table(match: re.Match[str]) -> str:
            path = match.group("path")
            return tables.table(_import(path), path)

        markdown = MARKER.sub(table, markdown)
        for problem in tables.problems:
            log.warning("API reference: %s", problem)
        tables.problems.clear()
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, _cli_help())
    return markdown
