"""The team server's object storage: an S3-compatible bucket that holds the bytes of runs and assets.

    objects = Objects.open("s3://amltrack-team/prod", endpoint="http://minio.internal:9000")
    key = objects.new_key("runs", run_id, "metrics.jsonl")  # a key no other write ever takes
    objects.put(key, data)
    objects.get(key)

Every object is written once under a key of its own (a random part in it) and never replaced, so
replicas never race on a key and a write cut off by a crash leaves at most an object that no row of
the database names; ``amltrack server gc`` removes those. botocore does the S3 protocol: signing,
the AWS credential chain (variables, ``~/.aws`` files, profiles, instance roles) and retries. Needs
the ``team`` extra (boto3), imported only when a server opens its bucket.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from .._errors import MissingExtraError
from .._web._errors import ApiError
from ._errors import ServerConfigError
from ._tokens import RETRY_AFTER

_MAX_DELETE = 1000  # keys per DeleteObjects, S3's limit


def unavailable(what: str, e: BaseException) -> ApiError:
    """A 503 that clients retry: the bucket did not answer (down, unreachable, throttling)."""
    return ApiError(
        503,
        "unavailable",
        f"the team server cannot reach its object storage just now ({type(e).__name__}) while "
        f"{what}; retry after Retry-After",
        headers={"Retry-After": RETRY_AFTER},
    )


class Objects:
    """The bucket at ``s3://BUCKET/PREFIX``; thread-safe (botocore clients are)."""

    def __init__(self, url: str, client: Any, bucket: str, prefix: str) -> None:
        self.url, self.client, self.bucket, self.prefix = url, client, bucket, prefix

    @classmethod
    def open(cls, url: str, *, endpoint: str | None = None, check: bool = True) -> Objects:
        """The bucket of ``url``; with ``check``, refuses to start unless the bucket answers."""

        try:
            from ..sync._errors import RemoteConfigError
            from ..sync._s3 import BucketUrl, make_client
        except ImportError as e:  # pragma: no cover - the sync package ships with amltrack
            raise MissingExtraError("the team server's object storage", e.name or "boto3", "team") from None
        try:
            where = BucketUrl.parse(url)
            if endpoint is not None:
                where = dataclasses.replace(where, endpoint=endpoint)
            client = make_client(where)
        except RemoteConfigError as e:
            raise ServerConfigError(f"--objects {url}: {e}") from None
        objects = cls(url, client, where.bucket, where.prefix)
        if check:
            objects.check()
        return objects

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            code = str((e.response.get("Error") or {}).get("Code") or "")
            hint = (
                "create it first"
                if code in ("404", "NoSuchBucket")
                else "check the AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                "AWS_PROFILE) and that they may read and write the bucket"
            )
            raise ServerConfigError(
                f"--objects {self.url}: bucket {self.bucket!r} answered {code}; {hint}"
            ) from None
        except BotoCoreError as e:
            raise ServerConfigError(
                f"--objects {self.url}: cannot reach the object storage ({e}); check --objects-endpoint, "
                "AWS_REGION and the network"
            ) from None

    def new_key(self, *parts: str) -> str:
        """A key under ``parts`` that nothing else will ever write: a random part makes it unique."""
        return self.prefix + "/".join(parts) + "/" + secrets.token_hex(8)

    def _call(self, what: str, op: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, op)(Bucket=self.bucket, **kwargs)
        except ClientError as e:
            status = int((e.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
            if status >= 500 or status in (408, 429):
                raise unavailable(what, e) from None
            code = str((e.response.get("Error") or {}).get("Code") or status)
            raise ApiError(
                500,
                "storage_error",
                f"the team server's object storage refused {op} while {what} ({code}); see the server's log",
            ) from None
        except BotoCoreError as e:
            raise unavailable(what, e) from None

    def put(self, key: str, data: bytes, what: str) -> None:
        self._call(what, "put_object", Key=key, Body=data)

    def get(self, key: str, what: str) -> bytes:
        answer = self._call(what, "get_object", Key=key)
        with answer["Body"] as body:
            try:
                return body.read()
            except Exception as e:  # noqa: BLE001 - a connection cut mid-body is botocore's or urllib3's
                raise unavailable(what, e) from None

    def delete(self, keys: list[str], what: str) -> None:
        for i in range(0, len(keys), _MAX_DELETE):
            batch = [{"Key": k} for k in keys[i : i + _MAX_DELETE]]
            self._call(what, "delete_objects", Delete={"Objects": batch, "Quiet": True})

    def list(self, what: str) -> Iterator[tuple[str, int, datetime]]:
        """Every object under the prefix: key, size, last modified."""
        token = None
        while True:
            kwargs: dict[str, Any] = {"Prefix": self.prefix}
            if token:
                kwargs["ContinuationToken"] = token
            answer = self._call(what, "list_objects_v2", **kwargs)
            for o in answer.get("Contents") or []:
                yield o["Key"], int(o["Size"]), o["LastModified"]
            token = answer.get("NextContinuationToken")
            if not answer.get("IsTruncated") or not token:
                return

    def close(self) -> None:
        self.client.close()
