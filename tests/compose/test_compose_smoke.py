"""The compose smoke test (tests/compose/smoke.sh) as a pytest item: marker `compose`, off by default.

It builds images and runs the whole cluster, minutes of work, so it runs only when asked:
`AFD_COMPOSE_SMOKE=1 python -m pytest -m compose tests/compose` (what `make compose-test` runs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.compose
SCRIPT = Path(__file__).with_name("smoke.sh")


@pytest.mark.timeout(3600)
@pytest.mark.skipif(os.environ.get("AFD_COMPOSE_SMOKE") != "1", reason="set AFD_COMPOSE_SMOKE=1 (make compose-test)")
def test_compose_cluster_smoke():
    if shutil.which("docker") is None or (shutil.which("docker-compose") is None
                                          and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode):
        pytest.fail("docker and docker-compose are needed: see ops/README.md")
    proc = subprocess.run(["bash", str(SCRIPT)], timeout=3500)
    assert proc.returncode == 0, "compose smoke failed; its output above has the service logs"
