"""The client refuses a result that does not account for what was sent and received."""

from __future__ import annotations

import hashlib
import socket
from typing import Any

import h11
import pytest

from arx.client.deploy import _read_result, exit_code
from arx.errors import TransportError
from arx.protocol.messages import KeepExit, Output, Result, encode_frame

SENT = hashlib.sha256(b"the body the client sent").digest()


def answer(*frames: bytes) -> tuple[socket.socket, h11.Connection]:
    """A client connection whose peer has already sent a 200 with ``frames``."""
    ours, theirs = socket.socketpair()
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="POST", target="/v1/workload", headers=[("host", "keep")]))
    conn.send(h11.EndOfMessage())
    body = b"".join(frames)
    theirs.sendall(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/cbor-seq\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    theirs.close()
    return ours, conn


def read(*frames: bytes) -> tuple[Result, list[tuple[str, bytes]]]:
    sock, conn = answer(*frames)
    out: list[tuple[str, bytes]] = []
    sock_any: Any = sock
    try:
        result = _read_result(
            sock_any, conn, lambda s, d: out.append((s, d)), lambda *_: None, SENT
        )
    finally:
        sock.close()
    return result, out


def test_a_matching_result_is_accepted() -> None:
    result, out = read(
        encode_frame(Output(stream="stdout", data=b"abc")),
        encode_frame(
            Result(exit=KeepExit(status="exited", code=0), workload_sha256=SENT, stdout_bytes=3)
        ),
    )
    assert result.exit.code == 0
    assert out == [("stdout", b"abc")]


def test_a_different_workload_digest_is_refused() -> None:
    other = hashlib.sha256(b"something else").digest()
    with pytest.raises(TransportError, match="different workload digest"):
        read(encode_frame(Result(exit=KeepExit(status="exited", code=0), workload_sha256=other)))


def test_missing_output_is_noticed() -> None:
    with pytest.raises(TransportError, match="output went missing"):
        read(
            encode_frame(Output(stream="stderr", data=b"x")),
            encode_frame(
                Result(
                    exit=KeepExit(status="exited", code=0),
                    workload_sha256=SENT,
                    stderr_bytes=2,
                )
            ),
        )


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("trapped", 134),
        ("timeout", 124),
        ("memory_limit", 137),
        ("out_of_fuel", 152),
        ("output_limit", 153),
        ("failed", 125),
        ("killed", 125),
    ],
)
def test_each_status_has_its_exit_code_and_one_line(status: Any, code: int) -> None:
    got, line = exit_code(KeepExit(status=status, message="why"))
    assert got == code
    assert line is not None
    assert line.endswith("why")
    assert "\n" not in line


def test_exit_codes_pass_through() -> None:
    assert exit_code(KeepExit(status="exited", code=42)) == (42, None)
    assert exit_code(KeepExit(status="exited", code=300))[0] == 125
