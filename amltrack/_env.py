"""The environment variables amltrack reads: each name is spelled here and nowhere else in the code.

| variable | read by | what it sets |
|---|---|---|
| ``AMLTRACK_STORE`` | the store, the logger, every CLI command | the store folder, else the nearest ``.amltrack/`` |
| ``AMLTRACK_EXPERIMENT`` | ``get_logger()`` | the experiment when none is given |
| ``AMLTRACK_RUN_ID`` | ``get_logger()`` | a run to join (``amltrack run`` sets it for its command) |
| ``AMLTRACK_OUTPUTS`` | ``get_logger()`` | the folder mirrored into the run's artifacts |
| ``AMLTRACK_OUTPUTS_KEEP_DELETED`` | ``get_logger()`` | ``1``: keep artifacts of outputs deleted during the run |
| ``AMLTRACK_SYSTEM_METRICS`` | ``get_logger()`` | ``0``: no ``system/`` metrics; a number: seconds between samples |
| ``AMLTRACK_REDACT`` | ``get_logger()``, ``amltrack run``, ``sync`` | ``0``/``off``: no redaction; else extra patterns, whitespace between them (``docs/redaction.md``) |
| ``AMLTRACK_CONFIG_DIR`` | ``amltrack remote``, ``sync`` | where ``remotes.json`` lives |
| ``AMLTRACK_TOKEN`` | ``sync``, ``--remote`` readers | the token sent to an amltrack server |
| ``AMLTRACK_SERVER_TOKENS`` | ``amltrack server`` | the tokens the server accepts |

MLflow's own variables, read by the MLflow sync target as MLflow's client reads them:
``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD`` (basic auth), ``MLFLOW_TRACKING_TOKEN``
(a bearer token), ``MLFLOW_TRACKING_INSECURE_TLS`` and ``MLFLOW_TRACKING_SERVER_CERT_PATH`` (TLS).
"""

STORE = "AMLTRACK_STORE"
EXPERIMENT = "AMLTRACK_EXPERIMENT"
RUN_ID = "AMLTRACK_RUN_ID"
OUTPUTS = "AMLTRACK_OUTPUTS"
OUTPUTS_KEEP_DELETED = "AMLTRACK_OUTPUTS_KEEP_DELETED"
SYSTEM_METRICS = "AMLTRACK_SYSTEM_METRICS"
REDACT = "AMLTRACK_REDACT"
CONFIG_DIR = "AMLTRACK_CONFIG_DIR"
TOKEN = "AMLTRACK_TOKEN"
SERVER_TOKENS = "AMLTRACK_SERVER_TOKENS"

MLFLOW_USERNAME = "MLFLOW_TRACKING_USERNAME"
MLFLOW_PASSWORD = "MLFLOW_TRACKING_PASSWORD"
MLFLOW_TOKEN = "MLFLOW_TRACKING_TOKEN"
MLFLOW_INSECURE_TLS = "MLFLOW_TRACKING_INSECURE_TLS"
MLFLOW_CERT_PATH = "MLFLOW_TRACKING_SERVER_CERT_PATH"
