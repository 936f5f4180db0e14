from amltrack import get_azureml_logger

logger = get_azureml_logger()
logger.log("simple integer value", 7)
logger.log("simple float value", 3.141592)
logger.log("simple string value", "this is a string metric")
logger.log("chart data points", [1, 3, 5, 10, 6, 4])
logger.log("my metric 1", 1).wait()
logger.log("my metric 2", 2).wait()
logger.upload("artifact/path", "This should be the contents of artifact/path in the service")
