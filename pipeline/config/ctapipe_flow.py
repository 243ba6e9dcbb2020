"""What a config or command line written for ctapipe's flow holds that has another form here: the one edit each
needs, said as such, the same for a config file, a command line and ``Pipeline.from_config``'s overrides
(docs/ctapipe.md's table of edits)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: What ctapipe's flow named the section that this format names "Pipeline".
FLOW_SECTION = "Flow"
#: The edit a ``Flow`` section (in a file, or ``--Flow.mode`` on a command line) needs.
FLOW_SECTION_EDIT = 'the section of a ctapipe flow config: rename it to "Pipeline"'
#: What ctapipe's flow had steps say that this format does not.
FLOW_PORTS_KEY = "zmq_ports"
#: The edit FLOW_PORTS_KEY needs: remove it.
FLOW_PORTS_EDIT = "a key of ctapipe's flow: remove it (steps talk over inproc:// sockets, with no TCP port)"
#: ctapipe flow's mode of processes, as its code ("multiprocessus") and its docs ("multiprocess") spell it.
FLOW_PROCESS_MODES = ("multiprocessus", "multiprocess")


def flow_leftover(section: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first key of a ``Pipeline`` section (a file's, or the command line's ``--Pipeline.key``) that is ctapipe
    flow's, and the edit it needs; None if it has none."""
    for key, value in section.items():
        if key == FLOW_PORTS_KEY:
            return key, FLOW_PORTS_EDIT
        if key == "mode" and isinstance(value, str) and value in FLOW_PROCESS_MODES:
            return key, (f"ctapipe flow's {value!r} (expected 'threads' or 'sequential': a step's workers run in "
                         'worker processes with "nb_process" in the step)')
    return None
