"""The S3 side of a bucket store: its URL, the client, the requests amltrack makes, the layout's keys,
and the listing index; what the sync target (``_bucket``) and the reader (``_bucket_reader``) share.

boto3's botocore is the client: it reads credentials, region and endpoint the standard AWS way
(variables, ``~/.aws/config`` and ``credentials``, profiles, instance roles), signs requests, and
retries 5xx, throttling and dropped connections (its "standard" retry mode), so none of that is
written here. ``docs/format.md`` has the layout.
"""

from __future__ import annotations

import base64
import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from .. import _format as fmt
from ._errors import RemoteConfigError, RemoteError, RemoteUnavailableError, SyncError

PUBLISHED_DIR = "published"
INDEX_FILE = "index.json"
UPLOADS_DIR = ".uploads"
PARTS_SUFFIX = ".parts"
FORMAT = 1
FETCHERS = 16  # manifests read at once where the index is stale: each is one small GET
INDEX_TRIES = 3  # merges of index.json that other syncs overtook, before it is left stale

# What changes the bucket: the requests a kill test counts, and the ones ``writes`` reports.
WRITE_OPERATIONS = frozenset(
    {
        "put_object",
        "delete_object",
        "copy_object",
        "create_multipart_upload",
        "upload_part",
        "complete_multipart_upload",
        "abort_multipart_upload",
    }
)


class PreconditionFailed(SyncError):
    """A conditional write was refused (412): another writer created or replaced the object first."""


@dataclass(frozen=True)
class BucketUrl:
    """``s3://BUCKET/PREFIX[?endpoint=URL&region=NAME]`` taken apart."""

    url: str
    bucket: str
    prefix: str  # "" or ending in "/"
    endpoint: str | None = None
    region: str | None = None

    @classmethod
    def parse(cls, url: str) -> BucketUrl:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise RemoteConfigError(f"bucket URL {url!r} is not s3://BUCKET/PREFIX")
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(query) - {"endpoint", "region"})
        if unknown:
            raise RemoteConfigError(
                f"bucket URL {url!r} has the option {unknown[0]!r}; it takes only endpoint= and region="
            )
        endpoint = query.get("endpoint", [None])[-1] or None
        if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
            raise RemoteConfigError(f"endpoint {endpoint!r} of bucket URL {url!r} is not an http(s):// URL")
        prefix = parts.path.strip("/")
        return cls(
            url=url,
            bucket=parts.netloc,
            prefix=prefix + "/" if prefix else "",
            endpoint=endpoint,
            region=query.get("region", [None])[-1] or None,
        )

    def key(self, *parts: str) -> str:
        return self.prefix + "/".join(parts)


def make_client(where: BucketUrl) -> Any:
    """A boto3 (botocore) S3 client for the bucket: AWS's own credential chain; the URL's endpoint and region,
    else ``AWS_ENDPOINT_URL`` and ``AWS_REGION`` as boto3 reads them."""
    try:
        # botocore, not boto3's wrapper over it: the same client and credential chain, without
        # importing s3transfer (about 0.15 s of each CLI command that reads a bucket).
        import botocore.session
        from botocore.config import Config
    except ImportError:  # pragma: no cover - depends on the environment
        raise RemoteConfigError(
            f"{where.url} is an S3 bucket, which needs boto3: pip install 'amltrack[s3]'"
        ) from None
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=120,
        # Other S3-compatible stores (MinIO, Ceph) take bucket names in the path, not the host name.
        s3={"addressing_style": "path"} if where.endpoint else None,
    )
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=where.endpoint, region_name=where.region, config=config
    )


def b64sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class BucketClient:
    """The S3 requests amltrack makes, each turned into amltrack's errors; ``writes`` counts those
    that changed the bucket. Shared by the sync target and the reader."""

    def __init__(self, url: str, client: Any = None) -> None:
        self.where = BucketUrl.parse(url)
        self.url = url
        self._client = client
        self.writes = 0

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client(self.where)
        return self._client

    def call(self, op: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs.setdefault("Bucket", self.where.bucket)
        try:
            answer = getattr(self.client, op)(**kwargs)
        except ClientError as e:
            raise self._error(op, kwargs.get("Key"), e) from None
        except BotoCoreError as e:
            raise self._boto_error(e) from None
        if op in WRITE_OPERATIONS:
            self.writes += 1
        return answer

    def _error(self, op: str, key: str | None, e: Any) -> SyncError:
        err = e.response.get("Error") or {}
        code = str(err.get("Code") or "")
        status = int((e.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        message = str(err.get("Message") or code)
        if status == 412 or code == "PreconditionFailed":
            return PreconditionFailed(f"{self.url}: {op} of {key} was refused: another writer was first")
        if code == "NoSuchBucket":
            return RemoteConfigError(
                f"{self.url}: bucket {self.where.bucket!r} does not exist; create it first"
            )
        if status in (401, 403) or code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
            return RemoteError(
                self.url,
                status,
                code,
                message,
                hint="; check the AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                "AWS_PROFILE) and that they may read and write the bucket",
                remote_wide=True,
            )
        if status >= 500:  # botocore retried it already
            return RemoteError(
                self.url, status, code, message, hint="; the store keeps failing: sync again later"
            )
        return RemoteError(self.url, status, code, f"{op} of {key}: {message}")

    def _boto_error(self, e: Exception) -> SyncError:
        from botocore.exceptions import NoCredentialsError, NoRegionError, PartialCredentialsError

        if isinstance(e, (NoCredentialsError, PartialCredentialsError)):
            return RemoteConfigError(
                f"no AWS credentials for {self.url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or AWS_PROFILE, or write them in ~/.aws/credentials"
            )
        if isinstance(e, NoRegionError):
            return RemoteConfigError(f"no AWS region for {self.url}: set AWS_REGION, or add ?region=NAME")
        unavailable = RemoteUnavailableError(self.url, e)
        unavailable.args = (
            f"cannot reach {self.url} ({type(e).__name__}: {e}); check the endpoint and the network; "
            "syncing again resumes where this stopped",
        )
        return unavailable

    # ----------------------------------------------------------------- helpers

    def get(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag, or None if there is none."""
        try:
            r = self.call("get_object", Key=key)
        except RemoteError as e:
            if e.code in ("NoSuchKey", "404"):
                return None
            raise
        return r["Body"].read(), str(r["ETag"])

    def get_json(self, key: str) -> tuple[dict[str, Any], str] | None:
        got = self.get(key)
        if got is None:
            return None
        try:
            data = orjson.loads(got[0])
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise SyncError(f"{self.url}: {key} is not a JSON object; delete it, and sync the run again")
        return data, got[1]

    def head(self, key: str) -> dict[str, Any] | None:
        try:
            return self.call("head_object", Key=key)
        except RemoteError as e:
            if e.status == 404:
                return None
            raise

    def list(self, prefix: str) -> list[dict[str, Any]]:
        """Every object under ``prefix``: ``Key``, ``Size``, ``ETag``."""
        out: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            r = self.call("list_objects_v2", **kwargs)
            out += r.get("Contents") or []
            token = r.get("NextContinuationToken")
            if not r.get("IsTruncated") or not token:
                return out

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def run_key(where: BucketUrl, run_id: str, *parts: str) -> str:
    return where.key(fmt.RUNS_DIR, run_id, *parts)


def part_key(where: BucketUrl, run_id: str, name: str, start: int) -> str:
    return run_key(where, run_id, name + PARTS_SUFFIX, f"{start:020d}.jsonl")


def asset_key(where: BucketUrl, name: str, *parts: str) -> str:
    return where.key(fmt.ASSETS_DIR, name, *parts)


def published_key(where: BucketUrl, run_id: str) -> str:
    return where.key(PUBLISHED_DIR, f"{run_id}.json")


def read_index(s3: BucketClient) -> tuple[dict[str, Any], str | None]:
    """The index's entries by run id, and its ETag (None if there is none). A damaged index reads as
    empty: it is only a cache, which the next sync writes anew."""
    got = s3.get(s3.where.key(INDEX_FILE))
    if got is None:
        return {}, None
    try:
        runs = orjson.loads(got[0]).get("runs")
    except (orjson.JSONDecodeError, AttributeError):
        runs = None
    return (dict(runs) if isinstance(runs, dict) else {}), got[1]


def published_runs(s3: BucketClient) -> dict[str, str]:
    """Every published run of the bucket: its id and the ETag of its manifest, newest first."""
    prefix = s3.where.key(PUBLISHED_DIR) + "/"
    out = {}
    for o in s3.list(prefix):
        name = o["Key"][len(prefix) :]
        rid = name.removesuffix(".json")
        if name.endswith(".json") and fmt.is_valid_run_id(rid):
            out[rid] = str(o["ETag"])
    return dict(sorted(out.items(), reverse=True))


def index_entries(
    s3: BucketClient, known: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """Every published run's entry, newest first: its index entry (``etag``, ``run``, ``summary``;
    or one of ``known``'s) if that is current, else its manifest (with its ``etag``), read FETCHERS
    at a time."""
    ids = published_runs(s3)
    index = {**(read_index(s3)[0] if ids else {}), **(known or {})}
    out: dict[str, dict[str, Any]] = {}
    stale = []
    for rid, etag in ids.items():
        e = index.get(rid)
        if isinstance(e, dict) and e.get("etag") == etag:
            out[rid] = e
        else:
            stale.append(rid)

    def manifest(rid: str) -> dict[str, Any] | None:
        got = s3.get_json(published_key(s3.where, rid))
        return None if got is None else {**got[0], "etag": got[1]}  # None: deleted since the listing

    if stale:
        with ThreadPoolExecutor(min(FETCHERS, len(stale))) as pool:
            for rid, m in zip(stale, pool.map(manifest, stale)):
                if m is not None:
                    out[rid] = m
    return {rid: out[rid] for rid in ids if rid in out}


def update_index(s3: BucketClient, entries: dict[str, dict[str, Any]]) -> None:
    """Merge ``{run id: {etag, run, summary}}`` into the bucket's index.json with a conditional
    write; if other syncs keep replacing it first, leave it: readers mend stale entries. A missing or
    damaged index is built anew from every run's manifest."""
    key = s3.where.key(INDEX_FILE)
    for _ in range(INDEX_TRIES):
        runs, etag = read_index(s3)
        if not runs:
            runs = {
                rid: {"etag": e.get("etag"), "run": e.get("run"), "summary": e.get("summary")}
                for rid, e in index_entries(s3, entries).items()  # what it published is not read again
            }
        runs.update(entries)
        body = orjson.dumps({"format": FORMAT, "runs": dict(sorted(runs.items()))})
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            s3.call("put_object", Key=key, Body=body, ContentType="application/json", **condition)
            return
        except PreconditionFailed:
            continue
