"""A peer flooding a monitor from several connections, in a process of its own (so its memory is not the monitor's).

``python -m tests.flood_peer ADDRESS CONNECTIONS SECONDS [curve]`` sends messages of about 1 MiB on each connection
for SECONDS, as fast as the connections take them, prints how many ZeroMQ took, then holds its connections open
until its stdin closes. ``curve``: as a run of this user does, with the user's own key pair.
"""

from __future__ import annotations

import json
import sys
import time

import zmq

from pipeline import auth

#: A message just under the monitor's 1 MiB cap: a status with a field of numbers, valid JSON.
BIG = [b"status", json.dumps({"protocol": 1, "topic": "status", "junk": [0] * 500_000}, separators=(",", ":")).encode()]
#: Messages a connection queues here (the peer's own memory, not the monitor's) before the next ones are dropped.
QUEUE = 1000


def main(address: str, connections: int, seconds: float, curve: bool) -> int:
    """Flood ``address``; print the messages sent."""
    context = zmq.Context()
    sockets = []
    for _ in range(connections):
        socket = context.socket(zmq.PUB)
        socket.sndhwm = QUEUE
        if curve:
            own = auth.ensure_own_key_pair()
            auth.secure_client(socket, own, own.public)
        socket.connect(address)
        sockets.append(socket)
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for socket in sockets:
            socket.send_multipart(BIG, zmq.NOBLOCK, copy=False)  # a PUB drops what its queue cannot take
            sent += 1
        time.sleep(0.002)  # the pace of the tester's flood: about 500 MiB/s per connection offered
    print(sent, flush=True)
    sys.stdin.read()  # the connections stay open (and what waits in the monitor for them) until stdin closes
    for socket in sockets:
        socket.close(linger=0)
    context.term()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:] == ["curve"]))
