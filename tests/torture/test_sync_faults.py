"""Sync under faults: the server SIGKILLed at random points of many syncs, and many clients at once."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import amltrack
from amltrack.sync import AmltrackRemote, sync

from ..conftest import child_env
from ..sync_helpers import WRITE_TOKEN, ServerProcess, assert_same_store, make_run
from .conftest import size

# Every sync has at least this many write requests, so a kill point drawn from 1..KILL_RANGE is always
# reached: the first pushes at least three runs of four requests each (create, metrics, summary,
# run.json); each later one pushes a new run with over 2 x 64 KiB of metrics and of artifact, that is
# at least 1 (create) + 3 (metrics) + 3 (artifact chunks) + 1 (place it) + 1 (manifest) + 1 (summary)
# + 1 (run.json) = 11 requests.
KILL_RANGE = 10


@pytest.mark.timeout(size(120, 600))  # 20 syncs of ever more runs: about 75 s on a busy 2-core machine
def test_server_killed_at_random_points_during_many_syncs(tmp_path: Path) -> None:
    local = tmp_path / "local"
    rng = random.Random()
    seed = rng.randrange(1_000_000)
    rng.seed(seed)
    runs = [
        make_run(
            local,
            records=rng.randint(10, 3000),
            artifacts={f"a{i}.bin": os.urandom(rng.randint(0, 200_000)) for i in range(rng.randint(0, 3))},
        )
        for _ in range(3)
    ]
    srv = ServerProcess(tmp_path / "remote", tmp_path / "server.log")
    syncs = size(3, 20)
    try:
        killed = 0
        missed: list[str] = []
        for i in range(syncs):
            if i > 0:  # new data between syncs, as on a laptop that trains again
                runs.append(
                    make_run(
                        local,
                        records=rng.randint(2000, 4000),
                        artifacts={"w.bin": os.urandom(rng.randint(140_000, 300_000))},
                    )
                )
            kill = f"{rng.choice(['before', 'during', 'after'])}:{rng.randint(1, KILL_RANGE)}"
            srv.start(kill=kill)
            client = AmltrackRemote(srv.url, WRITE_TOKEN, backoff=0.02)
            try:
                sync(local, client)
            finally:
                client.close()
            srv.stop()  # dead already if the kill point was reached; stopped otherwise
            if srv.proc is not None and srv.proc.returncode == -9:
                killed += 1
            else:
                missed.append(f"sync {i} ({kill}, {client.writes} writes answered)")
        # Every kill point lies within its sync's requests, so every sync must have killed the server:
        # fewer means a sync stopped short of what it had to send.
        assert killed == syncs, (
            f"seed {seed}: only {killed} of {syncs} syncs reached their kill point: {missed}"
        )
        srv.start()
        client = AmltrackRemote(srv.url, WRITE_TOKEN, backoff=0.02)
        try:
            report = sync(local, client, all_runs=True)
            assert report.ok, (seed, report.runs)
            again = sync(local, client, all_runs=True, verify=True)
            assert again.ok and again.bytes == 0, (seed, again.runs)
        finally:
            client.close()
        assert_same_store(local, srv.store, runs)
        assert sorted(r.id for r in amltrack.Store(srv.store).runs()) == sorted(runs)
    finally:
        srv.stop()


def test_many_clients_sync_at_once(tmp_path: Path) -> None:
    n = size(5, 20)
    srv = ServerProcess(tmp_path / "remote", tmp_path / "server.log", max_body=1 << 20).start()
    try:
        locals_ = [tmp_path / f"laptop{i}" for i in range(n)]
        ids = [
            make_run(d, records=500 + 37 * i, artifacts={"w.bin": os.urandom(50_000 + i)})
            for i, d in enumerate(locals_)
        ]
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "amltrack", "sync", "--to", srv.url, "--store", str(d), "--json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=child_env(AMLTRACK_TOKEN=WRITE_TOKEN),
            )
            for d in locals_
        ]
        for p in procs:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err
        for d, rid in zip(locals_, ids):
            assert_same_store(d, srv.store, [rid])
        assert len(amltrack.Store(srv.store).runs()) == n
    finally:
        srv.stop()
