"""ctapipe's writer step held in init() until a file exists, for tests/test_ctapipe.py: runs started together each
reach the moment it opens its HDF5 file (imports ctapipe)."""

from __future__ import annotations

import os

from traitlets import Unicode

from algorithms.ctapipe_steps import WriteParameters
from tests.process_helpers import wait_for

#: The longest a writer waits for its gate.
GATE_SECONDS = 60.0


class HeldWriter(WriteParameters):
    """WriteParameters whose init() opens the file once the file ``gate`` exists."""

    gate = Unicode("", help="The file whose creation lets init() go on.").tag(config=True)

    def init(self) -> None:
        """Wait for the gate, then open the file."""
        wait_for(lambda: os.path.exists(self.gate), GATE_SECONDS, f"the file {self.gate}")
        super().init()
