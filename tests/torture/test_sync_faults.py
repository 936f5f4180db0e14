"""Sync under faults: the server SIGKILLed at random points of many syncs, and many clients at once."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import amltrack
from amltrack.sync import AmltrackRemote, sync

from ..conftest import child_env
from ..sync_helpers import WRITE_TOKEN, ServerProcess, assert_same_store, make_run
from .conftest import size


def test_server_killed_at_random_points_during_many_syncs(tmp_path: Path) -> None:
    local = tmp_path / "local"
    rng = random.Random()
    seed = rng.randrange(1_000_000)
    rng.seed(seed)
    runs = [make_run(local, records=rng.randint(10, 3000),
                     artifacts={f"a{i}.bin": os.urandom(rng.randint(0, 200_000)) for i in range(rng.randint(0, 3))})
            for _ in range(3)]
    srv = ServerProcess(tmp_path / "remote", tmp_path / "server.log")
    try:
        killed = 0
        for i in range(size(3, 20)):
            if rng.random() < 0.5:  # new data appears between syncs, as on a laptop that trains again
                runs.append(make_run(local, records=rng.randint(10, 500)))
            # The first push has at least three runs, so at least three write requests: a kill point
            # among them is always reached, and later ones may fall past a small push's last request.
            kill = f"{rng.choice(['before', 'during', 'after'])}:{rng.randint(1, 3 if i == 0 else 12)}"
            srv.start(AMLTRACK_TEST_SERVER_KILL=kill)
            client = AmltrackRemote(srv.url, WRITE_TOKEN, backoff=0.02)
            try:
                sync(local, client)
            finally:
                client.close()
            srv.stop()  # dead already if the kill point was reached; stopped otherwise
            if srv.proc is not None and srv.proc.returncode == -9:
                killed += 1
        assert killed >= 1, f"seed {seed}: no sync reached its kill point"
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
        ids = [make_run(d, records=500 + 37 * i, artifacts={"w.bin": os.urandom(50_000 + i)})
               for i, d in enumerate(locals_)]
        procs = [subprocess.Popen([sys.executable, "-m", "amltrack", "sync", "--to", srv.url, "--store", str(d),
                                   "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=child_env(AMLTRACK_TOKEN=WRITE_TOKEN)) for d in locals_]
        for p in procs:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err
        for d, rid in zip(locals_, ids):
            assert_same_store(d, srv.store, [rid])
        assert len(amltrack.Store(srv.store).runs()) == n
    finally:
        srv.stop()
