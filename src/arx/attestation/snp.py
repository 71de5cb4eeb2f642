"""AMD SEV-SNP attestation reports and VCEK/VLEK certificates: parsing only.

The report layout follows the AMD SEV-SNP ABI specification (publication
56860), Table 22 "ATTESTATION_REPORT Structure", and is declared once, as
data, in ``REPORT_LAYOUT``. ``SnpReport.from_bytes`` checks structure only:
the exact length, the version, every reserved (must-be-zero) range, the
reserved bits of POLICY, PLATFORM_INFO and SIGNER_INFO, and the enumerations
SIGNATURE_ALGO and SIGNING_KEY. It returns a frozen dataclass and never
decides whether the report can be trusted; ``arx.attestation.snp_verify``
does that.

Report versions 2 to 5 are accepted. Version 2 has no CPUID fields, so the
product (Milan, Genoa, Turin) of a version 2 report can only be learnt from its
certificate chain and the VCEK/VLEK ``productName`` extension; the verifier
does so and says so in its result. Versions 3 and later name the product in
CPUID_FAM_ID/CPUID_MOD_ID, which the verifier binds to the chain.

This module also reads the AMD-specific X.509 extensions of VCEK and VLEK
certificates (AMD "Versioned Chip Endorsement Key" specification, publication
57230): the TCB security patch levels, the hardware ID and the product name.
"""

from __future__ import annotations

import enum
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ObjectIdentifier

from arx.errors import EvidenceFieldError

# ---------------------------------------------------------------------------
# Report layout (ABI spec 56860, Table 22)
# ---------------------------------------------------------------------------

REPORT_SIZE: Final = 0x4A0
"""An attestation report is exactly 1184 bytes (Table 22)."""

SIGNED_LENGTH: Final = 0x2A0
"""The signature covers bytes [0, 0x2A0) of the report (Table 22, SIGNATURE)."""

MIN_REPORT_VERSION: Final = 2
MAX_REPORT_VERSION: Final = 5
CPUID_FIELDS_SINCE_VERSION: Final = 3
MITIGATION_VECTORS_SINCE_VERSION: Final = 5

SIGNATURE_ALGO_ECDSA_P384_SHA384: Final = 1

ECDSA_COMPONENT_SIZE: Final = 72
"""R and S are 72-byte little-endian fields (ABI spec, "ECDSA Signature Format")."""

P384_SCALAR_SIZE: Final = 48
"""A P-384 scalar needs 48 bytes; bytes 48..71 of R and S must be zero."""

MEASUREMENT_SIZE: Final = 48
REPORT_DATA_SIZE: Final = 64
HOST_DATA_SIZE: Final = 32
CHIP_ID_SIZE: Final = 64
FAMILY_ID_SIZE: Final = 16
IMAGE_ID_SIZE: Final = 16
KEY_DIGEST_SIZE: Final = 48


class FieldKind(enum.Enum):
    U8 = "B"
    U32 = "I"
    U64 = "Q"
    BYTES = "s"
    RESERVED = "x"


@dataclass(frozen=True, slots=True)
class Field:
    """One named range of the report: offset and exact length in bytes.

    ``since`` is the first report version that defines the field; in earlier
    versions its bytes are reserved and must be zero.
    """

    name: str
    offset: int
    size: int
    kind: FieldKind
    since: int = MIN_REPORT_VERSION


_U8, _U32, _U64, _B, _R = (
    FieldKind.U8,
    FieldKind.U32,
    FieldKind.U64,
    FieldKind.BYTES,
    FieldKind.RESERVED,
)

REPORT_LAYOUT: Final[tuple[Field, ...]] = (
    Field("version", 0x000, 4, _U32),
    Field("guest_svn", 0x004, 4, _U32),
    Field("policy", 0x008, 8, _U64),
    Field("family_id", 0x010, 16, _B),
    Field("image_id", 0x020, 16, _B),
    Field("vmpl", 0x030, 4, _U32),
    Field("signature_algo", 0x034, 4, _U32),
    Field("current_tcb", 0x038, 8, _U64),
    Field("platform_info", 0x040, 8, _U64),
    Field("signer_info", 0x048, 4, _U32),
    Field("reserved_04c", 0x04C, 4, _R),
    Field("report_data", 0x050, 64, _B),
    Field("measurement", 0x090, 48, _B),
    Field("host_data", 0x0C0, 32, _B),
    Field("id_key_digest", 0x0E0, 48, _B),
    Field("author_key_digest", 0x110, 48, _B),
    Field("report_id", 0x140, 32, _B),
    Field("report_id_ma", 0x160, 32, _B),
    Field("reported_tcb", 0x180, 8, _U64),
    Field("cpuid_fam_id", 0x188, 1, _U8, since=CPUID_FIELDS_SINCE_VERSION),
    Field("cpuid_mod_id", 0x189, 1, _U8, since=CPUID_FIELDS_SINCE_VERSION),
    Field("cpuid_step", 0x18A, 1, _U8, since=CPUID_FIELDS_SINCE_VERSION),
    Field("reserved_18b", 0x18B, 0x15, _R),
    Field("chip_id", 0x1A0, 64, _B),
    Field("committed_tcb", 0x1E0, 8, _U64),
    Field("current_build", 0x1E8, 1, _U8),
    Field("current_minor", 0x1E9, 1, _U8),
    Field("current_major", 0x1EA, 1, _U8),
    Field("reserved_1eb", 0x1EB, 1, _R),
    Field("committed_build", 0x1EC, 1, _U8),
    Field("committed_minor", 0x1ED, 1, _U8),
    Field("committed_major", 0x1EE, 1, _U8),
    Field("reserved_1ef", 0x1EF, 1, _R),
    Field("launch_tcb", 0x1F0, 8, _U64),
    Field("launch_mit_vector", 0x1F8, 8, _U64, since=MITIGATION_VECTORS_SINCE_VERSION),
    Field("current_mit_vector", 0x200, 8, _U64, since=MITIGATION_VECTORS_SINCE_VERSION),
    Field("reserved_208", 0x208, 0x98, _R),
    # SIGNATURE (0x2A0, 512 bytes) in the ECDSA P-384 with SHA-384 format: R, S
    # (72 bytes each, little-endian, zero-extended), then reserved bytes.
    Field("signature_r", 0x2A0, ECDSA_COMPONENT_SIZE, _B),
    Field("signature_s", 0x2E8, ECDSA_COMPONENT_SIZE, _B),
    Field("reserved_330", 0x330, 0x170, _R),
)


def _layout_struct(layout: tuple[Field, ...]) -> struct.Struct:
    """Derive one little-endian struct from the table, checking it tiles the report."""
    fmt = ["<"]
    cursor = 0
    for field in layout:
        if field.offset != cursor:
            raise AssertionError(f"report layout gap or overlap at {field.name}")
        if field.kind in (FieldKind.BYTES, FieldKind.RESERVED):
            # Reserved ranges are read as bytes too, so that they can be checked.
            fmt.append(f"{field.size}s")
        else:
            if struct.calcsize("<" + field.kind.value) != field.size:
                raise AssertionError(f"report layout size mismatch at {field.name}")
            fmt.append(field.kind.value)
        cursor += field.size
    if cursor != REPORT_SIZE:
        raise AssertionError("report layout does not cover 1184 bytes")
    return struct.Struct("".join(fmt))


_REPORT_STRUCT: Final = _layout_struct(REPORT_LAYOUT)
_FIELD_INDEX: Final = {field.name: i for i, field in enumerate(REPORT_LAYOUT)}

# Guest POLICY bits (ABI spec 56860, the guest policy structure; bit numbers as
# go-sev-guest abi.go and virtee/sev use them).
POLICY_ABI_MINOR_MASK: Final = 0xFF
POLICY_ABI_MAJOR_SHIFT: Final = 8
POLICY_BIT_SMT: Final = 16
POLICY_BIT_RESERVED_ONE: Final = 17
POLICY_BIT_MIGRATE_MA: Final = 18
POLICY_BIT_DEBUG: Final = 19
POLICY_BIT_SINGLE_SOCKET: Final = 20
POLICY_BIT_CXL_ALLOW: Final = 21
POLICY_BIT_MEM_AES_256_XTS: Final = 22
POLICY_BIT_RAPL_DIS: Final = 23
POLICY_BIT_CIPHERTEXT_HIDING: Final = 24
POLICY_BIT_PAGE_SWAP_DISABLE: Final = 25
POLICY_FIRST_RESERVED_BIT: Final = 26
"""Bits 63:26 of POLICY are reserved and must be zero."""

# PLATFORM_INFO bits (ABI spec 56860, the PLATFORM_INFO field of Table 22; bit 7
# TIO_EN as in later revisions; bit 6 and bits 63:8 are reserved).
PLATFORM_INFO_BITS: Final[Mapping[str, int]] = {
    "smt_en": 0,
    "tsme_en": 1,
    "ecc_en": 2,
    "rapl_dis": 3,
    "ciphertext_hiding_en": 4,
    "alias_check_complete": 5,
    "tio_en": 7,
}
PLATFORM_INFO_KNOWN_MASK: Final = sum(1 << bit for bit in PLATFORM_INFO_BITS.values())

# SIGNER_INFO (offset 0x48): bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY,
# bits 4:2 SIGNING_KEY, bits 31:5 reserved.
SIGNER_INFO_AUTHOR_KEY_EN: Final = 1 << 0
SIGNER_INFO_MASK_CHIP_KEY: Final = 1 << 1
SIGNER_INFO_SIGNING_KEY_SHIFT: Final = 2
SIGNER_INFO_SIGNING_KEY_MASK: Final = 0b111
SIGNER_INFO_KNOWN_MASK: Final = 0b11111


class SigningKey(enum.Enum):
    """SIGNER_INFO.SIGNING_KEY: which key signed the report."""

    VCEK = 0
    VLEK = 1


class Product(enum.Enum):
    """An SEV-SNP product generation, named as AMD's KDS and certificates name it."""

    MILAN = "Milan"
    GENOA = "Genoa"
    TURIN = "Turin"


# CPUID family and model ranges per product, as the AMD KDS specification's
# "Determining the Product Name" section and Trustee's verifier map them
# (family 19h: Milan models 00h-0Fh, Genoa 10h-1Fh and A0h-AFh; family 1Ah:
# Turin models 00h-11h).
CPUID_PRODUCTS: Final[tuple[tuple[int, range, Product], ...]] = (
    (0x19, range(0x00, 0x10), Product.MILAN),
    (0x19, range(0x10, 0x20), Product.GENOA),
    (0x19, range(0xA0, 0xB0), Product.GENOA),
    (0x1A, range(0x00, 0x12), Product.TURIN),
)


def product_from_cpuid(family: int, model: int) -> Product | None:
    """The product a (family, model) pair names, or None if it names none we know."""
    for fam, models, product in CPUID_PRODUCTS:
        if family == fam and model in models:
            return product
    return None


# ---------------------------------------------------------------------------
# TCB_VERSION (ABI spec 56860, the TCB_VERSION structure; the Turin layout as
# virtee/sev from_turin_bytes and Trustee decode it)
# ---------------------------------------------------------------------------

TCB_SIZE: Final = 8
TCB_COMPONENT_MAX: Final = 0xFF

# Byte offsets of each component inside the little-endian 64-bit TCB_VERSION.
# Milan and Genoa: bootloader, TEE, four reserved bytes, SNP, microcode.
# Turin: FMC, bootloader, TEE, SNP, three reserved bytes, microcode.
TCB_LAYOUTS: Final[Mapping[Product, Mapping[str, int]]] = {
    Product.MILAN: {"bootloader": 0, "tee": 1, "snp": 6, "microcode": 7},
    Product.GENOA: {"bootloader": 0, "tee": 1, "snp": 6, "microcode": 7},
    Product.TURIN: {"fmc": 0, "bootloader": 1, "tee": 2, "snp": 3, "microcode": 7},
}
TCB_COMPONENTS: Final = ("fmc", "bootloader", "tee", "snp", "microcode")


@dataclass(frozen=True, slots=True)
class TcbVersion:
    """A TCB_VERSION decoded for one product. ``fmc`` is None before Turin."""

    product: Product
    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    @classmethod
    def decode(cls, raw: int, product: Product) -> TcbVersion:
        """Decode the 64-bit field; raise EvidenceFieldError if a reserved byte is set."""
        data = raw.to_bytes(TCB_SIZE, "little")
        layout = TCB_LAYOUTS[product]
        used = set(layout.values())
        for index, byte in enumerate(data):
            if index not in used and byte != 0:
                raise EvidenceFieldError(
                    "snp.tcb.reserved",
                    f"TCB_VERSION 0x{raw:016x} has reserved byte {index} set for {product.value}",
                )
        values = {name: data[offset] for name, offset in layout.items()}
        return cls(product=product, **values)

    def encode(self) -> int:
        """The 64-bit TCB_VERSION value, in this product's byte layout."""
        data = bytearray(TCB_SIZE)
        for name, offset in TCB_LAYOUTS[self.product].items():
            value = getattr(self, name)
            if value is None or not 0 <= value <= TCB_COMPONENT_MAX:
                raise ValueError(f"TCB component {name} must be 0..255 for {self.product.value}")
            data[offset] = value
        return int.from_bytes(data, "little")

    def components(self) -> dict[str, int]:
        """The components this product defines, by name."""
        return {
            name: value for name in TCB_COMPONENTS if (value := getattr(self, name)) is not None
        }

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.components().items())


def tcb_components_le(low: Mapping[str, int], high: Mapping[str, int]) -> str | None:
    """Per-component ``low <= high``: None if it holds, else the first failing component.

    Comparing the packed 64-bit values instead would let a higher microcode
    byte hide a lower SNP or bootloader level; TCB ordering is a partial order.
    """
    for name in TCB_COMPONENTS:
        if name in low and name in high and low[name] > high[name]:
            return name
    return None


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------


def _fail(check: str, message: str) -> EvidenceFieldError:
    return EvidenceFieldError(check, message)


@dataclass(frozen=True, slots=True, kw_only=True)
class SnpReport:
    """A structurally valid SEV-SNP attestation report (not yet verified).

    ``raw`` keeps the exact bytes that were parsed, so that the signature is
    checked over those bytes and nothing is re-serialised.
    """

    raw: bytes
    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: int
    platform_info: int
    signer_info: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: int
    cpuid_fam_id: int | None
    cpuid_mod_id: int | None
    cpuid_step: int | None
    chip_id: bytes
    committed_tcb: int
    current_build: int
    current_minor: int
    current_major: int
    committed_build: int
    committed_minor: int
    committed_major: int
    launch_tcb: int
    launch_mit_vector: int | None
    current_mit_vector: int | None
    signature_r: int
    signature_s: int

    @classmethod
    def from_bytes(cls, data: bytes) -> SnpReport:
        """Parse exactly one 1184-byte report; raise EvidenceFieldError otherwise."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise _fail("snp.parse.length", "evidence must be bytes")
        data = bytes(data)
        if len(data) != REPORT_SIZE:
            raise _fail(
                "snp.parse.length",
                f"an SEV-SNP report is exactly {REPORT_SIZE} bytes, got {len(data)}",
            )
        values = _REPORT_STRUCT.unpack(data)
        version = values[_FIELD_INDEX["version"]]
        if not MIN_REPORT_VERSION <= version <= MAX_REPORT_VERSION:
            raise _fail(
                "snp.parse.version",
                f"report version {version} is not between {MIN_REPORT_VERSION} and "
                f"{MAX_REPORT_VERSION}",
            )
        fields: dict[str, object] = {}
        for field, value in zip(REPORT_LAYOUT, values, strict=True):
            if field.kind is FieldKind.RESERVED or version < field.since:
                raw = data[field.offset : field.offset + field.size]
                if any(raw):
                    raise _fail(
                        "snp.parse.reserved",
                        f"reserved bytes [0x{field.offset:03x}, "
                        f"0x{field.offset + field.size:03x}) are not zero in a version "
                        f"{version} report",
                    )
                if field.kind is not FieldKind.RESERVED:
                    fields[field.name] = None
                continue
            fields[field.name] = value

        policy = values[_FIELD_INDEX["policy"]]
        if not policy & (1 << POLICY_BIT_RESERVED_ONE):
            raise _fail("snp.parse.policy_reserved", "POLICY bit 17 is reserved and must be 1")
        if policy >> POLICY_FIRST_RESERVED_BIT:
            raise _fail(
                "snp.parse.policy_reserved",
                f"POLICY 0x{policy:016x} has reserved bits 63:26 set",
            )
        platform_info = values[_FIELD_INDEX["platform_info"]]
        if platform_info & ~PLATFORM_INFO_KNOWN_MASK:
            raise _fail(
                "snp.parse.platform_info_reserved",
                f"PLATFORM_INFO 0x{platform_info:016x} has reserved bits set",
            )
        signer_info = values[_FIELD_INDEX["signer_info"]]
        if signer_info & ~SIGNER_INFO_KNOWN_MASK:
            raise _fail(
                "snp.parse.signer_info_reserved",
                f"SIGNER_INFO 0x{signer_info:08x} has reserved bits 31:5 set",
            )
        signing_key = (signer_info >> SIGNER_INFO_SIGNING_KEY_SHIFT) & SIGNER_INFO_SIGNING_KEY_MASK
        if signing_key not in (SigningKey.VCEK.value, SigningKey.VLEK.value):
            raise _fail(
                "snp.parse.signing_key",
                f"SIGNING_KEY {signing_key} is not 0 (VCEK) or 1 (VLEK)",
            )
        algo = values[_FIELD_INDEX["signature_algo"]]
        if algo != SIGNATURE_ALGO_ECDSA_P384_SHA384:
            raise _fail(
                "snp.parse.signature_algo",
                f"SIGNATURE_ALGO {algo} is not 1 (ECDSA P-384 with SHA-384)",
            )
        r_bytes = values[_FIELD_INDEX["signature_r"]]
        s_bytes = values[_FIELD_INDEX["signature_s"]]
        if any(r_bytes[P384_SCALAR_SIZE:]) or any(s_bytes[P384_SCALAR_SIZE:]):
            raise _fail(
                "snp.parse.reserved",
                "signature R or S has non-zero bytes beyond the 48 a P-384 scalar uses",
            )
        fields["signature_r"] = int.from_bytes(r_bytes, "little")
        fields["signature_s"] = int.from_bytes(s_bytes, "little")
        return cls(raw=data, **fields)  # type: ignore[arg-type]

    def field_values(self) -> dict[str, object]:
        """Every named field, as ``encode_report`` takes them (round-trips with it)."""
        values: dict[str, object] = {
            f.name: getattr(self, f.name)
            for f in REPORT_LAYOUT
            if f.kind is not FieldKind.RESERVED and f.name not in ("signature_r", "signature_s")
        }
        values["signature_r"] = self.signature_r.to_bytes(ECDSA_COMPONENT_SIZE, "little")
        values["signature_s"] = self.signature_s.to_bytes(ECDSA_COMPONENT_SIZE, "little")
        return values

    # -- derived views ------------------------------------------------------

    @property
    def signed_bytes(self) -> bytes:
        return self.raw[:SIGNED_LENGTH]

    @property
    def signing_key(self) -> SigningKey:
        return SigningKey(
            (self.signer_info >> SIGNER_INFO_SIGNING_KEY_SHIFT) & SIGNER_INFO_SIGNING_KEY_MASK
        )

    @property
    def mask_chip_key(self) -> bool:
        return bool(self.signer_info & SIGNER_INFO_MASK_CHIP_KEY)

    @property
    def author_key_en(self) -> bool:
        return bool(self.signer_info & SIGNER_INFO_AUTHOR_KEY_EN)

    def policy_bit(self, bit: int) -> bool:
        return bool(self.policy >> bit & 1)

    @property
    def debug(self) -> bool:
        return self.policy_bit(POLICY_BIT_DEBUG)

    @property
    def policy_abi(self) -> tuple[int, int]:
        """(ABI_MAJOR, ABI_MINOR) from POLICY: the oldest firmware ABI the guest accepts."""
        return (self.policy >> POLICY_ABI_MAJOR_SHIFT & 0xFF, self.policy & POLICY_ABI_MINOR_MASK)

    def platform_flag(self, name: str) -> bool:
        return bool(self.platform_info >> PLATFORM_INFO_BITS[name] & 1)

    @property
    def cpuid_product(self) -> Product | None:
        """The product CPUID_FAM_ID/CPUID_MOD_ID name (None for v2 or an unknown CPU)."""
        if self.cpuid_fam_id is None or self.cpuid_mod_id is None:
            return None
        return product_from_cpuid(self.cpuid_fam_id, self.cpuid_mod_id)

    @property
    def chip_id_masked(self) -> bool:
        return not any(self.chip_id)


def encode_report(values: Mapping[str, object]) -> bytes:
    """Lay out named field values as a 1184-byte report (reserved bytes zero).

    A field that is missing or None is written as zeros. This is the inverse of
    ``SnpReport.field_values`` and is what the simulator and tests sign.
    """
    unknown = set(values) - {f.name for f in REPORT_LAYOUT}
    if unknown:
        raise ValueError(f"unknown report fields: {sorted(unknown)}")
    packed: list[object] = []
    for field in REPORT_LAYOUT:
        value = values.get(field.name)
        if field.kind in (FieldKind.BYTES, FieldKind.RESERVED):
            value = bytes(field.size) if value is None else value
            if not isinstance(value, bytes) or len(value) != field.size:
                raise ValueError(f"{field.name} must be {field.size} bytes")
        else:
            value = 0 if value is None else value
        packed.append(value)
    return _REPORT_STRUCT.pack(*packed)


# ---------------------------------------------------------------------------
# VCEK / VLEK certificate extensions (AMD VCEK certificate and KDS interface
# specification, publication 57230)
# ---------------------------------------------------------------------------

OID_STRUCT_VERSION: Final = ObjectIdentifier("1.3.6.1.4.1.3704.1.1")
OID_PRODUCT_NAME: Final = ObjectIdentifier("1.3.6.1.4.1.3704.1.2")
OID_BOOTLOADER_SPL: Final = ObjectIdentifier("1.3.6.1.4.1.3704.1.3.1")
OID_TEE_SPL: Final = ObjectIdentifier("1.3.6.1.4.1.3704.1.3.2")
OID_SNP_SPL: Final = ObjectIdentifier("1.3.6.1.4.1.3704.1.3.3")
OID_UCODE_SPL: Final = ObjectIdentifier("1.3.6.1.4.1.3704.1.3.8")
OID_FMC_SPL: Final = ObjectIdentifier("1.3.6.1.4.1.3704.1.3.9")
OID_HWID: Final = ObjectIdentifier("1.3.6.1.4.1.3704.1.4")
OID_CSP_ID: Final = ObjectIdentifier("1.3.6.1.4.1.3704.1.5")

SPL_OIDS: Final[Mapping[str, ObjectIdentifier]] = {
    "bootloader": OID_BOOTLOADER_SPL,
    "tee": OID_TEE_SPL,
    "snp": OID_SNP_SPL,
    "microcode": OID_UCODE_SPL,
    "fmc": OID_FMC_SPL,
}

HWID_SIZES: Final[Mapping[Product, int]] = {
    Product.MILAN: 64,
    Product.GENOA: 64,
    # Turin VCEKs carry an 8-byte hwID: the first 8 bytes of CHIP_ID.
    Product.TURIN: 8,
}

_DER_INTEGER: Final = 0x02
_DER_OCTET_STRING: Final = 0x04
_DER_IA5_STRING: Final = 0x16
_DER_SHORT_LENGTH_LIMIT: Final = 0x80


def _der_tlv(data: bytes, tag: int, what: str) -> bytes:
    """The value of exactly one DER TLV with ``tag`` spanning all of ``data``."""
    if len(data) < 2 or data[0] != tag:
        raise _fail("snp.cert.extension", f"{what}: expected DER tag 0x{tag:02x}")
    length = data[1]
    offset = 2
    if length >= _DER_SHORT_LENGTH_LIMIT:
        count = length & 0x7F
        if count == 0 or count > 2 or len(data) < 2 + count:
            raise _fail("snp.cert.extension", f"{what}: bad DER length")
        length = int.from_bytes(data[2 : 2 + count], "big")
        offset = 2 + count
        if length < _DER_SHORT_LENGTH_LIMIT or (count == 2 and length <= 0xFF):
            raise _fail("snp.cert.extension", f"{what}: non-minimal DER length")
    if offset + length != len(data):
        raise _fail("snp.cert.extension", f"{what}: DER length does not match the value")
    return data[offset:]


def _der_small_uint(data: bytes, what: str) -> int:
    value = _der_tlv(data, _DER_INTEGER, what)
    if not value or value[0] & 0x80:
        raise _fail("snp.cert.extension", f"{what}: not a non-negative INTEGER")
    if len(value) > 1 and value[0] == 0 and not value[1] & 0x80:
        raise _fail("snp.cert.extension", f"{what}: non-minimal INTEGER")
    number = int.from_bytes(value, "big")
    if number > TCB_COMPONENT_MAX:
        raise _fail("snp.cert.extension", f"{what}: {number} does not fit in a byte")
    return number


@dataclass(frozen=True, slots=True, kw_only=True)
class VekExtensions:
    """The AMD extensions of a VCEK or VLEK certificate."""

    product_name: str
    product: Product
    spl: Mapping[str, int]
    hwid: bytes | None
    csp_id: str | None

    @classmethod
    def from_certificate(cls, cert: x509.Certificate, kind: SigningKey) -> VekExtensions:
        """Read and strictly decode the extensions; raise EvidenceFieldError if malformed."""
        try:
            raw: dict[ObjectIdentifier, bytes] = {}
            for ext in cert.extensions:
                value = ext.value
                if isinstance(value, x509.UnrecognizedExtension):
                    raw[ext.oid] = value.value
        except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
            raise _fail("snp.cert.extension", f"unreadable certificate extensions: {exc}") from exc

        if OID_PRODUCT_NAME not in raw:
            raise _fail("snp.cert.extension", "productName extension is missing")
        try:
            product_name = _der_tlv(raw[OID_PRODUCT_NAME], _DER_IA5_STRING, "productName").decode(
                "ascii"
            )
        except UnicodeDecodeError as exc:
            raise _fail("snp.cert.extension", "productName is not ASCII") from exc
        base = product_name.split("-", 1)[0]
        try:
            product = Product(base)
        except ValueError as exc:
            raise _fail(
                "snp.cert.extension", f"productName {product_name!r} names no known product"
            ) from exc

        spl: dict[str, int] = {}
        for name, oid in SPL_OIDS.items():
            if oid not in raw:
                if name == "fmc" and product is not Product.TURIN:
                    continue
                raise _fail(
                    "snp.cert.extension", f"{name} SPL extension ({oid.dotted_string}) missing"
                )
            if name == "fmc" and product is not Product.TURIN:
                raise _fail("snp.cert.extension", f"an FMC SPL in a {product.value} certificate")
            spl[name] = _der_small_uint(raw[oid], f"{name} SPL")

        hwid: bytes | None = None
        if kind is SigningKey.VCEK:
            if OID_HWID not in raw:
                raise _fail("snp.cert.extension", "hwID extension is missing from the VCEK")
            hwid = raw[OID_HWID]
            size = HWID_SIZES[product]
            # Early KDS certificates hold the raw bytes; later ones wrap them in
            # a DER OCTET STRING. The two cannot be confused: their lengths differ.
            if len(hwid) != size:
                hwid = _der_tlv(hwid, _DER_OCTET_STRING, "hwID")
            if len(hwid) != size:
                raise _fail(
                    "snp.cert.extension",
                    f"hwID is {len(hwid)} bytes; a {product.value} hwID is {size}",
                )
        elif OID_HWID in raw:
            raise _fail("snp.cert.extension", "a VLEK certificate must not carry a hwID")

        csp_id: str | None = None
        if OID_CSP_ID in raw:
            try:
                csp_id = _der_tlv(raw[OID_CSP_ID], _DER_IA5_STRING, "csp_id").decode("ascii")
            except UnicodeDecodeError as exc:
                raise _fail("snp.cert.extension", "csp_id is not ASCII") from exc
        return cls(product_name=product_name, product=product, spl=spl, hwid=hwid, csp_id=csp_id)


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Certificates from DER (one) or PEM (one or more) bytes.

    AMD's KDS issues VCEKs and VLEKs with serial number 0, which RFC 5280
    forbids and for which `cryptography` warns; the warning is silenced here
    only, because the serial number plays no part in how arx trusts them.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*serial number.*", category=CryptographyDeprecationWarning
        )
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                return x509.load_pem_x509_certificates(data)
            return [x509.load_der_x509_certificate(data)]
        except (ValueError, x509.InvalidVersion) as exc:
            raise EvidenceFieldError(
                "snp.cert.parse", f"not a DER or PEM X.509 certificate: {exc}"
            ) from exc
