"""What amltrack leaves out of a run's record: likely secrets, replaced by ``[redacted]``.

A run records its command line, params, tags and the error it ended with; people pass credentials in
all of them (``--hf-token hf_...``, ``--db-url postgresql://user:pass@host/db``). Before ``run.json`` is
first written every string in it (but those of ``_OWN_FIELDS``) goes through these rules, and so does
what the run's end adds; only the secret part of each is replaced with ``MARKER``, and the original
is never written anywhere. Sync runs the same rules over a run's ``run.json`` before sending it
(``sync/_sync.py``), and refuses a run they would change. ``docs/redaction.md`` is the user's
account of the rules; this is their one owner.

1. **Names that look secret.** The value given to such a name is redacted whole: the next argument
   after ``--name`` (or ``-name``), the rest of ``--name=VALUE`` or ``NAME=VALUE`` in an argument, the
   value of a params or tags key, and ``name=VALUE``, ``name: VALUE`` or ``--name VALUE`` inside any
   string. A name is cut into lower-case words at ``-``, ``_``, ``.``, spaces and camelCase humps, and
   looks secret when
   - one word is ``secret(s)``, ``password(s)``, ``passwd``, ``passphrase``, ``credential(s)``,
     ``auth``, ``authorization`` or ``apikey`` (``--db-password``, ``client_secret``, ``basic_auth``);
   - ``private`` is followed by ``key`` (``--private-key``);
   - the last word is ``token`` (``token``, ``--hf-token``, ``GITHUB_TOKEN``, ``accessToken``), unless
     the word before it names a tokenizer's special token or a count (``pad_token``, ``eos_token``,
     ``max_token``: ``_NOT_BEFORE_TOKEN``);
   - the last of two or more words is ``key`` (``--api-key``, ``aws_secret_access_key``), unless the
     word before it names a data key (``sort_key``, ``label_key``, ``rng_key``: ``_NOT_BEFORE_KEY``).

   So ``--lr``, ``-p``, ``--max-tokens``, ``--num-tokens``, ``--tokenizer``, ``--keyframe``,
   ``--key-frames``, ``--author`` and ``token_type_ids`` are not secret names: ``tokens`` is not
   ``token``, and ``key`` or ``token`` must be the last word. Bools and nulls are never redacted: they
   say whether, not what.
2. **Known credential formats**, wherever they appear in a string: AWS access key ids (``AKIA`` or
   ``ASIA`` and 16 more), GitHub (``ghp_``, ``gho_``, ``ghu_``, ``ghs_``, ``ghr_``, ``github_pat_``),
   GitLab (``glpat-``), Slack (``xoxa-``, ``xoxb-``, ``xoxp-``, ``xoxr-``, ``xoxs-``), Hugging Face
   (``hf_``), OpenAI-style (``sk-``, ``sk-proj-``) tokens, JWTs (three base64url parts, the first
   starting ``eyJ``) and the body of PEM private-key blocks (the BEGIN and END lines stay).
3. **The password of a URL**: ``scheme://user:password@host`` keeps ``scheme://user:`` and ``@host``.
4. **Extra patterns** given to ``get_logger(redact=[...])`` or in ``$AMLTRACK_REDACT``: each is searched
   for in every string; a pattern with a group redacts what its first group matched, else the whole
   match.

Text that already reads ``[redacted]`` is left alone, so running the rules twice changes nothing and
counts nothing: what sync finds in a run this amltrack recorded is only what was added by hand, by an
older amltrack, under ``redact=False``, or by a pattern added since.

    rules = Rules()
    rules.run_info({"argv": ["train.py", "--hf-token", "hf_..."], "params": {"lr": 0.1}})
    # ({"argv": ["train.py", "--hf-token", "[redacted]"], "params": {"lr": 0.1}}, {"argv": 1})
"""

from __future__ import annotations

import bisect
import functools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from . import _env
from ._errors import InvalidRedactPatternError, short_repr

MARKER = "[redacted]"
OFF = ("0", "off", "false", "no")  # $AMLTRACK_REDACT values that turn redaction off
ON = ("", "1", "on", "true", "yes")  # ... and that leave the built-in rules alone

_ANY_WORD = frozenset(
    (
        "secret",
        "secrets",
        "password",
        "passwords",
        "passwd",
        "passphrase",
        "credential",
        "credentials",
        "auth",
        "authorization",
        "apikey",
    )
)
# A tokenizer's special tokens and counts of tokens are settings, not credentials.
_NOT_BEFORE_TOKEN = frozenset(
    ("pad", "eos", "bos", "unk", "sep", "cls", "mask", "sos", "eot", "special", "start", "end", "stop")
    + ("max", "min", "num", "n", "total")
)
# Keys into data, caches and random generators, which ML configs name all the time.
_NOT_BEFORE_KEY = frozenset(
    ("sort", "cache", "primary", "foreign", "hash", "partition", "lookup", "dict", "group", "index")
    + ("input", "output", "label", "labels", "text", "image", "target", "metric", "monitor", "column")
    + ("feature", "rng", "prng", "random", "seed")
)

_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")


def secret_name(name: str) -> bool:
    """Whether an option, key or variable called ``name`` holds a secret (rule 1 of the module).

    secret_name("--hf-token")  # True
    secret_name("max_tokens")  # False
    """
    # Names repeat from run to run of a process; a long one is no name, and is not kept.
    return _secret_name(name) if len(name) <= 200 else _secret_name.__wrapped__(name)


@functools.lru_cache(maxsize=4096)
def _secret_name(name: str) -> bool:
    words = [w for w in _WORD_SPLIT.split(_HUMP.sub("_", name).lower()) if w]
    if not words:
        return False
    if not _ANY_WORD.isdisjoint(words):
        return True
    for a, b in zip(words, words[1:]):
        if a == "private" and b == "key":
            return True
    last = words[-1]
    before = words[-2] if len(words) > 1 else None
    if last == "token":
        return before not in _NOT_BEFORE_TOKEN
    return last == "key" and before is not None and before not in _NOT_BEFORE_KEY


# Rule 2, in one pattern so that a string is scanned once. Each format is bounded on both sides so
# that it is not found inside a longer word, and is long enough that ordinary words do not match.
# The check of what comes before follows the literal prefix, whose length it looks back over: a
# pattern whose branches start with literals lets re skip ahead to them (five to ten times faster).
_E = r"(?![A-Za-z0-9_\-])"  # not inside a longer token
_FORMATS = re.compile(
    "|".join(
        (
            r"(?:AKIA|ASIA)(?<![A-Za-z0-9]....)[A-Z0-9]{16}(?![A-Za-z0-9])",
            r"gh[pousr]_(?<![A-Za-z0-9_\-]....)[A-Za-z0-9]{30,}" + _E,
            r"github_pat_(?<![A-Za-z0-9_\-]github_pat_)[A-Za-z0-9_]{30,}" + _E,
            r"glpat-(?<![A-Za-z0-9_\-]glpat-)[A-Za-z0-9_\-]{20,}" + _E,
            r"xox[abprs]-(?<![A-Za-z0-9_\-].....)[A-Za-z0-9\-]{10,}" + _E,
            r"hf_(?<![A-Za-z0-9_\-]hf_)[A-Za-z0-9]{30,}" + _E,
            # sk- and a run of 20 letters and digits somewhere (sk-proj- keys have - and _ in them):
            # "sk-learn-classifier" is not a key.
            r"sk-(?<![A-Za-z0-9_\-]sk-)[A-Za-z0-9_\-]*?[A-Za-z0-9]{20}[A-Za-z0-9_\-]*" + _E,
            r"eyJ(?<![A-Za-z0-9_\-]eyJ)[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}" + _E,
        )
    )
)
_PEM = re.compile(
    r"(-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)(.*?)(-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S
)
# Rule 3: the user-info's password runs to the last @ before the path; it may hold @ and :.
# It starts only where a scheme can (not inside one), so a long run of letters is read once, not once
# for each of its letters.
_URL = re.compile(r"(?<![A-Za-z0-9+.\-])([A-Za-z][A-Za-z0-9+.\-]*://[^/\s?#:@]*:)([^/\s?#]*)(?=@)")
# Rule 1 inside a string: name=VALUE, name: VALUE, "name": "VALUE", --name VALUE, matched only from
# the start of a word that holds one of the words secret_name() looks for (_inline_matches).
_KEYWORDS = re.compile("token|secret|passw|passph|credential|auth|key")
_KEYWORDS_ANY_CASE = re.compile(_KEYWORDS.pattern, re.I)  # slower: for the rare string lower() lengthens
_NAME_REST = re.compile(r"[A-Za-z0-9_.\-]*")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_INLINE = re.compile(
    r"(?<![A-Za-z0-9_.\-])(?P<dash>--?)?[\"']?"
    r"(?P<name>[A-Za-z0-9_.\-]+)"
    r"(?:[\"']?[ \t]*[=:][ \t]*|(?(dash)[ \t]+|(?!)))"
    r"(?:(?P<scheme>Bearer|Basic|Token)[ \t]+)?"
    r"(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[^\s\"',;&#)}\]]+)"
)
# What every built-in rule needs somewhere in a string (lower-cased): a string without any of these,
# as most are, costs this one scan (under a microsecond) and no other. Rule 1's names all hold one
# of the words that end the list.
_MAYBE = re.compile(
    "akia|asia|gh[pousr]_|github_pat_|glpat-|xox|hf_|sk-|eyj|://|token|secret|passw|passph|credential|auth|key"
)
# An argument that is an option, or NAME=VALUE as env and Hydra take them.
_OPTION = re.compile(r"(?:--?|\+{0,2}|~)(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)(?:=(?P<value>.*))?", re.S)


def _option_value(item: str) -> bool:
    """Whether an argument after a secret option is its value rather than the next option."""
    return item not in ("", "-", "--") and not (item[0] == "-" and (item[1] == "-" or item[1].isalpha()))


class Rules:
    """The rules of the module, with ``extra`` patterns (compiled) searched for as well.

    Every method returns what it was given with the secrets replaced, and how many it replaced.
    """

    __slots__ = ("extra",)

    def __init__(self, extra: Sequence[re.Pattern[str]] = ()) -> None:
        self.extra = tuple(extra)

    def __repr__(self) -> str:
        return f"Rules(extra={[p.pattern for p in self.extra]!r})"

    def text(self, s: str) -> tuple[str, int]:
        """``s`` with every secret found in it replaced (rules 1 inline, 2, 3 and 4)."""
        if _MAYBE.search(s.lower()) is None:
            return self._extra(s, 0) if self.extra else (s, 0)
        n = 0
        if "PRIVATE KEY-----" in s:
            s, k = _apart(s, _PEM.finditer, 2)
            n += k
        s, k = _apart(s, _FORMATS.finditer, 0)
        n += k
        if "://" in s:
            s, k = _apart(s, _URL.finditer, 2)
            n += k
        s, k = _apart(s, _inline_matches, "value", _inline_secret)
        return self._extra(s, n + k)

    def _extra(self, s: str, n: int) -> tuple[str, int]:
        for p in self.extra:
            s, k = _apart(s, p.finditer, 1 if p.groups else 0)
            n += k
        return s, n

    def value(self, v: Any) -> tuple[Any, int]:
        """A JSON value with the secrets in its strings replaced; dict keys are names (rule 1)."""
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, dict):
            return self.mapping(v)
        if isinstance(v, list):
            out, n = [], 0
            for x in v:
                x, k = self.value(x)
                out.append(x)
                n += k
            return (out, n) if n else (v, 0)
        return v, 0

    def mapping(self, d: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
        """A dict (params, tags) whose values under secret names are redacted whole."""
        out: dict[str, Any] = {}
        n = 0
        for key, v in d.items():
            if isinstance(key, str) and secret_name(key) and _secret_value(v):
                out[key] = MARKER
                n += 1
            else:
                out[key], k = self.value(v)
                n += k
        return out, n

    def argv(self, items: Sequence[Any]) -> tuple[list[Any], int]:
        """A command line with the values of secret options and every secret in an argument replaced."""
        out = list(items)
        n = 0
        pending = False  # the argument before was a secret option without =VALUE
        flagged = _flagged([x if type(x) is str else "" for x in out])
        for i, item in enumerate(out):
            if not isinstance(item, str):
                pending = False
                continue
            if pending:
                pending = False
                if _option_value(item):
                    if item != MARKER:
                        out[i] = MARKER
                        n += 1
                    continue
            if flagged is not None and i not in flagged:  # no rule but the extra ones can apply
                if self.extra:
                    out[i], n = self._extra(item, n)
                continue
            m = _OPTION.fullmatch(item)
            if m is not None and secret_name(m["name"]):
                value = m["value"]
                if value is not None:
                    if value and value != MARKER:
                        out[i] = item[: m.start("value")] + MARKER
                        n += 1
                    continue
                pending = item.startswith("-")  # a bare word such as "token" is no option
            if m is not None and m["value"] is None and item.startswith("-"):
                continue  # a bare --name holds no value, URL or token
            out[i], k = self.text(item)
            n += k
        return out, n

    def run_info(self, info: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
        """``run.json``'s object with every field redacted, and how many values each field had
        redacted (only fields with any). ``redacted`` itself, amltrack's record of this, is kept."""
        out = dict(info)
        counts: dict[str, int] = {}
        for key, v in info.items():
            if key in _OWN_FIELDS:
                continue
            if key == "argv" and isinstance(v, list):
                v, k = self.argv(v)
            else:
                v, k = self.value(v)
            if k:
                out[key] = v
                counts[key] = k
        return out, counts


def _flagged(strings: list[str]) -> set[int] | None:
    """The indexes of the strings in which _MAYBE finds something, from one scan of them all (a
    command line or a dict of params costs one call into re, not one a string); None when lower-casing
    changed their lengths, and each must be looked at. Worth it for a command line, whose strings are
    many and short; params are mostly numbers, which cost nothing one by one."""
    joined = "\0".join(strings)
    low = joined.lower()
    if len(low) != len(joined):
        return None
    found: set[int] = set()
    starts: list[int] = []
    at = 0
    for s in strings:
        starts.append(at)
        at += len(s) + 1
    for m in _MAYBE.finditer(low):
        found.add(bisect.bisect_right(starts, m.start()) - 1)
    return found


# Fields amltrack writes from its own values (ids, times, versions), which hold nothing a user typed;
# and ``redacted``, its record of this.
_OWN_FIELDS = frozenset(
    ("schema", "id", "status", "created", "created_ts", "ended", "ended_ts", "pid", "pid_start")
    + ("pid_created", "python", "platform", "amltrack_version", "redacted")
)


def _secret_value(v: Any) -> bool:
    """Whether a value under a secret name is worth redacting: not a bool, null, empty or redacted."""
    return v is not None and not isinstance(v, bool) and v != "" and v != MARKER


_SCHEMES = ("Bearer", "Basic", "Token")


def _inline_secret(m: re.Match[str]) -> bool:
    value = m["value"]
    if value in ("''", '""') or (m["scheme"] is None and value in _SCHEMES):
        return False  # "Authorization: Bearer" whose token is redacted already, or empty
    return secret_name(m["name"])


def _inline_matches(s: str) -> Iterator[re.Match[str]]:
    """_INLINE's matches in ``s``, tried only from the start of each word that holds a keyword and
    is a secret name: most words with a keyword (``max_tokens``) cost a cached lookup, no match."""
    low = s.lower()
    # A few characters lower-case to two: then search s itself, to keep its offsets.
    keywords = _KEYWORDS.finditer(low) if len(low) == len(s) else _KEYWORDS_ANY_CASE.finditer(s)
    end = 0
    for k in keywords:
        i = k.start()
        if i < end:
            continue
        while i > 0 and s[i - 1] in _NAME_CHARS:
            i -= 1
        j = end = _NAME_REST.match(s, k.end()).end()  # type: ignore[union-attr]  # * always matches
        if not secret_name(s[i:j]):
            continue
        if i > 0 and s[i - 1] in "\"'":
            i -= 1
        m = _INLINE.match(s, i)
        if m is not None:
            end = m.end()
            yield m


Finder = Callable[[str], Iterable[re.Match[str]]]


def _apart(
    s: str,
    find: Finder,
    group: int | str,
    accept: Callable[[re.Match[str]], bool] | None = None,
) -> tuple[str, int]:
    """``_replace`` in each piece of ``s`` between the markers already there: what one rule or an
    earlier pass redacted is never looked at again, so the rules give the same text run twice."""
    if MARKER not in s:
        return _replace(find, s, group, accept)
    parts = s.split(MARKER)
    n = 0
    for i, part in enumerate(parts):
        parts[i], k = _replace(find, part, group, accept)
        n += k
    return (MARKER.join(parts), n) if n else (s, 0)


def _replace(
    find: Finder,
    s: str,
    group: int | str,
    accept: Callable[[re.Match[str]], bool] | None = None,
) -> tuple[str, int]:
    """``s`` with ``group`` of each match ``find`` finds replaced by MARKER (a quoted value keeps its
    quotes), where ``accept`` allows; and how many were."""
    pieces: list[str] = []
    at = 0
    for m in find(s):
        start, end = m.span(group)
        if start < 0 or start == end or (accept is not None and not accept(m)):
            continue
        if end - start >= 2 and s[start] in "\"'" and s[end - 1] == s[start]:
            start, end = start + 1, end - 1
        pieces.append(s[at:start])
        pieces.append(MARKER)
        at = end
    if not pieces:
        return s, 0
    pieces.append(s[at:])
    return "".join(pieces), len(pieces) // 2


# ----------------------------------------------------------------- the setting: redact= and $AMLTRACK_REDACT

DEFAULT = Rules()


def compile_patterns(patterns: Any, source: str) -> tuple[re.Pattern[str], ...]:
    """Extra patterns as compiled regexes; InvalidRedactPatternError names one that is not."""
    if isinstance(patterns, (str, bytes, re.Pattern)):
        raise TypeError(
            f"{source} must be True, False or a list of patterns, not the single {short_repr(patterns)}; "
            "put it in a list"
        )
    try:
        items = list(patterns)
    except TypeError:
        raise TypeError(
            f"{source} must be True, False or a list of patterns (regex strings or re.compile() "
            f"results), not {type(patterns).__name__} {short_repr(patterns)}"
        ) from None
    out = []
    for p in items:
        if isinstance(p, re.Pattern):
            if not isinstance(p.pattern, str):
                raise InvalidRedactPatternError(p.pattern, "it is a bytes pattern; use a str pattern", source)
            out.append(p)
        elif isinstance(p, str):
            if not p:
                raise InvalidRedactPatternError(p, "it is empty", source)
            try:
                out.append(re.compile(p))
            except re.error as e:
                raise InvalidRedactPatternError(p, f"it is not a regular expression ({e})", source) from None
        else:
            raise InvalidRedactPatternError(p, f"it is a {type(p).__name__}, not a str or re.Pattern", source)
    for p in out:
        if p.fullmatch(""):
            raise InvalidRedactPatternError(p.pattern, "it matches the empty string", source)
    return tuple(out)


def rules_for(redact: Any, environ: Mapping[str, str] = os.environ) -> Rules | None:
    """The rules of a run from ``get_logger(redact=)`` and ``$AMLTRACK_REDACT``; None for no redaction.

    ``redact=False`` turns it off whatever the variable says; ``True`` (the default) follows the
    variable: ``0``/``off``/``false``/``no`` turn it off, anything else but ``1``/``on`` is extra
    patterns separated by whitespace. A list adds its patterns to the variable's and stays on.

        rules_for(True, {"AMLTRACK_REDACT": r"corp_[0-9a-f]{32} tok-\\w+"})
    """
    if redact is False:
        return None
    extra: tuple[re.Pattern[str], ...] = ()
    if redact is not True:
        extra = compile_patterns(redact, "redact=")
    env_extra = env_patterns(environ)
    if env_extra is None:
        return None if redact is True else Rules(extra)
    extra += env_extra
    return Rules(extra) if extra else DEFAULT


def env_patterns(environ: Mapping[str, str] = os.environ) -> tuple[re.Pattern[str], ...] | None:
    """$AMLTRACK_REDACT's extra patterns (whitespace between them), or None when it turns redaction off."""
    value = environ.get(_env.REDACT, "")
    if value.strip().lower() in OFF:
        return None
    if value.strip().lower() in ON:
        return ()
    return compile_patterns(value.split(), f"${_env.REDACT}")


def check_rules(environ: Mapping[str, str] = os.environ) -> Rules:
    """The rules sync checks a run against: the built-in ones and $AMLTRACK_REDACT's patterns (the
    variable cannot turn the check off: ``--allow-secrets`` does)."""
    return Rules(env_patterns(environ) or ())
