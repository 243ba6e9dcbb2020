"""A step's rules without a socket (engine.step_state): events in, what to send out.

The router feeds ``StepState`` from its sockets; here the tests feed it directly: packets in, offers
handed, READYs, RESULTs, worker processes lost, with a fake clock and a policy that records what it is
told. A property test drives random orders of those events and checks that every message is accounted
for exactly once: queued, held by a worker, answered, or failed for good.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.component import Component
from pipeline.config import StepConfig
from pipeline.config.options import RunOptions
from pipeline.engine.flow import HELD_BACK_BYTES, window_limit
from pipeline.engine.step_state import FINISH_GRACE_SECONDS, MOST_OWED, Offer, StepState
from pipeline.engine.wire import FATAL_RUN, Answer, Failure, Loss, Packet, process_worker_id
from pipeline.execution.executor import FINISHING, UNORDERED, Outcome
from pipeline.message import Encoded


@dataclass
class Policy:
    """What the state tells the run's failure policy."""

    halted: set[str] = field(default_factory=set)
    failed: list[tuple[int, str]] = field(default_factory=list)  # (seq, error type)
    skipped: list[int] = field(default_factory=list)  # messages a halted step did not run
    lifecycle: list[str] = field(default_factory=list)
    delivered: dict[int, int] = field(default_factory=dict)  # per failed message: its outputs that went on
    fatal: list[int] = field(default_factory=list)  # failed messages that failed their step too

    def lifecycle_failed(self, step: str, worker: int, what: str, error: BaseException) -> str:
        self.lifecycle.append(what)
        return f"{what}: {error}"

    def message_failed(self, step: StepConfig, worker: int, seq: int, error: BaseException,
                       message: Encoded | None, delivered: int = 0, fatal: bool = False) -> None:
        self.failed.append((seq, type(error).__name__))
        self.delivered[seq] = delivered
        if fatal:
            self.fatal.append(seq)

    def not_run(self, step: StepConfig, seq: int, message: Encoded, delivered: int = 0) -> None:
        self.skipped.append(seq)
        self.delivered[seq] = delivered

    def halt(self, step: str, reason: str) -> None:
        self.halted.add(step)


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def step(**keys: Any) -> StepConfig:
    """A stager S with ``keys`` (its class: object, unless ``cls`` says otherwise)."""
    keys.setdefault("cls", object)
    return StepConfig(name="S", kind="stager", module="m", next_steps=("C",), **keys)


def packet(count: int, size: int = 10) -> Packet:
    """A packet of ``count`` messages of ``size`` bytes each."""
    made = Packet()
    for _ in range(count):
        made.add(Encoded(b"x" * size, []))
    return made


def state(senders: int = 1, **keys: Any) -> tuple[StepState, Policy, Clock]:
    """A step's state whose workers are all in other processes (they answer each input): by default none is
    expected until one is announced (added), as for remote workers."""
    keys.setdefault("nb_thread", 0)
    policy, clock = Policy(), Clock()
    made = StepState(step(**keys), senders, RunOptions(max_redeliveries=2), policy, lambda worker: False, True, clock)
    return made, policy, clock


def worker(slot: int, thread: int = 0) -> bytes:
    """The routing id of a worker process's thread."""
    return process_worker_id(slot, thread)


def answers(first: int, count: int, outcome: Outcome = Outcome.DONE) -> list[Answer]:
    """Each of inputs first .. first+count-1 answered with one output (none unless DONE)."""
    return [Answer(seq, [(Encoded(b"out%d" % seq, []), None)] if outcome is Outcome.DONE else [], outcome)
            for seq in range(first, first + count)]


def hand_out(made: StepState) -> list[tuple[bytes, Packet]]:
    """Every offer the state makes now, each taken as handed."""
    handed = []
    while (offer := made.offer()) is not None:
        made.handed(offer)
        handed.append((offer.worker, offer.packet))
    return handed


def seqs(packet_: Packet) -> list[int]:
    """The sequence numbers of ``packet_``."""
    return [seq for seq, _, _ in packet_.messages()]


# --------------------------------------------------------------------------- dispatch


def test_the_worker_idle_the_longest_gets_the_oldest_messages() -> None:
    made, _, _ = state(nb_thread=2)
    for w in (worker(0), worker(1)):
        made.joined(w, 2)
    made.take_input(packet(2))
    assert [(w, seqs(p)) for w, p in hand_out(made)] == [(worker(0), [0]), (worker(1), [1])]


@pytest.mark.parametrize(("windows", "handed"), [
    ((64, 64), [(0, 20), (1, 20)]),  # half a window at a time, one worker would run 32 while the other ran 8
    ((100, 10), [(0, 37), (1, 3)]),  # windows follow speeds (0.5 and 5 ms a message): by count, B's 20 took 100 ms
    ((64, 0), [(0, 32), (0, 8)]),  # worker 1's init() failed: it takes no work and has no share
], ids=["even", "by-speed", "one-takes-none"])
def test_at_the_end_of_the_input_what_is_left_is_shared_out_by_the_workers_windows(
        windows: tuple[int, int], handed: list[tuple[int, int]]) -> None:
    made, _, _ = state(nb_thread=2)
    for number, window in enumerate(windows):
        if not window:  # its init() failed, and it said how before its JOIN
            made.failed(worker(number), Failure(UNORDERED, "init()", "E", ""))
        made.joined(worker(number), window)
    made.take_input(packet(40))
    made.take_end(40)
    assert [(w, len(p)) for w, p in hand_out(made)] == [(worker(number), count) for number, count in handed]


def test_at_the_end_a_worker_holding_its_share_gets_no_more_until_the_others_have_theirs() -> None:
    made, _, _ = state(nb_thread=2)
    made.joined(worker(0), 64)
    made.take_input(packet(40))
    assert [(w, len(p)) for w, p in hand_out(made)] == [(worker(0), 32)]
    made.joined(worker(1), 64)
    made.take_end(40)
    assert [(w, len(p)) for w, p in hand_out(made)] == [(worker(1), 8)]  # worker 0 holds more than its share
    assert made.offer() is None and not made.queue


def test_at_the_end_work_is_offered_while_any_worker_with_room_holds_none() -> None:
    # Random joins (some asking for nothing), losses, unreachable workers and READYs, ordered or not: whenever work
    # is queued and nothing is offered, a worker holds work (its READY will come).
    for seed in range(200):
        rng = random.Random(seed)
        made, _, _ = state(nb_thread=0, ordered=rng.random() < 0.5, queue_limit=rng.choice([-1, 8, 64]))
        slots = rng.randint(1, 4)
        for slot in range(slots):
            made.joined(worker(slot), rng.choice([0, 1, 2, 8, 64]))
        total = rng.randint(1, 300)
        made.take_input(packet(total))
        made.take_end(total)
        for _ in range(5000):
            hand_out(made)
            holders = [w for w, held in made.pool.workers.items() if held.held]
            if not holders:
                break
            busy = rng.choice(holders)
            if rng.random() < 0.05:  # its process is killed; a new one joins, most often
                if rng.random() < 0.7:
                    made.added(slots, 1)
                    made.joined(worker(slots), rng.choice([0, 1, 2, 8, 64]))
                    slots += 1
                made.lost(Loss(int(busy.split(b".")[0][1:]), "killed", []))
                continue
            if rng.random() < 0.1:
                made.unreachable(busy)
            first = made.pool.workers[busy].in_flight[0]
            made.answered(busy, answers(first.first_seq, len(first)))
            made.ready(busy, 64)
        assert not made.queue or not made.pool.waiting, f"seed {seed}: {made.queued} queued and nothing offered"


def test_a_worker_is_not_kept_waiting_for_more_messages_than_prefetch_bytes_allow() -> None:
    # A window of 150 large messages asks for 75 at a time, PREFETCH_BYTES takes 27 of them: 27 is a whole packet
    # (once the router waited for 75, and the worker got more only once it had run dry).
    made, _, _ = state()
    made.joined(worker(0), 150)
    made.take_input(packet(60, size=150_000))
    assert [(w, len(p)) for w, p in hand_out(made)] == [(worker(0), 27), (worker(0), 27)]


def test_before_the_end_of_the_input_a_worker_gets_half_its_window_at_a_time() -> None:
    made, _, _ = state(nb_thread=2)
    for w in (worker(0), worker(1)):
        made.joined(w, 64)
    made.take_input(packet(40))
    assert [(w, len(p)) for w, p in hand_out(made)] == [(worker(0), 32), (worker(1), 8)]


def test_consecutive_batches_go_out_as_one_packet() -> None:
    made, _, _ = state()
    made.joined(worker(0), 16)  # asks for 16: handed up to 8 at a time
    for _ in range(5):
        made.take_input(packet(2))
    [(_, first)] = hand_out(made)
    assert seqs(first) == list(range(8)) and [seqs(p) for p in made.queue] == [[8, 9]]


def test_a_busy_worker_waits_for_a_whole_packet_while_more_may_come() -> None:
    made, _, _ = state()
    made.joined(worker(0), 16)
    made.take_input(packet(2))
    assert [seqs(p) for _, p in hand_out(made)] == [[0, 1]]  # idle: it gets what there is, at once
    made.take_input(packet(3))
    assert hand_out(made) == []  # it holds 2: 3 more are not worth a round trip yet
    made.take_input(packet(5))
    assert [seqs(p) for _, p in hand_out(made)] == [[2, 3, 4, 5, 6, 7, 8, 9]]
    made.take_input(packet(1))
    made.take_end(11)
    assert [seqs(p) for _, p in hand_out(made)] == [[10]]  # the stream ended: the rest goes now


def test_a_worker_is_held_to_the_window_limit_whatever_it_asks() -> None:
    made, _, _ = state(queue_limit=8)
    made.joined(worker(0), 10**9)
    assert made.pool.window(worker(0)) == window_limit(8) == 8


# --------------------------------------------------------------------------- answers, READY, the end


def test_busy_workers_are_those_outside_the_run_that_hold_work() -> None:
    """The run's own threads count themselves in the status: counted here too, a step of one thread showed busy=2/1."""
    own = worker(9)
    made = StepState(step(nb_thread=1), 1, RunOptions(), Policy(), lambda w: w == own, True, Clock())
    for w in (own, worker(0)):
        made.joined(w, 2)
    made.take_input(packet(4))
    assert {w for w, _ in hand_out(made)} == {own, worker(0)}
    assert made.busy_workers() == 1


def test_answers_in_order_then_ready_then_drained() -> None:
    made, _, _ = state()
    made.joined(worker(0), 4)
    made.take_input(packet(2))
    made.take_end(2)
    [(w, _)] = hand_out(made)
    assert made.drained() == []  # the worker holds work
    released = made.answered(w, answers(0, 2))
    assert [seq for seq, _ in released] == [0, 1]
    made.ready(w, 4)
    assert made.drained() == [w]
    made.told_to_finish(w)
    made.finished_worker(w)
    assert made.done() and made.counts.processed == 2


def test_what_a_worker_sends_before_it_joins_goes_on_unless_its_process_was_lost() -> None:
    """init() outputs come before a JOIN (a chunk's worth waits for its MORE); a message it was never given, or
    anything from a process that was lost (its JOIN too), counts for nothing."""
    made, _, _ = state(ordered=True)
    before = [Answer(UNORDERED, [], Outcome.PARTIAL), Answer(UNORDERED, [(Encoded(b"hello", []), None)])]
    assert [seq for seq, _ in made.answered(worker(0), before)] == [UNORDERED, UNORDERED]
    assert made.take_acks() == [worker(0)]  # its chunk went on: MORE
    assert made.answered(worker(0), answers(0, 1)) == [] and made.ignored == 1
    made.lost(Loss(1, "killed", []))
    assert made.answered(worker(1), before) == [] and made.take_acks() == []
    assert made.joined(worker(1), 4) is False and worker(1) not in made.pool.workers
    assert made.joined(worker(0), 4) is False and worker(0) in made.pool.workers


def test_a_result_for_messages_the_worker_does_not_hold_is_ignored() -> None:
    made, _, _ = state()
    made.joined(worker(0), 4)
    made.take_input(packet(2))
    hand_out(made)
    assert made.answered(worker(0), answers(1, 1)) == []  # 0 comes first
    assert made.ignored == 1 and made.counts.processed == 0


def test_an_ordered_step_releases_outputs_in_input_order() -> None:
    made, _, _ = state(nb_thread=2, ordered=True)
    made.joined(worker(0), 2)
    made.joined(worker(1), 2)
    made.take_input(packet(2))
    (w0, p0), (w1, p1) = hand_out(made)
    assert made.answered(w1, answers(seqs(p1)[0], 1)) == []
    assert [seq for seq, _ in made.answered(w0, answers(seqs(p0)[0], 1))] == [0, 1]


# --------------------------------------------------------------------------- fused steps (engine.fusion)


def fused_state() -> tuple[StepState, Policy]:
    """S, whose worker processes run the fused step T after it."""
    policy = Policy()
    member = StepConfig(name="T", kind="stager", cls=object, module="m", next_steps=())  # type: ignore[arg-type]
    made = StepState(step(nb_thread=0), 1, RunOptions(), policy, lambda worker: False, True, Clock(),
                     members=[member])
    made.joined(worker(0), 4)
    return made, policy


def test_a_tally_counts_with_the_answers_sent_after_it_and_not_if_its_process_dies_first() -> None:
    made, _ = fused_state()
    made.take_input(packet(2))
    hand_out(made)
    made.tally(worker(0), [(1, 1, 0, 3, 0.1, 0.1), (3, 2, 1, 2, 0.2, 0.1)])
    assert made.tallies.members[0].counts().received == 0  # its answers have not come yet
    made.answered(worker(0), answers(0, 1))
    assert (made.tallies.emitted_to_members, made.tallies.members[0].counts().failed) == (3, 1)
    made.tally(worker(0), [(2, 2, 0, 6, 0.2, 0.1), (6, 5, 1, 5, 0.4, 0.1)])
    made.lost(Loss(0, "killed", [1]))  # died before the answer to message 1 left: it runs again elsewhere
    assert (made.tallies.emitted_to_members, made.tallies.members[0].counts().received) == (3, 3)


def test_a_fused_steps_failure_is_its_own_with_its_message_and_counts_with_its_inputs_answer() -> None:
    made, policy = fused_state()
    made.take_input(packet(1))
    hand_out(made)
    made.failed(worker(0), Failure(0, "run()", "ValueError: bad", "", member=1, message=Encoded(b"m", [])))
    assert policy.failed == []  # not yet: its process may die before it answers input 0, which then runs again
    made.answered(worker(0), answers(0, 1))
    assert policy.failed == [(0, "RemoteError")] and made.tallies.members[0].first_error == "ValueError: bad"
    assert made.first_error is None  # S itself did not fail
    made.failed(worker(0), Failure(0, "run()", "E", "", member=2, message=Encoded(b"m", [])))
    made.failed(worker(0), Failure(0, "run()", "E", "", member=1))  # without its message
    assert made.ignored == 2 and len(policy.failed) == 1


def test_a_fatal_failure_of_a_fused_step_is_its_failed_message_and_fails_that_step() -> None:
    """A SystemExit in a fused step's run() (FATAL_RUN): its message counts as failed, as an Exception's, and the
    fused step fails, not the router's own (it was only the step's failure, its message lost)."""
    made, policy = fused_state()
    made.take_input(packet(1))
    hand_out(made)
    made.failed(worker(0), Failure(0, FATAL_RUN, "SystemExit: 4", "", member=1, message=Encoded(b"m", [])))
    made.answered(worker(0), answers(0, 1))
    figures = made.tallies.members[0]
    assert (policy.failed, policy.fatal, policy.lifecycle) == ([(0, "RemoteError")], [0], [])
    assert (figures.first_error, figures.fatal) == ("run(): SystemExit: 4", True)
    assert (made.first_error, made.fatal) == (None, False)


def test_a_fused_steps_failure_after_its_inputs_answer_counts_at_once() -> None:
    """Not held for an answer that came already (it would never count)."""
    made, policy = fused_state()
    made.take_input(packet(2))
    hand_out(made)
    made.answered(worker(0), answers(0, 1))
    made.failed(worker(0), Failure(0, "run()", "ValueError: bad", "", member=1, message=Encoded(b"m", [])))
    assert policy.failed == [(0, "RemoteError")]


def test_a_fused_steps_failure_does_not_count_if_its_process_dies_before_the_answer() -> None:
    made, policy = fused_state()
    made.take_input(packet(1))
    hand_out(made)
    made.failed(worker(0), Failure(0, "run()", "ValueError: bad", "", member=1, message=Encoded(b"m", [])))
    made.added(1, 1)
    made.joined(worker(1), 4)  # the process that takes over
    made.lost(Loss(0, "killed", [0]))
    assert policy.failed == [] and made.tallies.members[0].first_error is None
    assert [seqs(p) for _, p in hand_out(made)] == [[0]]
    assert made.redelivered == 1  # input 0 runs again, and its failure with it


# --------------------------------------------------------------------------- worker processes lost


def test_what_a_dead_process_held_goes_back_to_the_front_and_only_its_running_message_is_blamed() -> None:
    made, policy, _ = state()
    for slot in (0, 1):
        made.added(slot, 1)
        made.joined(worker(slot), 8)
    made.take_input(packet(8))
    (_, p0), (w1, p1) = hand_out(made)
    made.take_input(packet(2))
    made.lost(Loss(0, "killed", [seqs(p0)[0]]))
    assert seqs(made.queue[0]) == seqs(p0)  # the front, in order
    assert made.redelivered == 0 and policy.failed == []  # delivered again once handed out, not before
    made.answered(w1, answers(seqs(p1)[0], len(p1)))
    made.ready(w1, 8)
    [(_, again)] = hand_out(made)
    assert seqs(again)[:len(p0)] == seqs(p0) and made.redelivered == len(p0)


def test_what_a_dead_process_held_is_not_counted_as_delivered_again_when_no_worker_takes_it() -> None:
    """The report said "1 shard started again" of a shard given back by the one worker process, which none replaced
    (engine.step_state counted it as it went back to the queue)."""
    made, _, _ = state()
    made.joined(worker(0), 8)
    made.take_input(packet(4))
    (_, p0), = hand_out(made)
    made.lost(Loss(0, "killed", [seqs(p0)[0]]))
    assert seqs(made.queue[0]) == seqs(p0) and hand_out(made) == []
    assert made.redelivered == 0


def test_a_message_that_killed_max_redeliveries_processes_fails_and_what_waited_for_it_goes_on() -> None:
    made, policy, _ = state(ordered=True)
    for slot in (0, 1):
        made.added(slot, 1)
        made.joined(worker(slot), 2)
    made.take_input(packet(2))
    (_, p0), (w1, p1) = hand_out(made)
    assert (seqs(p0), seqs(p1)) == ([0], [1])
    assert made.answered(w1, answers(1, 1)) == []  # 1 is held back behind 0
    made.ready(w1, 2)
    made.lost(Loss(0, "killed", [0]))  # 0 has killed one process: it goes round again
    [(again, p)] = hand_out(made)
    assert (again, seqs(p)) == (w1, [0])
    released = made.lost(Loss(1, "killed again", [0]))
    assert policy.failed == [(0, "WorkerDied")]
    assert [seq for seq, _ in released] == [1]  # 0 will never be answered: 1 goes on


def test_a_stopped_ordered_step_sends_on_what_waited_for_the_inputs_a_dead_process_gave_back() -> None:
    """A dead process's inputs go back to the front of the queue, before outputs already answered and held back in
    order; the step then stops (on_error stop, max_failures, a signal) and gives its queue up: what waited for those
    inputs goes on, in order, rather than wait for ever (processed, never sent on, counted nowhere)."""
    made, policy, _ = state(ordered=True)
    for slot in (0, 1):
        made.added(slot, 1)
        made.joined(worker(slot), 4)
    made.take_input(packet(4))
    (_, p0), (w1, p1) = hand_out(made)
    assert (seqs(p0), seqs(p1)) == ([0, 1], [2, 3])
    assert made.answered(w1, answers(2, 2)) == []  # held back behind 0 and 1
    assert made.lost(Loss(0, "killed", [0])) == []  # 0 and 1 go back to the front of the queue
    policy.halted.add("S")
    assert hand_out(made) == []  # the stopped step gives its queue up
    assert policy.skipped == [0, 1]
    assert [seq for seq, _ in made.take_released()] == [2, 3]
    assert made.take_released() == []  # each once


def test_a_process_lost_after_it_was_told_to_finish_is_given_time_for_its_finished() -> None:
    made, _, _ = state()
    made.added(0, 1)
    made.joined(worker(0), 2)
    made.take_end(0)
    assert made.drained() == [worker(0)]
    made.told_to_finish(worker(0))
    made.lost(Loss(0, "exit code 0", [], clean=True))
    assert not made.done() and made.settle_losses() == FINISH_GRACE_SECONDS
    made.finished_worker(worker(0))  # it came through the other socket, after the notice
    assert made.settle_losses() == 0.0 and made.done() and not made.fatal


def lost_in_finish(**keys: Any) -> StepState:
    """A step (of ``keys``) whose one worker process died once told to finish, its grace over."""
    made, _, clock = state(**keys)
    made.added(0, 1)
    made.joined(worker(0), 2)
    made.take_end(0)
    made.drained()
    made.told_to_finish(worker(0))
    made.lost(Loss(0, "killed by signal SIGKILL", []))
    clock.now += FINISH_GRACE_SECONDS
    assert made.settle_losses() == 0.0  # settled now: the router looks again at once (it would wait for ever)
    return made


def test_a_process_lost_before_its_finish_ended_fails_the_step_once_its_grace_is_over() -> None:
    made = lost_in_finish()
    assert made.done() and made.fatal and made.settle_losses() is None
    assert "died before its finish() ended" in (made.first_error or "")


def test_a_process_lost_in_a_finish_that_does_nothing_fails_nothing() -> None:
    """A step whose class keeps Component's finish(), as the steps fused with it: nothing is lost when its process dies
    there, and the step ends as after any death."""
    made = lost_in_finish(cls=Component)
    assert made.done() and not made.fatal and made.first_error is None


def test_a_process_that_died_before_it_could_be_told_to_finish_is_no_failure_and_its_replacement_finishes() -> None:
    """Its death is heard after the step drained (the supervisor was slow to say it), but the FINISH could not
    reach it: it died before its finish() began, as mid-stream. Its replacement joins and is told to finish."""
    made, _, _ = state()
    for slot in (0, 1):
        made.added(slot, 1)
        made.joined(worker(slot), 2)
    made.take_end(0)
    assert made.drained() == [worker(0), worker(1)]
    made.told_to_finish(worker(0))  # the FINISH to worker 1 failed: its process was gone
    made.finished_worker(worker(0))
    made.added(2, 1)
    made.lost(Loss(1, "killed by signal SIGKILL", []))
    assert made.joined(worker(2), 2)  # it comes after the end: told to finish at once
    made.told_to_finish(worker(2))
    made.finished_worker(worker(2))
    assert made.done() and not made.fatal


# --------------------------------------------------------------------------- any order of events


Event = tuple[str, int]


@st.composite
def events(draw: st.DrawFn) -> list[Event]:
    """Random inputs, handing out, answers with READY, deaths of worker processes, and the step stopped (as
    on_error stop or max_failures stop it: what is queued then is given up)."""
    kinds = st.sampled_from(["input", "offer", "answer", "answer", "lose", "halt"])
    return draw(st.lists(st.tuples(kinds, st.integers(0, 5)), max_size=60))


@settings(max_examples=2000, deadline=None)
@given(events(), st.booleans())
def test_every_message_is_accounted_for_exactly_once_in_any_order(script: Iterable[Event], ordered: bool) -> None:
    made, policy, _ = state(ordered=ordered)
    slots = 0
    live: list[int] = []

    def add() -> None:
        nonlocal slots
        made.added(slots, 1)
        made.joined(worker(slots), 4)
        live.append(slots)
        slots += 1

    add()
    add()
    sent = 0
    released: list[int] = []

    def offer_all() -> None:
        hand_out(made)
        released.extend(seq for seq, _ in made.take_released())  # held back for inputs it gave up as it offered

    for kind, value in script:
        if kind == "input":
            made.take_input(packet(value + 1))
            sent += value + 1
        elif kind == "offer":
            offer_all()
        elif kind == "halt":
            policy.halted.add("S")
        elif kind == "answer" and live:
            w = worker(live[value % len(live)])
            held = made.pool.workers.get(w)
            if held is not None and held.in_flight:
                oldest = held.in_flight[0]
                first = oldest.first_seq + held.answered
                released += [seq for seq, _ in made.answered(w, answers(first, len(oldest) - held.answered))]
                made.ready(w, 4)
        elif kind == "lose" and live:
            slot = live.pop(value % len(live))
            held = made.pool.workers.get(worker(slot))
            running = [held.in_flight[0].first_seq + held.answered] if held and held.in_flight else []
            released += [seq for seq, _ in made.lost(Loss(slot, "killed", running))]
            add()
    # Drain: answer everything, whatever is left.
    made.take_end(sent)
    for _ in range(sent + 2):
        offer_all()
        for slot in live:
            w = worker(slot)
            held = made.pool.workers[w]
            while held.in_flight:
                oldest = held.in_flight[0]
                first = oldest.first_seq + held.answered
                released += [seq for seq, _ in made.answered(w, answers(first, len(oldest) - held.answered))]
                made.ready(w, 4)
    failed = [seq for seq, _ in policy.failed]
    assert made.drained() != [] or not made.pool.workers
    # Each once: answered, failed for good, or given up by a stopped step.
    assert sorted(released + failed + policy.skipped) == list(range(sent))
    if ordered:
        assert released == sorted(released)
    assert made.counts.processed == len(released) and made.counts.failed == len(failed)


# --------------------------------------------------------------------------- restarts, stalls, the last word


def test_the_deaths_of_a_poison_message_are_forgiven_and_no_other() -> None:
    made, policy, _ = state(nb_thread=1)
    for slot in (0, 1, 2):
        made.added(slot, 1)
        made.joined(worker(slot), 2)
    made.take_input(packet(3))
    handed = dict(hand_out(made))
    made.lost(Loss(1, "killed", seqs(handed[worker(1)])))  # message 1 dies once: not poison (yet)
    assert made.forgiven == frozenset()
    made.lost(Loss(0, "killed", seqs(handed[worker(0)])))  # message 0 dies once
    [(again, p)] = hand_out(made)
    assert (again, seqs(p)) == (worker(2), [0])  # its room: one more message
    made.lost(Loss(2, "killed", [0]))  # 0 has now died in 2 processes: poison
    assert policy.failed == [(0, "WorkerDied")]
    assert made.forgiven == {0, 2}  # the deaths of 0, not that of 1


def test_a_stall_is_judged_only_on_a_process_holding_work_without_progress_while_the_router_is_up_to_date() -> None:
    made, _, clock = state()
    made.added(0, 1)
    made.joined(worker(0), 2)
    assert made.stall(0, idle_for=9, patience=1) is None  # it holds nothing
    made.take_input(packet(2))
    hand_out(made)
    clock.now += 2
    assert made.stall(0, idle_for=2, patience=1) is None  # the router is not waiting: it may not have read all
    made.waiting = True
    assert made.stall(0, idle_for=2, patience=1) == 2.0
    assert made.stall(0, idle_for=0.5, patience=1) is None  # it ran a message half a second ago
    made.answered(worker(0), answers(0, 1))
    assert made.stall(0, idle_for=2, patience=1) is None  # it answered just now: progress
    clock.now += 1.5
    assert made.stall(0, idle_for=2, patience=1) == 1.5


def test_a_process_whose_thread_joined_before_it_was_announced_counts_once_it_is() -> None:
    """The step's workers are reported joined when one joins or a process is lost: a thread whose JOIN came before its
    process's ADDED (the door sends ADDED first today) left the step never reported joined, and the run's start
    waiting for it."""
    made, _, _ = state()
    made.joined(worker(0), 2)
    assert not made.joined_now()  # one joined that the step does not expect yet
    made.added(0, 1)
    assert made.joined_now()


def test_a_process_holds_only_the_messages_handed_to_its_threads_and_its_finish_once_told() -> None:
    made, _, _ = state()
    made.added(0, 1)
    made.added(1, 1)
    made.joined(worker(0), 2)
    made.joined(worker(1), 2)
    made.take_input(packet(4))
    handed = dict(hand_out(made))
    mine, theirs = seqs(handed[worker(0)]), seqs(handed[worker(1)])
    assert made.holding(0, [*mine, *theirs, 10**9, FINISHING]) == mine  # never another's, one never sent, a finish()
    made.told_to_finish(worker(0))
    assert made.holding(0, [FINISHING, 10**9]) == [FINISHING]


def test_a_process_holds_no_message_it_answered_though_its_packet_is_not_done() -> None:
    """A heartbeat up to a beat old names a message the worker answered since (its outputs went on, written): the
    run's lines named it left behind; what the thread holds is the rest of its packet."""
    made, _, _ = state()
    made.added(0, 1)
    made.joined(worker(0), 8)
    made.take_input(packet(4))
    [(_, handed)] = hand_out(made)
    first = seqs(handed)
    assert len(first) > 1  # one packet of several messages, as a busy step hands out
    made.answered(worker(0), answers(first[0], 1))
    assert made.holding(0, first) == first[1:]
    assert made.unanswered(0) == [[range(first[1], first[-1] + 1)]]
    assert made.unanswered(1) == []


def test_a_stopping_run_waits_for_no_remote_worker_to_replace_the_last_one() -> None:
    """A run draining after a signal (or on_error stop) lets no remote worker join: a step whose last remote worker
    left gives its queue up at once and says so; it waited for worker_timeout (60 s by default), long after
    shutdown_timeout had stopped the run by force, whose summary then did not say the step had no workers."""
    made, policy, clock = state()
    made.options = RunOptions(listen="tcp://*:5570", worker_timeout=600)
    stopping = False
    made.stopping = lambda: stopping
    made.added(0, 1)
    made.joined(worker(0), 2)
    made.take_input(packet(4))
    hand_out(made)
    made.lost(Loss(0, "remote worker node7: taken for dead", []))
    wait = made.wait_alone()
    assert wait is not None and 0 < wait <= 1.0  # it looks again soon, whatever worker_timeout says
    assert not made.fatal
    stopping = True
    clock.now += 0.5
    assert made.wait_alone() == 0.0 and made.fatal and "S" in policy.halted
    assert made.first_error == (
        "step S has no workers left: its worker process 0 left (remote worker node7: taken for dead), and the run is "
        "stopping: none joins it (remote workers connect to tcp://*:5570 with pipeline-worker)")
    hand_out(made)
    assert policy.skipped == [0, 1, 2, 3]  # given up, to the dead letters as not run


def test_the_last_word_of_a_step_left_without_workers_says_what_became_of_them() -> None:
    def alone(*losses: Loss) -> str:
        made, _, clock = state()
        made.options = RunOptions(listen="tcp://*:5570", worker_timeout=1)
        made.refusals = lambda: "2 connections refused (a key not in authorized_keys)"
        for loss in losses:
            made.added(loss.slot, 1)
            made.joined(worker(loss.slot), 2)
            made.lost(loss)
        clock.now += 2
        assert made.wait_alone() == 0.0 and made.fatal
        return made.first_error or ""

    refused = "(remote workers connect to tcp://*:5570 with pipeline-worker; 2 connections refused (a key not in " \
              "authorized_keys))"
    assert alone() == f"step S has no workers left: no worker joined within worker_timeout=1 s {refused}"
    assert alone(Loss(4, "remote worker node7: exit code 2: cannot load m.S", [])) == (
        "step S has no workers left: its worker process 4 left (remote worker node7: exit code 2: cannot load m.S), "
        f"and no other joined within worker_timeout=1 s {refused}")
    assert alone(*(Loss(slot, f"gone {slot}", []) for slot in range(5))) == (
        "step S has no workers left: its 5 worker processes left (0: gone 0; 1: gone 1; 2: gone 2; and 2 more), "
        f"and no other joined within worker_timeout=1 s {refused}")


# --------------------------------------------------------------------------- chunks of outputs (issue 24.6)


def chunk(seq: int, count: int, size: int = 10) -> Answer:
    """A chunk of ``count`` outputs of input ``seq``, whose run() goes on."""
    return Answer(seq, [(Encoded(b"c" * size, []), None)] * count, Outcome.PARTIAL)


def test_a_chunk_goes_on_at_once_and_its_worker_is_told_more() -> None:
    made, _, _ = state()
    made.joined(worker(0), 2)
    made.take_input(packet(1))
    hand_out(made)
    released = made.answered(worker(0), [chunk(0, 3)])
    assert [(seq, len(outputs)) for seq, outputs in released] == [(0, 3)]
    assert made.take_acks() == [worker(0)] and made.counts.processed == 0  # input 0 is still running
    made.answered(worker(0), answers(0, 1))
    assert made.counts.processed == 1


@pytest.mark.parametrize("ordered", [False, True])
def test_a_result_that_fans_out_is_answered_more_and_one_that_does_not_is_not(ordered: bool) -> None:
    """A worker waits for a MORE after each RESULT with more outputs than inputs (flow.FANOUT_CREDIT), whatever path
    the router reads it by: the inputs it holds bound the outputs of the others."""
    made, _, _ = state(ordered=ordered)
    made.joined(worker(0), 8)
    made.take_input(packet(6))
    hand_out(made)
    made.answered(worker(0), answers(0, 2))  # one output each
    assert made.take_acks() == []
    three = [(Encoded(b"out", []), None)] * 3
    made.answered(worker(0), [Answer(2, three), Answer(3, [])])  # three outputs of two inputs
    assert made.take_acks() == [worker(0)]
    made.ready(worker(0), 8)  # its first packet (0-3) is done: the next holds 4 and 5
    assert [seqs(p) for _, p in hand_out(made)] == [[4, 5]]
    assert made.answered_done(worker(0), range(4, 6), [0.1, 0.2], 3) and made.take_acks() == [worker(0)]
    before = [Answer(UNORDERED, three)]  # init()'s three outputs, before a JOIN
    made.answered(worker(1), before)
    assert made.take_acks() == [worker(1)]


def test_an_ordered_steps_chunks_of_a_later_input_wait_their_turn_and_past_held_back_bytes_so_does_their_worker(
        ) -> None:
    made, _, _ = state(ordered=True)
    for slot in (0, 1):
        made.added(slot, 1)
        made.joined(worker(slot), 2)
    made.take_input(packet(2))
    hand_out(made)  # 0 to worker 0, 1 to worker 1
    assert made.answered(worker(1), [chunk(1, 2)]) == []  # held back: 0 is not done
    assert made.take_acks() == [worker(1)]  # within HELD_BACK_BYTES: it may go on
    assert made.answered(worker(1), [chunk(1, 1, size=HELD_BACK_BYTES)]) == []
    assert made.take_acks() == []  # past HELD_BACK_BYTES: it waits
    released = made.answered(worker(0), answers(0, 1))  # 0 is done: 1's chunks go on, and its worker
    assert [(seq, len(outputs)) for seq, outputs in released] == [(0, 1), (1, 2), (1, 1)]
    assert made.take_acks() == [worker(1)]


def test_an_ordered_producers_shard_that_runs_ahead_waits_past_held_back_bytes() -> None:
    # Each shard's chunk was answered MORE at once: shard 1 of a slow shard 0 was held back whole (400 MB of 1 MB
    # arrays in the run's process, against 100 MB unordered).
    shards = StepConfig(name="P", kind="producer", module="m", next_steps=("C",), nb_process=2, nb_thread=1,
                        ordered=True, cls=object)
    made = StepState(shards, 1, RunOptions(), Policy(), lambda worker: False, True, Clock())
    for slot in (0, 1):
        made.added(slot, 1)
        made.joined(worker(slot), 1)
    made.take_input(packet(2))  # the shards' numbers
    made.take_end(2)
    assert [seqs(p) for _, p in hand_out(made)] == [[0], [1]]
    assert made.answered(worker(1), [chunk(1, 2)]) == [] and made.take_acks() == [worker(1)]  # within the bound
    assert made.answered(worker(1), [chunk(1, 1, size=HELD_BACK_BYTES)]) == []
    assert made.take_acks() == []  # past HELD_BACK_BYTES: shard 1 waits for shard 0
    assert len(made.answered(worker(0), [chunk(0, 3)])) == 1 and made.take_acks() == [worker(0)]  # in turn: on
    released = made.answered(worker(0), [Answer(0, [])])  # shard 0 ended: shard 1's chunks go on, and it may go on
    assert [(seq, len(outputs)) for seq, outputs in released] == [(0, 0), (1, 2), (1, 1)]
    assert made.take_acks() == [worker(0), worker(1)]


def one_input_held() -> tuple[StepState, Policy]:
    """A step of two one-thread worker processes, the first of which joined and holds input 0."""
    made, policy, _ = state(nb_thread=1)
    for slot in (0, 1):
        made.added(slot, 1)
    made.joined(worker(0), 2)
    made.take_input(packet(1))
    hand_out(made)
    return made, policy


def died_after(first: Answer) -> tuple[StepState, Policy, Offer | None]:
    """A step of two one-thread worker processes: the first answers input 0 with the chunk ``first``, then dies;
    the state, its policy and what it offers the second once it joins."""
    made, policy = one_input_held()
    made.answered(worker(0), [first])
    made.lost(Loss(0, "killed", [0]))
    made.joined(worker(1), 2)
    return made, policy, made.offer()


def test_a_message_whose_worker_died_after_a_chunk_goes_again_with_a_skip_and_its_dead_letter_counts_it() -> None:
    made, policy, offer = died_after(chunk(0, 16))
    assert offer is not None and offer.worker == worker(1) and offer.skips == ((0, 16),)
    made.handed(offer)
    made.answered(worker(1), [chunk(0, 16)])
    made.failed(worker(1), Failure(0, "run()", "ValueError: half-way", ""))
    assert policy.failed == []  # it counts with its answer: a process that dies before runs it again
    made.answered(worker(1), [Answer(0, [], Outcome.FAILED, 0.0)])
    assert policy.failed == [(0, "RemoteError")] and policy.delivered == {0: 32}


def test_a_failure_said_by_a_process_that_dies_before_its_answer_counts_once() -> None:
    """The message runs again in another process and fails again: one failure, one dead letter (it was two)."""
    made, policy = one_input_held()
    made.failed(worker(0), Failure(0, "run()", "ValueError: bad", ""))
    made.lost(Loss(0, "killed", [1]))  # it died running the next message: 0 had failed, its answer unsent
    assert policy.failed == []
    made.joined(worker(1), 2)
    offer = made.offer()
    assert offer is not None and offer.worker == worker(1)
    made.handed(offer)
    made.failed(worker(1), Failure(0, "run()", "ValueError: bad", ""))
    made.answered(worker(1), [Answer(0, [], Outcome.FAILED, 0.0)])
    assert policy.failed == [(0, "RemoteError")]
    assert made.counts.failed == 1


def test_a_fatal_failure_counts_as_its_message_and_fails_the_step() -> None:
    """A SystemExit in run() of a worker outside the run (FATAL_RUN): one failed message, with its dead letter, that
    fails the step; no failure of the step's own besides (it was that alone, the message lost)."""
    made, policy = one_input_held()
    made.failed(worker(0), Failure(0, FATAL_RUN, "SystemExit: 4", ""))
    made.answered(worker(0), [Answer(0, [], Outcome.FAILED, 0.0)])
    assert (policy.failed, policy.fatal, policy.lifecycle) == ([(0, "RemoteError")], [0], [])
    assert (made.first_error, made.fatal, made.counts.failed) == ("run(): SystemExit: 4", True, 1)


def test_a_failure_said_twice_by_a_worker_outside_the_run_counts_once() -> None:
    """A hostile or broken worker process (a remote one) says its message failed twice: one failure, one dead
    letter; the second is ignored and said so."""
    made, policy = one_input_held()
    for _ in range(2):
        made.failed(worker(0), Failure(0, "run()", "ValueError: bad", ""))
    made.answered(worker(0), [Answer(0, [], Outcome.FAILED, 0.0)])
    assert policy.failed == [(0, "RemoteError")]
    assert made.ignored == 1


def test_a_message_that_ran_in_part_in_a_dead_process_is_not_run_with_what_went_on() -> None:
    """A chunk of it went on, its process died, then the step stopped: its dead letter says so, and a replay skips
    them (it sent them all again)."""
    made, policy = one_input_held()
    made.answered(worker(0), [chunk(0, 16)])
    made.lost(Loss(0, "killed", [0]))  # message 0 goes back to the queue, 16 of its outputs on their way
    policy.halted.add(made.step.name)  # a failure elsewhere in the step stopped it (on_error=stop)
    assert made.offer() is None
    assert policy.skipped == [0] and policy.delivered == {0: 16}


def test_a_fused_chunk_counts_the_first_steps_outputs_it_stands_for_not_the_outputs_it_holds() -> None:
    """Fused steps after the first filtered 16 outputs to none (a fused consumer makes none): the SKIP and the dead
    letter still count the 16 of the first step that went on."""
    made, policy, offer = died_after(Answer(0, [], Outcome.PARTIAL, 0.0, 16))
    assert offer is not None and offer.skips == ((0, 16),)
    made.handed(offer)
    made.failed(worker(1), Failure(0, "run()", "ValueError: half-way", ""))
    made.answered(worker(1), [Answer(0, [], Outcome.FAILED, 0.0)])
    assert policy.delivered == {0: 16}


def test_a_redelivered_input_in_turn_lets_the_waiting_chunks_go_on() -> None:
    """Its worker died; the other one waits (past HELD_BACK_BYTES) for the MORE of a later input's chunk: it is let
    go on, since no worker runs the input in turn, which must find one (it may be all the step has)."""
    made, _, _ = state(ordered=True)
    for slot in (0, 1):
        made.added(slot, 1)
        made.joined(worker(slot), 2)
    made.take_input(packet(2))
    hand_out(made)
    made.answered(worker(1), [chunk(1, 1, size=HELD_BACK_BYTES)])
    assert made.take_acks() == []
    made.lost(Loss(0, "killed", [0]))  # 0 goes back to the queue
    made.offer()
    assert made.take_acks() == [worker(1)]


def test_init_and_finish_failures_past_two_per_worker_thread_are_ignored_and_counted() -> None:
    """A peer's 30 FAILEDs of no input ("init() failed"), before or after its JOIN, were each logged and kept: a
    worker thread has at most one failure before its finish() and one in it, per step it runs."""
    made, policy, _ = state()
    for number in range(5):  # before its JOIN
        made.failed(worker(0), Failure(UNORDERED, "init()", f"RuntimeError: {number}", ""))
    made.joined(worker(0), 2)
    made.failed(worker(0), Failure(UNORDERED, "finish()", "OSError: late", ""))
    made.failed(worker(1), Failure(UNORDERED, "init()", "RuntimeError: another thread", ""))
    assert policy.lifecycle == ["init()", "init()", "init()"] and made.ignored == 4
    assert made.first_error == "init(): RuntimeError: 0" and made.fatal


def test_a_fused_steps_init_and_finish_failures_count_apart_from_its_routers_step() -> None:
    made, policy = fused_state()
    made.failed(worker(0), Failure(UNORDERED, "init()", "E", ""))
    for _ in range(3):
        made.failed(worker(0), Failure(UNORDERED, "finish()", "E", "", member=1))
    assert policy.lifecycle == ["init()", "finish()", "finish()"] and made.ignored == 1


# --------------------------------------------------------------------------- workers that break the protocol


def joined_holding(count: int) -> tuple[StepState, Policy, Clock]:
    """A step whose one worker process (slot 0, one thread) joined and holds ``count`` messages, 0 first."""
    made, policy, clock = state()
    made.added(0, 1)
    made.joined(worker(0), 8)
    made.take_input(packet(count))
    hand_out(made)
    return made, policy, clock


def assert_dropped(made: StepState, why: str, queued: int) -> None:
    """Worker process 0 was dropped for ``why`` (its keeper is told), and what it held is back in the queue."""
    assert why in made.broken.pop(0)
    assert worker(0) not in made.pool.workers and made.queued == queued
    assert made.answered(worker(0), answers(0, 1)) == [] and made.joined(worker(0), 2) is False  # moot from now on


def init_output(outcome: Outcome = Outcome.DONE) -> list[Answer]:
    """What an init() or finish() sent: one output of no input (UNORDERED)."""
    return [Answer(UNORDERED, [(Encoded(b"junk", []), None)], outcome)]


def test_outputs_of_no_input_come_only_from_init_and_finish_once_each() -> None:
    """init()'s outputs (its chunks, then one answer) before the worker runs messages, finish()'s once it is told to
    finish: a peer's 3,000 RESULTs of outputs of no input while it ran messages were written as the step's own."""
    made, _, _ = joined_holding(2)
    assert made.answered(worker(0), init_output(Outcome.PARTIAL))  # init()'s last words may follow its JOIN
    assert made.answered(worker(0), init_output())
    made.take_acks()
    made.answered(worker(0), init_output())
    assert_dropped(made, "outputs of no input after its init() ended", queued=2)

    made, _, _ = joined_holding(2)
    made.answered(worker(0), answers(0, 1))  # it runs messages: its init() is over, even one that sent nothing
    made.answered(worker(0), init_output())
    assert_dropped(made, "outputs of no input after its init() ended", queued=1)

    made, _, _ = joined_holding(1)
    made.answered(worker(0), answers(0, 1))
    made.ready(worker(0), 8)
    made.take_end(1)
    assert made.drained() == [worker(0)]
    made.told_to_finish(worker(0))
    assert made.answered(worker(0), init_output()) and not made.broken  # finish()'s
    made.answered(worker(0), init_output())
    assert "outputs of no input after its finish() ended" in made.broken[0]


def test_a_worker_that_joins_a_step_that_is_ending_sends_its_init_s_outputs_then_its_finish_s() -> None:
    """Told to finish as it joined (the step had drained), its init()'s last answer came after (a JOIN goes first):
    it was taken as a second answer of its finish() and the honest worker process dropped ("broke the protocol"),
    a SLURM job's and a run whose other step failed to start."""
    made, _, _ = state()
    made.added(0, 1)
    made.joined(worker(0), 2)
    made.take_end(0)
    assert made.drained() == [worker(0)]
    made.added(1, 1)
    assert made.joined(worker(1), 2)  # told at once
    made.told_to_finish(worker(1))
    assert made.answered(worker(1), init_output(Outcome.PARTIAL)) is not None and not made.broken
    made.answered(worker(1), init_output())  # init()'s
    made.answered(worker(1), init_output())  # finish()'s
    assert not made.broken
    made.answered(worker(1), init_output())
    assert "outputs of no input after its finish() ended" in made.broken[1]


def test_a_worker_owed_more_mores_than_it_may_be_is_dropped() -> None:
    """A worker sends a chunk and waits for its MORE (after at most FANOUT_CREDIT RESULTs that fan out): what the
    router reads before it answers (once all that waits is read) is never more; a peer's thousands of chunks were."""
    made, _, _ = joined_holding(1)
    for _ in range(MOST_OWED):
        made.answered(worker(0), [chunk(0, 2)])
    assert not made.broken
    assert made.take_acks() == [worker(0)] * MOST_OWED  # answered: owed none
    for _ in range(MOST_OWED + 1):
        made.answered(worker(0), [chunk(0, 2)])
    assert_dropped(made, f"{MOST_OWED + 1} RESULTs unanswered by a MORE", queued=1)


def test_a_join_asking_for_nothing_counts_only_after_its_init_failure() -> None:
    """JOIN 0 says that init() failed: from a worker that did not say how, it is a breach (its step started no
    producer, and the run ended "finished" with nothing done); after its FAILED, the run fails as for any init()."""
    made, policy, _ = state()
    made.added(0, 1)
    made.added(1, 1)
    assert made.joined(worker(0), 0) is False
    assert_dropped(made, "joined asking for no messages", queued=0)
    made.joined(worker(1), 4)
    assert made.joined_now() and not made.start_failed  # the honest worker's step starts

    made, policy, _ = state()
    made.added(0, 1)
    made.failed(worker(0), Failure(UNORDERED, "init()", "RuntimeError: no", ""))
    made.joined(worker(0), 0)
    assert made.joined_now() and made.start_failed and made.fatal and policy.lifecycle == ["init()"]
    assert not made.broken


def test_a_ready_asking_for_nothing_is_a_breach() -> None:
    """A worker that asks for no more work would hold a place in its step for ever: a step of it alone waited."""
    made, _, _ = joined_holding(1)
    made.answered(worker(0), answers(0, 1))
    made.ready(worker(0), 0)
    assert_dropped(made, "a READY asking for no messages", queued=0)


def test_hellos_do_not_restart_the_wait_for_a_worker_a_join_ends_it() -> None:
    """A step of remote workers fails once it has had no worker for worker_timeout, whatever HELLOs (ADDED) come and
    go: a peer that said HELLO again as each slot was dropped kept the run waiting for ever."""
    made, policy, clock = state()
    made.options = RunOptions(listen="tcp://*:5570", worker_timeout=10)
    for slot in range(4):
        clock.now += 3
        made.added(slot, 1)
        made.lost(Loss(slot, "its threads never joined", []))
    assert made.wait_alone() == 0.0 and made.fatal and "S" in policy.halted

    made, policy, clock = state()
    made.options = RunOptions(listen="tcp://*:5570", worker_timeout=10)
    clock.now += 9
    made.added(0, 1)
    made.joined(worker(0), 2)
    clock.now += 9
    assert made.wait_alone() is None and not made.fatal
