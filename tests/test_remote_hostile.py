"""What a hostile peer of a run's listening port can do (issue 14: nothing unauthenticated is ever unpickled,
and junk never disturbs the run).

Peers that never authenticate (bare TCP, plaintext ZeroMQ, an unknown CURVE key) and an authorized
peer that sends junk frames before serving the step properly: each run's result must be exactly
what it would have been (every value once, exit 0), and no bomb (a pickle that creates a file when
unpickled) may ever go off.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zmq

from pipeline.auth.keys import KeyPair, load_key_pair, load_public_key
from pipeline.engine.door import HANDSHAKE_SECONDS, MAX_REMOTE_THREADS, MAX_REMOTE_WORKER_THREADS, MAX_THREADS_PER_KEY
from pipeline.engine.wire import (
    HEADER,
    WIRE_VERSION,
    Answer,
    Kind,
    Loss,
    control_frames,
    left_frames,
    packet_from_frames,
    ping_frames,
    process_worker_id,
)
from pipeline.execution.executor import UNORDERED
from pipeline.message import decode, encode
from tests.bare_flood import CONNECTIONS, bare_flood
from tests.remote_helpers import CONSUMER, PRODUCER, STAGE, STRANGER, Launcher, Proc, duplicates, wait_during
from tests.remote_peers import (
    JUNK_RESULTS,
    UNSENT_SEQ,
    WINDOW,
    Intruder,
    bomb,
    junk_result,
    plaintext_junk,
    refused_peer,
)
from tests.remote_steps import WAIT_SECONDS, marker_pids
from tests.wire_helpers import empty_outputs_result, result_frames, unordered_result

# The tests of this file take more than 10 s in all: `pytest -m "not slow"` leaves them out.
pytestmark = pytest.mark.slow

#: How many values each run sends (Launcher.chain's default).
COUNT = 20


def assert_unchanged(launch: Launcher, run: Proc, pids: set[int], marker: Path) -> None:
    """No bomb went off, and the run ended well with every value once, each tagged by one of ``pids``."""
    status = run.wait()
    assert not marker.exists(), f"junk was unpickled (the bomb made {marker}); the run's stderr:\n{run.stderr}"
    assert status == 0, run.stderr
    outputs = launch.outputs()
    assert sorted(row["value"] for row in outputs) == list(range(COUNT)), (outputs, run.stderr)
    assert not duplicates(outputs)
    assert {row["pid"] for row in outputs} == pids, run.stderr


def test_peers_that_never_authenticate_change_nothing(launch: Launcher, tmp_path: Path) -> None:
    marker = tmp_path / "bomb-went-off"
    payload = bomb(marker)
    server = load_public_key(launch.keys.server_public).public
    run = launch.run(launch.chain(hold=True))
    wait_during(run, lambda: run.pid in marker_pids(launch.gate, "ran"), "the run's worker to start")

    plaintext_junk(launch.port, b"GET / HTTP/1.0\r\n\r\n" + payload)
    plaintext_junk(launch.port, b"\xff" + bytes(8) + b"\x7f" + payload)  # a ZMTP signature, then the bomb
    hello = [HEADER.pack(Kind.HELLO, 0, 1, 0), STAGE.encode()]
    assert refused_peer(launch.address, [*hello, payload], None, server) == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    stranger = load_key_pair(launch.keys.secret(STRANGER))
    assert refused_peer(launch.address, [*hello, payload], stranger, server) == zmq.EVENT_HANDSHAKE_FAILED_AUTH

    launch.hold.touch()
    assert_unchanged(launch, run, {run.pid}, marker)


def connect_when_listening(run: Proc, port: int) -> socket.socket:
    """A bare TCP connection to the run's port, once it listens (an AssertionError if the run ends first)."""
    def attempt() -> socket.socket | None:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=HANDSHAKE_SECONDS + 10)
        except ConnectionRefusedError:
            return None

    return wait_during(run, attempt, "the run to listen")


def test_a_connection_that_never_shakes_hands_is_closed_within_handshake_seconds(launch: Launcher) -> None:
    """A peer with no key that connects and says nothing holds one of the run's open files: only for
    HANDSHAKE_SECONDS (libzmq's own bound was 30 s)."""
    run = launch.run(launch.chain(hold=True))
    with connect_when_listening(run, launch.port) as idle:
        opened = time.monotonic()
        while idle.recv(4096):  # the run's greeting, then its close (a timeout past HANDSHAKE_SECONDS + 10 s)
            pass
        assert time.monotonic() - opened < HANDSHAKE_SECONDS + 3.0
    launch.hold.touch()
    assert run.wait() == 0, run.stderr


def test_a_flood_of_idle_connections_past_the_run_s_open_files_leaves_room_for_workers(launch: Launcher) -> None:
    """A peer with no key opens more idle connections than the run may open files (256 here, `ulimit -n`) and holds
    them: the run closes them after HANDSHAKE_SECONDS, so a worker still joins (within its 30 s) and does it all.
    The flood starts once the run's own steps have opened their files (the writer's output): one that takes them all
    first fails the run, which says why (docs/cluster.md)."""
    run = launch.run(launch.chain(nb_thread=0), prefix=["sh", "-c", 'ulimit -n 256 && exec "$@"', "sh"])
    flood = [connect_when_listening(run, launch.port)]
    try:
        wait_during(run, launch.output.exists, "the run's steps to open their files")
        for _ in range(400):
            try:
                flood.append(socket.create_connection(("127.0.0.1", launch.port), timeout=HANDSHAKE_SECONDS + 10))
            except OSError as err:
                raise AssertionError(f"connection {len(flood)}: {err}; the run's stderr:\n{run.stderr}") from None
        worker = launch.worker()
        assert run.wait() == 0, run.stderr
        assert worker.wait() == 0, worker.stderr
    finally:
        for connection in flood:
            connection.close()
    outputs = launch.outputs()
    assert sorted(row["value"] for row in outputs) == list(range(COUNT)) and not duplicates(outputs)


def test_a_flood_of_bare_connections_leaves_the_run_serving_and_ending(launch: Launcher) -> None:
    """A peer with no key opens 2,500 bare TCP connections, twice, and drops each flood at once: 5,000 failed
    handshakes, more than libzmq's socket monitor queues (a queue read in the door's turns, once full, froze the I/O
    thread of the run's context, every worker process's link with it, and the door's close waited for it for ever).
    A worker still joins and does it all, the run ends with its status, and it says what it refused."""
    run = launch.run(launch.chain(nb_thread=0))
    connect_when_listening(run, launch.port).close()
    for _ in range(2):
        with bare_flood(launch.port) as flood:
            assert len(flood) == CONNECTIONS, run.stderr
    worker = launch.worker()
    assert run.wait(WAIT_SECONDS) == 0, run.stderr
    assert worker.wait(WAIT_SECONDS) == 0, worker.stderr
    outputs = launch.outputs()
    assert sorted(row["value"] for row in outputs) == list(range(COUNT)) and not duplicates(outputs)
    assert "a connection failed its CURVE handshake" in run.stderr


@dataclass
class Peers:
    """Two authorized peers of one run, and the bomb they carry."""

    intruder: Intruder
    accomplice: Intruder
    payload: bytes
    node7: KeyPair  # a third authorized key


def short_frames(peers: Peers) -> None:
    """Frames shorter than a header, on the keeper's socket, then a proper worker's conduct."""
    intruder = peers.intruder
    for junk in ([b""], [b"\x0c"], [bytes(HEADER.size - 1)], [b"\x0a\x00", STAGE.encode()]):
        intruder.send(intruder.keeper, junk)
    intruder.refused(intruder.keeper)  # answered after the junk: the door read it and is still there
    intruder.join(STAGE)
    intruder.serve()


def wrong_kinds_and_refused_hellos(peers: Peers) -> None:
    """Kinds a keeper never sends, a heartbeat of a slot it does not hold, HELLOs the run must refuse."""
    intruder, keeper = peers.intruder, peers.intruder.keeper
    for kind in (200, Kind.SPEC, Kind.WORK, Kind.RESULT, Kind.PONG, Kind.LOST, Kind.ADDED):
        intruder.send(keeper, [HEADER.pack(kind, 0, 1, 0), peers.payload])
    intruder.send(keeper, [HEADER.pack(Kind.PING, 0, 0, 4242), peers.payload])  # no answer: refused() sees a PONG
    assert "NOPE" in intruder.refused(keeper, b"NOPE")
    assert "no step ''" in intruder.refused(keeper, None)
    assert "no step" in intruder.refused(keeper, peers.payload)  # a step name is text, never unpickled
    assert "producer" in intruder.refused(keeper, PRODUCER.encode())
    # a JsonLinesWriter: a second instance, on another host, would write part of the output to a file of its own
    assert "runs in one worker, its own: JsonLinesWriter says one_worker" in intruder.refused(keeper, CONSUMER.encode())
    assert "threads" in intruder.refused(keeper, STAGE.encode(), threads=0)
    assert "threads" in intruder.refused(keeper, STAGE.encode(), threads=100_000)
    for older in (0, WIRE_VERSION - 1):  # 0: what every worker before WIRE_VERSION said
        said = intruder.refused(keeper, STAGE.encode(), version=older)
        assert f"the worker speaks version {older} of the engine's frames and this one {WIRE_VERSION}" in said
    intruder.join(STAGE)
    intruder.serve()


def another_keys_slot(peers: Peers) -> None:
    """Frames of a thread that has not joined, and a slot's routing id and heartbeat claimed with another key."""
    intruder, accomplice = peers.intruder, peers.accomplice
    slot = intruder.join(STAGE)
    thread = intruder.thread
    assert thread is not None
    intruder.send(thread, junk_result(peers.payload, 0))  # before its JOIN (serve() sends it next)
    intruder.send(thread, control_frames(Kind.READY, 2))
    claim = accomplice.socket(process_worker_id(slot, 1, intruder.token))  # as if the token had leaked
    for junk in (control_frames(Kind.JOIN, 2), ping_frames(slot, []), junk_result(peers.payload, 0),
                 control_frames(Kind.FINISHED)):
        accomplice.send(claim, junk)
    accomplice.refused(claim)  # answered after the claims: the door has read them
    accomplice.send(accomplice.keeper, ping_frames(slot, []))  # no answer: refused() sees a PONG
    accomplice.refused(accomplice.keeper)
    intruder.serve()
    assert not claim.poll(0), "the run sent something to a thread of the slot claimed with another key"


def more_threads_than_the_run_takes(peers: Peers) -> None:
    """Slots of the most threads each, up to a key's budget of remote worker threads (one key held them all, and
    honest workers were refused), then up to the run's over two keys: the next HELLO is refused (1,024 threads ran the
    run out of sockets, an internal error), and the budgets are free again once they left."""
    slots: list[tuple[Intruder, int]] = []
    for peer in (peers.intruder, peers.accomplice):
        for _ in range(MAX_THREADS_PER_KEY // MAX_REMOTE_THREADS):
            kind, slot, _ = peer.hello(peer.keeper, STAGE.encode(), MAX_REMOTE_THREADS)
            assert kind is Kind.SPEC
            slots.append((peer, slot))
        said = peer.refused(peer.keeper, STAGE.encode())
        assert f"key {peer.own.name} holds {MAX_THREADS_PER_KEY} remote worker threads, and one key may hold" in said
    with Intruder(peers.intruder.address, peers.node7, peers.intruder.server, 0.2) as third:
        said = third.refused(third.keeper, STAGE.encode())
    assert f"the run holds {MAX_REMOTE_WORKER_THREADS} remote worker threads, and takes at most" in said
    for peer, slot in slots:
        peer.send(peer.keeper, left_frames(Loss(slot, "done", [], clean=True)))
    peers.intruder.join(STAGE)
    peers.intruder.serve()


def protocol_abuse(peers: Peers) -> None:
    """Well-formed messages out of turn: a READY for an unanswered packet, a second JOIN, a FINISHED
    before FINISH, and a thread number beyond the one thread it asked for."""
    intruder = peers.intruder
    slot = intruder.join(STAGE)
    extra = intruder.socket(process_worker_id(slot, 5, intruder.token))
    intruder.send(extra, control_frames(Kind.JOIN, 2))

    def abuse(thread: Any, packet: Any) -> None:
        for junk in (control_frames(Kind.READY, 2), control_frames(Kind.JOIN, 2), control_frames(Kind.FINISHED)):
            intruder.send(thread, junk)

    intruder.serve(abuse)
    assert not extra.poll(0), "the run sent work to a thread the worker never asked for"


def junk_result_case(corrupt: Callable[[bytes, int], list[bytes]]) -> Callable[[Peers], None]:
    """Serve the step, sending a corrupt RESULT (carrying the bomb) before the first proper answer."""
    def case(peers: Peers) -> None:
        intruder = peers.intruder
        intruder.join(STAGE)
        intruder.serve(lambda thread, packet: intruder.send(thread, corrupt(peers.payload, packet.first_seq)))

    return case


CASES: dict[str, Callable[[Peers], None]] = {
    "short-frames": short_frames,
    "wrong-kinds-and-refused-hellos": wrong_kinds_and_refused_hellos,
    "another-keys-slot": another_keys_slot,
    "protocol-abuse": protocol_abuse,
    "more-threads-than-the-run-takes": more_threads_than_the_run_takes,
    **{f"result-{name}": junk_result_case(corrupt) for name, corrupt in JUNK_RESULTS.items()},
}


@pytest.mark.parametrize("case", CASES)
def test_junk_from_an_authorized_peer_changes_nothing(launch: Launcher, tmp_path: Path, case: str) -> None:
    marker = tmp_path / "bomb-went-off"
    # The intruder is the step's only worker (nb_thread 0): the run ends only if it serves every message.
    # A long liveness: these runs test junk, not death, and a loaded machine must not end the intruder.
    run = launch.run(launch.chain(nb_thread=0), "--Pipeline.heartbeat_liveness=25")
    server = load_public_key(launch.keys.server_public).public

    def alive() -> bool:
        return run.popen.poll() is None

    with Intruder(launch.address, load_key_pair(launch.keys.secret("intruder")), server, 0.2, alive) as intruder, \
            Intruder(launch.address, load_key_pair(launch.keys.secret("accomplice")), server, 0.2, alive) as other:
        try:
            CASES[case](Peers(intruder, other, bomb(marker), load_key_pair(launch.keys.secret("node7"))))
        except AssertionError as err:
            raise AssertionError(f"{err}\nthe run's stderr:\n{run.stderr}") from None
    assert_unchanged(launch, run, {os.getpid()}, marker)


def test_a_result_of_more_inputs_than_a_worker_may_hold_is_dropped_with_one_line(launch: Launcher,
                                                                                tmp_path: Path) -> None:
    """A peer's RESULT of 5,000,000 answers of no input, before its JOIN, took the run from 37 MB to 2 GB over 8 s
    of its door's and router's time: the door drops it on its count, says so, and the run goes on as if it had not
    come."""
    assert_dropped_with_one_line(launch, tmp_path, unordered_result(1_000_000),
                                 r"a RESULT answering 1000000 inputs, more than the \d+ its worker may")


def test_a_result_of_more_outputs_than_a_worker_sends_in_one_is_dropped_with_one_line(launch: Launcher,
                                                                                     tmp_path: Path) -> None:
    """A peer's RESULT of 1,000,000 empty outputs (8 bytes each in its header, far under the 1 GiB frame cap) made an
    object per output in the router and the next step's queue: the door drops it on its count (a worker sends at
    most a chunk's worth in one), says so, and the run goes on as if it had not come."""
    assert_dropped_with_one_line(launch, tmp_path, empty_outputs_result(1_000_000),
                                 r"a RESULT of 1000000 outputs, more than the \d+ a worker sends in one")


def assert_dropped_with_one_line(launch: Launcher, tmp_path: Path, result: list[bytes], said: str) -> None:
    """An authorized peer sends ``result`` before its JOIN, then serves the step, its only worker: the run ends as if
    the RESULT had not come, and says once that it dropped it (``said``: a regular expression of why)."""
    run = launch.run(launch.chain(nb_thread=0), "--Pipeline.heartbeat_liveness=25")
    server = load_public_key(launch.keys.server_public).public
    with Intruder(launch.address, load_key_pair(launch.keys.secret("intruder")), server, 0.2,
                  lambda: run.popen.poll() is None) as intruder:
        intruder.join(STAGE)
        assert intruder.thread is not None
        intruder.send(intruder.thread, result)  # its JOIN comes next: serve() sends it
        intruder.serve()
    assert_unchanged(launch, run, {os.getpid()}, tmp_path / "no-bomb-here")
    dropped = re.findall(rf"dropped a message \(from \S+: {said}\)", run.stderr)
    assert len(dropped) == 1, run.stderr


# --------------------------------------------------------------------------- peers that hold what they are given


#: The patience of these runs: heartbeat_liveness (5, the default) beats of 0.2 s (remote_helpers.FAST_HEARTBEAT).
PATIENCE = 5 * 0.2


def test_a_peer_that_holds_work_and_never_reads_it_is_taken_for_dead(launch: Launcher) -> None:
    """An authorized peer joins, answers every heartbeat, and never reads its WORK: after heartbeat_liveness beats
    of saying it runs none of what it holds, it is taken for dead, and a worker that joins later does it all."""
    run = launch.run(launch.chain(nb_thread=0))
    server = load_public_key(launch.keys.server_public).public
    with Intruder(launch.address, load_key_pair(launch.keys.secret("intruder")), server, 0.2,
                  lambda: run.popen.poll() is None) as intruder:
        intruder.join(STAGE)
        heard = intruder.hoard(patience=3 * PATIENCE)
        assert intruder.thread is not None
        intruder.send(intruder.thread, control_frames(Kind.READY, WINDOW))  # too late: moot, and said nowhere
    assert heard < PATIENCE + 3.0, run.stderr  # dropped after about its patience (a margin for a loaded machine)
    worker = launch.worker()
    assert run.wait() == 0, run.stderr
    assert "dropped a message" not in run.stderr  # what a lost process still sent read as a message lost
    assert worker.wait() == 0, worker.stderr
    outputs = launch.outputs()
    assert sorted(row["value"] for row in outputs) == list(range(COUNT)) and not duplicates(outputs)
    assert {row["keeper"] for row in outputs} == {worker.pid}
    assert "without running any of it: taken for dead" in run.stderr


def test_a_peer_that_says_it_runs_a_message_it_was_never_given_is_taken_for_dead(launch: Launcher) -> None:
    """An authorized peer holds a WORK it never answers, and says in every heartbeat that it runs a message it was
    never given: that is running none of what it holds, so it is taken for dead, and a later worker does it all."""
    run = launch.run(launch.chain(nb_thread=0))
    server = load_public_key(launch.keys.server_public).public
    with Intruder(launch.address, load_key_pair(launch.keys.secret("intruder")), server, 0.2,
                  lambda: run.popen.poll() is None) as intruder:
        intruder.join(STAGE)
        assert intruder.thread is not None
        intruder.send(intruder.thread, control_frames(Kind.JOIN, WINDOW))
        intruder.receive(intruder.thread, "first WORK")
        heard = intruder.beat(3 * PATIENCE, running=[UNSENT_SEQ])
    assert heard < PATIENCE + 3.0, run.stderr
    worker = launch.worker()
    assert run.wait() == 0, run.stderr
    assert worker.wait() == 0, worker.stderr
    outputs = launch.outputs()
    assert sorted(row["value"] for row in outputs) == list(range(COUNT)) and not duplicates(outputs)
    assert "without running any of it: taken for dead" in run.stderr


def test_a_peer_inside_a_long_run_is_not_taken_for_dead(launch: Launcher, tmp_path: Path) -> None:
    """A worker whose heartbeats say it runs a message it holds is alive however long that run() takes."""
    marker = tmp_path / "bomb-went-off"
    run = launch.run(launch.chain(nb_thread=0))
    server = load_public_key(launch.keys.server_public).public
    with Intruder(launch.address, load_key_pair(launch.keys.secret("intruder")), server, 0.2,
                  lambda: run.popen.poll() is None) as intruder:
        intruder.join(STAGE)
        assert intruder.slow(3 * PATIENCE) == COUNT
    assert_unchanged(launch, run, {os.getpid()}, marker)
    assert "taken for dead" not in run.stderr


def test_a_peer_whose_threads_never_join_is_taken_for_dead(launch: Launcher) -> None:
    """An authorized peer says HELLO and answers every heartbeat, and its threads never join: the step would wait for
    them to its end; after worker_timeout it is taken for dead, and the run ends with the values of its own worker."""
    run = launch.run(launch.chain(nb_thread=1, hold=True), "--Pipeline.worker_timeout=1")
    server = load_public_key(launch.keys.server_public).public
    with Intruder(launch.address, load_key_pair(launch.keys.secret("intruder")), server, 0.2,
                  lambda: run.popen.poll() is None) as intruder:
        intruder.join(STAGE)
        launch.hold.touch()
        intruder.beat(patience=3 * PATIENCE)
    assert run.wait() == 0, run.stderr
    outputs = launch.outputs()
    assert sorted(row["value"] for row in outputs) == list(range(COUNT)) and {row["pid"] for row in outputs} == {
        run.pid}
    assert re.search(f"worker process {intruder.slot}: 0 of its 1 threads joined the step within [0-9.]+ s: taken "
                     "for dead", run.stderr), run.stderr


def test_routing_ids_taken_by_another_key_leave_a_worker_served(launch: Launcher) -> None:
    """An authorized peer takes the routing ids that the threads of the next slots would have had without their
    slots' tokens (a ROUTER ignores a second peer of a routing id): a worker that joins next is served all the same,
    and the peer gets nothing."""
    run = launch.run(launch.chain(nb_thread=0))
    server = load_public_key(launch.keys.server_public).public
    with Intruder(launch.address, load_key_pair(launch.keys.secret("intruder")), server, 0.2,
                  lambda: run.popen.poll() is None) as intruder:
        slot = intruder.join(STAGE)
        intruder.send(intruder.keeper, left_frames(Loss(slot, "done", [], clean=True)))
        squats = [intruder.socket(process_worker_id(taken, thread)) for taken in range(slot + 1, slot + 5)
                  for thread in range(2)]
        for squat in squats:
            intruder.refused(squat)  # answered on it: the run knows that routing id as this peer's
        worker = launch.worker("--threads=2")
        assert run.wait() == 0, run.stderr
        assert worker.wait() == 0, worker.stderr
        assert not any(squat.poll(0) for squat in squats), "the run sent something to a routing id taken by a peer"
    outputs = launch.outputs()
    assert sorted(row["value"] for row in outputs) == list(range(COUNT)) and not duplicates(outputs)
    assert {row["keeper"] for row in outputs} == {worker.pid}, run.stderr


def test_a_flood_of_hellos_holds_a_bounded_number_of_slots_and_says_so_in_a_few_lines(launch: Launcher) -> None:
    """An authorized peer says HELLO 700 times and serves none: it holds at most MAX_THREADS_PER_KEY slots of a thread
    (the rest are refused), the run says so in a few lines however many, and ends well once they are taken for dead."""
    hellos = MAX_THREADS_PER_KEY + 176
    # A patience (25 beats of 0.2 s) longer than the flood: no slot is taken for dead before it ends.
    run = launch.run(launch.chain(nb_thread=1, hold=True), "--Pipeline.heartbeat_liveness=25")
    server = load_public_key(launch.keys.server_public).public
    with Intruder(launch.address, load_key_pair(launch.keys.secret("intruder")), server, 0.2,
                  lambda: run.popen.poll() is None) as intruder:
        kinds = [intruder.hello(intruder.keeper, STAGE.encode())[0] for _ in range(hellos)]
    launch.hold.touch()
    assert run.wait() == 0, run.stderr
    assert kinds.count(Kind.SPEC) == MAX_THREADS_PER_KEY and kinds.count(Kind.REFUSE) == hellos - MAX_THREADS_PER_KEY
    remote = [line for line in run.stderr.splitlines() if "remote worker" in line]
    assert len(remote) <= 12, run.stderr  # the first few of each kind, then counts
    assert f"remote workers: {hellos - MAX_THREADS_PER_KEY - 4} more refused HELLOs from key intruder" in run.stderr
    assert any(re.search(r"remote workers: \d+ more worker processes taken for dead from key intruder", line)
               for line in remote), run.stderr


def test_a_frame_after_its_steps_end_is_dropped_and_the_run_ends(launch: Launcher) -> None:
    """An authorized peer serves its step to the end, then sends a READY once the step's router has finished while the
    run goes on (its consumer waits): the door's send to that router waited for ever, and the run with it."""
    run = launch.run(launch.gated_chain(0))
    server = load_public_key(launch.keys.server_public).public
    with Intruder(launch.address, load_key_pair(launch.keys.secret("intruder")), server, 0.2,
                  lambda: run.popen.poll() is None) as intruder:
        intruder.join(STAGE)
        assert intruder.serve() == COUNT
        thread = intruder.thread
        assert thread is not None

        def ready_dropped() -> bool:
            """Send a READY (until one comes after the router's end) and see whether the run dropped one."""
            intruder.send(thread, control_frames(Kind.READY, WINDOW))
            return f"READY for step {STAGE}, which has finished" in run.stderr

        wait_during(run, ready_dropped, "a READY after the step's end to be dropped")
    launch.sink_gate.touch()
    assert run.wait() == 0, run.stderr


# --------------------------------------------------------------------------- peers that break the protocol


def junk_outputs(count: int) -> list[Any]:
    """A RESULT of ``count`` outputs of no input (as an init() or a finish() sends), each a row of value -1."""
    return result_frames([Answer(UNORDERED, [(encode({"value": -1, "pid": 0}), None)] * count)])


def serve_with(launch: Launcher, run: Proc, misconduct: Callable[[Intruder], None]) -> Proc:
    """An authorized peer joins TAG, then does ``misconduct``; a pipeline-worker joins too, and the run must end well
    with every value once (none of the peer's junk), naming the peer as dropped: the worker that does it all."""
    server = load_public_key(launch.keys.server_public).public
    with Intruder(launch.address, load_key_pair(launch.keys.secret("intruder")), server, 0.2,
                  lambda: run.popen.poll() is None) as intruder:
        intruder.join(STAGE)
        misconduct(intruder)
        worker = launch.worker()
        assert run.wait() == 0, run.stderr
    assert worker.wait() == 0, worker.stderr
    outputs = launch.outputs()
    assert sorted(row["value"] for row in outputs) == list(range(COUNT)) and not duplicates(outputs), run.stderr
    assert re.search(rf"step {STAGE}: remote worker intruder \(\S+\): worker process {intruder.slot} broke the "
                     "protocol", run.stderr), run.stderr
    return worker


def test_a_flood_of_outputs_of_no_input_is_dropped_with_its_peer_and_honest_workers_serve_on(launch: Launcher) -> None:
    """An authorized peer answers its first WORK, then sends 3,000 RESULTs of 100 outputs of no input each, without
    waiting for anything: its step's router blocked sending them on, the door blocked sending to it, honest workers
    heard no heartbeat and left (exit 3), the run hung; in a smaller run the junk was written. The peer is dropped,
    what it held goes to the honest worker, and none of its junk is written."""
    run = launch.run(launch.chain(nb_thread=0))

    def flood(intruder: Intruder) -> None:
        thread = intruder.thread
        assert thread is not None
        intruder.send(thread, control_frames(Kind.JOIN, WINDOW))
        packet = packet_from_frames(intruder.receive(thread, "first WORK"))
        intruder.send(thread, result_frames([Answer(seq, [(encode({"value": decode(inband, buffers), "pid": 1}),
                                                            None)]) for seq, inband, buffers in packet.messages()]))
        intruder.send(thread, control_frames(Kind.READY, WINDOW))
        junk = junk_outputs(100)
        thread.sndtimeo = 10_000  # a run that stops reading fails the test, not hangs it
        for _ in range(3000):
            intruder.send(thread, junk)

    serve_with(launch, run, flood)


def test_a_join_asking_for_nothing_without_a_failure_is_dropped(launch: Launcher) -> None:
    """An authorized peer's JOIN asks for no message (as a worker whose init() failed) without its failure: the step's
    producer never started, and the run ended "finished", exit 0, having done nothing, a pipeline-worker joined too."""
    run = launch.run(launch.chain(nb_thread=0, hold=True))

    def join_with_nothing(intruder: Intruder) -> None:
        assert intruder.thread is not None
        intruder.send(intruder.thread, control_frames(Kind.JOIN, 0))
        wait_during(run, lambda: "broke the protocol" in run.stderr, "the peer to be dropped")
        launch.hold.touch()

    serve_with(launch, run, join_with_nothing)
    assert "joined asking for no messages (its init() failed) without saying how it failed" in run.stderr


def test_hellos_that_never_join_keep_no_step_waiting_past_worker_timeout(launch: Launcher) -> None:
    """An authorized peer says HELLO, never joins, and says HELLO again and again: each reset the step's wait for a
    worker, and the run waited for ever. The step fails once it has had no worker for worker_timeout, and its last
    line counts the worker refused for another version too."""
    run = launch.run(launch.chain(nb_thread=0), "--Pipeline.worker_timeout=1", "--Pipeline.heartbeat_liveness=25")
    server = load_public_key(launch.keys.server_public).public
    with Intruder(launch.address, load_key_pair(launch.keys.secret("intruder")), server, 0.2,
                  lambda: run.popen.poll() is None) as intruder:
        intruder.refused(intruder.keeper, STAGE.encode(), version=0)
        deadline = time.monotonic() + 20
        with contextlib.suppress(AssertionError):  # the run ended while it waited for an answer
            while time.monotonic() < deadline:
                intruder.hello(intruder.keeper, STAGE.encode())  # each a new slot: ADDED
                time.sleep(0.1)  # a pace, not a wait: some 200 slots in all, under what a key may hold
        assert time.monotonic() < deadline, "the run still waited for a worker as HELLOs came"
    assert run.wait() == 1, run.stderr
    assert f"step {STAGE} has no workers left: no worker joined within worker_timeout=1 s" in run.stderr, run.stderr
    assert ("1 worker process refused (the first: the worker speaks version 0 of the engine's frames"
            in run.stderr), run.stderr
