"""Read amltrack runs back from an MLflow server with MLflow's own client, and print them as JSON.

Runs under the Python of the virtualenv that has mlflow, not amltrack's (tests/test_sync_mlflow.py):

    MLFLOW_TRACKING_URI=http://127.0.0.1:5000 .venv-mlflow/bin/python mlflow_read.py RUN_ID...

Prints ``{RUN_ID: [run, ...]}``: every MLflow run tagged ``amltrack.run_id=RUN_ID`` (there should be
one), with its info, params, tags, the full history of every metric, and every artifact's bytes
(base64). NaN and infinities are printed as the strings "NaN", "Infinity" and "-Infinity".
"""

from __future__ import annotations

import base64
import json
import math
import os
import sys
import tempfile

from mlflow.entities import Run, ViewType
from mlflow.tracking import MlflowClient


def number(v: float) -> float | str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def read(client: MlflowClient, run: Run) -> dict:
    rid = run.info.run_id
    metrics = {
        key: sorted([m.step, m.timestamp, number(m.value)] for m in client.get_metric_history(rid, key))
        for key in run.data.metrics
    }
    artifacts = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = client.download_artifacts(rid, "", tmp)
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                with open(path, "rb") as f:
                    artifacts[rel] = base64.b64encode(f.read()).decode()
    return {
        "run_id": rid,
        "experiment": client.get_experiment(run.info.experiment_id).name,
        "run_name": run.info.run_name,
        "status": run.info.status,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "lifecycle_stage": run.info.lifecycle_stage,
        "params": run.data.params,
        "tags": run.data.tags,
        "metrics": metrics,
        "artifacts": artifacts,
    }


def main(ids: list[str]) -> None:
    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    out = {}
    for local_id in ids:
        runs = client.search_runs(
            experiments,
            filter_string=f"tags.`amltrack.run_id` = '{local_id}'",
            run_view_type=ViewType.ALL,
        )
        out[local_id] = [read(client, r) for r in runs]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
