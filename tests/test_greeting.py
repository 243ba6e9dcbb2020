"""What a ZeroMQ peer greets with tells a run's port from another service's (pipeline.auth.greeting).

A worker connected to a plain ZeroMQ socket was told "authentication failed" whenever libzmq's own
report of the mechanism mismatch came on the other side of the connection (a race that a loaded host
loses): the peer's greeting is read instead. Real sockets on loopback.
"""

from __future__ import annotations

import socket

import pytest
import zmq

from pipeline.auth.greeting import GREETING_BYTES, NOT_ZEROMQ, OPENING, mechanism_at, mechanism_in
from tests.remote_helpers import answering, free_port


def greeting(mechanism: str) -> bytes:
    """The greeting of a ZMTP 3.0 server offering ``mechanism``."""
    return OPENING + b"\0" + mechanism.encode().ljust(20, b"\0") + b"\1" + bytes(31)


def test_a_greeting_names_its_mechanism() -> None:
    assert len(greeting("CURVE")) == GREETING_BYTES
    assert mechanism_in(greeting("CURVE")) == "CURVE"
    assert mechanism_in(greeting("NULL")) == "NULL"
    assert mechanism_in(greeting("PLAIN")) == "PLAIN"


@pytest.mark.parametrize("received", [b"HTTP/1.1 400 Bad Request\r\n\r\n".ljust(GREETING_BYTES, b" "),
                                      b"\xff" + bytes(8) + b"\x7e" + bytes(54),  # a ZMTP 1.0 identity, no greeting
                                      b"\xff" + bytes(8) + b"\x7f" + b"\x02" + bytes(53),  # ZMTP 2: no mechanism
                                      greeting("NULL")[:40]])
def test_what_is_no_zmtp_3_greeting_is_not_zeromq(received: bytes) -> None:
    assert mechanism_in(received) == NOT_ZEROMQ


@pytest.mark.parametrize("mechanism", ["NULL", "CURVE"])
def test_a_zeromq_socket_greets_with_its_mechanism(mechanism: str) -> None:
    with zmq.Context() as context, context.socket(zmq.ROUTER) as service:
        service.linger = 0
        if mechanism == "CURVE":
            service.curve_server = True
            service.curve_secretkey = zmq.curve_keypair()[1]
        port = service.bind_to_random_port("tcp://127.0.0.1")
        assert mechanism_at("127.0.0.1", port) == mechanism


def test_a_server_that_speaks_another_protocol_is_not_zeromq() -> None:
    with answering(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n") as port:
        assert mechanism_at("127.0.0.1", port) == NOT_ZEROMQ


def test_no_connection_or_no_word_cannot_tell() -> None:
    assert mechanism_at("127.0.0.1", free_port()) is None
    with answering(b"") as port:  # closes at once
        assert mechanism_at("127.0.0.1", port) is None
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never says a word
        assert mechanism_at("127.0.0.1", silent.getsockname()[1], timeout=0.2) is None
