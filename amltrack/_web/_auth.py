"""The one auth layer: bearer tokens with a read or a write scope, kept as SHA-256 digests and
compared in constant time, and the check that every route of the server and every page of the UI
it mounts goes through.

A token entry is ``SCOPE:SECRET``: SCOPE is ``read`` or ``write``, SECRET the token itself or
``sha256:<64 hex digits>`` of it, so a tokens file need not hold any token in the clear. The
grammar, for a tokens file and ``$AMLTRACK_SERVER_TOKENS`` alike:

- a ``#`` at the start of a line or after a space or tab starts a comment, to the end of the line;
  a ``#`` inside a token is part of the token (``write:abc#def`` is the token ``abc#def``);
- what is left of a line holds entries separated by commas; blank entries are ignored;
- an entry is ``SCOPE:SECRET``, with spaces allowed around it but not inside SECRET.

A line that breaks a rule is refused at start, naming its line number::

    write:sha256:3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855   # laptop
    read:0e5f1c9a7d2b4c6e8f0a1b3c5d7e9f11                                          # dashboard

Tokens are random secrets of 16 or more characters (``amltrack server --new-token write`` makes
one), so an unsalted hash is enough: there is nothing to guess from a dictionary.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

from ._errors import ApiError

SCOPES = ("read", "write")
MIN_TOKEN_CHARS = 16
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_COMMENT = re.compile(r"(?:^|[ \t])#.*$")  # '#' after a space: 'write:abc#def' keeps its '#'


def _entry(item: str, where: str) -> tuple[str, bytes]:
    scope, sep, secret = item.partition(":")
    scope, secret = scope.strip(), secret.strip()
    if not sep or scope not in SCOPES:
        raise TokenConfigError(f"{where} does not start with 'read:' or 'write:'; write SCOPE:TOKEN")
    if any(c.isspace() for c in secret):
        raise TokenConfigError(
            f"{where} has a space inside its token; a comment starts with ' #', and entries are "
            "separated by commas or lines"
        )
    if secret.startswith("sha256:"):
        hexd = secret[len("sha256:") :].lower()
        if not _HEX64.match(hexd):
            raise TokenConfigError(f"{where} has a sha256: that is not 64 hex digits")
        return scope, bytes.fromhex(hexd)
    if len(secret) < MIN_TOKEN_CHARS:
        raise TokenConfigError(
            f"{where} has a token shorter than {MIN_TOKEN_CHARS} characters; "
            "make one with 'amltrack server --new-token write'"
        )
    return scope, digest(secret)


class TokenConfigError(ValueError):
    """A tokens file or variable that cannot be used; the message names the entry."""


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def entry_for(scope: str, token: str) -> str:
    """The hashed tokens-file line for ``token``."""
    return f"{scope}:sha256:{digest(token).hex()}"


class TokenCheck(ABC):
    """What a server asks of the tokens it accepts; two kinds answer: ``Tokens`` (a tokens file or
    variable, held in memory) and the team server's ``DatabaseTokens`` (rows in PostgreSQL)."""

    @abstractmethod
    def scope_of(self, token: str) -> str | None:
        """``write``, ``read``, or None for an unknown token."""

    @abstractmethod
    def describe(self) -> str:
        """Where the tokens come from, for the server's banner: ``2 token(s)``."""

    def require(self, token: str | None, needed: str) -> None:
        """Raise 401 ``unauthorized`` for a missing or unknown token, 403 ``forbidden`` for a read
        token where ``needed`` is ``write``."""
        challenge = {"WWW-Authenticate": "Bearer"}
        if token is None:
            raise ApiError(
                401,
                "unauthorized",
                "this server needs a token: send 'Authorization: Bearer TOKEN' (set AMLTRACK_TOKEN)",
                headers=challenge,
            )
        got = self.scope_of(token)
        if got is None:
            raise ApiError(
                401,
                "unauthorized",
                "the server does not know this token; check AMLTRACK_TOKEN",
                headers=challenge,
            )
        if needed == "write" and got != "write":
            raise ApiError(
                403, "forbidden", "this token may only read; writing needs a token with the write scope"
            )

    def can_read(self, token: str) -> bool:
        return self.scope_of(token) is not None


class Tokens(TokenCheck):
    """The tokens a server accepts, from a tokens file or ``$AMLTRACK_SERVER_TOKENS``.

    tokens = Tokens.parse("write:" + token)
    tokens.scope_of(token)  # "write"
    """

    def __init__(self, entries: list[tuple[str, bytes]]) -> None:
        if not entries:
            raise TokenConfigError("no tokens given; add at least one SCOPE:TOKEN entry")
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def describe(self) -> str:
        return f"{len(self)} token(s)"

    @classmethod
    def parse(cls, text: str, where: str = "tokens") -> Tokens:
        entries: list[tuple[str, bytes]] = []
        for n, line in enumerate(text.splitlines(), 1):
            for item in _COMMENT.sub("", line).split(","):
                item = item.strip()
                if item:
                    entries.append(_entry(item, f"{where}: line {n}"))
        return cls(entries)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Tokens:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise TokenConfigError(f"cannot read the tokens file {path}: {e.strerror}") from e
        return cls.parse(text, str(path))

    def scope_of(self, token: str) -> str | None:
        """``write``, ``read``, or None for an unknown token; every entry is compared, in constant time."""
        d = digest(token)
        found: str | None = None
        for scope, known in self._entries:
            if hmac.compare_digest(known, d) and found != "write":
                found = scope
        return found


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, or None."""
    header = headers.get("authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else None
