"""zmq-pipeline: multi-step data processing pipelines on ZeroMQ."""

from pipeline.component import Component
from pipeline.errors import ConfigError, PipelineError, RoutingError

__all__ = ["Component", "ConfigError", "Pipeline", "PipelineError", "RoutingError"]


def __getattr__(name: str):
    # Pipeline imports the engines; load it on first use so `import pipeline` stays light.
    if name == "Pipeline":
        from pipeline.pipeline import Pipeline

        return Pipeline
    raise AttributeError(name)
