"""Peers of a run's listening port that a test drives by hand: ones that never authenticate, and an
``Intruder`` that holds an authorized key, speaks the wire format, sends junk, then serves a step as a
worker would (its outputs tagged with the test's pid), so the run's result shows whether the junk
changed anything.

The junk carries a *bomb*: a pickle whose unpickling creates a marker file. Only the outputs of
a worker's well-formed RESULTs may ever be unpickled (by the next steps); a bomb that went off
means the run unpickled junk.
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
import time
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import zmq

from pipeline.auth.curve import secure_client
from pipeline.auth.keys import KeyPair
from pipeline.engine import sockets
from pipeline.engine.handles import Handles
from pipeline.engine.wire import (
    HEADER,
    IN_RING,
    WIRE_VERSION,
    Answer,
    Kind,
    Packet,
    control_frames,
    header_of,
    packet_from_frames,
    parse_spec,
    ping_frames,
    process_worker_id,
)
from pipeline.execution.executor import Outcome
from pipeline.message import Encoded, decode, encode
from tests.wire_helpers import result_frames

#: The longest a peer waits for one answer of the run.
ANSWER_SECONDS = 10.0
#: The longest a refused peer waits to hear why its handshake failed. libzmq reports a refusal either with its reason
#: (the run's ERROR command read) or, when the closed connection wins that race, as HANDSHAKE_FAILED_NO_DETAIL, and
#: then connects again: a peer waited through up to some 50 such retries (over 10 s at the default 0.1 s between
#: them) before it read a reason. A bound for a hang, not a figure of speed.
HANDSHAKE_SECONDS = 30.0
#: The refused peer's milliseconds between two connections, so that those retries take little time.
RETRY_MS = 10
#: The longest an Intruder serves a step before the run says FINISH.
SERVE_SECONDS = 30.0
#: The window an Intruder's worker thread asks for (as a worker just joined does).
WINDOW = 2


class _Bomb:
    """Creates ``path`` when unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return Path.touch, (self.path,)


def bomb(marker: Path) -> bytes:
    """A pickle that creates ``marker`` when it is unpickled."""
    return pickle.dumps(_Bomb(marker), protocol=5)


def plaintext_junk(port: int, junk: bytes) -> None:
    """Send ``junk`` on a bare TCP connection to the port; return once the run has closed it."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_SECONDS) as raw:
        try:
            raw.sendall(junk)
            while raw.recv(4096):
                pass
        except ConnectionResetError:
            pass  # closed by the run before it read everything: what a bad greeting gets


def refused_peer(address: str, junk: Sequence[bytes], own: KeyPair | None, server: bytes) -> int:
    """A ZeroMQ DEALER (CURVE with ``own``, or plaintext without) sends ``junk``; the handshake-failure event
    its socket monitor saw (an AssertionError if none within HANDSHAKE_SECONDS)."""
    context = zmq.Context()
    peer = context.socket(zmq.DEALER)
    peer.linger = 0
    peer.reconnect_ivl = RETRY_MS
    failed = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    monitor = peer.get_monitor_socket(failed | zmq.EVENT_HANDSHAKE_SUCCEEDED)
    try:
        if own is not None:
            secure_client(peer, own, server)
        peer.connect(address)
        peer.send_multipart(list(junk))
        if not monitor.poll(HANDSHAKE_SECONDS * 1000):
            raise AssertionError(f"no handshake result within {HANDSHAKE_SECONDS:g} s")
        event = struct.unpack("=hi", monitor.recv_multipart()[0])[0]
        if not event & failed:
            raise AssertionError(f"the run completed a handshake with an unauthorized peer (event {event})")
        return event
    finally:
        peer.disable_monitor()
        monitor.close()
        peer.close()
        context.term()


class Intruder:
    """An authorized peer: a keeper socket for HELLO and heartbeats, and a worker thread's socket once it has a slot."""

    def __init__(self, address: str, own: KeyPair, server: bytes, interval: float,
                 alive: Callable[[], bool] = lambda: True) -> None:
        self.address = address
        self.own = own
        self.server = server
        self.interval = interval
        self.alive = alive  # whether the run still runs: no wait goes on once it has ended
        self.context = zmq.Context()
        self.sockets: list[zmq.Socket] = []
        self.keeper = self.socket()
        self.slot = -1
        self.token = b""  # its last SPEC's slot token, which ends its threads' routing ids
        self.thread: zmq.Socket | None = None

    def socket(self, identity: bytes = b"") -> zmq.Socket:
        """A new CURVE DEALER to the run, under ``identity`` if given (a routing id it claims)."""
        sock = self.context.socket(zmq.DEALER)
        sock.linger = 0
        if identity:
            sock.identity = identity
        secure_client(sock, self.own, self.server)
        sock.connect(self.address)
        self.sockets.append(sock)
        return sock

    def send(self, sock: zmq.Socket, junk: Sequence[Any]) -> None:
        """Send one multipart message."""
        sockets.send(sock, list(junk))

    def receive(self, sock: zmq.Socket, what: str) -> list[zmq.Frame]:
        """The next message on ``sock``; an AssertionError naming ``what`` if none comes in ANSWER_SECONDS, or
        the run ends first."""
        deadline = time.monotonic() + ANSWER_SECONDS
        while not sock.poll(self.interval * 500):
            self._check_alive(what)
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} from the run within {ANSWER_SECONDS:g} s")
        return sockets.recv(sock)

    def _check_alive(self, what: str) -> None:
        if not self.alive():
            raise AssertionError(f"the run ended before its {what}")

    def hello(self, sock: zmq.Socket, step: bytes | None, threads: int = 1,
              version: int = WIRE_VERSION) -> tuple[Kind, int, bytes]:
        """Say HELLO for ``step`` (None: no step frame) on ``sock``, speaking ``version`` of the frames: (kind, value,
        second frame) of the answer."""
        self.send(sock, [HEADER.pack(Kind.HELLO, version, threads, 0), *([] if step is None else [step])])
        answer = self.receive(sock, "answer to HELLO")
        kind, value = header_of(answer[0])
        if kind is Kind.SPEC:
            self.token = parse_spec(answer)[3]
        return kind, value, answer[1].bytes if len(answer) > 1 else b""

    def refused(self, sock: zmq.Socket, step: bytes | None = b"NOPE", threads: int = 1,
                version: int = WIRE_VERSION) -> str:
        """Say HELLO that the run must refuse; its reason. Everything sent before on ``sock`` has been read then."""
        kind, _, reason = self.hello(sock, step, threads, version)
        if kind is not Kind.REFUSE:
            raise AssertionError(f"HELLO for {step!r} with {threads} threads got {kind.name}, expected REFUSE")
        return reason.decode()

    def join(self, step: str) -> int:
        """Join ``step`` with one thread: its slot (the SPEC, from the trusted run, is not needed)."""
        kind, self.slot, _ = self.hello(self.keeper, step.encode())
        if kind is not Kind.SPEC:
            raise AssertionError(f"HELLO for {step} got {kind.name}, expected SPEC")
        self.thread = self.socket(process_worker_id(self.slot, 0, self.token))
        return self.slot

    def ping(self, running: Sequence[int] = ()) -> int:
        """A heartbeat for the slot (saying it runs ``running``); how many answers of the run it dropped."""
        self.send(self.keeper, ping_frames(self.slot, running))
        answers = 0
        while sockets.waiting(self.keeper):
            sockets.recv(self.keeper)
            answers += 1
        return answers

    def hoard(self, patience: float) -> float:
        """JOIN, then never read the thread's socket (what the run hands it stays there), and beat(patience)."""
        thread = self.thread
        if thread is None:
            raise RuntimeError("join() a step before hoarding its work")
        self.send(thread, control_frames(Kind.JOIN, WINDOW))
        return self.beat(patience)

    def beat(self, patience: float, running: Sequence[int] = ()) -> float:
        """Send every heartbeat saying it runs ``running`` (nothing by default); return, once the run has stopped
        answering them for ``patience`` seconds (it took this peer for dead) or has ended, how long it heard the run."""
        start = heard = time.monotonic()
        while self.alive() and time.monotonic() - heard < patience:
            if self.ping(running):
                heard = time.monotonic()
            time.sleep(self.interval)  # a heartbeat every interval, as pipeline-worker's keeper sends them
            if time.monotonic() - start > SERVE_SECONDS:
                raise AssertionError(f"the run still answered heartbeats after {SERVE_SECONDS:g} s")
        return heard - start

    def slow(self, seconds: float) -> int:
        """JOIN, take a first WORK and say in every heartbeat for ``seconds`` that it runs its first message (a
        long run()), then answer it and serve the step to its end (as serve()); how many messages it answered."""
        thread = self.thread
        if thread is None:
            raise RuntimeError("join() a step before serving it")
        self.send(thread, control_frames(Kind.JOIN, WINDOW))
        first = self.receive(thread, "first WORK")
        packet = packet_from_frames(first)
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self.ping([packet.first_seq])
            time.sleep(self.interval)
        answers = [Answer(seq, [(encode({"value": decode(inband, buffers), "pid": os.getpid()}), None)],
                          Outcome.DONE) for seq, inband, buffers in packet.messages()]
        self.send(thread, result_frames(answers))
        self.send(thread, control_frames(Kind.READY, WINDOW))
        return len(answers) + self.serve(joined=True)

    def serve(self, first_work: Callable[[zmq.Socket, Packet], None] | None = None, joined: bool = False) -> int:
        """JOIN, then answer every WORK as Tagged would, until FINISH; how many messages it answered.

        ``first_work`` sends its junk on the thread's socket after the first WORK, before its answer:
        the next WORK (or FINISH) proves the run has read that junk.
        """
        thread = self.thread
        if thread is None:
            raise RuntimeError("join() a step before serving it")
        if not joined:
            self.send(thread, control_frames(Kind.JOIN, WINDOW))
        deadline = time.monotonic() + SERVE_SECONDS
        beat = 0.0
        served = 0
        while time.monotonic() < deadline:
            if time.monotonic() >= beat:
                self.ping()
                beat = time.monotonic() + self.interval
            if not thread.poll(self.interval * 500):
                self._check_alive(f"FINISH ({served} messages answered)")
                continue
            received = sockets.recv(thread)
            if header_of(received[0])[0] is Kind.FINISH:
                self.send(thread, control_frames(Kind.FINISHED))
                return served
            packet = packet_from_frames(received)
            if first_work is not None:
                first_work(thread, packet)
                first_work = None
            answers = [Answer(seq, [(encode({"value": decode(inband, buffers), "pid": os.getpid()}), None)],
                              Outcome.DONE) for seq, inband, buffers in packet.messages()]
            self.send(thread, result_frames(answers))
            self.send(thread, control_frames(Kind.READY, WINDOW))
            served += len(answers)
        raise AssertionError(f"no FINISH from the run within {SERVE_SECONDS:g} s ({served} messages answered)")

    def close(self) -> None:
        """Close every socket and the context."""
        for sock in self.sockets:
            sock.close()
        self.context.term()

    def __enter__(self) -> Intruder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- junk RESULTs


def junk_result(payload: bytes, seq: int) -> list[bytes]:
    """A well-formed RESULT answering input ``seq`` with one output whose pickle is ``payload``."""
    return [bytes(frame) for frame in result_frames([Answer(seq, [(Encoded(payload, []), None)])])]


def patched(result: list[bytes], fmt: str, offset: int, value: int) -> list[bytes]:
    """``result`` with ``value`` packed as ``fmt`` at ``offset`` of its header frame."""
    head = bytearray(result[0])
    struct.pack_into(fmt, head, offset, value)
    return [bytes(head), *result[1:]]


#: Where the fields of a one-output RESULT's header frame are (after the HEADER: length, buffer count, target).
_INPUTS, _LENGTH, _BUFFERS, _TARGET = 8, HEADER.size, HEADER.size + 4, HEADER.size + 6
#: An input sequence number that no run of these tests hands out.
UNSENT_SEQ = 10**6

#: Corrupt RESULTs, each made from the bomb and the sequence number of the input the intruder holds.
JUNK_RESULTS: dict[str, Callable[[bytes, int], list[bytes]]] = {
    # the output's length says more bytes than the body holds
    "length-beyond-body": lambda payload, seq: patched(junk_result(payload, seq), "<I", _LENGTH, len(payload) + 1000),
    # the header says 3 inputs are answered; the table lists one
    "table-short": lambda payload, seq: patched(junk_result(payload, seq), "<Q", _INPUTS, 3),
    # the output goes to next step number 7; the step has one
    "target-unknown": lambda payload, seq: patched(junk_result(payload, seq), "<H", _TARGET, 7),
    # the output says it has 3 out-of-band buffers; none follows
    "buffers-missing": lambda payload, seq: patched(junk_result(payload, seq), "<H", _BUFFERS, 3),
    # it answers an input it was never sent
    "answers-unsent-input": lambda payload, seq: junk_result(payload, UNSENT_SEQ),
    # its output's buffer is a number, as between the run's own threads: what would it take?
    "buffer-by-handle": lambda payload, seq: [bytes(frame) for frame in result_frames(
        [Answer(seq, [(Encoded(payload, [payload]), None)])], Handles())],
    # its output's buffer lies "in a shared-memory ring", as between the run and its own worker processes
    "buffer-in-a-ring": lambda payload, seq: in_a_ring(payload, seq),
}


def in_a_ring(payload: bytes, seq: int) -> list[bytes]:
    """A RESULT whose one output's buffer is a ring record (position 0, the payload's length), not a frame."""
    header, _buffer, table = [bytes(frame) for frame in result_frames(  # the 1-byte body rides in the header
        [Answer(seq, [(Encoded(b"p", [payload]), None)])])]
    flagged = bytearray(header)
    flagged[1] |= IN_RING
    return [bytes(flagged), array("Q", [0, len(payload)]).tobytes(), table]
