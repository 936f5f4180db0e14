"""Real ``amltrack server`` processes for the server and sync tests, runs to push, and store comparison."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

import amltrack

from .conftest import child_env, wait_until

WRITE_TOKEN = "test-write-token-6f1d2a9c0b7e4d35"
READ_TOKEN = "test-read-token-93be10c4a7f25d68"
SMALL_BODY = 64 * 1024  # small chunks, so a few MB make many requests to kill the server between


FAULTY_SERVER = Path(__file__).parent / "scripts" / "faulty_server.py"


class ServerProcess:
    """``python -m amltrack server`` on 127.0.0.1, its stderr in a log file; stopped by its fixture.

    ``start(kill="during:3:append")`` starts it through ``scripts/faulty_server.py`` instead: the same
    server, which SIGKILLs itself at that point of its writes (STAGE:N[:KIND], see the script).
    """

    def __init__(
        self,
        store: Path,
        log: Path,
        *,
        port: int = 0,
        max_body: int = SMALL_BODY,
        tokens: str | None = f"write:{WRITE_TOKEN},read:{READ_TOKEN}",
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.store, self.log, self.port = store, log, port
        self.max_body, self.tokens, self.args, self.env = max_body, tokens, args, env or {}
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, *, kill: str | None = None, **env: str) -> ServerProcess:
        extra = {**self.env, **env}
        if self.tokens:
            extra["AMLTRACK_SERVER_TOKENS"] = self.tokens
        command = ["-m", "amltrack", "server"] if kill is None else [str(FAULTY_SERVER), kill]
        with open(self.log, "a") as log:
            start = log.tell()
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    *command,
                    *self.where(),
                    "--port",
                    str(self.port),
                    "--max-body",
                    str(self.max_body),
                    *self.args,
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=child_env(**extra),
            )

        def ready() -> str | None:
            text = self.log.read_text()[start:]
            if self.proc.poll() is not None:
                if "cannot listen" in text and self.port:
                    return "port taken"
                raise AssertionError(f"the server exited with {self.proc.returncode}:\n{text}")
            m = re.search(r"on (http://127\.0\.0\.1:(\d+))", text)
            return m and m.group(1)

        url = str(wait_until(ready, 60, "the server to listen"))
        if url == "port taken":  # a restart whose old port was taken meanwhile: any free one will do
            self.port = 0
            return self.start(kill=kill, **env)
        self.url = url
        self.port = int(self.url.rsplit(":", 1)[1])
        wait_until(self._healthy, 60, "the server to answer")
        return self

    def where(self) -> list[str]:
        """The arguments that say where the server keeps its runs."""
        return ["--store", str(self.store)]

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/v1/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def wait_dead(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def client(self, token: str | None = WRITE_TOKEN) -> httpx.Client:
        # As amltrack sync: the header that tells a write from one a web page could have sent.
        headers = {"X-Amltrack-Client": "tests"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@contextlib.contextmanager
def running_server(d: Path, **kwargs: Any) -> Iterator[ServerProcess]:
    """A started ServerProcess with its store and log in ``d``, stopped when the block ends."""
    d.mkdir(parents=True, exist_ok=True)
    srv = ServerProcess(d / "store", d / "server.log", **kwargs).start()
    try:
        yield srv
    finally:
        srv.stop()


def cli(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "amltrack", *args],
        capture_output=True,
        text=True,
        env=child_env(**env),
        timeout=timeout,
    )


SYNC_KILLED = Path(__file__).resolve().parent / "scripts" / "sync_killed.py"


def sync_killed(store: Path, url: str, writes: int, **env: str) -> subprocess.CompletedProcess:
    """A sync of ``store`` to ``url`` in a child process that is SIGKILLed right after the answer to
    its ``writes``-th write request (tests/scripts/sync_killed.py)."""
    return subprocess.run(
        [sys.executable, str(SYNC_KILLED), str(store), url, str(writes)],
        capture_output=True,
        text=True,
        env=child_env(**env),
        timeout=120,
    )


def make_run(
    store: Path,
    *,
    records: int = 200,
    artifacts: dict[str, bytes] | None = None,
    status: str = "completed",
    experiment: str = "sync",
) -> str:
    """A finished run with metrics ``loss`` (floats) and ``tag`` (strings) and the given artifacts."""
    with amltrack.start_run(experiment, store=store, outputs=None, params={"records": records}) as lg:
        for i in range(records):
            lg.log("loss", 1.0 / (i + 1))
            if i % 10 == 0:
                lg.log("tag", f"step {i}")
        lg.log("nonfinite", float("nan"))
        for path, data in (artifacts or {}).items():
            lg.upload(path, data)
        lg.flush()
        if status != "completed":
            lg.finish(status)
        run_id = lg.run_id
    return run_id


# What docs/sync.md says a push does not copy: the ledger and its locks, the column index each
# store builds for itself, the lock of summary.json. Everything else in a run folder must match.
LOCAL_ONLY = ("sync", "cache", "summary.json.lock")


def run_files(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run folder, by its path in the folder, less the LOCAL_ONLY ones."""
    out = {}
    for dirpath, dirs, names in os.walk(run_dir):
        rel = Path(dirpath).relative_to(run_dir)
        if rel == Path("."):
            dirs[:] = [d for d in dirs if d not in LOCAL_ONLY]
            names = [n for n in names if n not in LOCAL_ONLY]
        for n in names:
            out[(rel / n).as_posix()] = (Path(dirpath) / n).read_bytes()
    return out


def assert_same_run(local: Path, remote: Path) -> None:
    assert remote.is_dir(), f"{remote} is not on the server"
    a, b = run_files(local), run_files(remote)
    assert sorted(a) == sorted(b), (sorted(a), sorted(b))
    for name in a:
        assert a[name] == b[name], f"{name} differs between {local} and {remote}"


def stored_run_ids(store: Path) -> set[str]:
    runs = store / "runs"
    return {d.name for d in runs.iterdir() if d.is_dir()} if runs.is_dir() else set()


def assert_same_store(local: Path, remote: Path, run_ids: list[str] | None = None) -> None:
    """The server holds the local store's runs (or just ``run_ids`` of them) folder for folder.

    Without ``run_ids`` the server holds no other run; with them, no other run of the local store
    (a shared server may hold other stores' runs).
    """
    here, there = stored_run_ids(local), stored_run_ids(remote)
    if run_ids is None:
        assert there == here, f"runs only on the server: {there - here}; only here: {here - there}"
        ids = sorted(here)
    else:
        assert there & here == set(run_ids), f"the server holds {there & here} of the local runs"
        ids = list(run_ids)
    for rid in ids:
        assert_same_run(local / "runs" / rid, remote / "runs" / rid)


def wait_for_pid_gone(proc: subprocess.Popen, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            raise AssertionError("process did not exit")
        time.sleep(0.01)
    return proc.returncode
