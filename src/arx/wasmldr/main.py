"""wasmldr: the loader inside a Keep (steps 3, 4, 7, 8 and 10).

Started by keepldr with the control channel on stdin/stdout. It makes fresh
HPKE key pairs, answers attestation requests with evidence that binds its key
(obtained from the platform through keepldr), opens the sealed TLS key, serves
the workload over HTTPS, and reports how the workload ended. It then exits:
a Keep runs one workload.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time

from cryptography.hazmat.primitives import serialization

from arx import crypto, procutil
from arx.errors import ArxError
from arx.keepldr.backends import add_launch_arguments
from arx.protocol.channel import Channel, private_stdio_channel
from arx.protocol.messages import (
    AttestRequest,
    AttestResponse,
    ErrorBody,
    EvidenceReply,
    EvidenceRequest,
    Exited,
    HpkeSuiteName,
    KeepExit,
    ProvisionRequest,
    ProvisionResponse,
    Ready,
    WorkloadStarted,
)
from arx.wasmldr import privileges, server
from arx.wasmldr.readonly import make_read_only_except


class KeepSession:
    """The control side of one Keep: attestation and provisioning."""

    def __init__(self, channel: Channel, backend: str, keep_id: str) -> None:
        self.channel = channel
        self.backend = backend
        self.keep_id = keep_id
        self.keys = crypto.KeepKeys.generate()
        self._attested: tuple[HpkeSuiteName, bytes] | None = None

    def attest(self, request: AttestRequest) -> AttestResponse:
        public_key = self.keys.public_key(request.hpke_suite)
        report_data = crypto.report_data(
            backend=self.backend,
            keep_id=self.keep_id,
            nonce=request.nonce,
            suite=request.hpke_suite,
            public_key=public_key,
        )
        self.channel.send(EvidenceRequest(report_data=report_data))
        reply = self.channel.receive()
        if not isinstance(reply, EvidenceReply):
            raise ArxError("the platform did not answer the evidence request")
        self._attested = (request.hpke_suite, report_data)
        return AttestResponse(
            backend=self.backend,
            hpke_suite=request.hpke_suite,
            hpke_public_key=public_key,
            evidence_kind=reply.evidence_kind,
            evidence=reply.evidence,
            certificates=reply.certificates,
        )

    def open_tls_key(self, request: ProvisionRequest) -> bytes:
        if self._attested is None:
            raise ArxError("the Keep must be attested before it is provisioned")
        suite, report_data = self._attested
        return self.keys.open(suite, request.sealed_key, crypto.provision_info(report_data))


def workload_port(fd: int | None) -> socket.socket:
    """The workload port keepldr bound and handed over, not yet listening.

    The socket belongs to the host's network even where wasmldr runs in a
    network namespace of its own, so clients reach it there while wasmldr
    can reach nothing. ``serve`` starts listening only once the Keep is
    provisioned; before, a connection to the port is refused.
    """
    if fd is None:
        raise ArxError("wasmldr needs the workload port from keepldr (--listen-fd)")
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ArxError(f"--listen-fd {fd} is not a socket: {exc.strerror}") from exc
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
        sock.close()
        raise ArxError(f"--listen-fd {fd} is not a TCP socket")
    return sock


def serve(args: argparse.Namespace, channel: Channel) -> int:
    listener = workload_port(args.listen_fd)
    session = KeepSession(channel, args.backend, args.keep_id)
    channel.send(Ready())
    tls_key_der: bytes | None = None
    while tls_key_der is None:
        msg = channel.receive()
        if msg is None:
            return 0
        try:
            if isinstance(msg, AttestRequest):
                channel.send(session.attest(msg))
            elif isinstance(msg, ProvisionRequest):
                tls_key_der = session.open_tls_key(msg)
            else:
                channel.send(ErrorBody(error="unexpected", message=f"unexpected {type(msg)}"))
        except ArxError as exc:
            channel.send(ErrorBody(error=exc.code, message=exc.message))

    workdir = tempfile.mkdtemp(prefix="arx-keep-")
    try:
        key = crypto.load_tls_key(tls_key_der)
        cert_pem = crypto.self_signed_certificate(key, f"arx keep {args.keep_id}")
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        context = server.server_context(cert_pem, key_pem, workdir)
    except ArxError as exc:
        channel.send(ErrorBody(error=exc.code, message=exc.message))
        return 1
    finally:
        os.rmdir(workdir)

    listener.listen(server.MAX_CONNECTIONS)
    channel.send(
        ProvisionResponse(
            workload_port=listener.getsockname()[1], max_workload_bytes=args.max_workload_bytes
        )
    )
    exit_ = _accept_workload(
        listener,
        context,
        tls_key_der,
        channel,
        max_body=args.max_workload_bytes,
        compile_cache=args.compile_cache,
        wait=args.workload_wait,
    )
    channel.send(Exited(exit=exit_))
    return 0


def _end_keep(channel: Channel, outcome: server.Outcome) -> None:
    """A limit stopped a workload that is still running: report, then end the process.

    The client already has the result. A Wasm call in progress cannot be
    interrupted from Python unless the engine checks epochs, which costs every
    workload; ending the Keep's process is immediate and costs nothing.
    """
    try:
        channel.send(Exited(exit=outcome.exit))
    finally:
        os._exit(0)


def _accept_workload(
    listener: socket.socket,
    context: ssl.SSLContext,
    tls_key_der: bytes,
    channel: Channel,
    *,
    max_body: int,
    compile_cache: str | None,
    wait: float,
) -> KeepExit:
    gate = server.WorkloadGate(
        compile_cache=compile_cache, on_abort=lambda outcome: _end_keep(channel, outcome)
    )
    proof = crypto.key_proof(tls_key_der)
    deadline = time.monotonic() + wait
    slots = threading.BoundedSemaphore(server.MAX_CONNECTIONS)

    # Each finished connection writes a byte here, so that the loop below
    # sees a finished workload at once instead of at its next timeout: the
    # Keep reports its exit, and keepmgr frees it, without delay. The pipe
    # stays open until the process ends, since handlers of other connections
    # may still be finishing.
    wake_r, wake_w = os.pipe()

    def handle(conn: socket.socket) -> None:
        try:
            server.serve_connection(
                conn,
                context,
                expected_proof=proof,
                gate=gate,
                max_body=max_body,
                on_started=lambda: channel.send(WorkloadStarted()),
            )
        finally:
            slots.release()
            os.write(wake_w, b"\0")

    listener.setblocking(False)
    try:
        while not gate.done.is_set():
            left = deadline - time.monotonic()
            # Past the deadline with nobody having claimed the Keep, claim it
            # ourselves so that no late request can start a workload, and end.
            if left <= 0 and gate.claim():
                return KeepExit(
                    status="failed",
                    message=f"no workload arrived within {wait:g} s",
                )
            # Once a workload has the Keep, only the wake-up matters: no timeout.
            ready, _, _ = select.select(
                [listener.fileno(), wake_r], [], [], left if left > 0 else None
            )
            if wake_r in ready:
                os.read(wake_r, 4096)
            if listener.fileno() not in ready:
                continue
            try:
                conn, _addr = listener.accept()
            except (BlockingIOError, ConnectionAbortedError):
                continue
            conn.setblocking(True)
            if not slots.acquire(blocking=False):
                conn.close()  # Too many connections at once; the client will retry.
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
    finally:
        listener.close()
    assert gate.outcome is not None
    return gate.outcome.exit


def _on_sigterm(signum: int, _frame: object) -> None:
    try:
        server.remove_private_dirs()
    finally:
        os._exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="arx-wasmldr", description=__doc__)
    add_launch_arguments(parser)
    args = parser.parse_args(argv)
    # keepmgr stops a Keep with SIGTERM to its process group (then SIGKILL
    # after a grace period), and keepldr's death sends SIGTERM too: either
    # way, remove the workload's inputs and outputs, then exit at once.
    signal.signal(signal.SIGTERM, _on_sigterm)
    procutil.die_with_parent(args.parent_pid, signal.SIGTERM)
    channel = private_stdio_channel()
    try:
        if args.read_only_root:
            make_read_only_except(_writable_dirs(args))
        # After the mounts, which need CAP_SYS_ADMIN in the Keep's namespace,
        # and before anything from a client is read.
        privileges.drop_all()
        return serve(args, channel)
    except ArxError as exc:
        print(f"wasmldr: {exc.message}", file=sys.stderr)
        return 1


def _writable_dirs(args: argparse.Namespace) -> list[str]:
    """What wasmldr writes: the Keep's TMPDIR, and the compile cache if there is one."""
    dirs = [tempfile.gettempdir()]
    if args.compile_cache is not None and os.path.isdir(args.compile_cache):
        dirs.append(args.compile_cache)
    return dirs


if __name__ == "__main__":
    raise SystemExit(main())
