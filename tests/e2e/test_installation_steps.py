"""The spec's installation steps work as written in a fresh clone, then every layer's example runs.

Spec, "Installation Steps": clone the repository, ``python -m venv venv``, ``source
venv/bin/activate``, ``pip install -r requirements.txt``. This runs exactly those lines in bash in
a fresh ``git clone`` of this checkout (what is committed), then ``python -m
data_pipeline.<layer>.example`` for the five layers with the new venv's Python. It needs the
package index (PyPI, or the machine's pip configuration); pip's cache makes it quick.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("ingestion", "transformation", "storage", "processing", "visualization")


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout"
)
def test_spec_installation_steps_then_examples(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # `python` is the interpreter running the tests (the spec assumes a Python 3 on PATH)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    steps = f"""
set -euo pipefail
git clone --quiet {ROOT} data-pipeline
cd data-pipeline
python -m venv venv
source venv/bin/activate
pip install -q -r requirements.txt
for layer in {" ".join(LAYERS)}; do
  python -m data_pipeline.$layer.example > "example-$layer.log" 2>&1 || {{
    echo "example of $layer failed:"; cat "example-$layer.log"; exit 1; }}
done
python -c "import data_pipeline, sys; print(data_pipeline.__file__)"
"""
    done = subprocess.run(
        ["bash", "-c", steps], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    # the package imported is the clone's, installed from its requirements.txt
    assert str(tmp_path / "data-pipeline" / "src") in done.stdout
