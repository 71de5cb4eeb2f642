"""Verification of Intel DCAP quotes: TDX (quote v4 and v5) and SGX (quote v3).

The entry point is ``verify_quote_file``. Verification is staged so that the types say what
has been checked:

1. ``IntelQuote.from_bytes`` (structure only) and ``CollateralBundle.from_bytes``;
2. ``verify_collateral``: collateral signatures, chains to the pinned root, CRLs, freshness;
3. ``authenticate``: the quote's signatures, QE binding, PCK chain, revocation, FMSPC/PCEID,
   QE identity, TDX module identity and the TCB level, giving ``IntelClaims``;
4. ``check_policy``: debug, accepted TCB statuses and advisories, the evaluation data
   number, and the workload's measurements against the ``[tdx]`` / ``[sgx]`` policy table;
5. ``to_evidence``: the shared ``VerifiedEvidence``.

docs/attestation-intel.md lists every check in order with its check id.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, NoReturn

from cryptography import x509

from arx.attestation import intel_pki as pki
from arx.attestation.claims import VerifiedEvidence
from arx.attestation.intel_collateral import (
    TCB_STATUSES,
    CollateralBundle,
    IsvLevel,
    TcbInfo,
    TdxModuleIdentity,
    VerifiedCollateral,
    verify_collateral,
)
from arx.attestation.intel_quote import (
    BODY_TYPE_TD15,
    IntelQuote,
    SgxReportBody,
    TdReportBody,
)
from arx.errors import EvidenceParseError, VerificationError

IntelKind = Literal["tdx", "sgx"]
KINDS: Final = ("tdx", "sgx")

# Intel's QE vendor ID (Intel SGX ECDSA Quote Library API, "Quote Header").
INTEL_QE_VENDOR_ID: Final = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
QE_REPORT_DATA_HASH_SIZE: Final = 32
PCK_CHAIN_LENGTH: Final = 3  # PCK leaf, PCK Platform/Processor CA, Intel SGX Root CA
# TEE_TCB_SVN byte 1 is the TDX module major version and byte 0 its minor SVN; when the
# major version is above 0 these two bytes are rated by the TDX module identity instead of
# the TCB level (Intel QVL, TCB level check for TDX).
TDX_MODULE_MAJOR_INDEX: Final = 1
TDX_MODULE_MINOR_INDEX: Final = 0
TDX_MODULE_RATED_BYTES: Final = 2
UNKNOWN_TCB_STATUS: Final = "Unknown"


# --- TCB evaluation (Intel QVL semantics) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class TcbResult:
    status: str
    advisory_ids: tuple[str, ...]


def _merge_advisories(*groups: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted({a for group in groups for a in group}))


def converge_statuses(platform: str, components: Sequence[str]) -> str:
    """Intel QVL's convergence of the platform status with QE / TDX module statuses.

    An OutOfDate component turns UpToDate or SWHardeningNeeded into OutOfDate and the
    configuration statuses into OutOfDateConfigurationNeeded; a Revoked component makes the
    result Revoked; other component statuses leave the platform status as it is.
    """
    status = platform
    if "OutOfDate" in components:
        if platform in ("UpToDate", "SWHardeningNeeded"):
            status = "OutOfDate"
        elif platform in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
            status = "OutOfDateConfigurationNeeded"
    if "Revoked" in components:
        status = "Revoked"
    return status


def check_for_relaunch(launch: str, current: str) -> str:
    """Intel QVL's TD relaunch advice for TD 1.5 quotes (TEE_TCB_SVN vs TEE_TCB_SVN2)."""
    if launch in ("OutOfDate", "OutOfDateConfigurationNeeded") and current in (
        "UpToDate",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
    ):
        config = {"ConfigurationNeeded", "OutOfDateConfigurationNeeded"}
        config |= {"ConfigurationAndSWHardeningNeeded"}
        if launch in config or current in config:
            return "TDRelaunchAdvisedConfigurationNeeded"
        return "TDRelaunchAdvised"
    return launch


def _first_isv_level(levels: Sequence[IsvLevel], isvsvn: int) -> IsvLevel | None:
    return next((lvl for lvl in levels if isvsvn >= lvl.isvsvn), None)


def evaluate_platform_tcb(
    kind: str,
    tcb_info: TcbInfo,
    pck: pki.PckExtensions,
    tee_tcb_svn: bytes | None,
) -> TcbResult:
    """The first TCB level the platform reaches, and for TDX the TDX module's level.

    A level is reached when every SGX component SVN and the PCESVN in the PCK certificate
    are at least the level's, and (TDX) every TEE_TCB_SVN byte is at least the level's TDX
    component, from byte 2 when the module major version is above 0.
    """
    start = 0
    module: IsvLevel | None = None
    if tee_tcb_svn is not None and tee_tcb_svn[TDX_MODULE_MAJOR_INDEX] > 0:
        start = TDX_MODULE_RATED_BYTES
        identity = _module_identity(kind, tcb_info, tee_tcb_svn)
        module = _first_isv_level(identity.levels, tee_tcb_svn[TDX_MODULE_MINOR_INDEX])
        if module is None:
            raise VerificationError(
                f"{kind}.tdx_module.tcb_level",
                "no TDX module TCB level covers this module's SVN",
                actual=str(tee_tcb_svn[TDX_MODULE_MINOR_INDEX]),
            )
    for level in tcb_info.levels:
        if pck.pcesvn < level.pcesvn:
            continue
        if any(a < b for a, b in zip(pck.cpusvn_components, level.sgx_components, strict=True)):
            continue
        if tee_tcb_svn is not None:
            if level.tdx_components is None:
                continue
            pairs = list(zip(tee_tcb_svn, level.tdx_components, strict=True))[start:]
            if any(a < b for a, b in pairs):
                continue
        if module is None:
            return TcbResult(level.status, level.advisory_ids)
        return TcbResult(
            converge_statuses(level.status, [module.status]),
            _merge_advisories(level.advisory_ids, module.advisory_ids),
        )
    raise VerificationError(
        f"{kind}.tcb_level",
        "no TCB level in TCB Info covers this platform",
        actual=f"PCK components {list(pck.cpusvn_components)} PCESVN {pck.pcesvn}"
        + (f" TEE_TCB_SVN {tee_tcb_svn.hex()}" if tee_tcb_svn is not None else ""),
    )


def _module_identity(kind: str, tcb_info: TcbInfo, tee_tcb_svn: bytes) -> TdxModuleIdentity:
    major = tee_tcb_svn[TDX_MODULE_MAJOR_INDEX]
    wanted = f"TDX_{major:02X}"
    for identity in tcb_info.tdx_module_identities:
        if identity.id.upper() == wanted:
            return identity
    raise VerificationError(
        f"{kind}.tdx_module.identity",
        "TCB Info has no identity for this TDX module version",
        expected=wanted,
    )


# --- Authenticated claims ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IntelClaims:
    """What an authentic quote says, with the platform's TCB status (or Unknown).

    Built by ``authenticate`` once the signatures, chain and collateral checks have passed;
    ``check_policy`` decides whether the client accepts it.
    """

    kind: IntelKind
    quote: IntelQuote
    pck: pki.PckExtensions
    pck_subject: str
    tcb_status: str
    advisory_ids: tuple[str, ...]
    tcb_evaluation_data_number: int | None
    qe_tcb_status: str | None
    trailing_zero_bytes: int


def _fail(
    check: str, message: str, expected: bytes | str = "", actual: bytes | str = ""
) -> NoReturn:
    exp = expected.hex() if isinstance(expected, bytes) else expected
    act = actual.hex() if isinstance(actual, bytes) else actual
    raise VerificationError(check, message, expected=exp, actual=act)


def authenticate(
    kind: IntelKind,
    quote: IntelQuote,
    trailing: bytes,
    collateral: VerifiedCollateral | None,
    now: datetime,
    *,
    root: x509.Certificate | None = None,
) -> IntelClaims:
    """Every check that establishes the quote is genuine and what TCB it runs on.

    ``trailing`` are the input bytes after the quote's own length; only zero padding is
    accepted. With ``collateral`` None the TCB status is Unknown (the caller decides whether
    that is acceptable).
    """
    root = root or pki.intel_sgx_root_ca()
    if quote.is_tdx != (kind == "tdx"):
        _fail(
            f"{kind}.quote.kind", "quote is for another TEE", kind, "tdx" if quote.is_tdx else "sgx"
        )
    if any(trailing):
        _fail(
            f"{kind}.quote.trailing_bytes",
            "non-zero bytes follow the quote",
            "none, or zero padding",
            f"{len(trailing)} bytes, not all zero",
        )
    if quote.header.qe_vendor_id != INTEL_QE_VENDOR_ID:
        _fail(
            f"{kind}.header.qe_vendor_id",
            "QE is not Intel's",
            INTEL_QE_VENDOR_ID,
            quote.header.qe_vendor_id,
        )
    sig = quote.signature_data
    # 1. The attestation key signed header || body.
    att_key = pki.p256_key_from_raw(sig.attestation_key)
    if not pki.ecdsa_p256_ok(att_key, sig.signature, quote.signed):
        _fail(f"{kind}.quote.signature", "attestation key signature over header and body fails")
    # 2. The PCK chain reaches the pinned root.
    chain = pki.load_pem_chain(sig.qe.cert_data.rstrip(b"\x00"), "PCK certificate chain")
    pki.verify_chain(chain, root, now, f"{kind}.pck_chain", length=PCK_CHAIN_LENGTH)
    pck_cert = chain[0]
    # 3. The PCK signed the QE report, and the QE report binds the attestation key.
    pck_key = pki.ec_public_key(pck_cert, f"{kind}.qe_report.signature")
    if not pki.ecdsa_p256_ok(pck_key, sig.qe.qe_report_signature, sig.qe.qe_report_raw):
        _fail(f"{kind}.qe_report.signature", "PCK signature over the QE report fails")
    qe = sig.qe.qe_report
    binding = hashlib.sha256(sig.attestation_key + sig.qe.qe_auth_data).digest()
    if not hmac.compare_digest(qe.report_data[:QE_REPORT_DATA_HASH_SIZE], binding) or any(
        qe.report_data[QE_REPORT_DATA_HASH_SIZE:]
    ):
        _fail(
            f"{kind}.qe_report.binding",
            "QE REPORTDATA is not SHA-256(attestation key || QE auth data) || zeros",
            binding,
            qe.report_data,
        )
    pck = pki.PckExtensions.from_certificate(pck_cert)
    if collateral is None:
        return IntelClaims(
            kind=kind,
            quote=quote,
            pck=pck,
            pck_subject=pck_cert.subject.rfc4514_string(),
            tcb_status=UNKNOWN_TCB_STATUS,
            advisory_ids=(),
            tcb_evaluation_data_number=None,
            qe_tcb_status=None,
            trailing_zero_bytes=len(trailing),
        )
    # 4. Collateral: the right kind, current at now, its PCK CRL from this chain's CA.
    if collateral.kind != kind:
        _fail(f"{kind}.collateral.kind", "collateral is for another TEE", kind, collateral.kind)
    collateral.check_current(now)
    if not pki.same_cert(chain[1], collateral.pck_ca):
        _fail(
            f"{kind}.pck_crl.issuer",
            "the PCK CRL is not from the CA that issued this PCK certificate",
            chain[1].subject.rfc4514_string(),
            collateral.pck_ca.subject.rfc4514_string(),
        )
    pki.check_not_revoked(collateral.root_ca_crl, chain[1], f"{kind}.pck_chain.revoked")
    pki.check_not_revoked(collateral.pck_crl, pck_cert, f"{kind}.pck.revoked")
    tcb_info = collateral.tcb_info
    # 5. The PCK's FMSPC and PCEID are the ones the TCB Info describes.
    if pck.fmspc != tcb_info.fmspc:
        _fail(f"{kind}.tcb_info.fmspc", "FMSPC differs", tcb_info.fmspc, pck.fmspc)
    if pck.pce_id != tcb_info.pce_id:
        _fail(f"{kind}.tcb_info.pceid", "PCEID differs", tcb_info.pce_id, pck.pce_id)
    # 6. The QE is Intel's QE, at a known TCB level.
    qe_level = _check_qe_identity(kind, qe, collateral)
    # 7. TDX: the TDX module is Intel's.
    tee_tcb_svn: bytes | None = None
    if isinstance(quote.body, TdReportBody):
        _check_tdx_module(kind, quote.body, tcb_info)
        tee_tcb_svn = quote.body.tee_tcb_svn
    # 8. The platform's TCB level, converged with the QE's; TD 1.5 also rates TEE_TCB_SVN2.
    platform = evaluate_platform_tcb(kind, tcb_info, pck, tee_tcb_svn)
    status = converge_statuses(platform.status, [qe_level.status])
    advisories = _merge_advisories(platform.advisory_ids, qe_level.advisory_ids)
    if (
        isinstance(quote.body, TdReportBody)
        and quote.body_type == BODY_TYPE_TD15
        and quote.body.tee_tcb_svn2 is not None
    ):
        current = evaluate_platform_tcb(kind, tcb_info, pck, quote.body.tee_tcb_svn2)
        current_status = converge_statuses(current.status, [qe_level.status])
        status = check_for_relaunch(status, current_status)
        advisories = _merge_advisories(advisories, current.advisory_ids)
    return IntelClaims(
        kind=kind,
        quote=quote,
        pck=pck,
        pck_subject=pck_cert.subject.rfc4514_string(),
        tcb_status=status,
        advisory_ids=advisories,
        tcb_evaluation_data_number=min(
            tcb_info.tcb_evaluation_data_number,
            collateral.qe_identity.tcb_evaluation_data_number,
        ),
        qe_tcb_status=qe_level.status,
        trailing_zero_bytes=len(trailing),
    )


def _check_qe_identity(kind: str, qe: SgxReportBody, collateral: VerifiedCollateral) -> IsvLevel:
    ident = collateral.qe_identity
    p = f"{kind}.qe_identity"
    if qe.mrsigner != ident.mrsigner:
        _fail(f"{p}.mrsigner", "QE MRSIGNER differs", ident.mrsigner, qe.mrsigner)
    if qe.isv_prod_id != ident.isvprodid:
        _fail(f"{p}.isvprodid", "QE ISVPRODID differs", str(ident.isvprodid), str(qe.isv_prod_id))
    if qe.miscselect & ident.miscselect_mask != ident.miscselect & ident.miscselect_mask:
        _fail(
            f"{p}.miscselect",
            "QE MISCSELECT differs under the mask",
            f"{ident.miscselect:08x}",
            f"{qe.miscselect:08x}",
        )
    masked = bytes(a & m for a, m in zip(qe.attributes, ident.attributes_mask, strict=True))
    wanted = bytes(a & m for a, m in zip(ident.attributes, ident.attributes_mask, strict=True))
    if masked != wanted:
        _fail(f"{p}.attributes", "QE ATTRIBUTES differ under the mask", wanted, masked)
    level = _first_isv_level(ident.levels, qe.isv_svn)
    if level is None:
        _fail(f"{p}.tcb_level", "no QE TCB level covers the QE's ISVSVN", actual=str(qe.isv_svn))
    if level.status == "Revoked":
        _fail(f"{p}.revoked", "the QE's TCB level is Revoked", actual=str(qe.isv_svn))
    return level


def _check_tdx_module(kind: str, body: TdReportBody, tcb_info: TcbInfo) -> None:
    """MRSIGNERSEAM and SEAMATTRIBUTES (under its mask) are the TDX module identity's."""
    if body.tee_tcb_svn[TDX_MODULE_MAJOR_INDEX] > 0:
        module = _module_identity(kind, tcb_info, body.tee_tcb_svn)
    elif tcb_info.tdx_module is not None:
        module = tcb_info.tdx_module
    else:
        _fail(f"{kind}.tdx_module.identity", "TCB Info has no TDX module identity")
    if body.mrsignerseam != module.mrsigner:
        _fail(
            f"{kind}.tdx_module.mrsignerseam",
            "MRSIGNERSEAM differs",
            module.mrsigner,
            body.mrsignerseam,
        )
    mask = module.attributes_mask
    actual = bytes(a & m for a, m in zip(body.seam_attributes, mask, strict=True))
    wanted = bytes(a & m for a, m in zip(module.attributes, mask, strict=True))
    if actual != wanted:
        _fail(
            f"{kind}.tdx_module.seam_attributes",
            "SEAMATTRIBUTES differ under the mask",
            wanted,
            actual,
        )


# --- Policy -----------------------------------------------------------------------------

ANY: Final = "any"
BASELINE_STATUSES: Final = ("UpToDate",)
TDX_MEASUREMENT_KEYS: Final = {
    "mrtd": 48,
    "rtmr0": 48,
    "rtmr1": 48,
    "rtmr2": 48,
    "rtmr3": 48,
    "mrconfigid": 48,
    "mrowner": 48,
    "xfam": 8,
    "report_data": 64,
}
SGX_MEASUREMENT_KEYS: Final = {"mrenclave": 32, "mrsigner": 32, "report_data": 64}
SGX_INTEGER_KEYS: Final = ("isvprodid", "min_isvsvn")
OPTIONAL_KEYS: Final = (
    "require_collateral",
    "accepted_tcb_statuses",
    "allowed_advisory_ids",
    "min_tcb_evaluation_data_number",
)


@dataclass(frozen=True, slots=True)
class IntelPolicy:
    """A ``[tdx]`` or ``[sgx]`` policy table, validated.

    ``values`` maps each measurement key to None ("any") or its allowed values;
    ``integers`` maps ISVPRODID / the ISVSVN minimum to None ("any") or the number.
    """

    kind: IntelKind
    require_collateral: bool
    accepted_tcb_statuses: frozenset[str]
    allowed_advisory_ids: frozenset[str] | None
    min_tcb_evaluation_data_number: int | None
    values: Mapping[str, frozenset[bytes] | None]
    integers: Mapping[str, int | None]

    @classmethod
    def baseline(cls, kind: IntelKind) -> IntelPolicy:
        """Authenticity, debug off, TCB UpToDate; measurements reported, not constrained."""
        keys = TDX_MEASUREMENT_KEYS if kind == "tdx" else SGX_MEASUREMENT_KEYS
        ints = {} if kind == "tdx" else dict.fromkeys(SGX_INTEGER_KEYS)
        return cls(
            kind=kind,
            require_collateral=True,
            accepted_tcb_statuses=frozenset(BASELINE_STATUSES),
            allowed_advisory_ids=None,
            min_tcb_evaluation_data_number=None,
            values=dict.fromkeys(keys),
            integers=ints,
        )

    @classmethod
    def from_table(cls, kind: IntelKind, table: Mapping[str, object] | None) -> IntelPolicy:
        """Validate a policy table: every measurement key explicit (a value or "any")."""
        if table is None:
            return cls.baseline(kind)
        p = f"{kind}.policy"
        keys = TDX_MEASUREMENT_KEYS if kind == "tdx" else SGX_MEASUREMENT_KEYS
        int_keys = () if kind == "tdx" else SGX_INTEGER_KEYS
        known = {*keys, *int_keys, *OPTIONAL_KEYS}
        for key in table:
            if key not in known:
                _fail(
                    f"{p}.unknown_key", f"unknown policy key {key!r}", ", ".join(sorted(known)), key
                )
        for key in (*keys, *int_keys):
            if key not in table:
                _fail(f"{p}.missing_key", f'policy key {key!r} needs a value or "any"', actual=key)
        values: dict[str, frozenset[bytes] | None] = {}
        for key, size in keys.items():
            values[key] = _policy_hex(p, key, table[key], size)
        integers: dict[str, int | None] = {}
        for key in int_keys:
            raw = table[key]
            if raw == ANY:
                integers[key] = None
            elif isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= 0xFFFF:
                integers[key] = raw
            else:
                _fail(f"{p}.invalid", f'{key} must be a 16-bit integer or "any"', actual=repr(raw))
        require = table.get("require_collateral", True)
        if not isinstance(require, bool):
            _fail(f"{p}.invalid", "require_collateral must be true or false", actual=repr(require))
        statuses = table.get("accepted_tcb_statuses", list(BASELINE_STATUSES))
        if (
            not isinstance(statuses, list)
            or not statuses
            or not all(isinstance(s, str) and s in ACCEPTABLE_STATUSES for s in statuses)
        ):
            _fail(
                f"{p}.invalid",
                "accepted_tcb_statuses must list known TCB statuses other than Revoked",
                actual=repr(statuses),
            )
        advisories = table.get("allowed_advisory_ids", ANY)
        allowed: frozenset[str] | None = None
        if advisories != ANY:
            if not isinstance(advisories, list) or not all(isinstance(a, str) for a in advisories):
                _fail(
                    f"{p}.invalid",
                    'allowed_advisory_ids must be a list of IDs or "any"',
                    actual=repr(advisories),
                )
            allowed = frozenset(str(a) for a in advisories)
        min_eval = table.get("min_tcb_evaluation_data_number")
        if min_eval is not None and (
            isinstance(min_eval, bool) or not isinstance(min_eval, int) or min_eval < 0
        ):
            _fail(
                f"{p}.invalid",
                "min_tcb_evaluation_data_number must be an integer",
                actual=repr(min_eval),
            )
        return cls(
            kind=kind,
            require_collateral=bool(require),
            accepted_tcb_statuses=frozenset(str(s) for s in statuses),
            allowed_advisory_ids=allowed,
            min_tcb_evaluation_data_number=min_eval if isinstance(min_eval, int) else None,
            values=values,
            integers=integers,
        )


_RELAUNCH_STATUSES: Final = frozenset({"TDRelaunchAdvised", "TDRelaunchAdvisedConfigurationNeeded"})
# A Revoked TCB is never acceptable, whatever a policy lists.
ACCEPTABLE_STATUSES: Final = (TCB_STATUSES | _RELAUNCH_STATUSES) - {"Revoked"}


def _policy_hex(prefix: str, key: str, raw: object, size: int) -> frozenset[bytes] | None:
    if raw == ANY:
        return None
    items = raw if isinstance(raw, list) else [raw]
    out = set()
    for item in items:
        value = b""
        if isinstance(item, str):
            try:
                value = bytes.fromhex(item)
            except ValueError:
                value = b""
        if len(value) != size:
            _fail(
                f"{prefix}.invalid",
                f'{key} must be {size} bytes of hex, a list of them, or "any"',
                actual=repr(item),
            )
        out.add(value)
    if not out:
        _fail(f"{prefix}.invalid", f"{key} lists no values", actual="[]")
    return frozenset(out)


def _measurements(claims: IntelClaims) -> dict[str, bytes]:
    body = claims.quote.body
    if isinstance(body, TdReportBody):
        return {
            "mrtd": body.mrtd,
            "rtmr0": body.rtmr0,
            "rtmr1": body.rtmr1,
            "rtmr2": body.rtmr2,
            "rtmr3": body.rtmr3,
            "mrconfigid": body.mrconfigid,
            "mrowner": body.mrowner,
            "xfam": body.xfam,
            "report_data": body.report_data,
        }
    return {"mrenclave": body.mrenclave, "mrsigner": body.mrsigner, "report_data": body.report_data}


def check_policy(claims: IntelClaims, policy: IntelPolicy) -> None:
    """The client's policy, applied to authentic claims. Debug is refused unconditionally."""
    kind = claims.kind
    body = claims.quote.body
    if isinstance(body, TdReportBody):
        if body.debug:
            _fail("tdx.td_attributes.debug", "the TD is debuggable (TD_ATTRIBUTES bit 0)", "0", "1")
    elif body.debug:
        _fail("sgx.attributes.debug", "the enclave is debuggable (ATTRIBUTES.DEBUG)", "0", "1")
    if claims.tcb_status == UNKNOWN_TCB_STATUS:
        if policy.require_collateral:
            _fail(
                f"{kind}.collateral.missing",
                "no collateral, so the TCB status is unknown; "
                "set require_collateral = false to accept that",
            )
    else:
        if claims.tcb_status not in policy.accepted_tcb_statuses:
            _fail(
                f"{kind}.tcb_status",
                "TCB status not accepted",
                ", ".join(sorted(policy.accepted_tcb_statuses)),
                claims.tcb_status,
            )
        if policy.allowed_advisory_ids is not None:
            extra = sorted(set(claims.advisory_ids) - policy.allowed_advisory_ids)
            if extra:
                _fail(
                    f"{kind}.advisories",
                    "advisories not allowed by the policy",
                    ", ".join(sorted(policy.allowed_advisory_ids)),
                    ", ".join(extra),
                )
        minimum = policy.min_tcb_evaluation_data_number
        number = claims.tcb_evaluation_data_number
        if minimum is not None and (number is None or number < minimum):
            _fail(
                f"{kind}.tcb_evaluation_data_number",
                "collateral is older than the policy allows",
                f">= {minimum}",
                str(number),
            )
    for key, actual in _measurements(claims).items():
        allowed = policy.values.get(key)
        if allowed is not None and actual not in allowed:
            _fail(
                f"{kind}.{key}",
                f"{key.upper()} is not allowed by the policy",
                " | ".join(sorted(v.hex() for v in allowed)),
                actual,
            )
    if isinstance(body, SgxReportBody):
        prodid = policy.integers.get("isvprodid")
        if prodid is not None and body.isv_prod_id != prodid:
            _fail("sgx.isvprodid", "ISVPRODID differs", str(prodid), str(body.isv_prod_id))
        min_svn = policy.integers.get("min_isvsvn")
        if min_svn is not None and body.isv_svn < min_svn:
            _fail("sgx.isvsvn", "ISVSVN is below the minimum", f">= {min_svn}", str(body.isv_svn))


def to_evidence(claims: IntelClaims) -> VerifiedEvidence:
    body = claims.quote.body
    header = claims.quote.header
    common = {
        "quote_version": header.version,
        "body_type": claims.quote.body_type,
        "qe_svn": header.qe_svn,
        "pce_svn": header.pce_svn,
        "fmspc": claims.pck.fmspc,
        "pce_id": claims.pck.pce_id,
        "pck_subject": claims.pck_subject,
        "qe_tcb_status": claims.qe_tcb_status,
        "tcb_evaluation_data_number": claims.tcb_evaluation_data_number,
        "trailing_zero_bytes": claims.trailing_zero_bytes,
    }
    tcb = {f"sgx_comp{i:02d}": v for i, v in enumerate(claims.pck.cpusvn_components, start=1)}
    tcb["pcesvn"] = claims.pck.pcesvn
    if isinstance(body, TdReportBody):
        details = {
            **common,
            "rtmr": [body.rtmr0, body.rtmr1, body.rtmr2, body.rtmr3],
            "mrconfigid": body.mrconfigid,
            "mrowner": body.mrowner,
            "mrownerconfig": body.mrownerconfig,
            "mrseam": body.mrseam,
            "mrsignerseam": body.mrsignerseam,
            "seam_attributes": body.seam_attributes,
            "td_attributes": body.td_attributes,
            "xfam": body.xfam,
            "tee_tcb_svn": body.tee_tcb_svn,
        }
        if body.tee_tcb_svn2 is not None:
            details["tee_tcb_svn2"] = body.tee_tcb_svn2
            details["mrservicetd"] = body.mrservicetd
        tcb.update({f"tee_tcb_svn{i:02d}": v for i, v in enumerate(body.tee_tcb_svn)})
        measurement = body.mrtd
    else:
        details = {
            **common,
            "mrsigner": body.mrsigner,
            "isvprodid": body.isv_prod_id,
            "isvsvn": body.isv_svn,
            "attributes": body.attributes,
            "miscselect": body.miscselect,
            "config_id": body.config_id,
            "config_svn": body.config_svn,
            "cpusvn": body.cpusvn,
        }
        measurement = body.mrenclave
    return VerifiedEvidence(
        kind=claims.kind,
        measurement=measurement,
        report_data=body.report_data,
        debug=body.debug,
        signer=f"PCK ({claims.pck_subject}) <- Intel SGX Root CA",
        tcb=tcb,
        tcb_status=claims.tcb_status,
        advisories=claims.advisory_ids,
        details=details,
    )


# --- Entry points -----------------------------------------------------------------------


def verify_quote(
    kind: IntelKind,
    quote: bytes,
    collateral: VerifiedCollateral | None,
    policy: IntelPolicy,
    now: datetime,
) -> VerifiedEvidence:
    """Verify quote bytes against already-verified collateral (or None) and a policy."""
    parsed = IntelQuote.from_bytes(quote)
    claims = authenticate(kind, parsed, bytes(quote[parsed.consumed :]), collateral, now)
    check_policy(claims, policy)
    return to_evidence(claims)


HEX_QUOTE_CHARS: Final = frozenset(b"0123456789abcdefABCDEF \t\r\n")
HEX_QUOTE_PREFIX: Final = b"0x"


def quote_from_file_bytes(data: bytes) -> bytes:
    """The binary quote in ``data``: the bytes themselves, or the quote they spell in hex.

    A binary quote starts with its u16 version (3, 4 or 5), so its first byte is never an
    ASCII hex digit or whitespace; text that starts with one (or with ``0x``) is decoded as
    hex, with surrounding whitespace ignored.
    """
    if not data or data[0] not in HEX_QUOTE_CHARS:
        return data
    text = data.strip()
    text = text.removeprefix(HEX_QUOTE_PREFIX)
    try:
        return bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise EvidenceParseError("quote file is neither a binary quote nor hex text") from exc


def verify_quote_file(
    kind: str,
    quote: bytes,
    collateral: bytes | None,
    policy_table: dict[str, object] | None,
    now: datetime,
) -> VerifiedEvidence:
    """Verify a TDX or SGX quote with its collateral bundle under a ``[tdx]``/``[sgx]`` policy.

    ``quote`` is the binary quote or its hex text (``quote_from_file_bytes``); any bytes
    after the quote must be zero. ``policy_table`` None is the baseline policy. Without
    collateral, everything that can be verified without it is, and then
    ``<kind>.collateral.missing`` is raised unless the policy says
    ``require_collateral = false`` (the TCB status is then "Unknown").
    """
    if kind not in KINDS:
        raise VerificationError("intel.kind", "kind must be tdx or sgx", actual=kind)
    typed_kind: IntelKind = "tdx" if kind == "tdx" else "sgx"
    if now.tzinfo is None:
        raise VerificationError(f"{kind}.now", "now must be a timezone-aware time")
    policy = IntelPolicy.from_table(typed_kind, policy_table)
    verified = None
    if collateral is not None:
        verified = verify_collateral(kind, CollateralBundle.from_bytes(collateral), now)
    return verify_quote(typed_kind, quote_from_file_bytes(quote), verified, policy, now)


__all__ = [
    "IntelClaims",
    "IntelPolicy",
    "authenticate",
    "check_policy",
    "quote_from_file_bytes",
    "to_evidence",
    "verify_quote",
    "verify_quote_file",
]
