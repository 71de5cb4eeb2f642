"""Azure's HCL-wrapped SEV-SNP report: parsing and the REPORT_DATA binding.

An Azure confidential VM's paravisor (the "HCL") publishes, in vTPM NV index
0x01400001, an HCL report: a 32-byte header, the 1184-byte SNP report, then
"runtime data" whose variable part (a JSON document of runtime claims, with
the vTPM attestation key) is hashed into the first bytes of REPORT_DATA. The
layout below follows what Confidential Containers' Trustee (az-snp-vtpm) and
Microsoft's azure-cvm-tooling read; Microsoft does not publish it as a
specification, so it is checked strictly and documented in
docs/attestation.md together with what is not checked.

Header (little-endian): "HCLA", version (1), total size of header + report +
runtime data, request type (2 = SNP), 16 reserved bytes.
Runtime data: data size (20 + variable size), version (1), report type (2 =
SNP), hash type (1 SHA-256, 2 SHA-384, 3 SHA-512), variable data size, then
the variable data. Any bytes after it are padding and must be zero.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography import x509

from arx.attestation.claims import VerifiedEvidence
from arx.attestation.policy import SnpPolicy
from arx.attestation.snp import REPORT_DATA_SIZE, REPORT_SIZE, SnpReport
from arx.attestation.snp_verify import AmdTrust, verify_snp
from arx.errors import EvidenceFieldError

HCL_MAGIC: Final = b"HCLA"
HCL_HEADER: Final = struct.Struct("<4sIII16s")
HCL_VERSION: Final = 1
HCL_REQUEST_TYPE_SNP: Final = 2
RUNTIME_HEADER: Final = struct.Struct("<IIIII")
RUNTIME_VERSION: Final = 1
RUNTIME_REPORT_TYPE_SNP: Final = 2
HASH_TYPES: Final[Mapping[int, str]] = {1: "sha256", 2: "sha384", 3: "sha512"}
REPORT_OFFSET: Final = HCL_HEADER.size
RUNTIME_OFFSET: Final = REPORT_OFFSET + REPORT_SIZE
MAX_HCL_SIZE: Final = 64 * 1024


def _fail(message: str) -> EvidenceFieldError:
    return EvidenceFieldError("snp.hcl.format", message)


@dataclass(frozen=True, slots=True, kw_only=True)
class HclReport:
    """A structurally valid HCL report (not yet verified)."""

    report: SnpReport
    hash_name: str
    runtime_claims: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> HclReport:
        if len(data) < RUNTIME_OFFSET + RUNTIME_HEADER.size or len(data) > MAX_HCL_SIZE:
            raise _fail(f"an HCL report cannot be {len(data)} bytes long")
        magic, version, total, request_type, reserved = HCL_HEADER.unpack_from(data, 0)
        if magic != HCL_MAGIC:
            raise _fail("the HCL report does not start with 'HCLA'")
        if version != HCL_VERSION or request_type != HCL_REQUEST_TYPE_SNP:
            raise _fail(f"HCL version {version} / request type {request_type} is not 1 / 2 (SNP)")
        if any(reserved):
            raise _fail("the HCL header's reserved bytes are not zero")
        report = SnpReport.from_bytes(data[REPORT_OFFSET:RUNTIME_OFFSET])
        size, rt_version, report_type, hash_type, var_size = RUNTIME_HEADER.unpack_from(
            data, RUNTIME_OFFSET
        )
        start = RUNTIME_OFFSET + RUNTIME_HEADER.size
        end = start + var_size
        if rt_version != RUNTIME_VERSION or report_type != RUNTIME_REPORT_TYPE_SNP:
            raise _fail("the runtime data's version or report type is not 1 / 2 (SNP)")
        if hash_type not in HASH_TYPES:
            raise _fail(f"unknown runtime data hash type {hash_type}")
        if size != RUNTIME_HEADER.size + var_size or end > len(data):
            raise _fail("the runtime data's sizes disagree with each other or the file")
        if total != RUNTIME_OFFSET + size:
            raise _fail("the HCL header's size disagrees with its content")
        if any(data[end:]):
            raise _fail("the padding after the runtime data is not zero")
        return cls(report=report, hash_name=HASH_TYPES[hash_type], runtime_claims=data[start:end])

    def expected_report_data(self) -> bytes:
        """REPORT_DATA as the paravisor must have set it: H(runtime claims), zero-padded."""
        digest = hashlib.new(self.hash_name, self.runtime_claims).digest()
        return digest + bytes(REPORT_DATA_SIZE - len(digest))


def is_hcl_report(data: bytes) -> bool:
    return data[:4] == HCL_MAGIC


def verify_hcl(
    hcl: HclReport,
    *,
    vcek: x509.Certificate,
    anchors: AmdTrust,
    policy: SnpPolicy,
    now: datetime,
    crl: x509.CertificateRevocationList | None = None,
    presented_chain: tuple[x509.Certificate, ...] | list[x509.Certificate] = (),
) -> VerifiedEvidence:
    """Verify the inner SNP report completely and its binding to the runtime claims.

    A REPORT_DATA mismatch fails as ``snp.report_data``. The runtime claims
    are returned, unjudged, in ``details["hcl_runtime_claims"]``.
    """
    result = verify_snp(
        hcl.report,
        vcek=vcek,
        anchors=anchors,
        policy=policy,
        now=now,
        crl=crl,
        expected_report_data=hcl.expected_report_data(),
        presented_chain=presented_chain,
    )
    details = dict(result.details)
    details["form"] = "azure-hcl"
    details["hcl_runtime_claims"] = hcl.runtime_claims.decode("utf-8", errors="replace")
    return dataclasses.replace(result, details=details)
