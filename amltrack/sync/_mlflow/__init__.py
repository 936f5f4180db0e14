"""Pushing runs to an MLflow tracking server over its REST API (``mlflow+http://`` remotes).

A run becomes an MLflow run in the experiment of the same name: params and tags, numeric metrics as
metric history, string metrics and the run's own files as artifacts under ``amltrack/``, and its
artifacts through the server's artifact proxy. Only ``httpx`` is used; the ``mlflow`` package is
not needed.

MLflow has no idempotency key, so the push keeps its place on the server: the MLflow run carries
the tag ``amltrack.run_id`` (how a push finds it again) and ``amltrack.sync.cursor`` (how much of
metrics.jsonl it holds), which every metrics batch moves in the same request. A batch whose fate is
unknown (its answer was lost, or it is the first of a push that resumes an interrupted one) is
checked against the server's metric history first and only the missing points are sent. MLflow
also stores some malformed values as 0 without a word, so only valid ones are sent: float values
(NaN and infinities as the strings MLflow parses), int steps, int millisecond timestamps, and keys
mapped into MLflow's character set. ``docs/sync.md`` has the mapping.

Modules by job: ``_mapping`` how names, values and the push's own tags and files look on MLflow
(pure functions), ``_records`` the records of metrics.jsonl's lines, ``_plan`` what the MLflow run
should hold and what a push must send to get it there (no requests), ``_client`` the client
(requests, finding the run, the push, --verify).
"""

from ._client import MlflowRemote
from ._mapping import amltrack_name, mlflow_key, mlflow_path

__all__ = ["MlflowRemote", "amltrack_name", "mlflow_key", "mlflow_path"]
