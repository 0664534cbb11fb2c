"""Servers for the storage tests and drills: a SecantusDB server (MongoDB wire protocol) started
on a free port, and the shared Redis (its config and the cleanup of a test's keys)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import require_service


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def secantus_server(storage_path: str = ":memory:") -> Iterator[int]:
    """Start ``secantusd-py`` on 127.0.0.1 (or use a MongoDB on 27017 if it is not installed);
    yields the port, stops the server afterwards."""
    exe = shutil.which("secantusd-py") or str(Path(sys.executable).parent / "secantusd-py")
    if not Path(exe).exists():
        require_service("MongoDB (secantusd-py not installed)", "127.0.0.1", 27017)
        yield 27017
        return
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--host", "127.0.0.1", "--port", str(port), "--storage-path", storage_path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        require_service("MongoDB (secantusd-py)", "127.0.0.1", port)
        yield port
    finally:
        proc.terminate()
        proc.wait()


REDIS_HOST = os.environ.get("DATA_PIPELINE_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("DATA_PIPELINE_REDIS_PORT", "6379"))
REDIS_DB = 5  # the tests' database; every test uses keys with a unique prefix


def redis_config(**extra: Any) -> dict[str, Any]:
    """A NoSQLDBStorage config for the shared Redis (skips, or fails under REQUIRE_SERVICES,
    when it is down)."""
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    return {
        "db_type": "redis",
        "host": REDIS_HOST,
        "port": REDIS_PORT,
        "database": str(REDIS_DB),
        **extra,
    }


def drop_redis_keys(*patterns: str) -> None:
    """Delete the test's keys (``scan_iter`` patterns such as ``*dp_1234*``)."""
    import redis

    client = redis.Redis(REDIS_HOST, REDIS_PORT, db=REDIS_DB)
    try:
        for pattern in patterns:
            keys = list(client.scan_iter(pattern))
            if keys:
                client.delete(*keys)
    finally:
        client.close()
