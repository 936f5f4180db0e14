"""What the run page may show of an artifact in the page, and how: text, JSON, CSV or an image.

The kind is decided from the file's first bytes, and from its name only where the bytes agree:
an image is one of the four raster formats whose signature the WHATWG MIME Sniffing standard
(section 6.1, "image type pattern matching") lists, whatever its name says; an ``.svg`` must be
text that holds an ``<svg`` element, and is only ever shown through ``<img>``, where a browser runs
none of its scripts; anything with a byte the same standard calls binary (section 7.1) is no text.
Nothing is ever answered as ``text/html``: text, JSON and CSV reach the page as JSON strings that
``ui.js`` inserts as text nodes.

    kind, media = sniff("plots/loss.png", head)      # ("image", "image/png")
    body = preview("notes/config.json", f, size)     # {"kind": "json", "text": "{\n  ...", ...}
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from typing import Any, BinaryIO

TEXT_BYTES = 1 << 20  # a text preview shows the first MiB
CSV_ROWS = 500  # a CSV preview shows this many rows, header included
SNIFF_BYTES = 4096

# WHATWG MIME Sniffing 6.1: (signature, mask) for the raster formats a browser draws.
_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", None, "image/png"),
    (b"\xff\xd8\xff", None, "image/jpeg"),
    (b"GIF87a", None, "image/gif"),
    (b"GIF89a", None, "image/gif"),
    (
        b"RIFF\x00\x00\x00\x00WEBPVP",
        b"\xff\xff\xff\xff\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff",
        "image/webp",
    ),
)
# WHATWG MIME Sniffing 7.1: a "binary data byte" never appears in text.
_BINARY = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")
_SVG = re.compile(rb"<svg[\s>/]", re.IGNORECASE)
_DELIMITERS = {".csv": ",", ".tsv": "\t"}


def _matches(head: bytes, pattern: bytes, mask: bytes | None) -> bool:
    if len(head) < len(pattern):
        return False
    if mask is None:
        return head.startswith(pattern)
    return all(h & m == p for h, p, m in zip(head, pattern, mask))


def _suffix(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return base[base.rfind(".") :].lower() if "." in base else ""


def is_text(head: bytes) -> bool:
    return _BINARY.search(head) is None


def sniff(name: str, head: bytes) -> tuple[str, str | None]:
    """``(kind, media)``: kind ``image`` (with its media type), ``json``, ``csv``, ``text`` or ``none``.

    ``head`` is the file's first bytes (``SNIFF_BYTES`` or more).
    """
    for pattern, mask, media in _IMAGE_SIGNATURES:
        if _matches(head, pattern, mask):
            return "image", media
    if not is_text(head[:SNIFF_BYTES]):
        return "none", None
    suffix = _suffix(name)
    if suffix == ".svg":
        return ("image", "image/svg+xml") if _SVG.search(head[:SNIFF_BYTES]) else ("text", None)
    if suffix == ".json":
        return "json", None
    if suffix in _DELIMITERS:
        return "csv", None
    return "text", None


def _decode(data: bytes, complete: bool) -> str:
    """UTF-8 with replacement; a character cut by the 1 MiB limit is dropped, not replaced."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = decoder.decode(data, final=complete)
    return text[1:] if text.startswith("\ufeff") else text


def preview(name: str, f: BinaryIO, size: int) -> dict[str, Any]:
    """The preview of the open file ``f`` (``size`` bytes) as the run page shows it.

    ``{"kind", "size", "truncated", "media"?, "text"?, "rows"?, "note"?}``: ``text`` for text and
    JSON, ``rows`` (lists of strings) for CSV, ``media`` for an image (its bytes come from the
    image route). ``kind`` ``none``: no preview, download it.
    """
    data = f.read(TEXT_BYTES)
    kind, media = sniff(name, data)
    complete = len(data) >= size
    body: dict[str, Any] = {"kind": kind, "size": size, "truncated": False}
    if kind == "image":
        body["media"] = media
        return body
    if kind != "none" and not is_text(data):  # binary past the sniffed head: no text after all
        kind = body["kind"] = "none"
    if kind == "none":
        return body
    text = _decode(data, complete)
    body["truncated"] = not complete
    if kind == "json":
        if complete:
            try:
                # The standard library's parser keeps what orjson refuses (NaN, integers past 64 bits).
                body["text"] = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
                return body
            except ValueError as e:
                body["note"] = f"not valid JSON ({e}): shown as text"
        else:
            body["note"] = f"over {TEXT_BYTES // (1 << 20)} MiB: the first MiB, as text"
        body["kind"] = "text"
    if kind == "csv":
        if not complete:  # the last line may be cut: leave it out
            text = text[: text.rfind("\n") + 1]
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=_DELIMITERS[_suffix(name)])
        rows: list[list[str]] = []
        try:
            for row in reader:
                if len(rows) == CSV_ROWS:
                    body["truncated"] = True
                    break
                rows.append(row)
        except csv.Error as e:
            body["kind"] = "text"
            body["note"] = f"not valid CSV ({e}): shown as text"
        else:
            body["rows"] = rows
            return body
    body["text"] = text
    return body
