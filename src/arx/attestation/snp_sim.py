"""A locally generated AMD-style PKI and a builder of signed SEV-SNP reports.

``SimAmdChain.generate()`` makes an ARK (RSA-4096, self-signed), an ASK and
an ASVK (RSA-4096, signed by the ARK) and a VCEK (ECDSA P-384, signed by the
ASK) with AMD's certificate profile: RSASSA-PSS with SHA-384, MGF1-SHA-384
and a 48-byte salt; AMD's name layout; the KDS CRL distribution points; and
the VCEK extensions (productName, TCB security patch levels, hwID).
``build_report`` lays out and signs a real-layout report.

The simulated backend signs its reports with such a chain, and the verifier
checks them with exactly the code that checks AMD's, given
``chain.trust()`` as its anchors instead of ``AmdTrust.pinned()``. Nothing
here is trusted by default: the anchors are an explicit input.

Tests use the same builder to make reports that break exactly one check.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from arx.attestation.snp import (
    CHIP_ID_SIZE,
    ECDSA_COMPONENT_SIZE,
    HWID_SIZES,
    OID_CSP_ID,
    OID_HWID,
    OID_PRODUCT_NAME,
    OID_STRUCT_VERSION,
    PLATFORM_INFO_BITS,
    POLICY_BIT_RESERVED_ONE,
    POLICY_BIT_SMT,
    SIGNATURE_ALGO_ECDSA_P384_SHA384,
    SIGNED_LENGTH,
    SPL_OIDS,
    Product,
    SigningKey,
    TcbVersion,
    VekExtensions,
    encode_report,
)
from arx.attestation.snp_verify import AMD_PSS, KDS_CRL_URL, AmdTrust, ProductAnchors

SIM_ORGANIZATION: Final = "arx simulator (not AMD)"
ARK_LIFETIME: Final = timedelta(days=25 * 365)
VEK_LIFETIME: Final = timedelta(days=7 * 365)
DEFAULT_NOT_BEFORE: Final = datetime(2024, 1, 1, tzinfo=UTC)
RSA_BITS: Final = 4096
RSA_EXPONENT: Final = 65537

# The CPUID family, model and stepping a report carries for each product.
SIM_CPUID: Final[Mapping[Product, tuple[int, int, int]]] = {
    Product.MILAN: (0x19, 0x01, 0x01),
    Product.GENOA: (0x19, 0x11, 0x01),
    Product.TURIN: (0x1A, 0x02, 0x00),
}
# VCEK productName values as the KDS writes them.
SIM_PRODUCT_NAME: Final[Mapping[Product, str]] = {
    Product.MILAN: "Milan-B0",
    Product.GENOA: "Genoa-B1",
    Product.TURIN: "Turin",
}
DEFAULT_FIRMWARE: Final = (1, 55, 21)  # (major, minor, build)
RESERVED_SPL_OIDS: Final = tuple(
    x509.ObjectIdentifier(f"1.3.6.1.4.1.3704.1.3.{n}") for n in (4, 5, 6, 7)
)


def _der_integer(value: int) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return bytes([0x02, len(body)]) + body


def _der_ia5(text: str) -> bytes:
    body = text.encode("ascii")
    return bytes([0x16, len(body)]) + body


def _amd_name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, SIM_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _sign(builder: x509.CertificateBuilder, key: rsa.RSAPrivateKey) -> x509.Certificate:
    return builder.sign(key, hashes.SHA384(), rsa_padding=AMD_PSS)


def _ca_cert(
    *,
    subject: str,
    issuer: x509.Name | None,
    key: rsa.RSAPrivateKey,
    signer: rsa.RSAPrivateKey,
    crl_kind: str,
    product: Product,
    not_before: datetime,
    path_length: int | None,
) -> x509.Certificate:
    name = _amd_name(subject)
    url = KDS_CRL_URL.format(kind=crl_kind, product=product.value)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + ARK_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=issuer is None,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)]
            ),
            critical=False,
        )
    )
    return _sign(builder, signer)


@dataclass(frozen=True, slots=True)
class SimVek:
    """A simulated VCEK or VLEK: its private key and certificate."""

    kind: SigningKey
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    tcb: TcbVersion
    hwid: bytes | None


@dataclass(frozen=True, slots=True)
class SimAmdChain:
    """An ARK → ASK/ASVK chain for one product, plus one default VCEK."""

    product: Product
    ark_key: rsa.RSAPrivateKey
    ark: x509.Certificate
    ask_key: rsa.RSAPrivateKey
    ask: x509.Certificate
    asvk_key: rsa.RSAPrivateKey
    asvk: x509.Certificate
    vcek: SimVek

    @classmethod
    def generate(
        cls,
        product: Product = Product.MILAN,
        *,
        not_before: datetime = DEFAULT_NOT_BEFORE,
        tcb: TcbVersion | None = None,
    ) -> SimAmdChain:
        """Generate fresh keys and certificates (three RSA-4096 keys: about a second)."""
        p = product.value
        ark_key = rsa.generate_private_key(RSA_EXPONENT, RSA_BITS)
        ark = _ca_cert(
            subject=f"ARK-{p}",
            issuer=None,
            key=ark_key,
            signer=ark_key,
            crl_kind="vcek",
            product=product,
            not_before=not_before,
            path_length=None,
        )
        ask_key = rsa.generate_private_key(RSA_EXPONENT, RSA_BITS)
        ask = _ca_cert(
            subject=f"SEV-{p}",
            issuer=ark.subject,
            key=ask_key,
            signer=ark_key,
            crl_kind="vcek",
            product=product,
            not_before=not_before,
            path_length=0,
        )
        asvk_key = rsa.generate_private_key(RSA_EXPONENT, RSA_BITS)
        asvk = _ca_cert(
            subject=f"SEV-VLEK-{p}",
            issuer=ark.subject,
            key=asvk_key,
            signer=ark_key,
            crl_kind="vlek",
            product=product,
            not_before=not_before,
            path_length=0,
        )
        partial = cls(product, ark_key, ark, ask_key, ask, asvk_key, asvk, vcek=None)  # type: ignore[arg-type]
        vcek = partial.issue_vek(SigningKey.VCEK, tcb=tcb, not_before=not_before)
        return cls(product, ark_key, ark, ask_key, ask, asvk_key, asvk, vcek)

    def default_tcb(self) -> TcbVersion:
        fmc = 1 if self.product is Product.TURIN else None
        return TcbVersion(self.product, bootloader=4, tee=0, snp=24, microcode=219, fmc=fmc)

    def trust(self, name: str = "arx simulator") -> AmdTrust:
        """Anchors that trust this chain (and nothing else)."""
        return AmdTrust(
            [ProductAnchors(product=self.product, ark=self.ark, ask=self.ask, asvk=self.asvk)],
            name=name,
        )

    def issue_vek(
        self,
        kind: SigningKey = SigningKey.VCEK,
        *,
        tcb: TcbVersion | None = None,
        hwid: bytes | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
        not_before: datetime = DEFAULT_NOT_BEFORE,
        lifetime: timedelta = VEK_LIFETIME,
        product_name: str | None = None,
        subject_cn: str | None = None,
        omit: frozenset[str] = frozenset(),
        issuer_key: rsa.RSAPrivateKey | None = None,
    ) -> SimVek:
        """Issue a VCEK (signed by the ASK) or VLEK (signed by the ASVK).

        ``omit`` names extensions to leave out (``"hwid"``, an SPL name, or
        ``"product_name"``); it and the other overrides exist for tests.
        """
        tcb = tcb or self.default_tcb()
        key = key or ec.generate_private_key(ec.SECP384R1())
        vcek = kind is SigningKey.VCEK
        if vcek and hwid is None:
            hwid = os.urandom(HWID_SIZES[self.product])
        issuer = self.ask if vcek else self.asvk
        signer = issuer_key or (self.ask_key if vcek else self.asvk_key)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_amd_name(subject_cn or ("SEV-VCEK" if vcek else "SEV-VLEK")))
            .issuer_name(issuer.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_before + lifetime)
        )

        def add(oid: x509.ObjectIdentifier, value: bytes) -> None:
            nonlocal builder
            builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)

        add(OID_STRUCT_VERSION, _der_integer(1 if self.product is Product.TURIN else 0))
        if "product_name" not in omit:
            add(OID_PRODUCT_NAME, _der_ia5(product_name or SIM_PRODUCT_NAME[self.product]))
        components = tcb.components()
        for name, oid in SPL_OIDS.items():
            if name in components and name not in omit:
                add(oid, _der_integer(components[name]))
        if self.product is not Product.TURIN:
            for oid in RESERVED_SPL_OIDS:
                add(oid, _der_integer(0))
        if vcek and hwid is not None and "hwid" not in omit:
            add(OID_HWID, hwid)
        if not vcek:
            add(OID_CSP_ID, _der_ia5("CN=arx-simulator"))
        cert = _sign(builder, signer)
        return SimVek(kind=kind, key=key, cert=cert, tcb=tcb, hwid=hwid if vcek else None)

    def crl(
        self,
        *,
        revoked_serials: tuple[int, ...] = (),
        last_update: datetime = DEFAULT_NOT_BEFORE,
        next_update: datetime | None = None,
        signer: rsa.RSAPrivateKey | None = None,
    ) -> x509.CertificateRevocationList:
        """A CRL issued by the ARK, as the KDS publishes one per product."""
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.ark.subject)
            .last_update(last_update)
            .next_update(next_update or last_update + timedelta(days=3650))
        )
        for serial in revoked_serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(last_update)
                .build()
            )
        return builder.sign(signer or self.ark_key, hashes.SHA384(), rsa_padding=AMD_PSS)

    def build_report(
        self,
        vek: SimVek | None = None,
        *,
        patch: Mapping[int, bytes] | None = None,
        sign: bool = True,
        **fields: object,
    ) -> bytes:
        """A signed report from this chain's VCEK (or ``vek``); see ``build_report``."""
        return build_report(
            vek or self.vcek, product=self.product, patch=patch, sign=sign, **fields
        )

    # -- serialisation ----------------------------------------------------------

    def to_pem(self) -> dict[str, bytes]:
        """Certificates and (unencrypted PKCS#8) private keys, as PEM, by role."""

        def key_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
            return key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )

        pem = serialization.Encoding.PEM
        return {
            "product": self.product.value.encode(),
            "ark.pem": self.ark.public_bytes(pem),
            "ark.key": key_pem(self.ark_key),
            "ask.pem": self.ask.public_bytes(pem),
            "ask.key": key_pem(self.ask_key),
            "asvk.pem": self.asvk.public_bytes(pem),
            "asvk.key": key_pem(self.asvk_key),
            "vcek.pem": self.vcek.cert.public_bytes(pem),
            "vcek.key": key_pem(self.vcek.key),
        }

    @classmethod
    def from_pem(cls, files: Mapping[str, bytes]) -> SimAmdChain:
        """The inverse of ``to_pem``."""

        def rsa_key(name: str) -> rsa.RSAPrivateKey:
            key = serialization.load_pem_private_key(files[name], password=None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError(f"{name} is not an RSA key")
            return key

        product = Product(files["product"].decode())
        vcek_key = serialization.load_pem_private_key(files["vcek.key"], password=None)
        if not isinstance(vcek_key, ec.EllipticCurvePrivateKey):
            raise ValueError("vcek.key is not an EC key")
        vcek_cert = x509.load_pem_x509_certificate(files["vcek.pem"])
        ext = VekExtensions.from_certificate(vcek_cert, SigningKey.VCEK)
        tcb = TcbVersion(product, **ext.spl)
        return cls(
            product,
            rsa_key("ark.key"),
            x509.load_pem_x509_certificate(files["ark.pem"]),
            rsa_key("ask.key"),
            x509.load_pem_x509_certificate(files["ask.pem"]),
            rsa_key("asvk.key"),
            x509.load_pem_x509_certificate(files["asvk.pem"]),
            SimVek(SigningKey.VCEK, vcek_key, vcek_cert, tcb, ext.hwid),
        )


def sign_report(report: bytes | bytearray, key: ec.EllipticCurvePrivateKey) -> bytes:
    """Re-sign bytes [0, 0x2A0) of a laid-out report in place of its signature."""
    data = bytearray(report)
    der = key.sign(bytes(data[:SIGNED_LENGTH]), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    data[SIGNED_LENGTH : SIGNED_LENGTH + ECDSA_COMPONENT_SIZE] = r.to_bytes(
        ECDSA_COMPONENT_SIZE, "little"
    )
    data[SIGNED_LENGTH + ECDSA_COMPONENT_SIZE : SIGNED_LENGTH + 2 * ECDSA_COMPONENT_SIZE] = (
        s.to_bytes(ECDSA_COMPONENT_SIZE, "little")
    )
    return bytes(data)


DEFAULT_POLICY: Final = (1 << POLICY_BIT_RESERVED_ONE) | (1 << POLICY_BIT_SMT)
DEFAULT_PLATFORM_INFO: Final = (1 << PLATFORM_INFO_BITS["smt_en"]) | (
    1 << PLATFORM_INFO_BITS["alias_check_complete"]
)
DEFAULT_REPORT_VERSION: Final = 3


def build_report(
    vek: SimVek,
    *,
    product: Product,
    patch: Mapping[int, bytes] | None = None,
    sign: bool = True,
    **fields: object,
) -> bytes:
    """Lay out and sign a report (version 3 unless ``version`` is given).

    Every field defaults to what a healthy guest on ``vek``'s chip reports:
    all four TCBs equal to the certificate's, CHIP_ID equal to the hwID,
    VMPL 0, POLICY with SMT allowed and nothing else, PLATFORM_INFO with SMT and
    ALIAS_CHECK_COMPLETE, equal current and committed firmware. ``fields``
    override any named field of the layout (TCB fields accept a TcbVersion).
    ``patch`` writes raw bytes at offsets (for reserved ranges) before signing.
    """
    family, model, stepping = SIM_CPUID[product]
    fw_major, fw_minor, fw_build = DEFAULT_FIRMWARE
    tcb = vek.tcb.encode()
    chip_id = bytes(CHIP_ID_SIZE)
    if vek.hwid is not None:
        chip_id = vek.hwid + bytes(CHIP_ID_SIZE - len(vek.hwid))
    values: dict[str, object] = {
        "version": DEFAULT_REPORT_VERSION,
        "guest_svn": 0,
        "policy": DEFAULT_POLICY,
        "vmpl": 0,
        "signature_algo": SIGNATURE_ALGO_ECDSA_P384_SHA384,
        "current_tcb": tcb,
        "platform_info": DEFAULT_PLATFORM_INFO,
        "signer_info": vek.kind.value << 2,
        "measurement": bytes(range(48)),
        "reported_tcb": tcb,
        "cpuid_fam_id": family,
        "cpuid_mod_id": model,
        "cpuid_step": stepping,
        "chip_id": chip_id,
        "committed_tcb": tcb,
        "current_build": fw_build,
        "current_minor": fw_minor,
        "current_major": fw_major,
        "committed_build": fw_build,
        "committed_minor": fw_minor,
        "committed_major": fw_major,
        "launch_tcb": tcb,
    }
    for name, value in fields.items():
        values[name] = value.encode() if isinstance(value, TcbVersion) else value
    data = bytearray(encode_report(values))
    for offset, raw in (patch or {}).items():
        data[offset : offset + len(raw)] = raw
    return sign_report(data, vek.key) if sign else bytes(data)
