"""Bad input at each boundary gets a precise error and leaves keepmgr serving."""

from __future__ import annotations

import http.client
import secrets
import socket
import ssl
import threading
import time
import urllib.parse

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from arx import crypto
from arx.client.api import KeepmgrClient
from arx.client.deploy import send_workload
from arx.errors import PinMismatchError, RemoteError
from arx.protocol.messages import (
    AttestRequest,
    Chunk,
    ErrorBody,
    InputEntry,
    Mount,
    ProvisionRequest,
    Workload,
    encode_frame,
)
from tests.conftest import EXAMPLES, Keepmgr, marked_pids


def raw(mgr: Keepmgr, method: str, path: str, body: bytes | None = None,
        content_type: str = "application/cbor") -> tuple[int, ErrorBody | bytes]:  # fmt: skip
    parts = urllib.parse.urlsplit(mgr.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Content-Type": content_type} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    if response.status >= 400:
        assert response.getheader("Content-Type") == "application/cbor"
        return response.status, ErrorBody.from_cbor(data)
    return response.status, data


BAD_BODIES = [
    ("truncated", bytes.fromhex("a1676261636b656e64636e69"), 400, "bad_cbor"),
    ("trailing", bytes.fromhex("a1676261636b656e64636e696c00"), 400, "bad_cbor"),
    ("indefinite map", bytes.fromhex("bf676261636b656e64636e696cff"), 400, "bad_cbor"),
    ("tag 35 regex", bytes.fromhex("a1676261636b656e64d82363612a62"), 400, "bad_cbor"),
    (
        "duplicate keys",
        bytes.fromhex("a2676261636b656e64636e696c676261636b656e64636e696c"),
        400,
        "bad_cbor",
    ),
    ("non-shortest int", bytes.fromhex("a1676261636b656e641800"), 400, "bad_cbor"),
    ("float", bytes.fromhex("a1676261636b656e64f93c00"), 400, "bad_cbor"),
    ("deep nesting", b"\x81" * 40 + b"\x00", 400, "bad_cbor"),
    ("not a map", cbor2.dumps([1, 2]), 400, "bad_message"),
    ("unknown field", cbor2.dumps({"backend": "nil", "extra": 1}), 400, "bad_message"),
    ("wrong type", cbor2.dumps({"backend": 7}), 400, "bad_message"),
    ("missing field", cbor2.dumps({}), 400, "bad_message"),
    ("unknown backend", cbor2.dumps({"backend": "quantum"}), 422, "backend"),
    ("oversized", cbor2.dumps({"backend": "x" * 100_000}), 413, "too_large"),
]


@pytest.mark.parametrize(
    ("name", "body", "status", "code"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
def test_create_with_bad_body(
    keepmgr: Keepmgr, name: str, body: bytes, status: int, code: str
) -> None:
    got_status, error = raw(keepmgr, "POST", "/v1/keeps", body)
    assert (got_status, getattr(error, "error", None)) == (status, code), error
    # keepmgr still serves, and nothing was created.
    assert KeepmgrClient(keepmgr.url).list().keeps == ()


def test_wrong_content_type_route_and_method(keepmgr: Keepmgr) -> None:
    status, error = raw(keepmgr, "POST", "/v1/keeps", b"{}", content_type="application/json")
    assert status == 415
    assert isinstance(error, ErrorBody)
    status, error = raw(keepmgr, "GET", "/v1/nothing")
    assert status == 404
    assert isinstance(error, ErrorBody)
    status, error = raw(keepmgr, "PUT", "/v1/keeps")
    assert status == 405
    assert isinstance(error, ErrorBody)
    status, error = raw(keepmgr, "GET", "/v1/keeps/not-an-id")
    assert (status, error.error) == (404, "unknown_keep")  # type: ignore[union-attr]


def test_requests_out_of_order_are_refused(keepmgr: Keepmgr) -> None:
    client = KeepmgrClient(keepmgr.url)
    keep = client.create("nil")
    try:
        with pytest.raises(RemoteError) as excinfo:
            client.provision(keep.id, ProvisionRequest(sealed_key=b"x" * 64))
        assert excinfo.value.status == 409
        assert "cannot provision a Keep that is ready" in excinfo.value.message
    finally:
        client.delete(keep.id)


def test_tampered_sealed_key_is_refused(keepmgr: Keepmgr) -> None:
    client = KeepmgrClient(keepmgr.url)
    keep = client.create("nil")
    try:
        nonce = secrets.token_bytes(32)
        answer = client.attest(keep.id, AttestRequest(nonce=nonce))
        rd = crypto.report_data(backend="nil", keep_id=keep.id, nonce=nonce, suite="x25519",
                                public_key=answer.hpke_public_key)  # fmt: skip
        _key, der = crypto.make_tls_key()
        sealed = bytearray(crypto.seal("x25519", answer.hpke_public_key, der,
                                       crypto.provision_info(rd)))  # fmt: skip
        sealed[-1] ^= 1
        with pytest.raises(RemoteError) as excinfo:
            client.provision(keep.id, ProvisionRequest(sealed_key=bytes(sealed)))
        assert excinfo.value.status == 422
        assert "does not open" in excinfo.value.message
    finally:
        client.delete(keep.id)


def _provisioned_keep(client: KeepmgrClient) -> tuple[str, int, ec.EllipticCurvePrivateKey, bytes]:
    keep = client.create("nil")
    nonce = secrets.token_bytes(32)
    answer = client.attest(keep.id, AttestRequest(nonce=nonce))
    rd = crypto.report_data(backend="nil", keep_id=keep.id, nonce=nonce, suite="x25519",
                            public_key=answer.hpke_public_key)  # fmt: skip
    key, der = crypto.make_tls_key()
    sealed = crypto.seal("x25519", answer.hpke_public_key, der, crypto.provision_info(rd))
    port = client.provision(keep.id, ProvisionRequest(sealed_key=sealed)).workload_port
    return keep.id, port, key, der


def _body(module: bytes) -> list[bytes]:
    """A request body by hand: the workload frame, then the module in one chunk."""
    return [
        encode_frame(Workload(module_size=len(module))),
        encode_frame(Chunk(data=module)),
    ]


def _tls(port: int) -> ssl.SSLSocket:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))


def test_stranger_without_key_proof_is_refused_and_client_still_runs(keepmgr: Keepmgr) -> None:
    client = KeepmgrClient(keepmgr.url)
    keep_id, port, key, der = _provisioned_keep(client)
    try:
        stranger = _tls(port)
        stranger.sendall(b"POST /v1/workload HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nabcd")
        reply = stranger.recv(4096)
        stranger.close()
        assert reply.startswith(b"HTTP/1.1 403 ")
        out: list[bytes] = []
        result = send_workload(
            host="127.0.0.1", port=port, expected_spki=crypto.spki(key.public_key()),
            proof=crypto.key_proof(der),
            body=_body((EXAMPLES / "hello" / "hello.wasm").read_bytes()),
            on_output=lambda _s, d: out.append(d),
        )  # fmt: skip
        assert result.exit.status == "exited"
        assert result.exit.code == 0
        assert b"".join(out) == b"Hello from a Keep!\n"
    finally:
        client.delete(keep_id)


HELLO_BYTES = (EXAMPLES / "hello" / "hello.wasm").read_bytes()


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        # More module bytes than announced.
        (
            [
                encode_frame(Workload(module_size=10)),
                encode_frame(Chunk(data=HELLO_BYTES[:20])),
            ],
            "more bytes than announced for the module",
        ),
        # Fewer bytes than announced.
        (
            [
                encode_frame(Workload(module_size=len(HELLO_BYTES) + 5)),
                encode_frame(Chunk(data=HELLO_BYTES)),
            ],
            "the request ends before all",
        ),
        # A file whose directory was never listed.
        (
            [
                encode_frame(
                    Workload(
                        module_size=len(HELLO_BYTES),
                        mounts=(Mount(guest="/in"),),
                        entries=(InputEntry(mount=0, path="a/b.txt", size=1),),
                    )
                ),
                encode_frame(Chunk(data=HELLO_BYTES)),
                encode_frame(Chunk(data=b"x")),
            ],
            "comes before its directory",
        ),
        # Frames beyond what was announced.
        (
            [*_body(HELLO_BYTES), encode_frame(Chunk(data=b"extra"))],
            "frames beyond what it announced",
        ),
        # Not starting with the workload frame.
        ([encode_frame(Chunk(data=HELLO_BYTES))], "must start with a workload frame"),
    ],
)
def test_a_body_that_breaks_its_announcement_is_refused(
    keepmgr: Keepmgr, frames: list[bytes], message: str
) -> None:
    client = KeepmgrClient(keepmgr.url)
    keep_id, port, key, der = _provisioned_keep(client)
    try:
        with pytest.raises(RemoteError) as info:
            send_workload(
                host="127.0.0.1", port=port, expected_spki=crypto.spki(key.public_key()),
                proof=crypto.key_proof(der), body=frames, on_output=lambda *_: None,
            )  # fmt: skip
        assert info.value.status == 400
        assert message in info.value.message
    finally:
        client.delete(keep_id)


def test_client_disconnecting_mid_upload_ends_the_keep(keepmgr: Keepmgr) -> None:
    client = KeepmgrClient(keepmgr.url)
    keep_id, port, _key, der = _provisioned_keep(client)
    sock = _tls(port)
    # A valid start (the workload frame announcing a 100 kB module and part
    # of its first chunk), then the connection goes away.
    partial = (
        encode_frame(Workload(module_size=100_000)) + encode_frame(Chunk(data=b"m" * 60_000))
    )[:30_000]
    sock.sendall(
        b"POST /v1/workload HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n"
        + crypto.KEY_PROOF_HEADER
        + b": "
        + crypto.key_proof(der).encode()
        + b"\r\n\r\n"
        + partial
    )
    sock.close()
    deadline = time.monotonic() + 20
    while (info := client.show(keep_id)).state not in ("exited", "failed"):
        assert time.monotonic() < deadline, info
        time.sleep(0.05)
    assert info.exit is not None
    assert info.exit.status == "failed"
    assert "disconnected" in info.exit.message
    deadline = time.monotonic() + 10
    while marked_pids(keepmgr.marker) != [keepmgr.process.pid]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    client.delete(keep_id)


def test_client_refuses_a_tls_server_with_another_key() -> None:
    """The client sends nothing to a TLS peer that does not hold the provisioned key."""
    attacker_key, _ = crypto.make_tls_key()
    from cryptography.hazmat.primitives import serialization

    cert = crypto.self_signed_certificate(attacker_key, "attacker")
    pem = attacker_key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())  # fmt: skip
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".pem") as f:
        f.write(cert + pem)
        f.flush()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(f.name)
    listener = socket.create_server(("127.0.0.1", 0))
    received = bytearray()

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.settimeout(5)
                while data := tls.recv(65536):
                    received.extend(data)
        except OSError:
            conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    client_key, client_der = crypto.make_tls_key()
    with pytest.raises(PinMismatchError):
        send_workload(
            host="127.0.0.1", port=listener.getsockname()[1],
            expected_spki=crypto.spki(client_key.public_key()), proof=crypto.key_proof(client_der),
            body=_body(b"\0asm secret workload"), on_output=lambda *_: None,
        )  # fmt: skip
    thread.join(10)
    listener.close()
    assert bytes(received) == b""
