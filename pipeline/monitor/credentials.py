"""Which monitor a run may send its status to, and with which key: no key, no status.

A run's status holds its graph, its config paths and full tracebacks (message contents included),
so it goes only to a monitor that proves it holds the monitor's secret key (a CURVE handshake
with the monitor's public key pinned), and the run proves its own key in turn. By default both
keys are the user's own pair in the private directory (``pipeline.auth.keys.own_key_pair``), which
``pipeline-gui`` makes on its first start; across hosts ``Pipeline.gui_server_key`` (the monitor's
public key) and ``Pipeline.gui_key`` (this run's key pair) name the files. Without them the run
publishes nothing and, if it was told of a monitor, says so once; ``Pipeline.gui_plaintext=True``
publishes in clear instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pipeline import auth

log = logging.getLogger("pipeline.monitor")

#: Reasons already given in this process: each is said once, however many runs it has.
_SAID: set[str] = set()


@dataclass(frozen=True)
class Credentials:
    """What a run's publisher authenticates with: its own key pair, and the monitor's public key."""

    own: auth.KeyPair
    server: bytes


def run_credentials(server_key: str = "", key: str = "") -> Credentials | None:
    """The keys of the files named (``""``: the user's own pair); None if one is missing.

    A file that is named but cannot be read is a ConfigError naming the file and the option.
    """
    server = auth.load_public_key(server_key, "Pipeline.gui_server_key") if server_key else None
    own = auth.load_key_pair(key, "Pipeline.gui_key") if key else None
    if server is None or own is None:
        default = auth.own_key_pair()
        server = server or default
        own = own or default
    if server is None or own is None:
        return None
    return Credentials(own, server.public)


def no_key_reason(server_key: str, key: str) -> str:
    """One line: why a run publishes no status, and the ways to make it publish."""
    if server_key and not key:
        missing = "no key of its own (set Pipeline.gui_key to this run's .key_secret file)"
    elif key and not server_key:
        missing = "no public key of the monitor (set Pipeline.gui_server_key to the monitor's .key file)"
    else:
        missing = (f"no monitor key in {auth.private_dir()} (pipeline-gui makes one on its first start; "
                   "across hosts set Pipeline.gui_server_key and Pipeline.gui_key)")
    return f"the run's status is not published: {missing}; Pipeline.gui_plaintext=True publishes it unencrypted"


def say_once(reason: str) -> None:
    """Warn ``reason`` the first time in this process, however many runs it has."""
    if reason in _SAID:
        return
    _SAID.add(reason)
    log.warning("%s", reason)
