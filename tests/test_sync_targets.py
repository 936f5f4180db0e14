"""The table of remote kinds (``amltrack.sync._targets``): one row adds a sync target everywhere, and the
one HTTP retry policy (``_http``) that the servers' clients share."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import amltrack
import amltrack.sync
from amltrack.cli._main import main
from amltrack.sync import (
    Progress,
    PushResult,
    RemoteConfigError,
    Remotes,
    Snapshot,
    _targets,
    open_remote,
    sync,
)
from amltrack.sync._http import HttpClient, RetryPolicy

from .sync_helpers import make_run


class FakeRemote:
    """A sync target that holds what it was sent in memory, and remembers every push it was asked for."""

    kind = "fake"
    pushes: list[dict[str, Any]] = []

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url, self.token = url, token

    def push_run(
        self,
        snap: Snapshot,
        progress: Progress,
        *,
        dry_run: bool = False,
        known: dict[str, Any] | None = None,
        check: bool = False,
        remote_state: dict[str, Any] | None = None,
    ) -> PushResult:
        FakeRemote.pushes.append({"run": snap.id, "remote_state": remote_state, "token": self.token})
        pushed = int((remote_state or {}).get("pushed", 0))
        return PushResult(snap.id, sent=1, writes=1, planned=1, remote={"pushed": pushed + 1})

    def verify_run(self, snap: Snapshot, remote_state: dict[str, Any] | None = None) -> list[str]:
        return [] if remote_state else ["the run is not on the remote"]

    def close(self) -> None:
        pass


FAKE = _targets.Target("fake", ("fake+http",), f"{__name__}:FakeRemote", describe="for a fake server")


@pytest.fixture
def fake_kind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[_targets.Target]:
    monkeypatch.setitem(_targets.TARGETS, "fake", FAKE)
    monkeypatch.setenv("AMLTRACK_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("AMLTRACK_TOKEN", raising=False)
    FakeRemote.pushes = []
    yield FAKE
    vars(amltrack.sync).pop("FakeRemote", None)  # the lazy export caches what it imported


def test_one_row_adds_a_kind_to_urls_remotes_open_remote_and_the_exports(
    fake_kind: _targets.Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _targets.check_url("fake+http://h:1/") == "fake+http://h:1"
    assert _targets.kind_of_url("fake+http://h:1") == "fake"
    with pytest.raises(
        RemoteConfigError,
        match=r"\(or mlflow\+http:// or mlflow\+https:// for an MLflow tracking "
        r"server, s3:// for an S3-compatible bucket, fake\+http:// for a fake server\)",
    ):
        _targets.check_url("ftp://h")

    # amltrack remote add, as the command line runs it, then the file read back.
    assert main(["remote", "add", "f", "fake+http://h:1", "--token", "t0k3n"]) == 0
    assert "remote f -> fake+http://h:1 (default)" in capsys.readouterr().out
    entry = Remotes.load().get("f")
    assert (entry.kind, entry.url, entry.token) == ("fake", "fake+http://h:1", "t0k3n")
    with pytest.raises(RemoteConfigError, match="is not a URL of an fake remote"):
        Remotes.load().add("g", "http://h:1", kind="fake")

    remote = open_remote(entry)
    assert isinstance(remote, FakeRemote) and remote.token == "t0k3n"

    assert amltrack.sync.FakeRemote is FakeRemote
    assert "FakeRemote" in dir(amltrack.sync)


def test_the_sync_loop_opens_a_kind_from_its_row_and_hands_it_its_ledger_state(
    fake_kind: _targets.Target, store: Path
) -> None:
    rid = make_run(store, records=5)
    report = sync(store, "fake+http://h:1")
    assert report.ok and report.counts()["pushed"] == 1
    # Asked again (--all): the push is handed what the last one returned for the ledger, and so is
    # --verify, what this one returned.
    report = sync(store, "fake+http://h:1", runs=[rid], all_runs=True, verify=True)
    assert report.ok and report.runs[0].differences == []
    assert [p["remote_state"] for p in FakeRemote.pushes] == [None, {"pushed": 1}]


def test_a_kind_not_in_the_table_is_refused_before_any_run(store: Path, tmp_path: Path) -> None:
    make_run(store, records=5)
    remotes = Remotes(tmp_path / "remotes.json", {"remotes": {"old": {"url": "http://h:1", "kind": "gone"}}})
    with pytest.raises(RemoteConfigError, match="has kind 'gone', which this amltrack cannot push to"):
        sync(store, "old", remotes=remotes)
    with pytest.raises(RemoteConfigError, match="is not one of amltrack, mlflow"):
        remotes.add("new", "http://h:1", kind="gone")


def test_the_seam_and_the_package_import_no_kind_and_no_httpx() -> None:
    code = (
        "import sys, amltrack.sync, amltrack.sync._remote, amltrack.sync._targets\n"
        "loaded = sorted(m for m in sys.modules if m in ('httpx', 'amltrack.sync._amltrack')"
        " or m.startswith('amltrack.sync._mlflow'))\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------- the one retry policy


def answers(*statuses: tuple[int, dict[str, str]]) -> tuple[list[str], httpx.MockTransport]:
    """A transport that answers the given (status, headers) in turn, then 200; and the paths asked."""
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        status, headers = statuses[len(asked) - 1] if len(asked) <= len(statuses) else (200, {})
        return httpx.Response(status, headers=headers, json={})

    return asked, httpx.MockTransport(answer)


def test_retry_after_is_honoured_where_the_policy_says(tmp_path: Path) -> None:
    # A 429 with Retry-After cannot be had from a real server on demand: the transport gives them.
    asked, transport = answers(
        (429, {"Retry-After": "7"}), (503, {"Retry-After": "soon"}), (429, {"Retry-After": "900"})
    )
    pauses: list[float] = []
    policy = RetryPolicy(3, 0.1, statuses=frozenset({429, 503}), retry_after=True)
    http = HttpClient(
        httpx.Client(base_url="http://h", transport=transport), "http://h", policy, sleep=pauses.append
    )
    r = http.request("POST", "/x", content=b"{}", write=True)
    assert r is not None and r.status_code == 200 and len(asked) == 4 and http.writes == 1
    # As the answer says; a jittered back-off when it says no number; never over a minute.
    assert pauses[0] == 7.0 and 0.15 <= pauses[1] <= 0.3 and pauses[2] == 60.0


def test_amltrack_servers_are_not_retried_on_429_and_never_past_the_retries() -> None:
    asked, transport = answers((429, {"Retry-After": "1"}))
    http = HttpClient(httpx.Client(base_url="http://h", transport=transport), "http://h", RetryPolicy(2, 0.1))
    r = http.request("GET", "/x")
    assert r is not None and r.status_code == 429 and len(asked) == 1
    asked, transport = answers(*[(503, {})] * 5)
    pauses: list[float] = []
    http = HttpClient(
        httpx.Client(base_url="http://h", transport=transport),
        "http://h",
        RetryPolicy(2, 0.1),
        sleep=pauses.append,
    )
    r = http.request("GET", "/x")
    assert r is not None and r.status_code == 503 and len(asked) == 3 and len(pauses) == 2


def test_a_request_that_cannot_be_repeated_is_rebuilt_or_found_done() -> None:
    def lost(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("the answer was lost", request=request)

    http = HttpClient(
        httpx.Client(base_url="http://h", transport=httpx.MockTransport(lost)),
        "http://h",
        RetryPolicy(3, 0.1),
        sleep=lambda s: None,
    )
    assert http.request("POST", "/x", content=b"1", again=lambda: None) is None  # done after all
    with pytest.raises(amltrack.sync.RemoteUnavailableError):
        http.request("POST", "/x", content=b"1", again=False)
