"""Speed of `amltrack server migrate --from-store` and `amltrack server gc` against the PostgreSQL at
127.0.0.1:5432 and moto's S3 server on loopback.

    python benchmarks/bench_migrate.py                # 10 runs of 100,000 points and a 20 MB artifact
    python benchmarks/bench_migrate.py --smoke --json # tiny sizes, run by the test suite

The embedded server's store is made as a push leaves it: runs logged by the real logger, their
folders placed under DIR/runs/ (a pushed run is byte for byte the local one). One migration is
timed in-process (``migrate_store``), split into its copy and its check (which reads every byte
back from the bucket) by the progress it reports; then a second migration, which finds everything
there, and a gc dry run over the bucket. moto keeps objects in memory in one Python process, so a
real S3 or MinIO is faster per request; the machine has 2 cores shared with other jobs, so repeat
the command and expect figures to vary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_bucket import AWS, Moto  # noqa: E402

MB = 1_000_000


def make_source(root: Path, runs: int, points: int, artifact: int) -> int:
    """An embedded server's store of ``runs`` runs under ``root``; its bytes."""
    import amltrack

    local = root / "local"
    blob = os.urandom(artifact)
    for r in range(runs):
        with amltrack.start_run("bench-migrate", store=local, outputs=None, params={"r": r}) as lg:
            for i in range(points):
                lg.log("loss", 1.0 / (i + 1))
            if artifact:
                lg.upload("weights.bin", blob[:-1] + bytes([r % 256]))  # each run its own content
    store = root / "server"
    (store / ".server" / "incoming").mkdir(parents=True)
    total = 0
    for d in (local / "runs").iterdir():
        shutil.copytree(d, store / "runs" / d.name, ignore=shutil.ignore_patterns("sync", "cache"))
    for dirpath, _dirs, names in os.walk(store / "runs"):
        total += sum(os.path.getsize(os.path.join(dirpath, n)) for n in names)
    return total


class Phases:
    """A MigrateProgress that notes when each phase begins."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    def begin(self, phase: str, items: int, total_bytes: int) -> None:
        self.at[phase] = time.perf_counter()

    def item(self, name: str, total_bytes: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def end(self) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = ap.parse_args()
    runs, points, artifact = (3, 2_000, 200_000) if a.smoke else (10, 100_000, 20 * MB)
    os.environ.update(AWS)

    import psycopg

    from amltrack.server import Database, Objects, TeamStore, collect_garbage, migrate_store

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.database_helpers import create_database, drop_database, unique_name

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-migrate-") as tmp, Moto() as moto:
        size = make_source(Path(tmp), runs, points, artifact)
        moto.s3.create_bucket(Bucket="bench-migrate")
        name = unique_name()
        url = create_database(name)
        try:
            team = TeamStore(
                Database.open(url), Objects.open("s3://bench-migrate/team", endpoint=moto.endpoint)
            )
            try:
                phases = Phases()
                start = time.perf_counter()
                report = migrate_store(Path(tmp) / "server", team, progress=phases)  # type: ignore[arg-type]
                end = time.perf_counter()
                assert report.ok and len(report.runs) == runs, report.to_dict()
                copy_s = phases.at["verifying"] - start
                figures.update(
                    runs=runs,
                    mb=size / MB,
                    copy_s=copy_s,
                    copy_mb_s=size / MB / copy_s,
                    verify_s=end - phases.at["verifying"],
                    verify_mb_s=size / MB / (end - phases.at["verifying"]),
                )
                start = time.perf_counter()
                again = migrate_store(Path(tmp) / "server", team)
                figures["rerun_s"] = time.perf_counter() - start
                assert again.ok and again.bytes == 0, again.to_dict()
                start = time.perf_counter()
                gc = collect_garbage(team, older_than=0, dry_run=True)
                figures["gc_dry_run_s"] = time.perf_counter() - start
                assert gc.objects.count == 0, gc.to_dict()
                with psycopg.connect(url) as conn:
                    figures["objects"] = sum(
                        conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
                        for t in ("pieces", "blob_parts")
                    )
            finally:
                team.close()
        finally:
            drop_database(name)
    if a.json:
        print(json.dumps(figures))
        return
    print(
        f"{runs} runs of {points:,} points and a {artifact / MB:g} MB artifact each: {figures['mb']:.1f} MB"
    )
    print(f"copy:    {figures['copy_s']:.2f} s ({figures['copy_mb_s']:.1f} MB/s)")
    print(f"check:   {figures['verify_s']:.2f} s ({figures['verify_mb_s']:.1f} MB/s, every byte read back)")
    print(f"again:   {figures['rerun_s']:.2f} s (everything already there: hashes DIR's artifacts again)")
    print(f"gc:      {figures['gc_dry_run_s']:.2f} s (dry run over {figures['objects']:.0f} objects)")


if __name__ == "__main__":
    main()
