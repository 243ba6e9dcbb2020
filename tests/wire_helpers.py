"""Frames of the engine's wire format (pipeline/engine/wire.py) as a socket would deliver them, without one."""

from __future__ import annotations

from typing import Any

import zmq


def as_received(frames: list[Any]) -> list[zmq.Frame]:
    """The frames as a receiver gets them (zmq.Frame objects), without a socket."""
    return [zmq.Frame(bytes(memoryview(frame))) for frame in frames]
