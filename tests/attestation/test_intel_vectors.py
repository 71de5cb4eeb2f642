"""Every real TDX and SGX vector verifies as the vector catalogue says.

Confirmed upstream results must come out the same: sgx_quote is
ConfigurationAndSWHardeningNeeded with INTEL-SA-00289 and INTEL-SA-00615, tdx_quote is
UpToDate. Vectors without matching collateral are checked for everything that needs no
collateral (signatures, QE binding, PCK chain), with ``require_collateral = false``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from arx.attestation import intel_pki as pki
from arx.attestation.intel import verify_quote, verify_quote_file
from arx.attestation.intel_collateral import (
    CollateralBundle,
    SignedObject,
    TcbInfo,
    verify_collateral,
    verify_signed_object,
)
from arx.attestation.intel_quote import IntelQuote
from arx.errors import VerificationError
from tests.attestation.intel_vectors import (
    NOW_2025,
    NOW_2026,
    pcs_form_collateral,
    policy,
    read,
    read_hex,
    sgx_collateral,
    tdx_collateral,
    tdx_outdated_collateral,
)
from tests.attestation.intel_vectors import (
    VECTORS as VECTORS_DIR,
)

ALL_STATUSES = [
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "TDRelaunchAdvised",
    "TDRelaunchAdvisedConfigurationNeeded",
]


def test_sgx_quote_confirmed_status_and_advisories() -> None:
    ev = verify_quote_file(
        "sgx",
        read("sgx/dcap-qvl/sgx_quote"),
        sgx_collateral(),
        policy("sgx", accepted_tcb_statuses=["ConfigurationAndSWHardeningNeeded"]),
        NOW_2025,
    )
    assert ev.kind == "sgx"
    assert ev.tcb_status == "ConfigurationAndSWHardeningNeeded"
    assert ev.advisories == ("INTEL-SA-00289", "INTEL-SA-00615")
    assert ev.report_data.startswith(b"Hello, world!")
    assert ev.details["fmspc"] == bytes.fromhex("00A067110000")
    assert not ev.debug


def test_sgx_quote_baseline_refuses_non_uptodate() -> None:
    with pytest.raises(VerificationError) as err:
        verify_quote_file("sgx", read("sgx/dcap-qvl/sgx_quote"), sgx_collateral(), None, NOW_2025)
    assert err.value.check == "sgx.tcb_status"


def test_tdx_quote_confirmed_uptodate_under_baseline() -> None:
    raw = read("tdx/dcap-qvl/tdx_quote")
    ev = verify_quote_file("tdx", raw, tdx_collateral(), None, NOW_2025)
    parsed = IntelQuote.from_bytes(raw)
    assert ev.tcb_status == "UpToDate"
    assert ev.advisories == ()
    assert ev.measurement == parsed.body.mrtd  # type: ignore[union-attr]
    assert ev.details["rtmr"][3] == parsed.body.rtmr3  # type: ignore[union-attr]
    assert ev.details["trailing_zero_bytes"] == 70
    assert ev.details["fmspc"] == bytes.fromhex("B0C06F000000")


@pytest.mark.parametrize("rel", ["tdx/dcap-qvl/tdx-quote.hex", "tdx/dcap-qvl/quote-from-tappd.hex"])
def test_tappd_quotes_are_authentic_but_no_tcb_level_matches(rel: str) -> None:
    # PCK SGX component 8 is 3 and every TCB level asks for 5, so Intel's rules give no
    # level (TCB not supported); the quotes themselves are genuine.
    raw = read_hex(rel)
    ev = verify_quote_file("tdx", raw, None, policy("tdx", require_collateral=False), NOW_2025)
    assert ev.tcb_status == "Unknown"
    with pytest.raises(VerificationError) as err:
        verify_quote_file("tdx", raw, tdx_collateral(), policy("tdx"), NOW_2025)
    assert err.value.check == "tdx.tcb_level"


def test_tdx_outdated_v5_is_not_uptodate() -> None:
    with pytest.raises(VerificationError) as err:
        verify_quote_file(
            "tdx",
            read("tdx/dcap-qvl/tdx_quote_outdated"),
            tdx_outdated_collateral(),
            policy("tdx", accepted_tcb_statuses=ALL_STATUSES),
            NOW_2026,
        )
    assert err.value.check == "tdx.tcb_level"


def test_quote_v5_sample_uptodate_and_td15_fields() -> None:
    ev = verify_quote_file(
        "tdx",
        read("tdx/go-tdx-guest/quote_v5_sample.dat"),
        tdx_outdated_collateral(),
        None,
        NOW_2026,
    )
    assert ev.tcb_status == "UpToDate"
    assert ev.details["body_type"] == 3
    assert ev.details["quote_version"] == 5
    assert "tee_tcb_svn2" in ev.details


def test_tdx_quote_5_has_no_matching_tcb_level() -> None:
    with pytest.raises(VerificationError) as err:
        verify_quote_file(
            "tdx",
            read("tdx/trustee/tdx_quote_5.dat"),
            tdx_outdated_collateral(),
            policy("tdx", accepted_tcb_statuses=ALL_STATUSES),
            NOW_2026,
        )
    assert err.value.check == "tdx.tcb_level"


@pytest.mark.parametrize("nested", [False, True])
def test_pcs_response_form_tcb_info(nested: bool) -> None:
    ev = verify_quote_file(
        "tdx",
        read("tdx/go-tdx-guest/quote_v5_sample.dat"),
        pcs_form_collateral(nested=nested),
        None,
        NOW_2026,
    )
    assert ev.tcb_status == "UpToDate"
    bundle = CollateralBundle.from_bytes(pcs_form_collateral(nested=nested))
    assert TcbInfo.from_json(bundle.tcb_info.raw).issue_date == datetime(
        2026, 2, 1, 14, 49, 26, tzinfo=UTC
    )


# Quotes with no collateral that fits them: authenticity only.
NO_COLLATERAL = [
    ("tdx", "tdx/go-tdx-guest/cos-113-tdx-quote.dat", datetime(2025, 1, 1, tzinfo=UTC), 3065),
    ("tdx", "tdx/trustee/td-quote.bin", NOW_2025, 70),
    ("tdx", "tdx/trustee/tdx_quote_6.dat", NOW_2025, 70),
    ("tdx", "tdx/trustee/tdx_quote_5.dat", NOW_2026, 0),
    ("tdx", "tdx/dcap-qvl/tdx_quote", NOW_2025, 70),
    ("sgx", "sgx/dcap-qvl/sgx_quote", NOW_2025, 0),
]


@pytest.mark.parametrize(("kind", "rel", "now", "padding"), NO_COLLATERAL)
def test_authentic_without_collateral(kind: str, rel: str, now: datetime, padding: int) -> None:
    raw = read(rel)
    ev = verify_quote_file(kind, raw, None, policy(kind, require_collateral=False), now)
    assert ev.tcb_status == "Unknown"
    assert ev.details["trailing_zero_bytes"] == padding
    # Without collateral and without the explicit opt-out, verification refuses, and only
    # after the quote itself was checked (a corrupted quote fails on its signature first).
    with pytest.raises(VerificationError) as err:
        verify_quote_file(kind, raw, None, None, now)
    assert err.value.check == f"{kind}.collateral.missing"
    corrupt = bytearray(raw)
    corrupt[200] ^= 1
    with pytest.raises(VerificationError) as err:
        verify_quote_file(kind, bytes(corrupt), None, None, now)
    assert err.value.check == f"{kind}.quote.signature"


@pytest.mark.parametrize(
    ("kind", "rel", "check"),
    [
        ("tdx", "tdx/trustee/tdx_quote_4.dat", "tdx.td_attributes.debug"),
        ("sgx", "sgx/trustee/occlum_quote.dat", "sgx.attributes.debug"),
    ],
)
def test_real_debug_quotes_are_refused(kind: str, rel: str, check: str) -> None:
    raw = read(rel)
    pol = policy(kind, require_collateral=False)
    with pytest.raises(VerificationError) as err:
        verify_quote_file(kind, raw, None, pol, NOW_2025)
    assert err.value.check == check


def test_non_zero_trailing_bytes_refused_and_quote_itself_authentic() -> None:
    raw = read("tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat")
    pol = policy("tdx", require_collateral=False)
    with pytest.raises(VerificationError) as err:
        verify_quote_file("tdx", raw, None, pol, NOW_2025)
    assert err.value.check == "tdx.quote.trailing_bytes"
    consumed = IntelQuote.from_bytes(raw).consumed
    assert raw[consumed:] == b"\nextra bytes(only for testing purpose)\n"
    ev = verify_quote_file("tdx", raw[:consumed], None, pol, NOW_2025)
    assert ev.details["fmspc"] == bytes.fromhex("50806F000000")


def test_kind_mismatch() -> None:
    pol = policy("tdx", require_collateral=False)
    with pytest.raises(VerificationError) as err:
        verify_quote_file("tdx", read("sgx/dcap-qvl/sgx_quote"), None, pol, NOW_2025)
    assert err.value.check == "tdx.quote.kind"
    with pytest.raises(VerificationError) as err:
        verify_quote_file("tdx", read("tdx/dcap-qvl/tdx_quote"), sgx_collateral(), None, NOW_2025)
    assert err.value.check == "tdx.collateral.tcb_info.id"


def test_fmspc_mismatch() -> None:
    # tdx_quote (B0C06F000000) against the 90C06F000000 collateral, at a time both are valid.
    with pytest.raises(VerificationError) as err:
        verify_quote_file(
            "tdx", read("tdx/dcap-qvl/tdx_quote"), tdx_outdated_collateral(), None, NOW_2026
        )
    assert err.value.check == "tdx.tcb_info.fmspc"


# --- Time ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected_prefix"),
    [
        (datetime(2025, 6, 19, 10, 0, tzinfo=UTC), "tdx.collateral."),
        (datetime(2025, 7, 20, tzinfo=UTC), "tdx.collateral."),
        (datetime(2026, 12, 1, tzinfo=UTC), "tdx.collateral."),
        (datetime(2020, 1, 1, tzinfo=UTC), "tdx.collateral."),
    ],
)
def test_collateral_outside_its_window_is_refused(now: datetime, expected_prefix: str) -> None:
    with pytest.raises(VerificationError) as err:
        verify_quote_file("tdx", read("tdx/dcap-qvl/tdx_quote"), tdx_collateral(), None, now)
    assert err.value.check.startswith(expected_prefix)
    assert err.value.check.endswith(("freshness", "validity"))


def test_each_window_edge() -> None:
    bundle = CollateralBundle.from_bytes(tdx_collateral())
    # TCB Info is issued 2025-06-19T10:16:03Z, QE Identity at 10:32:27Z: just before the QE
    # Identity exists, the QE Identity check is the one that refuses.
    with pytest.raises(VerificationError) as err:
        verify_collateral("tdx", bundle, datetime(2025, 6, 19, 10, 20, tzinfo=UTC))
    assert err.value.check == "tdx.collateral.qe_identity.freshness"
    # The PCK CRL's nextUpdate (10:00:35) is the first window to close on 2025-07-19.
    with pytest.raises(VerificationError) as err:
        verify_collateral("tdx", bundle, datetime(2025, 7, 19, 10, 5, tzinfo=UTC))
    assert err.value.check == "tdx.collateral.pck_crl.freshness"
    ok = verify_collateral("tdx", bundle, datetime(2025, 6, 19, 10, 33, tzinfo=UTC))
    assert ok.valid_until == datetime(2025, 7, 19, 10, 0, 35, tzinfo=UTC)


def test_verified_collateral_reused_after_expiry_is_refused() -> None:
    verified = verify_collateral("tdx", CollateralBundle.from_bytes(tdx_collateral()), NOW_2025)
    raw = read("tdx/dcap-qvl/tdx_quote")
    assert verify_quote("tdx", raw, verified, _baseline(), NOW_2025).tcb_status == "UpToDate"
    with pytest.raises(VerificationError) as err:
        verify_quote("tdx", raw, verified, _baseline(), NOW_2025 + timedelta(days=30))
    assert err.value.check == "tdx.collateral.freshness"


def _baseline():  # type: ignore[no-untyped-def]
    from arx.attestation.intel import IntelPolicy

    return IntelPolicy.baseline("tdx")


# --- Collateral integrity ------------------------------------------------------------


def _edit_bundle(raw: bytes, key: str, old: str, new: str) -> bytes:
    bundle = json.loads(raw)
    assert old in bundle[key]
    bundle[key] = bundle[key].replace(old, new, 1)
    return json.dumps(bundle).encode()


@pytest.mark.parametrize(
    ("key", "old", "new", "check"),
    [
        ("tcb_info", '"pcesvn":11', '"pcesvn":10', "tdx.collateral.tcb_info.signature"),
        ("qe_identity", '"isvsvn":4', '"isvsvn":3', "tdx.collateral.qe_identity.signature"),
        ("tcb_info_signature", "0", "1", "tdx.collateral.tcb_info.signature"),
        ("root_ca_crl", "0201", "0202", None),
    ],
)
def test_tampered_collateral_is_refused(key: str, old: str, new: str, check: str | None) -> None:
    raw = _edit_bundle(tdx_collateral(), key, old, new)
    with pytest.raises((VerificationError, Exception)) as err:
        verify_quote_file("tdx", read("tdx/dcap-qvl/tdx_quote"), raw, None, NOW_2025)
    if check is not None:
        assert isinstance(err.value, VerificationError)
        assert err.value.check == check
    else:
        from arx.errors import AttestationError

        assert isinstance(err.value, AttestationError)


def test_collateral_chain_must_reach_pinned_root() -> None:
    # Replace the TCB signing chain's root with the PCK CA: the chain no longer ends in the
    # pinned root, whatever it claims.
    bundle = json.loads(tdx_collateral())
    pck_ca = bundle["pck_crl_issuer_chain"].split("-----END CERTIFICATE-----")[0]
    signer = bundle["tcb_info_issuer_chain"].split("-----END CERTIFICATE-----")[0]
    bundle["tcb_info_issuer_chain"] = (
        signer + "-----END CERTIFICATE-----\n" + pck_ca + "-----END CERTIFICATE-----\n"
    )
    with pytest.raises(VerificationError) as err:
        verify_quote_file(
            "tdx", read("tdx/dcap-qvl/tdx_quote"), json.dumps(bundle).encode(), None, NOW_2025
        )
    assert err.value.check == "tdx.collateral.tcb_info.chain.root"


def test_pcs_responses_signatures_from_other_origins() -> None:
    # trustee's TCB Info / QE Identity (PCS bodies), signed by the same Intel TCB Signing
    # certificate as the dcap-qvl bundles, checked at a time inside their window.
    bundle = CollateralBundle.from_bytes(tdx_collateral())
    now = datetime(2025, 11, 1, tzinfo=UTC)
    for rel, pcs_key in (
        ("tdx/trustee/tcbInfo.json", "tcbInfo"),
        ("tdx/trustee/enclaveIdentity.json", "enclaveIdentity"),
    ):
        text = read(rel).decode()
        from arx.attestation.intel_collateral import raw_members

        members = raw_members(text, rel)
        obj = SignedObject(
            raw=members[pcs_key].encode(), signature=bytes.fromhex(json.loads(members["signature"]))
        )
        verify_signed_object(
            obj,
            chain=bundle.tcb_info_chain,
            root=pki.intel_sgx_root_ca(),
            root_crl=bundle.root_ca_crl,
            now=now,
            check="tdx.collateral.x",
        )
        tampered = SignedObject(
            raw=obj.raw.replace(b"UpToDate", b"OutOfDate", 1), signature=obj.signature
        )
        with pytest.raises(VerificationError) as err:
            verify_signed_object(
                tampered,
                chain=bundle.tcb_info_chain,
                root=pki.intel_sgx_root_ca(),
                root_crl=bundle.root_ca_crl,
                now=now,
                check="tdx.collateral.x",
            )
        assert err.value.check == "tdx.collateral.x.signature"
    # The 2023 go-tdx-guest responses predate the current signing certificate; their
    # signatures verify under the same key.
    key = pki.ec_public_key(bundle.tcb_info_chain[0], "k")
    for rel, pcs_key in (
        ("tdx/go-tdx-guest/sample_tcbInfo_response", "tcbInfo"),
        ("tdx/go-tdx-guest/sample_qeIdentity_response", "enclaveIdentity"),
    ):
        members = raw_members(read(rel).decode(), rel)
        sig = bytes.fromhex(json.loads(members["signature"]))
        assert pki.ecdsa_p256_ok(key, sig, members[pcs_key].encode())
        assert not pki.ecdsa_p256_ok(key, sig, members[pcs_key].encode() + b" ")


def test_go_tdx_guest_crls() -> None:
    root = pki.intel_sgx_root_ca()
    from cryptography import x509

    root_crl = x509.load_der_x509_crl(read("tdx/go-tdx-guest/rootcrl.der"))
    pck_crl = x509.load_der_x509_crl(read("tdx/go-tdx-guest/pckcrl"))
    pki.verify_crl(root_crl, root, datetime(2023, 6, 20, tzinfo=UTC), "tdx.collateral.root_ca_crl")
    with pytest.raises(VerificationError) as err:
        pki.verify_crl(root_crl, root, datetime(2024, 5, 1, tzinfo=UTC), "c")
    assert err.value.check == "c.freshness"
    # The PCK CRL is not issued by the root.
    with pytest.raises(VerificationError) as err:
        pki.verify_crl(pck_crl, root, datetime(2023, 6, 20, tzinfo=UTC), "c")
    assert err.value.check == "c.issuer"
    # A certificate whose serial is on the PCK CRL is refused.
    revoked = next(iter(pck_crl))
    cert = _cert_with_serial(revoked.serial_number)
    with pytest.raises(VerificationError) as err:
        pki.check_not_revoked(pck_crl, cert, "tdx.pck.revoked")
    assert err.value.check == "tdx.pck.revoked"
    pki.check_not_revoked(pck_crl, _cert_with_serial(12345), "tdx.pck.revoked")


def _cert_with_serial(serial: int):  # type: ignore[no-untyped-def]
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2030, 1, 1, tzinfo=UTC))
        .sign(key, hashes.SHA256())
    )


def test_pck_crl_from_another_ca_does_not_apply() -> None:
    # sgx_quote's PCK comes from the Processor CA; give it the Platform CA's CRL (from the
    # TDX bundle, current at the same time): the CRL says nothing about this PCK.
    bundle = json.loads(sgx_collateral())
    other = json.loads(tdx_collateral())
    bundle["pck_crl"] = other["pck_crl"]
    bundle["pck_crl_issuer_chain"] = other["pck_crl_issuer_chain"]
    with pytest.raises(VerificationError) as err:
        verify_quote_file(
            "sgx",
            read("sgx/dcap-qvl/sgx_quote"),
            json.dumps(bundle).encode(),
            policy("sgx", accepted_tcb_statuses=["ConfigurationAndSWHardeningNeeded"]),
            NOW_2025,
        )
    assert err.value.check == "sgx.pck_crl.issuer"


def test_unknown_kind_and_naive_time() -> None:
    with pytest.raises(VerificationError) as err:
        verify_quote_file("snp", read("tdx/dcap-qvl/tdx_quote"), None, None, NOW_2025)
    assert err.value.check == "intel.kind"
    with pytest.raises(VerificationError) as err:
        verify_quote_file("tdx", read("tdx/dcap-qvl/tdx_quote"), None, None, datetime(2025, 7, 1))
    assert err.value.check == "tdx.now"


def test_pinned_root_is_the_intel_sgx_root_ca() -> None:
    from cryptography.hazmat.primitives import hashes

    root = pki.intel_sgx_root_ca()
    assert root.subject.rfc4514_string().startswith("C=US,ST=CA,L=Santa Clara")
    root.verify_directly_issued_by(root)  # self-signed
    # Every PCK chain in the vectors ends in a certificate with this public key.
    for rel in ("tdx/dcap-qvl/tdx_quote", "sgx/dcap-qvl/sgx_quote", "tdx/trustee/tdx_quote_6.dat"):
        pem = IntelQuote.from_bytes(read(rel)).signature_data.qe.cert_data
        last = pki.load_pem_chain(pem.rstrip(b"\x00"), rel)[-1]
        assert last.fingerprint(hashes.SHA256()) == root.fingerprint(hashes.SHA256())


def test_hex_quote_files_are_decoded() -> None:
    from arx.attestation.intel import quote_from_file_bytes
    from arx.errors import EvidenceParseError

    text = (VECTORS_DIR / "tdx/dcap-qvl/tdx-quote.hex").read_bytes()
    assert text.startswith(b"0x")
    binary = quote_from_file_bytes(text)
    assert IntelQuote.from_bytes(binary).header.version == 4
    assert quote_from_file_bytes(binary) == binary
    assert quote_from_file_bytes(b"  " + binary.hex().encode() + b"\n") == binary
    with pytest.raises(EvidenceParseError):
        quote_from_file_bytes(b"0xnot hex")


def test_single_pcs_response_is_not_a_bundle() -> None:
    from arx.errors import EvidenceParseError

    with pytest.raises(EvidenceParseError, match="single Intel PCS response"):
        verify_quote_file(
            "tdx",
            read("tdx/dcap-qvl/tdx_quote"),
            read("tdx/go-tdx-guest/sample_tcbinfo_response_v5"),
            None,
            NOW_2026,
        )
