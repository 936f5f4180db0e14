"""What ``amltrack server`` and ``amltrack ui`` share on the command line: where they listen."""

from __future__ import annotations

from typing import Any


def add_listen_args(p: Any, default_port: int) -> None:
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=int,
        default=default_port,
        help=f"the port (default {default_port}; 0 for any free one)",
    )
