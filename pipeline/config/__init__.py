"""The pipeline's configuration: the JSON file, its checks, and the validated steps it describes."""

from importlib import import_module
from typing import Any

#: Where each public name lives; imported on first use, so that a module needing only the validated
#: steps (config.model, in a worker process) does not load the loader and its traitlets machinery.
_NAMES = {"DEFAULT_QUEUE_LIMIT": "stepkeys", "DICT_SOURCE": "model", "MAX_DEPTH": "loader", "MAX_FILE_BYTES": "loader",
          "SECTIONS": "misplaced", "PipelineConfig": "model", "StepConfig": "model", "load_config": "loader"}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(name)
    return getattr(import_module(f"pipeline.config.{_NAMES[name]}"), name)
