"""The documentation site builds offline and strictly, and its API reference covers the spec.

The build is `mkdocs build --strict` (mkdocs.yml): a broken link or cross-reference, a public
class without a docstring, or a config key without a description fails it. `make test` builds the
site with `make docs` first and points DATA_PIPELINE_DOCS_SITE at it; run alone, this test builds
it into a temporary folder.
"""

from __future__ import annotations

import html
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .test_public_api import EXPECTED

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("mkdocs", reason="the docs extra is not installed")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("DATA_PIPELINE_DOCS_SITE")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-6000:]
    return out


def _text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _plain(docstring: str) -> str:
    """The first words of a docstring as Markdown shows them (roles and backticks gone)."""
    first = docstring.strip().split("\n\n")[0]
    first = re.sub(r":\w+:`~?([^`]+)`", r"\1", first).replace("`", "")
    return " ".join(first.split()[:5])


def _sections(page: str, layer: str) -> dict[str, str]:
    """The HTML of each class section of a layer page, by class name."""
    heads = list(re.finditer(rf'<h2 id="data_pipeline\.{layer}\.(\w+)"', page))
    return {
        m.group(1): page[m.start() : heads[i + 1].start() if i + 1 < len(heads) else len(page)]
        for i, m in enumerate(heads)
    }


@pytest.mark.parametrize("layer", sorted(EXPECTED))
def test_every_spec_class_is_in_the_reference(site: Path, layer: str) -> None:
    page = (site / "reference" / f"{layer}.html").read_text(encoding="utf-8")
    sections = _sections(page, layer)
    module = importlib.import_module(f"data_pipeline.{layer}")
    for name in sorted(EXPECTED[layer]):
        assert name in sections, f"{name} is missing from reference/{layer}.html"
        section = sections[name]
        cls = getattr(module, name)
        assert _plain(cls.__doc__ or "") in _text(section), f"{name}: its docstring is not shown"
        assert "&gt;&gt;&gt;" in section, f"{name}: no example shown"
        model = getattr(cls, "config_model", None)
        if model is not None and model.model_fields:
            assert "Config keys" in section, f"{name}: no config keys table"
            for field, info in model.model_fields.items():
                key = info.alias or field
                assert f"<code>{key}</code>" in section, f"{name}: config key {key} not listed"


def test_the_site_opens_from_disk(site: Path) -> None:
    """Plain .html files that load nothing from another host: the site works offline.

    (Links to other sites are fine; scripts, styles, fonts and images must be local.)"""
    loads = re.compile(
        r'(?:<(?:script|img|iframe)[^>]*\ssrc|<link[^>]*\shref)="((?:https?:)?//[^"]+)"'
    )
    for page in site.rglob("*.html"):
        found = loads.findall(page.read_text(encoding="utf-8"))
        assert not found, f"{page.relative_to(site)} loads {found}"
    for sheet in site.rglob("*.css"):
        assert not re.search(r"url\((['\"]?)(https?:)?//", sheet.read_text(encoding="utf-8")), sheet
    assert (site / "reference" / "ingestion.html").exists()


def test_cli_reference_lists_every_command(site: Path) -> None:
    page = _text((site / "reference" / "pipeline.html").read_text(encoding="utf-8"))
    for command in ("validate", "run", "dashboard", "version", "--version"):
        assert command in page
