"""Steps written as ctapipe's flow steps are: init() and finish() end with ``return True`` (or ``False``
when the step cannot start), for tests/test_lifecycle.py. They run in the run's process, in worker
processes and in ``pipeline-worker``s alike."""

from __future__ import annotations

from collections.abc import Iterator

from traitlets import Bool, Int

from pipeline import Component


class TrueSource(Component):
    """Producer: yields 0 .. count-1; its init() and finish() return True."""

    count = Int(10, help="How many numbers.").tag(config=True)

    def init(self) -> bool:
        """Nothing to open: ctapipe's steps say so with True."""
        return True

    def run(self) -> Iterator[int]:
        """Yield each number."""
        yield from range(self.count)

    def finish(self) -> bool:
        """Nothing to close."""
        return True


class TrueStage(Component):
    """Stager: sends "init" from init() and returns True (or False with ``refuse``); passes messages on;
    finish() returns True."""

    refuse = Bool(False, help="init() returns False: the step cannot start.").tag(config=True)

    def init(self) -> bool:
        """Announce the start, or refuse it."""
        if self.refuse:
            return False
        self.send_msg("init")
        return True

    def run(self, msg: int) -> int:
        """Pass the message on."""
        return msg

    def finish(self) -> bool:
        """Nothing to close."""
        return True
