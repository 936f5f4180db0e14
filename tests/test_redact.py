"""Secrets stay on the machine (issue 24): the rules of amltrack/_redact.py, what a run records, and
``amltrack run``'s command. The sync refusal is in tests/test_sync.py and tests/test_sync_mlflow.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import amltrack
from amltrack import _redact
from amltrack._redact import MARKER, Rules, rules_for, secret_name

from .conftest import child_env

R = MARKER
HF = "hf_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3f"
GHP = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
AWS = "AKIA" + "IOSFODNN7EXAMPLE"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
OPENAI = "sk-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa98765432"
OPENAI_PROJ = "sk-proj-" + "Ab_Cd-Ef1Gh2Ij3Kl4Mn5Op6Qr7St8Uv9Wx0Yz_A1-B2c3D4e5F6g7H8"
GLPAT = "glpat-" + "xY7zW6vU5tS4rQ3pO2nM"
SLACK = "xoxb-" + "1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"
GITHUB_PAT = "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ"
PEM_BODY = "\nMIIEowIBAAKCAQEA7bq+zV3Q8ZzP0lJ7Xo8E2uV1cR3K\nq9Lw0Yb5T2xN4mF8gH1jK6pS3vU7wZ0yA==\n"
PEM = f"-----BEGIN RSA PRIVATE KEY-----{PEM_BODY}-----END RSA PRIVATE KEY-----"
FORMATS = [HF, GHP, "gho_" + GHP[4:], "ghs_" + GHP[4:], "ghu_" + GHP[4:], "ghr_" + GHP[4:], GITHUB_PAT]
FORMATS += [AWS, "ASIA" + AWS[4:], JWT, OPENAI, OPENAI_PROJ, GLPAT, SLACK] + [
    f"xox{c}-12345-abcdefghij" for c in "aprs"
]


# ----------------------------------------------------------------- the rules, as a table

ARGV = [
    # option shapes whose value is secret by the option's name
    (["--api-key", "X1"], ["--api-key", R]),
    (["--api-key=X1"], ["--api-key=" + R]),
    (["--api_key", "X1"], ["--api_key", R]),
    (["--API-KEY", "X1"], ["--API-KEY", R]),
    (["--hf-token", "X1"], ["--hf-token", R]),
    (["--password=X1"], ["--password=" + R]),
    (["--password=two words"], ["--password=" + R]),
    (["--passwd", "X1"], ["--passwd", R]),
    (["--token", "X1"], ["--token", R]),
    (["--secret", "X1"], ["--secret", R]),
    (["--client-secret", "X1"], ["--client-secret", R]),
    (["--credentials", "X1"], ["--credentials", R]),
    (["--credential", "X1"], ["--credential", R]),
    (["--auth", "user:pw"], ["--auth", R]),
    (["--private-key", "X1"], ["--private-key", R]),
    (["--private_key=X1"], ["--private_key=" + R]),
    (["--aws-secret-access-key", "X1"], ["--aws-secret-access-key", R]),
    (["--github_token", "X1"], ["--github_token", R]),
    (["--apiKey", "X1"], ["--apiKey", R]),
    (["-password", "X1"], ["-password", R]),
    (["TOKEN=X1"], ["TOKEN=" + R]),
    (["HF_TOKEN=X1", "python"], ["HF_TOKEN=" + R, "python"]),
    (["db.password=X1"], ["db.password=" + R]),
    (["+trainer.api_key=X1"], ["+trainer.api_key=" + R]),
    (["--db-url", "postgresql://u:p4ss@h/db"], ["--db-url", f"postgresql://u:{R}@h/db"]),
    (["--db-url=postgresql://u:p@ss@h:5432/db"], [f"--db-url=postgresql://u:{R}@h:5432/db"]),
    (["--password"], ["--password"]),  # no value
    (["--password", "--lr", "0.1"], ["--password", "--lr", "0.1"]),  # a flag: the next is an option
    (["--password", ""], ["--password", ""]),
    (["--password="], ["--password="]),
    # false positives: none of these is a secret
    (["-p", "X1"], ["-p", "X1"]),
    (["--lr", "0.1"], ["--lr", "0.1"]),
    (["--max-tokens", "512"], ["--max-tokens", "512"]),
    (["--max_tokens=512"], ["--max_tokens=512"]),
    (["--max-new-tokens", "64"], ["--max-new-tokens", "64"]),
    (["--num-tokens", "9"], ["--num-tokens", "9"]),
    (["--tokenizer", "bert"], ["--tokenizer", "bert"]),
    (["--tokenizer-name=bert-base"], ["--tokenizer-name=bert-base"]),
    (["--keyframe", "3"], ["--keyframe", "3"]),
    (["--key-frames", "3"], ["--key-frames", "3"]),
    (["--key", "loss"], ["--key", "loss"]),
    (["--author", "ada"], ["--author", "ada"]),
    (["--authors", "ada"], ["--authors", "ada"]),
    (["--monkey", "3"], ["--monkey", "3"]),
    (["--pad-token", "<pad>"], ["--pad-token", "<pad>"]),
    (["--eos_token=</s>"], ["--eos_token=</s>"]),
    (["--sort-key", "loss"], ["--sort-key", "loss"]),
    (["--token-type-ids", "1"], ["--token-type-ids", "1"]),
    (["token", "keyframe"], ["token", "keyframe"]),  # bare words are no options
    (["--url", "https://example.com/a:b@c"], ["--url", "https://example.com/a:b@c"]),
    (["--url", "https://user@host/x"], ["--url", "https://user@host/x"]),
    (["sk-learn-classifier-benchmarks-v2"], ["sk-learn-classifier-benchmarks-v2"]),
    (["hf_hub_download"], ["hf_hub_download"]),
    (["AKIA-is-a-prefix"], ["AKIA-is-a-prefix"]),
]


@pytest.mark.parametrize(("argv", "want"), ARGV, ids=[" ".join(a) or "empty" for a, _ in ARGV])
def test_argv_rules(argv: list[str], want: list[str]) -> None:
    got, n = Rules().argv(argv)
    assert got == want
    assert n == sum(a != w for a, w in zip(argv, want))


@pytest.mark.parametrize("token", FORMATS)
def test_every_known_format_is_found_anywhere_in_a_string(token: str) -> None:
    for text, want in (
        (token, R),
        (f"use {token} here", f"use {R} here"),
        (f"x={token}", f"x={R}"),
        (f'{{"k": "{token}"}}', f'{{"k": "{R}"}}'),
    ):
        assert Rules().text(text) == (want, 1), text
    assert Rules().argv(["train.py", token]) == (["train.py", R], 1)
    assert Rules().mapping({"note": f"see {token}"}) == ({"note": f"see {R}"}, 1)


TEXT = [
    (PEM, f"-----BEGIN RSA PRIVATE KEY-----{R}-----END RSA PRIVATE KEY-----"),
    (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n",  # cut short, as in a stderr tail
        f"-----BEGIN OPENSSH PRIVATE KEY-----{R}",
    ),
    ("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----", None),
    ("postgresql://user:pw@host/db", f"postgresql://user:{R}@host/db"),
    ("redis://:pw@host:6379/0", f"redis://:{R}@host:6379/0"),
    ("https://x-access-token:abc@github.com/o/r.git", f"https://x-access-token:{R}@github.com/o/r.git"),
    ("https://host/p?api_key=abc&page=2", f"https://host/p?api_key={R}&page=2"),
    ("https://host/p?page=2&token=abc", f"https://host/p?page=2&token={R}"),
    ("ValueError: invalid token: abc123", f"ValueError: invalid token: {R}"),
    ("password=hunter2 user=ada", f"password={R} user=ada"),
    ('{"password": "hunter 2", "lr": 0.1}', f'{{"password": "{R}", "lr": 0.1}}'),
    ("Authorization: Bearer abc.def", f"Authorization: Bearer {R}"),
    ("python train.py --api-key abc --lr 0.1", f"python train.py --api-key {R} --lr 0.1"),
    ("max_tokens: 512, tokenizer: bert, keyframe: 3, author: ada", None),
    ("the token is valid", None),
    ("password: ''", None),
    ("https://example.com/docs?page=2", None),
    ("/home/ada/hf_cache/sk-learn", None),
]


@pytest.mark.parametrize(("text", "want"), TEXT)
def test_text_rules(text: str, want: str | None) -> None:
    got, n = Rules().text(text)
    assert got == (text if want is None else want)
    assert n == (0 if want is None else 1)


NAMES = {
    True: [
        "api_key", "api-key", "apiKey", "API_KEY", "hf_token", "HF_TOKEN", "token", "accessToken",
        "password", "db_password", "passwd", "secret", "client_secret", "secrets", "credentials",
        "credential", "auth", "basic_auth", "auth_header", "Authorization", "private_key",
        "private-key-file", "aws_secret_access_key", "ssh_key", "wandb-key", "passphrase",
    ],
    False: [
        "lr", "p", "max_tokens", "max-tokens", "num_tokens", "tokens", "tokenizer", "tokenizer_name",
        "keyframe", "key_frames", "key", "author", "authors", "monkey", "pad_token", "eos_token",
        "bos_token", "max_token", "token_type_ids", "sort_key", "label_key", "rng_key", "hotkeys",
        "passes", "keys", "",
    ],
}  # fmt: skip


@pytest.mark.parametrize(("name", "secret"), [(n, s) for s, names in NAMES.items() for n in names])
def test_names(name: str, secret: bool) -> None:
    assert secret_name(name) is secret


def test_params_and_tags_redact_values_under_secret_keys_whole_and_keep_bools() -> None:
    given = {
        "api_key": "abc",
        "password": 123456,
        "use_auth": True,
        "auth": None,
        "token": "",
        "lr": 0.1,
        "max_tokens": 512,
        "db": "mysql://root:toor@db/x",
    }
    out, n = Rules().mapping(given)
    assert out == {**given, "api_key": R, "password": R, "db": f"mysql://root:{R}@db/x"}
    assert n == 3


def test_running_the_rules_twice_changes_and_counts_nothing() -> None:
    rules = Rules([re.compile(r"\w+-internal")])
    info = {
        "argv": [x for a, _ in ARGV for x in a] + FORMATS,
        "params": {"api_key": "x", "note": " ".join(t for t, _ in TEXT)},
        "error": {"message": "a-internal " + " ".join(FORMATS), "traceback": PEM},
    }
    once, counts = rules.run_info(info)
    assert counts and once != info
    assert rules.run_info(once) == (once, {})


def test_extra_patterns_redact_their_first_group_or_the_whole_match() -> None:
    rules = Rules([re.compile(r"corp_[0-9a-f]{8}"), re.compile(r"ticket=(\d+)")])
    assert rules.text("corp_deadbeef and ticket=42") == (f"{R} and ticket={R}", 2)


# ----------------------------------------------------------------- the setting


def test_redact_false_turns_it_off_and_true_follows_the_variable() -> None:
    assert rules_for(False, {"AMLTRACK_REDACT": "x"}) is None
    assert rules_for(True, {}) is _redact.DEFAULT
    for off in ("0", "off", "OFF", " false "):
        assert rules_for(True, {"AMLTRACK_REDACT": off}) is None
    assert rules_for(True, {"AMLTRACK_REDACT": "1"}) is _redact.DEFAULT
    rules = rules_for(True, {"AMLTRACK_REDACT": r"corp_\w+  tok-\d+"})
    assert rules is not None and [p.pattern for p in rules.extra] == [r"corp_\w+", r"tok-\d+"]
    listed = rules_for([r"a\d+", re.compile("b+c")], {"AMLTRACK_REDACT": "off"})  # a list stays on
    assert listed is not None and [p.pattern for p in listed.extra] == [r"a\d+", "b+c"]


@pytest.mark.parametrize(
    ("redact", "named"),
    [(["(unclosed"], "'(unclosed'"), ([r"ok\d", "a*"], "'a*'"), ([b"bytes"], "b'bytes'"), ([""], "''")],
)
def test_a_bad_pattern_is_rejected_at_the_call_naming_it(tmp_path: Path, redact: Any, named: str) -> None:
    with pytest.raises(amltrack.InvalidRedactPatternError, match=re.escape(named)) as e:
        amltrack.get_logger("x", store=tmp_path, outputs=None, redact=redact)
    assert isinstance(e.value, ValueError) and "redact=" in str(e.value)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_single_pattern_not_in_a_list_is_a_type_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="put it in a list"):
        amltrack.get_logger("x", store=tmp_path, outputs=None, redact=r"corp_\w+")


def test_a_bad_pattern_in_the_variable_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMLTRACK_REDACT", "good_\\w+ [bad")
    with pytest.raises(amltrack.InvalidRedactPatternError, match=r"'\[bad' in \$AMLTRACK_REDACT"):
        amltrack.get_logger("x", store=tmp_path, outputs=None)


# ----------------------------------------------------------------- what a run records


@pytest.fixture
def argv(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    args = ["train.py", "--hf-token", HF, "--lr", "0.1", "--db-url=postgresql://u:pw@h/db", f"--x={GHP}"]
    monkeypatch.setattr(sys, "argv", args)
    return args


def run_json(store: Path) -> dict[str, Any]:
    (run,) = amltrack.Store(store).runs()
    return json.loads((run.dir / "run.json").read_bytes())


def test_a_run_records_what_was_redacted_never_the_values(tmp_path: Path, argv: list[str]) -> None:
    with amltrack.start_run(
        "x", store=tmp_path, outputs=None, params={"api_key": "k1", "lr": 0.1}, tags={"url": AWS}
    ) as logger:
        assert amltrack.get_logger(params={"api_key": "k1", "lr": 0.1}) is not None
        logger.log("a", 1)
    info = run_json(tmp_path)
    assert info["argv"] == [
        "train.py",
        "--hf-token",
        R,
        "--lr",
        "0.1",
        f"--db-url=postgresql://u:{R}@h/db",
        "--x=" + R,
    ]
    assert info["params"] == {"api_key": R, "lr": 0.1} and info["tags"] == {"url": R}
    assert info["redacted"] == {"argv": 3, "params": 1, "tags": 1}


def test_the_same_secret_params_name_the_open_run(tmp_path: Path) -> None:
    logger = amltrack.get_logger("x", store=tmp_path, outputs=None, params={"api_key": "k1"})
    assert amltrack.get_logger(params={"api_key": "k1"}) is logger
    other = amltrack.get_logger(params={"api_key": "k2"}, outputs=None)  # another run
    assert other is not logger and logger.finished
    other.finish()


def test_a_process_that_joined_the_run_matches_its_secret_params_to_the_markers(tmp_path: Path) -> None:
    from amltrack._logger import end_run, open_run

    owner = open_run("x", store=tmp_path, outputs=None, params={"api_key": "k1"})
    try:
        joined = amltrack.get_logger(run_id=owner.run_id, store=tmp_path, outputs=None)  # reads run.json
        assert amltrack.get_logger(params={"api_key": "k1"}) is joined
        joined.finish()
    finally:
        end_run(owner, "completed")


def test_params_logged_later_are_redacted_by_the_owner_and_by_a_joined_process(tmp_path: Path) -> None:
    from amltrack._logger import end_run, open_run

    owner = open_run("x", store=tmp_path / "on", outputs=None)
    owner.log_params({"api_key": "k1", "lr": 0.1})
    joined = amltrack.get_logger(run_id=owner.run_id, store=tmp_path / "on", outputs=None)
    joined.log_params({"note": f"see {HF}"})
    joined.finish()
    end_run(owner, "completed")
    info = run_json(tmp_path / "on")
    assert info["params"] == {"api_key": R, "lr": 0.1, "note": f"see {R}"}
    assert info["redacted"]["params"] == 2

    # A run recorded with redaction off stays so for the processes that join it.
    owner = open_run("x", store=tmp_path / "off", outputs=None, redact=False)
    joined = amltrack.get_logger(run_id=owner.run_id, store=tmp_path / "off", outputs=None)
    joined.log_params({"api_key": "k1"})
    joined.finish()
    end_run(owner, "completed")
    assert run_json(tmp_path / "off")["params"] == {"api_key": "k1"}


def test_a_resumed_run_redacts_what_its_new_attempt_records(
    tmp_path: Path, argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with amltrack.start_run("x", store=tmp_path, outputs=None) as logger:
        rid = logger.run_id
    monkeypatch.setattr(sys, "argv", ["train.py", "--resume", "--password", "hunter2"])
    with amltrack.start_run(
        store=tmp_path, outputs=None, resume=rid, tags={"t": GHP}, params={"secret": "s"}
    ):
        pass
    info = run_json(tmp_path)
    assert info["argv"] == ["train.py", "--resume", "--password", R] and len(info["segments"]) == 2
    assert info["tags"] == {"t": R} and info["params"] == {"secret": R}
    assert info["redacted"] == {"argv": 3 + 1, "tags": 1, "params": 1}
    assert "hunter2" not in (tmp_path / "runs" / rid / "run.json").read_text()


def test_the_error_a_run_ends_with_is_redacted_and_counted(tmp_path: Path, argv: list[str]) -> None:
    with pytest.raises(RuntimeError), amltrack.start_run("x", store=tmp_path, outputs=None):
        raise RuntimeError(f"login failed with {HF}")
    info = run_json(tmp_path)
    assert HF not in json.dumps(info)
    assert info["error"]["message"] == f"login failed with {R}"
    assert info["redacted"]["argv"] == 3 and info["redacted"]["error"] >= 2  # message and traceback


def test_redact_false_records_the_values(tmp_path: Path, argv: list[str]) -> None:
    with amltrack.start_run("x", store=tmp_path, outputs=None, params={"api_key": "k1"}, redact=False):
        pass
    info = run_json(tmp_path)
    assert info["argv"] == argv and info["params"] == {"api_key": "k1"} and info["redacted"] is False


def test_the_variable_turns_it_off_or_adds_patterns(
    tmp_path: Path, argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMLTRACK_REDACT", "off")
    with amltrack.start_run("x", store=tmp_path / "off", outputs=None):
        pass
    assert run_json(tmp_path / "off")["argv"] == argv

    monkeypatch.setenv("AMLTRACK_REDACT", r"corp_[0-9a-f]{8} ticket=(\d+)")
    with amltrack.start_run("x", store=tmp_path / "on", outputs=None, tags={"t": "ticket=42 corp_deadbeef"}):
        pass
    info = run_json(tmp_path / "on")
    assert info["tags"] == {"t": f"ticket={R} {R}"} and info["argv"][2] == R


def test_extra_patterns_by_argument_add_to_the_rules(tmp_path: Path, argv: list[str]) -> None:
    with amltrack.start_run(
        "x",
        store=tmp_path,
        outputs=None,
        params={"note": "corp_deadbeef"},
        redact=[re.compile("corp_[a-f]+")],
    ):
        pass
    info = run_json(tmp_path)
    assert info["params"] == {"note": R} and info["redacted"] == {"argv": 3, "params": 1}


# The property: whatever secret goes in through argv, params or tags in a listed shape, no file of the
# accepted run holds it.

SECRET_NAMES = [
    "api-key", "api_key", "hf-token", "HF_TOKEN", "password", "passwd", "secret", "client_secret",
    "credentials", "auth", "private-key", "private_key", "db_password", "aws_secret_access_key", "apiKey",
]  # fmt: skip
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _format_token(draw: st.DrawFn) -> str:
    body = draw(st.text(ALNUM, min_size=36, max_size=48))
    kind = draw(
        st.sampled_from(["hf", "ghp", "gho", "github_pat", "aws", "sk", "sk-proj", "glpat", "xoxb", "jwt"])
    )
    return {
        "hf": "hf_" + body,
        "ghp": "ghp_" + body,
        "gho": "gho_" + body,
        "github_pat": "github_pat_" + body,
        "aws": draw(st.sampled_from(["AKIA", "ASIA"])) + body.upper()[:16],
        "sk": "sk-" + body,
        "sk-proj": "sk-proj-" + body[:10] + "_" + body[10:],
        "glpat": "glpat-" + body[:20],
        "xoxb": "xoxb-" + body,
        "jwt": "eyJ" + body[:12] + ".eyJ" + body[12:24] + "." + body[24:],
    }[kind]


@st.composite
def secret_in_a_shape(draw: st.DrawFn) -> tuple[str, list[str], dict[str, Any], dict[str, Any]]:
    """A secret and the argv, params and tags that carry it in one of the listed shapes."""
    word = draw(st.text(ALNUM + "!$%*+_~^", min_size=12, max_size=30))
    pw = draw(st.sampled_from(["!", "@", ":", "%", "~"])).join([word[:6], word[6:]])  # URLs allow these
    token = _format_token(draw)
    name = draw(st.sampled_from(SECRET_NAMES))
    secret, shapes = (
        word,
        {
            "argv: --name value": ([f"--{name}", word], {}, {}),
            "argv: --name=value": ([f"--{name}={word} tail"], {}, {}),
            "argv: NAME=value": ([f"{name.upper()}={word}"], {}, {}),
            "params: name": ([], {name: word}, {}),
            "tags: name": ([], {}, {name: word}),
            "tags: text": ([], {}, {"cmd": f"python x.py --{name} {word} --lr 0.1"}),
            "params: text": ([], {"cfg": f'{{"{name}": "{word}"}}'}, {}),
        },
    )
    url = f"postgresql://ada:{pw}@db.example.com:5432/x"
    shapes["argv: url"] = (["--db-url", url], {}, {})
    shapes["params: url"] = ([], {"db": url}, {})
    shapes["argv: token"] = ([token], {}, {})
    shapes["tags: token"] = ([], {}, {"note": f"token was {token}."})
    shapes["params: token"] = ([], {"x": token}, {})
    shape = draw(st.sampled_from(sorted(shapes)))
    if "url" in shape:
        secret = pw
    elif "token" in shape:
        secret = token
    argv, params, tags = shapes[shape]
    return secret, ["train.py", "--lr", "0.1", *argv], params, tags


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secret_in_a_shape())
def test_no_file_of_a_run_holds_a_secret_given_in_a_listed_shape(
    case: tuple[str, list[str], dict[str, Any], dict[str, Any]],
) -> None:
    secret, argv, params, tags = case
    saved = sys.argv
    sys.argv = argv
    try:
        with tempfile.TemporaryDirectory() as d:
            with amltrack.start_run("x", store=d, outputs=None, params=params, tags=tags) as logger:
                logger.log("loss", 0.5)
                logger.upload("notes.txt", "nothing secret")
            (run,) = amltrack.Store(d).runs()
            files = [Path(p, f) for p, _, fs in os.walk(run.dir) for f in fs]
            assert len(files) >= 4
            for f in files:
                assert secret.encode() not in f.read_bytes(), (f.name, f.read_text())
            assert sum(run.info["redacted"].values()) >= 1
    finally:
        sys.argv = saved


# ----------------------------------------------------------------- amltrack run -- COMMAND

PRINTS = "import sys; print(sys.argv[1:]); print('err', sys.argv[-1], file=sys.stderr)"


def amltrack_run(store: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "amltrack", "run", "--store", str(store), *args],
        capture_output=True,
        env=env or child_env(),
        timeout=120,
    )


def test_amltrack_run_records_the_command_redacted_and_keeps_its_output(tmp_path: Path) -> None:
    out = amltrack_run(
        tmp_path,
        "--outputs",
        "none",
        "--",
        sys.executable,
        "-c",
        PRINTS,
        "--hf-token",
        HF,
        "--lr",
        "0.1",
        GHP,
    )
    assert out.returncode == 0, out.stderr
    info = run_json(tmp_path)
    assert info["argv"][info["argv"].index("--hf-token") :] == ["--hf-token", R, "--lr", "0.1", R]
    assert info["redacted"] == {"argv": 2}
    (run,) = amltrack.Store(tmp_path).runs()
    # The command's output is stored as it came: the logs are the command's, not amltrack's record.
    assert HF.encode() in run.read_artifact("logs/stdout.txt") == out.stdout
    assert GHP.encode() in run.read_artifact("logs/stderr.txt")


def test_amltrack_run_takes_extra_patterns_and_no_redact(tmp_path: Path) -> None:
    out = amltrack_run(
        tmp_path / "extra",
        "--outputs",
        "none",
        "--redact",
        r"corp_\w+",
        "--",
        sys.executable,
        "-c",
        "0",
        "corp_x1",
    )
    assert out.returncode == 0, out.stderr
    assert run_json(tmp_path / "extra")["argv"][-1] == R

    out = amltrack_run(
        tmp_path / "off", "--no-redact", "--outputs", "none", "--", sys.executable, "-c", "0", HF
    )
    assert out.returncode == 0, out.stderr
    info = run_json(tmp_path / "off")
    assert info["argv"][-1] == HF and info["redacted"] is False

    out = amltrack_run(
        tmp_path / "env",
        "--outputs",
        "none",
        "--",
        sys.executable,
        "-c",
        "0",
        HF,
        env=child_env(AMLTRACK_REDACT="off"),
    )
    assert out.returncode == 0, out.stderr
    assert run_json(tmp_path / "env")["argv"][-1] == HF


def test_amltrack_run_names_a_bad_pattern_in_one_line(tmp_path: Path) -> None:
    out = amltrack_run(tmp_path, "--redact", "(x", "--", sys.executable, "-c", "0")
    assert out.returncode != 0
    err = out.stderr.decode()
    assert "'(x'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "text",
    [
        "a" * 200_000 + "://x",
        "x://" + "a" * 200_000,
        "--password" + "-" * 200_000,
        "key" * 70_000,
        "sk-" + "a-" * 100_000,
        "ghp_" * 50_000,
        "-----BEGIN RSA PRIVATE KEY-----" * 7_000,
        "token:" * 35_000,
    ],
    ids=["letters", "url", "dashes", "keys", "sk", "ghp", "pem", "names"],
)
def test_the_rules_read_a_long_string_in_one_pass(text: str) -> None:
    # A rule that went back over the string for each character would take hours over one of
    # these (200,000 characters), and the test's timeout would end it: they take a fraction of a second.
    Rules().text(text)
    Rules().argv([text, text])
