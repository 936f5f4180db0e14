"""schemathesis over the server's OpenAPI description: no request it can make gets a 5xx."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import child_env
from ..sync_helpers import WRITE_TOKEN, ServerProcess
from .conftest import size


# Full mode took 39 s on a busy 2-core machine (2026-11-27): well inside 120 s, but its own subprocess
# timeout is 600 s, and the test must not be cut off before it.
@pytest.mark.timeout(size(120, 660))
def test_no_server_errors_over_the_openapi_description(tmp_path: Path) -> None:
    st = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    if not Path(st).exists():
        pytest.skip("schemathesis is not installed (it is in the test extra)")
    srv = ServerProcess(tmp_path / "store", tmp_path / "server.log").start()
    try:
        out = subprocess.run(
            [
                st,
                "run",
                f"{srv.url}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                str(size(10, 100)),
                "--header",
                f"Authorization: Bearer {WRITE_TOKEN}",
                "--request-timeout",
                "30",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env=child_env(),
            cwd=tmp_path,
        )
        assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
        assert "passed" in out.stdout
    finally:
        srv.stop()
