"""The sync loop: which runs to push, the ledger, one run's failure never stopping the others."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import _assets, _redact
from .. import _format as fmt
from .._errors import AmltrackError, StoreError
from .._store import Store
from . import _ledger as ledger
from ._assets import AssetOutcome, asset_counts, push_assets
from ._config import RemoteEntry, Remotes
from ._errors import RemoteError, RemoteUnavailableError, SyncError
from ._local import Snapshot, snapshot
from ._remote import NullProgress, Progress, PushResult, Remote
from ._targets import TARGETS, check_url, open_remote
from ._targets import get as get_kind

ENDED = ("completed", "failed", "killed", "crashed")
NOT_TRIED = "not tried"  # how the reason of a run starts when a remote-wide error stopped the sync


@dataclass
class RunOutcome:
    """What sync did with one run.

    ``outcome`` is ``pushed``, ``up_to_date``, ``would_push`` (dry run), ``skipped`` or ``failed``;
    ``reason`` says why for the last two (``not tried: ...`` for the runs after a remote-wide
    error). ``differences`` is None unless verified.
    """

    id: str
    outcome: str
    status: str | None = None
    bytes: int = 0
    writes: int = 0
    reason: str | None = None
    differences: list[str] | None = None


@dataclass
class SyncReport:
    """What a sync did with each run; ``stopped`` is the error that stopped it early, if one did
    (the remote unreachable, a token refused, a URL that is not a server of its kind)."""

    remote: str
    url: str
    dry_run: bool = False
    runs: list[RunOutcome] = field(default_factory=list)
    stopped: str | None = None
    assets: list[AssetOutcome] = field(default_factory=list)
    # Why no asset was pushed, when the remote takes none (an MLflow server) or the sync stopped.
    assets_skipped: str | None = None

    def _with(self, outcome: str) -> list[RunOutcome]:
        return [r for r in self.runs if r.outcome == outcome]

    @property
    def pushed(self) -> list[RunOutcome]:
        return self._with("pushed")

    @property
    def failed(self) -> list[RunOutcome]:
        return self._with("failed")

    @property
    def differing(self) -> list[RunOutcome]:
        return [r for r in self.runs if r.differences]

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.runs) + sum(a.bytes for a in self.assets)

    @property
    def ok(self) -> bool:
        """No run or asset failed and --verify found no difference."""
        return not self.failed and not self.differing and not any(a.outcome == "failed" for a in self.assets)

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in ("pushed", "up_to_date", "would_push", "skipped", "failed")}
        for r in self.runs:
            out[r.outcome] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "url": self.url,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "bytes": self.bytes,
            "counts": self.counts(),
            "stopped": self.stopped,
            "runs": [asdict(r) for r in self.runs],
            "asset_counts": asset_counts(self.assets),
            "assets": [asdict(a) for a in self.assets],
            "assets_skipped": self.assets_skipped,
        }


def _select(store: Store, refs: list[str] | None) -> list[str]:
    if not refs:
        return sorted(store.run_ids())  # oldest first
    ids: list[str] = []
    for ref in refs:
        rid = store.run(ref).id
        if rid not in ids:
            ids.append(rid)
    return ids


def _open(to: str | RemoteEntry | Remote | None, remotes: Remotes | None) -> tuple[Remote, str, bool]:
    if to is not None and not isinstance(to, (str, RemoteEntry)):
        return to, to.url, False
    entry = to if isinstance(to, RemoteEntry) else (remotes or Remotes.load()).resolve(to)
    get_kind(entry.kind, entry.label)  # a kind this amltrack cannot push to fails here, not per run
    return _Deferred(entry), entry.label, True


def _takes_assets(kind: str) -> bool:
    return kind in TARGETS and TARGETS[kind].assets


class _Deferred:
    """A remote opened on first use. A re-sync whose ledger answers for every run makes no request,
    and so need not import httpx and set up a client (about 0.2 s of a 100-run re-sync's 0.5)."""

    def __init__(self, entry: RemoteEntry) -> None:
        self.entry = entry
        self.kind = entry.kind
        self.url = check_url(entry.url)  # what the remote's own client makes of it: the ledger's key
        self._remote: Remote | None = None

    def __getattr__(self, name: str) -> Any:
        if self._remote is None:
            self._remote = open_remote(self.entry)
        return getattr(self._remote, name)

    def close(self) -> None:
        if self._remote is not None:
            self._remote.close()


def sync(
    store: str | os.PathLike[str] | Store | None = None,
    to: str | RemoteEntry | Remote | None = None,
    *,
    runs: list[str] | None = None,
    all_runs: bool = False,
    include_running: bool = False,
    dry_run: bool = False,
    verify: bool = False,
    progress: Progress | None = None,
    remotes: Remotes | None = None,
    lock_timeout: float = ledger.LOCK_TIMEOUT,
    on_wait: Callable[[str], None] | None = None,
    allow_secrets: bool = False,
) -> SyncReport:
    """Push the store's ended runs (or ``runs``) to a remote: a URL, a remote's name, or the default.

    A run whose ledger shows it unchanged since its last complete push is not asked about unless
    ``all_runs``; ``include_running`` also pushes the new tail of running runs; ``verify`` compares every
    run on the remote by hash afterwards. Nothing raises for one run: see the report. An error that
    every run would meet (see ``SyncError.remote_wide``) stops the sync: the runs after it are
    reported failed, "not tried", without a request.

    A run another sync is pushing to the same remote is waited for, up to ``lock_timeout`` seconds
    (``on_wait`` is told if that takes a while), and then asked about again, so overlapping syncs
    take turns and send nothing twice.

    A run whose run.json holds a value that the redaction rules would replace (recorded by an older
    amltrack, with ``redact=False``, or edited by hand) is not sent: it fails, saying which fields,
    unless ``allow_secrets`` (``docs/redaction.md``).

        report = amltrack.sync.sync(to="team")
        print(report.counts(), report.ok)
    """
    store = store if isinstance(store, Store) else Store(store)
    ids = _select(store, runs)
    remote, label, owned = _open(to, remotes)
    report = SyncReport(remote=label, url=remote.url, dry_run=dry_run)
    key = ledger.remote_key(remote.kind, remote.url)
    progress = progress or NullProgress()
    assets = _assets.list_assets(store)
    if runs:
        assets = [a for a in assets if a.info.get("source_run") in ids]
    progress.begin(len(ids) + (len(assets) if _takes_assets(remote.kind) else 0))
    secrets = None if allow_secrets else _redact.check_rules()
    try:
        for i, rid in enumerate(ids):
            try:
                outcome = _sync_run(
                    store,
                    rid,
                    remote,
                    key,
                    explicit=bool(runs),
                    all_runs=all_runs,
                    include_running=include_running,
                    dry_run=dry_run,
                    verify=verify,
                    progress=progress,
                    lock_timeout=lock_timeout,
                    on_wait=on_wait,
                    secrets=secrets,
                )
            except _Stopped as stop:  # every other run would fail the same way
                report.stopped = str(stop.error)
                report.runs.append(stop.outcome)
                why = _why_stopped(stop.error, remote.url)
                report.runs += [RunOutcome(r, "failed", reason=f"{NOT_TRIED}: {why}") for r in ids[i + 1 :]]
                break
            finally:
                progress.finish()
            if outcome is not None:
                report.runs.append(outcome)
        if report.stopped:
            report.assets_skipped = f"{NOT_TRIED}: the sync stopped"
        elif not _takes_assets(remote.kind):
            if assets:
                takers = " and ".join(k.name for k in TARGETS.values() if k.assets)
                report.assets_skipped = f"assets go to {takers} servers only, not to {remote.kind} servers"
        else:
            report.assets, error = push_assets(
                assets,
                remote,
                key,
                all_assets=all_runs,
                dry_run=dry_run,
                progress=progress,
                not_tried=NOT_TRIED,
            )
            if error is not None:
                report.stopped = str(error)
    finally:
        if owned:
            remote.close()
    return report


def _sync_run(
    store: Store,
    rid: str,
    remote: Remote,
    key: str,
    *,
    explicit: bool,
    all_runs: bool,
    include_running: bool,
    dry_run: bool,
    verify: bool,
    progress: Progress,
    lock_timeout: float,
    on_wait: Callable[[str], None] | None,
    secrets: _redact.Rules | None = None,
) -> RunOutcome | None:
    """One run's outcome, or None for a folder that is not a run; _Stopped for a remote-wide error."""
    run_dir = store.runs_dir / rid
    try:
        snap = snapshot(store, rid)
    except OSError as e:  # StoreError included: a corrupt or unreadable run
        if isinstance(e, StoreError) and not explicit and not (run_dir / fmt.RUN_FILE).exists():
            return None  # being created, or not a run: the store's listing skips it too
        return RunOutcome(rid, "failed", reason=str(e))
    out = RunOutcome(rid, "up_to_date")
    try:
        out.status = snap.status
        if out.status not in ENDED and not include_running:
            out.outcome, out.reason = (
                "skipped",
                f"{out.status}; pass --include-running to push its new records",
            )
            return out
        entry = ledger.read(run_dir, key)
        if all_runs or not _unchanged(entry, snap):
            if secrets is not None:
                _check_secrets(snap, secrets)
            if dry_run:
                result = remote.push_run(
                    snap, progress, dry_run=True, check=all_runs or _distrusted(entry), **_ledgered(entry)
                )
                out.bytes = result.planned
                out.outcome = "would_push" if result.planned else "up_to_date"
                _check_refused(snap, "it would not be sent")
            else:
                with ledger.locked(run_dir, key, timeout=lock_timeout, on_wait=on_wait):
                    # Read again under the lock: another sync may have pushed the run while this one
                    # waited, and then there is nothing to ask; else the push asks the remote afresh.
                    entry = ledger.read(run_dir, key)
                    if all_runs or not _unchanged(entry, snap):
                        result = remote.push_run(
                            snap, progress, check=all_runs or _distrusted(entry), **_ledgered(entry)
                        )
                        out.bytes, out.writes = result.sent, result.writes
                        # Not recorded as complete: the next sync looks again, and says so again.
                        _check_refused(snap, "the run's other files were pushed")
                        _check_unsent(snap, result)
                        _record(snap, key, remote, entry, result.sent, result.remote)
                        out.outcome = "pushed" if result.writes else "up_to_date"
        if verify:
            # The ledger as the push above left it: a remote that keeps its place there (an MLflow
            # run's id) finds the run without a search.
            state = _ledgered(ledger.read(run_dir, key))["remote_state"]
            out.differences = remote.verify_run(snap, state)
            if out.differences:
                with ledger.locked(run_dir, key, timeout=lock_timeout, on_wait=on_wait):
                    _distrust(run_dir, key, remote, rid)
    except SyncError as e:
        out.outcome, out.reason = "failed", str(e)
        if e.remote_wide:
            raise _Stopped(out, e) from e
    except (AmltrackError, OSError) as e:
        out.outcome, out.reason = "failed", str(e)
    return out


def _check_refused(snap: Snapshot, then: str) -> None:
    """Fail the run if an artifact was left out of the push because a symlink is on its way."""
    refusal = snap.refusal()
    if refusal is not None:
        raise SyncError(f"{refusal}; {then}")


def _check_secrets(snap: Snapshot, rules: _redact.Rules) -> None:
    """Fail the run, before anything of it is sent, if its run.json holds what redaction would replace."""
    counts = rules.run_info(snap.info)[1]
    if counts:
        n = sum(counts.values())
        where = ", ".join(f"{field}: {k}" for field, k in sorted(counts.items()))
        raise SyncError(
            f"run {snap.id} was not sent: its {fmt.RUN_FILE} holds {n} value(s) that look like secrets "
            f"({where}); replace them with {_redact.MARKER} in {snap.dir / fmt.RUN_FILE}, or pass "
            "--allow-secrets to send them as they are"
        )


def _check_unsent(snap: Snapshot, result: PushResult) -> None:
    """Fail the run if an artifact could not be sent, saying what was."""
    if result.unsent:
        path, why = next(iter(sorted(result.unsent.items())))
        more = f" (and {len(result.unsent) - 1} more)" if len(result.unsent) > 1 else ""
        raise SyncError(
            f"artifact {path!r} of run {snap.id}{more} was not sent: {why}; the rest of the run was "
            f"pushed ({result.sent} bytes)"
        )


class _Stopped(Exception):
    """A run failed with an error that every other run would meet: the sync stops."""

    def __init__(self, outcome: RunOutcome, error: SyncError) -> None:
        self.outcome, self.error = outcome, error


def _ledgered(entry: dict[str, Any] | None) -> dict[str, Any]:
    """What a remote is told of the ledger entry: ``known`` artifact hashes and its ``remote_state``."""
    entry = entry or {}
    state = entry.get("remote_state")
    return {"known": entry.get("artifacts"), "remote_state": state if isinstance(state, dict) else None}


def _unchanged(entry: dict[str, Any] | None, snap: Snapshot) -> bool:
    """The ledger shows the run's last push complete, and the run unchanged since."""
    return bool(entry and entry.get("complete") and entry.get("local") == snap.fingerprint())


def _distrusted(entry: dict[str, Any] | None) -> bool:
    """--verify found the remote's copy different since the last complete push (see _distrust)."""
    return bool(entry and entry.get("recheck"))


def _distrust(run_dir: Path, key: str, remote: Remote, rid: str) -> None:
    """Mark the ledger entry after --verify found a difference: the next sync asks the remote, and
    checks what it holds of every artifact instead of trusting its record of the last push (an
    MLflow run's artifacts digest). The entry's remote state stays, and so do its artifact hashes,
    which spare hashing unchanged files. Under the run's lock, so that a push that ends meanwhile
    cannot write over the mark; with --dry-run too, since only the local ledger changes."""
    entry = ledger.read(run_dir, key) or {"kind": remote.kind, "remote": remote.url, "run": rid}
    ledger.write(run_dir, key, {**entry, "complete": False, "recheck": True})


def _why_stopped(e: SyncError, url: str) -> str:
    if isinstance(e, RemoteUnavailableError):
        return f"{url} is unreachable"
    if isinstance(e, RemoteError):
        return f"{url} refused the request ({e.status} {e.code})"
    return f"{url} cannot be used (see the first failed run)"


def _record(
    snap: Snapshot,
    key: str,
    remote: Remote,
    previous: dict[str, Any] | None,
    sent: int,
    remote_state: dict[str, Any],
) -> None:
    ledger.write(
        snap.dir,
        key,
        {
            "kind": remote.kind,
            "remote": remote.url,
            "run": snap.id,
            "complete": True,
            "status": snap.status,
            "local": snap.fingerprint(),
            "artifacts": {
                p: {"sha256": f.sha256, "size": f.size, "mtime_ns": f.mtime_ns}
                for p, f in sorted(snap.artifact_files().items())
            },
            "remote_state": remote_state,
            "pushed": fmt.utc_iso(time.time()),
            "bytes_sent": int((previous or {}).get("bytes_sent") or 0) + sent,
        },
    )
