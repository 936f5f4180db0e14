"""Sync a store to a remote, and SIGKILL this process right after its N-th write request got its answer.

    python sync_killed.py STORE URL N

The remote is the client its URL's kind names (amltrack's server, or ``mlflow+http://``), built with
an httpx transport that sends every request for real and kills the process after the answer to the
N-th write: a push cut at any point of its conversation, to test that the next one resumes from
there. Its token is ``$AMLTRACK_TOKEN`` for an amltrack server; an MLflow client reads MLflow's own
variables. Exits 0 if the sync ended before the N-th write, printing its report's counts as JSON.

An ``s3://`` bucket's client is boto3, not httpx: it gets a real boto3 client with an ``after-call``
event hook that does the same, and ``$SYNC_KILLED_PART_BYTES`` and ``$SYNC_KILLED_CHUNK_BYTES`` (if
set) as its part and upload chunk sizes, so that a small run makes many writes to be killed between.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx

from amltrack.sync import Remote, Remotes, sync
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


def bucket_remote(url: str, n: int) -> Remote:
    from amltrack.sync._bucket import BucketRemote
    from amltrack.sync._s3 import WRITE_OPERATIONS, BucketUrl, make_client

    client = make_client(BucketUrl.parse(url))
    left = [n]
    writes = {"".join(w.title() for w in op.split("_")) for op in WRITE_OPERATIONS}

    def after_call(model: Any, **_: Any) -> None:
        if model.name in writes:  # called once the answer arrived: the bucket committed the write
            left[0] -= 1
            if left[0] <= 0:
                os.kill(os.getpid(), signal.SIGKILL)

    client.meta.events.register("after-call.s3", after_call)
    sizes = {
        arg: int(os.environ[var])
        for arg, var in (("part_bytes", "SYNC_KILLED_PART_BYTES"), ("chunk_size", "SYNC_KILLED_CHUNK_BYTES"))
        if os.environ.get(var)
    }
    return BucketRemote(url, client=client, **sizes)


def main() -> None:
    store, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    entry = Remotes(Path(os.devnull), {}).resolve(url)
    kind = get(entry.kind, entry.label)
    token = os.environ.get(kind.token_env) if kind.token_env else None
    if kind.name == "bucket":
        remote = bucket_remote(entry.url, n)
    else:
        remote = kind.load()(entry.url, token, transport=KillAfterWrites(n))  # type: ignore[call-arg]
    try:
        report = sync(store, remote)
    finally:
        remote.close()
    print(json.dumps(report.counts()))


if __name__ == "__main__":
    main()
