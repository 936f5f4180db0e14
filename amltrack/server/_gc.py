"""``amltrack server gc``: remove what no row of a team server's database needs any more.

    report = collect_garbage(team, older_than=3600, dry_run=True)
    report.to_dict()["objects"]                # {"count": 3, "bytes": 196608, "keys": [...]}

Three kinds of garbage, each older than a grace period:

- objects in the bucket that no row names (``pieces``, ``upload_parts``, ``blob_parts``): an append
  or upload chunk puts its object, then commits the row that names it, so a replica killed between
  the two leaves an object nobody needs. But an append in flight is, for a moment, in that same
  state: only objects older than ``older_than`` (by the bucket's last-modified time) go, so a write
  must take longer than the grace period between its put and its commit to lose its object (the
  default, an hour, is far beyond any request's time). Only keys amltrack makes (``runs/`` and
  ``uploads/`` under the prefix) are considered: other files under the prefix are left alone.
- uploads (and their parts) untouched for ``uploads_older_than``: a push abandoned mid-artifact. A
  client that comes back to one starts it again from 0 (it is told so by a 409).
- blobs no artifact or asset file names, created more than ``older_than`` ago: content whose run
  or asset was never finished. A blob is made a moment before the artifact row that names it is
  committed, so the same grace period protects it; and a placement holds the blob's row
  (``FOR KEY SHARE``) until it commits, so gc, which locks it ``FOR UPDATE`` and looks again, never
  removes a blob that a placement is naming.

Rows go first, in their own transactions, then their objects: a crash in between leaves objects no
row names, which the next gc removes.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._team import TeamStore

DEFAULT_OLDER_THAN = 3600.0  # seconds: an object, or a blob, must be this old before gc takes it
DEFAULT_UPLOADS_OLDER_THAN = 7 * 86400.0  # seconds an abandoned upload is kept for its client to resume
_BATCH = 1000  # keys looked up per query, and removed per DeleteObjects (S3's limit)
_OWN_TOPS = ("runs/", "uploads/")  # what Objects.new_key makes under the prefix (see TeamStore)


@dataclasses.dataclass
class Tally:
    """Count and bytes of one kind of garbage; ``keys`` the bucket objects among it."""

    count: int = 0
    bytes: int = 0
    keys: list[str] = dataclasses.field(default_factory=list)

    def add(self, key: str | None, size: int) -> None:
        self.count += 1
        self.bytes += size
        if key is not None:
            self.keys.append(key)

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "bytes": self.bytes, "keys": self.keys}


@dataclasses.dataclass
class GcReport:
    """What gc removed (or, with ``dry_run``, would remove), and the unnamed objects it kept as too young."""

    target: str
    dry_run: bool
    older_than: float
    uploads_older_than: float
    objects: Tally = dataclasses.field(default_factory=Tally)  # unnamed objects
    uploads: Tally = dataclasses.field(default_factory=Tally)  # abandoned uploads, bytes of their parts
    blobs: Tally = dataclasses.field(default_factory=Tally)  # unnamed blobs, bytes of their parts
    kept: Tally = dataclasses.field(default_factory=Tally)  # unnamed objects younger than older_than

    def removed_bytes(self) -> int:
        return self.objects.bytes + self.uploads.bytes + self.blobs.bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "dry_run": self.dry_run,
            "older_than": self.older_than,
            "uploads_older_than": self.uploads_older_than,
            "objects": self.objects.to_dict(),
            "uploads": self.uploads.to_dict(),
            "blobs": self.blobs.to_dict(),
            "kept": self.kept.to_dict(),
            "bytes": self.removed_bytes(),
        }


def collect_garbage(
    team: TeamStore,
    *,
    older_than: float = DEFAULT_OLDER_THAN,
    uploads_older_than: float = DEFAULT_UPLOADS_OLDER_THAN,
    dry_run: bool = False,
) -> GcReport:
    """Remove (or with ``dry_run`` only list) abandoned uploads, unnamed blobs and unnamed objects."""
    for what, value in (("older_than", older_than), ("uploads_older_than", uploads_older_than)):
        if not value >= 0:
            raise ValueError(f"{what} is {value!r}; give a number of seconds, 0 or more")
    report = GcReport(team.url, dry_run, older_than, uploads_older_than)
    _uploads(team, report)
    _blobs(team, report)
    _objects(team, report)
    return report


def _uploads(team: TeamStore, report: GcReport) -> None:
    with team._tx("finding abandoned uploads") as conn:
        stale = conn.execute(
            "SELECT owner, sha256 FROM uploads WHERE updated_at < now() - make_interval(secs => %s) "
            "ORDER BY owner, sha256",
            (report.uploads_older_than,),
        ).fetchall()
    for owner, sha in stale:
        with team._tx(f"removing upload {sha[:12]} of {owner}") as conn:
            # Locked, and looked at again: a chunk arriving now (it locks the row too) keeps it.
            row = conn.execute(
                "SELECT 1 FROM uploads WHERE owner = %s AND sha256 = %s "
                "AND updated_at < now() - make_interval(secs => %s) FOR UPDATE SKIP LOCKED",
                (owner, sha, report.uploads_older_than),
            ).fetchone()
            if row is None:
                continue
            parts = conn.execute(
                "SELECT key, length FROM upload_parts WHERE owner = %s AND sha256 = %s", (owner, sha)
            ).fetchall()
            if not report.dry_run:
                conn.execute(
                    "DELETE FROM uploads WHERE owner = %s AND sha256 = %s", (owner, sha)
                )  # parts cascade
        report.uploads.count += 1
        for key, length in parts:
            report.uploads.bytes += length
            report.uploads.keys.append(key)
        if not report.dry_run:
            team.objects.delete([k for k, _ in parts], "removing an abandoned upload")


def _blobs(team: TeamStore, report: GcReport) -> None:
    unnamed = (
        "created_at < now() - make_interval(secs => %s) "
        "AND NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.sha256 = b.sha256) "
        "AND NOT EXISTS (SELECT 1 FROM asset_files f WHERE f.sha256 = b.sha256)"
    )
    with team._tx("finding unnamed contents") as conn:
        found = conn.execute(
            f"SELECT sha256 FROM blobs b WHERE {unnamed} ORDER BY sha256",  # noqa: S608 - a fixed condition
            (report.older_than,),
        ).fetchall()
    for (sha,) in found:
        with team._tx(f"removing content {sha[:12]}") as conn:
            # FOR UPDATE waits for a placement that holds the blob (FOR KEY SHARE) to commit; then
            # the condition, looked at again, sees the artifact row it made.
            row = conn.execute(
                f"SELECT 1 FROM blobs b WHERE sha256 = %s AND {unnamed} FOR UPDATE",  # noqa: S608
                (sha, report.older_than),
            ).fetchone()
            if row is None:
                continue
            parts = conn.execute("SELECT key, length FROM blob_parts WHERE sha256 = %s", (sha,)).fetchall()
            if not report.dry_run:
                conn.execute("DELETE FROM blobs WHERE sha256 = %s", (sha,))  # parts cascade
        report.blobs.count += 1
        for key, length in parts:
            report.blobs.bytes += length
            report.blobs.keys.append(key)
        if not report.dry_run:
            team.objects.delete([k for k, _ in parts], "removing an unnamed content")


def _objects(team: TeamStore, report: GcReport) -> None:
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=report.older_than)
    prefix = team.objects.prefix
    page: list[tuple[str, int, datetime]] = []

    def sweep() -> None:
        keys = [k for k, _, _ in page]
        with team._tx("looking up objects") as conn:
            named = {
                r[0]
                for r in conn.execute(
                    "SELECT key FROM pieces WHERE key = ANY(%s) UNION ALL "
                    "SELECT key FROM upload_parts WHERE key = ANY(%s) UNION ALL "
                    "SELECT key FROM blob_parts WHERE key = ANY(%s)",
                    (keys, keys, keys),
                ).fetchall()
            }
        gone = []
        for key, size, modified in page:
            if key in named:
                continue
            if modified < cutoff:
                report.objects.add(key, size)
                gone.append(key)
            else:
                report.kept.add(key, size)
        if gone and not report.dry_run:
            team.objects.delete(gone, "removing unnamed objects")
        page.clear()

    for key, size, modified in team.objects.list("listing the bucket"):
        if not key[len(prefix) :].startswith(_OWN_TOPS):
            continue
        page.append((key, size, modified))
        if len(page) >= _BATCH:
            sweep()
    if page:
        sweep()
