"""wasmldr takes its workload port from keepldr as a bound socket, and checks it is one."""

from __future__ import annotations

import os
import socket

import pytest

from arx.errors import ArxError
from arx.wasmldr.main import workload_port


def test_a_bound_tcp_socket_is_taken_and_keeps_its_port() -> None:
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))
    port = bound.getsockname()[1]
    sock = workload_port(os.dup(bound.fileno()))
    bound.close()
    with sock:
        assert sock.getsockname()[1] == port
        sock.listen(1)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            conn, _ = sock.accept()
            conn.close()


def test_no_port_is_an_error() -> None:
    with pytest.raises(ArxError, match="needs the workload port from keepldr"):
        workload_port(None)


def test_a_pipe_is_not_a_port() -> None:
    r, w = os.pipe()
    os.close(w)
    try:
        with pytest.raises(ArxError, match=f"--listen-fd {r} is not a socket"):
            workload_port(r)
    finally:
        os.close(r)


def test_a_udp_socket_is_not_a_port() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = udp.detach()
    with pytest.raises(ArxError, match=f"--listen-fd {fd} is not a TCP socket"):
        workload_port(fd)


def test_a_closed_descriptor_is_not_a_port() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(ArxError, match="is not a socket"):
        workload_port(r)
