"""Every route of the server's OpenAPI description, without a token, with a wrong one, and with a
read token on a write route."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from ..sync_helpers import READ_TOKEN, ServerProcess

RID = "20261127T005321123-7f3a9c2e1b4d6a80"
FILL = {"run_id": RID, "run": RID, "sha256": "0" * 64, "name": "metrics.jsonl", "path": "a/b.txt",
        "file": "metrics.jsonl"}


def test_every_route_needs_the_right_token(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "store", tmp_path / "server.log").start()
    try:
        spec = httpx.get(f"{srv.url}/openapi.json", timeout=30).json()
        checked = 0
        for template, methods in spec["paths"].items():
            if template in ("/v1/health",):
                continue
            url = re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: FILL.get(m.group(1), "x"), template)
            for method in methods:
                for token, want in ((None, 401), ("wrong-token-0123456789abcdef", 401)):
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    r = httpx.request(method.upper(), srv.url + url, headers=headers, content=b"x\n",
                                      params={"offset": 0, "metrics_bytes": 0, "manifest_bytes": 0}, timeout=30)
                    assert r.status_code == want, (method, template, token, r.status_code, r.text)
                    assert r.json()["error"]["code"] == "unauthorized"
                if method.lower() != "get":
                    r = httpx.request(method.upper(), srv.url + url, headers={"Authorization": f"Bearer {READ_TOKEN}"},
                                      content=b"x\n", params={"offset": 0, "metrics_bytes": 0, "manifest_bytes": 0},
                                      timeout=30)
                    assert r.status_code == 403, (method, template, r.status_code, r.text)
                checked += 1
        assert checked >= 10
    finally:
        srv.stop()
