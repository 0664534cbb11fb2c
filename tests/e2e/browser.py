"""Helpers for tests in real headless Chromium (Debian's, through playwright's executable_path)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("DATA_PIPELINE_CHROMIUM", "/usr/bin/chromium")
REQUIRE = os.environ.get("DATA_PIPELINE_REQUIRE_SERVICES") == "1"

#: data marks only (legend symbols and view frames have other roles)
MARKS = "g.role-mark:is(.mark-line, .mark-rect, .mark-symbol, .mark-arc, .mark-area) > path"


@dataclass
class Visit:
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.requests == [], f"network requests: {self.requests}"
        assert self.dialogs == [], f"dialogs (script ran!): {self.dialogs}"
        assert self.page_errors == [], f"page errors: {self.page_errors}"
        assert self.console_errors == [], f"console errors: {self.console_errors}"


def open_dashboard(browser: Any, path: Path) -> tuple[Any, Visit]:
    visit = Visit()
    context = browser.new_context()
    page = context.new_page()

    def route(r: Any) -> None:
        if r.request.url.startswith("file:"):
            r.continue_()
        else:
            visit.requests.append(r.request.url)
            r.abort()

    def dialog(d: Any) -> None:
        visit.dialogs.append(d.message)
        d.dismiss()

    context.route("**/*", route)
    page.on("console", lambda m: visit.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: visit.page_errors.append(str(e)))
    page.on("dialog", dialog)
    page.goto(path.resolve().as_uri())
    page.wait_for_selector("body[data-dp-ready]", state="attached")
    return page, visit


def marks(page: Any, card: str) -> int:
    return int(
        page.evaluate(
            f"document.querySelectorAll('{card} svg').length && "
            f"document.querySelectorAll('{card} :is({MARKS})').length"
        )
    )
