"""Verification of SEV-SNP attestation reports.

``verify_snp`` is a pure function of (parsed report, VCEK or VLEK
certificate, trust anchors, policy, time, optional CRL, optional expected
REPORT_DATA). It returns a ``VerifiedEvidence`` or raises
``VerificationError`` whose ``check`` names the failed check; the checks, in
order, with their specification references, are listed in
docs/attestation.md.

It runs in two stages whose result types differ:

1. ``authenticate_snp``: the certificate chain from the VCEK/VLEK to a pinned
   ARK, the report signature, and the bindings between report and certificate
   (product, REPORTED_TCB, CHIP_ID). These checks have no settings. Its result
   is an ``AuthenticSnpReport``.
2. ``apply_snp_policy``: guest policy bits (DEBUG and MIGRATE_MA always
   rejected), VMPL, platform info, TCB minimums and ordering, firmware
   versions, identity fields and REPORT_DATA, against an ``SnpPolicy``.

Trust anchors are an input: ``AmdTrust.pinned()`` holds AMD's ARK, ASK and
ASVK for Milan, Genoa and Turin, shipped in the package; a caller may build
another ``AmdTrust`` (the simulator does, from its own generated chain).
Certificates the host presents are never trusted: an ARK or ASK it sends is
only compared with the pinned one.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from arx.attestation.claims import VerifiedEvidence
from arx.attestation.policy import ANY, GUEST_POLICY_FLAGS, SnpPolicy
from arx.attestation.snp import (
    HWID_SIZES,
    POLICY_BIT_DEBUG,
    POLICY_BIT_MIGRATE_MA,
    REPORT_DATA_SIZE,
    Product,
    SigningKey,
    SnpReport,
    TcbVersion,
    VekExtensions,
    tcb_components_le,
)
from arx.errors import EvidenceFieldError, UsageError, VerificationError

# AMD's certificate profile (VCEK specification 57230 and KDS interface
# specification): every certificate in the chain is signed with RSASSA-PSS,
# SHA-384, MGF1 with SHA-384 and a 48-byte salt.
PSS_SALT_LENGTH: Final = 48
AMD_PSS: Final = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=PSS_SALT_LENGTH)
ARK_ASK_RSA_BITS: Final = 4096
KDS_CRL_URL: Final = "https://kdsintf.amd.com/{kind}/v1/{product}/crl"

VCEK_CN: Final = "SEV-VCEK"
VLEK_CN: Final = "SEV-VLEK"

CHAIN_CACHE_SIZE: Final = 256
"""Verified (anchors, VCEK) pairs remembered, so repeated reports skip the RSA checks."""


def _cn(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(values) != 1:
        return None
    value = values[0].value
    return value if isinstance(value, str) else None


def _check_amd_signature(
    cert: x509.Certificate, issuer_key: rsa.RSAPublicKey, check: str, what: str
) -> None:
    """RSASSA-PSS/SHA-384 with the exact AMD parameters, else VerificationError(check)."""
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS:
        raise VerificationError(
            check,
            f"{what} is not signed with RSASSA-PSS",
            expected="RSASSA-PSS SHA-384",
            actual=cert.signature_algorithm_oid.dotted_string,
        )
    if not isinstance(cert.signature_hash_algorithm, hashes.SHA384):
        raise VerificationError(check, f"{what} signature does not use SHA-384")
    try:
        issuer_key.verify(cert.signature, cert.tbs_certificate_bytes, AMD_PSS, hashes.SHA384())
    except (InvalidSignature, ValueError, UnsupportedAlgorithm) as exc:
        raise VerificationError(
            check, f"{what} signature does not verify under its issuer"
        ) from exc


def _validity_window(certs: Iterable[x509.Certificate]) -> tuple[datetime, datetime]:
    """The intersection of the certificates' validity periods."""
    certs = list(certs)
    return (
        max(c.not_valid_before_utc for c in certs),
        min(c.not_valid_after_utc for c in certs),
    )


def _crl_urls(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    except x509.ExtensionNotFound:
        return []
    urls = []
    for point in ext.value:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier):
                urls.append(name.value)
    return urls


@dataclass(frozen=True, slots=True)
class ProductAnchors:
    """The ARK, the ASK (issues VCEKs) and optionally the ASVK (issues VLEKs) of a product."""

    product: Product
    ark: x509.Certificate
    ask: x509.Certificate
    asvk: x509.Certificate | None = None

    def issuer_for(self, kind: SigningKey) -> x509.Certificate | None:
        return self.ask if kind is SigningKey.VCEK else self.asvk


class AmdTrust:
    """A set of trusted ARK/ASK/ASVK chains, at most one per product.

    The constructor checks each chain's profile (names, RSA-4096 keys,
    RSASSA-PSS signatures, CA constraints, CRL distribution point), so a
    malformed anchor set fails before any report is looked at.
    """

    def __init__(self, anchors: Iterable[ProductAnchors], *, name: str) -> None:
        self.name = name
        self._by_product: dict[Product, ProductAnchors] = {}
        for item in anchors:
            if item.product in self._by_product:
                raise UsageError(f"trust anchors {name}: two chains for {item.product.value}")
            self._check_profile(item)
            self._by_product[item.product] = item
        if not self._by_product:
            raise UsageError(f"trust anchors {name}: empty")
        self._cache: OrderedDict[tuple[bytes, SigningKey], _VerifiedVek] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AmdTrust({self.name!r}, {sorted(p.value for p in self._by_product)})"

    @property
    def products(self) -> frozenset[Product]:
        return frozenset(self._by_product)

    def get(self, product: Product) -> ProductAnchors | None:
        return self._by_product.get(product)

    @staticmethod
    def _check_profile(item: ProductAnchors) -> None:
        p = item.product.value
        where = f"trust anchors for {p}"
        check = "snp.anchors"
        ark_key = item.ark.public_key()
        if not isinstance(ark_key, rsa.RSAPublicKey) or ark_key.key_size != ARK_ASK_RSA_BITS:
            raise VerificationError(check, f"{where}: the ARK key is not RSA-{ARK_ASK_RSA_BITS}")
        if _cn(item.ark.subject) != f"ARK-{p}" or item.ark.issuer != item.ark.subject:
            raise VerificationError(check, f"{where}: the ARK is not a self-issued ARK-{p}")
        _check_amd_signature(item.ark, ark_key, check, f"ARK-{p}")
        for cert, cn, kind in (
            (item.ask, f"SEV-{p}", "vcek"),
            (item.asvk, f"SEV-VLEK-{p}", "vlek"),
        ):
            if cert is None:
                continue
            key = cert.public_key()
            if not isinstance(key, rsa.RSAPublicKey) or key.key_size != ARK_ASK_RSA_BITS:
                raise VerificationError(check, f"{where}: {cn} key is not RSA-{ARK_ASK_RSA_BITS}")
            if _cn(cert.subject) != cn or cert.issuer != item.ark.subject:
                raise VerificationError(check, f"{where}: expected {cn} issued by ARK-{p}")
            _check_amd_signature(cert, ark_key, check, cn)
            try:
                bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            except x509.ExtensionNotFound as exc:
                raise VerificationError(check, f"{where}: {cn} has no basicConstraints") from exc
            if not bc.ca:
                raise VerificationError(check, f"{where}: {cn} is not a CA")
            url = KDS_CRL_URL.format(kind=kind, product=p)
            if _crl_urls(cert) != [url]:
                raise VerificationError(
                    check,
                    f"{where}: {cn} must name exactly one CRL distribution point",
                    expected=url,
                    actual=", ".join(_crl_urls(cert)) or "none",
                )

    @classmethod
    def from_pem(
        cls, chains: Mapping[Product, tuple[bytes, bytes, bytes | None]], *, name: str
    ) -> AmdTrust:
        """Build from PEM texts (ARK, ASK, ASVK or None) per product."""
        items = []
        for product, (ark, ask, asvk) in chains.items():
            try:
                items.append(
                    ProductAnchors(
                        product=product,
                        ark=x509.load_pem_x509_certificate(ark),
                        ask=x509.load_pem_x509_certificate(ask),
                        asvk=None if asvk is None else x509.load_pem_x509_certificate(asvk),
                    )
                )
            except (ValueError, x509.InvalidVersion) as exc:
                raise UsageError(
                    f"trust anchors {name}: unreadable PEM for {product.value}"
                ) from exc
        return cls(items, name=name)

    @staticmethod
    @functools.cache
    def pinned() -> AmdTrust:
        """AMD's own ARK, ASK and ASVK for Milan, Genoa and Turin, shipped with arx."""
        root = resources.files("arx.attestation").joinpath("roots", "amd")
        chains = {}
        for product in Product:
            folder = root.joinpath(product.value.lower())
            chains[product] = (
                folder.joinpath("ark.pem").read_bytes(),
                folder.joinpath("ask.pem").read_bytes(),
                folder.joinpath("asvk.pem").read_bytes(),
            )
        return AmdTrust.from_pem(chains, name="AMD")

    # -- the VCEK/VLEK part of the chain, cached ------------------------------

    def clear_cache(self) -> None:
        """Forget verified VCEKs/VLEKs (for benchmarks; results do not depend on it)."""
        with self._lock:
            self._cache.clear()

    def verify_vek(self, vek: x509.Certificate, kind: SigningKey) -> _VerifiedVek:
        """Check a VCEK/VLEK against these anchors (time-independent parts, cached)."""
        key = (vek.fingerprint(hashes.SHA256()), kind)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        result = self._verify_vek_uncached(vek, kind)
        with self._lock:
            self._cache[key] = result
            while len(self._cache) > CHAIN_CACHE_SIZE:
                self._cache.popitem(last=False)
        return result

    def _verify_vek_uncached(self, vek: x509.Certificate, kind: SigningKey) -> _VerifiedVek:
        name = "VCEK" if kind is SigningKey.VCEK else "VLEK"
        anchors = next(
            (
                a
                for a in self._by_product.values()
                if (issuer := a.issuer_for(kind)) is not None and issuer.subject == vek.issuer
            ),
            None,
        )
        if anchors is None:
            raise VerificationError(
                "snp.cert.issuer",
                f"the {name} certificate's issuer is not a trusted {name} issuer of {self.name}",
                expected=" or ".join(
                    str(_cn(i.subject))
                    for a in self._by_product.values()
                    if (i := a.issuer_for(kind)) is not None
                ),
                actual=str(_cn(vek.issuer)),
            )
        issuer = anchors.issuer_for(kind)
        assert issuer is not None
        if vek.version is not x509.Version.v3:
            raise VerificationError("snp.cert.profile", f"the {name} certificate is not X.509 v3")
        expected_cn = VCEK_CN if kind is SigningKey.VCEK else VLEK_CN
        if _cn(vek.subject) != expected_cn:
            raise VerificationError(
                "snp.cert.profile",
                f"the certificate's subject does not match the report's SIGNING_KEY ({name})",
                expected=expected_cn,
                actual=str(_cn(vek.subject)),
            )
        try:
            public_key = vek.public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise VerificationError("snp.cert.profile", f"unreadable {name} public key") from exc
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
            public_key.curve, ec.SECP384R1
        ):
            raise VerificationError(
                "snp.cert.profile", f"the {name} key is not ECDSA P-384", expected="P-384"
            )
        issuer_key = issuer.public_key()
        assert isinstance(issuer_key, rsa.RSAPublicKey)
        _check_amd_signature(vek, issuer_key, "snp.cert.signature", f"the {name} certificate")
        try:
            extensions = VekExtensions.from_certificate(vek, kind)
        except EvidenceFieldError as exc:
            raise VerificationError(exc.check, exc.message) from exc
        if extensions.product is not anchors.product:
            raise VerificationError(
                "snp.product.cert",
                f"the {name}'s productName does not match the product of its issuer",
                expected=anchors.product.value,
                actual=extensions.product_name,
            )
        not_before, not_after = _validity_window((anchors.ark, issuer, vek))
        return _VerifiedVek(
            anchors=anchors,
            issuer=issuer,
            kind=kind,
            public_key=public_key,
            extensions=extensions,
            not_before=not_before,
            not_after=not_after,
        )


@dataclass(frozen=True, slots=True)
class _VerifiedVek:
    anchors: ProductAnchors
    issuer: x509.Certificate
    kind: SigningKey
    public_key: ec.EllipticCurvePublicKey
    extensions: VekExtensions
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthenticSnpReport:
    """A report whose signature, chain and certificate bindings have been verified.

    Nothing in it has been judged against a policy yet.
    """

    report: SnpReport
    product: Product
    signing_key: SigningKey
    anchors_name: str
    reported_tcb: TcbVersion
    current_tcb: TcbVersion
    committed_tcb: TcbVersion
    launch_tcb: TcbVersion
    cert_tcb: Mapping[str, int]
    product_name: str
    csp_id: str | None
    crl_checked: bool


def _check_time(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise UsageError("verification time must be timezone-aware (UTC)")


def _check_crl(crl: x509.CertificateRevocationList, vek: _VerifiedVek, now: datetime) -> None:
    ark = vek.anchors.ark
    if crl.issuer != ark.subject:
        raise VerificationError(
            "snp.crl.issuer",
            "the CRL is not issued by the product's ARK",
            expected=str(_cn(ark.subject)),
            actual=str(_cn(crl.issuer)),
        )
    if crl.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS:
        raise VerificationError("snp.crl.signature", "the CRL is not signed with RSASSA-PSS")
    ark_key = ark.public_key()
    assert isinstance(ark_key, rsa.RSAPublicKey)
    try:
        ark_key.verify(crl.signature, crl.tbs_certlist_bytes, AMD_PSS, hashes.SHA384())
    except (InvalidSignature, ValueError) as exc:
        raise VerificationError(
            "snp.crl.signature", "the CRL signature does not verify under the ARK"
        ) from exc
    next_update = crl.next_update_utc
    if crl.last_update_utc > now or next_update is None or next_update < now:
        raise VerificationError(
            "snp.crl.stale",
            "the CRL is not current at the verification time",
            expected=f"{crl.last_update_utc.isoformat()} <= now <= "
            f"{next_update.isoformat() if next_update else 'nextUpdate'}",
            actual=now.isoformat(),
        )
    for cert, what in ((vek.issuer, "ASK/ASVK"),):
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise VerificationError(
                "snp.crl.revoked",
                f"the {what} {_cn(cert.subject)} is revoked",
                actual=f"serial {cert.serial_number:x}",
            )


def authenticate_snp(
    report: SnpReport,
    *,
    vcek: x509.Certificate,
    anchors: AmdTrust,
    now: datetime,
    crl: x509.CertificateRevocationList | None = None,
    presented_chain: Sequence[x509.Certificate] = (),
) -> AuthenticSnpReport:
    """Verify everything about the report that no policy can relax.

    ``vcek`` is the VCEK or VLEK certificate (the report's SIGNING_KEY says
    which it must be). ``presented_chain`` holds any ASK/ASVK/ARK the host
    sent: each must be byte-identical to the pinned certificate it claims to
    be, and is otherwise ignored.
    """
    _check_time(now)
    kind = report.signing_key
    vek = anchors.verify_vek(vcek, kind)
    product = vek.anchors.product

    # Chain validity at `now`, for the ARK, the ASK/ASVK and the VCEK/VLEK.
    if not vek.not_before <= now <= vek.not_after:
        raise VerificationError(
            "snp.cert.validity",
            "the certificate chain is not valid at the verification time",
            expected=f"{vek.not_before.isoformat()} .. {vek.not_after.isoformat()}",
            actual=now.isoformat(),
        )
    trusted = {vek.anchors.ark, vek.issuer}
    for cert in presented_chain:
        if cert not in trusted and cert != vcek:
            raise VerificationError(
                "snp.cert.untrusted",
                "a certificate presented with the report is not the pinned ARK or ASK "
                f"of {product.value}",
                actual=str(_cn(cert.subject)),
            )
    crl_checked = False
    if crl is not None:
        _check_crl(crl, vek, now)
        crl_checked = True

    # The report signature: ECDSA P-384 with SHA-384 over bytes [0, 0x2A0).
    signature = encode_dss_signature(report.signature_r, report.signature_s)
    try:
        vek.public_key.verify(signature, report.signed_bytes, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature as exc:
        raise VerificationError(
            "snp.signature", "the report signature does not verify under the VCEK/VLEK key"
        ) from exc

    # Product binding: CPUID (v3+) == chain product == productName.
    if report.cpuid_fam_id is not None:
        cpuid_product = report.cpuid_product
        if cpuid_product is None:
            raise VerificationError(
                "snp.product.unknown",
                "CPUID family/model names no supported product",
                expected="Milan, Genoa or Turin",
                actual=f"family 0x{report.cpuid_fam_id:02x} model 0x{report.cpuid_mod_id or 0:02x}",
            )
        if cpuid_product is not product:
            raise VerificationError(
                "snp.product.mismatch",
                "the report's CPUID names another product than its certificate chain",
                expected=product.value,
                actual=cpuid_product.value,
            )
    elif product is Product.TURIN:
        raise VerificationError(
            "snp.product.mismatch",
            "a version 2 report cannot come from Turin, whose TCB layout needs CPUID",
            expected="report version >= 3",
            actual=str(report.version),
        )

    try:
        tcbs = {
            name: TcbVersion.decode(getattr(report, name), product)
            for name in ("reported_tcb", "current_tcb", "committed_tcb", "launch_tcb")
        }
    except EvidenceFieldError as exc:
        raise VerificationError(exc.check, exc.message) from exc
    reported = tcbs["reported_tcb"]
    cert_tcb = dict(vek.extensions.spl)
    if reported.components() != cert_tcb:
        raise VerificationError(
            "snp.tcb.cert",
            "REPORTED_TCB differs from the TCB the VCEK/VLEK was issued for",
            expected=" ".join(f"{k}={v}" for k, v in cert_tcb.items()),
            actual=str(reported),
        )
    worse = tcb_components_le(cert_tcb, tcbs["current_tcb"].components())
    if worse is not None:
        raise VerificationError(
            "snp.tcb.current",
            f"CURRENT_TCB {worse} is below the certificate's TCB",
            expected=f"{worse} >= {cert_tcb[worse]}",
            actual=str(tcbs["current_tcb"]),
        )

    if kind is SigningKey.VCEK and not report.chip_id_masked:
        hwid = vek.extensions.hwid
        assert hwid is not None
        size = HWID_SIZES[product]
        if report.chip_id[:size] != hwid:
            raise VerificationError(
                "snp.chip_id",
                "CHIP_ID differs from the VCEK's hwID",
                expected=hwid.hex(),
                actual=report.chip_id[:size].hex(),
            )

    return AuthenticSnpReport(
        report=report,
        product=product,
        signing_key=kind,
        anchors_name=anchors.name,
        reported_tcb=reported,
        current_tcb=tcbs["current_tcb"],
        committed_tcb=tcbs["committed_tcb"],
        launch_tcb=tcbs["launch_tcb"],
        cert_tcb=cert_tcb,
        product_name=vek.extensions.product_name,
        csp_id=vek.extensions.csp_id,
        crl_checked=crl_checked,
    )


def _flag(value: bool) -> str:
    return "set" if value else "clear"


def _check_flag(check: str, what: str, want: object, have: bool) -> None:
    """One flag the policy constrains to set, clear, or ``ANY``."""
    if want is not ANY and want != have:
        raise VerificationError(
            check,
            f"{what} is not as the policy requires",
            expected=_flag(bool(want)),
            actual=_flag(have),
        )


def _in_set(check: str, what: str, allowed: frozenset[bytes] | object, actual: bytes) -> None:
    if allowed is ANY:
        return
    assert isinstance(allowed, frozenset)
    if actual not in allowed:
        raise VerificationError(
            check,
            f"{what} is not one the policy accepts",
            expected=" or ".join(sorted(v.hex() for v in allowed)),
            actual=actual.hex(),
        )


def apply_snp_policy(
    authentic: AuthenticSnpReport,
    policy: SnpPolicy,
    *,
    expected_report_data: bytes | None = None,
) -> VerifiedEvidence:
    """Judge an authentic report against a policy; return the verified claims."""
    r = authentic.report
    if expected_report_data is not None and len(expected_report_data) != REPORT_DATA_SIZE:
        raise UsageError(f"expected REPORT_DATA must be {REPORT_DATA_SIZE} bytes")

    # Guest policy (ABI spec 56860, guest policy structure). DEBUG and MIGRATE_MA
    # have no setting.
    if r.policy_bit(POLICY_BIT_DEBUG):
        raise VerificationError(
            "snp.policy.debug",
            "the guest was launched with DEBUG allowed",
            expected="clear",
            actual="set",
        )
    if r.policy_bit(POLICY_BIT_MIGRATE_MA):
        raise VerificationError(
            "snp.policy.migrate_ma",
            "the guest allows a migration agent",
            expected="clear",
            actual="set",
        )
    for name, bit in GUEST_POLICY_FLAGS.items():
        _check_flag(
            f"snp.policy.{name}",
            f"guest POLICY.{name.upper()} (bit {bit})",
            policy.guest_policy[name],
            r.policy_bit(bit),
        )
    if r.policy_abi < policy.min_policy_abi:
        raise VerificationError(
            "snp.policy.abi",
            "the guest POLICY's minimum ABI version is below the policy's minimum",
            expected=">= {}.{}".format(*policy.min_policy_abi),
            actual="{}.{}".format(*r.policy_abi),
        )

    if r.version < policy.min_report_version:
        raise VerificationError(
            "snp.report.version",
            "the report version is older than the policy accepts",
            expected=f">= {policy.min_report_version}",
            actual=str(r.version),
        )
    if policy.products is not ANY and authentic.product not in policy.products:
        raise VerificationError(
            "snp.product.policy",
            "the product is not one the policy accepts",
            expected=", ".join(sorted(p.value for p in policy.products)),
            actual=authentic.product.value,
        )
    if authentic.signing_key not in policy.signing_keys:
        raise VerificationError(
            "snp.signer.policy",
            "the signing key kind is not one the policy accepts",
            expected=", ".join(sorted(k.name for k in policy.signing_keys)),
            actual=authentic.signing_key.name,
        )
    if policy.require_crl and not authentic.crl_checked:
        raise VerificationError("snp.crl.missing", "the policy requires a CRL and none was given")

    if policy.vmpl is not ANY and r.vmpl not in policy.vmpl:
        raise VerificationError(
            "snp.vmpl",
            "the report was requested from a VMPL the policy does not accept",
            expected=" or ".join(str(v) for v in sorted(policy.vmpl)),
            actual=str(r.vmpl),
        )

    for name, want in policy.platform_info.items():
        _check_flag(
            f"snp.platform_info.{name}",
            f"PLATFORM_INFO.{name.upper()}",
            want,
            r.platform_flag(name),
        )

    if policy.required_mitigations:
        for name, vector in (
            ("launch", r.launch_mit_vector),
            ("current", r.current_mit_vector),
        ):
            if (
                vector is None
                or vector & policy.required_mitigations != policy.required_mitigations
            ):
                raise VerificationError(
                    "snp.mitigation",
                    f"the {name.upper()}_MIT_VECTOR lacks mitigations the policy requires",
                    expected=f"0x{policy.required_mitigations:x} set",
                    actual="absent (report version < 5)" if vector is None else f"0x{vector:x}",
                )

    # TCB: per component, never as one 64-bit number.
    for check, what, minimum, tcb in (
        ("snp.tcb.minimum", "REPORTED_TCB", policy.min_tcb, authentic.reported_tcb),
        ("snp.tcb.launch_minimum", "LAUNCH_TCB", policy.min_launch_tcb, authentic.launch_tcb),
    ):
        component = tcb_components_le(minimum, tcb.components())
        if component is not None:
            raise VerificationError(
                check,
                f"{what} {component} is below the policy minimum",
                expected=f"{component} >= {minimum[component]}",
                actual=str(tcb),
            )
    committed, current = authentic.committed_tcb.components(), authentic.current_tcb.components()
    committed_fw = (r.committed_major, r.committed_minor, r.committed_build)
    current_fw = (r.current_major, r.current_minor, r.current_build)
    if policy.allow_provisional_firmware:
        component = tcb_components_le(committed, current)
        if component is not None:
            raise VerificationError(
                "snp.tcb.committed",
                f"COMMITTED_TCB {component} is above CURRENT_TCB",
                expected=f"<= {authentic.current_tcb}",
                actual=str(authentic.committed_tcb),
            )
        if committed_fw[:2] > current_fw[:2] or committed_fw[2] > current_fw[2]:
            raise VerificationError(
                "snp.firmware.committed",
                "the committed firmware version is above the current one",
                expected="<= {}.{} build {}".format(*current_fw),
                actual="{}.{} build {}".format(*committed_fw),
            )
    else:
        if committed != current:
            raise VerificationError(
                "snp.tcb.committed",
                "COMMITTED_TCB differs from CURRENT_TCB (provisional firmware is not allowed)",
                expected=str(authentic.current_tcb),
                actual=str(authentic.committed_tcb),
            )
        if committed_fw != current_fw:
            raise VerificationError(
                "snp.firmware.committed",
                "the committed firmware version differs from the current one "
                "(provisional firmware is not allowed)",
                expected="{}.{} build {}".format(*current_fw),
                actual="{}.{} build {}".format(*committed_fw),
            )
    if (r.current_major, r.current_minor) < policy.min_firmware_api:
        raise VerificationError(
            "snp.firmware.api",
            "the firmware API version is below the policy minimum",
            expected=">= {}.{}".format(*policy.min_firmware_api),
            actual=f"{r.current_major}.{r.current_minor}",
        )
    if r.current_build < policy.min_firmware_build:
        raise VerificationError(
            "snp.firmware.build",
            "the firmware build is below the policy minimum",
            expected=f">= {policy.min_firmware_build}",
            actual=str(r.current_build),
        )

    # Identity and binding.
    if r.measurement in policy.measurement_denylist:
        raise VerificationError(
            "snp.measurement.denied",
            "the MEASUREMENT is on the policy's denylist",
            actual=r.measurement.hex(),
        )
    _in_set("snp.measurement", "MEASUREMENT", policy.measurement, r.measurement)
    _in_set("snp.host_data", "HOST_DATA", policy.host_data, r.host_data)
    _in_set("snp.family_id", "FAMILY_ID", policy.family_id, r.family_id)
    _in_set("snp.image_id", "IMAGE_ID", policy.image_id, r.image_id)
    _in_set("snp.id_key_digest", "ID_KEY_DIGEST", policy.id_key_digest, r.id_key_digest)
    if policy.author_key_digest is not ANY and not r.author_key_en:
        raise VerificationError(
            "snp.author_key_digest",
            "the policy requires an author key and the report has none (AUTHOR_KEY_EN is clear)",
            expected="AUTHOR_KEY_EN set",
            actual="clear",
        )
    _in_set(
        "snp.author_key_digest", "AUTHOR_KEY_DIGEST", policy.author_key_digest, r.author_key_digest
    )
    if r.guest_svn < policy.min_guest_svn:
        raise VerificationError(
            "snp.guest_svn",
            "GUEST_SVN is below the policy minimum",
            expected=f">= {policy.min_guest_svn}",
            actual=str(r.guest_svn),
        )
    if (
        authentic.signing_key is SigningKey.VCEK
        and r.chip_id_masked
        and not policy.allow_masked_chip_id
    ):
        raise VerificationError(
            "snp.chip_id.masked",
            "CHIP_ID is all zeros (MASK_CHIP_ID) and the policy does not allow a masked chip ID",
            expected="the chip's ID",
            actual="all zeros",
        )
    _in_set("snp.chip_id.policy", "CHIP_ID", policy.chip_id, r.chip_id)
    if expected_report_data is not None and r.report_data != expected_report_data:
        raise VerificationError(
            "snp.report_data",
            "REPORT_DATA does not equal the expected value (all 64 bytes compared)",
            expected=expected_report_data.hex(),
            actual=r.report_data.hex(),
        )

    kind_name = "VCEK" if authentic.signing_key is SigningKey.VCEK else "VLEK"
    return VerifiedEvidence(
        kind="snp",
        measurement=r.measurement,
        report_data=r.report_data,
        debug=False,
        signer=f"{kind_name} ({authentic.product.value}) under {authentic.anchors_name}",
        tcb=authentic.reported_tcb.components(),
        chip_id=None if r.chip_id_masked else r.chip_id,
        details={
            "version": r.version,
            "product": authentic.product.value,
            "product_name": authentic.product_name,
            "product_source": "cpuid" if r.cpuid_fam_id is not None else "certificate",
            "signing_key": kind_name,
            "csp_id": authentic.csp_id,
            "anchors": authentic.anchors_name,
            "crl_checked": authentic.crl_checked,
            "guest_svn": r.guest_svn,
            "policy": f"0x{r.policy:016x}",
            "vmpl": r.vmpl,
            "platform_info": f"0x{r.platform_info:016x}",
            "host_data": r.host_data,
            "family_id": r.family_id,
            "image_id": r.image_id,
            "id_key_digest": r.id_key_digest,
            "author_key_digest": r.author_key_digest,
            "report_id": r.report_id,
            "current_tcb": authentic.current_tcb.components(),
            "committed_tcb": authentic.committed_tcb.components(),
            "launch_tcb": authentic.launch_tcb.components(),
            "firmware": f"{r.current_major}.{r.current_minor} build {r.current_build}",
            "report_data_checked": expected_report_data is not None,
        },
    )


def verify_snp(
    report: SnpReport,
    *,
    vcek: x509.Certificate,
    anchors: AmdTrust,
    policy: SnpPolicy,
    now: datetime,
    crl: x509.CertificateRevocationList | None = None,
    expected_report_data: bytes | None = None,
    presented_chain: Sequence[x509.Certificate] = (),
) -> VerifiedEvidence:
    """Verify an SEV-SNP report completely: authenticity, then policy."""
    authentic = authenticate_snp(
        report, vcek=vcek, anchors=anchors, now=now, crl=crl, presented_chain=presented_chain
    )
    return apply_snp_policy(authentic, policy, expected_report_data=expected_report_data)
