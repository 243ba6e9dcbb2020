"""zmq-pipeline: multi-step data processing pipelines on ZeroMQ."""

from pipeline.errors import ConfigError, PipelineError, RoutingError

__all__ = ["Component", "ConfigError", "Pipeline", "PipelineError", "RoutingError"]


def __getattr__(name: str):
    # Loaded on first use, so that `import pipeline` imports neither traitlets nor the engines: the console
    # scripts (pipeline.cli.launch) must be able to handle a Ctrl+C while those load.
    if name == "Component":
        from pipeline.component import Component

        return Component
    if name == "Pipeline":
        from pipeline.pipeline import Pipeline

        return Pipeline
    raise AttributeError(name)
