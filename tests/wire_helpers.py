"""Frames of the engine's wire format (pipeline/engine/wire.py) as a socket would deliver them, without one."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any

import zmq

from pipeline.engine.handles import Handles
from pipeline.engine.rings import Ring
from pipeline.engine.wire import EVERY_NEXT_STEP, HEADER, INLINE, Answer, Kind, ResultPacket
from pipeline.execution.executor import UNORDERED, Outcome


def as_received(frames: list[Any]) -> list[zmq.Frame]:
    """The frames as a receiver gets them (zmq.Frame objects), without a socket."""
    return [zmq.Frame(bytes(memoryview(frame))) for frame in frames]


def result_frames(answers: Sequence[Answer], handles: Handles | None = None, ring: Ring | None = None) -> list[Any]:
    """A RESULT packet, as a worker's executor builds it answer by answer: for each input, its outputs and their
    targets, then the table of inputs (the buffers lent to ``handles``, or put in ``ring``)."""
    result = ResultPacket()
    for answer in answers:
        result.answer(answer.seq, answer.outputs, answer.outcome, answer.seconds, answer.made)
    return result.frames(handles, ring)


def unordered_result(inputs: int) -> list[bytes]:
    """A RESULT of ``inputs`` answers of no input (UNORDERED), DONE, without outputs: what a peer may make huge."""
    table = array("Q", [UNORDERED]).tobytes() * inputs + bytes(8 * inputs) + bytes([Outcome.DONE]) * inputs
    return [HEADER.pack(Kind.RESULT, INLINE, 0, inputs), table]


def empty_outputs_result(outputs: int) -> list[bytes]:
    """A RESULT answering no input (UNORDERED), DONE, with ``outputs`` empty outputs for every next step: 8 bytes of
    header each, what a peer may make huge."""
    header = b"".join((HEADER.pack(Kind.RESULT, INLINE, outputs, 1), bytes(6 * outputs),
                       array("H", [EVERY_NEXT_STEP]).tobytes() * outputs))
    table = b"".join((array("Q", [UNORDERED]).tobytes(), array("I", [outputs]).tobytes(), bytes(4),
                      bytes([Outcome.DONE])))
    return [header, table]
