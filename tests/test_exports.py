import amltrack


def test_public_names_are_pinned() -> None:
    assert sorted(amltrack.__all__) == [
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
        "Point",
        "QueryError",
        "RefusedFileError",
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
    for name in amltrack.__all__:
        assert hasattr(amltrack, name), name


def test_errors_share_the_builtin_meaning() -> None:
    assert issubclass(amltrack.InvalidMetricError, ValueError)
    assert issubclass(amltrack.InvalidPathError, ValueError)
    assert issubclass(amltrack.RunNotFoundError, LookupError)
    assert issubclass(amltrack.StoreError, OSError)
    assert issubclass(amltrack.WriteError, OSError)
    for name in amltrack.__all__:
        obj = getattr(amltrack, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, amltrack.AmltrackError), name
