"""The pipeline's configuration: the JSON file, its checks, and the validated steps it describes."""

from pipeline.config.loader import MAX_DEPTH, MAX_FILE_BYTES, SECTIONS, load_config
from pipeline.config.model import DICT_SOURCE, PipelineConfig, StepConfig
from pipeline.config.stepkeys import DEFAULT_QUEUE_LIMIT

__all__ = ["DEFAULT_QUEUE_LIMIT", "DICT_SOURCE", "MAX_DEPTH", "MAX_FILE_BYTES", "SECTIONS", "PipelineConfig",
           "StepConfig", "load_config"]
