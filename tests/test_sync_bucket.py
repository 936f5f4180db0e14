"""Sync to an S3-compatible bucket (issue 22), against a real moto server process on 127.0.0.1."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import amltrack
from amltrack.sync import sync
from amltrack.sync._bucket import BucketRemote
from amltrack.sync._bucket_reader import BucketReader
from amltrack.sync._s3 import WRITE_OPERATIONS

from .bucket_helpers import AWS_ENV, MotoServer, bucket_run_files, moto_server
from .conftest import child_env, ui_process, wait_until
from .sync_helpers import cli, make_run, run_files, sync_killed

FLAKY_PROXY = Path(__file__).parent / "scripts" / "flaky_proxy.py"
# Each test pushes through a real S3 server process; on a loaded shared machine that takes a while.
pytestmark = pytest.mark.timeout(300)
# The S3 operations that change a bucket, as botocore names them in its events.
WRITES = {"".join(w.title() for w in op.split("_")) for op in WRITE_OPERATIONS}


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with moto_server(tmp_path_factory.mktemp("moto")) as srv:
        yield srv


@pytest.fixture
def bucket(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket, and its sync URL; the AWS variables set as a user would, for children too."""
    for k, v in AWS_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    name = moto.new_bucket()
    return f"s3://{name}/team/runs?endpoint={moto.endpoint}"


def _name(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0]


def assert_same(moto: MotoServer, url: str, local: Path, run_id: str) -> None:
    pushed = bucket_run_files(moto.client(), _name(url), "team/runs", run_id)
    assert pushed == run_files(local / "runs" / run_id)


def test_push_is_byte_for_byte_readable_in_place_and_syncing_again_sends_nothing(
    tmp_path: Path, moto: MotoServer, bucket: str
) -> None:
    local = tmp_path / "local"
    rid = make_run(local, records=300, artifacts={"model.bin": b"\x00weights" * 1000, "notes/a.txt": b"hi"})
    report = sync(local, bucket)
    assert report.ok and report.counts()["pushed"] == 1, report.to_dict()
    assert_same(moto, bucket, local, rid)

    again = sync(local, bucket, all_runs=True, verify=True)
    assert again.ok and again.counts()["up_to_date"] == 1, again.to_dict()
    assert again.runs[0].differences == [] and again.bytes == 0

    with BucketReader(bucket) as reader:
        (run,) = reader.runs()
        assert run.id == rid and run.status == "completed"
        local_run = amltrack.Store(local).run(rid)
        assert run.metric("loss") == local_run.metric("loss")
        assert run.read_artifact("model.bin") == local_run.read_artifact("model.bin")
        assert [a["path"] for a in run.artifacts()] == ["model.bin", "notes/a.txt"]
        assert reader.run(rid[-16:-8]).id == rid and reader.last().id == rid


def test_include_running_pushes_new_parts_exactly_once(tmp_path: Path, moto: MotoServer, bucket: str) -> None:
    local = tmp_path / "local"
    lg = amltrack.get_logger("live", store=local, outputs=None)
    try:
        for i in range(50):
            lg.log("loss", float(i))
        lg.flush()
        first = sync(local, bucket, include_running=True)
        assert first.counts()["pushed"] == 1, first.runs
        for i in range(50, 120):
            lg.log("loss", float(i))
        lg.upload("ckpt.bin", b"c" * 5000)
        lg.flush()
        second = sync(local, bucket, include_running=True)
        assert second.counts()["pushed"] == 1, second.to_dict()
    finally:
        lg.finish()
    last = sync(local, bucket, verify=True)
    assert last.ok, last.to_dict()
    assert_same(moto, bucket, local, lg.run_id)
    s3 = moto.client()
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(
            Bucket=_name(bucket), Prefix=f"team/runs/runs/{lg.run_id}/metrics.jsonl.parts/"
        )["Contents"]
    ]
    assert len(keys) >= 2  # one part per push of new records, none rewritten


@pytest.mark.timeout(900)  # 20 killed syncs, each resumed and compared byte for byte
def test_resume_after_sigkill_of_the_client_at_random_points(
    tmp_path: Path, moto: MotoServer, bucket: str
) -> None:
    local = tmp_path / "local"
    ids = [
        make_run(local, records=400, artifacts={"a.bin": bytes(range(256)) * 40, "b.txt": b"b" * 100})
        for _ in range(2)
    ]
    promoted = cli("history", "promote", "-r", ids[0], "-ap", "a.bin", "-n", "model", "--store", str(local))
    assert promoted.returncode == 0, promoted.stderr
    # Small parts, so a push makes many writes to kill between (see sync_killed.py's bucket branch).
    small = {"SYNC_KILLED_PART_BYTES": "2048", **AWS_ENV}
    counted = moto.client()
    writes = []
    counted.meta.events.register(
        "after-call.s3", lambda model, **_: writes.append(model.name) if model.name in WRITES else None
    )
    assert sync(local, BucketRemote(bucket, client=counted, part_bytes=2048)).ok
    total = len(writes)
    assert total > 20
    rng = random.Random(22)
    for _ in range(20):
        forget_pushes(local)
        url = bucket.replace(_name(bucket), moto.new_bucket())
        n = rng.randint(1, total)
        assert sync_killed(local, url, n, **small).returncode == -9, n
        if rng.random() < 0.5:  # killed twice in a row, sometimes: the second resumes the first
            sync_killed(local, url, rng.randint(1, total), **small)
        report = sync(local, url, verify=True)
        assert report.ok, (n, report.to_dict())
        for rid in ids:
            assert_same(moto, url, local, rid)
        # Every part is a distinct span, and the asset one version: nothing was written twice.
        again = sync(local, url, all_runs=True)
        assert again.bytes == 0 and again.counts()["up_to_date"] == 2, n
        assert [(a.outcome, a.remote_ref) for a in again.assets] == [("up_to_date", "model:1")], n
        with BucketReader(url) as reader:
            assert [a.ref for a in reader.assets()] == ["model:1"]
            assert reader.asset("model").read("a.bin") == bytes(range(256)) * 40


def forget_pushes(store: Path) -> None:
    """Drop the ledgers of the runs and the assets, as on a machine that never synced."""
    for ledger in [*store.glob("runs/*/sync"), *store.glob("assets/*/*/sync")]:
        shutil.rmtree(ledger)


def test_dry_run_sends_nothing_and_verify_finds_a_tampered_object(
    tmp_path: Path, moto: MotoServer, bucket: str
) -> None:
    local = tmp_path / "local"
    rid = make_run(local, artifacts={"m.bin": b"m" * 300})
    dry = sync(local, bucket, dry_run=True)
    assert dry.counts()["would_push"] == 1 and dry.runs[0].bytes > 0
    s3 = moto.client()
    assert "Contents" not in s3.list_objects_v2(Bucket=_name(bucket))
    assert sync(local, bucket).ok
    s3.put_object(Bucket=_name(bucket), Key=f"team/runs/runs/{rid}/artifacts/m.bin", Body=b"tampered")
    checked = sync(local, bucket, verify=True)
    assert not checked.ok and "artifact m.bin differs" in checked.runs[0].differences[0]
    repaired = sync(local, bucket, verify=True)
    assert repaired.ok, repaired.to_dict()
    assert_same(moto, bucket, local, rid)
    s3.put_object(Bucket=_name(bucket), Key=f"team/runs/runs/{rid}/run.json", Body=b"{}")
    assert sync(local, bucket, verify=True).runs[0].differences == ["run.json differs"]
    assert sync(local, bucket, verify=True).ok
    assert_same(moto, bucket, local, rid)


def test_cli_sync_history_and_metrics_read_the_bucket_in_place(
    tmp_path: Path, moto: MotoServer, bucket: str
) -> None:
    local = tmp_path / "local"
    rid = make_run(local, records=30)
    out = cli("sync", "--store", str(local), "--to", bucket, "--json", **AWS_ENV)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["counts"]["pushed"] == 1
    listed = cli("history", "list", "--store", bucket, "--json", **AWS_ENV)
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [rid]
    info = cli("history", "info", "-r", "last", "--store", bucket, "--json", **AWS_ENV)
    assert info.returncode == 0, info.stderr
    metrics = cli("metrics", "-r", rid, "--store", bucket, "--json", **AWS_ENV)
    assert metrics.returncode == 0, metrics.stderr
    assert "loss" in metrics.stdout


def test_a_missing_bucket_stops_the_sync_with_one_line(tmp_path: Path, moto: MotoServer, bucket: str) -> None:
    local = tmp_path / "local"
    make_run(local)
    make_run(local)
    report = sync(local, f"s3://no-such-bucket-here/x?endpoint={moto.endpoint}")
    assert report.stopped and "does not exist" in report.stopped
    assert report.runs[1].reason.startswith("not tried")


def test_a_large_artifact_resumes_its_multipart_upload_after_sigkill(
    tmp_path: Path, moto: MotoServer, bucket: str
) -> None:
    local = tmp_path / "local"
    chunk = 5 * 1024 * 1024  # S3's least part size
    rid = make_run(local, records=20, artifacts={"big.bin": random.Random(1).randbytes(2 * chunk + 12345)})
    sizes = {"SYNC_KILLED_CHUNK_BYTES": str(chunk), **AWS_ENV}
    # Writes: metrics part, manifest part, create upload, part 1, part 2: killed after part 2.
    assert sync_killed(local, bucket, 5, **sizes).returncode == -9
    resumed = sync(local, BucketRemote(bucket, chunk_size=chunk), verify=True)
    assert resumed.ok, resumed.to_dict()
    assert resumed.bytes < chunk + 12345 + 10_000  # the two parts that went were not sent again
    assert_same(moto, bucket, local, rid)
    s3 = moto.client()
    assert not s3.list_multipart_uploads(Bucket=_name(bucket)).get("Uploads")
    assert not s3.list_objects_v2(Bucket=_name(bucket), Prefix="team/runs/.uploads/").get("Contents")
    for n in (1, 3, 4, 6, 7, 8, 9):  # every other point of a fresh push of the same run
        fresh = moto.new_bucket()
        url = bucket.replace(_name(bucket), fresh)
        shutil.rmtree(local / "runs" / rid / "sync", ignore_errors=True)
        sync_killed(local, url, n, **sizes)
        again = sync(local, BucketRemote(url, chunk_size=chunk), verify=True)
        assert again.ok, (n, again.to_dict())
        assert bucket_run_files(moto.client(), fresh, "team/runs", rid) == run_files(local / "runs" / rid)


def test_two_syncs_of_different_runs_at_once_into_one_bucket(
    tmp_path: Path, moto: MotoServer, bucket: str
) -> None:
    stores = [tmp_path / "a", tmp_path / "b"]
    ids = [make_run(s, records=500, artifacts={"x.bin": bytes([i]) * 4000}) for i, s in enumerate(stores)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "amltrack", "sync", "--store", str(s), "--to", bucket, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(**AWS_ENV),
        )
        for s in stores
    ]
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        assert json.loads(stdout)["counts"]["pushed"] == 1
    for s, rid in zip(stores, ids):
        assert_same(moto, bucket, s, rid)
    with BucketReader(bucket) as reader:
        assert sorted(r.id for r in reader.runs()) == sorted(ids)


def test_the_same_run_from_two_machines_at_once_is_serialised_by_conditional_writes(
    tmp_path: Path, moto: MotoServer, bucket: str
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    rid = make_run(first, records=300, artifacts={"m.bin": b"m" * 3000})
    shutil.copytree(first, second)  # the same run on another machine (a shared or copied store)
    client = moto.client()
    refused = []

    def other_machine_first(params: dict, **_: object) -> None:
        # Make the race certain: just before this push publishes, the other machine pushes it whole.
        if params.get("Key", "").endswith(f"published/{rid}.json") and not refused:
            refused.append(params)
            assert sync(second, bucket).counts()["pushed"] == 1

    client.meta.events.register("before-parameter-build.s3.PutObject", other_machine_first)
    writes = []
    client.meta.events.register(
        "before-parameter-build.s3.PutObject", lambda params, **_: writes.append(params["Key"])
    )
    report = sync(first, BucketRemote(bucket, client=client))
    assert report.ok, report.to_dict()
    assert len([k for k in writes if k.endswith(f"published/{rid}.json")]) == 1  # its own was refused
    assert_same(moto, bucket, first, rid)
    parts = client.list_objects_v2(Bucket=_name(bucket), Prefix=f"team/runs/runs/{rid}/metrics.jsonl.parts/")
    assert len(parts["Contents"]) == 1  # the second machine took the part the first had made


def test_503s_and_dropped_connections_are_retried_and_the_push_is_exact(
    tmp_path: Path, moto: MotoServer, bucket: str
) -> None:
    local = tmp_path / "local"
    rid = make_run(local, records=400, artifacts={"a.bin": b"a" * 9000, "b.bin": b"b" * 10})
    with subprocess.Popen(
        [sys.executable, str(FLAKY_PROXY), moto.endpoint, "o5odoc"],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    ) as proxy:
        try:
            line = proxy.stdout.readline()
            via = line.rsplit(" ", 1)[1].strip()
            url = bucket.replace(moto.endpoint, via)
            report = sync(local, BucketRemote(url, part_bytes=4096), verify=True)
            assert report.ok, (report.stopped, report.runs)
        finally:
            proxy.terminate()
            proxy.wait(10)
    assert_same(moto, bucket, local, rid)
    again = sync(local, bucket, all_runs=True)
    assert again.bytes == 0 and again.counts()["up_to_date"] == 1


DUCKDB_PINS = ("duckdb==1.4.4", "duckdb-ext-httpfs==1.4.4.20260205")


@pytest.fixture(scope="session")
def duckdb_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small venv with DuckDB 1.4.4 and its httpfs extension from the package registry: the test
    extra's DuckDB is newer, and DuckDB cannot download its extension on these machines."""
    venv = tmp_path_factory.mktemp("duckdb") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    out = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *DUCKDB_PINS],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    return python


@pytest.mark.timeout(900)  # the first use builds a venv and installs DuckDB into it
def test_the_duckdb_recipe_of_format_md_reads_every_runs_metrics_from_the_bucket(
    tmp_path: Path, moto: MotoServer, bucket: str, duckdb_venv: Path
) -> None:
    local = tmp_path / "local"
    ids = [make_run(local, records=n) for n in (30, 45)]
    with amltrack.start_run("rows", store=local, outputs=None) as lg:
        lg.log_metrics({"a": 1.0, "b": 2.0}, step=3)
        ids.append(lg.run_id)
    assert sync(local, BucketRemote(bucket, part_bytes=1000)).ok  # several parts per run
    doc = (Path(__file__).resolve().parent.parent / "docs" / "format.md").read_text()
    (recipe,) = [b for b in re.findall(r"```python\n(.*?)```", doc, flags=re.S) if "s3://" in b]
    recipe = (
        recipe.replace("team-runs/amltrack", f"{_name(bucket)}/team/runs")
        .replace("127.0.0.1:9000", moto.endpoint.removeprefix("http://"))
        .replace("'KEY'", "'testing'")
        .replace("'SECRET'", "'testing'")
    )
    out = subprocess.run([str(duckdb_venv), "-c", recipe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for rid, name, n in ((ids[0], "loss", 30), (ids[1], "loss", 45), (ids[1], "tag", 5), (ids[2], "b", 1)):
        assert re.search(rf"{rid}\s*│\s*{name}\s*│\s*{n}\s*│", out.stdout), out.stdout


def test_the_index_is_derived_a_stale_or_broken_entry_is_read_from_the_manifest(
    tmp_path: Path, moto: MotoServer, bucket: str
) -> None:
    local = tmp_path / "local"
    first = make_run(local, records=10)
    assert sync(local, bucket).ok
    s3, name = moto.client(), _name(bucket)
    index = json.loads(s3.get_object(Bucket=name, Key="team/runs/index.json")["Body"].read())
    assert list(index["runs"]) == [first] and index["runs"][first]["run"]["status"] == "completed"
    # A stale entry (another ETag) is not trusted: the manifest is read instead.
    index["runs"][first]["etag"] = '"stale"'
    index["runs"][first]["run"]["experiment"] = "wrong"
    s3.put_object(Bucket=name, Key="team/runs/index.json", Body=json.dumps(index).encode())
    second = make_run(local, records=5, experiment="other")
    with BucketReader(bucket) as reader:
        assert [r.id for r in reader.runs()] == [first]  # the second is not published yet
        assert reader.runs()[0].experiment == "sync"
    s3.put_object(Bucket=name, Key="team/runs/index.json", Body=b"not json")  # damaged: read as empty
    with BucketReader(bucket) as reader:
        assert [r.id for r in reader.runs()] == [first]
    assert sync(local, bucket).ok  # publishes the second, and writes the index anew
    index = json.loads(s3.get_object(Bucket=name, Key="team/runs/index.json")["Body"].read())
    assert sorted(index["runs"]) == [first, second]  # built anew from the manifests
    assert index["runs"][first]["run"]["experiment"] == "sync"
    s3.delete_object(Bucket=name, Key="team/runs/index.json")
    with BucketReader(bucket) as reader:
        assert {r.id: r.experiment for r in reader.runs()} == {first: "sync", second: "other"}
        assert [r.id for r in reader.runs(experiment="other")] == [second]


def test_remote_add_endpoint_and_commands_that_do_not_read_a_bucket_say_so(
    tmp_path: Path, moto: MotoServer, bucket: str
) -> None:
    config = {"AMLTRACK_CONFIG_DIR": str(tmp_path / "config"), **AWS_ENV}
    bare = bucket.split("?", 1)[0]
    added = cli("remote", "add", "team-bucket", bare, "--endpoint", moto.endpoint, **config)
    assert added.returncode == 0, added.stderr
    local = tmp_path / "local"
    rid = make_run(local)
    pushed = cli("sync", "--store", str(local), "--json", **config)
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["runs"][0]["id"] == rid
    refused = cli("history", "promote", "-r", rid, "-ap", "x", "-n", "x", "--store", bucket, **config)
    assert refused.returncode != 0 and "does not read a bucket" in refused.stderr
    wrong = cli("remote", "add", "x", "http://h:1", "--endpoint", moto.endpoint, **config)
    assert wrong.returncode != 0 and "--endpoint is for s3:// buckets" in wrong.stderr


def test_ui_serves_the_buckets_runs_read_only_and_picks_up_new_ones(
    tmp_path: Path, moto: MotoServer, bucket: str
) -> None:
    local = tmp_path / "local"
    with amltrack.start_run("ui", store=local, outputs=None, name="from-the-bucket") as lg:
        for i in range(50):
            lg.log("loss", 1 / (i + 1))
        lg.upload("notes.txt", "hello")
        first = lg.run_id
    assert sync(local, bucket).ok
    with ui_process(bucket, tmp_path / "ui.log") as url:
        runs = httpx.get(url + "api/runs", timeout=30).json()
        assert [r["id"] for r in runs["runs"]] == [first]
        loss = httpx.get(url + f"api/runs/{first}/metrics", timeout=30)
        assert loss.status_code == 200 and "loss" in loss.text
        assert httpx.get(url + f"api/runs/{first}/artifacts/notes.txt", timeout=30).content == b"hello"
        second = make_run(local, records=5)
        assert sync(local, bucket).ok
        wait_until(
            lambda: second in [r["id"] for r in httpx.get(url + "api/runs", timeout=30).json()["runs"]],
            60,
            "the UI to list the run pushed after it started",
        )
        browser_sees(url, "from-the-bucket")


def browser_sees(url: str, text: str) -> None:
    """Headless Chromium opens the UI's runs page and finds ``text`` on it."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        return  # the API answered above; test_ui_browser.py skips the same way without chromium
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(url)
            page.get_by_text(text).first.wait_for(timeout=60_000)
        finally:
            browser.close()


def test_assets_go_to_the_bucket_once_numbered_by_it_and_read_back(
    tmp_path: Path, moto: MotoServer, bucket: str
) -> None:
    local = tmp_path / "local"
    rid = make_run(local, artifacts={"model/w.bin": b"w" * 7000, "model/cfg.txt": b"lr=1"})
    promoted = cli("history", "promote", "-r", rid, "-ap", "model", "-n", "cnn", "--store", str(local))
    assert promoted.returncode == 0, promoted.stderr
    first = sync(local, bucket)
    assert first.ok and [(a.ref, a.outcome, a.remote_ref) for a in first.assets] == [
        ("cnn:1", "pushed", "cnn:1")
    ]
    # Another machine's version of the same name comes next; the same asset.json again is the same version.
    other = tmp_path / "other"
    rid2 = make_run(other, artifacts={"model/w.bin": b"v" * 10})
    assert (
        cli("history", "promote", "-r", rid2, "-ap", "model", "-n", "cnn", "--store", str(other)).returncode
        == 0
    )
    second = sync(other, bucket)
    assert [(a.outcome, a.remote_ref) for a in second.assets] == [("pushed", "cnn:2")]
    again = sync(local, bucket, all_runs=True)
    assert [(a.outcome, a.remote_ref, a.bytes) for a in again.assets] == [("up_to_date", "cnn:1", 0)]
    listed = cli("asset", "list", "--store", bucket, "--json", **AWS_ENV)
    assert listed.returncode == 0, listed.stderr
    assert [(a["name"], a["version"]) for a in json.loads(listed.stdout)] == [("cnn", 1), ("cnn", 2)]
    dest = tmp_path / "down"
    down = cli("asset", "download", "cnn:1", str(dest), "--store", bucket, **AWS_ENV)
    assert down.returncode == 0, down.stderr
    assert (dest / "model/w.bin").read_bytes() == b"w" * 7000
    assert (dest / "model/cfg.txt").read_bytes() == b"lr=1"
    missing = cli("asset", "show", "nope", "--store", bucket, **AWS_ENV)
    assert missing.returncode != 0 and "no asset 'nope'" in missing.stderr


class Recorder:
    """A Progress that records what a push announced and what it reported sent."""

    def __init__(self) -> None:
        self.started: list[tuple[str, int, int]] = []
        self.advanced = [0, 0]

    def begin(self, runs: int) -> None:
        pass

    def start(self, run_id: str, total: int, records: int = 0) -> None:
        self.started.append((run_id, total, records))

    def advance(self, n: int, records: int = 0) -> None:
        self.advanced[0] += n
        self.advanced[1] += records

    def finish(self) -> None:
        pass


def test_progress_counts_every_byte_and_record_a_push_sends(tmp_path: Path, bucket: str) -> None:
    local = tmp_path / "local"
    rid = make_run(local, records=250, artifacts={"a.bin": b"a" * 5000})
    progress = Recorder()
    report = sync(local, bucket, progress=progress)
    assert report.ok
    ((started_id, total, records),) = progress.started
    metrics = (local / "runs" / rid / "metrics.jsonl").read_bytes()
    assert started_id == rid and records == metrics.count(b"\n")
    assert progress.advanced == [total, records] and report.bytes == total


def test_the_endpoint_may_come_from_aws_endpoint_url_as_boto3_reads_it(
    tmp_path: Path, moto: MotoServer, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint)
    bare = bucket.split("?", 1)[0]
    local = tmp_path / "local"
    rid = make_run(local, records=20)
    assert sync(local, bare, verify=True).ok
    assert_same(moto, bare, local, rid)
    listed = cli("history", "list", "--store", bare, "--json", **AWS_ENV, AWS_ENDPOINT_URL=moto.endpoint)
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [rid]
