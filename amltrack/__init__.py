"""amltrack: a local-first experiment tracker.

    from amltrack import get_logger
    logger = get_logger()
    logger.log("loss", 0.31)
    logger.log("must land", 1).wait()

Runs are directories of plain JSON and JSON Lines files; ``amltrack.Store`` reads them back.
"""

__version__ = "0.1.0"

from ._assets import Asset
from ._errors import (
    AmbiguousRunError,
    AmltrackError,
    ArtifactNotFoundError,
    AssetNotFoundError,
    EmptyPrefixError,
    InvalidAssetNameError,
    InvalidMetricError,
    InvalidPathError,
    MetricNotFoundError,
    RunFinishedError,
    RunNotFoundError,
    StoreError,
    WriteError,
)
from ._logger import Logger, get_azureml_logger, get_logger, start_run
from ._store import Metric, Point, Run, Store
from ._writer import Handle, UploadHandle

__all__ = [
    "AmbiguousRunError",
    "AmltrackError",
    "ArtifactNotFoundError",
    "Asset",
    "AssetNotFoundError",
    "EmptyPrefixError",
    "Handle",
    "InvalidAssetNameError",
    "InvalidMetricError",
    "InvalidPathError",
    "Logger",
    "Metric",
    "MetricNotFoundError",
    "Point",
    "Run",
    "RunFinishedError",
    "RunNotFoundError",
    "Store",
    "StoreError",
    "UploadHandle",
    "WriteError",
    "__version__",
    "get_azureml_logger",
    "get_logger",
    "start_run",
]
