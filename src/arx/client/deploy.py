"""The client side of a deployment: the ten steps, trusting nothing unverified.

1. create a Keep; 4. attest it with a fresh nonce; 5. check the answer (and,
for attested backends, verify the evidence and its binding to the Keep's HPKE
key); 6. seal a one-use TLS key to that attested key; 9. connect over TLS,
accept only the certificate that carries that key, send the workload; 10.
relay its output and return how it ended. The Keep is deleted afterwards,
whatever happened.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import h11

from arx import crypto
from arx.client.api import KeepmgrClient
from arx.client.trust import DeployPolicy, check_backend_allowed, verify_answer
from arx.client.workload import Upload
from arx.errors import (
    ArxError,
    PinMismatchError,
    RemoteError,
    TransportError,
    WorkloadError,
)
from arx.protocol.messages import (
    NONCE_LENGTH,
    ArchiveChunk,
    AttestRequest,
    ErrorBody,
    FrameDecoder,
    HpkeSuiteName,
    KeepExit,
    KeepInfo,
    Output,
    ProvisionRequest,
    Result,
    StreamName,
)

# Connecting to the Keep's port and finishing the TLS handshake.
CONNECT_TIMEOUT = 15.0
# Error bodies from the Keep are single small messages.
MAX_ERROR_BODY = 64 * 1024
# The upload is written to the TLS socket in pieces of about this size.
SEND_BATCH_BYTES = 1024 * 1024

OutputSink = Callable[[StreamName, bytes], None]
ArchiveSink = Callable[[int, bytes], None]
Progress = Callable[[str], None]
SentSink = Callable[[int, int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeployOptions:
    backend: str
    policy: DeployPolicy = field(default_factory=DeployPolicy)
    allow_insecure: bool = False
    hpke_suite: HpkeSuiteName = "x25519"
    # How long to keep asking for a Keep while the host refuses at a limit
    # that may free up (429/503 with Retry-After); 0 fails at the first refusal.
    wait: float = 0.0


def deploy(
    client: KeepmgrClient,
    upload: Upload,
    options: DeployOptions,
    *,
    on_output: OutputSink,
    progress: Progress = lambda _msg: None,
    notice: Progress | None = None,
    on_sent: SentSink = lambda _done, _total: None,
) -> Result:
    """Runs the steps.

    ``progress`` gets each step as it starts, ``notice`` what the user should
    see without asking (waits), ``on_sent`` the upload's bytes so far.
    """
    check_backend_allowed(options.backend, options.policy, allow_insecure=options.allow_insecure)
    progress(f"creating a {options.backend} Keep")
    keep = create_waiting(client, options, notice=notice or progress)
    try:
        nonce = secrets.token_bytes(NONCE_LENGTH)
        progress(f"attesting Keep {keep.id}")
        answer = client.attest(keep.id, AttestRequest(nonce=nonce, hpke_suite=options.hpke_suite))
        # What the evidence must carry, from what the client asked for and
        # the key it was given: a swapped key, an old nonce or another Keep's
        # evidence all change it.
        report_data = crypto.report_data(
            backend=options.backend,
            keep_id=keep.id,
            nonce=nonce,
            suite=options.hpke_suite,
            public_key=answer.hpke_public_key,
        )
        claims = verify_answer(
            backend=options.backend,
            suite=options.hpke_suite,
            report_data=report_data,
            answer=answer,
            policy=options.policy,
            allow_insecure=options.allow_insecure,
            now=datetime.now(UTC),
        )
        if claims is None:
            progress("the Keep presented no evidence (nil backend, allowed by --insecure)")
        else:
            progress(
                f"verified {answer.evidence_kind} evidence signed by {claims.signer}: "
                f"measurement {claims.measurement.hex()}"
            )
        tls_key, tls_key_der = crypto.make_tls_key()
        sealed = crypto.seal(
            options.hpke_suite,
            answer.hpke_public_key,
            tls_key_der,
            crypto.provision_info(report_data),
        )
        progress("provisioning the Keep's TLS key")
        provisioned = client.provision(keep.id, ProvisionRequest(sealed_key=sealed))
        if upload.total_bytes > provisioned.max_workload_bytes:
            raise WorkloadError(
                f"the workload is {upload.total_bytes} bytes; this Keep accepts at most "
                f"{provisioned.max_workload_bytes}"
            )
        progress(f"sending the workload to port {provisioned.workload_port}")
        try:
            return send_workload(
                host=client.address.host,
                port=provisioned.workload_port,
                expected_spki=crypto.spki(tls_key.public_key()),
                proof=crypto.key_proof(tls_key_der),
                body=upload.frames(),
                on_output=on_output,
                on_archive=upload.results.write,
                progress=progress,
                on_sent=lambda done: on_sent(done, upload.total_bytes),
            )
        except TransportError as exc:
            reason = _host_reported_end(client, keep.id)
            if reason is None:
                raise
            raise TransportError(f"{exc.message}; the host reports {reason}") from exc
    finally:
        with contextlib.suppress(ArxError):
            client.delete(keep.id)


# How long the client waits for keepmgr to learn how a Keep ended after the
# Keep's connection broke (keepmgr reaps the Keep within a fraction of that).
HOST_REPORT_WAIT = 2.0


def _host_reported_end(client: KeepmgrClient, keep_id: str) -> str | None:
    """What keepmgr says ended a Keep whose connection broke (out of memory, deleted...).

    keepmgr is not trusted, so this only explains a failure; it never turns
    one into a success.
    """
    deadline = time.monotonic() + HOST_REPORT_WAIT
    while True:
        try:
            info = client.show(keep_id)
        except ArxError:
            return None
        if info.exit is not None and info.state in ("exited", "failed"):
            detail = info.exit.message or (
                f"exit code {info.exit.code}" if info.exit.code is not None else ""
            )
            return f"the Keep {info.exit.status}" + (f" ({detail})" if detail else "")
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)


def _pinned_connection(host: str, port: int, expected_spki: bytes) -> ssl.SSLSocket:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    # No CA can vouch for a Keep; the pin below is the whole of the trust:
    # only a peer holding the key the client made and sealed to the attested
    # Keep can finish a TLS 1.3 handshake with that key's certificate.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        raw = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise TransportError(f"cannot connect to the Keep at {host}:{port}: {exc}") from exc
    try:
        sock = context.wrap_socket(raw, server_hostname=None)
    except (OSError, ssl.SSLError) as exc:
        raw.close()
        raise TransportError(f"TLS handshake with the Keep failed: {exc}") from exc
    peer = sock.getpeercert(binary_form=True)
    if peer is None or crypto.certificate_spki(peer) != expected_spki:
        sock.close()
        raise PinMismatchError(
            "the TLS peer does not hold the key provisioned to the attested Keep; nothing was sent"
        )
    return sock


def send_workload(
    *,
    host: str,
    port: int,
    expected_spki: bytes,
    proof: str,
    body: Iterable[bytes],
    on_output: OutputSink,
    on_archive: ArchiveSink = lambda _mount, _data: None,
    progress: Progress = lambda _msg: None,
    on_sent: Callable[[int], None] = lambda _done: None,
) -> Result:
    """Streams ``body`` (chunked: its size need not be known) and relays what comes back.

    The Keep reports the SHA-256 of the body it received; a result whose
    digest differs from that of the bytes sent here is refused.
    """
    sock = _pinned_connection(host, port, expected_spki)
    conn = h11.Connection(h11.CLIENT)
    sent = hashlib.sha256()
    try:
        request = h11.Request(
            method="POST",
            target=crypto.WORKLOAD_PATH,
            headers=[
                ("host", f"{host}:{port}"),
                ("content-type", "application/cbor-seq"),
                ("transfer-encoding", "chunked"),
                (crypto.KEY_PROOF_HEADER.decode(), proof),
            ],
        )
        try:
            sock.sendall(conn.send(request) or b"")
            pending: list[bytes] = []
            pending_size = 0
            total_sent = 0
            for frame in body:
                sent.update(frame)
                pending.append(frame)
                pending_size += len(frame)
                # Frames are small; sending them in batches of about 1 MiB
                # keeps the per-call overhead of TLS records low.
                if pending_size >= SEND_BATCH_BYTES:
                    sock.sendall(conn.send(h11.Data(data=b"".join(pending))) or b"")
                    total_sent += pending_size
                    on_sent(total_sent)
                    pending, pending_size = [], 0
            if pending:
                sock.sendall(conn.send(h11.Data(data=b"".join(pending))) or b"")
                on_sent(total_sent + pending_size)
            sock.sendall(conn.send(h11.EndOfMessage()) or b"")
            # The Keep answers once it has compiled (or loaded) the module.
            progress("waiting for the Keep to start the workload")
        except OSError as exc:
            # The Keep may have refused the request before reading all of it;
            # its answer, if it sent one, says why better than the broken pipe.
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                return _read_result(sock, conn, on_output, on_archive, sent.digest())
            except (OSError, ssl.SSLError, h11.ProtocolError):
                raise exc from None
        # The workload may run for a long time without output.
        sock.settimeout(None)
        return _read_result(sock, conn, on_output, on_archive, sent.digest(), progress=progress)
    except h11.ProtocolError as exc:
        raise TransportError(
            "the connection to the Keep broke: it closed before it finished answering"
        ) from exc
    except (OSError, ssl.SSLError) as exc:
        raise TransportError(f"the connection to the Keep broke: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            sock.close()


def _next_event(sock: ssl.SSLSocket, conn: h11.Connection) -> h11.Event:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(64 * 1024))
            continue
        assert not isinstance(event, type)
        return event


def _read_result(
    sock: ssl.SSLSocket,
    conn: h11.Connection,
    on_output: OutputSink,
    on_archive: ArchiveSink,
    sent_sha256: bytes,
    *,
    progress: Progress = lambda _msg: None,
) -> Result:
    response = _next_event(sock, conn)
    if not isinstance(response, h11.Response):
        raise TransportError("the Keep closed the connection without answering")
    if response.status_code == 200:
        progress("the workload is running")
    if response.status_code != 200:
        data = b""
        while isinstance(event := _next_event(sock, conn), h11.Data):
            data += event.data
            if len(data) > MAX_ERROR_BODY:
                break
        try:
            error = ErrorBody.from_cbor(data)
        except ArxError:
            raise RemoteError(
                "http_error", f"the Keep answered HTTP {response.status_code}"
            ) from None
        raise RemoteError(error.error, error.message, status=response.status_code)
    frames = FrameDecoder()
    received = {"stdout": 0, "stderr": 0}
    while True:
        event = _next_event(sock, conn)
        if isinstance(event, h11.Data):
            frames.feed(bytes(event.data))
            while (msg := frames.next_message()) is not None:
                if isinstance(msg, Output):
                    received[msg.stream] += len(msg.data)
                    on_output(msg.stream, msg.data)
                elif isinstance(msg, ArchiveChunk):
                    on_archive(msg.mount, msg.data)
                elif isinstance(msg, Result):
                    if msg.workload_sha256 != sent_sha256:
                        raise TransportError(
                            "the Keep reports a different workload digest than the one sent "
                            f"({msg.workload_sha256.hex()} vs {sent_sha256.hex()})"
                        )
                    if (msg.stdout_bytes, msg.stderr_bytes) != (
                        received["stdout"],
                        received["stderr"],
                    ):
                        raise TransportError(
                            f"output went missing: the Keep sent {msg.stdout_bytes}+"
                            f"{msg.stderr_bytes} bytes of stdout+stderr, "
                            f"{received['stdout']}+{received['stderr']} arrived"
                        )
                    return msg
                else:
                    raise TransportError(f"unexpected {type(msg).__name__} in the workload output")
        else:
            raise TransportError(
                "the Keep closed the connection before reporting how the workload ended"
            )


# How each way a workload can end becomes the exit status of ``arx run`` and
# ``arx deploy`` (README.md and docs/workloads.md list them). Limits follow
# the shell conventions for the matching resource: 124 is what timeout(1)
# exits with; 128 + signal for the others, as if the kernel had enforced
# them: SIGKILL (as the OOM killer does) for memory, SIGXCPU for the CPU
# budget, SIGXFSZ for output size. A trap is 128 + SIGABRT, as in wasmtime's
# own CLI. 125 is arx's own failure.
EXIT_TRAPPED = 134
EXIT_TIMEOUT = 124
EXIT_MEMORY_LIMIT = 137
EXIT_OUT_OF_FUEL = 152
EXIT_OUTPUT_LIMIT = 153
EXIT_ARX_FAILED = 125


def exit_code(result_exit: KeepExit) -> tuple[int, str | None]:
    """The process exit code for a workload's end, and a line to print when it is not plain."""
    status = result_exit.status
    if status == "exited" and result_exit.code is not None:
        if 0 <= result_exit.code <= 255:
            return result_exit.code, None
        return (
            EXIT_ARX_FAILED,
            f"the workload exited with {result_exit.code}, which is not an exit status",
        )
    if status == "trapped":
        return EXIT_TRAPPED, f"the workload trapped: {result_exit.message}"
    if status == "timeout":
        return EXIT_TIMEOUT, f"timeout: {result_exit.message}"
    if status == "memory_limit":
        return EXIT_MEMORY_LIMIT, f"memory limit: {result_exit.message}"
    if status == "out_of_fuel":
        return EXIT_OUT_OF_FUEL, f"out of fuel: {result_exit.message}"
    if status == "output_limit":
        return EXIT_OUTPUT_LIMIT, f"output limit: {result_exit.message}"
    return EXIT_ARX_FAILED, f"the workload {status}: {result_exit.message}"


# Waiting less than this between attempts would only add load to a host that
# said it is at a limit (a Retry-After of 0 is read as this).
MIN_RETRY_PAUSE = 1.0


def create_waiting(
    client: KeepmgrClient,
    options: DeployOptions,
    *,
    notice: Progress,
) -> KeepInfo:
    """Creates the Keep, asking again within ``options.wait`` while the host refuses at a limit.

    Only the create step is repeated: a refused create made nothing, so
    asking again cannot make two Keeps. Any other error, a refusal without
    ``Retry-After``, or a refusal once the time is up is raised as it came.
    """
    deadline = time.monotonic() + options.wait
    while True:
        try:
            return client.create(options.backend)
        except RemoteError as exc:
            left = deadline - time.monotonic()
            if exc.retry_after is None or left <= 0:
                raise
            pause = min(max(float(exc.retry_after), MIN_RETRY_PAUSE), left)
            notice(f"waiting {round(pause, 1):g} s for a Keep, then asking again: {exc.message}")
            time.sleep(pause)
