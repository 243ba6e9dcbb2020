"""What the waiting page tells a user to do so that a run reports to this monitor: plain Python, no Qt.

The steps depend on who may report. In plaintext, one option. With the user's own key pair on this
host, a run of the same user needs nothing (or only the address). For other hosts or other keys, the
key steps of docs/gui.md: a key pair for the run (``pipeline-keys``), its public key into the
monitor's ``--authorized-keys`` directory, the monitor's public key to the run, and the run's options.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from pipeline import auth

#: The address a run reports to unless told otherwise (Pipeline.gui_address's default).
DEFAULT_PORT = 5565
#: Interfaces a run of this host reaches at localhost.
_LOCAL = ("127.0.0.1", "localhost", "0.0.0.0", "*", "::", "::1")
#: Interfaces only this host reaches.
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class KeyFiles:
    """The monitor's key files, as the waiting page names them to the runs."""

    public: str  # the monitor's public key file (.key): a run of another host needs it as Pipeline.gui_server_key
    authorized: str = ""  # the directory of runs' public keys it lets in (--authorized-keys); "": none
    own: bool = True  # the pair is the user's own, which the user's runs on this host read by default

    @classmethod
    def of(cls, server_key: str = "", authorized: str = "") -> KeyFiles:
        """The files of ``pipeline-gui --server-key=SERVER_KEY --authorized-keys=AUTHORIZED`` (absolute paths)."""
        if server_key:
            secret = Path(server_key)
            public = secret.with_name(secret.name.removesuffix(auth.SECRET_SUFFIX) + auth.PUBLIC_SUFFIX)
        else:
            public = auth.key_paths(auth.private_dir(), auth.OWN_KEY_NAME)[0]
        return cls(os.path.abspath(public), os.path.abspath(authorized) if authorized else "", not server_key)


@dataclass(frozen=True)
class Step:
    """One thing to do: a sentence, and the command that does it ("" if it is done by hand)."""

    text: str
    command: str = ""


def waiting_steps(host: str, port: int, keys: KeyFiles | None) -> list[Step]:
    """What to do so that a run reports to a monitor bound at ``host:port`` with ``keys`` (None: plaintext)."""
    where = socket.gethostname() if host in ("0.0.0.0", "*", "::") else host
    address = f"--Pipeline.gui_address={where}:{port}"
    if keys is None:
        return [Step("to watch a run, start it with", f"pipeline-run --config=FILE {address} "
                                                      "--Pipeline.gui_plaintext=True")]
    steps = []
    if keys.own:
        default = port == DEFAULT_PORT and host in _LOCAL  # localhost:5565 reaches this monitor
        steps.append(Step("a run of this user on this host reports here as it is:",
                          "pipeline-run --config=FILE" + ("" if default else f" {address}")))
        if host in _LOOPBACK and not keys.authorized:
            steps.append(Step("runs of other hosts or users: start the monitor with --host=0.0.0.0 "
                              "--authorized-keys=DIR (docs/gui.md, keys and privacy)"))
            return steps
    into = (f"into {keys.authorized}, and restart this monitor" if keys.authorized
            else "into a directory DIR, and restart this monitor with --authorized-keys=DIR")
    public = Path(keys.public).name
    return [*steps,
            Step("a run of another host or user needs this monitor's public key, and a key pair of its own that "
                 "this monitor lets in:"),
            Step("1. on the run's host, make its key pair:", "pipeline-keys generate NAME --dir=keys"),
            Step(f"2. copy keys/NAME.key {into}"),
            Step(f"3. copy {keys.public} to the run's host, into keys/"),
            Step("4. start the run:", f"pipeline-run --config=FILE {address} --Pipeline.gui_server_key=keys/{public} "
                                      "--Pipeline.gui_key=keys/NAME.key_secret")]
