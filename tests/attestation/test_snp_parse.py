"""The SEV-SNP report and certificate parsers: structure, round trips, and fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arx.attestation.cmd_verify import decode_evidence, sniff_kind
from arx.attestation.policy import ANY, GUEST_POLICY_FLAGS, SnpPolicy
from arx.attestation.snp import (
    PLATFORM_INFO_BITS,
    POLICY_BIT_DEBUG,
    REPORT_LAYOUT,
    REPORT_SIZE,
    SIGNED_LENGTH,
    FieldKind,
    Product,
    SnpReport,
    TcbVersion,
    _der_small_uint,
    _der_tlv,
    encode_report,
    load_certificates,
    product_from_cpuid,
    tcb_components_le,
)
from arx.attestation.snp_sim import SimAmdChain
from arx.attestation.snp_verify import AmdTrust, verify_snp
from arx.errors import EvidenceFieldError, EvidenceParseError, VerificationError

from .conftest import SIM_TIME, VECTORS_TABLE


def test_layout_tiles_the_report_and_matches_table_22() -> None:
    offsets = {f.name: (f.offset, f.size) for f in REPORT_LAYOUT}
    assert sum(f.size for f in REPORT_LAYOUT) == REPORT_SIZE == 1184
    # Spot checks against the ABI specification's Table 22.
    assert offsets["report_data"] == (0x50, 64)
    assert offsets["measurement"] == (0x90, 48)
    assert offsets["host_data"] == (0xC0, 32)
    assert offsets["chip_id"] == (0x1A0, 64)
    assert offsets["signature_r"] == (SIGNED_LENGTH, 72)
    assert offsets["signature_s"] == (0x2E8, 72)


@pytest.mark.parametrize("vector", VECTORS_TABLE, ids=lambda v: v.name)
def test_real_reports_round_trip(vector: object) -> None:
    raw = vector.raw  # type: ignore[attr-defined]
    report = SnpReport.from_bytes(raw)
    assert encode_report(report.field_values()) == raw


def test_hex_evidence_is_decoded() -> None:
    vector = VECTORS_TABLE[3]
    text = vector.report_path.read_bytes()
    assert len(text) == 2 * REPORT_SIZE + text.count(b"\n")
    assert decode_evidence(text) == decode_evidence(b"0x" + text.strip().upper())
    assert len(decode_evidence(text)) == REPORT_SIZE
    assert sniff_kind(decode_evidence(text)) == "snp"


@pytest.mark.parametrize(
    "field", [f for f in REPORT_LAYOUT if f.kind is FieldKind.RESERVED], ids=lambda f: f.name
)
def test_each_reserved_range_is_checked(field: object) -> None:
    raw = bytearray(VECTORS_TABLE[1].raw)
    for offset in range(field.offset, field.offset + field.size):  # type: ignore[attr-defined]
        raw[offset] = 0x80
        with pytest.raises(EvidenceFieldError) as info:
            SnpReport.from_bytes(bytes(raw))
        assert info.value.check == "snp.parse.reserved"
        raw[offset] = 0


def test_cpuid_fields_are_reserved_in_version_2() -> None:
    raw = bytearray(VECTORS_TABLE[1].raw)
    assert raw[0] == 2
    raw[0x188] = 0x19
    with pytest.raises(EvidenceFieldError) as info:
        SnpReport.from_bytes(bytes(raw))
    assert info.value.check == "snp.parse.reserved"


def test_product_from_cpuid() -> None:
    assert product_from_cpuid(0x19, 0x01) is Product.MILAN
    assert product_from_cpuid(0x19, 0x11) is Product.GENOA
    assert product_from_cpuid(0x19, 0xA0) is Product.GENOA
    assert product_from_cpuid(0x1A, 0x02) is Product.TURIN
    assert product_from_cpuid(0x17, 0x31) is None
    assert product_from_cpuid(0x19, 0x20) is None


def test_tcb_layouts_differ_between_milan_and_turin() -> None:
    raw = 0x1100_0000_0000_0000 | 0x04_03_02_01
    with pytest.raises(EvidenceFieldError):
        TcbVersion.decode(raw, Product.MILAN)  # bytes 2 and 3 are reserved on Milan
    turin = TcbVersion.decode(raw, Product.TURIN)
    assert (turin.fmc, turin.bootloader, turin.tee, turin.snp, turin.microcode) == (
        1,
        2,
        3,
        4,
        0x11,
    )
    milan = TcbVersion.decode(0x4405_0000_0000_0002, Product.MILAN)
    assert (milan.bootloader, milan.tee, milan.snp, milan.microcode) == (2, 0, 5, 0x44)


# -- Hypothesis ---------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2 * REPORT_SIZE))
def test_arbitrary_bytes_raise_only_parse_errors(data: bytes) -> None:
    with contextlib.suppress(EvidenceParseError):
        SnpReport.from_bytes(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=REPORT_SIZE, max_size=REPORT_SIZE))
def test_arbitrary_full_length_reports_raise_only_parse_errors(data: bytes) -> None:
    try:
        report = SnpReport.from_bytes(data)
    except EvidenceParseError:
        return
    assert encode_report(report.field_values()) == data


_BASE = VECTORS_TABLE[1].raw


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, REPORT_SIZE - 1), st.integers(0, 255)), max_size=6))
def test_mutated_real_report_parses_or_raises_parse_error(edits: list[tuple[int, int]]) -> None:
    raw = bytearray(_BASE)
    for offset, value in edits:
        raw[offset] = value
    try:
        report = SnpReport.from_bytes(bytes(raw))
    except EvidenceParseError:
        return
    assert report.raw == bytes(raw)
    assert encode_report(report.field_values()) == bytes(raw)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2 * REPORT_SIZE).filter(lambda n: n != REPORT_SIZE))
def test_every_other_length_is_rejected(length: int) -> None:
    with pytest.raises(EvidenceFieldError) as info:
        SnpReport.from_bytes(bytes(length))
    assert info.value.check == "snp.parse.length"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.sampled_from([0x02, 0x04, 0x16]))
def test_der_helpers_raise_only_parse_errors(data: bytes, tag: int) -> None:
    try:
        _der_tlv(data, tag, "x")
        _der_small_uint(data, "x")
    except EvidenceFieldError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_certificate_loader_raises_only_parse_errors(data: bytes) -> None:
    for blob in (data, b"-----BEGIN CERTIFICATE-----\n" + data):
        with contextlib.suppress(EvidenceFieldError):
            load_certificates(blob)


_COMPONENT = st.integers(0, 255)


@settings(max_examples=300, deadline=None)
@given(
    st.tuples(_COMPONENT, _COMPONENT, _COMPONENT, _COMPONENT),
    st.tuples(_COMPONENT, _COMPONENT, _COMPONENT, _COMPONENT),
)
def test_tcb_order_is_per_component(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    names = ("bootloader", "tee", "snp", "microcode")
    low, high = dict(zip(names, a, strict=True)), dict(zip(names, b, strict=True))
    assert (tcb_components_le(low, high) is None) == all(x <= y for x, y in zip(a, b, strict=True))


def test_tcb_order_where_u64_comparison_would_wrongly_pass() -> None:
    # Microcode is the top byte on Milan: a packed comparison says 0x45.. > 0x44..,
    # but the SNP level went down from 8 to 5.
    minimum = TcbVersion(Product.MILAN, bootloader=2, tee=0, snp=8, microcode=0x44)
    actual = TcbVersion(Product.MILAN, bootloader=2, tee=0, snp=5, microcode=0x45)
    assert actual.encode() > minimum.encode()
    assert tcb_components_le(minimum.components(), actual.components()) == "snp"


@pytest.fixture(scope="module")
def permissive() -> SnpPolicy:
    return SnpPolicy.baseline().with_changes(
        guest_policy=dict.fromkeys(GUEST_POLICY_FLAGS, ANY),
        platform_info=dict.fromkeys(PLATFORM_INFO_BITS, ANY),
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(flags=st.integers(0, (1 << 26) - 1))
def test_debug_bit_always_rejects(
    flags: int, sim: SimAmdChain, sim_trust: AmdTrust, permissive: SnpPolicy
) -> None:
    policy_value = (flags | (1 << 17) | (1 << POLICY_BIT_DEBUG)) & ~(1 << 18)
    report = SnpReport.from_bytes(sim.build_report(policy=policy_value))
    with pytest.raises(VerificationError) as info:
        verify_snp(report, vcek=sim.vcek.cert, anchors=sim_trust, policy=permissive, now=SIM_TIME)
    assert info.value.check == "snp.policy.debug"
