"""Sync a store to a remote, and SIGKILL this process right after its N-th write request got its answer.

    python sync_killed.py STORE URL N

The remote is the client its URL's kind names (amltrack's server, or ``mlflow+http://``), built with
an httpx transport that sends every request for real and kills the process after the answer to the
N-th write: a push cut at any point of its conversation, to test that the next one resumes from
there. Its token is ``$AMLTRACK_TOKEN`` for an amltrack server; an MLflow client reads MLflow's own
variables. Exits 0 if the sync ended before the N-th write, printing its report's counts as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import httpx

from amltrack.sync import Remotes, sync
from amltrack.sync._targets import get


class KillAfterWrites(httpx.HTTPTransport):
    """A real transport that SIGKILLs the process once ``n`` write requests got their answer."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        # A write is what changes the remote: MLflow's runs/search is a read sent as a POST.
        if request.method != "GET" and not request.url.path.endswith("/runs/search"):
            response.read()  # the whole answer arrived: the remote committed the write
            self.left -= 1
            if self.left <= 0:
                os.kill(os.getpid(), signal.SIGKILL)
        return response


def main() -> None:
    store, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    entry = Remotes(Path(os.devnull), {}).resolve(url)
    kind = get(entry.kind, entry.label)
    token = os.environ.get(kind.token_env) if kind.token_env else None
    remote = kind.load()(entry.url, token, transport=KillAfterWrites(n))  # type: ignore[call-arg]
    try:
        report = sync(store, remote)
    finally:
        remote.close()
    print(json.dumps(report.counts()))


if __name__ == "__main__":
    main()
