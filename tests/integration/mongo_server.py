"""A SecantusDB server (MongoDB wire protocol) on a free port, for the MongoDB tests and drills."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
