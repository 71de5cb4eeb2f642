"""The Keep's HTTPS endpoint for the workload (steps 8-10).

The TLS key is the one the client provisioned, so only the Keep can complete
a handshake the client accepts. Anyone on the host can still connect, so the
request must also prove knowledge of that key (``Arx-Key-Proof``); the first
request with a valid proof claims the Keep, every other one is refused. HTTP
is parsed by h11 (sans-IO); this module only moves bytes between it and a
blocking TLS socket, one thread per connection.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass

import h11

from arx.crypto import KEY_PROOF_HEADER, WORKLOAD_PATH
from arx.errors import ArxError, ProtocolError, WorkloadError
from arx.protocol.messages import (
    ErrorBody,
    KeepExit,
    Output,
    Result,
    StreamName,
    Workload,
    encode_frame,
)
from arx.wasmldr import runner

# Bounds on the untrusted connection.
# Request line and headers: a few hundred bytes in practice.
MAX_HEADER_BYTES = 16 * 1024
# A TLS handshake on loopback takes milliseconds; a peer that takes longer is
# stalling a connection slot.
HANDSHAKE_TIMEOUT = 10.0
# The longest the Keep waits for the next bytes of a request (slow clients).
READ_IDLE_TIMEOUT = 30.0
# The longest a stalled client may block the Keep's output.
WRITE_TIMEOUT = 60.0
# Connections handled at once: the client needs one; a few more let the Keep
# refuse strangers without the strangers locking the client out.
MAX_CONNECTIONS = 8


@dataclass
class Outcome:
    """What happened to the one workload this Keep accepts."""

    exit: KeepExit
    started: bool


class WorkloadGate:
    """Lets exactly one authenticated request through, then reports how it ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claimed = False
        self.done = threading.Event()
        self.outcome: Outcome | None = None

    def claim(self) -> bool:
        with self._lock:
            if self._claimed:
                return False
            self._claimed = True
            return True

    def finish(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.done.set()


class _Conn:
    """One HTTP/1.1 exchange over a blocking TLS socket, driven through h11."""

    def __init__(self, sock: ssl.SSLSocket, max_body: int) -> None:
        self.sock = sock
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.max_body = max_body
        self.write_lock = threading.Lock()
        self.peer_gone = False

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.sock.settimeout(READ_IDLE_TIMEOUT)
            data = self.sock.recv(64 * 1024)
            self.h11.receive_data(data)  # b"" means the peer closed

    def send(self, *events: h11.Event) -> None:
        with self.write_lock:
            if self.peer_gone:
                return
            try:
                self.sock.settimeout(WRITE_TIMEOUT)
                for event in events:
                    data = self.h11.send(event)
                    if data:
                        self.sock.sendall(data)
            except (OSError, h11.LocalProtocolError):
                self.peer_gone = True

    def respond_error(self, status: int, code: str, message: str) -> None:
        body = ErrorBody(error=code, message=message).to_cbor()
        headers = [
            (b"content-type", b"application/cbor"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        self.send(h11.Response(status_code=status, headers=headers), h11.Data(data=body))
        self.send(h11.EndOfMessage())


class _Rejected(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def serve_connection(
    raw: socket.socket,
    context: ssl.SSLContext,
    *,
    expected_proof: str,
    gate: WorkloadGate,
    max_body: int,
    on_started: Callable[[], None],
) -> None:
    """Handles one connection to the end; never raises."""
    try:
        raw.settimeout(HANDSHAKE_TIMEOUT)
        sock = context.wrap_socket(raw, server_side=True)
    except (OSError, ssl.SSLError):
        raw.close()
        return
    conn = _Conn(sock, max_body)
    try:
        _exchange(conn, expected_proof, gate, on_started)
    except _Rejected as exc:
        conn.respond_error(exc.status, exc.code, exc.message)
    except (OSError, h11.RemoteProtocolError, ssl.SSLError):
        pass  # The peer broke the exchange; a claimed gate is finished below.
    finally:
        with contextlib.suppress(OSError):
            sock.close()


def _exchange(
    conn: _Conn, expected_proof: str, gate: WorkloadGate, on_started: Callable[[], None]
) -> None:
    request = conn.next_event()
    if not isinstance(request, h11.Request):
        return
    if request.method != b"POST" or request.target != WORKLOAD_PATH.encode():
        raise _Rejected(404, "not_found", "the Keep serves only POST /v1/workload")
    headers = dict(request.headers)
    proof = headers.get(KEY_PROOF_HEADER, b"").decode("ascii", "replace")
    if not hmac.compare_digest(proof, expected_proof):
        raise _Rejected(403, "forbidden", "the request does not prove it holds the provisioned key")
    length_header = headers.get(b"content-length")
    if length_header is not None and int(length_header) > conn.max_body:
        raise _Rejected(
            413,
            "workload_too_large",
            f"the workload is {int(length_header)} bytes; this Keep accepts at most "
            f"{conn.max_body}",
        )
    if not gate.claim():
        raise _Rejected(409, "keep_in_use", "this Keep has already accepted its workload")

    # From here on the Keep is committed to this one request, whatever happens.
    try:
        body = _read_body(conn)
        exit_ = _run(conn, body, on_started)
    except _Rejected as exc:
        conn.respond_error(exc.status, exc.code, exc.message)
        gate.finish(Outcome(KeepExit(status="failed", message=exc.message), started=False))
        return
    except (OSError, h11.RemoteProtocolError, ssl.SSLError) as exc:
        message = f"the client disconnected before the workload arrived ({type(exc).__name__})"
        gate.finish(Outcome(KeepExit(status="failed", message=message), started=False))
        return
    gate.finish(Outcome(exit_, started=True))


def _read_body(conn: _Conn) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Data):
            total += len(event.data)
            if total > conn.max_body:
                raise _Rejected(
                    413,
                    "workload_too_large",
                    f"the workload exceeds this Keep's limit of {conn.max_body} bytes",
                )
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(chunks)
        elif isinstance(event, h11.ConnectionClosed):
            raise OSError("connection closed mid-upload")


def _run(conn: _Conn, body: bytes, on_started: Callable[[], None]) -> KeepExit:
    digest = hashlib.sha256(body).digest()
    try:
        workload = Workload.from_cbor(body, limit=conn.max_body)
    except ProtocolError as exc:
        raise _Rejected(400, exc.code, f"invalid workload request: {exc.message}") from exc
    try:
        compiled = runner.compile_module(workload.module)
    except WorkloadError as exc:
        raise _Rejected(422, "invalid_module", exc.message) from exc

    on_started()
    conn.send(
        h11.Response(
            status_code=200,
            headers=[
                (b"content-type", b"application/cbor-seq"),
                (b"transfer-encoding", b"chunked"),
            ],
        )
    )

    def sink(stream: StreamName, data: bytes) -> None:
        conn.send(h11.Data(data=encode_frame(Output(stream=stream, data=data))))

    try:
        exit_ = runner.run(
            compiled, argv=[workload.program, *workload.args], env=workload.env, sink=sink
        )
    except ArxError as exc:
        exit_ = KeepExit(status="failed", message=exc.message)
    conn.send(
        h11.Data(data=encode_frame(Result(exit=exit_, workload_sha256=digest))),
        h11.EndOfMessage(),
    )
    return exit_


def server_context(cert_pem: bytes, key_pem: bytes, workdir: str) -> ssl.SSLContext:
    """TLS 1.3 only, with the provisioned key; the client pins that key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    # ssl loads keys only from files; write them to a private temporary file
    # (mode 0600 in the Keep's private directory) and remove it at once.
    fd, path = tempfile.mkstemp(dir=workdir, suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(cert_pem + key_pem)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)
    return context
