"""``arx verify``: verify attestation evidence offline.

Exit codes: 0 the evidence is accepted; 1 it is rejected (a check failed or
it is malformed); 125 arx cannot run (an input file cannot be read, the
policy file is wrong, or the verifier for the kind is not in this build);
2 the command line is wrong.

For SEV-SNP, ``--certs`` must include the VCEK or VLEK (DER or PEM). Any ASK,
ASVK or ARK also given is only compared with the pinned AMD certificate and
never trusted. The trust anchors are always the pinned AMD set.
"""

from __future__ import annotations

import argparse
import binascii
import importlib
import json
import string
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography import x509

from arx.attestation.azure_hcl import HclReport, is_hcl_report, verify_hcl
from arx.attestation.claims import VerifiedEvidence
from arx.attestation.policy import PolicyFile, SnpPolicy, load_policy_file
from arx.attestation.snp import REPORT_DATA_SIZE, REPORT_SIZE, SnpReport, load_certificates
from arx.attestation.snp_verify import VCEK_CN, VLEK_CN, AmdTrust, verify_snp
from arx.errors import (
    AttestationError,
    EvidenceFieldError,
    UsageError,
    VerificationError,
)

EXIT_ACCEPTED: Final = 0
EXIT_REJECTED: Final = 1
EXIT_CANNOT_RUN: Final = 125
KINDS: Final = ("snp", "tdx", "sgx")
MAX_INPUT_BYTES: Final = 16 * 1024 * 1024
"""No evidence, certificate or collateral file arx reads is anywhere near this."""

QUOTE_VERSION_SGX: Final = 3
QUOTE_VERSIONS_TDX: Final = (4, 5)
TEE_TYPE_TDX: Final = 0x81
TEE_TYPE_SGX: Final = 0x00
_HEX_DIGITS: Final = frozenset(string.hexdigits)


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _parse_report_data(text: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError("REPORT_DATA must be hex") from exc
    if len(value) != REPORT_DATA_SIZE:
        raise argparse.ArgumentTypeError(
            f"REPORT_DATA must be {REPORT_DATA_SIZE} bytes (128 hex digits)"
        )
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "evidence", metavar="EVIDENCE", help="evidence file (raw bytes or hex text)"
    )
    parser.add_argument(
        "--kind", choices=KINDS, help="evidence kind (default: guessed from the bytes)"
    )
    parser.add_argument(
        "--certs",
        metavar="FILE",
        nargs="+",
        action="extend",
        default=[],
        help="SNP: the VCEK or VLEK (DER or PEM), optionally with ASK/ARK files",
    )
    parser.add_argument("--crl", metavar="FILE", help="SNP: the ARK's CRL (DER or PEM)")
    parser.add_argument("--collateral", metavar="FILE", help="TDX/SGX: collateral JSON")
    parser.add_argument("--policy", metavar="FILE", help="policy TOML (default: the baseline)")
    parser.add_argument(
        "--report-data",
        metavar="HEX",
        type=_parse_report_data,
        help="the expected 64-byte REPORT_DATA; all 64 bytes are compared",
    )
    parser.add_argument(
        "--at",
        metavar="TIME",
        type=_parse_time,
        help="verify as of this ISO-8601 time (default: now, UTC)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _read(path: str, what: str) -> bytes:
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_INPUT_BYTES:
        raise UsageError(f"{what} {path} is larger than {MAX_INPUT_BYTES} bytes")
    return data


def decode_evidence(data: bytes) -> bytes:
    """Raw evidence bytes, or the bytes a hex text file spells out."""
    if len(data) == REPORT_SIZE:
        return data
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return data
    compact = "".join(text.split())
    if compact[:2].lower() == "0x":
        compact = compact[2:]
    if compact and len(compact) % 2 == 0 and set(compact) <= _HEX_DIGITS:
        try:
            return binascii.unhexlify(compact)
        except binascii.Error:
            return data
    return data


def sniff_kind(evidence: bytes) -> str:
    """Guess the kind: an SNP report is 1184 bytes; quotes start with a version."""
    if len(evidence) == REPORT_SIZE or is_hcl_report(evidence):
        return "snp"
    if len(evidence) >= 8:
        version = int.from_bytes(evidence[0:2], "little")
        tee_type = int.from_bytes(evidence[4:8], "little")
        if version == QUOTE_VERSION_SGX and tee_type == TEE_TYPE_SGX:
            return "sgx"
        if version in QUOTE_VERSIONS_TDX and tee_type == TEE_TYPE_TDX:
            return "tdx"
        if version in QUOTE_VERSIONS_TDX and tee_type == TEE_TYPE_SGX:
            return "sgx"
    raise UsageError("cannot tell what kind of evidence this is; pass --kind snp|tdx|sgx")


class _Rejected(Exception):
    """Carries a rejection and whatever was parsed before it."""

    def __init__(self, check: str, reason: str, *, expected: str = "", actual: str = "") -> None:
        super().__init__(reason)
        self.check = check
        self.reason = reason
        self.expected = expected
        self.actual = actual


def _verify_snp(
    args: argparse.Namespace, evidence: bytes, policy: PolicyFile, now: datetime
) -> tuple[VerifiedEvidence, SnpReport]:
    if not args.certs:
        raise UsageError("SNP evidence needs its VCEK or VLEK certificate: pass --certs FILE")
    hcl = HclReport.from_bytes(evidence) if is_hcl_report(evidence) else None
    if hcl is not None and args.report_data is not None:
        raise UsageError(
            "--report-data cannot be used with an Azure HCL report: its REPORT_DATA is "
            "the hash of its runtime claims, which arx checks"
        )
    report = hcl.report if hcl is not None else SnpReport.from_bytes(evidence)
    certs: list[x509.Certificate] = []
    for path in args.certs:
        certs.extend(load_certificates(_read(path, "certificate")))
    veks = [c for c in certs if any(a.value in (VCEK_CN, VLEK_CN) for a in c.subject)]
    if len(veks) != 1:
        raise VerificationError(
            "snp.cert.ambiguous",
            "exactly one VCEK or VLEK certificate must be given",
            expected="1",
            actual=str(len(veks)),
        )
    crl = None
    if args.crl:
        data = _read(args.crl, "CRL")
        try:
            crl = (
                x509.load_pem_x509_crl(data)
                if data.lstrip().startswith(b"-----BEGIN")
                else x509.load_der_x509_crl(data)
            )
        except ValueError as exc:
            raise VerificationError("snp.crl.parse", f"not a DER or PEM CRL: {exc}") from exc
    presented = [c for c in certs if c is not veks[0]]
    if hcl is not None:
        result = verify_hcl(
            hcl,
            vcek=veks[0],
            anchors=AmdTrust.pinned(),
            policy=policy.snp,
            now=now,
            crl=crl,
            presented_chain=presented,
        )
    else:
        result = verify_snp(
            report,
            vcek=veks[0],
            anchors=AmdTrust.pinned(),
            policy=policy.snp,
            now=now,
            crl=crl,
            expected_report_data=args.report_data,
            presented_chain=presented,
        )
    return result, report


def _verify_intel(
    args: argparse.Namespace, kind: str, evidence: bytes, policy: PolicyFile, now: datetime
) -> VerifiedEvidence:
    try:
        intel = importlib.import_module("arx.attestation.intel")
    except ModuleNotFoundError as exc:
        if exc.name not in ("arx.attestation.intel",):
            raise
        raise UsageError("tdx/sgx verification is not available in this build") from exc
    collateral = _read(args.collateral, "collateral") if args.collateral else None
    table = policy.tdx_table if kind == "tdx" else policy.sgx_table
    result: VerifiedEvidence = intel.verify_quote_file(kind, evidence, collateral, table, now)
    return result


def _human(result: VerifiedEvidence) -> str:
    lines = [f"accepted: {result.kind} evidence verified"]
    rows: list[tuple[str, Any]] = [
        ("signer", result.signer),
        ("measurement", result.measurement.hex()),
        ("report_data", result.report_data.hex()),
        ("debug", "true" if result.debug else "false"),
        ("tcb", " ".join(f"{k}={v}" for k, v in result.tcb.items()) or "-"),
    ]
    if result.tcb_status is not None:
        rows.append(("tcb_status", result.tcb_status))
    if result.advisories:
        rows.append(("advisories", ", ".join(result.advisories)))
    if result.chip_id is not None:
        rows.append(("chip_id", result.chip_id.hex()))
    for key, value in result.details.items():
        shown: Any = value
        if isinstance(value, bytes):
            shown = value.hex()
        elif isinstance(value, dict):
            shown = " ".join(f"{k}={v}" for k, v in value.items())
        rows.append((key, shown))
    width = max(len(k) for k, _ in rows)
    lines.extend(f"  {k.ljust(width)}  {v}" for k, v in rows)
    return "\n".join(lines)


def _bare(message: str, check: str) -> str:
    """The reason without the check-id prefix and the expected/actual suffix."""
    message = message.removeprefix(f"{check}: ")
    cut = message.rfind(" (expected ")
    return message[:cut] if cut > 0 and message.endswith(")") else message


def run(args: argparse.Namespace) -> int:
    now: datetime = args.at or datetime.now(UTC)
    policy = load_policy_file(args.policy) if args.policy else PolicyFile(snp=SnpPolicy.baseline())
    evidence = decode_evidence(_read(args.evidence, "evidence"))
    kind: str = args.kind or sniff_kind(evidence)

    report: SnpReport | None = None
    try:
        if kind == "snp":
            result, report = _verify_snp(args, evidence, policy, now)
        else:
            result = _verify_intel(args, kind, evidence, policy, now)
    except UsageError:
        raise
    except VerificationError as exc:
        rejection = _Rejected(
            exc.check, _bare(exc.message, exc.check), expected=exc.expected, actual=exc.actual
        )
    except EvidenceFieldError as exc:
        rejection = _Rejected(exc.check, _bare(exc.message, exc.check))
    except AttestationError as exc:
        check = str(getattr(exc, "check", "") or f"{kind}.{exc.code}")
        rejection = _Rejected(check, _bare(exc.message, check))
    else:
        if args.json:
            accepted = {"verdict": "accepted", **result.to_json()}
            print(json.dumps(accepted, sort_keys=True))
        else:
            print(_human(result))
        return EXIT_ACCEPTED

    if kind == "snp" and report is None:
        try:
            report = (
                HclReport.from_bytes(evidence).report
                if is_hcl_report(evidence)
                else SnpReport.from_bytes(evidence)
            )
        except AttestationError:
            report = None
    if args.json:
        out: dict[str, Any] = {
            "verdict": "rejected",
            "kind": kind,
            "failed_check": rejection.check,
            "reason": rejection.reason,
            "expected": rejection.expected or None,
            "actual": rejection.actual or None,
            "measurement": report.measurement.hex() if report else None,
            "report_data": report.report_data.hex() if report else None,
            "debug": report.debug if report else None,
        }
        print(json.dumps(out, sort_keys=True))
    else:
        print(f"rejected: {rejection.check}: {rejection.reason}", file=sys.stderr, end="")
        if rejection.expected or rejection.actual:
            print(
                f" (expected {rejection.expected or '?'}, got {rejection.actual or '?'})",
                file=sys.stderr,
                end="",
            )
        print(file=sys.stderr)
    return EXIT_REJECTED
