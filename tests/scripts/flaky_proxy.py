"""An HTTP proxy in front of an S3 server that fails some requests: for the bucket's server-error test.

    python flaky_proxy.py UPSTREAM PATTERN

Prints ``listening on http://127.0.0.1:PORT`` once it listens. PATTERN is a string of letters used in
turn, one per request: ``o`` forwards the request, ``5`` answers 503 SlowDown without forwarding it,
``d`` forwards it and then drops the connection without answering (the write happened, its answer is
lost), ``c`` closes the connection before forwarding anything.
"""

from __future__ import annotations

import http.client
import itertools
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

UPSTREAM = urlsplit(sys.argv[1])
PATTERN = itertools.cycle(sys.argv[2])
LOCK = threading.Lock()
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _any(self) -> None:
        with LOCK:
            what = next(PATTERN)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if what == "c":
            self.close_connection = True
            self.connection.close()
            return
        if what == "5":
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(SLOW_DOWN)))
            self.end_headers()
            self.wfile.write(SLOW_DOWN)
            return
        conn = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        conn.request(self.command, self.path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        if what == "d":
            self.close_connection = True
            self.connection.close()
            return
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                self.send_header(k, v)
        # A HEAD's Content-Length is the object's size, though no body follows.
        self.send_header(
            "Content-Length",
            r.getheader("Content-Length") or "0" if self.command == "HEAD" else str(len(data)),
        )
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
