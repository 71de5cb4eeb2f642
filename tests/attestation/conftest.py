"""Shared fixtures: the real SEV-SNP vectors and one simulated AMD chain per session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from arx.attestation.cmd_verify import decode_evidence
from arx.attestation.policy import ANY, SnpPolicy
from arx.attestation.snp import Product, SnpReport, load_certificates
from arx.attestation.snp_sim import SimAmdChain
from arx.attestation.snp_verify import AmdTrust

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "snp"

# Inside the validity of every real certificate here, including the VLEK
# (2024-12-10 .. 2025-12-10).
VECTOR_TIME = datetime(2025, 6, 1, tzinfo=UTC)
SIM_TIME = datetime(2025, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Vector:
    name: str
    report_path: Path
    cert_path: Path
    # Starting from the baseline, each step is the check the policy so far
    # rejects the report with, and the explicit allowance that clears it
    # (None: no policy setting can clear it). After the last allowance the
    # policy accepts the report.
    steps: tuple[tuple[str, dict[str, object] | None], ...]

    @property
    def baseline_check(self) -> str:
        return self.steps[0][0]

    @property
    def allow(self) -> dict[str, object] | None:
        """All allowances together, or None if some check has none."""
        merged: dict[str, object] = {}
        for _, change in self.steps:
            if change is None:
                return None
            merged.update(change)
        return merged

    @property
    def raw(self) -> bytes:
        return decode_evidence(self.report_path.read_bytes())

    @property
    def report(self) -> SnpReport:
        return SnpReport.from_bytes(self.raw)

    @property
    def cert(self) -> x509.Certificate:
        return load_certificates(self.cert_path.read_bytes())[0]


def _alias_any() -> dict[str, object]:
    flags = dict(SnpPolicy.baseline().platform_info)
    flags["alias_check_complete"] = ANY
    return {"platform_info": flags}


ALIAS = ("snp.platform_info.alias_check_complete", _alias_any())
PROVISIONAL = ("snp.tcb.committed", {"allow_provisional_firmware": True})


VECTORS_TABLE = (
    Vector(
        "go-sev-guest/attestation.bin",
        VECTORS / "go-sev-guest" / "attestation.bin",
        VECTORS / "go-sev-guest" / "vcek.testcer",
        (("snp.policy.debug", None),),
    ),
    Vector(
        "trustee/test-report.bin",
        VECTORS / "trustee" / "test-report.bin",
        VECTORS / "trustee" / "test-vcek.der",
        # CURRENT_TCB microcode 206 is above COMMITTED_TCB microcode 115.
        (ALIAS, PROVISIONAL),
    ),
    Vector(
        "trustee/test-vlek-report.bin",
        VECTORS / "trustee" / "test-vlek-report.bin",
        VECTORS / "trustee" / "test-vlek.der",
        # VMPL 1; CURRENT_TCB microcode 220 is above COMMITTED_TCB microcode 219.
        (("snp.vmpl", {"vmpl": frozenset({0, 1})}), PROVISIONAL),
    ),
    Vector(
        "virtee-sev/report_milan.hex",
        VECTORS / "virtee-sev" / "report_milan.hex",
        VECTORS / "virtee-sev" / "vcek_milan.der",
        (ALIAS,),
    ),
)


@pytest.fixture(scope="session")
def amd() -> AmdTrust:
    return AmdTrust.pinned()


@pytest.fixture(scope="session")
def sim() -> SimAmdChain:
    return SimAmdChain.generate(Product.MILAN)


@pytest.fixture(scope="session")
def sim_trust(sim: SimAmdChain) -> AmdTrust:
    return sim.trust()
