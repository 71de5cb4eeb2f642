"""The verifier on real, hardware-produced SEV-SNP reports."""

from __future__ import annotations

import time

import pytest

from arx.attestation.policy import ANY, GUEST_POLICY_FLAGS, SnpPolicy
from arx.attestation.snp import (
    PLATFORM_INFO_BITS,
    REPORT_SIZE,
    SIGNED_LENGTH,
    Product,
    SigningKey,
    SnpReport,
    VekExtensions,
    load_certificates,
)
from arx.attestation.snp_verify import AmdTrust, authenticate_snp, verify_snp
from arx.errors import AttestationError, EvidenceFieldError, VerificationError

from .conftest import VECTOR_TIME, VECTORS, VECTORS_TABLE, Vector

IDS = [v.name for v in VECTORS_TABLE]


@pytest.mark.parametrize("vector", VECTORS_TABLE, ids=IDS)
def test_real_report_is_authentic(vector: Vector, amd: AmdTrust) -> None:
    authentic = authenticate_snp(vector.report, vcek=vector.cert, anchors=amd, now=VECTOR_TIME)
    assert authentic.product is Product.MILAN
    assert authentic.reported_tcb.components() == authentic.cert_tcb


@pytest.mark.parametrize("vector", VECTORS_TABLE, ids=IDS)
def test_baseline_rejects_then_each_explicit_allowance_clears_one_check(
    vector: Vector, amd: AmdTrust
) -> None:
    policy = SnpPolicy.baseline()
    for check, allowance in vector.steps:
        with pytest.raises(VerificationError) as info:
            verify_snp(vector.report, vcek=vector.cert, anchors=amd, policy=policy, now=VECTOR_TIME)
        assert info.value.check == check
        if allowance is None:
            return
        policy = policy.with_changes(**allowance)
    verify_snp(vector.report, vcek=vector.cert, anchors=amd, policy=policy, now=VECTOR_TIME)


@pytest.mark.parametrize("vector", [v for v in VECTORS_TABLE if v.allow], ids=lambda v: v.name)
def test_explicit_policy_accepts_real_report(vector: Vector, amd: AmdTrust) -> None:
    assert vector.allow is not None
    policy = SnpPolicy.baseline().with_changes(**vector.allow)
    result = verify_snp(
        vector.report,
        vcek=vector.cert,
        anchors=amd,
        policy=policy,
        now=VECTOR_TIME,
        expected_report_data=vector.report.report_data,
    )
    assert result.kind == "snp"
    assert result.measurement == vector.report.measurement
    assert not result.debug
    assert "Milan" in result.signer


def test_vlek_outside_its_validity_is_rejected(amd: AmdTrust) -> None:
    vector = VECTORS_TABLE[2]
    later = VECTOR_TIME.replace(year=2026)
    with pytest.raises(VerificationError) as info:
        authenticate_snp(vector.report, vcek=vector.cert, anchors=amd, now=later)
    assert info.value.check == "snp.cert.validity"


def test_debug_report_is_rejected_even_by_the_most_permissive_policy(amd: AmdTrust) -> None:
    vector = VECTORS_TABLE[0]
    assert vector.report.debug
    policy = SnpPolicy.baseline().with_changes(
        vmpl=ANY,
        allow_provisional_firmware=True,
        host_data=ANY,
        allow_masked_chip_id=True,
        guest_policy=dict.fromkeys(GUEST_POLICY_FLAGS, ANY),
        platform_info=dict.fromkeys(PLATFORM_INFO_BITS, ANY),
    )
    with pytest.raises(VerificationError) as info:
        verify_snp(vector.report, vcek=vector.cert, anchors=amd, policy=policy, now=VECTOR_TIME)
    assert info.value.check == "snp.policy.debug"


@pytest.mark.parametrize("name", ["test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der"])
def test_corrupted_vceks_are_rejected(name: str, amd: AmdTrust) -> None:
    cert = load_certificates((VECTORS / "trustee" / name).read_bytes())[0]
    report = VECTORS_TABLE[1].report
    with pytest.raises(VerificationError) as info:
        authenticate_snp(report, vcek=cert, anchors=amd, now=VECTOR_TIME)
    assert info.value.check == "snp.cert.signature"


def test_corrupted_vcek_hwid_forms_both_parse() -> None:
    """The legacy (raw) and newer (DER OCTET STRING) hwID encodings decode alike."""
    legacy, new = (
        VekExtensions.from_certificate(
            load_certificates((VECTORS / "trustee" / n).read_bytes())[0], SigningKey.VCEK
        )
        for n in ("test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der")
    )
    assert legacy.hwid == new.hwid == bytes(range(64))


def test_turin_vcek_extensions() -> None:
    cert = load_certificates((VECTORS / "virtee-sev" / "vcek_turin.der").read_bytes())[0]
    ext = VekExtensions.from_certificate(cert, SigningKey.VCEK)
    assert ext.product is Product.TURIN
    assert ext.hwid is not None
    assert len(ext.hwid) == 8
    assert set(ext.spl) == {"fmc", "bootloader", "tee", "snp", "microcode"}


def test_turin_vcek_chains_to_pinned_turin_roots(amd: AmdTrust) -> None:
    cert = load_certificates((VECTORS / "virtee-sev" / "vcek_turin.der").read_bytes())[0]
    vek = amd.verify_vek(cert, SigningKey.VCEK)
    assert vek.anchors.product is Product.TURIN


def test_vcek_from_another_chip_is_rejected(amd: AmdTrust) -> None:
    """report_milan's VCEK has the same TCB as test-report's chip, but another key."""
    with pytest.raises(VerificationError) as info:
        authenticate_snp(
            VECTORS_TABLE[1].report, vcek=VECTORS_TABLE[3].cert, anchors=amd, now=VECTOR_TIME
        )
    assert info.value.check == "snp.signature"


def test_vlek_certificate_for_a_vcek_report_is_rejected(amd: AmdTrust) -> None:
    with pytest.raises(VerificationError) as info:
        authenticate_snp(
            VECTORS_TABLE[1].report, vcek=VECTORS_TABLE[2].cert, anchors=amd, now=VECTOR_TIME
        )
    assert info.value.check == "snp.cert.issuer"


def test_milan_report_under_genoa_and_turin_roots_only_is_rejected(amd: AmdTrust) -> None:
    """Cross-product confusion: no Milan anchors, so no Milan chain verifies."""
    others = AmdTrust(
        [a for p in (Product.GENOA, Product.TURIN) if (a := amd.get(p))], name="no Milan"
    )
    vector = VECTORS_TABLE[1]
    with pytest.raises(VerificationError) as info:
        authenticate_snp(vector.report, vcek=vector.cert, anchors=others, now=VECTOR_TIME)
    assert info.value.check == "snp.cert.issuer"


def test_host_supplied_foreign_ark_is_not_trusted(amd: AmdTrust) -> None:
    genoa = amd.get(Product.GENOA)
    assert genoa is not None
    vector = VECTORS_TABLE[1]
    with pytest.raises(VerificationError) as info:
        authenticate_snp(
            vector.report,
            vcek=vector.cert,
            anchors=amd,
            now=VECTOR_TIME,
            presented_chain=[genoa.ark],
        )
    assert info.value.check == "snp.cert.untrusted"
    milan = amd.get(Product.MILAN)
    assert milan is not None
    authenticate_snp(
        vector.report,
        vcek=vector.cert,
        anchors=amd,
        now=VECTOR_TIME,
        presented_chain=[milan.ask, milan.ark],
    )


@pytest.mark.parametrize("vector", VECTORS_TABLE, ids=IDS)
def test_trailing_bytes_and_every_truncation_are_rejected(vector: Vector) -> None:
    raw = vector.raw
    for extra in (b"\x00", b"\x00" * 70, raw):
        with pytest.raises(EvidenceFieldError) as info:
            SnpReport.from_bytes(raw + extra)
        assert info.value.check == "snp.parse.length"
    for length in range(REPORT_SIZE):
        with pytest.raises(EvidenceFieldError):
            SnpReport.from_bytes(raw[:length])


def _bit_flip_sweep(vector: Vector, amd: AmdTrust) -> tuple[int, dict[str, int]]:
    """Flip every bit of the signed region and signature; count rejections by check."""
    cert = vector.cert
    if vector.allow is None:
        # A report no policy accepts (DEBUG): sweep the authenticity stage.
        def check(report: SnpReport) -> None:
            authenticate_snp(report, vcek=cert, anchors=amd, now=VECTOR_TIME)
    else:
        policy = SnpPolicy.baseline().with_changes(**vector.allow)

        def check(report: SnpReport) -> None:
            verify_snp(report, vcek=cert, anchors=amd, policy=policy, now=VECTOR_TIME)

    raw = vector.raw
    check(SnpReport.from_bytes(raw))  # The untouched report passes.
    buffer = bytearray(raw)
    by_check: dict[str, int] = {}
    flips = 0
    for index in range(REPORT_SIZE):
        original = buffer[index]
        for bit in range(8):
            buffer[index] = original ^ (1 << bit)
            flips += 1
            try:
                check(SnpReport.from_bytes(bytes(buffer)))
            except AttestationError as exc:
                name = getattr(exc, "check", type(exc).__name__)
                by_check[name] = by_check.get(name, 0) + 1
            else:
                pytest.fail(f"{vector.name}: flipping bit {bit} of byte 0x{index:03x} was accepted")
        buffer[index] = original
    return flips, by_check


@pytest.mark.slow
@pytest.mark.parametrize("vector", VECTORS_TABLE, ids=IDS)
def test_every_single_bit_flip_is_rejected(vector: Vector, amd: AmdTrust) -> None:
    started = time.perf_counter()
    flips, by_check = _bit_flip_sweep(vector, amd)
    elapsed = time.perf_counter() - started
    assert flips == REPORT_SIZE * 8 == 9472
    assert sum(by_check.values()) == flips
    # Flips in fields the parser does not constrain can only be caught by the signature.
    assert by_check.get("snp.signature", 0) > SIGNED_LENGTH
    print(f"{vector.name}: {flips} flips rejected in {elapsed:.2f}s: {sorted(by_check.items())}")
