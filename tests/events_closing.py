"""Run as ``python -m tests.events_closing``: a listening socket's events reader (``pipeline.auth.events``) stalls
while a flood fills libzmq's monitor queue, and the socket is closed from the main thread, which holds the GIL but for
its waits. Prints ``closed`` and exits 0 when the close ended and the reader with it; a close that deadlocks (waiting
for libzmq's monitor lock with the GIL held, while the reader needs the GIL to make room) never prints: the test that
runs this bounds it with a timeout, which no hung thread of its own process could."""

from __future__ import annotations

import threading

import zmq

from pipeline.auth.events import SocketEvents
from tests.bare_flood import bare_flood

#: Seconds the reader stays stalled once the main thread starts closing: a thread that needs the GIL releases it.
STALL_SECONDS = 1.0


def main() -> None:
    """Fill the monitor's queue under a stalled reader, close, and say whether the reader ended."""
    context = zmq.Context()
    server = context.socket(zmq.ROUTER)
    server.linger = 0
    resume = threading.Event()
    events = SocketEvents(server, zmq.EVENT_ACCEPTED, lambda kind, value: resume.wait())
    port = server.bind_to_random_port("tcp://127.0.0.1")
    with bare_flood(port) as greeted:  # stops once libzmq greets no more: its I/O thread waits on the full queue
        release = threading.Timer(STALL_SECONDS, resume.set)
        release.start()
        events.close()
        release.join()
    context.term()
    print(f"closed: {len(greeted)} connections greeted, reader alive: {events.is_alive()}", flush=True)


if __name__ == "__main__":
    main()
