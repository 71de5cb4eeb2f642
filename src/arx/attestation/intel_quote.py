"""Intel DCAP ECDSA quotes: SGX quote v3, TDX quote v4 and v5 (structure only).

The layouts follow Intel's published quote formats:

* "Intel SGX ECDSA Quote Library API", Appendix A ("Quote Format"): the quote header,
  the enclave report body (384 bytes), the ECDSA 256-bit quote signature data structure,
  the QE certification data.
* "Intel TDX DCAP Quote Generation Library and Quote Verification Library", Appendix A
  ("Quote Format" for v4 and v5): the TD quote body (TD 1.0, 584 bytes), the v5 quote body
  descriptor (type, size) and the TD 1.5 body (648 bytes), and the v4/v5 signature data in
  which the QE report is wrapped in certification data of type 6.

Parsing checks structure only: lengths, the enumerations the layout depends on and the
reserved fields that must be zero. It uses the length fields, never the size of the buffer,
to find the end of the quote, and reports how many bytes it consumed; what to do with bytes
after that is the verifier's decision. Parsers raise only ``EvidenceParseError``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from arx.errors import EvidenceParseError

# Quote header (both guides, "Quote Header", 48 bytes).
HEADER_SIZE: Final = 48
QUOTE_VERSION_SGX_V3: Final = 3
QUOTE_VERSION_V4: Final = 4
QUOTE_VERSION_V5: Final = 5
SUPPORTED_VERSIONS: Final = frozenset({QUOTE_VERSION_SGX_V3, QUOTE_VERSION_V4, QUOTE_VERSION_V5})
ATTESTATION_KEY_TYPE_ECDSA_P256: Final = 2
TEE_TYPE_SGX: Final = 0x00000000
TEE_TYPE_TDX: Final = 0x00000081

# v5 body descriptor ("Quote Body Descriptor": u16 type, u32 size).
BODY_TYPE_SGX: Final = 1
BODY_TYPE_TD10: Final = 2
BODY_TYPE_TD15: Final = 3

SGX_REPORT_BODY_SIZE: Final = 384
TD10_REPORT_BODY_SIZE: Final = 584
TD15_REPORT_BODY_SIZE: Final = 648
BODY_SIZES: Final = {
    BODY_TYPE_SGX: SGX_REPORT_BODY_SIZE,
    BODY_TYPE_TD10: TD10_REPORT_BODY_SIZE,
    BODY_TYPE_TD15: TD15_REPORT_BODY_SIZE,
}

# Signature data ("ECDSA 256-bit Quote Signature Data Structure").
ECDSA_SIGNATURE_SIZE: Final = 64  # raw r || s, big-endian, 32 bytes each
ECDSA_PUBLIC_KEY_SIZE: Final = 64  # raw x || y of an uncompressed P-256 point
CERT_DATA_PCK_CHAIN: Final = 5  # concatenated PEM: PCK leaf, intermediate CA, root CA
CERT_DATA_QE_REPORT: Final = 6  # QE report certification data (v4/v5)
# An upper bound on any length field, so that a hostile length cannot make us allocate or
# slice absurd ranges; real quotes are about 5 KB.
MAX_FIELD_SIZE: Final = 1 << 20

# SGX ATTRIBUTES.FLAGS is the little-endian u64 in the first 8 bytes; bit 1 is DEBUG.
SGX_ATTRIBUTE_DEBUG_BIT: Final = 1
# TDX TD_ATTRIBUTES is a little-endian u64; bit 0 is DEBUG (TUD.DEBUG).
TD_ATTRIBUTE_DEBUG_BIT: Final = 0

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class Field:
    """One named field of a fixed binary layout: ``size`` bytes at ``offset``."""

    name: str
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class Layout:
    """A fixed-size record: named fields and must-be-zero reserved ranges, in order."""

    name: str
    size: int
    fields: tuple[Field, ...]
    reserved: tuple[Field, ...]

    def __post_init__(self) -> None:
        # The table must tile the record exactly; a typo in an offset would otherwise
        # silently shift every later field.
        spans = sorted((f.offset, f.size) for f in (*self.fields, *self.reserved))
        at = 0
        for offset, size in spans:
            if offset != at:
                raise AssertionError(f"{self.name}: gap or overlap at {at}")
            at = offset + size
        if at != self.size:
            raise AssertionError(f"{self.name}: fields cover {at} of {self.size} bytes")

    def split(self, data: bytes) -> dict[str, bytes]:
        """The named fields of ``data`` (exactly ``size`` bytes); reserved ranges must be zero."""
        if len(data) != self.size:
            raise EvidenceParseError(f"{self.name}: {len(data)} bytes, expected {self.size}")
        for r in self.reserved:
            if any(data[r.offset : r.offset + r.size]):
                raise EvidenceParseError(f"{self.name}: reserved field {r.name} is not zero")
        return {f.name: data[f.offset : f.offset + f.size] for f in self.fields}


def _fields(name: str, size: int, spec: tuple[tuple[str, int, int], ...]) -> Layout:
    fields = tuple(Field(n, o, s) for n, o, s in spec if not n.startswith("reserved"))
    reserved = tuple(Field(n, o, s) for n, o, s in spec if n.startswith("reserved"))
    return Layout(name, size, fields, reserved)


# Quote header: SGX guide Appendix A "Quote Header"; TDX guide Appendix A "Quote Header".
# In v3 the four bytes at 4 are reserved and zero, which reads as TEE type 0 (SGX).
HEADER_LAYOUT: Final = _fields(
    "quote header",
    HEADER_SIZE,
    (
        ("version", 0, 2),
        ("attestation_key_type", 2, 2),
        ("tee_type", 4, 4),
        ("qe_svn", 8, 2),
        ("pce_svn", 10, 2),
        ("qe_vendor_id", 12, 16),
        ("user_data", 28, 20),
    ),
)

# SGX guide Appendix A, "Enclave Report Body" (also the layout of the QE report).
SGX_REPORT_LAYOUT: Final = _fields(
    "SGX report body",
    SGX_REPORT_BODY_SIZE,
    (
        ("cpusvn", 0, 16),
        ("miscselect", 16, 4),
        ("reserved1", 20, 12),
        ("isv_ext_prod_id", 32, 16),
        ("attributes", 48, 16),
        ("mrenclave", 64, 32),
        ("reserved2", 96, 32),
        ("mrsigner", 128, 32),
        ("reserved3", 160, 32),
        ("config_id", 192, 64),
        ("isv_prod_id", 256, 2),
        ("isv_svn", 258, 2),
        ("config_svn", 260, 2),
        ("reserved4", 262, 42),
        ("isv_family_id", 304, 16),
        ("report_data", 320, 64),
    ),
)

# TDX guide Appendix A, "TD Quote Body" (TD 1.0) and the TD 1.5 body, which appends
# TEE_TCB_SVN2 and MRSERVICETD.
_TD10_SPEC: Final = (
    ("tee_tcb_svn", 0, 16),
    ("mrseam", 16, 48),
    ("mrsignerseam", 64, 48),
    ("seam_attributes", 112, 8),
    ("td_attributes", 120, 8),
    ("xfam", 128, 8),
    ("mrtd", 136, 48),
    ("mrconfigid", 184, 48),
    ("mrowner", 232, 48),
    ("mrownerconfig", 280, 48),
    ("rtmr0", 328, 48),
    ("rtmr1", 376, 48),
    ("rtmr2", 424, 48),
    ("rtmr3", 472, 48),
    ("report_data", 520, 64),
)
TD10_LAYOUT: Final = _fields("TD 1.0 report body", TD10_REPORT_BODY_SIZE, _TD10_SPEC)
TD15_LAYOUT: Final = _fields(
    "TD 1.5 report body",
    TD15_REPORT_BODY_SIZE,
    (*_TD10_SPEC, ("tee_tcb_svn2", 584, 16), ("mrservicetd", 600, 48)),
)


def _u16(b: bytes) -> int:
    return int(_U16.unpack(b)[0])


def _u32(b: bytes) -> int:
    return int(_U32.unpack(b)[0])


@dataclass(frozen=True, slots=True)
class QuoteHeader:
    version: int
    attestation_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> QuoteHeader:
        f = HEADER_LAYOUT.split(data)
        version = _u16(f["version"])
        if version not in SUPPORTED_VERSIONS:
            raise EvidenceParseError(f"quote version {version} is not supported (3, 4, 5)")
        key_type = _u16(f["attestation_key_type"])
        if key_type != ATTESTATION_KEY_TYPE_ECDSA_P256:
            raise EvidenceParseError(f"attestation key type {key_type} is not ECDSA P-256 (2)")
        tee_type = _u32(f["tee_type"])
        if tee_type not in (TEE_TYPE_SGX, TEE_TYPE_TDX):
            raise EvidenceParseError(f"TEE type {tee_type:#x} is neither SGX (0) nor TDX (0x81)")
        if version == QUOTE_VERSION_SGX_V3 and tee_type != TEE_TYPE_SGX:
            raise EvidenceParseError("a version 3 quote is always an SGX quote")
        return cls(
            version=version,
            attestation_key_type=key_type,
            tee_type=tee_type,
            qe_svn=_u16(f["qe_svn"]),
            pce_svn=_u16(f["pce_svn"]),
            qe_vendor_id=f["qe_vendor_id"],
            user_data=f["user_data"],
        )


@dataclass(frozen=True, slots=True)
class SgxReportBody:
    """An SGX enclave report body: the ISV enclave's (SGX quote) or the QE's."""

    cpusvn: bytes
    miscselect: int
    isv_ext_prod_id: bytes
    attributes: bytes
    mrenclave: bytes
    mrsigner: bytes
    config_id: bytes
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    isv_family_id: bytes
    report_data: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> SgxReportBody:
        f = SGX_REPORT_LAYOUT.split(data)
        return cls(
            cpusvn=f["cpusvn"],
            miscselect=_u32(f["miscselect"]),
            isv_ext_prod_id=f["isv_ext_prod_id"],
            attributes=f["attributes"],
            mrenclave=f["mrenclave"],
            mrsigner=f["mrsigner"],
            config_id=f["config_id"],
            isv_prod_id=_u16(f["isv_prod_id"]),
            isv_svn=_u16(f["isv_svn"]),
            config_svn=_u16(f["config_svn"]),
            isv_family_id=f["isv_family_id"],
            report_data=f["report_data"],
        )

    @property
    def debug(self) -> bool:
        flags = int.from_bytes(self.attributes[:8], "little")
        return bool(flags >> SGX_ATTRIBUTE_DEBUG_BIT & 1)


@dataclass(frozen=True, slots=True)
class TdReportBody:
    """A TD quote body, TD 1.0 or TD 1.5 (the last two fields are None for TD 1.0)."""

    tee_tcb_svn: bytes
    mrseam: bytes
    mrsignerseam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mrtd: bytes
    mrconfigid: bytes
    mrowner: bytes
    mrownerconfig: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    report_data: bytes
    tee_tcb_svn2: bytes | None = None
    mrservicetd: bytes | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> TdReportBody:
        layout = TD15_LAYOUT if len(data) == TD15_REPORT_BODY_SIZE else TD10_LAYOUT
        f = layout.split(data)
        return cls(**f)

    @property
    def debug(self) -> bool:
        return bool(int.from_bytes(self.td_attributes, "little") >> TD_ATTRIBUTE_DEBUG_BIT & 1)

    @property
    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        return (self.rtmr0, self.rtmr1, self.rtmr2, self.rtmr3)


@dataclass(frozen=True, slots=True)
class QeReportCertificationData:
    """The QE report, its PCK signature, the QE authentication data and the PCK chain."""

    qe_report_raw: bytes
    qe_report: SgxReportBody
    qe_report_signature: bytes
    qe_auth_data: bytes
    cert_data_type: int
    cert_data: bytes


@dataclass(frozen=True, slots=True)
class QuoteSignatureData:
    signature: bytes
    attestation_key: bytes
    qe: QeReportCertificationData


class _Reader:
    """Reads fields in sequence from a bounded buffer; a short read is a parse error."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise EvidenceParseError(
                f"quote truncated in {what}: need {n} bytes at {self.pos}, have "
                f"{max(0, len(self.data) - self.pos)}"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u16(self, what: str) -> int:
        return _u16(self.take(2, what))

    def u32(self, what: str) -> int:
        return _u32(self.take(4, what))

    def length(self, width: int, what: str) -> int:
        n = self.u16(what) if width == 2 else self.u32(what)
        if n > MAX_FIELD_SIZE:
            raise EvidenceParseError(f"{what} length {n} exceeds {MAX_FIELD_SIZE}")
        return n


def _parse_qe_cert_data(r: _Reader) -> QeReportCertificationData:
    qe_raw = r.take(SGX_REPORT_BODY_SIZE, "QE report")
    qe_sig = r.take(ECDSA_SIGNATURE_SIZE, "QE report signature")
    auth = r.take(r.length(2, "QE authentication data size"), "QE authentication data")
    cert_type = r.u16("certification data type")
    if cert_type != CERT_DATA_PCK_CHAIN:
        raise EvidenceParseError(
            f"certification data type {cert_type} is not a PEM PCK chain ({CERT_DATA_PCK_CHAIN})"
        )
    cert_data = r.take(r.length(4, "certification data size"), "certification data")
    return QeReportCertificationData(
        qe_report_raw=qe_raw,
        qe_report=SgxReportBody.from_bytes(qe_raw),
        qe_report_signature=qe_sig,
        qe_auth_data=auth,
        cert_data_type=cert_type,
        cert_data=cert_data,
    )


def parse_signature_data(data: bytes, version: int) -> QuoteSignatureData:
    """The signature data of a quote, which must fill ``data`` exactly."""
    r = _Reader(data)
    signature = r.take(ECDSA_SIGNATURE_SIZE, "quote signature")
    key = r.take(ECDSA_PUBLIC_KEY_SIZE, "attestation key")
    if version == QUOTE_VERSION_SGX_V3:
        qe = _parse_qe_cert_data(r)
    else:
        # v4 and v5 wrap the QE report in certification data of type 6, whose size must
        # match what it contains.
        outer_type = r.u16("certification data type")
        if outer_type != CERT_DATA_QE_REPORT:
            raise EvidenceParseError(
                f"certification data type {outer_type} is not QE report data "
                f"({CERT_DATA_QE_REPORT})"
            )
        inner = r.take(r.length(4, "QE report certification data size"), "QE report cert data")
        inner_reader = _Reader(inner)
        qe = _parse_qe_cert_data(inner_reader)
        if inner_reader.pos != len(inner):
            raise EvidenceParseError(
                f"QE report certification data has {len(inner) - inner_reader.pos} extra bytes"
            )
    if r.pos != len(data):
        raise EvidenceParseError(f"signature data has {len(data) - r.pos} extra bytes")
    return QuoteSignatureData(signature=signature, attestation_key=key, qe=qe)


@dataclass(frozen=True, slots=True)
class IntelQuote:
    """A parsed DCAP quote.

    ``signed`` is the exact byte range the attestation key signs: the header and the body
    (for v5 including the body descriptor). ``consumed`` is the length of the quote as its
    length fields define it; ``len(raw) - consumed`` bytes followed it in the input.
    """

    header: QuoteHeader
    body_type: int
    body: SgxReportBody | TdReportBody
    signed: bytes
    signature_data: QuoteSignatureData
    consumed: int

    @property
    def is_tdx(self) -> bool:
        return self.header.tee_type == TEE_TYPE_TDX

    @classmethod
    def from_bytes(cls, data: bytes) -> IntelQuote:
        """Parse a quote from the start of ``data``; trailing bytes are left to the caller."""
        data = bytes(data)
        r = _Reader(data)
        header = QuoteHeader.from_bytes(r.take(HEADER_SIZE, "header"))
        if header.version == QUOTE_VERSION_V5:
            body_type = r.u16("body type")
            body_size = r.u32("body size")
            expected_size = BODY_SIZES.get(body_type)
            if expected_size is None:
                raise EvidenceParseError(f"v5 body type {body_type} is not 1, 2 or 3")
            if body_size != expected_size:
                raise EvidenceParseError(
                    f"v5 body type {body_type} has size {body_size}, expected {expected_size}"
                )
        elif header.tee_type == TEE_TYPE_TDX:
            body_type = BODY_TYPE_TD10
        else:
            body_type = BODY_TYPE_SGX
        if (body_type == BODY_TYPE_SGX) != (header.tee_type == TEE_TYPE_SGX):
            raise EvidenceParseError(
                f"body type {body_type} does not match TEE type {header.tee_type:#x}"
            )
        raw_body = r.take(BODY_SIZES[body_type], "report body")
        body: SgxReportBody | TdReportBody = (
            SgxReportBody.from_bytes(raw_body)
            if body_type == BODY_TYPE_SGX
            else TdReportBody.from_bytes(raw_body)
        )
        signed = data[: r.pos]
        sig_len = r.length(4, "signature data length")
        sig = parse_signature_data(r.take(sig_len, "signature data"), header.version)
        return cls(
            header=header,
            body_type=body_type,
            body=body,
            signed=signed,
            signature_data=sig,
            consumed=r.pos,
        )
