"""Intel SGX/TDX PKI helpers: the pinned root, certificate chains, CRLs, the PCK extensions.

Everything here is a pure function of its arguments (certificates, CRLs, the time ``now``).
Signatures in quotes and collateral are raw ``r || s`` (32 bytes each, big-endian) and are
converted to DER for ``cryptography``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from arx.errors import EvidenceParseError, VerificationError

ROOT_CA_RESOURCE: Final = "Intel_SGX_Provisioning_Certification_RootCA.pem"
P256_COORDINATE_SIZE: Final = 32
RAW_SIGNATURE_SIZE: Final = 64

# Intel SGX PCK certificate extensions ("Intel SGX PCK Certificate and Certificate Revocation
# List Profile Specification", section "SGX Extensions").
OID_SGX_EXTENSIONS: Final = x509.ObjectIdentifier("1.2.840.113741.1.13.1")
_SGX = "1.2.840.113741.1.13.1"
OID_PPID: Final = _SGX + ".1"
OID_TCB: Final = _SGX + ".2"
OID_PCESVN: Final = _SGX + ".2.17"
OID_CPUSVN: Final = _SGX + ".2.18"
OID_PCEID: Final = _SGX + ".3"
OID_FMSPC: Final = _SGX + ".4"
OID_SGX_TYPE: Final = _SGX + ".5"
TCB_COMPONENT_COUNT: Final = 16
FMSPC_SIZE: Final = 6
PCEID_SIZE: Final = 2


@cache
def intel_sgx_root_ca() -> x509.Certificate:
    """The Intel SGX Root CA this package pins (shipped as package data)."""
    pem = resources.files("arx.attestation.roots.intel").joinpath(ROOT_CA_RESOURCE).read_bytes()
    return x509.load_pem_x509_certificate(pem)


def raw_to_der_signature(raw: bytes) -> bytes:
    if len(raw) != RAW_SIGNATURE_SIZE:
        raise EvidenceParseError(f"ECDSA signature is {len(raw)} bytes, expected 64")
    return encode_dss_signature(
        int.from_bytes(raw[:P256_COORDINATE_SIZE], "big"),
        int.from_bytes(raw[P256_COORDINATE_SIZE:], "big"),
    )


def p256_key_from_raw(raw: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from the 64-byte ``x || y`` form used in quotes."""
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw)
    except ValueError as exc:
        raise EvidenceParseError("attestation key is not a point on P-256") from exc


def ecdsa_p256_ok(key: ec.EllipticCurvePublicKey, raw_signature: bytes, message: bytes) -> bool:
    try:
        key.verify(raw_to_der_signature(raw_signature), message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def ec_public_key(cert: x509.Certificate, check: str) -> ec.EllipticCurvePublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise VerificationError(check, "certificate key is not ECDSA P-256")
    return key


def same_cert(a: x509.Certificate, b: x509.Certificate) -> bool:
    return a.public_bytes(serialization.Encoding.DER) == b.public_bytes(serialization.Encoding.DER)


def load_pem_chain(pem: bytes, what: str) -> tuple[x509.Certificate, ...]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except (ValueError, x509.InvalidVersion) as exc:
        # InvalidVersion is not a ValueError: a certificate whose version
        # field says 6 must still be a parse error, not a crash.
        raise EvidenceParseError(f"{what}: not a PEM certificate chain") from exc
    return tuple(certs)


def _name(cert: x509.Certificate) -> str:
    """A certificate's subject for messages; names are parsed lazily and may be malformed."""
    try:
        return cert.subject.rfc4514_string()
    except ValueError:
        return "<unparsable subject>"


def verify_chain(
    chain: Sequence[x509.Certificate],
    root: x509.Certificate,
    now: datetime,
    check: str,
    *,
    length: int,
) -> None:
    """Check ``chain`` (leaf first, ending with a root) against the pinned ``root``.

    The root in the chain must be the pinned root itself: its copy travels with the evidence
    and is never trusted for its own sake. Each certificate must be signed by the next, be
    within its validity period at ``now``, and every issuer must be a CA.
    """
    if len(chain) != length:
        raise VerificationError(
            f"{check}.length",
            "wrong number of certificates",
            expected=str(length),
            actual=str(len(chain)),
        )
    if not same_cert(chain[-1], root):
        raise VerificationError(f"{check}.root", "chain does not end in the pinned Intel root")
    # Verify each link against the next; the last link is checked against the pinned root.
    links = [*chain[:-1], root]
    for child, parent in itertools.pairwise(links):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise VerificationError(
                f"{check}.signature",
                f"{_name(child)} is not signed by {_name(parent)}",
            ) from exc
        try:
            bc = parent.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound as exc:
            raise VerificationError(f"{check}.ca", "issuer has no basic constraints") from exc
        except ValueError as exc:
            # cryptography parses extensions lazily; a malformed one surfaces here.
            raise VerificationError(f"{check}.ca", "issuer has malformed extensions") from exc
        if not bc.ca:
            raise VerificationError(f"{check}.ca", "issuer is not a CA")
    for cert in links:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise VerificationError(
                f"{check}.validity",
                f"{cert.subject.rfc4514_string()} is not valid at {now.isoformat()}",
                expected=f"{cert.not_valid_before_utc.isoformat()}.."
                f"{cert.not_valid_after_utc.isoformat()}",
                actual=now.isoformat(),
            )


def verify_crl(
    crl: x509.CertificateRevocationList,
    issuer: x509.Certificate,
    now: datetime,
    check: str,
) -> None:
    """The CRL is issued and signed by ``issuer`` and current at ``now``."""
    if crl.issuer != issuer.subject:
        raise VerificationError(
            f"{check}.issuer",
            "CRL issuer is not the expected CA",
            expected=issuer.subject.rfc4514_string(),
            actual=crl.issuer.rfc4514_string(),
        )
    if not crl.is_signature_valid(ec_public_key(issuer, f"{check}.signature")):
        raise VerificationError(f"{check}.signature", "CRL signature does not verify")
    next_update = crl.next_update_utc
    if next_update is None or not crl.last_update_utc <= now <= next_update:
        raise VerificationError(
            f"{check}.freshness",
            "CRL is not current",
            expected=f"{crl.last_update_utc.isoformat()}.."
            f"{next_update.isoformat() if next_update else '?'}",
            actual=now.isoformat(),
        )


def check_not_revoked(
    crl: x509.CertificateRevocationList, cert: x509.Certificate, check: str
) -> None:
    if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
        raise VerificationError(
            check, f"{cert.subject.rfc4514_string()} (serial {cert.serial_number:x}) is revoked"
        )


# --- A minimal DER reader, enough for the SGX extension (SEQUENCE, OID, INTEGER, OCTET
# STRING, ENUMERATED, BOOLEAN). cryptography hands us the extension as raw DER.

_TAG_INTEGER = 0x02
_TAG_OCTET_STRING = 0x04
_TAG_OID = 0x06
_TAG_ENUMERATED = 0x0A
_TAG_SEQUENCE = 0x30
_MAX_LENGTH_OCTETS = 4


def _der_items(data: bytes) -> list[tuple[int, bytes]]:
    """Split ``data`` into its top-level (tag, value) items; DER definite lengths only."""
    items = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise EvidenceParseError("SGX extension: truncated DER")
        tag = data[pos]
        first = data[pos + 1]
        pos += 2
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            if count == 0 or count > _MAX_LENGTH_OCTETS or pos + count > len(data):
                raise EvidenceParseError("SGX extension: bad DER length")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        if pos + length > len(data):
            raise EvidenceParseError("SGX extension: truncated DER")
        items.append((tag, data[pos : pos + length]))
        pos += length
    return items


def _oid(value: bytes) -> str:
    if not value:
        raise EvidenceParseError("SGX extension: empty OID")
    parts = [value[0] // 40, value[0] % 40]
    acc = 0
    for byte in value[1:]:
        acc = (acc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(acc)
            acc = 0
    return ".".join(map(str, parts))


def _named_values(seq_value: bytes) -> dict[str, tuple[int, bytes]]:
    """A SEQUENCE OF SEQUENCE { OID, value } as a dict; duplicate OIDs are an error."""
    out: dict[str, tuple[int, bytes]] = {}
    for tag, inner in _der_items(seq_value):
        if tag != _TAG_SEQUENCE:
            raise EvidenceParseError("SGX extension: expected a SEQUENCE")
        parts = _der_items(inner)
        if len(parts) != 2 or parts[0][0] != _TAG_OID:
            raise EvidenceParseError("SGX extension: expected SEQUENCE { OID, value }")
        name = _oid(parts[0][1])
        if name in out:
            raise EvidenceParseError(f"SGX extension: duplicate {name}")
        out[name] = parts[1]
    return out


def _integer(item: tuple[int, bytes], what: str) -> int:
    tag, value = item
    if tag not in (_TAG_INTEGER, _TAG_ENUMERATED) or not value:
        raise EvidenceParseError(f"SGX extension: {what} is not an INTEGER")
    number = int.from_bytes(value, "big", signed=True)
    if number < 0:
        raise EvidenceParseError(f"SGX extension: {what} is negative")
    return number


def _octets(item: tuple[int, bytes], size: int, what: str) -> bytes:
    tag, value = item
    if tag != _TAG_OCTET_STRING or len(value) != size:
        raise EvidenceParseError(f"SGX extension: {what} is not a {size}-byte OCTET STRING")
    return value


@dataclass(frozen=True, slots=True)
class PckExtensions:
    """The SGX extension of a PCK certificate: the platform's TCB and identity."""

    fmspc: bytes
    pce_id: bytes
    cpusvn_components: tuple[int, ...]
    pcesvn: int
    cpusvn: bytes
    sgx_type: int

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> PckExtensions:
        try:
            ext = cert.extensions.get_extension_for_oid(OID_SGX_EXTENSIONS).value
        except (x509.ExtensionNotFound, ValueError) as exc:
            raise EvidenceParseError("PCK certificate has no SGX extension") from exc
        if not isinstance(ext, x509.UnrecognizedExtension):
            raise EvidenceParseError("PCK certificate SGX extension has an unexpected form")
        top = _der_items(ext.value)
        if len(top) != 1 or top[0][0] != _TAG_SEQUENCE:
            raise EvidenceParseError("SGX extension: expected one SEQUENCE")
        values = _named_values(top[0][1])
        for needed in (OID_TCB, OID_PCEID, OID_FMSPC, OID_SGX_TYPE):
            if needed not in values:
                raise EvidenceParseError(f"SGX extension: {needed} is missing")
        tcb_tag, tcb_value = values[OID_TCB]
        if tcb_tag != _TAG_SEQUENCE:
            raise EvidenceParseError("SGX extension: TCB is not a SEQUENCE")
        tcb = _named_values(tcb_value)
        components = []
        for i in range(1, TCB_COMPONENT_COUNT + 1):
            name = f"{OID_TCB}.{i}"
            if name not in tcb:
                raise EvidenceParseError(f"SGX extension: TCB component {i} is missing")
            components.append(_integer(tcb[name], f"TCB component {i}"))
        if OID_PCESVN not in tcb or OID_CPUSVN not in tcb:
            raise EvidenceParseError("SGX extension: PCESVN or CPUSVN is missing")
        return cls(
            fmspc=_octets(values[OID_FMSPC], FMSPC_SIZE, "FMSPC"),
            pce_id=_octets(values[OID_PCEID], PCEID_SIZE, "PCEID"),
            cpusvn_components=tuple(components),
            pcesvn=_integer(tcb[OID_PCESVN], "PCESVN"),
            cpusvn=_octets(tcb[OID_CPUSVN], TCB_COMPONENT_COUNT, "CPUSVN"),
            sgx_type=_integer(values[OID_SGX_TYPE], "SGX type"),
        )
