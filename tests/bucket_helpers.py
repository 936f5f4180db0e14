"""A real S3-compatible server for the bucket tests: moto's standalone server as a process on 127.0.0.1,
one per session, a fresh bucket per test, and reading a pushed run back through the public S3 API."""

from __future__ import annotations

import contextlib
import itertools
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from .conftest import child_env, wait_until

# Dummy credentials: moto accepts any; boto3 refuses to sign without some.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
_buckets = itertools.count()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    """``python -m moto.server`` on a free port of 127.0.0.1; stopped by its fixture."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.endpoint = ""

    def start(self) -> MotoServer:
        for _ in range(5):
            port = free_port()
            with open(self.log, "a") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                    stdout=log,
                    stderr=log,
                    env=child_env(**AWS_ENV),
                )
            self.endpoint = f"http://127.0.0.1:{port}"
            if wait_until(self._up, 60, "moto to listen") == "exited":
                continue  # the port was taken between the probe and the bind: another one
            return self
        raise AssertionError(f"moto would not start:\n{self.log.read_text()}")

    def _up(self) -> bool | str:
        assert self.proc is not None
        if self.proc.poll() is not None:
            return "exited"
        try:
            return httpx.get(self.endpoint + "/moto-api/", timeout=2).status_code < 500
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def client(self, endpoint: str | None = None) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=endpoint or self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def new_bucket(self) -> str:
        name = f"amltrack-test-{next(_buckets)}"
        self.client().create_bucket(Bucket=name)
        return name


@contextlib.contextmanager
def moto_server(d: Path) -> Iterator[MotoServer]:
    d.mkdir(parents=True, exist_ok=True)
    srv = MotoServer(d / "moto.log").start()
    try:
        yield srv
    finally:
        srv.stop()


def bucket_run_files(s3: Any, bucket: str, prefix: str, run_id: str) -> dict[str, bytes]:
    """A pushed run as its local folder would hold it, read from the bucket: the plain files, and
    metrics.jsonl and artifacts.jsonl joined from the parts its published manifest names."""
    base = f"{prefix}/" if prefix else ""
    manifest = orjson.loads(s3.get_object(Bucket=bucket, Key=f"{base}published/{run_id}.json")["Body"].read())
    out: dict[str, bytes] = {}

    def get(key: str) -> bytes:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    run_base = f"{base}runs/{run_id}/"
    out["run.json"] = get(run_base + "run.json")
    if manifest["files"].get("summary.json"):
        out["summary.json"] = get(run_base + "summary.json")
    for name in ("metrics.jsonl", "artifacts.jsonl"):
        parts = manifest[name]["parts"]
        if parts:
            out[name] = b"".join(get(f"{run_base}{name}.parts/{start:020d}.jsonl") for start, _, _ in parts)
    for path in manifest["artifacts"]:
        out[f"artifacts/{path}"] = get(f"{run_base}artifacts/{path}")
    return out
