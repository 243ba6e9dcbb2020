"""The Python API: build a pipeline from a config and run it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from traitlets import Enum, Float
from traitlets.config import Config, Configurable

from .config import PipelineConfig, load_config
from .report import RunReport


class Pipeline(Configurable):
    """A validated pipeline, ready to run in the chosen mode."""

    mode = Enum(
        ["threads", "sequential"],
        default_value="threads",
        help="How to run the steps: 'threads' (the ZeroMQ engine) or 'sequential' (one thread, for debugging).",
    ).tag(config=True)

    shutdown_timeout = Float(
        10.0, min=0.0, help="Seconds to wait for busy threads when a run is aborted before leaving them behind."
    ).tag(config=True)

    def __init__(self, steps: PipelineConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.steps = steps

    @classmethod
    def from_config(cls, source: str | Path | Mapping[str, Any], overrides: Config | Mapping | None = None) -> Pipeline:
        """Load and validate ``source`` (a JSON file or a dict); ``overrides`` win over its values."""
        overrides = overrides if isinstance(overrides, Config) else Config(overrides or {})
        steps = load_config(source, overrides, settings=[cls])
        return cls(steps, config=steps.config)

    def run(self) -> RunReport:
        """Run to the end of the stream and return per-step counts."""
        if self.mode == "sequential":
            from .sequential import SequentialRunner

            return SequentialRunner(self.steps).run()
        from .engine import ThreadedRunner

        return ThreadedRunner(self.steps, self.shutdown_timeout).run()
