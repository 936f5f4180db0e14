"""The logger against hostile input: values whose repr is huge or nested deeper than Python recurses,
and uploads whose paths clash with the run's other artifacts. Each is refused at the call with the
documented error, in a message of a few hundred characters, and the run goes on."""

from __future__ import annotations

import errno
import threading
from pathlib import Path
from typing import Any

import pytest

import amltrack
from amltrack import InvalidMetricError, InvalidPathError

SHORT = 300  # characters: a message that echoes a value shows about 100 of it


def nested(depth: int) -> list[Any]:
    v: list[Any] = [0]
    for _ in range(depth):
        v = [v]
    return v


def nested_tuple(depth: int) -> tuple[Any, ...]:  # hashable: a dict key
    v: tuple[Any, ...] = (0,)
    for _ in range(depth):
        v = (v,)
    return v


DEEP = nested(1100)  # deeper than the interpreter's recursion limit
WIDE = [[0] * 10**6]  # its repr is 3,000,003 characters


def short(e: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(e.value)
    assert len(text) < SHORT, (len(text), text[:SHORT])
    assert "\n" not in text
    return text


def stored(logger: amltrack.Logger, name: str) -> list[Any]:
    return amltrack.Store(logger.store).run(logger.run_id).metric(name).values


# ----------------------------------------------------------------- values, names and steps


@pytest.mark.parametrize("value", [DEEP, WIDE], ids=["1100 deep", "10**6 wide"])
def test_log_refuses_a_nested_list_with_a_short_message_naming_metric_and_type(
    logger: amltrack.Logger, value: list[Any]
) -> None:
    with pytest.raises(TypeError) as e:
        logger.log("n", value)
    text = short(e)
    assert "'n'" in text and "list" in text
    logger.log("n", 1.0).wait()  # the run goes on
    assert stored(logger, "n") == [1.0]


@pytest.mark.parametrize("value", [DEEP, WIDE], ids=["1100 deep", "10**6 wide"])
def test_log_metrics_refuses_a_nested_list_with_a_short_message_naming_metric_and_type(
    logger: amltrack.Logger, value: list[Any]
) -> None:
    with pytest.raises(TypeError) as e:
        logger.log_metrics({"ok": 1.0, "n": value})
    text = short(e)
    assert "'n'" in text and "list" in text


@pytest.mark.parametrize("values", [DEEP, WIDE, ["x" * 10**6]], ids=["1100 deep", "10**6 wide", "long str"])
def test_log_metrics_refuses_a_list_for_its_dict_with_a_short_message(
    logger: amltrack.Logger, values
) -> None:
    with pytest.raises(TypeError) as e:
        logger.log_metrics(values)
    assert "list" in short(e)


def test_an_int_of_thousands_of_digits_is_refused_naming_the_metric(logger: amltrack.Logger) -> None:
    # str() of an int over 4,300 digits raises ValueError itself: the message must not need it
    with pytest.raises(InvalidMetricError) as e:
        logger.log("n", 10**5000)
    assert "'n'" in short(e) and "64 bits" in str(e.value)
    with pytest.raises(InvalidMetricError) as e:
        logger.log("n", [1.0, 10**5000])
    assert "'n'" in short(e)
    with pytest.raises(InvalidMetricError) as e:
        logger.log_metrics({"n": 10**5000})
    assert "'n'" in short(e)


@pytest.mark.parametrize(
    "name", [DEEP, nested_tuple(1100), WIDE, b"x" * 10**6], ids=["deep list", "deep tuple", "wide", "bytes"]
)
def test_a_name_that_is_no_str_is_refused_with_a_short_message(logger: amltrack.Logger, name) -> None:
    with pytest.raises(TypeError) as e:
        logger.log(name, 1.0)
    assert type(name).__name__ in short(e)
    with pytest.raises(TypeError) as e:
        logger.log(name, 2**64)  # an out-of-range int: the name is checked first
    assert type(name).__name__ in short(e)
    with pytest.raises((TypeError, ValueError)) as e:  # both are wrong: either may be named
        logger.log(name, "\xe9" * (2**20 + 1))  # an over-long str value
    short(e)
    if not isinstance(name, list):  # a dict key must be hashable
        with pytest.raises(TypeError) as e:
            logger.log_metrics({name: 1.0})
        assert type(name).__name__ in short(e)


def test_an_over_long_name_is_named_by_its_start(logger: amltrack.Logger) -> None:
    with pytest.raises(InvalidMetricError) as e:
        logger.log("x" * 10**6, 1.0)
    assert "1000000 characters" in short(e)
    with pytest.raises(InvalidMetricError) as e:
        logger.log_metrics({"x" * 10**6: 1.0})
    assert "1000000 characters" in short(e)


@pytest.mark.parametrize(
    ("step", "exc"),
    [
        (DEEP, TypeError),
        (WIDE, TypeError),
        ("x" * 10**6, TypeError),
        (10**5000, InvalidMetricError),
        (-(10**5000), InvalidMetricError),
    ],
    ids=["deep", "wide", "long str", "huge int", "huge negative int"],
)
def test_a_bad_step_is_refused_with_a_short_message_naming_the_metric(
    logger: amltrack.Logger, step, exc
) -> None:
    logger.log("seen", 1.0)  # a name with a counter takes another path than a new one
    for name in ("new", "seen"):
        with pytest.raises(exc) as e:
            logger.log(name, 1.0, step=step)
        assert f"'{name}'" in short(e) and "step" in str(e.value)
    with pytest.raises(exc) as e:
        logger.log_metrics({"n": 1.0}, step=step)
    assert "'n'" in short(e)


def test_bad_params_and_tags_are_refused_with_a_short_message(store: Path) -> None:
    with pytest.raises(TypeError) as e:
        amltrack.get_logger(store=store, outputs=None, params={nested_tuple(1100): 1})
    short(e)
    with pytest.raises(TypeError) as e:
        amltrack.get_logger(store=store, outputs=None, params={"x" * 10**6: WIDE})
    short(e)
    with pytest.raises(ValueError) as e:
        amltrack.get_logger("x" * 10**6, store=store, outputs=None)
    short(e)


# ----------------------------------------------------------------- upload paths and contents


@pytest.mark.parametrize(
    "path", [DEEP, WIDE, "x" * 10**6, "a/" * 10**5 + "\x00"], ids=["deep", "wide", "long", "NUL"]
)
def test_a_bad_upload_path_is_refused_with_a_short_message(
    logger: amltrack.Logger, tmp_path: Path, path
) -> None:
    with pytest.raises(InvalidPathError) as e:
        logger.upload(path, b"x")
    short(e)
    local = tmp_path / "local.bin"
    local.write_bytes(b"x")
    with pytest.raises(InvalidPathError) as e:
        logger.upload_file(path, local)
    short(e)


def test_a_missing_local_file_is_named_in_a_short_message(logger: amltrack.Logger) -> None:
    with pytest.raises(FileNotFoundError) as e:
        logger.upload_file("ok.bin", "y" * 10**6)
    assert "'ok.bin'" in short(e)


def test_bad_upload_content_is_refused_with_a_short_message(logger: amltrack.Logger) -> None:
    with pytest.raises(TypeError) as e:
        logger.upload("a.txt", DEEP)  # type: ignore[arg-type]
    assert "list" in short(e)
    with pytest.raises(ValueError) as e:
        logger.upload("a.txt", "\ud800" * 10**6)
    short(e)


# ----------------------------------------------------------------- a file where a folder is needed


def test_a_folder_where_this_run_stored_a_file_is_refused_at_the_call(logger: amltrack.Logger) -> None:
    logger.upload("clash", b"f").wait()
    with pytest.raises(InvalidPathError) as e:
        logger.upload("clash/inner", b"x")
    text = short(e)
    assert "'clash/inner'" in text and "'clash'" in text and "disk" not in text
    assert e.value.clashes_with == "clash"
    logger.log("after", 1.0).wait()  # nothing poisoned
    logger.finish()
    run = amltrack.Store(logger.store).run(logger.run_id)
    assert run.metric("after").values == [1.0] and "write_error" not in run.info
    assert run.read_artifact("clash") == b"f"
    assert [a["path"] for a in run.artifacts()] == ["clash"]  # the refused one was never queued


def test_a_file_where_this_run_stored_a_folder_is_refused_at_the_call(logger: amltrack.Logger) -> None:
    logger.upload("a/b", b"x").wait()
    with pytest.raises(InvalidPathError) as e:
        logger.upload("a", b"f")
    text = short(e)
    assert "'a'" in text and "'a/b'" in text
    logger.upload("a/c", b"y").wait()  # the folder takes more files
    logger.upload("a/b", b"z").wait()  # and a file is replaced
    logger.log("after", 1.0).wait()
    assert stored(logger, "after") == [1.0]


def test_a_clash_with_an_upload_still_queued_is_refused_at_the_call(logger: amltrack.Logger) -> None:
    w = logger._writer
    release = threading.Event()
    orig = w._write_batch

    def held_up(*batch):  # a disk that takes its time: nothing is written yet
        release.wait(60)
        orig(*batch)

    w._write_batch = held_up
    try:
        first = logger.upload("q/r", b"x")
        with pytest.raises(InvalidPathError, match="'q/r'"):
            logger.upload("q", b"f")
        second = logger.upload("s", b"y")
        with pytest.raises(InvalidPathError, match="'s'"):
            logger.upload("s/t/u", b"z")
    finally:
        release.set()
    first.wait(timeout=60)
    second.wait(timeout=60)


def test_a_clash_with_files_another_process_wrote_is_refused_at_the_call(logger: amltrack.Logger) -> None:
    artifacts = logger.run_dir / "artifacts"
    (artifacts / "theirs").mkdir(parents=True)
    (artifacts / "theirs" / "file.txt").write_bytes(b"theirs")
    (artifacts / "plain").write_bytes(b"theirs")
    with pytest.raises(InvalidPathError) as e:
        logger.upload("theirs", b"mine")
    assert "'theirs'" in short(e) and "'theirs/file.txt'" in str(e.value)
    with pytest.raises(InvalidPathError) as e:
        logger.upload("plain/deeper/x", b"mine")
    assert "'plain/deeper/x'" in short(e) and "'plain'" in str(e.value)
    (artifacts / "empty").mkdir()
    with pytest.raises(InvalidPathError, match="'empty'.*folder"):
        logger.upload("empty", b"mine")
    logger.upload("theirs/mine.txt", b"mine").wait()  # beside them is fine
    logger.log("after", 1.0).wait()
    assert stored(logger, "after") == [1.0]


def _held_writer(logger: amltrack.Logger) -> threading.Event:
    """Hold the writer before its next batch until the returned event is set."""
    w = logger._writer
    release = threading.Event()
    orig = w._write_batch

    def held_up(*batch):
        release.wait(60)
        orig(*batch)

    w._write_batch = held_up
    return release


@pytest.mark.parametrize(
    ("path", "make", "code"),
    [
        ("late/x", lambda a: (a / "late").write_bytes(b"theirs"), errno.EEXIST),  # a file where a folder goes
        ("late/deep/x", lambda a: (a / "late").write_bytes(b"theirs"), errno.ENOTDIR),
        (
            "late",
            lambda a: (a / "late" / "inner").mkdir(parents=True),
            errno.EISDIR,
        ),  # a folder where the file goes
    ],
    ids=["file for folder", "file for folders", "folder for file"],
)
def test_a_clash_only_the_writer_finds_fails_that_upload_only(
    logger: amltrack.Logger, path, make, code
) -> None:
    artifacts = logger.run_dir / "artifacts"
    artifacts.mkdir(exist_ok=True)
    release = _held_writer(logger)
    try:
        h = logger.upload(path, b"mine")  # accepted: nothing clashes yet
        make(artifacts)  # then another process writes into the run
    finally:
        release.set()
    with pytest.raises(amltrack.WriteError) as e:
        h.wait(timeout=60)
    text = str(e.value)
    assert e.value.errno == code and errno.errorcode[code] in text, text
    assert path in text and "free disk space" not in text and "file-size" not in text
    assert not e.value.retried
    logger.log("after", 1.0).wait(timeout=60)  # the next call neither raises nor loses its value
    logger.log_metrics({"row": 2.0}).wait(timeout=60)
    logger.flush(timeout=60)
    logger.finish()
    run = amltrack.Store(logger.store).run(logger.run_id)
    assert run.metric("after").values == [1.0] and run.metric("row").values == [2.0]
    assert run.status == "completed" and "write_error" not in run.info
    failed = [a for a in run.artifacts() if a["path"] == path]
    assert failed and failed[-1]["status"] == "failed" and errno.errorcode[code] in failed[-1]["reason"]
    leftovers = [p.name for p in artifacts.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers


def test_a_failed_upload_gives_up_its_claim_on_the_path(logger: amltrack.Logger) -> None:
    artifacts = logger.run_dir / "artifacts"
    artifacts.mkdir(exist_ok=True)
    release = _held_writer(logger)
    try:
        h = logger.upload("gone/x", b"mine")
        (artifacts / "gone").write_bytes(b"theirs")
    finally:
        release.set()
    with pytest.raises(amltrack.WriteError):
        h.wait(timeout=60)
    (artifacts / "gone").unlink()
    logger.upload("gone", b"a file now").wait(timeout=60)  # "gone/x" was never stored: no clash
    assert amltrack.Store(logger.store).run(logger.run_id).read_artifact("gone") == b"a file now"


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.EACCES, "Permission denied"),
        (errno.ENAMETOOLONG, "File name too long"),
        (errno.EPERM, "not permitted"),
    ],
)
def test_an_error_of_one_upload_fails_its_handle_only_naming_the_errno(
    logger: amltrack.Logger, code: int, words: str
) -> None:
    artifacts = logger._writer._artifacts
    put = artifacts.put

    def refusing(path: str, **kw: Any) -> Any:  # the file system refuses this one file
        if path == "bad.bin":
            raise OSError(code, __import__("os").strerror(code), str(artifacts.root / path))
        return put(path, **kw)

    artifacts.put = refusing  # type: ignore[method-assign]
    h = logger.upload("bad.bin", b"x")
    with pytest.raises(amltrack.WriteError) as e:
        h.wait(timeout=60)
    text = str(e.value)
    assert isinstance(e.value, OSError) and e.value.errno == code
    assert errno.errorcode[code] in text and words in text and "bad.bin" in text, text
    assert "free disk space" not in text and "file-size" not in text
    logger.log("after", 1.0).wait(timeout=60)
    logger.upload("good.bin", b"y").wait(timeout=60)
    logger.finish()
    run = amltrack.Store(logger.store).run(logger.run_id)
    assert run.metric("after").values == [1.0] and run.read_artifact("good.bin") == b"y"
    assert "write_error" not in run.info


def test_a_failed_upload_nobody_waited_for_is_told_at_finish(logger: amltrack.Logger) -> None:
    artifacts = logger.run_dir / "artifacts"
    artifacts.mkdir(exist_ok=True)
    release = _held_writer(logger)
    try:
        logger.upload("late/x", b"mine")  # its handle is dropped: nobody will wait() for it
        waited = logger.upload("other/y", b"mine")
        (artifacts / "late").write_bytes(b"theirs")
        (artifacts / "other").write_bytes(b"theirs")
    finally:
        release.set()
    with pytest.raises(amltrack.WriteError):
        waited.wait(timeout=60)  # told here: finish() need not tell of it again
    logger.log("after", 1.0)
    with pytest.warns(
        UserWarning, match=r"1 upload\(s\) of run .* were not stored: .*late/x.*EEXIST"
    ) as told:
        logger.finish()
    assert len(told) == 1 and "other/y" not in str(told[0].message)
    run = amltrack.Store(logger.store).run(logger.run_id)
    assert run.status == "completed" and run.metric("after").values == [1.0]


def test_a_full_disk_names_its_errno_and_says_what_to_do(logger: amltrack.Logger) -> None:
    e = amltrack.WriteError(
        logger.run_dir / "metrics.jsonl", OSError(errno.ENOSPC, "No space left on device")
    )
    text = str(e)
    assert "ENOSPC" in text and "No space left on device" in text and "free disk space" in text
    assert "written again" in text and e.retried
    e = amltrack.WriteError(logger.run_dir / "metrics.jsonl", OSError(errno.EFBIG, "File too large"))
    assert "EFBIG" in str(e) and "file-size limit" in str(e) and "free disk space" not in str(e)
