"""A step module that takes long to import in a worker process, as ctapipe does (3-5 s under load): the
run's own import is quick, the worker process's takes ``SLOW_IMPORT_SECONDS`` from the environment."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from pipeline import Component

if any(arg.startswith("--spec=") for arg in sys.argv):  # a worker process, not the run that loads the config
    time.sleep(float(os.environ.get("SLOW_IMPORT_SECONDS", "0")))


class Pass(Component):
    """Stager: passes messages on."""

    def run(self, msg: Any) -> Any:
        """Pass the message on."""
        return msg
