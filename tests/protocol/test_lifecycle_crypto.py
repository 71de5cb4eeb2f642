"""The Keep transition table and the binding and sealing of steps 4-7."""

from __future__ import annotations

import itertools
import typing

import pytest

from arx import crypto
from arx.errors import AttestationError, KeepStateError, MessageError
from arx.protocol import lifecycle
from arx.protocol.messages import KeepStateName

STATES = typing.get_args(KeepStateName)
EVENTS = typing.get_args(lifecycle.Event)


def test_happy_path() -> None:
    state: KeepStateName = "starting"
    for event in ("ready", "attested", "attested", "provisioned", "workload_started", "exited"):
        state = lifecycle.next_state(state, event)  # type: ignore[arg-type]
    assert state == "exited"


@pytest.mark.parametrize(("state", "event"), list(itertools.product(STATES, EVENTS)))
def test_every_move_is_in_the_table_or_refused(
    state: KeepStateName, event: lifecycle.Event
) -> None:
    if (state, event) in lifecycle.TRANSITIONS:
        assert lifecycle.next_state(state, event) in STATES
    else:
        with pytest.raises(KeepStateError):
            lifecycle.next_state(state, event)


def test_terminal_states_have_no_way_out() -> None:
    for state in lifecycle.TERMINAL_STATES:
        assert not [k for k in lifecycle.TRANSITIONS if k[0] == state]


def test_requests_per_state() -> None:
    lifecycle.check_request("ready", "attest")
    lifecycle.check_request("attested", "provision")
    for state in ("starting", "provisioned", "running", "exited", "failed"):
        with pytest.raises(KeepStateError):
            lifecycle.check_request(state, "attest")  # type: ignore[arg-type]
    with pytest.raises(KeepStateError):
        lifecycle.check_request("ready", "provision")


BASE = {
    "backend": "sim",
    "keep_id": "k-1",
    "nonce": bytes(32),
    "suite": "x25519",
    "public_key": bytes(32),
}


def test_report_data_changes_with_every_input() -> None:
    reference = crypto.report_data(**BASE)  # type: ignore[arg-type]
    assert len(reference) == 64
    variants = [
        {"backend": "snp"},
        {"backend": "nil"},
        {"keep_id": "k-2"},
        {"nonce": bytes(31) + b"\1"},
        {"suite": "mlkem768-x25519"},
        {"public_key": bytes(31) + b"\1"},
        {"public_key": bytes(33)},
    ]
    seen = {reference}
    for change in variants:
        value = crypto.report_data(**{**BASE, **change})  # type: ignore[arg-type]
        assert value not in seen
        seen.add(value)


def test_length_prefixes_prevent_shifting_bytes_between_fields() -> None:
    a = crypto.report_data(
        backend="si", keep_id="k", nonce=bytes(32), suite="x25519", public_key=b"m" + bytes(31)
    )
    b = crypto.report_data(
        backend="sim", keep_id="k", nonce=bytes(32), suite="x25519", public_key=bytes(31)
    )
    assert a != b


def test_report_data_refuses_a_short_nonce() -> None:
    with pytest.raises(MessageError):
        crypto.report_data(
            backend="nil", keep_id="k", nonce=bytes(16), suite="x25519", public_key=b"k"
        )


@pytest.mark.parametrize("suite", ["x25519", "mlkem768-x25519"])
def test_seal_and_open(suite: typing.Literal["x25519", "mlkem768-x25519"]) -> None:
    keys = crypto.KeepKeys.generate()
    info = crypto.provision_info(bytes(64))
    sealed = crypto.seal(suite, keys.public_key(suite), b"tls key", info)
    assert keys.open(suite, sealed, info) == b"tls key"
    # Another attestation, a flipped bit, or another Keep: nothing opens.
    with pytest.raises(AttestationError):
        keys.open(suite, sealed, crypto.provision_info(b"\1" + bytes(63)))
    for i in (0, len(sealed) // 2, len(sealed) - 1):
        tampered = bytearray(sealed)
        tampered[i] ^= 1
        with pytest.raises(AttestationError):
            keys.open(suite, bytes(tampered), info)
    with pytest.raises(AttestationError):
        crypto.KeepKeys.generate().open(suite, sealed, info)


def test_public_key_lengths_are_checked() -> None:
    with pytest.raises(MessageError):
        crypto.seal("x25519", bytes(31), b"x", b"")
    with pytest.raises(MessageError):
        crypto.seal("mlkem768-x25519", bytes(32), b"x", b"")


def test_tls_key_round_trip_and_pinning() -> None:
    key, der = crypto.make_tls_key()
    loaded = crypto.load_tls_key(der)
    assert crypto.spki(loaded.public_key()) == crypto.spki(key.public_key())
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(crypto.self_signed_certificate(key, "k"))
    from cryptography.hazmat.primitives import serialization

    assert crypto.certificate_spki(cert.public_bytes(serialization.Encoding.DER)) == crypto.spki(
        key.public_key()
    )
    with pytest.raises(MessageError):
        crypto.load_tls_key(b"not a key")
