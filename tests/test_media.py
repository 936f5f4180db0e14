"""Rich kinds (issue 19): images, tables, histograms and confusion matrices, from the call to the
files on disk and back through the readers; bad input refused at the call; a kill leaves no record
without its file."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image as PILImage

import amltrack
from amltrack import _format as fmt
from amltrack import _media, _writer

from .conftest import child_env, wait_until


def records(run: amltrack.Run) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (run.dir / fmt.METRICS_FILE).read_bytes().splitlines()]


def last_run(store: Path) -> amltrack.Run:
    return amltrack.Store(store).last()


class FakeTensor:
    """What log_image and log_histogram see of a torch tensor: detach().cpu().numpy()."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a

    def detach(self) -> FakeTensor:
        return self

    def cpu(self) -> FakeTensor:
        return self

    def numpy(self) -> np.ndarray:
        return self.a


# ------------------------------------------------------------------ images


def test_every_image_input_lands_as_a_file_then_a_record(store: Path, tmp_path: Path) -> None:
    rgb = np.arange(32 * 48 * 3, dtype=np.uint8).reshape(32, 48, 3)
    png = io.BytesIO()
    PILImage.fromarray(rgb).save(png, format="PNG")
    jpeg = io.BytesIO()
    PILImage.fromarray(rgb).save(jpeg, format="JPEG")
    (tmp_path / "in.png").write_bytes(png.getvalue())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1), dpi=50)
    ax.plot([1, 2, 3])
    inputs = {
        "gray": np.full((5, 7), 200, dtype=np.uint8),
        "gray1": np.full((5, 7, 1), 9, dtype=np.uint8),
        "rgb": rgb,
        "rgba": np.zeros((4, 4, 4), dtype=np.uint8),
        "float": np.linspace(0, 1, 12).reshape(3, 4),
        "pil": PILImage.fromarray(rgb),
        "pil_cmyk": PILImage.new("CMYK", (3, 2)),
        "png": png.getvalue(),
        "jpeg": jpeg.getvalue(),
        "path": tmp_path / "in.png",
        "figure": fig,
        "tensor_chw": FakeTensor(np.transpose(rgb, (2, 0, 1)).copy()),
    }
    with amltrack.start_run("img", store=store, outputs=None) as lg:
        for name, image in inputs.items():
            lg.log_image(f"in/{name}", image, caption=f"a {name}")
    plt.close(fig)
    run = last_run(store)
    for name in inputs:
        (img,) = run.metric(f"in/{name}").values
        assert isinstance(img, amltrack.Image) and img.caption == f"a {name}"
        data = img.read_bytes()
        assert hashlib.sha256(data).hexdigest() == img["sha256"] and len(data) == img["size"]
        assert img.path.startswith(f"media/in/{name}/0-") and img.file.is_file()
        assert run.read_artifact(img.path) == data  # an artifact like any other
        with img.open() as opened:
            assert opened.size == (img.width, img.height)
        assert img["format"] == ("jpeg" if name == "jpeg" else "png")
    assert run.metric("in/rgb").values[0].to_numpy().tolist() == rgb.tolist()
    assert run.metric("in/tensor_chw").values[0].to_numpy().tolist() == rgb.tolist()
    assert run.metric("in/pil").values[0].to_numpy().tolist() == rgb.tolist()
    assert run.metric("in/gray1").values[0].to_numpy().tolist() == [[9] * 7] * 5
    assert run.metric("in/float").values[0].to_numpy().ravel().tolist() == [
        int(v * 255 + 0.5) for v in np.linspace(0, 1, 12)
    ]
    # Encoded input is stored byte for byte; a JPEG stays a JPEG.
    assert run.metric("in/jpeg").values[0].read_bytes() == jpeg.getvalue()
    assert run.metric("in/png").values[0].read_bytes() == png.getvalue()
    assert run.metric("in/path").values[0].path.endswith(".png")
    assert run.metric("in/jpeg").values[0].path.endswith(".jpg")
    # The record came after its file: the manifest entry of the file is there, stored.
    stored = {a["path"]: a for a in run.artifacts()}
    for r in records(run):
        assert stored[r["value"]["path"]]["sha256"] == r["value"]["sha256"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    hnp.arrays(
        np.uint8,
        st.one_of(
            st.tuples(st.integers(1, 40), st.integers(1, 40)),
            st.tuples(st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 3, 4])),
        ),
    )
)
def test_any_uint8_image_round_trips_exactly(tmp_path: Path, a: np.ndarray) -> None:
    store = tmp_path / f"s{os.urandom(4).hex()}"
    with amltrack.start_run("h", store=store, outputs=None) as lg:
        lg.log_image("x", a, step=3)
    (point,) = last_run(store).metric("x")
    expect = a[:, :, 0] if a.ndim == 3 and a.shape[2] == 1 else a
    assert point.step == 3 and point.value.to_numpy().tolist() == expect.tolist()


def test_the_caller_keeps_its_buffer(store: Path) -> None:
    a = np.zeros((8, 8, 3), dtype=np.uint8)
    pil = PILImage.fromarray(a)
    with amltrack.start_run("copy", store=store, outputs=None) as lg:
        lg.log_image("a", a)
        lg.log_image("p", pil)
        a[:] = 255  # changed before the writer encodes it: the logged image is the one at the call
        pil.paste((255, 255, 255), (0, 0, 8, 8))
    run = last_run(store)
    assert run.metric("a").values[0].to_numpy().max() == 0
    assert run.metric("p").values[0].to_numpy().max() == 0


class PoisoningBuffers(_media.Buffers):
    """The writer's pixel buffers, checked: no buffer is handed out twice while in use, and one given
    back is overwritten at once, so that a buffer given back before Pillow copied its pixels out
    stores the poison instead of the image."""

    def __init__(self) -> None:
        super().__init__()
        self.in_use: set[int] = set()
        self.taken = self.reused = 0
        self.given: set[int] = set()

    def take(self, size: int) -> Any:
        buf = super().take(size)
        assert id(buf) not in self.in_use, "a buffer in use was handed out again"
        self.in_use.add(id(buf))
        self.taken += 1
        self.reused += id(buf) in self.given
        return buf

    def give(self, buf: Any) -> None:
        assert id(buf) in self.in_use, "a buffer was given back twice, or was never taken"
        self.in_use.discard(id(buf))
        with memoryview(buf) as m:
            m[:] = b"\xa5" * len(m)
        self.given.add(id(buf))
        super().give(buf)


def test_recycled_pixel_buffers_never_mix_images(store: Path) -> None:
    # Many distinct images, logged faster than they are encoded, from one array the caller
    # overwrites after each call; every few calls the writer catches up, so later calls copy into
    # buffers the encoder gave back. Every stored PNG must hold exactly the pixels of its call.
    rng = np.random.default_rng(7)
    side = 160  # 76,800 bytes: new buffers are populated mappings
    frame = np.empty((side, side, 3), dtype=np.uint8)
    expected = []
    with amltrack.start_run("recycle", store=store, outputs=None) as lg:
        buffers = lg._writer.buffers = PoisoningBuffers()
        handles = []
        for i in range(240):
            frame[:] = rng.integers(0, 256, frame.shape, dtype=np.uint8)
            expected.append(frame.copy())
            handles.append(lg.log_image("x", frame, step=i))
            if i % 40 == 39:
                handles[-1].wait()
                # Nothing in flight now: the next call takes an idle buffer, not a new one.
                idle = buffers.idle_bytes
                assert idle >= frame.nbytes
                frame[:] = 0
                expected.append(frame.copy())
                i2 = len(expected) - 1
                handles.append(lg.log_image("y", frame, step=i2))
                assert buffers.idle_bytes == idle - frame.nbytes
                expected.pop()
        for h in handles:
            h.wait()
    assert buffers.reused >= 6 and not buffers.in_use
    points = last_run(store).metric("x")
    assert [p.step for p in points] == list(range(240))
    for p, want in zip(points, expected):
        assert np.array_equal(p.value.to_numpy(), want), f"image at step {p.step} differs"


def test_pixel_buffers_come_back_for_the_next_call_of_their_size() -> None:
    b = _media.Buffers()
    big, small = b.take(256 * 1024), b.take(10)
    assert len(big) == 256 * 1024 and len(small) == 10
    b.give(big)
    b.give(small)
    assert b.take(256 * 1024) is big and b.take(10) is small and b.idle_bytes == 0
    assert b.take(10) is not small  # none idle: a new one


def test_idle_pixel_buffers_are_bounded_and_a_new_size_pushes_old_ones_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_media, "MAX_IDLE_BUFFER_BYTES", 1000)
    b = _media.Buffers()
    olds = [b.take(300) for _ in range(4)]
    for x in olds:
        b.give(x)
    assert b.idle_bytes == 900  # the fourth did not fit
    news = [b.take(400) for _ in range(3)]
    for x in news:
        b.give(x)
    # The 300-byte ones made room for the 400-byte ones; the third 400 found only its own size.
    assert b.idle_bytes == 800
    again, fresh = b.take(400), b.take(300)
    assert any(again is x for x in news[:2]) and not any(fresh is x for x in olds)
    b.give(b.take(2000))  # larger than the bound: never kept
    assert b.idle_bytes == 400
    b.clear()
    assert b.idle_bytes == 0


def test_arrays_not_in_c_order_are_copied_right(store: Path) -> None:
    # A torch image (C x H x W) is transposed, and a strided view has no C-order buffer: each is
    # copied by tobytes(), not into a recycled buffer, and lands as the caller saw it.
    chw = np.arange(3 * 20 * 30, dtype=np.uint8).reshape(3, 20, 30)
    wide = np.arange(20 * 60 * 3, dtype=np.uint8).reshape(20, 60, 3)
    with amltrack.start_run("order", store=store, outputs=None) as lg:
        lg.log_image("torch", FakeTensor(chw))
        lg.log_image("strided", wide[:, ::2])
        lg.log_image("fortran", np.asfortranarray(wide))
    run = last_run(store)
    assert np.array_equal(run.metric("torch").values[0].to_numpy(), chw.transpose(1, 2, 0))
    assert np.array_equal(run.metric("strided").values[0].to_numpy(), wide[:, ::2])
    assert np.array_equal(run.metric("fortran").values[0].to_numpy(), wide)


@pytest.mark.parametrize(
    ("image", "error", "words"),
    [
        (np.zeros((2, 2, 2), dtype=np.uint8), ValueError, "shape (2, 2, 2)"),
        (np.zeros((2, 2, 3, 1), dtype=np.uint8), ValueError, "H x W"),
        (np.zeros((2, 2), dtype=np.int16), TypeError, "int16"),
        (np.full((2, 2), 1.5), ValueError, "[0, 1]"),
        (np.full((2, 2), np.nan), ValueError, "[0, 1]"),
        (np.zeros((8193, 1), dtype=np.uint8), ValueError, "8192"),
        (np.zeros((0, 3), dtype=np.uint8), ValueError, "1 to 8192"),
        (b"GIF89a....", ValueError, "neither PNG nor JPEG"),
        (b"\x89PNG\r\n\x1a\ngarbage", ValueError, "not a readable image"),
        ({"a": 1}, TypeError, "cannot log a dict"),
        ("/no/such/file.png", FileNotFoundError, "cannot read"),
    ],
)
def test_bad_images_are_refused_at_the_call_naming_the_metric(
    logger: amltrack.Logger, image: Any, error: type, words: str
) -> None:
    with pytest.raises(error) as e:
        logger.log_image("val/sample", image)
    assert "'val/sample'" in str(e.value) and words in str(e.value)
    with pytest.raises(TypeError, match="'c'.*caption"):
        logger.log_image("c", np.zeros((2, 2), dtype=np.uint8), caption=3)
    with pytest.raises(ValueError, match="'c'.*caption"):
        logger.log_image("c", np.zeros((2, 2), dtype=np.uint8), caption="x" * 1001)
    with pytest.raises(TypeError, match="step"):
        logger.log_image("c", np.zeros((2, 2), dtype=np.uint8), step="1")
    logger.finish()
    assert last_run(logger.store).metrics() == {}  # nothing invalid reached the writer


def test_without_pillow_log_image_names_the_extra_and_import_stays_light(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['PIL'] = None\n"
        "import amltrack\n"
        "assert 'numpy' not in sys.modules\n"
        f"lg = amltrack.get_logger('x', store={str(tmp_path / 's')!r}, outputs=None)\n"
        "lg.log_histogram('h', [1.0, 2.0]); lg.log_table('t', {'a': [1]}); lg.log_row('r', a=1)\n"
        "assert 'numpy' not in sys.modules and 'PIL' not in [m for m in sys.modules if sys.modules[m]]\n"
        "try:\n"
        "    lg.log_image('i', b'x')\n"
        "except amltrack.MissingExtraError as e:\n"
        "    print(e)\n"
        "lg.finish()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), check=True
    )
    assert (
        out.stdout.strip() == "log_image needs Pillow, which is not installed: pip install 'amltrack[media]'"
    )
    assert out.stderr == ""


def test_logging_images_faster_than_they_are_written_makes_the_caller_wait(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound = 1 << 20
    monkeypatch.setattr(_writer, "MAX_PENDING_BYTES", bound)
    image = np.zeros((256, 256, 3), dtype=np.uint8)  # 196,608 bytes queued each
    peak = 0
    with amltrack.start_run("bp", store=store, outputs=None) as lg:
        for _ in range(40):
            lg.log_image("x", image)
            peak = max(peak, lg._queue.pending_bytes)
    assert peak <= bound + image.nbytes
    assert len(last_run(store).metric("x")) == 40


KILLED = """
import sys, numpy as np, amltrack
lg = amltrack.get_logger("kill", store=sys.argv[1], outputs=None)
rng = np.random.default_rng(0)
i = 0
while True:
    lg.log_image("x", rng.integers(0, 255, (128, 128, 3), dtype=np.uint8), caption=str(i))
    lg.log_histogram("h", rng.standard_normal(1000))
    if i == 30:
        print("logging", flush=True)
    i += 1
"""


def test_a_sigkill_leaves_no_record_without_its_whole_file(tmp_path: Path) -> None:
    store = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(store)], stdout=subprocess.PIPE, env=child_env(), text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "logging\n"
        wait_until(lambda: len(list(store.glob("runs/*/artifacts/media/x/*.png"))) > 20, what="files")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()
    run = last_run(store)
    assert run.status == "crashed"
    images = run.metric("x")
    assert len(images) > 0 and len(run.metric("h")) > 0
    for img in images.values:
        data = img.read_bytes()
        assert hashlib.sha256(data).hexdigest() == img["sha256"]
        with img.open() as opened:
            opened.load()  # a whole PNG


# ------------------------------------------------------------------ tables


def test_tables_from_dicts_and_dataframes_are_mlflow_shaped_json_files(store: Path) -> None:
    import pandas as pd

    df = pd.DataFrame(
        {"cls": ["cat", "dog"], "f1": [0.9, float("nan")], "n": np.array([3, 4]), "ok": [True, False]}
    )
    with amltrack.start_run("t", store=store, outputs=None) as lg:
        lg.log_table("per class", df, step=2)
        lg.log_table("d", {"a": [1, None], "b": ["x", "y"]})
    run = last_run(store)
    (t,) = run.metric("per class").values
    assert isinstance(t, amltrack.Table) and t.path == "media/per class/2-1.table.json"
    body = json.loads(run.read_artifact(t.path))
    assert body == {
        "columns": ["cls", "f1", "n", "ok"],
        "data": [["cat", 0.9, 3, True], ["dog", None, 4, False]],
    }
    assert t.columns == body["columns"] and t.data == body["data"] and t["rows"] == 2
    assert t.to_pandas()["cls"].tolist() == ["cat", "dog"]
    assert run.metric("d").values[0].data == [[1, "x"], [None, "y"]]


def test_log_row_builds_a_table_row_by_row(store: Path) -> None:
    with amltrack.start_run("rows", store=store, outputs=None) as lg:
        for epoch in range(3):
            lg.log_row("per epoch", epoch=epoch, loss=1 / (epoch + 1), note=None if epoch else "start")
    m = last_run(store).metric("per epoch")
    assert m.steps == [0, 1, 2]
    assert [v.data[0] for v in m.values] == [[0, 1.0, "start"], [1, 0.5, None], [2, 1 / 3, None]]
    assert all(v.columns == ["epoch", "loss", "note"] for v in m.values)


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        ({"a": [1, 2], "b": [1]}, ValueError, "equal length"),
        ({"a": [object()]}, TypeError, "object"),
        ({"a": [float("inf")]}, ValueError, "inf"),
        ({"a": [2**64]}, ValueError, "64 bits"),
        ({}, ValueError, "no columns"),
        ({"a": list(range(100_001))}, ValueError, "100000"),
        ({1: [1]}, TypeError, "column name"),
        ({"a": "abc"}, TypeError, "column 'a'"),
        ({"a": np.zeros((2, 2))}, ValueError, "1-D"),
        ([1, 2], TypeError, "dict of equal-length columns"),
    ],
)
def test_bad_tables_are_refused_naming_the_metric(
    logger: amltrack.Logger, data: Any, error: type, words: str
) -> None:
    with pytest.raises(error) as e:
        logger.log_table("tbl", data)
    assert "'tbl'" in str(e.value) and words in str(e.value)
    with pytest.raises(ValueError, match="'r'.*no cells"):
        logger.log_row("r")
    with pytest.raises(TypeError, match="'r'.*column 'x'"):
        logger.log_row("r", x=[1])
    logger.finish()


# ------------------------------------------------------------------ histograms and confusion matrices


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=200),
    st.integers(1, 20),
)
# The float range's ends: a span that overflows when split, and one value that cannot widen outwards.
@example([-sys.float_info.max, sys.float_info.max], 1)
@example([-sys.float_info.max, sys.float_info.max, 0.0], 3)
@example([sys.float_info.max], 2)
@example([-sys.float_info.max], 20)
def test_a_histogram_counts_like_numpy_and_keeps_nan_and_infinities_apart(
    values: list[float], bins: int
) -> None:
    from amltrack._media import histogram_of

    arr = np.array(values, dtype=np.float64)
    for h in (histogram_of(values, bins), histogram_of(arr, bins)):
        assert h["nan"] == int(np.isnan(arr).sum())
        assert h["inf"] == int((arr == np.inf).sum()) and h["-inf"] == int((arr == -np.inf).sum())
        finite = arr[np.isfinite(arr)]
        assert sum(h["counts"]) == finite.size
        if finite.size:
            assert (
                len(h["edges"]) == bins + 1
                and h["edges"][0] <= finite.min()
                and finite.max() <= h["edges"][-1]
            )
            assert all(a < b for a, b in zip(h["edges"], h["edges"][1:]))
            assert h["counts"] == np.histogram(finite, bins=np.array(h["edges"]))[0].tolist()


def test_histograms_and_confusion_matrices_are_inline(store: Path) -> None:
    w = np.random.default_rng(1).standard_normal((100, 100))
    with amltrack.start_run("h", store=store, outputs=None) as lg:
        lg.log_histogram("w", FakeTensor(w), bins=10)
        lg.log_histogram("w", [1, 2, 2, float("nan")], bins=2)
        lg.log_histogram("pre", counts=[1, 5, 2], edges=[0.0, 1.0, 2.0, 3.0], step=7)
        lg.log_confusion_matrix("cm", np.array([[5, 1], [2, 7]]), labels=["cat", "dog"])
    run = last_run(store)
    h0, h1 = run.metric("w").values
    assert isinstance(h0, amltrack.Histogram) and sum(h0.counts) == 10_000 and len(h0.edges) == 11
    assert h1.counts == [1, 2] and h1.nan == 1 and h1.edges == [1.0, 1.5, 2.0]
    (pre,) = run.metric("pre")
    assert pre.step == 7 and pre.value.counts == [1, 5, 2] and pre.value.inf == 0
    (cm,) = run.metric("cm").values
    assert isinstance(cm, amltrack.ConfusionMatrix) and cm.labels == ["cat", "dog"]
    assert cm.matrix == [[5, 1], [2, 7]]
    assert not (run.dir / fmt.ARTIFACTS_DIR).exists()  # inline: no files
    assert {k: v["kind"] for k, v in run.cached_summary()["metrics"].items()} == {
        "w": "histogram",
        "pre": "histogram",
        "cm": "confusion_matrix",
    }


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"values": "abc"}, TypeError, "values is a str"),
        ({"values": [1, "a"]}, TypeError, "element 1"),
        ({"values": [1.0], "bins": 0}, ValueError, "bins=0"),
        ({"values": [1.0], "bins": 1001}, ValueError, "bins=1001"),
        ({"values": [1.0], "bins": 2.5}, TypeError, "bins"),
        ({"values": [1.0], "counts": [1], "edges": [0, 1]}, TypeError, "not both"),
        ({"counts": [1, 2]}, TypeError, "both counts= and edges="),
        ({"counts": [1, 2], "edges": [0, 1]}, ValueError, "one edge more"),
        ({"counts": [1, -2], "edges": [0, 1, 2]}, ValueError, ">= 0"),
        ({"counts": [1, 2], "edges": [0, 2, 1]}, ValueError, "increasing"),
        ({"values": np.array(["a"])}, TypeError, "<U1"),
    ],
)
def test_bad_histograms_are_refused_naming_the_metric(
    logger: amltrack.Logger, kwargs: dict[str, Any], error: type, words: str
) -> None:
    with pytest.raises(error) as e:
        logger.log_histogram("hist", **kwargs)
    assert "'hist'" in str(e.value) and words in str(e.value)
    logger.finish()


@pytest.mark.parametrize(
    ("matrix", "labels", "error", "words"),
    [
        ([[1, 2], [3, 4]], ["a"], ValueError, "1 x 1"),
        ([[1, 2], [3]], ["a", "b"], ValueError, "row 1"),
        ([[1, -2], [3, 4]], ["a", "b"], ValueError, ">= 0"),
        ([[1, 2], [3, float("nan")]], ["a", "b"], ValueError, "row 1"),
        ([[1]], "a", TypeError, "labels"),
        ([[1]], [None], TypeError, "labels"),
        ([[0] * 257] * 257, [str(i) for i in range(257)], ValueError, "257 labels"),
    ],
)
def test_bad_confusion_matrices_are_refused_naming_the_metric(
    logger: amltrack.Logger, matrix: Any, labels: Any, error: type, words: str
) -> None:
    with pytest.raises(error) as e:
        logger.log_confusion_matrix("cm", matrix, labels=labels)
    assert "'cm'" in str(e.value) and words in str(e.value)
    logger.finish()


# ------------------------------------------------------------------ readers and the CLI


def test_history_info_lists_kinds_and_counts_and_reaches_the_image_files(store: Path, tmp_path: Path) -> None:
    with amltrack.start_run("cli", store=store, outputs=None) as lg:
        for i in range(3):
            lg.log_image("samples", np.full((4, 4), i * 80, dtype=np.uint8))
        lg.log_histogram("h", [1.0, 2.0])
        lg.log("loss", 0.5)
    run = last_run(store)
    env = child_env(COLUMNS="200")
    amltrack_cli = [sys.executable, "-m", "amltrack"]
    out = subprocess.run(
        [*amltrack_cli, "history", "info", "-r", "last", "--store", str(store), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    metrics = json.loads(out.stdout)["metrics"]
    assert {n: (m["kind"], m["count"]) for n, m in metrics.items()} == {
        "samples": ("image", 3),
        "h": ("histogram", 1),
        "loss": ("number", 1),
    }
    out = subprocess.run(
        [*amltrack_cli, "history", "info", "-r", "last", "--store", str(store)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("samples"))
    assert " image " in line and " 3 " in line and "image 4x4 media/samples/2-3.png" in line
    img = run.metric("samples").values[-1]
    dest = tmp_path / "got.png"
    subprocess.run(
        [
            *amltrack_cli,
            "history",
            "info",
            "-r",
            "last",
            "--store",
            str(store),
            "-a",
            img.path,
            "-o",
            str(dest),
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    assert dest.read_bytes() == img.read_bytes()


# ------------------------------------------------------------------ docs/format.md's recipes

DOC = Path(__file__).resolve().parent.parent / "docs" / "format.md"


def rich_section(lang: str) -> str:
    import re

    text = DOC.read_text()
    section = text[text.index("## Rich kinds") :]
    section = section[: section.index("\n## ", 10)]
    (block,) = re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)
    return block


@pytest.fixture
def rich_run(store: Path) -> Path:
    with amltrack.start_run("docs", store=store, outputs=None) as lg:
        lg.log("loss", 0.5)
        lg.log_metrics({"acc": 0.5})
        lg.log_image("samples", np.zeros((4, 6, 3), dtype=np.uint8), caption="zeros")
        lg.log_image("samples", np.ones((2, 2), dtype=np.uint8))
        for epoch in range(2):
            lg.log_row("per epoch", epoch=epoch, loss=0.5 / (epoch + 1))
        lg.log_table("per class", {"class": ["cat", "dog"], "f1": [0.9, 0.8]})
        lg.log_histogram("weights", [1.0, 2.0, 2.0, 3.0], bins=2, step=0)
        lg.log_histogram("weights", [1.0, 2.0], bins=2, step=1)
        lg.log_confusion_matrix("cm", [[1, 0], [0, 1]], labels=["a", "b"])
    return lg.run_dir


@pytest.mark.skipif(__import__("shutil").which("jq") is None, reason="jq is not installed")
def test_the_jq_recipes_of_the_rich_kinds(rich_run: Path) -> None:
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", rich_section("bash")],
        capture_output=True,
        text=True,
        env={**os.environ, "RUN": str(rich_run)},
        check=True,
    )
    lines = out.stdout.splitlines()
    assert lines[:2] == ["samples\t0\t6x4\tmedia/samples/0-3.png", "samples\t1\t2x2\tmedia/samples/1-4.png"]
    assert "images ok" in lines
    assert "0,0.5" in lines and "1,0.25" in lines
    assert '"class","f1"' in lines and '"cat",0.9' in lines
    assert lines[-2:] == ["1,1", "1.5,1"]


def test_the_duckdb_recipes_of_the_rich_kinds(rich_run: Path) -> None:
    pytest.importorskip("duckdb")
    out = subprocess.run(
        [sys.executable, "-c", rich_section("python")],
        capture_output=True,
        text=True,
        env={**os.environ, "RUN": str(rich_run)},
    )
    assert out.returncode == 0, out.stderr
    assert "media/samples/0-3.png" in out.stdout and "zeros" in out.stdout
    assert "│ cat " in out.stdout and "0.8" in out.stdout
    assert out.stdout.count("│     0 │") >= 2  # the bins of step 0


# ------------------------------------------------------------------ sync to amltrack's own server


def test_the_own_server_receives_the_media_files_byte_for_byte(tmp_path: Path, rich_run: Path) -> None:
    from amltrack.sync import AmltrackRemote, sync

    from .sync_helpers import READ_TOKEN, WRITE_TOKEN, ServerProcess, assert_same_run, cli

    srv = ServerProcess(tmp_path / "server", tmp_path / "server.log").start()
    remote = AmltrackRemote(srv.url, WRITE_TOKEN)
    try:
        report = sync(rich_run.parent.parent, remote)
        assert report.ok and [r.outcome for r in report.runs] == ["pushed"], report.runs
        there = srv.store / "runs" / rich_run.name
        assert_same_run(rich_run, there)
        assert len(list((there / "artifacts" / "media").rglob("*.png"))) == 2
        run = amltrack.Store(srv.store).run(rich_run.name)
        img = run.metric("samples").values[0]
        assert img.read_bytes() == (rich_run / "artifacts" / img.path).read_bytes()
        assert run.metric("per class").values[0].data == [["cat", 0.9], ["dog", 0.8]]
        # history info --remote: the server's own summary of the run knows the kinds
        out = cli(
            "history", "info", "-r", rich_run.name, "--remote", srv.url, "--json", AMLTRACK_TOKEN=READ_TOKEN
        )
        assert out.returncode == 0, out.stderr
        kinds = {n: (m["kind"], m["count"]) for n, m in json.loads(out.stdout)["metrics"].items()}
        assert kinds["samples"] == ("image", 2) and kinds["weights"] == ("histogram", 2)
        out = cli(
            "history", "info", "-r", rich_run.name, "--remote", srv.url, "-a", img.path, "-o",
            str(tmp_path / "got.png"), AMLTRACK_TOKEN=READ_TOKEN,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert (tmp_path / "got.png").read_bytes() == img.read_bytes()
    finally:
        remote.close()
        srv.stop()


def test_metrics_exports_a_table_a_histogram_and_a_matrix(rich_run: Path) -> None:
    from .sync_helpers import cli

    store = str(rich_run.parent.parent)
    out = cli("metrics", "--store", store, "-r", "last", "per epoch", "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "step,epoch,loss\n0,0,0.5\n1,1,0.25\n"
    out = cli("metrics", "--store", store, "per class", "--json")
    body = json.loads(out.stdout)
    assert body["kind"] == "table" and body["columns"] == ["step", "class", "f1"]
    assert body["data"] == [[0, "cat", 0.9], [0, "dog", 0.8]]
    with amltrack.start_run("more", store=Path(store), outputs=None) as lg:
        lg.log_histogram("h", [1.0, 2.0, float("nan"), float("-inf")], bins=1)
        lg.log_confusion_matrix("cm", [[1, 2], [3, 4]], labels=["a", "b"])
        lg.log_row("mixed", a=1)
        lg.log_row("mixed", b="x")
    out = cli("metrics", "--store", store, "h")
    assert out.stdout == "step,lo,hi,count\n0,1.0,2.0,2\n0,NaN,NaN,1\n0,-Infinity,-Infinity,1\n"
    out = cli("metrics", "--store", store, "cm", "-f", "csv")
    assert out.stdout.splitlines() == [
        "step,true,predicted,count",
        "0,a,a,1",
        "0,a,b,2",
        "0,b,a,3",
        "0,b,b,4",
    ]
    out = cli("metrics", "--store", store, "mixed")
    assert out.stdout == "step,a,b\n0,1,\n1,,x\n"
    out = cli("metrics", "--store", store, "h", "--format", "jsonl")  # records, as for any metric
    assert json.loads(out.stdout)["value"]["kind"] == "histogram"
    out = cli("metrics", "--store", store, "h", "cm")  # several names: the records, a JSON cell each
    assert out.returncode == 0 and out.stdout.count('""kind"":') == 2  # CSV doubles the quotes


CELLS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 4).flatmap(lambda k: st.lists(st.lists(CELLS, min_size=k, max_size=k), max_size=12)))
def test_any_table_round_trips_exactly(tmp_path: Path, rows: list[list[Any]]) -> None:
    k = len(rows[0]) if rows else 2
    columns = {f"c{j}": [r[j] for r in rows] for j in range(k)}
    store = tmp_path / f"s{os.urandom(4).hex()}"
    with amltrack.start_run("t", store=store, outputs=None) as lg:
        lg.log_table("t", columns)
        if rows:
            lg.log_row("r", **dict(zip(columns, rows[0])))
    run = last_run(store)
    (t,) = run.metric("t").values
    assert t.columns == list(columns) and t.data == rows and t["rows"] == len(rows)
    if rows:
        assert run.metric("r").values[0].data == [rows[0]]
