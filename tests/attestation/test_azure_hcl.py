"""The Azure HCL-wrapped SNP report (Trustee's az-snp-vtpm vector)."""

from __future__ import annotations

import contextlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arx.attestation.azure_hcl import RUNTIME_OFFSET, HclReport, verify_hcl
from arx.attestation.policy import ANY, SnpPolicy
from arx.attestation.snp import load_certificates
from arx.attestation.snp_verify import AmdTrust
from arx.errors import EvidenceFieldError, EvidenceParseError, VerificationError

from .conftest import VECTOR_TIME, VECTORS

HCL = VECTORS / "trustee" / "az-snp-vtpm" / "hcl-report.bin"
BUNDLE = VECTORS / "trustee" / "az-snp-vtpm" / "vcek.pem"


def _policy() -> SnpPolicy:
    flags = dict(SnpPolicy.baseline().platform_info)
    flags["alias_check_complete"] = ANY
    return SnpPolicy.baseline().with_changes(platform_info=flags, allow_provisional_firmware=True)


def _verify(data: bytes, policy: SnpPolicy) -> object:
    vcek, *chain = load_certificates(BUNDLE.read_bytes())
    return verify_hcl(
        HclReport.from_bytes(data),
        vcek=vcek,
        anchors=AmdTrust.pinned(),
        policy=policy,
        now=VECTOR_TIME,
        presented_chain=chain,
    )


def test_hcl_report_binds_runtime_claims() -> None:
    hcl = HclReport.from_bytes(HCL.read_bytes())
    assert hcl.hash_name == "sha256"
    assert hcl.report.report_data == hcl.expected_report_data()
    assert json.loads(hcl.runtime_claims)["keys"][0]["kid"] == "HCLAkPub"


def test_baseline_rejects_then_explicit_policy_accepts() -> None:
    data = HCL.read_bytes()
    with pytest.raises(VerificationError) as info:
        _verify(data, SnpPolicy.baseline())
    assert info.value.check == "snp.platform_info.alias_check_complete"
    result = _verify(data, _policy())
    assert result.details["form"] == "azure-hcl"  # type: ignore[attr-defined]


def test_altered_runtime_claims_break_the_binding() -> None:
    data = bytearray(HCL.read_bytes())
    claims_start = RUNTIME_OFFSET + 20
    data[claims_start + 2] ^= 0x01  # inside the JSON, outside the signed report
    with pytest.raises(VerificationError) as info:
        _verify(bytes(data), _policy())
    assert info.value.check == "snp.report_data"


@pytest.mark.parametrize(
    ("offset", "value"),
    [
        (0, b"X"),
        (4, struct.pack("<I", 2)),
        (12, struct.pack("<I", 1)),
        (20, b"\x01"),
        (RUNTIME_OFFSET + 12, struct.pack("<I", 9)),
        (-1, b"\x01"),
    ],
)
def test_malformed_wrapper_is_rejected(offset: int, value: bytes) -> None:
    data = bytearray(HCL.read_bytes())
    start = offset % len(data)
    data[start : start + len(value)] = value
    with pytest.raises(EvidenceFieldError) as info:
        HclReport.from_bytes(bytes(data))
    assert info.value.check == "snp.hcl.format"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_raise_only_parse_errors(tail: bytes) -> None:
    with contextlib.suppress(EvidenceParseError):
        HclReport.from_bytes(b"HCLA" + tail)


def test_cli_accepts_hcl_with_policy(tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(
        "[snp]\nallow_provisional_firmware = true\n"
        "[snp.platform_info]\nalias_check_complete = 'any'\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "arx",
            "verify",
            str(HCL),
            "--certs",
            str(BUNDLE),
            "--policy",
            str(policy),
            "--json",
            "--at",
            "2025-06-01",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["verdict"] == "accepted"
    assert out["details"]["form"] == "azure-hcl"
