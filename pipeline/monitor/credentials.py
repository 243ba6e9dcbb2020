"""Which monitor a run may send its status to, and with which key: no key, no status.

A run's status holds its graph, its config paths and full tracebacks (message contents included),
so it goes only to a monitor that proves it holds the monitor's secret key (a CURVE handshake
with the monitor's public key pinned), and the run proves its own key in turn. By default both
keys are the user's own pair in the private directory (``pipeline.auth.keys.own_key_pair``), which
``pipeline-gui`` makes on its first start; across hosts ``Pipeline.gui_server_key`` (the monitor's
public key) and ``Pipeline.gui_key`` (this run's key pair) name the files. Without them the run
publishes nothing and, if it was told of a monitor, says so once; ``Pipeline.gui_plaintext=True``
publishes in clear instead. A run whose handshake the listener refuses says once why nobody hears
it (:func:`refusal_reason`): settings that do not match the monitor's never fail silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import zmq

from pipeline import auth

log = logging.getLogger("pipeline.monitor")

#: The end of a line about a listener that hung up: a monitor holding as many connections as it takes tells a run
#: nothing, and closes its connection once its handshake times out (the run connects again).
FULL = "or it is full (as many runs as it takes at once): this run is shown once one ends"
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


def refusal_reason(event: int, value: int, address: str, plaintext: bool, server_key: str = "",
                   key: str = "") -> str:
    """One line: why the listener at ``address`` does not hear the run, from how its handshake failed
    (a libzmq handshake event and its value), and what to change on either side."""
    where = f"the run's status is not heard at {address}"
    mismatch = event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
    if plaintext and (mismatch or event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
        # A listener that closes a plaintext handshake takes keys (libzmq may see the close before the mismatch), or
        # is full: it closes the handshake once it times out.
        line = (f"{where}: the monitor there takes only runs that prove a key, and this run sends in clear "
                "(Pipeline.gui_plaintext=True): drop that option, or start the monitor with --plaintext")
        return line if mismatch else f"{line}; {FULL}"
    if mismatch:
        return (f"{where}: the listener there takes no keys (pipeline-gui --plaintext, or a script): set "
                "Pipeline.gui_plaintext=True to send in clear, or start the monitor without --plaintext")
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        own = key or f"this user's own {_own_file(auth.SECRET_SUFFIX)}"
        return (f"{where}: the monitor there refused this run's key ({own}): put its public .key file in the "
                "monitor's --authorized-keys directory and restart the monitor, or set Pipeline.gui_key to a key "
                "pair that it lets in")
    if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        # A CURVE server that cannot open the run's HELLO (sealed for another server key) hangs up; so does,
        # at times, a listener without keys that saw the mismatch of mechanisms first; and a full monitor, once the
        # run's handshake times out there.
        trusted = server_key or f"this user's own {_own_file(auth.PUBLIC_SUFFIX)}"
        return (f"{where}: the listener there hung up: either it does not hold the secret of the monitor key this "
                f"run trusts ({trusted}), being another monitor (another user's, or one started with --server-key): "
                "set Pipeline.gui_server_key to its public .key file, and Pipeline.gui_key to a key pair that it "
                "lets in; or it takes no keys (pipeline-gui --plaintext): set Pipeline.gui_plaintext=True; "
                f"{FULL}")
    return f"{where}: the handshake failed ({_event_name(event, value)}): is a pipeline-gui listening there?"


def unanswered_reason(address: str, wait_ms: int) -> str:
    """One line: the run ended while its handshake with the listener at ``address`` went on (``wait_ms`` after)."""
    # A full monitor tells a run nothing (TRY_LATER): a run shorter than its handshake's timeout learns it only here.
    return (f"the run's end is not heard at {address}: the listener there had not completed the handshake when the run "
            f"ended ({wait_ms} ms after): a pipeline-gui that is full (as many runs as it takes at once) or too busy "
            "to answer, or a listener that is not one")


def _own_file(suffix: str) -> str:
    """The path of the user's own key pair's public or secret file."""
    return str(auth.private_dir() / f"{auth.OWN_KEY_NAME}{suffix}")


def _event_name(event: int, value: int) -> str:
    """``HANDSHAKE_FAILED_PROTOCOL, ZMTP_UNEXPECTED_COMMAND``: libzmq's names for a failed handshake."""
    try:
        name = zmq.Event(event).name or str(event)
    except ValueError:
        name = str(event)
    if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        return f"{name}, {zmq.strerror(value)}"
    if event != zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return f"{name}, {value}"
    errors = {getattr(zmq, n): n.removeprefix("PROTOCOL_ERROR_") for n in dir(zmq) if n.startswith("PROTOCOL_ERROR_")}
    return f"{name}, {errors.get(value, value)}"


def say_once(reason: str) -> None:
    """Warn ``reason`` the first time in this process, however many runs it has."""
    if reason in _SAID:
        return
    _SAID.add(reason)
    log.warning("%s", reason)
