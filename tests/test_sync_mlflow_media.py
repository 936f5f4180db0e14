"""The rich kinds (issue 19) synced to a real MLflow server, read back with MLflow's own client:
images where ``mlflow.log_image`` puts them, tables as ``mlflow.log_table`` files that
``MlflowClient.load_table`` reads, histograms and confusion matrices as JSON artifacts."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

import amltrack
from amltrack.sync import MlflowRemote, sync

from . import test_sync_mlflow as _mlflow_tests
from .test_sync_mlflow import MLFLOW_PYTHON, PASSWORD, USER

# The MLflow tests' fixtures: a real server for the module, and its credentials.
server, creds = _mlflow_tests.server, _mlflow_tests.creds

LOAD_TABLE = """
import json, sys, mlflow
client = mlflow.MlflowClient()
run = client.get_run(sys.argv[1])
df = client.load_table(run.info.experiment_id, "per class.json", run_ids=[sys.argv[1]])
print(json.dumps({"columns": list(df.columns), "rows": df.values.tolist()}))
"""


def test_rich_kinds_map_onto_mlflows_own_layout(
    server: object, tmp_path: Path, creds: dict[str, str]
) -> None:
    local = tmp_path / "local"
    jpeg = io.BytesIO()
    PILImage.fromarray(np.full((10, 20, 3), 200, dtype=np.uint8)).save(jpeg, format="JPEG")
    with amltrack.start_run("mlflow-media", store=local, outputs=None) as lg:
        for step in range(2):
            lg.log_image("val/samples", np.full((300, 150, 3), 60 * step, dtype=np.uint8), step=step)
        lg.log_image("photo", jpeg.getvalue())
        lg.log_table("per class", {"class": ["cat", "dog"], "f1": [0.5, 0.25]})
        lg.log_row("per class", **{"class": "cow", "f1": 0.75})
        lg.log_histogram("w", [1.0, 2.0, 3.0], bins=2)
        lg.log_confusion_matrix("cm", [[1, 2], [3, 4]], labels=["a", "b"])
        lg.log("loss", 0.5)
        run_id = lg.run_id

    remotes = [MlflowRemote(server.url) for _ in range(3)]
    try:
        check_the_push(server, local, run_id, remotes)
    finally:
        for r in remotes:
            r.close()


def check_the_push(server: object, local: Path, run_id: str, remotes: list[MlflowRemote]) -> None:
    run = amltrack.Store(local).run(run_id)
    report = sync(local, remotes[0])
    assert report.ok, report.runs
    (back,) = server.read(run_id)[run_id]
    arts = {p: base64.b64decode(b) for p, b in back["artifacts"].items()}
    assert not any(p.startswith("media/") for p in arts)  # shown in MLflow's layout instead

    # Images as log_image names them: images/KEY+step+N+timestamp+MS+UUID.png and a thumbnail.
    pattern = re.compile(
        r"images/val~samples\+step\+(\d)\+timestamp\+(\d+)\+[0-9a-f-]{36}(\.png|\+compressed\.webp)"
    )
    found = sorted((m.group(1), m.group(3)) for p in arts if (m := pattern.fullmatch(p)))
    assert found == [("0", "+compressed.webp"), ("0", ".png"), ("1", "+compressed.webp"), ("1", ".png")]
    images = run.metric("val/samples").values
    for step, img in enumerate(images):
        (png,) = [
            b
            for p, b in arts.items()
            if p.startswith(f"images/val~samples+step+{step}+") and p.endswith(".png")
        ]
        assert png == img.read_bytes()  # byte for byte
    (thumb,) = [b for p, b in arts.items() if "step+1+" in p and p.endswith(".webp")]
    assert PILImage.open(io.BytesIO(thumb)).size == (128, 256)
    (photo,) = [b for p, b in arts.items() if p.startswith("images/photo+") and p.endswith(".png")]
    assert PILImage.open(io.BytesIO(photo)).format == "PNG"  # the JPEG, as MLflow's UI wants it
    assert back["tags"]["mlflow.loggedImages"] == "True"
    assert json.loads(back["tags"]["mlflow.loggedArtifacts"]) == [{"path": "per class.json", "type": "table"}]

    # The table, as log_table writes it; MLflow's own load_table reads it (through pandas, whose
    # JSON reader rounds some decimals: the values here are exact in binary).
    assert json.loads(arts["per class.json"]) == {
        "columns": ["class", "f1"],
        "data": [["cat", 0.5], ["dog", 0.25], ["cow", 0.75]],
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMLTRACK_", "MLFLOW_"))}
    env.update(
        MLFLOW_TRACKING_URI=server.http, MLFLOW_TRACKING_USERNAME=USER, MLFLOW_TRACKING_PASSWORD=PASSWORD
    )
    out = subprocess.run(
        [str(MLFLOW_PYTHON), "-c", LOAD_TABLE, back["run_id"]], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "columns": ["class", "f1"],
        "rows": [["cat", 0.5], ["dog", 0.25], ["cow", 0.75]],
    }

    # Histograms and confusion matrices as JSON, every step.
    hist = json.loads(arts["amltrack/histograms/w.json"])
    assert hist["steps"] == [0] and hist["values"][0]["counts"] == [1, 2]
    cm = json.loads(arts["amltrack/confusion_matrices/cm.json"])
    assert cm["values"][0]["matrix"] == [[1, 2], [3, 4]] and cm["values"][0]["labels"] == ["a", "b"]
    assert back["metrics"]["loss"][0][2] == 0.5  # numbers as before, and no metric for the rich kinds
    assert set(back["metrics"]) == {"loss"}

    again = sync(local, remotes[1])
    assert again.bytes == 0 and [r.outcome for r in again.runs] == ["up_to_date"]
    checked = sync(local, remotes[2], all_runs=True, verify=True)
    assert checked.ok and all(r.differences == [] for r in checked.runs)
