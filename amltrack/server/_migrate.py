"""``amltrack server migrate --from-store DIR``: an embedded server's runs and assets, copied into a
team server's database and bucket, resumably, then checked byte for byte.

    team = TeamStore(Database.open("postgresql://amltrack@db/amltrack"), Objects.open("s3://team/amltrack"))
    report = migrate_store("/srv/amltrack", team)
    report.ok                                  # every run and asset on the team, equal to DIR's

Everything goes in through ``TeamStore``'s own writes, as a client's push would: the run created,
its metrics.jsonl and artifacts.jsonl appended from the committed lengths in pieces cut at line ends,
each artifact uploaded by content and placed, summary.json, then run.json, which publishes it. So
every invariant of the team server holds while a migration runs (replicas may serve meanwhile) and a
migration killed at any instant leaves what a killed push leaves: at most objects no row names, for
``amltrack server gc``. Run again, it asks the team what it holds (``TeamStore.state``): a run
published with DIR's lengths, files and artifacts is skipped, a partly copied one continues from
its committed lengths. Assets keep their version numbers (``TeamAssets.place_version``).

DIR is only read, never written or locked: its server may go on serving it. A run that changes in DIR
meanwhile (a push resumed there) is copied as it was when read, and the check at the end, which
compares sizes and SHA-256 of every file of every run and asset with DIR's as they are then, says
it differs; running again brings it up to date. Runs DIR holds staged (pushed, not finalised) are
reported and left out, as the embedded server never shows them either.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _format as fmt
from .._errors import AmltrackError, InvalidPathError
from .._web._errors import ApiError
from ._storage import APPEND_FILES
from ._team import PieceReader, TeamAssets

if TYPE_CHECKING:
    from ._team import TeamStore

PIECE = 16 << 20  # bytes per append or upload chunk: one bucket object each, as a client's body at most
_HASH_BLOCK = 1 << 20


class NotAServerStoreError(AmltrackError, ValueError):
    """``--from-store DIR`` is not the store of an embedded ``amltrack server``."""

    def __init__(self, path: Path, why: str) -> None:
        self.path = path
        super().__init__(
            f"{path} is not an amltrack server's store ({why}); give the --store DIR an 'amltrack server' "
            "serves (a local store's runs go to a team server with 'amltrack sync --to URL')"
        )


class MigrationError(AmltrackError, RuntimeError):
    """The migration stopped: the team's database or bucket failed. Running it again continues."""


class MigrateProgress:
    """What a migration tells as it goes; this one tells nothing (the CLI draws bars)."""

    def begin(self, phase: str, items: int, total_bytes: int) -> None:
        """A phase ("copying" or "verifying") of ``items`` runs and assets, ``total_bytes`` in all."""

    def item(self, name: str, total_bytes: int) -> None:
        """One run ("run ID") or asset version ("asset NAME:V") begins."""

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more of the current item copied, found already there, or checked."""

    def end(self) -> None:
        """The current item is done."""


@dataclasses.dataclass
class MigrationReport:
    """What a migration did: per run and asset version an outcome, and what the check found."""

    source: str
    target: str
    runs: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> copied|up_to_date|failed
    assets: dict[str, str] = dataclasses.field(default_factory=dict)  # NAME:V -> placed|up_to_date|failed
    staged: list[str] = dataclasses.field(default_factory=list)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> why it was not copied
    failures: dict[str, str] = dataclasses.field(default_factory=dict)  # run id or NAME:V -> why
    differences: list[str] = dataclasses.field(default_factory=list)
    verified_runs: int = 0
    verified_assets: int = 0
    bytes: int = 0  # bytes sent to the team (pieces and uploads)

    @property
    def ok(self) -> bool:
        return not self.failures and not self.differences

    def to_dict(self) -> dict[str, Any]:
        def count(outcomes: dict[str, str]) -> dict[str, int]:
            names = (
                ("copied", "up_to_date", "failed")
                if outcomes is self.runs
                else ("placed", "up_to_date", "failed")
            )
            return {n: sum(1 for v in outcomes.values() if v == n) for n in names}

        return {
            "source": self.source,
            "target": self.target,
            "ok": self.ok,
            "bytes": self.bytes,
            "runs": self.runs,
            "run_counts": count(self.runs),
            "assets": self.assets,
            "asset_counts": count(self.assets),
            "staged": self.staged,
            "skipped": self.skipped,
            "failures": self.failures,
            "verified": {"runs": self.verified_runs, "assets": self.verified_assets},
            "differences": self.differences,
        }


# ----------------------------------------------------------------- the source, read only


class _Hashes:
    """SHA-256 of DIR's files, remembered by stat signature: the embedded server replaces files, never
    rewrites them, so the check at the end need not read again what the copy hashed."""

    def __init__(self) -> None:
        self._known: dict[tuple[int, ...], str] = {}

    def of(self, path: Path) -> tuple[int, str]:
        st = path.stat()
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        sha = self._known.get(key)
        if sha is None:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while block := f.read(_HASH_BLOCK):
                    h.update(block)
            sha = self._known[key] = h.hexdigest()
        return st.st_size, sha


@dataclasses.dataclass
class _SourceRun:
    """A published run of DIR as read now: run.json and summary.json bytes, the append files'
    lengths, and its artifacts (path -> file)."""

    id: str
    dir: Path
    run_json: bytes
    summary_json: bytes | None
    sizes: dict[str, int]
    artifacts: dict[str, Path]

    def total(self) -> int:
        return sum(self.sizes.values()) + sum(_size(p) for p in self.artifacts.values())


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def check_server_store(source: str | os.PathLike[str]) -> Path:
    """DIR, if it is an embedded server's store; NotAServerStoreError otherwise."""
    root = Path(source).expanduser().absolute()
    if not root.is_dir():
        raise NotAServerStoreError(root, "no such folder")
    if not (root / fmt.SERVER_DIR).is_dir():
        raise NotAServerStoreError(root, f"it has no {fmt.SERVER_DIR}/ folder, which the server keeps")
    return root


def _source_runs(root: Path, report: MigrationReport) -> list[str]:
    """The ids of DIR's published runs, sorted; staged ones go into the report."""
    incoming = root / fmt.SERVER_DIR / fmt.SERVER_INCOMING
    report.staged = sorted(n for n in _listdir(incoming) if fmt.is_valid_run_id(n))
    return sorted(n for n in _listdir(root / fmt.RUNS_DIR) if fmt.is_valid_run_id(n))


def _listdir(d: Path) -> list[str]:
    try:
        return os.listdir(d)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _read_run(root: Path, run_id: str) -> _SourceRun | str:
    """The run as DIR holds it now, or why it cannot be copied."""
    d = root / fmt.RUNS_DIR / run_id
    try:
        run_json = (d / fmt.RUN_FILE).read_bytes()
    except FileNotFoundError:
        return f"it has no {fmt.RUN_FILE} (a run being written into DIR itself, not pushed)"
    except IsADirectoryError:
        return f"its {fmt.RUN_FILE} is not a file"
    try:
        summary = (d / fmt.SUMMARY_FILE).read_bytes()
    except FileNotFoundError:
        summary = None
    sizes = {name: _size(d / name) for name in APPEND_FILES}
    artifacts: dict[str, Path] = {}
    top = d / fmt.ARTIFACTS_DIR
    for dirpath, _dirs, names in os.walk(top):
        for n in names:
            path = Path(dirpath) / n
            try:
                if not stat.S_ISREG(path.lstat().st_mode):  # the server serves no symlink either
                    continue
            except FileNotFoundError:
                continue
            rel = path.relative_to(top).as_posix()
            try:
                fmt.check_artifact_path(rel)
            except InvalidPathError as e:
                return f"artifact {rel!r} cannot be stored: {e.reason}"
            artifacts[rel] = path
    return _SourceRun(run_id, d, run_json, summary, sizes, artifacts)


def _source_assets(root: Path) -> list[tuple[dict[str, Any], Path]]:
    """Every asset version of DIR (its asset.json, its folder), by name, then version."""
    from .. import _assets

    out = []
    base = root / _assets.ASSETS_DIR
    for name in sorted(_listdir(base)):
        try:
            _assets.check_asset_name(name)
        except AmltrackError:
            continue
        for v in _assets._version_numbers(base / name):
            vdir = base / name / str(v)
            try:
                info = fmt.read_json(vdir / _assets.ASSET_FILE)
            except (FileNotFoundError, NotADirectoryError):
                continue  # a version being made: not a version yet
            out.append((info, vdir))
    return out


# ----------------------------------------------------------------- copying


def migrate_store(
    source: str | os.PathLike[str],
    team: TeamStore,
    *,
    verify_only: bool = False,
    progress: MigrateProgress | None = None,
    piece: int = PIECE,
) -> MigrationReport:
    """Copy DIR's published runs and its assets into ``team`` (unless ``verify_only``), then check
    every file of both against DIR. Never writes into DIR. ``piece`` bounds each append and upload
    chunk (and so each bucket object and the memory held)."""
    if piece < 1:
        raise ValueError(f"piece is {piece!r} bytes; give 1 or more")
    root = check_server_store(source)
    progress = progress or MigrateProgress()
    hashes = _Hashes()
    report = MigrationReport(str(root), team.url)
    run_ids = _source_runs(root, report)
    assets = _source_assets(root)
    if not verify_only:
        _copy(root, team, run_ids, assets, hashes, report, progress, piece)
    _verify(root, team, run_ids, assets, hashes, report, progress)
    return report


def _copy(
    root: Path,
    team: TeamStore,
    run_ids: list[str],
    assets: list[tuple[dict[str, Any], Path]],
    hashes: _Hashes,
    report: MigrationReport,
    progress: MigrateProgress,
    piece: int,
) -> None:
    runs = []
    for run_id in run_ids:
        src = _read_run(root, run_id)
        if isinstance(src, str):
            report.skipped[run_id] = src
        else:
            runs.append(src)
    asset_bytes = sum(_asset_size(info) for info, _ in assets)
    progress.begin("copying", len(runs) + len(assets), sum(r.total() for r in runs) + asset_bytes)
    for src in runs:
        total = src.total()
        progress.item(f"run {src.id}", total)
        meter = _Meter(progress)
        try:
            report.runs[src.id] = _copy_run(team, src, hashes, meter, piece)
        except ApiError as e:
            _fail(report, src.id, e)
            report.runs[src.id] = "failed"
        except OSError as e:  # a file of DIR gone or replaced meanwhile: the next run copies it
            report.failures[src.id] = f"cannot read it in DIR: {e}"
            report.runs[src.id] = "failed"
        report.bytes += meter.sent
        progress.advance(max(0, total - meter.done))
        progress.end()
    for info, vdir in assets:
        ref = f"{info.get('name')}:{info.get('version')}"
        progress.item(f"asset {ref}", _asset_size(info))
        meter = _Meter(progress)
        try:
            report.assets[ref] = _copy_asset(team, info, vdir, meter, report, piece)
        except ApiError as e:
            _fail(report, ref, e)
            report.assets[ref] = "failed"
        except OSError as e:
            report.failures[ref] = f"cannot read it in DIR: {e}"
            report.assets[ref] = "failed"
        report.bytes += meter.sent
        progress.advance(max(0, _asset_size(info) - meter.done))
        progress.end()


def _fail(report: MigrationReport, what: str, e: ApiError) -> None:
    report.failures[what] = _unreadable(what, e)


def _unreadable(what: str, e: ApiError) -> str:
    """``e``'s message, unless the database or bucket is away: then every next step would fail
    alike, and the migration stops (MigrationError)."""
    if e.status == 503:
        raise MigrationError(
            f"the migration stopped at {what}: {e.message.removesuffix('; retry after Retry-After')}; "
            "run the same command again once it answers: it continues where it stopped"
        ) from None
    return e.message


class _Meter:
    """Bytes of one item: ``done`` (copied or found there, for the bar) and ``sent`` (to the team)."""

    def __init__(self, progress: MigrateProgress) -> None:
        self.progress, self.done, self.sent = progress, 0, 0

    def step(self, n: int, *, sent: bool = True) -> None:
        self.done += n
        if sent:
            self.sent += n
        self.progress.advance(n)


def _state(team: TeamStore, run_id: str) -> dict[str, Any] | None:
    try:
        return team.state(run_id)
    except ApiError as e:
        if e.code == "run_not_found":
            return None
        raise


def _sha(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _file_state(state: dict[str, Any], name: str) -> tuple[int, str | None]:
    f = state["files"].get(name)
    return (f["size"], f["sha256"]) if f else (0, None)


def _copy_run(team: TeamStore, src: _SourceRun, hashes: _Hashes, meter: _Meter, piece: int) -> str:
    """Bring the team's copy of ``src`` up to DIR's: "copied", or "up_to_date" if it was."""
    state = _state(team, src.id)
    if state is None:
        team.create(src.id)
        state = team.state(src.id)
    artifacts = {path: hashes.of(p) for path, p in src.artifacts.items()}
    held = {p: (a["size"], a["sha256"]) for p, a in state["artifacts"].items()}
    if (
        state["published"]
        and all(_file_state(state, name)[0] == src.sizes[name] for name in APPEND_FILES)
        and _file_state(state, fmt.RUN_FILE)[1] == _sha(src.run_json)
        and (src.summary_json is None or _file_state(state, fmt.SUMMARY_FILE)[1] == _sha(src.summary_json))
        and held == artifacts
    ):
        return "up_to_date"
    for name in APPEND_FILES:
        _append_rest(team, src, name, _file_state(state, name)[0], meter, piece)
    for path in sorted(set(held) - set(artifacts)):  # removed in DIR since an earlier migration
        team.delete_artifact(src.id, path)
    for path, (size, sha) in sorted(artifacts.items()):
        if held.get(path) == (size, sha):
            meter.step(size, sent=False)
            continue
        _upload(
            lambda *a: team.put_blob(src.id, *a),
            lambda sha: team.blob_state(src.id, sha),
            src.artifacts[path],
            sha,
            size,
            meter,
            piece,
        )
        team.commit_artifact(src.id, path, sha)
    if src.summary_json is not None and _file_state(state, fmt.SUMMARY_FILE)[1] != _sha(src.summary_json):
        team.put_summary(src.id, src.summary_json)
    team.finalise(src.id, src.run_json, src.sizes[fmt.METRICS_FILE], src.sizes[fmt.MANIFEST_FILE])
    return "copied"


def _append_rest(
    team: TeamStore, src: _SourceRun, name: str, committed: int, meter: _Meter, piece: int
) -> None:
    """Append DIR's bytes of ``name`` after the team's ``committed`` ones, in pieces of at most
    ``piece`` bytes that end at a line's end (a longer line is cut where the piece ends)."""
    want = src.sizes[name]
    if committed > want:
        raise ApiError(
            409,
            "offset_mismatch",
            f"the team holds {committed} bytes of {name} of run {src.id}, more than the {want} of "
            f"{src.dir}: the team's copy is not DIR's; leave this run out or remove it from the team",
            committed=committed,
        )
    meter.step(committed, sent=False)
    if committed == want:
        return
    with open(src.dir / name, "rb") as f:
        offset = committed
        while offset < want:
            f.seek(offset)
            block = f.read(min(piece, want - offset))
            if not block:
                raise ApiError(
                    409, "incomplete", f"{name} of run {src.id} in {src.dir} is shorter than {want} bytes now"
                )
            if offset + len(block) < want:
                cut = block.rfind(b"\n") + 1
                block = block[:cut] if cut else block
            offset = team.append(src.id, name, offset, block)
            meter.step(len(block))


def _upload(put: Any, state: Any, path: Path, sha: str, size: int, meter: _Meter, piece: int) -> None:
    """Upload the file ``path`` (content ``sha``, ``size`` bytes) from what the team holds of it:
    nothing if the team has that content, else from its upload's committed length."""
    try:
        held = state(sha)
    except ApiError as e:
        if e.code != "blob_not_found":
            raise
        held = {"complete": False, "size": 0}
    if held["complete"]:
        meter.step(size, sent=False)
        return
    offset = held["size"]
    meter.step(offset, sent=False)
    with open(path, "rb") as f:
        f.seek(offset)
        while True:
            data = f.read(min(piece, size - offset))
            answer = put(sha, offset, size, data)
            offset += len(data)
            meter.step(len(data))
            if answer["complete"]:
                return
            if not data:
                raise ApiError(409, "incomplete", f"{path} is shorter than {size} bytes now")


def _asset_size(info: dict[str, Any]) -> int:
    files = info.get("files")
    return (
        sum(f["size"] for f in files if isinstance(f, dict) and type(f.get("size")) is int)
        if isinstance(files, list)
        else 0
    )


def _copy_asset(
    team: TeamStore, info: dict[str, Any], vdir: Path, meter: _Meter, report: MigrationReport, piece: int
) -> str:
    from .. import _assets
    from ._assets import _files

    name = str(info.get("name"))
    ref = f"{name}:{info.get('version')}"
    assets = TeamAssets(team)
    try:
        held = assets.get(ref)
    except ApiError as e:
        if e.code != "asset_not_found":
            raise
        held = None
    if held is not None:
        if held == info:
            return "up_to_date"
        report.failures[ref] = f"the team already holds another {ref}; its asset.json differs from {vdir}'s"
        return "failed"
    for f in _files(info):
        _upload(
            lambda *a: assets.put_blob(name, *a),
            lambda sha: assets.blob_state(name, sha),
            vdir / _assets.FILES_DIR / f["path"],
            f["sha256"],
            f["size"],
            meter,
            piece,
        )
    placed = assets.place_version(info)
    if placed["existing"] == "differs":
        report.failures[ref] = f"the team already holds {ref} or the same push as another version"
        return "failed"
    return "placed" if placed["existing"] is None else "up_to_date"


# ----------------------------------------------------------------- checking


def _verify(
    root: Path,
    team: TeamStore,
    run_ids: list[str],
    assets: list[tuple[dict[str, Any], Path]],
    hashes: _Hashes,
    report: MigrationReport,
    progress: MigrateProgress,
) -> None:
    """Compare every file of every run and asset version with DIR's, reading the team's back from
    its bucket (a content shared by several files is read once)."""
    runs = []
    for run_id in run_ids:  # read again: the check compares with DIR as it is now
        src = _read_run(root, run_id)
        if isinstance(src, str):
            report.skipped.setdefault(run_id, src)
        else:
            runs.append(src)
    progress.begin(
        "verifying",
        len(runs) + len(assets),
        sum(r.total() for r in runs) + sum(_asset_size(i) for i, _ in assets),
    )
    checked: dict[str, str | None] = {}  # blob -> its SHA-256 as read back, or why it could not be
    for src in runs:
        progress.item(f"run {src.id}", src.total())
        try:
            found = _verify_run(team, src, hashes, checked, progress)
        except ApiError as e:
            found = [f"run {src.id}: cannot be read back: {_unreadable(src.id, e)}"]
        except OSError as e:
            found = [f"run {src.id}: cannot be read in DIR: {e}"]
        report.differences += found
        report.verified_runs += not found
        progress.end()
    for info, vdir in assets:
        ref = f"{info.get('name')}:{info.get('version')}"
        progress.item(f"asset {ref}", _asset_size(info))
        try:
            found = _verify_asset(team, info, vdir, hashes, checked, progress)
        except ApiError as e:
            found = [f"asset {ref}: cannot be read back: {_unreadable(ref, e)}"]
        except OSError as e:
            found = [f"asset {ref}: cannot be read in DIR: {e}"]
        report.differences += found
        report.verified_assets += not found
        progress.end()


def _blob_sha(team: TeamStore, sha: str, size: int, checked: dict[str, str | None]) -> str | None:
    if sha not in checked:
        with team._tx(f"reading content {sha[:12]}") as conn:
            parts = team.blob_parts(conn, sha)
        h = hashlib.sha256()
        n = 0
        with PieceReader(team.objects, parts, size, f"content {sha[:12]}") as f:
            while block := f.read(_HASH_BLOCK):
                h.update(block)
                n += len(block)
        checked[sha] = h.hexdigest() if n == size else None
    return checked[sha]


def _verify_run(
    team: TeamStore,
    src: _SourceRun,
    hashes: _Hashes,
    checked: dict[str, str | None],
    progress: MigrateProgress,
) -> list[str]:
    where = f"run {src.id}"
    try:
        state = team.state(src.id, hashes=True)
    except ApiError as e:
        if e.code != "run_not_found":
            raise
        return [f"{where}: not on the team server"]
    out = [] if state["published"] else [f"{where}: not published on the team server"]
    mine: dict[str, tuple[int, str] | None] = {
        fmt.RUN_FILE: (len(src.run_json), _sha(src.run_json)),  # type: ignore[dict-item]
        fmt.SUMMARY_FILE: None
        if src.summary_json is None
        else (len(src.summary_json), _sha(src.summary_json)),  # type: ignore[dict-item]
    }
    for name in APPEND_FILES:
        mine[name] = hashes.of(src.dir / name) if src.sizes[name] else None
    for name, want in mine.items():
        f = state["files"].get(name)
        got = (f["size"], f["sha256"]) if f else None
        if got != want:
            out.append(f"{where}: {name} is {_describe(got)} on the team, {_describe(want)} in DIR")
        progress.advance(want[0] if want and name in APPEND_FILES else 0)
    held = state["artifacts"]
    for path in sorted(set(held) - set(src.artifacts)):
        out.append(f"{where}: artifact {path} is on the team, not in DIR")
    for path, p in sorted(src.artifacts.items()):
        want = hashes.of(p)
        a = held.get(path)
        if a is None:
            out.append(f"{where}: artifact {path} is missing on the team")
        elif (a["size"], a["sha256"]) != want:
            out.append(
                f"{where}: artifact {path} is {_describe((a['size'], a['sha256']))} on the team, {_describe(want)} in DIR"
            )
        elif _blob_sha(team, a["sha256"], a["size"], checked) != want[1]:
            out.append(f"{where}: artifact {path} reads back from the bucket as other bytes than it names")
        progress.advance(want[0])
    return out


def _verify_asset(
    team: TeamStore,
    info: dict[str, Any],
    vdir: Path,
    hashes: _Hashes,
    checked: dict[str, str | None],
    progress: MigrateProgress,
) -> list[str]:
    from .. import _assets

    ref = f"{info.get('name')}:{info.get('version')}"
    try:
        held = TeamAssets(team).get(ref)
    except ApiError as e:
        if e.code != "asset_not_found":
            raise
        return [f"asset {ref}: not on the team server"]
    out = [] if held == info else [f"asset {ref}: its asset.json differs from DIR's"]
    with team._tx(f"reading asset {ref}") as conn:
        rows = conn.execute(
            "SELECT path, sha256, size FROM asset_files WHERE name = %s AND version = %s",
            (info.get("name"), info.get("version")),
        ).fetchall()
    team_files = {p: (size, sha) for p, sha, size in rows}
    for f in info.get("files") or []:
        path = f.get("path")
        try:
            want = hashes.of(vdir / _assets.FILES_DIR / str(path))
        except OSError:
            out.append(f"asset {ref}: file {path} is missing in DIR")
            continue
        if want != (f.get("size"), f.get("sha256")):
            out.append(f"asset {ref}: file {path} in DIR does not match DIR's asset.json")
        got = team_files.pop(path, None)
        if got != want:
            out.append(f"asset {ref}: file {path} is {_describe(got)} on the team, {_describe(want)} in DIR")
        elif _blob_sha(team, want[1], want[0], checked) != want[1]:
            out.append(f"asset {ref}: file {path} reads back from the bucket as other bytes than it names")
        progress.advance(want[0])
    out += [f"asset {ref}: file {p} is on the team, not in DIR" for p in sorted(team_files)]
    return out


def _describe(f: tuple[int, str | None] | None) -> str:
    if f is None:
        return "absent"
    return f"{f[0]} bytes" + (f" (SHA-256 {f[1][:12]})" if f[1] else "")
