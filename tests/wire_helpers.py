"""Frames of the engine's wire format (pipeline/engine/wire.py) as a socket would deliver them, without one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import zmq

from pipeline.engine.handles import Handles
from pipeline.engine.rings import Ring
from pipeline.engine.wire import Answer, ResultPacket


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
