"""One violation per check: each case breaks exactly one check and must fail with its id.

Reports are built and re-signed with a simulated AMD chain that has AMD's
certificate profile, so that every check after the signature is reachable.
A final test proves the matrix names every check id the verifier can raise.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from arx.attestation.policy import ANY, GUEST_POLICY_FLAGS, SnpPolicy
from arx.attestation.snp import (
    PLATFORM_INFO_BITS,
    REPORT_LAYOUT,
    FieldKind,
    Product,
    SigningKey,
    SnpReport,
    TcbVersion,
)
from arx.attestation.snp_sim import (
    DEFAULT_PLATFORM_INFO,
    DEFAULT_POLICY,
    SimAmdChain,
    SimVek,
)
from arx.attestation.snp_verify import AMD_PSS, AmdTrust, ProductAnchors, verify_snp
from arx.errors import EvidenceFieldError, VerificationError

from .conftest import SIM_TIME

SRC = Path(__file__).resolve().parents[2] / "src" / "arx" / "attestation"


@dataclass
class Case:
    """One violation: how to build the report, the policy and the call."""

    check: str
    report: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    # Receives (chain, kwargs) and may replace the VEK, anchors, CRL, time...
    setup: Callable[[SimAmdChain, dict[str, Any]], None] | None = None


def _other_rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def _policy_flag(table: str, name: str, value: object) -> dict[str, Any]:
    flags = dict(getattr(SnpPolicy.baseline(), table))
    flags[name] = value
    return {table: flags}


def _guest_policy_case(name: str, bit: int) -> Case:
    """Require the opposite of what the default report shows for this bit."""
    is_set = bool(DEFAULT_POLICY >> bit & 1)
    return Case(f"snp.policy.{name}", policy=_policy_flag("guest_policy", name, not is_set))


def _platform_case(name: str, bit: int) -> Case:
    is_set = bool(DEFAULT_PLATFORM_INFO >> bit & 1)
    return Case(f"snp.platform_info.{name}", policy=_policy_flag("platform_info", name, not is_set))


def _tcb(chain: SimAmdChain, **changes: int) -> TcbVersion:
    base = chain.default_tcb()
    values = {**base.components(), **changes}
    return TcbVersion(chain.product, **values)


def _reserved_cases() -> list[Case]:
    cases = []
    for f in REPORT_LAYOUT:
        if f.kind is FieldKind.RESERVED:
            cases.append(
                Case("snp.parse.reserved", report={"patch": {f.offset + f.size - 1: b"\x01"}})
            )
    # Mitigation vectors are reserved before version 5; R's top bytes are always zero.
    cases.append(Case("snp.parse.reserved", report={"launch_mit_vector": 1}))
    cases.append(Case("snp.parse.reserved", report={"after_signing": {0x2A0 + 71: b"\x01"}}))
    return cases


def _crl_setup(**kwargs: Any) -> Callable[[SimAmdChain, dict[str, Any]], None]:
    def setup(c: SimAmdChain, call: dict[str, Any]) -> None:
        extra = {k: (v(c) if callable(v) else v) for k, v in kwargs.items()}
        call["crl"] = c.crl(**extra)

    return setup


def _foreign_issuer_crl(c: SimAmdChain, call: dict[str, Any]) -> None:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(c.ask.subject)
        .last_update(SIM_TIME - timedelta(days=1))
        .next_update(SIM_TIME + timedelta(days=1))
    )
    call["crl"] = builder.sign(c.ask_key, hashes.SHA384(), rsa_padding=AMD_PSS)


def _other_key(c: SimAmdChain, call: dict[str, Any]) -> None:
    """Sign with a key that is not the VCEK's but present the VCEK."""
    call["sign_with"] = SimVek(
        SigningKey.VCEK,
        ec.generate_private_key(ec.SECP384R1()),
        c.vcek.cert,
        c.vcek.tcb,
        c.vcek.hwid,
    )


def _bad_anchors(c: SimAmdChain, call: dict[str, Any]) -> None:
    call["anchors_factory"] = lambda: AmdTrust(
        [ProductAnchors(product=c.product, ark=c.ark, ask=c.asvk, asvk=c.ask)], name="swapped"
    )


def _at(delta: timedelta) -> Callable[[SimAmdChain, dict[str, Any]], None]:
    def setup(c: SimAmdChain, call: dict[str, Any]) -> None:
        call["now"] = call["now"] + delta

    return setup


def _presented_foreign(c: SimAmdChain, call: dict[str, Any]) -> None:
    call["presented_chain"] = [AmdTrust.pinned().get(Product.MILAN).ark]  # type: ignore[union-attr]


def _real_anchors(c: SimAmdChain, call: dict[str, Any]) -> None:
    call["anchors_factory"] = AmdTrust.pinned


CASES: list[Case] = [
    # Parsing (ATTESTATION.md 1.1 items 1-5).
    Case(
        "snp.parse.length", report={"patch": {}}, setup=lambda c, call: call.update(trailing=b"\0")
    ),
    Case("snp.parse.version", report={"version": 6}),
    Case("snp.parse.version", report={"version": 1}),
    *_reserved_cases(),
    Case("snp.parse.policy_reserved", report={"policy": DEFAULT_POLICY & ~(1 << 17)}),
    Case("snp.parse.policy_reserved", report={"policy": DEFAULT_POLICY | (1 << 26)}),
    Case(
        "snp.parse.platform_info_reserved",
        report={"platform_info": DEFAULT_PLATFORM_INFO | (1 << 6)},
    ),
    Case(
        "snp.parse.platform_info_reserved",
        report={"platform_info": DEFAULT_PLATFORM_INFO | (1 << 8)},
    ),
    Case("snp.parse.signer_info_reserved", report={"signer_info": 1 << 5}),
    Case("snp.parse.signing_key", report={"signer_info": 2 << 2}),
    Case("snp.parse.signing_key", report={"signer_info": 7 << 2}),
    Case("snp.parse.signature_algo", report={"signature_algo": 2}),
    # Anchors, chain and certificate profile (items 7, 8).
    Case("snp.anchors", setup=_bad_anchors),
    Case("snp.cert.issuer", setup=_real_anchors),
    Case(
        "snp.cert.signature",
        setup=lambda c, call: call.update(vek=c.issue_vek(issuer_key=_other_rsa())),
    ),
    Case(
        "snp.cert.profile",
        setup=lambda c, call: call.update(vek=c.issue_vek(subject_cn="SEV-VLEK")),
    ),
    Case(
        "snp.cert.profile",
        setup=lambda c, call: call.update(
            vek=c.issue_vek(key=ec.generate_private_key(ec.SECP256R1()))
        ),
    ),
    Case(
        "snp.cert.extension",
        setup=lambda c, call: call.update(vek=c.issue_vek(omit=frozenset({"hwid"}))),
    ),
    Case(
        "snp.cert.extension",
        setup=lambda c, call: call.update(vek=c.issue_vek(omit=frozenset({"snp"}))),
    ),
    Case(
        "snp.cert.extension",
        setup=lambda c, call: call.update(vek=c.issue_vek(omit=frozenset({"product_name"}))),
    ),
    Case(
        "snp.cert.extension",
        setup=lambda c, call: call.update(vek=c.issue_vek(product_name="Rome-B0")),
    ),
    Case(
        "snp.product.cert",
        setup=lambda c, call: call.update(vek=c.issue_vek(product_name="Genoa-B1")),
    ),
    Case("snp.cert.validity", setup=_at(timedelta(days=8 * 365))),
    Case("snp.cert.validity", setup=_at(-timedelta(days=2 * 365))),
    Case("snp.cert.untrusted", setup=_presented_foreign),
    # Revocation (item 10).
    Case("snp.crl.issuer", setup=_foreign_issuer_crl),
    Case("snp.crl.signature", setup=_crl_setup(signer=lambda c: _other_rsa())),
    Case("snp.crl.stale", setup=_crl_setup(next_update=SIM_TIME - timedelta(days=1))),
    Case("snp.crl.stale", setup=_crl_setup(last_update=SIM_TIME + timedelta(days=1))),
    Case("snp.crl.revoked", setup=_crl_setup(revoked_serials=lambda c: (c.ask.serial_number,))),
    Case("snp.crl.missing", policy={"require_crl": True}),
    # Signature (item 6).
    Case("snp.signature", setup=_other_key),
    # Product binding (item 9).
    Case("snp.product.unknown", report={"cpuid_fam_id": 0x17}),
    Case("snp.product.mismatch", report={"cpuid_fam_id": 0x19, "cpuid_mod_id": 0x11}),
    # TCB (items 11-13).
    Case("snp.tcb.reserved", report={"current_tcb": lambda c: c.default_tcb().encode() | 1 << 16}),
    Case("snp.tcb.cert", report={"reported_tcb": lambda c: _tcb(c, snp=23)}),
    Case(
        "snp.tcb.current",
        report={
            "current_tcb": lambda c: _tcb(c, microcode=200),
            "committed_tcb": lambda c: _tcb(c, microcode=200),
        },
    ),
    Case(
        "snp.tcb.minimum",
        policy={"min_tcb": {"bootloader": 0, "tee": 0, "snp": 25, "microcode": 0, "fmc": 0}},
    ),
    Case(
        "snp.tcb.launch_minimum",
        policy={"min_launch_tcb": {"bootloader": 5, "tee": 0, "snp": 0, "microcode": 0, "fmc": 0}},
    ),
    Case("snp.tcb.committed", report={"committed_tcb": lambda c: _tcb(c, microcode=218)}),
    Case(
        "snp.tcb.committed",
        report={"committed_tcb": lambda c: _tcb(c, microcode=220)},
        policy={"allow_provisional_firmware": True},
    ),
    Case("snp.firmware.committed", report={"committed_build": 20}),
    Case(
        "snp.firmware.committed",
        report={"committed_build": 22},
        policy={"allow_provisional_firmware": True},
    ),
    Case("snp.firmware.api", policy={"min_firmware_api": (1, 56)}),
    Case("snp.firmware.build", policy={"min_firmware_build": 22}),
    # Guest policy (item 14).
    Case("snp.policy.debug", report={"policy": DEFAULT_POLICY | (1 << 19)}),
    Case("snp.policy.migrate_ma", report={"policy": DEFAULT_POLICY | (1 << 18)}),
    Case("snp.policy.cxl_allow", report={"policy": DEFAULT_POLICY | (1 << 21)}),
    *[_guest_policy_case(name, bit) for name, bit in GUEST_POLICY_FLAGS.items()],
    Case("snp.policy.abi", policy={"min_policy_abi": (1, 0)}),
    Case("snp.report.version", policy={"min_report_version": 4}),
    Case("snp.product.policy", policy={"products": frozenset({Product.GENOA})}),
    Case("snp.signer.policy", policy={"signing_keys": frozenset({SigningKey.VLEK})}),
    # VMPL, platform info, mitigations (items 15-17).
    Case("snp.vmpl", report={"vmpl": 1}),
    *[_platform_case(name, bit) for name, bit in PLATFORM_INFO_BITS.items()],
    Case("snp.mitigation", policy={"required_mitigations": 1}),
    Case(
        "snp.mitigation",
        report={"version": 5, "launch_mit_vector": 1, "current_mit_vector": 2},
        policy={"required_mitigations": 1},
    ),
    # Identity and binding (items 18-22).
    Case("snp.measurement", policy={"measurement": frozenset({b"\x01" * 48})}),
    Case("snp.measurement.denied", policy={"measurement_denylist": frozenset({bytes(range(48))})}),
    Case("snp.host_data", report={"host_data": b"\x01" * 32}),
    Case("snp.family_id", policy={"family_id": frozenset({b"\x01" * 16})}),
    Case("snp.image_id", policy={"image_id": frozenset({b"\x01" * 16})}),
    Case("snp.id_key_digest", policy={"id_key_digest": frozenset({b"\x01" * 48})}),
    Case("snp.author_key_digest", policy={"author_key_digest": frozenset({b"\x01" * 48})}),
    Case(
        "snp.author_key_digest",
        report={"signer_info": 1, "author_key_digest": b"\x02" * 48},
        policy={"author_key_digest": frozenset({b"\x01" * 48})},
    ),
    Case("snp.guest_svn", policy={"min_guest_svn": 1}),
    Case("snp.chip_id", report={"chip_id": b"\x01" * 64}),
    Case("snp.chip_id.masked", report={"chip_id": bytes(64)}),
    Case("snp.chip_id.policy", policy={"chip_id": frozenset({b"\x01" * 64})}),
    Case("snp.report_data", setup=lambda c, call: call.update(expected_report_data=b"\x01" * 64)),
]


def _run(chain: SimAmdChain, trust: AmdTrust, case: Case) -> None:
    call: dict[str, Any] = {"now": SIM_TIME, "vek": chain.vcek}
    if case.setup is not None:
        case.setup(chain, call)
    fields = {k: (v(chain) if callable(v) else v) for k, v in case.report.items()}
    vek: SimVek = call.pop("vek")
    signer: SimVek = call.pop("sign_with", vek)
    after = fields.pop("after_signing", {})
    raw = bytearray(chain.build_report(signer, **fields) + call.pop("trailing", b""))
    for offset, value in after.items():
        raw[offset : offset + len(value)] = value
    anchors = call.pop("anchors_factory", lambda: trust)()
    policy = SnpPolicy.baseline().with_changes(**case.policy)
    report = SnpReport.from_bytes(bytes(raw))
    verify_snp(report, vcek=vek.cert, anchors=anchors, policy=policy, **call)


def test_untouched_report_passes(sim: SimAmdChain, sim_trust: AmdTrust) -> None:
    _run(sim, sim_trust, Case("none"))
    _run(sim, sim_trust, Case("none", setup=_crl_setup(), policy={"require_crl": True}))


def test_untouched_vlek_report_passes(sim: SimAmdChain, sim_trust: AmdTrust) -> None:
    vlek = sim.issue_vek(SigningKey.VLEK)
    report = SnpReport.from_bytes(sim.build_report(vlek))
    result = verify_snp(
        report, vcek=vlek.cert, anchors=sim_trust, policy=SnpPolicy.baseline(), now=SIM_TIME
    )
    assert result.signer.startswith("VLEK (Milan)")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.check)
def test_one_violation(case: Case, sim: SimAmdChain, sim_trust: AmdTrust) -> None:
    with pytest.raises((VerificationError, EvidenceFieldError)) as info:
        _run(sim, sim_trust, case)
    assert info.value.check == case.check, str(info.value)


def _check_ids_in_source() -> set[str]:
    ids: set[str] = set()
    for name in ("snp.py", "snp_verify.py"):
        text = (SRC / name).read_text()
        ids.update(re.findall(r'"(snp\.[a-z_.0-9]+)"', text))
    ids.update(f"snp.policy.{n}" for n in GUEST_POLICY_FLAGS)
    ids.update(f"snp.platform_info.{n}" for n in PLATFORM_INFO_BITS)
    # Raised only for certificates that do not parse (the CLI's input stage).
    ids.discard("snp.cert.parse")
    return ids


def test_matrix_covers_every_check_id() -> None:
    covered = {c.check for c in CASES}
    missing = _check_ids_in_source() - covered
    assert not missing, f"checks without a one-violation case: {sorted(missing)}"


def test_turin_layout_round_trip() -> None:
    """A Turin chain: FMC in byte 0 of TCB_VERSION, 8-byte hwID, v3 CPUID 1Ah."""
    chain = SimAmdChain.generate(Product.TURIN)
    report = SnpReport.from_bytes(chain.build_report())
    result = verify_snp(
        report,
        vcek=chain.vcek.cert,
        anchors=chain.trust(),
        policy=SnpPolicy.baseline(),
        now=SIM_TIME,
    )
    assert result.tcb == chain.vcek.tcb.components()
    assert "fmc" in result.tcb
    # A Milan-layout decoding of the same bytes would disagree with the certificate.
    assert TcbVersion.decode(report.reported_tcb, Product.TURIN) == chain.vcek.tcb
    # Version 2 cannot carry a Turin report (its TCB layout needs CPUID).
    v2 = SnpReport.from_bytes(
        chain.build_report(version=2, cpuid_fam_id=None, cpuid_mod_id=None, cpuid_step=None)
    )
    with pytest.raises(VerificationError) as info:
        verify_snp(
            v2,
            vcek=chain.vcek.cert,
            anchors=chain.trust(),
            policy=SnpPolicy.baseline(),
            now=SIM_TIME,
        )
    assert info.value.check == "snp.product.mismatch"


def test_genoa_report_with_milan_chain_is_rejected(sim: SimAmdChain, sim_trust: AmdTrust) -> None:
    """Cross-product confusion: the CPUID says Genoa, the chain is Milan's."""
    raw = sim.build_report(cpuid_mod_id=0x11)
    with pytest.raises(VerificationError) as info:
        verify_snp(
            SnpReport.from_bytes(raw),
            vcek=sim.vcek.cert,
            anchors=sim_trust,
            policy=SnpPolicy.baseline(),
            now=SIM_TIME,
        )
    assert (info.value.check, info.value.expected, info.value.actual) == (
        "snp.product.mismatch",
        "Milan",
        "Genoa",
    )


def test_vcek_of_another_chip_is_rejected(sim: SimAmdChain, sim_trust: AmdTrust) -> None:
    other = sim.issue_vek()
    raw = sim.build_report()
    with pytest.raises(VerificationError) as info:
        verify_snp(
            SnpReport.from_bytes(raw),
            vcek=other.cert,
            anchors=sim_trust,
            policy=SnpPolicy.baseline(),
            now=SIM_TIME,
        )
    assert info.value.check == "snp.signature"
    # Signed by the other chip, but claiming the first chip's CHIP_ID.
    raw = sim.build_report(other, chip_id=sim.vcek.hwid)
    with pytest.raises(VerificationError) as info:
        verify_snp(
            SnpReport.from_bytes(raw),
            vcek=other.cert,
            anchors=sim_trust,
            policy=SnpPolicy.baseline(),
            now=SIM_TIME,
        )
    assert info.value.check == "snp.chip_id"


def test_sim_chain_is_not_trusted_by_the_pinned_anchors(sim: SimAmdChain) -> None:
    raw = sim.build_report()
    with pytest.raises(VerificationError) as info:
        verify_snp(
            SnpReport.from_bytes(raw),
            vcek=sim.vcek.cert,
            anchors=AmdTrust.pinned(),
            policy=SnpPolicy.baseline(),
            now=SIM_TIME,
        )
    assert info.value.check == "snp.cert.issuer"


def test_masked_chip_id_accepted_only_when_allowed(sim: SimAmdChain, sim_trust: AmdTrust) -> None:
    report = SnpReport.from_bytes(sim.build_report(chip_id=bytes(64)))
    policy = SnpPolicy.baseline().with_changes(allow_masked_chip_id=True)
    result = verify_snp(report, vcek=sim.vcek.cert, anchors=sim_trust, policy=policy, now=SIM_TIME)
    assert result.chip_id is None


def test_any_values_accept(sim: SimAmdChain, sim_trust: AmdTrust) -> None:
    """The explicit ANY is honoured where the baseline constrains a value."""
    report = SnpReport.from_bytes(sim.build_report(vmpl=2, host_data=b"\x07" * 32))
    policy = SnpPolicy.baseline().with_changes(vmpl=ANY, host_data=ANY)
    verify_snp(report, vcek=sim.vcek.cert, anchors=sim_trust, policy=policy, now=SIM_TIME)


def test_chain_pem_round_trip(sim: SimAmdChain) -> None:
    again = SimAmdChain.from_pem(sim.to_pem())
    assert again.vcek.cert == sim.vcek.cert
    assert again.ark == sim.ark
    report = SnpReport.from_bytes(again.build_report())
    verify_snp(
        report, vcek=sim.vcek.cert, anchors=sim.trust(), policy=SnpPolicy.baseline(), now=SIM_TIME
    )
