"""The result of a successful verification, shared by every evidence kind.

A ``VerifiedEvidence`` exists only once every check has passed: verifiers
return it or raise, and nothing else constructs it outside the verifiers and
their tests. Callers therefore hold either parsed-but-unverified evidence (a
kind-specific frozen dataclass) or this, and the type says which.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

EvidenceKind = Literal["snp", "tdx", "sgx", "sim", "none"]


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedEvidence:
    """Claims that a verifier vouches for.

    ``measurement`` is MEASUREMENT (SNP), MRTD (TDX) or MRENCLAVE (SGX);
    ``report_data`` is the full 64-byte REPORT_DATA; ``signer`` names the key
    that signed the evidence and the chain it chains to (for example
    ``"VCEK (Milan)"``); ``tcb`` holds the kind's TCB components by name;
    ``details`` holds further kind-specific claims for display and ``--json``.
    """

    kind: EvidenceKind
    measurement: bytes
    report_data: bytes
    debug: bool
    signer: str
    tcb: Mapping[str, int] = field(default_factory=dict)
    tcb_status: str | None = None
    advisories: tuple[str, ...] = ()
    chip_id: bytes | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; bytes become lowercase hex."""

        def conv(value: Any) -> Any:
            if isinstance(value, bytes | bytearray):
                return bytes(value).hex()
            if isinstance(value, Mapping):
                return {str(k): conv(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [conv(v) for v in value]
            return value

        return {
            "kind": self.kind,
            "measurement": self.measurement.hex(),
            "report_data": self.report_data.hex(),
            "debug": self.debug,
            "signer": self.signer,
            "tcb": dict(self.tcb),
            "tcb_status": self.tcb_status,
            "advisories": list(self.advisories),
            "chip_id": None if self.chip_id is None else self.chip_id.hex(),
            "details": conv(self.details),
        }
