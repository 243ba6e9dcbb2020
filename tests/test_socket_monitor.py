"""A socket monitored again and again (engine.sockets.monitor): pipeline-worker asks the run for each of its
worker processes on one socket, and each ask watches that socket's handshake anew."""

from __future__ import annotations

import zmq
from zmq.utils.monitor import recv_monitor_message

from pipeline.engine import sockets


def test_one_socket_monitored_again_at_once_each_time() -> None:
    context = zmq.Context()
    listener = context.socket(zmq.ROUTER)
    client = context.socket(zmq.DEALER)
    for socket in (listener, client):
        socket.linger = 0
    try:
        port = listener.bind_to_random_port("tcp://127.0.0.1")
        for _ in range(300):  # pyzmq's own address was still bound at the next call in nine asks of ten
            watcher = sockets.monitor(client, zmq.EVENT_CONNECTED)
            client.disable_monitor()
            watcher.close()
        watcher = sockets.monitor(client, zmq.EVENT_CONNECTED)
        try:
            client.connect(f"tcp://127.0.0.1:{port}")
            assert watcher.poll(10_000), "the last monitor heard nothing"
            assert recv_monitor_message(watcher)["event"] == zmq.EVENT_CONNECTED
        finally:
            client.disable_monitor()
            watcher.close()
    finally:
        listener.close()
        client.close()
        context.term()
