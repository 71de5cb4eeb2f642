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
import select
import shutil
import socket
import ssl
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, BinaryIO, cast

import h11

from arx.crypto import KEY_PROOF_HEADER, WORKLOAD_PATH
from arx.errors import ArxError, ProtocolError, WorkloadError
from arx.protocol.messages import (
    MAX_OUTPUT_CHUNK,
    MAX_WORKLOAD_HEADER_BYTES,
    ArchiveChunk,
    ArchiveInfo,
    Chunk,
    ErrorBody,
    ExitStatus,
    FrameDecoder,
    KeepExit,
    Message,
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
# After an error response, how long and how much of the rest of a request the
# Keep reads so that the client gets the response (see _Conn.linger).
LINGER_SECONDS = 2.0
MAX_LINGER_BYTES = 64 * 1024 * 1024
# Connections handled at once: the client needs one; a few more let the Keep
# refuse strangers without the strangers locking the client out.
MAX_CONNECTIONS = 8


@dataclass
class Outcome:
    """What happened to the one workload this Keep accepts."""

    exit: KeepExit


class WorkloadGate:
    """Lets exactly one authenticated request through, then reports how it ended.

    ``on_abort`` ends the Keep when a limit stops a workload that is still
    running (wasmldr reports the outcome and exits the process).
    """

    def __init__(
        self,
        *,
        compile_cache: str | None = None,
        on_abort: Callable[[Outcome], None] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._claimed = False
        self.done = threading.Event()
        self.outcome: Outcome | None = None
        self.compile_cache = compile_cache
        self._on_abort = on_abort

    def abort(self, outcome: Outcome) -> None:
        if self._on_abort is not None:
            self._on_abort(outcome)
        self.finish(outcome)

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
        self.linger()

    def linger(self) -> None:
        """Reads and drops what the peer still sends, briefly, before the socket is closed.

        Closing a socket with unread request bytes makes the kernel reset the
        connection, and the reset can destroy the error response before the
        client reads it. So the Keep stops writing, then drains the rest of
        the request for a bounded time and amount.
        """
        with contextlib.suppress(OSError, ssl.SSLError):
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            drained = 0
            while drained < MAX_LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                data = self.sock.recv(64 * 1024)
                if not data:
                    return
                drained += len(data)


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
    workdir = tempfile.mkdtemp(prefix="arx-workload-")
    PRIVATE_DIRS.add(workdir)
    try:
        exit_ = _receive_and_run(conn, workdir, gate, on_started)
    except _Rejected as exc:
        conn.respond_error(exc.status, exc.code, exc.message)
        gate.finish(Outcome(KeepExit(status="failed", message=exc.message)))
        return
    except (OSError, h11.RemoteProtocolError, ssl.SSLError) as exc:
        message = f"the client disconnected before the workload arrived ({type(exc).__name__})"
        gate.finish(Outcome(KeepExit(status="failed", message=message)))
        return
    finally:
        remove_tree(workdir)
    gate.finish(Outcome(exit_))


# The workload's private directories that exist now, so that a signal
# handler can remove them when the Keep is stopped from outside.
PRIVATE_DIRS: set[str] = set()


def remove_private_dirs() -> None:
    for path in list(PRIVATE_DIRS):
        remove_tree(path)


def remove_tree(path: str) -> None:
    """Removes the workload's private directory, including what it made read-only."""
    PRIVATE_DIRS.discard(path)
    if not os.path.lexists(path):
        return

    def make_writable_and_retry(func: Callable[..., object], target: str, _exc: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(target), 0o700)
            if os.path.isdir(target) and not os.path.islink(target):
                os.chmod(target, 0o700)
            func(target)

    shutil.rmtree(path, onerror=make_writable_and_retry)


class _Body:
    """The request body as it arrives: hashed, bounded, split into frames."""

    def __init__(self, conn: _Conn) -> None:
        self.conn = conn
        self.sha256 = hashlib.sha256()
        self.total = 0
        self.frames = FrameDecoder(limit=MAX_WORKLOAD_HEADER_BYTES)
        self.ended = False

    def next_frame(self) -> Message | None:
        """The next frame, or ``None`` at the end of the body."""
        while True:
            msg = self.frames.next_message()
            if msg is not None:
                return msg
            if self.ended:
                if self.frames.pending:
                    raise _Rejected(400, "bad_request", "the request ends inside a frame")
                return None
            event = self.conn.next_event()
            if isinstance(event, h11.Data):
                self.total += len(event.data)
                if self.total > self.conn.max_body:
                    raise _Rejected(
                        413,
                        "workload_too_large",
                        f"the workload exceeds this Keep's limit of {self.conn.max_body} bytes",
                    )
                self.sha256.update(event.data)
                self.frames.feed(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self.ended = True
            elif isinstance(event, h11.ConnectionClosed):
                raise OSError("connection closed mid-upload")

    def copy_to(self, out: BinaryIO, size: int, what: str) -> None:
        """Copies the next ``size`` bytes, carried in ``Chunk`` frames, to ``out``."""
        left = size
        while left > 0:
            try:
                msg = self.next_frame()
            except ProtocolError as exc:
                raise _Rejected(400, exc.code, f"invalid workload request: {exc.message}") from exc
            if not isinstance(msg, Chunk):
                raise _Rejected(
                    400, "bad_request", f"the request ends before all {size} bytes of {what}"
                )
            if len(msg.data) > left:
                raise _Rejected(400, "bad_request", f"more bytes than announced for {what}")
            out.write(msg.data)
            left -= len(msg.data)


def _receive(conn: _Conn, workdir: str) -> tuple[Workload, _Body, str, str | None, list[str]]:
    """Reads the whole request into ``workdir``: the module, stdin and each mount's files."""
    body = _Body(conn)
    try:
        header = body.next_frame()
    except ProtocolError as exc:
        raise _Rejected(400, exc.code, f"invalid workload request: {exc.message}") from exc
    if not isinstance(header, Workload):
        raise _Rejected(400, "bad_request", "the request must start with a workload frame")
    if header.total_bytes() > conn.max_body:
        raise _Rejected(
            413,
            "workload_too_large",
            f"the workload is {header.total_bytes()} bytes; this Keep accepts at most "
            f"{conn.max_body}",
        )
    module_path = os.path.join(workdir, "module.wasm")
    with open(module_path, "wb") as f:
        body.copy_to(f, header.module_size, "the module")
    stdin_path = None
    if header.stdin_size is not None:
        stdin_path = os.path.join(workdir, "stdin")
        with open(stdin_path, "wb") as f:
            body.copy_to(f, header.stdin_size, "stdin")
    mount_dirs = []
    for index in range(len(header.mounts)):
        path = os.path.join(workdir, f"mount{index}")
        os.mkdir(path, 0o700)
        mount_dirs.append(path)
    for entry in header.entries:
        target = os.path.join(mount_dirs[entry.mount], *entry.path.split("/"))
        parent = os.path.dirname(target)
        if not os.path.isdir(parent) or os.path.islink(parent):
            raise _Rejected(
                400, "bad_request", f"{entry.path!r} comes before its directory in the list"
            )
        if entry.kind == "dir":
            os.mkdir(target, 0o700)
            continue
        # O_EXCL: an entry never replaces one that came before it.
        with open(target, "xb") as f:
            body.copy_to(f, entry.size, entry.path)
    try:
        trailing = body.next_frame()
    except ProtocolError as exc:
        raise _Rejected(400, exc.code, f"invalid workload request: {exc.message}") from exc
    if trailing is not None:
        raise _Rejected(400, "bad_request", "the request has frames beyond what it announced")
    return header, body, module_path, stdin_path, mount_dirs


def _receive_and_run(
    conn: _Conn, workdir: str, gate: WorkloadGate, on_started: Callable[[], None]
) -> KeepExit:
    workload, body, module_path, stdin_path, mount_dirs = _receive(conn, workdir)
    digest = body.sha256.digest()
    with open(module_path, "rb") as f:
        module_bytes = f.read()
    os.unlink(module_path)
    settings = runner.EngineSettings(fuel=workload.limits.fuel is not None)
    try:
        compiled = runner.compile_module(
            module_bytes, settings=settings, cache_dir=gate.compile_cache
        )
    except WorkloadError as exc:
        raise _Rejected(422, "invalid_module", exc.message) from exc
    del module_bytes

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
    session = _RunSession(conn, gate, digest, workload.limits.output_bytes, workdir)

    preopens = [
        runner.Preopen(host=path, guest=mount.guest, writable=mount.writable)
        for mount, path in zip(workload.mounts, mount_dirs, strict=True)
    ]
    try:
        exit_ = runner.run(
            compiled,
            argv=[workload.program, *workload.args],
            env=workload.env,
            sink=session.output,
            stdin_path=stdin_path,
            preopens=preopens,
            limits=workload.limits,
            on_start=lambda: session.start_watching(workload.limits.wall_time_ms),
        )
    except ArxError as exc:
        exit_ = KeepExit(status="failed", message=exc.message)
    if not session.finish():
        # A limit ended the workload first; the abort path reports and exits.
        threading.Event().wait()
    archives = []
    for index, (mount, path) in enumerate(zip(workload.mounts, mount_dirs, strict=True)):
        if mount.results:
            archives.append(session.send_archive(index, path))
    # Before the result: once the client has it, it deletes the Keep, and
    # nothing after this line is sure to run.
    remove_tree(workdir)
    session.send_result(exit_, tuple(archives))
    return exit_


class _ArchiveStream:
    """A write-only file for ``tarfile`` that sends what it gets as ``ArchiveChunk`` frames."""

    def __init__(self, conn: _Conn, mount: int) -> None:
        self.conn = conn
        self.mount = mount
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._pending = bytearray()

    def write(self, data: bytes) -> int:
        self._pending += data
        while len(self._pending) >= MAX_OUTPUT_CHUNK:
            self._send(bytes(self._pending[:MAX_OUTPUT_CHUNK]))
            del self._pending[:MAX_OUTPUT_CHUNK]
        return len(data)

    def flush(self) -> None:
        if self._pending:
            self._send(bytes(self._pending))
            self._pending.clear()

    def _send(self, data: bytes) -> None:
        self.sha256.update(data)
        self.size += len(data)
        self.conn.send(h11.Data(data=encode_frame(ArchiveChunk(mount=self.mount, data=data))))


# How often a running Keep checks that its client is still connected.
PEER_WATCH_INTERVAL = 0.25


class _RunSession:
    """The response while the workload runs: output, limits outside the engine, the end.

    Exactly one of two paths ends the response: the workload returns
    (``finish`` then ``send_result``), or a limit enforced here fires first
    (wall time, output size), in which case ``_abort`` sends the result with
    that status and ends the Keep at once, since a running Wasm call cannot
    be stopped from Python without an engine-level check in the workload.
    """

    def __init__(
        self, conn: _Conn, gate: WorkloadGate, digest: bytes, output_limit: int | None, workdir: str
    ) -> None:
        self.conn = conn
        self.gate = gate
        self.digest = digest
        self.output_limit = output_limit
        self.workdir = workdir
        self.counts: dict[StreamName, int] = {"stdout": 0, "stderr": 0}
        self._lock = threading.Lock()
        self._done = False
        self._timer: threading.Timer | None = None

    def start_watching(self, wall_time_ms: int | None) -> None:
        """Starts what may end the run from outside: the client leaving, the wall clock."""
        threading.Thread(target=self._watch_peer, name="peer-watch", daemon=True).start()
        if wall_time_ms is None:
            return
        seconds = wall_time_ms / 1000
        message = f"the workload ran longer than its wall-time limit of {seconds:g} s"
        self._timer = threading.Timer(seconds, self._abort, args=("timeout", message))
        self._timer.daemon = True
        self._timer.start()

    def _watch_peer(self) -> None:
        """Ends the Keep when its client goes away while the workload runs.

        The client sends nothing after its request, so any readable event on
        the connection (end of file, a reset, a TLS close alert) means it left;
        nobody would receive the output, and the Keep would hold its quota for
        as long as the workload runs. The check peeks at the TCP socket without
        consuming anything, so it never competes with TLS for bytes.
        """
        try:
            watcher = socket.socket(fileno=os.dup(self.conn.sock.fileno()))
        except OSError:
            return
        with watcher:
            while not self._done:
                try:
                    readable, _, _ = select.select([watcher], [], [], PEER_WATCH_INTERVAL)
                    if not readable:
                        continue
                    watcher.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                self._abort("killed", "the client disconnected while the workload ran")
                return

    def output(self, stream: StreamName, data: bytes) -> None:
        with self._lock:
            if self._done:
                return
            if self.output_limit is not None:
                room = self.output_limit - self.counts["stdout"] - self.counts["stderr"]
                if len(data) > room:
                    if room > 0:
                        self._send_output(stream, data[:room])
                    over = True
                else:
                    over = False
                if over:
                    message = (
                        f"the workload wrote more than its output limit of "
                        f"{self.output_limit} bytes; output stops there"
                    )
                    self._abort_locked("output_limit", message)
                    return
            self._send_output(stream, data)

    def _send_output(self, stream: StreamName, data: bytes) -> None:
        self.counts[stream] += len(data)
        self.conn.send(h11.Data(data=encode_frame(Output(stream=stream, data=data))))

    def finish(self) -> bool:
        """Claims the end for the normal path; ``False`` if a limit already ended the run."""
        with self._lock:
            if self._done:
                return False
            self._done = True
        if self._timer is not None:
            self._timer.cancel()
        return True

    def send_archive(self, index: int, path: str) -> ArchiveInfo:
        """Sends a writable mount's contents as a tar archive, in chunks, as it is made.

        The archive is streamed, never written to disk, so a large result
        does not need its size again in the Keep's private directory.
        """
        out = _ArchiveStream(self.conn, index)
        # tarfile's stream mode only calls write(); the cast says so to mypy.
        stream = cast("IO[bytes]", out)
        with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(os.listdir(path)):
                tar.add(os.path.join(path, name), arcname=name)
        out.flush()
        return ArchiveInfo(mount=index, size=out.size, sha256=out.sha256.digest())

    def send_result(self, exit_: KeepExit, archives: tuple[ArchiveInfo, ...] = ()) -> None:
        result = Result(
            exit=exit_,
            workload_sha256=self.digest,
            stdout_bytes=self.counts["stdout"],
            stderr_bytes=self.counts["stderr"],
            archives=archives,
        )
        self.conn.send(h11.Data(data=encode_frame(result)), h11.EndOfMessage())

    def _abort(self, status: ExitStatus, message: str) -> None:
        with self._lock:
            if self._done:
                return
            self._abort_locked(status, message)

    def _abort_locked(self, status: ExitStatus, message: str) -> None:
        self._done = True
        exit_ = KeepExit(status=status, message=message)
        self.send_result(exit_)
        # The workload is still running in this process; only ending the
        # process stops it. Writable mounts are discarded with it.
        remove_tree(self.workdir)
        self.gate.abort(Outcome(exit_))


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
