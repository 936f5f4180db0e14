"""amltrack: a local-first experiment tracker.

    from amltrack import get_logger
    logger = get_logger()
    logger.log("loss", 0.31)
    logger.log("must land", 1).wait()

Runs are directories of plain JSON and JSON Lines files; ``amltrack.Store`` reads them back.
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING

from ._errors import (
    AmbiguousRunError,
    AmltrackError,
    ArtifactNotFoundError,
    AssetNotFoundError,
    EmptyPrefixError,
    InvalidAssetNameError,
    InvalidMetricError,
    InvalidOutputsError,
    InvalidPathError,
    InvalidRedactPatternError,
    MetricNotFoundError,
    MissingExtraError,
    QueryError,
    RefusedFileError,
    RunFinishedError,
    RunHeldError,
    RunNotFoundError,
    StoreError,
    WriteError,
)

if TYPE_CHECKING:
    from ._assets import Asset
    from ._logger import Logger, get_azureml_logger, get_logger, start_run
    from ._media import ConfusionMatrix, Histogram, Image, Table
    from ._store import Metric, Point, Run, Store
    from ._writer import Handle, UploadHandle

# The logger, the store and the writer pull in orjson and most of the standard library, which costs
# about 70 ms; `amltrack --help` and a script that only needs an error class should not pay for
# them. Each of these names is imported on first use instead (PEP 562).
_LAZY = {
    "Asset": "_assets",
    "Logger": "_logger",
    "get_azureml_logger": "_logger",
    "get_logger": "_logger",
    "start_run": "_logger",
    "Metric": "_store",
    "Image": "_media",
    "Table": "_media",
    "Histogram": "_media",
    "ConfusionMatrix": "_media",
    "Point": "_store",
    "Run": "_store",
    "Store": "_store",
    "Handle": "_writer",
    "UploadHandle": "_writer",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'amltrack' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AmbiguousRunError",
    "AmltrackError",
    "ArtifactNotFoundError",
    "Asset",
    "AssetNotFoundError",
    "ConfusionMatrix",
    "EmptyPrefixError",
    "Handle",
    "Histogram",
    "Image",
    "InvalidAssetNameError",
    "InvalidMetricError",
    "InvalidOutputsError",
    "InvalidPathError",
    "InvalidRedactPatternError",
    "Logger",
    "Metric",
    "MetricNotFoundError",
    "MissingExtraError",
    "QueryError",
    "RefusedFileError",
    "Point",
    "Run",
    "RunFinishedError",
    "RunHeldError",
    "RunNotFoundError",
    "Store",
    "StoreError",
    "Table",
    "UploadHandle",
    "WriteError",
    "__version__",
    "get_azureml_logger",
    "get_logger",
    "start_run",
]
