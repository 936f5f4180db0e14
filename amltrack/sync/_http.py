"""HTTP for the servers' clients (both remote kinds and the history reader): one retry loop.

A request that fails in transit, or meets one of the policy's statuses, is sent again after a
pause that grows with each try (x3, at most MAX_BACKOFF) with equal jitter, or after the answer's
``Retry-After`` where the policy honours it. Faults are injected through the httpx transport a
client is built with (``transport=``), as httpx's own ``MockTransport`` does.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from .. import __version__
from ._errors import RemoteUnavailableError

MAX_BACKOFF = 30.0  # seconds: the longest pause between two tries of a request
MAX_RETRY_AFTER = 60.0  # seconds: the longest Retry-After a client waits for

_T = TypeVar("_T", bound="HttpBacked")


@dataclass(frozen=True)
class RetryPolicy:
    """When a request is tried again: ``retries`` more times, after a transport failure or an answer
    with one of ``statuses``, pausing ``backoff`` seconds (jittered) before the first retry; with
    ``retry_after``, for as long as the answer's ``Retry-After`` says, if it says."""

    retries: int = 3
    backoff: float = 0.2
    # amltrack's server never answers 429: a 502-504 comes from a proxy while it restarts, or is a
    # team server's 503 with Retry-After (its database or bucket briefly away). MLflow servers
    # rate-limit (429).
    statuses: frozenset[int] = frozenset({502, 503, 504})
    retry_after: bool = False


class HttpClient:
    """An httpx client and the policy its requests are retried by; it counts the write requests
    that got their (final) answer.

        http = HttpClient(httpx.Client(base_url=url), url, RetryPolicy(retries=3))
        r = http.request("GET", "/v1/health")
    """

    def __init__(
        self,
        client: httpx.Client,
        url: str,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], None] | None = None,
        unavailable: Callable[[BaseException], Exception] | None = None,
    ) -> None:
        self.client = client
        self.url = url
        self.policy = policy
        self.sleep = sleep or time.sleep
        self._unavailable = unavailable or (lambda e: RemoteUnavailableError(url, e))
        self._random = random.Random()  # seeded from os.urandom: two clients started together differ
        self.writes = 0

    def delay(self, attempt: int) -> float:
        """The pause before trying a request again after its ``attempt``-th try (0 is the first).

        Exponential back-off (x3 a try, at most MAX_BACKOFF) with equal jitter: a random point in
        the upper half of the step, so the pauses still grow while clients that failed together
        (a server restart) do not all come back at the same moment.
        """
        step = min(MAX_BACKOFF, self.policy.backoff * 3**attempt)
        return step / 2 + self._random.uniform(0, step / 2)

    def _pause(self, r: httpx.Response, attempt: int) -> float:
        if self.policy.retry_after:
            try:
                return min(MAX_RETRY_AFTER, max(0.0, float(r.headers.get("retry-after", ""))))
            except ValueError:
                pass
        return self.delay(attempt)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        content: bytes | Callable[[], Iterable[bytes]] | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        write: bool = False,
        again: bool | Callable[[], bytes | None] = True,
    ) -> httpx.Response | None:
        """The last answer to the request, whatever its status, after the tries the policy allows;
        the client's ``unavailable`` error if none came.

        ``content`` may be a function that gives the body's blocks, called for each try. ``again``
        is True for a request that can be repeated as it is, False for one never to repeat, or a
        function that gives the body to send instead (None: the request is done already, and
        ``request`` answers None) for one that cannot be repeated as it is.
        """
        retries = self.policy.retries
        body = content
        r: httpx.Response | None = None
        for attempt in range(retries + 1):
            if attempt and callable(again):
                body = again()
                if body is None:
                    return None
            try:
                request = self.client.build_request(
                    method, path, params=params, content=body() if callable(body) else body, headers=headers
                )
                r = self.client.send(request, stream=stream)
            except httpx.TransportError as e:
                if attempt == retries or isinstance(e, httpx.UnsupportedProtocol) or not again:
                    raise self._unavailable(e) from e
                self.sleep(self.delay(attempt))
                continue
            if r.status_code in self.policy.statuses and attempt < retries and again:
                r.close()
                self.sleep(self._pause(r, attempt))
                continue
            break
        if write:
            self.writes += 1
        assert r is not None
        return r

    def close(self) -> None:
        self.client.close()


def amltrack_client(
    url: str, token: str | None, timeout: float, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """The client every amltrack-server conversation uses: our User-Agent, the bearer token if any,
    and ``X-Amltrack-Client``, which a browser cannot send cross-site without a CORS preflight that the
    server never grants: the server refuses a write without it (docs/sync.md, "Cross-site requests")."""
    headers = {"User-Agent": f"amltrack/{__version__}", "X-Amltrack-Client": f"amltrack/{__version__}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(
        base_url=url, headers=headers, timeout=httpx.Timeout(timeout, connect=10.0), transport=transport
    )


def error_fields(r: httpx.Response) -> tuple[str, str, dict[str, Any]]:
    """An amltrack server's error answer as its code, message and extra fields (docs/sync.md), or
    ``http_<status>`` and the body's start for an answer from something else."""
    try:
        err = r.json()["error"]
        code, message = str(err["code"]), str(err["message"])
        return code, message, {k: v for k, v in err.items() if k not in ("code", "message")}
    except (ValueError, KeyError, TypeError):
        return f"http_{r.status_code}", r.text[:200].strip() or r.reason_phrase, {}


class HttpBacked:
    """A client of one server over an HttpClient (``_http``): its pauses and its count of write
    requests, closed with it, and usable in ``with``. A convenience for HTTP kinds, not the seam:
    a remote kind need only have what ``_remote.Remote`` names."""

    _http: HttpClient

    @property
    def writes(self) -> int:
        return self._http.writes

    def delay(self, attempt: int) -> float:
        return self._http.delay(attempt)

    def close(self) -> None:
        self._http.close()

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
