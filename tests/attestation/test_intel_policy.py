"""One violation at a time for the policy checks, and the policy table's own validation.

A quote whose fields are changed must be re-signed to get past the signature check, and a
re-signed quote then fails the QE binding (the QE report binds the original attestation
key), as ``test_resigned_debug_quote_fails_qe_binding`` shows. So the policy checks are
exercised by calling ``check_policy`` directly on claims that ``authenticate`` produced
from a real quote and its collateral, with one field of the parsed body replaced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from arx.attestation.intel import (
    IntelClaims,
    IntelPolicy,
    authenticate,
    check_policy,
    to_evidence,
    verify_quote_file,
)
from arx.attestation.intel_collateral import CollateralBundle, verify_collateral
from arx.attestation.intel_quote import IntelQuote, SgxReportBody, TdReportBody
from arx.errors import VerificationError
from tests.attestation.intel_vectors import NOW_2025, policy, read, sgx_collateral, tdx_collateral


@pytest.fixture(scope="module")
def tdx_claims() -> IntelClaims:
    raw = read("tdx/dcap-qvl/tdx_quote")
    quote = IntelQuote.from_bytes(raw)
    coll = verify_collateral("tdx", CollateralBundle.from_bytes(tdx_collateral()), NOW_2025)
    return authenticate("tdx", quote, raw[quote.consumed :], coll, NOW_2025)


@pytest.fixture(scope="module")
def sgx_claims() -> IntelClaims:
    raw = read("sgx/dcap-qvl/sgx_quote")
    quote = IntelQuote.from_bytes(raw)
    coll = verify_collateral("sgx", CollateralBundle.from_bytes(sgx_collateral()), NOW_2025)
    return authenticate("sgx", quote, b"", coll, NOW_2025)


def with_body(claims: IntelClaims, **fields: Any) -> IntelClaims:
    body = dataclasses.replace(claims.quote.body, **fields)  # type: ignore[type-var]
    return dataclasses.replace(claims, quote=dataclasses.replace(claims.quote, body=body))


def pinned_tdx(claims: IntelClaims) -> dict[str, object]:
    """A policy that pins every TDX measurement to the real quote's values."""
    body = claims.quote.body
    assert isinstance(body, TdReportBody)
    return {
        "mrtd": body.mrtd.hex(),
        "rtmr0": body.rtmr0.hex(),
        "rtmr1": body.rtmr1.hex(),
        "rtmr2": body.rtmr2.hex(),
        "rtmr3": [body.rtmr3.hex(), "00" * 48],
        "mrconfigid": body.mrconfigid.hex(),
        "mrowner": body.mrowner.hex(),
        "xfam": body.xfam.hex(),
        "report_data": body.report_data.hex().upper(),
        "min_tcb_evaluation_data_number": 17,
        "allowed_advisory_ids": [],
    }


def pinned_sgx(claims: IntelClaims) -> dict[str, object]:
    body = claims.quote.body
    assert isinstance(body, SgxReportBody)
    return {
        "mrenclave": body.mrenclave.hex(),
        "mrsigner": body.mrsigner.hex(),
        "report_data": body.report_data.hex(),
        "isvprodid": body.isv_prod_id,
        "min_isvsvn": body.isv_svn,
        "accepted_tcb_statuses": ["ConfigurationAndSWHardeningNeeded"],
        "allowed_advisory_ids": ["INTEL-SA-00289", "INTEL-SA-00615"],
    }


def test_pinned_policies_accept_the_real_quotes(
    tdx_claims: IntelClaims, sgx_claims: IntelClaims
) -> None:
    check_policy(tdx_claims, IntelPolicy.from_table("tdx", pinned_tdx(tdx_claims)))
    check_policy(sgx_claims, IntelPolicy.from_table("sgx", pinned_sgx(sgx_claims)))
    check_policy(tdx_claims, IntelPolicy.baseline("tdx"))
    ev = to_evidence(tdx_claims)
    assert ev.measurement == tdx_claims.quote.body.mrtd  # type: ignore[union-attr]


def _flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 1]) + value[1:]


TDX_FIELDS = [
    "mrtd",
    "rtmr0",
    "rtmr1",
    "rtmr2",
    "rtmr3",
    "mrconfigid",
    "mrowner",
    "xfam",
    "report_data",
]


@pytest.mark.parametrize("field", TDX_FIELDS)
def test_tdx_measurement_mismatch(tdx_claims: IntelClaims, field: str) -> None:
    pol = IntelPolicy.from_table("tdx", pinned_tdx(tdx_claims))
    changed = with_body(tdx_claims, **{field: _flip(getattr(tdx_claims.quote.body, field))})
    with pytest.raises(VerificationError) as err:
        check_policy(changed, pol)
    assert err.value.check == f"tdx.{field}"
    # "any" for that one field accepts it again.
    check_policy(changed, IntelPolicy.from_table("tdx", {**pinned_tdx(tdx_claims), field: "any"}))


@pytest.mark.parametrize("field", ["mrenclave", "mrsigner", "report_data"])
def test_sgx_measurement_mismatch(sgx_claims: IntelClaims, field: str) -> None:
    pol = IntelPolicy.from_table("sgx", pinned_sgx(sgx_claims))
    changed = with_body(sgx_claims, **{field: _flip(getattr(sgx_claims.quote.body, field))})
    with pytest.raises(VerificationError) as err:
        check_policy(changed, pol)
    assert err.value.check == f"sgx.{field}"


def test_sgx_isvprodid_and_isvsvn(sgx_claims: IntelClaims) -> None:
    body = sgx_claims.quote.body
    assert isinstance(body, SgxReportBody)
    pol = IntelPolicy.from_table("sgx", pinned_sgx(sgx_claims))
    with pytest.raises(VerificationError) as err:
        check_policy(with_body(sgx_claims, isv_prod_id=body.isv_prod_id + 1), pol)
    assert err.value.check == "sgx.isvprodid"
    higher = IntelPolicy.from_table(
        "sgx", {**pinned_sgx(sgx_claims), "min_isvsvn": body.isv_svn + 1}
    )
    with pytest.raises(VerificationError) as err:
        check_policy(sgx_claims, higher)
    assert err.value.check == "sgx.isvsvn"
    check_policy(with_body(sgx_claims, isv_svn=body.isv_svn + 1), pol)  # above the minimum


def test_tdx_debug_always_refused(tdx_claims: IntelClaims) -> None:
    body = tdx_claims.quote.body
    assert isinstance(body, TdReportBody)
    attrs = (int.from_bytes(body.td_attributes, "little") | 1).to_bytes(8, "little")
    debug = with_body(tdx_claims, td_attributes=attrs)
    for pol in (IntelPolicy.baseline("tdx"), IntelPolicy.from_table("tdx", policy("tdx"))):
        with pytest.raises(VerificationError) as err:
            check_policy(debug, pol)
        assert err.value.check == "tdx.td_attributes.debug"
    # Other attribute bits do not read as debug.
    check_policy(
        with_body(tdx_claims, td_attributes=(2).to_bytes(8, "little")), IntelPolicy.baseline("tdx")
    )


def test_sgx_debug_always_refused(sgx_claims: IntelClaims) -> None:
    body = sgx_claims.quote.body
    assert isinstance(body, SgxReportBody)
    flags = int.from_bytes(body.attributes[:8], "little") | 0b10
    debug = with_body(sgx_claims, attributes=flags.to_bytes(8, "little") + body.attributes[8:])
    with pytest.raises(VerificationError) as err:
        check_policy(debug, IntelPolicy.from_table("sgx", pinned_sgx(sgx_claims)))
    assert err.value.check == "sgx.attributes.debug"


def test_tcb_status_advisories_and_evaluation_number(
    tdx_claims: IntelClaims, sgx_claims: IntelClaims
) -> None:
    out_of_date = dataclasses.replace(tdx_claims, tcb_status="OutOfDate")
    with pytest.raises(VerificationError) as err:
        check_policy(out_of_date, IntelPolicy.baseline("tdx"))
    assert err.value.check == "tdx.tcb_status"
    check_policy(
        out_of_date,
        IntelPolicy.from_table(
            "tdx", policy("tdx", accepted_tcb_statuses=["UpToDate", "OutOfDate"])
        ),
    )
    # Advisories beyond the allowlist.
    narrow = {**pinned_sgx(sgx_claims), "allowed_advisory_ids": ["INTEL-SA-00289"]}
    with pytest.raises(VerificationError) as err:
        check_policy(sgx_claims, IntelPolicy.from_table("sgx", narrow))
    assert err.value.check == "sgx.advisories"
    # Collateral older than the minimum evaluation data number (the real one is 17).
    newer = {**pinned_tdx(tdx_claims), "min_tcb_evaluation_data_number": 18}
    with pytest.raises(VerificationError) as err:
        check_policy(tdx_claims, IntelPolicy.from_table("tdx", newer))
    assert err.value.check == "tdx.tcb_evaluation_data_number"


def test_unknown_tcb_status_needs_explicit_opt_out(tdx_claims: IntelClaims) -> None:
    unknown = dataclasses.replace(tdx_claims, tcb_status="Unknown")
    with pytest.raises(VerificationError) as err:
        check_policy(unknown, IntelPolicy.baseline("tdx"))
    assert err.value.check == "tdx.collateral.missing"
    check_policy(unknown, IntelPolicy.from_table("tdx", policy("tdx", require_collateral=False)))


@pytest.mark.parametrize(
    ("kind", "table", "check", "named"),
    [
        ("tdx", {**policy("tdx"), "mrenclave": "any"}, "tdx.policy.unknown_key", "mrenclave"),
        ("tdx", {**policy("tdx"), "debug": True}, "tdx.policy.unknown_key", "debug"),
        ("sgx", {**policy("sgx"), "mrtd": "any"}, "sgx.policy.unknown_key", "mrtd"),
        (
            "tdx",
            {k: v for k, v in policy("tdx").items() if k != "rtmr2"},
            "tdx.policy.missing_key",
            "rtmr2",
        ),
        (
            "sgx",
            {k: v for k, v in policy("sgx").items() if k != "min_isvsvn"},
            "sgx.policy.missing_key",
            "min_isvsvn",
        ),
        ("tdx", {**policy("tdx"), "mrtd": "00" * 47}, "tdx.policy.invalid", "mrtd"),
        ("tdx", {**policy("tdx"), "mrtd": []}, "tdx.policy.invalid", "mrtd"),
        ("tdx", {**policy("tdx"), "xfam": "zz" * 8}, "tdx.policy.invalid", "xfam"),
        (
            "tdx",
            {**policy("tdx"), "require_collateral": "no"},
            "tdx.policy.invalid",
            "require_collateral",
        ),
        (
            "tdx",
            {**policy("tdx"), "accepted_tcb_statuses": ["Fine"]},
            "tdx.policy.invalid",
            "accepted_tcb_statuses",
        ),
        (
            "tdx",
            {**policy("tdx"), "accepted_tcb_statuses": ["UpToDate", "Revoked"]},
            "tdx.policy.invalid",
            "accepted_tcb_statuses",
        ),
        (
            "tdx",
            {**policy("tdx"), "accepted_tcb_statuses": []},
            "tdx.policy.invalid",
            "accepted_tcb_statuses",
        ),
        (
            "tdx",
            {**policy("tdx"), "allowed_advisory_ids": "INTEL-SA-1"},
            "tdx.policy.invalid",
            "allowed_advisory_ids",
        ),
        (
            "tdx",
            {**policy("tdx"), "min_tcb_evaluation_data_number": True},
            "tdx.policy.invalid",
            "min_tcb_evaluation_data_number",
        ),
        ("sgx", {**policy("sgx"), "isvprodid": 70000}, "sgx.policy.invalid", "isvprodid"),
    ],
)
def test_policy_table_validation(
    kind: str, table: dict[str, object], check: str, named: str
) -> None:
    with pytest.raises(VerificationError) as err:
        IntelPolicy.from_table(kind, table)  # type: ignore[arg-type]
    assert err.value.check == check
    assert named in str(err.value)


def _resign(raw: bytes, mutate: Callable[[bytearray], None]) -> bytes:
    """Change header/body bytes and re-sign them with a fresh attestation key."""
    quote = IntelQuote.from_bytes(raw)
    buf = bytearray(raw)
    mutate(buf)
    signed_len = len(quote.signed)
    key = ec.generate_private_key(ec.SECP256R1())
    r, s = decode_dss_signature(key.sign(bytes(buf[:signed_len]), ec.ECDSA(hashes.SHA256())))
    numbers = key.public_key().public_numbers()
    sig_at = signed_len + 4
    buf[sig_at : sig_at + 64] = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    buf[sig_at + 64 : sig_at + 128] = numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
    return bytes(buf)


def test_resigned_debug_quote_fails_qe_binding() -> None:
    raw = read("tdx/dcap-qvl/tdx_quote")
    td_attributes_at = 48 + 120

    def set_debug(buf: bytearray) -> None:
        buf[td_attributes_at] |= 1

    forged = _resign(raw, set_debug)
    assert IntelQuote.from_bytes(forged).body.debug
    with pytest.raises(VerificationError) as err:
        verify_quote_file("tdx", forged, tdx_collateral(), None, NOW_2025)
    assert err.value.check == "tdx.qe_report.binding"
