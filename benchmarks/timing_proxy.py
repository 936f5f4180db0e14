"""A small HTTP/1.1 reverse proxy for the benchmarks: each request goes to the next upstream in turn
(round-robin per request, no sticky sessions), and each request's time is written to a log.

    python benchmarks/timing_proxy.py --upstream http://127.0.0.1:8001 --upstream http://127.0.0.1:8002 \
        --log requests.tsv

It prints ``proxy on http://127.0.0.1:PORT`` to stderr once it listens, and stops on SIGTERM. A log
line is ``seconds<TAB>method<TAB>path<TAB>status<TAB>request bytes<TAB>response bytes<TAB>upstream``
(the upstream's index in the order given); the time runs
from the first byte of the request to the last byte of the response, as nginx's ``$request_time``
does, so it holds the upload of the body, the server's work and the download of the answer.

It exists so that the scale benchmark measures request latency without adding code to the servers
under test (theirs or MLflow's), and balances two replicas with no nginx on the machine. It speaks
only what the benchmark's clients send (Content-Length or chunked bodies, keep-alive, no
``Expect: 100-continue``, no upgrades); it is not a general proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import sys
import time
from urllib.parse import urlsplit

READ = 1 << 20
HEAD_LIMIT = 1 << 16


class BadMessage(Exception):
    pass


def _parse_head(head: bytes) -> tuple[str, list[tuple[bytes, bytes]]]:
    lines = head.split(b"\r\n")
    start = lines[0].decode("latin-1")
    fields = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise BadMessage(f"a header line without a colon: {line[:60]!r}")
        fields.append((name.strip().lower(), value.strip()))
    return start, fields


def _field(fields: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for k, v in fields:
        if k == name:
            return v
    return None


async def _copy_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, fields: list[tuple[bytes, bytes]]
) -> int:
    """Forward a message body framed by ``fields`` (none without Content-Length or chunking); its length."""
    if (_field(fields, b"transfer-encoding") or b"").lower().endswith(b"chunked"):
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            writer.write(size_line)
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    line = await reader.readuntil(b"\r\n")
                    writer.write(line)
                    if line == b"\r\n":
                        return total
            left = size + 2  # the chunk and its CRLF
            while left:
                data = await reader.read(min(left, READ))
                if not data:
                    raise BadMessage("the connection closed inside a chunk")
                writer.write(data)
                left -= len(data)
                await writer.drain()
            total += size
    length = _field(fields, b"content-length")
    if length is None:
        return 0
    left = int(length)
    total = left
    while left:
        data = await reader.read(min(left, READ))
        if not data:
            raise BadMessage("the connection closed inside a body")
        writer.write(data)
        left -= len(data)
        await writer.drain()
    return total


class Proxy:
    def __init__(self, upstreams: list[str], log: str) -> None:
        self.upstreams = [urlsplit(u) for u in upstreams]
        self.turn = itertools.cycle(range(len(upstreams)))
        self.idle: list[list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]]] = [
            [] for _ in upstreams
        ]
        self.log = open(log, "a", buffering=1 << 16)

    async def _upstream(self, i: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self.idle[i]:
            r, w, since = self.idle[i].pop()
            # uvicorn closes a keep-alive connection idle for 5 s, and a request sent on it as it closes
            # would be lost: connections idle for more than 2 s are not reused.
            if time.monotonic() - since < 2 and not w.is_closing() and not r.at_eof():
                return r, w
            w.close()
        u = self.upstreams[i]
        return await asyncio.open_connection(u.hostname, u.port, limit=HEAD_LIMIT)

    async def handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            while await self._one(cr, cw):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, BadMessage, asyncio.LimitOverrunError):
            pass
        finally:
            cw.close()

    async def _one(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> bool:
        """Proxy one request on the client's connection; False when that connection is done."""
        first = await cr.read(1)
        if not first:
            return False
        t0 = time.perf_counter()
        head = first + await cr.readuntil(b"\r\n\r\n")
        start, fields = _parse_head(head[:-4])
        method, _, rest = start.partition(" ")
        path = rest.rpartition(" ")[0]
        i = next(self.turn)
        ur, uw = await self._upstream(i)
        try:
            uw.write(head)
            sent = await _copy_body(cr, uw, fields)
            await uw.drain()
            rhead = await ur.readuntil(b"\r\n\r\n")
            status_line, rfields = _parse_head(rhead[:-4])
            status = int(status_line.split(" ", 2)[1])
            cw.write(rhead)
            to_close = False
            if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                got = 0
            elif _field(rfields, b"content-length") is None and not _field(rfields, b"transfer-encoding"):
                to_close, got = True, 0  # the body runs to the end of the connection
                while data := await ur.read(READ):
                    cw.write(data)
                    got += len(data)
                    await cw.drain()
            else:
                got = await _copy_body(ur, cw, rfields)
            await cw.drain()
        except BaseException:
            uw.close()
            raise
        self.log.write(f"{time.perf_counter() - t0:.6f}\t{method}\t{path}\t{status}\t{sent}\t{got}\t{i}\n")
        upstream_done = to_close or (_field(rfields, b"connection") or b"").lower() == b"close"
        if upstream_done:
            uw.close()
        else:
            self.idle[i].append((ur, uw, time.monotonic()))
        return not upstream_done and (_field(fields, b"connection") or b"").lower() != b"close"


async def _main(a: argparse.Namespace) -> None:
    proxy = Proxy(a.upstream, a.log)
    server = await asyncio.start_server(proxy.handle, a.host, a.port, limit=HEAD_LIMIT, backlog=512)
    port = server.sockets[0].getsockname()[1]
    print(f"proxy on http://{a.host}:{port}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    proxy.log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", action="append", required=True, help="a server's URL; repeat for more")
    ap.add_argument("--log", required=True, help="the file each request's line is appended to")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    asyncio.run(_main(ap.parse_args()))


if __name__ == "__main__":
    main()
