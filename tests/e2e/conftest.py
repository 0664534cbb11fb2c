"""The shared headless Chromium for browser tests (one per test session)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import CHROMIUM, REQUIRE


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        message = f"Chromium not found at {CHROMIUM}"
        if REQUIRE:
            pytest.fail(message + "; DATA_PIPELINE_REQUIRE_SERVICES=1 forbids skipping")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A standalone master and one worker on 127.0.0.1 (tests/e2e/spark_cluster.py), shared by
    the modules that use it; stopped at the end of the session."""
    from tests.conftest import REQUIRE_SERVICES, spark_unavailable
    from tests.e2e.spark_cluster import standalone_cluster

    reason = spark_unavailable()
    if reason:
        if REQUIRE_SERVICES:
            pytest.fail(f"Spark unavailable: {reason}")
        pytest.skip(f"Spark unavailable: {reason}")
    with standalone_cluster(tmp_path_factory.mktemp("cluster")) as handle:
        yield handle


@pytest.fixture(scope="module")
def connect_server(
    cluster: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A Spark Connect server on the cluster, one per test module (each module reads its own
    event log); it has the JDBC driver jars."""
    from tests.conftest import JDBC_JARS
    from tests.e2e.spark_cluster import connect_server as server

    with server(cluster, tmp_path_factory.mktemp("connect"), JDBC_JARS) as handle:
        yield handle
