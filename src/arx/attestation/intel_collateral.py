"""Intel DCAP collateral: TCB Info, QE Identity, the PCK CRL and the Root CA CRL.

Accepted input (one JSON object, UTF-8), with the field names of the QuoteCollateralV3
bundles that DCAP verifiers exchange:

* ``tcb_info_issuer_chain``, ``qe_identity_issuer_chain``, ``pck_crl_issuer_chain``: PEM;
* ``root_ca_crl``, ``pck_crl``: the CRL as hex of its DER (or PEM text);
* ``tcb_info`` and ``qe_identity``: either the signed object itself (a string holding the
  exact JSON text Intel signed, with the hex signature in ``tcb_info_signature`` /
  ``qe_identity_signature``), or an Intel PCS response body
  (``{"tcbInfo": {...}, "signature": "..."}`` / ``{"enclaveIdentity": {...}, ...}``), as a
  string or as a nested object, with the signature taken from the response.

Intel signs the exact bytes of the ``tcbInfo`` / ``enclaveIdentity`` value as it appears
in the response body, so the signed bytes are cut out of the text, never re-serialised.

Parsing (``CollateralBundle.from_bytes``, ``TcbInfo.from_json``, ``QeIdentity.from_json``)
checks structure only; ``verify_collateral`` checks signatures, chains to the pinned root,
CRLs and freshness, and returns ``VerifiedCollateral``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cryptography import x509

from arx.attestation import intel_pki as pki
from arx.errors import EvidenceParseError, VerificationError

TCB_STATUSES: Final = frozenset(
    {
        "UpToDate",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
        "OutOfDate",
        "OutOfDateConfigurationNeeded",
        "Revoked",
    }
)
TCB_INFO_VERSIONS: Final = frozenset({2, 3})
QE_IDENTITY_VERSION: Final = 2
TCB_TYPE_COMPONENTWISE: Final = 0
SIGNING_CHAIN_LENGTH: Final = 2  # Intel SGX TCB Signing, Intel SGX Root CA
CRL_CHAIN_LENGTH: Final = 2  # PCK Platform/Processor CA, Intel SGX Root CA
MAX_COLLATERAL_SIZE: Final = 4 << 20
TCB_INFO_ID: Final = {"tdx": "TDX", "sgx": "SGX"}
QE_IDENTITY_ID: Final = {"tdx": "TD_QE", "sgx": "QE"}
BUNDLE_KEYS: Final = frozenset(
    {
        "pck_crl_issuer_chain",
        "root_ca_crl",
        "pck_crl",
        "tcb_info_issuer_chain",
        "tcb_info",
        "tcb_info_signature",
        "qe_identity_issuer_chain",
        "qe_identity",
        "qe_identity_signature",
    }
)


# --- JSON with the raw text of each top-level value -------------------------------------


def raw_members(text: str, what: str) -> dict[str, str]:
    """The members of the JSON object ``text``, each as its exact source text.

    Duplicate keys are rejected: two values for one key would let two readers disagree about
    what was signed.
    """
    decoder = json.JSONDecoder()
    ws = " \t\r\n"
    pos = 0

    def skip(p: int) -> int:
        while p < len(text) and text[p] in ws:
            p += 1
        return p

    def expect(p: int, ch: str) -> int:
        p = skip(p)
        if p >= len(text) or text[p] != ch:
            raise EvidenceParseError(f"{what}: expected {ch!r} at offset {p}")
        return p + 1

    out: dict[str, str] = {}
    try:
        pos = expect(pos, "{")
        pos = skip(pos)
        if pos < len(text) and text[pos] == "}":
            pos += 1
        else:
            while True:
                pos = skip(pos)
                key, pos = decoder.raw_decode(text, pos)
                if not isinstance(key, str):
                    raise EvidenceParseError(f"{what}: object key is not a string")
                pos = expect(pos, ":")
                start = skip(pos)
                _, pos = decoder.raw_decode(text, start)
                if key in out:
                    raise EvidenceParseError(f"{what}: duplicate key {key!r}")
                out[key] = text[start:pos]
                pos = skip(pos)
                if pos < len(text) and text[pos] == ",":
                    pos += 1
                    continue
                pos = expect(pos, "}")
                break
    except (json.JSONDecodeError, RecursionError) as exc:
        raise EvidenceParseError(f"{what}: not valid JSON ({exc})") from exc
    if skip(pos) != len(text):
        raise EvidenceParseError(f"{what}: text after the JSON object")
    return out


def _strict_loads(text: str, what: str) -> Any:
    def no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise EvidenceParseError(f"{what}: duplicate key {key!r}")
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=no_dupes)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        if isinstance(exc, EvidenceParseError):
            raise
        raise EvidenceParseError(f"{what}: not valid JSON ({exc})") from exc


# --- Typed readers for the collateral JSON ----------------------------------------------


def _get(obj: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    if key not in obj:
        raise EvidenceParseError(f"{what}: {key!r} is missing")
    value = obj[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise EvidenceParseError(f"{what}: {key!r} is not an integer")
    if not isinstance(value, kind):
        raise EvidenceParseError(f"{what}: {key!r} is not a {kind.__name__}")
    return value


def _hex(obj: Mapping[str, Any], key: str, size: int, what: str) -> bytes:
    text = _get(obj, key, str, what)
    try:
        value = bytes.fromhex(text)
    except ValueError as exc:
        raise EvidenceParseError(f"{what}: {key!r} is not hex") from exc
    if len(value) != size:
        raise EvidenceParseError(f"{what}: {key!r} is {len(value)} bytes, expected {size}")
    return value


def _u32_hex(obj: Mapping[str, Any], key: str, what: str) -> int:
    return int.from_bytes(_hex(obj, key, 4, what), "big")


def _svn(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise EvidenceParseError(f"{what}: SVN {value!r} is not a 16-bit integer")
    return value


def _date(obj: Mapping[str, Any], key: str, what: str) -> datetime:
    text = _get(obj, key, str, what)
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError as exc:
        raise EvidenceParseError(f"{what}: {key!r} is not an ISO 8601 time") from exc
    if stamp.tzinfo is None:
        raise EvidenceParseError(f"{what}: {key!r} has no time zone")
    return stamp.astimezone(UTC)


def _status(obj: Mapping[str, Any], what: str) -> str:
    status = str(_get(obj, "tcbStatus", str, what))
    if status not in TCB_STATUSES:
        raise EvidenceParseError(f"{what}: unknown TCB status {status!r}")
    return status


def _advisories(obj: Mapping[str, Any], what: str) -> tuple[str, ...]:
    ids = obj.get("advisoryIDs", [])
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise EvidenceParseError(f"{what}: advisoryIDs is not a list of strings")
    return tuple(ids)


def _objects(obj: Mapping[str, Any], key: str, what: str) -> list[dict[str, Any]]:
    items = _get(obj, key, list, what)
    if not all(isinstance(i, dict) for i in items):
        raise EvidenceParseError(f"{what}: {key!r} is not a list of objects")
    return [dict(i) for i in items]


@dataclass(frozen=True, slots=True)
class TcbLevel:
    """One entry of TCB Info's ``tcbLevels`` (Intel PCS API, "TCB Info V2/V3")."""

    sgx_components: tuple[int, ...]
    pcesvn: int
    tdx_components: tuple[int, ...] | None
    tcb_date: str
    status: str
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IsvLevel:
    """A TCB level keyed by one ISVSVN (QE identity and TDX module identity levels)."""

    isvsvn: int
    status: str
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TdxModuleIdentity:
    id: str
    mrsigner: bytes
    attributes: bytes
    attributes_mask: bytes
    levels: tuple[IsvLevel, ...]


def _isv_levels(obj: Mapping[str, Any], what: str) -> tuple[IsvLevel, ...]:
    levels = []
    for level in _objects(obj, "tcbLevels", what):
        tcb = _get(level, "tcb", dict, what)
        levels.append(
            IsvLevel(
                isvsvn=_svn(tcb.get("isvsvn"), what),
                status=_status(level, what),
                advisory_ids=_advisories(level, what),
            )
        )
    return tuple(levels)


def _module(obj: Mapping[str, Any], what: str, *, with_levels: bool) -> TdxModuleIdentity:
    return TdxModuleIdentity(
        id=str(obj.get("id", "")),
        mrsigner=_hex(obj, "mrsigner", 48, what),
        attributes=_hex(obj, "attributes", 8, what),
        attributes_mask=_hex(obj, "attributesMask", 8, what),
        levels=_isv_levels(obj, what) if with_levels else (),
    )


def _components(tcb: Mapping[str, Any], key: str, what: str) -> tuple[int, ...]:
    comps = _objects(tcb, key, what)
    if len(comps) != pki.TCB_COMPONENT_COUNT:
        raise EvidenceParseError(f"{what}: {key} has {len(comps)} entries, expected 16")
    return tuple(_svn(c.get("svn"), what) for c in comps)


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    """A signed collateral body as a JSON object, strictly parsed."""
    try:
        obj = _strict_loads(raw.decode("utf-8"), what)
    except UnicodeDecodeError as exc:
        raise EvidenceParseError(f"{what}: not UTF-8") from exc
    if not isinstance(obj, dict):
        raise EvidenceParseError(f"{what}: not a JSON object")
    return obj


@dataclass(frozen=True, slots=True)
class TcbInfo:
    """TCB Info for one FMSPC (Intel PCS API, "TCB Info V2/V3"; SGX and TDX)."""

    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    fmspc: bytes
    pce_id: bytes
    tcb_evaluation_data_number: int
    levels: tuple[TcbLevel, ...]
    tdx_module: TdxModuleIdentity | None
    tdx_module_identities: tuple[TdxModuleIdentity, ...]

    @classmethod
    def from_json(cls, raw: bytes) -> TcbInfo:
        what = "TCB Info"
        obj = _json_object(raw, what)
        version = _get(obj, "version", int, what)
        if version not in TCB_INFO_VERSIONS:
            raise EvidenceParseError(f"{what}: version {version} is not 2 or 3")
        tcb_id = str(obj.get("id", "SGX")) if version == 3 else "SGX"
        # Intel defines only TCB type 0: the 16 components compare one by one with the
        # PCK certificate's. Any other type would need rules we do not implement.
        if obj.get("tcbType", 0) != TCB_TYPE_COMPONENTWISE:
            raise EvidenceParseError(f"{what}: tcbType {obj.get('tcbType')!r} is not 0")
        if tcb_id not in ("SGX", "TDX"):
            raise EvidenceParseError(f"{what}: id {tcb_id!r} is not SGX or TDX")
        levels = []
        for level in _objects(obj, "tcbLevels", what):
            tcb = _get(level, "tcb", dict, what)
            tdx: tuple[int, ...] | None = None
            if version == 2:
                sgx = tuple(
                    _svn(tcb.get(f"sgxtcbcomp{i:02d}svn"), what)
                    for i in range(1, pki.TCB_COMPONENT_COUNT + 1)
                )
            else:
                sgx = _components(tcb, "sgxtcbcomponents", what)
                if tcb_id == "TDX":
                    tdx = _components(tcb, "tdxtcbcomponents", what)
            levels.append(
                TcbLevel(
                    sgx_components=sgx,
                    pcesvn=_svn(tcb.get("pcesvn"), what),
                    tdx_components=tdx,
                    tcb_date=str(level.get("tcbDate", "")),
                    status=_status(level, what),
                    advisory_ids=_advisories(level, what),
                )
            )
        module = None
        identities: tuple[TdxModuleIdentity, ...] = ()
        if tcb_id == "TDX":
            module = _module(_get(obj, "tdxModule", dict, what), what, with_levels=False)
            identities = tuple(
                _module(m, what, with_levels=True)
                for m in (
                    _objects(obj, "tdxModuleIdentities", what)
                    if "tdxModuleIdentities" in obj
                    else []
                )
            )
        return cls(
            id=tcb_id,
            version=version,
            issue_date=_date(obj, "issueDate", what),
            next_update=_date(obj, "nextUpdate", what),
            fmspc=_hex(obj, "fmspc", pki.FMSPC_SIZE, what),
            pce_id=_hex(obj, "pceId", pki.PCEID_SIZE, what),
            tcb_evaluation_data_number=_get(obj, "tcbEvaluationDataNumber", int, what),
            levels=tuple(levels),
            tdx_module=module,
            tdx_module_identities=identities,
        )


@dataclass(frozen=True, slots=True)
class QeIdentity:
    """QE Identity (Intel PCS API, "Enclave Identity V2"; id QE for SGX, TD_QE for TDX)."""

    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    tcb_evaluation_data_number: int
    miscselect: int
    miscselect_mask: int
    attributes: bytes
    attributes_mask: bytes
    mrsigner: bytes
    isvprodid: int
    levels: tuple[IsvLevel, ...]

    @classmethod
    def from_json(cls, raw: bytes) -> QeIdentity:
        what = "QE Identity"
        obj = _json_object(raw, what)
        version = _get(obj, "version", int, what)
        if version != QE_IDENTITY_VERSION:
            raise EvidenceParseError(f"{what}: version {version} is not 2")
        return cls(
            id=_get(obj, "id", str, what),
            version=version,
            issue_date=_date(obj, "issueDate", what),
            next_update=_date(obj, "nextUpdate", what),
            tcb_evaluation_data_number=_get(obj, "tcbEvaluationDataNumber", int, what),
            miscselect=_u32_hex(obj, "miscselect", what),
            miscselect_mask=_u32_hex(obj, "miscselectMask", what),
            attributes=_hex(obj, "attributes", 16, what),
            attributes_mask=_hex(obj, "attributesMask", 16, what),
            mrsigner=_hex(obj, "mrsigner", 32, what),
            isvprodid=_svn(obj.get("isvprodid"), what),
            levels=_isv_levels(obj, what),
        )


@dataclass(frozen=True, slots=True)
class SignedObject:
    """The exact signed JSON bytes and the raw 64-byte ECDSA signature over them."""

    raw: bytes
    signature: bytes


def _signed_object(
    members: Mapping[str, str], key: str, sig_key: str, pcs_key: str
) -> SignedObject:
    what = f"collateral {key}"
    if key not in members:
        raise EvidenceParseError(f"collateral: {key!r} is missing")
    text = members[key]
    inner_text = _strict_loads(text, what) if text.lstrip().startswith('"') else text
    if not isinstance(inner_text, str):
        raise EvidenceParseError(f"{what}: not a string or an object")
    inner = raw_members(inner_text, what)
    if pcs_key in inner:
        # An Intel PCS response body: {"tcbInfo": {...}, "signature": "..."}.
        if set(inner) != {pcs_key, "signature"}:
            raise EvidenceParseError(f"{what}: PCS response has unexpected members")
        if sig_key in members:
            raise EvidenceParseError(f"{what}: two signatures (PCS response and {sig_key})")
        raw = inner[pcs_key].encode("utf-8")
        signature_text = _strict_loads(inner["signature"], what)
    else:
        raw = inner_text.encode("utf-8")
        if sig_key not in members:
            raise EvidenceParseError(f"collateral: {sig_key!r} is missing")
        signature_text = _strict_loads(members[sig_key], what)
    if not isinstance(signature_text, str):
        raise EvidenceParseError(f"{what}: signature is not a hex string")
    try:
        signature = bytes.fromhex(signature_text)
    except ValueError as exc:
        raise EvidenceParseError(f"{what}: signature is not hex") from exc
    if len(signature) != pki.RAW_SIGNATURE_SIZE:
        raise EvidenceParseError(f"{what}: signature is {len(signature)} bytes, expected 64")
    return SignedObject(raw=raw, signature=signature)


def _crl(members: Mapping[str, str], key: str) -> x509.CertificateRevocationList:
    if key not in members:
        raise EvidenceParseError(f"collateral: {key!r} is missing")
    value = _strict_loads(members[key], key)
    if not isinstance(value, str):
        raise EvidenceParseError(f"collateral: {key!r} is not a string")
    try:
        if "-----BEGIN" in value:
            return x509.load_pem_x509_crl(value.encode("ascii"))
        return x509.load_der_x509_crl(bytes.fromhex(value))
    except ValueError as exc:
        raise EvidenceParseError(f"collateral: {key!r} is not a CRL") from exc


def _chain(members: Mapping[str, str], key: str) -> tuple[x509.Certificate, ...]:
    if key not in members:
        raise EvidenceParseError(f"collateral: {key!r} is missing")
    value = _strict_loads(members[key], key)
    if not isinstance(value, str):
        raise EvidenceParseError(f"collateral: {key!r} is not a string")
    return pki.load_pem_chain(value.encode("ascii", "replace"), key)


@dataclass(frozen=True, slots=True)
class CollateralBundle:
    """Collateral as received: parsed, nothing verified yet."""

    tcb_info: SignedObject
    tcb_info_chain: tuple[x509.Certificate, ...]
    qe_identity: SignedObject
    qe_identity_chain: tuple[x509.Certificate, ...]
    pck_crl: x509.CertificateRevocationList
    pck_crl_chain: tuple[x509.Certificate, ...]
    root_ca_crl: x509.CertificateRevocationList

    @classmethod
    def from_bytes(cls, data: bytes) -> CollateralBundle:
        if len(data) > MAX_COLLATERAL_SIZE:
            raise EvidenceParseError(f"collateral is larger than {MAX_COLLATERAL_SIZE} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EvidenceParseError("collateral is not UTF-8 JSON") from exc
        members = raw_members(text, "collateral")
        if {"tcbInfo", "enclaveIdentity"} & set(members):
            raise EvidenceParseError(
                "collateral is a single Intel PCS response; a collateral bundle carrying TCB "
                "Info, QE Identity, both CRLs and the issuer chains is needed"
            )
        unknown = sorted(set(members) - BUNDLE_KEYS)
        if unknown:
            raise EvidenceParseError(f"collateral: unknown members {', '.join(unknown)}")
        return cls(
            tcb_info=_signed_object(members, "tcb_info", "tcb_info_signature", "tcbInfo"),
            tcb_info_chain=_chain(members, "tcb_info_issuer_chain"),
            qe_identity=_signed_object(
                members, "qe_identity", "qe_identity_signature", "enclaveIdentity"
            ),
            qe_identity_chain=_chain(members, "qe_identity_issuer_chain"),
            pck_crl=_crl(members, "pck_crl"),
            pck_crl_chain=_chain(members, "pck_crl_issuer_chain"),
            root_ca_crl=_crl(members, "root_ca_crl"),
        )


@dataclass(frozen=True, slots=True)
class VerifiedCollateral:
    """Collateral whose signatures, chains and CRLs verified, current from ``valid_from`` to
    ``valid_until``.

    ``pck_ca`` is the PCK CA (Platform or Processor) that issued ``pck_crl``; a quote's PCK
    chain must use this same CA for the CRL to apply to it.
    """

    kind: str
    tcb_info: TcbInfo
    qe_identity: QeIdentity
    pck_crl: x509.CertificateRevocationList
    pck_ca: x509.Certificate
    root_ca_crl: x509.CertificateRevocationList
    valid_from: datetime
    valid_until: datetime

    def check_current(self, now: datetime) -> None:
        """Every part of this collateral is inside its validity window at ``now``."""
        _check_window(self.valid_from, self.valid_until, now, f"{self.kind}.collateral.freshness")


def verify_signed_object(
    obj: SignedObject,
    *,
    chain: tuple[x509.Certificate, ...],
    root: x509.Certificate,
    root_crl: x509.CertificateRevocationList,
    now: datetime,
    check: str,
) -> None:
    """The Intel TCB Signing chain reaches ``root``, is not revoked, and signed ``obj.raw``."""
    pki.verify_chain(chain, root, now, f"{check}.chain", length=SIGNING_CHAIN_LENGTH)
    pki.check_not_revoked(root_crl, chain[0], f"{check}.chain.revoked")
    key = pki.ec_public_key(chain[0], f"{check}.signature")
    if not pki.ecdsa_p256_ok(key, obj.signature, obj.raw):
        raise VerificationError(f"{check}.signature", "signature does not verify")


def _check_window(issue: datetime, next_update: datetime, now: datetime, check: str) -> None:
    if not issue <= now <= next_update:
        raise VerificationError(
            check,
            "not current",
            expected=f"{issue.isoformat()}..{next_update.isoformat()}",
            actual=now.isoformat(),
        )


def verify_collateral(
    kind: str,
    bundle: CollateralBundle,
    now: datetime,
    root: x509.Certificate | None = None,
) -> VerifiedCollateral:
    """Check every signature, chain, CRL and validity window of ``bundle`` at ``now``.

    Order: the Root CA CRL (signed by the pinned root, current); the PCK CRL issuer chain to
    the pinned root, its CA not revoked, the PCK CRL signed by it and current; TCB Info and
    QE Identity signed by an Intel TCB Signing certificate that chains to the pinned root and
    is not revoked; their ids match ``kind``; issueDate <= now <= nextUpdate.
    """
    root = root or pki.intel_sgx_root_ca()
    p = f"{kind}.collateral"
    pki.verify_crl(bundle.root_ca_crl, root, now, f"{p}.root_ca_crl")
    pki.verify_chain(bundle.pck_crl_chain, root, now, f"{p}.pck_crl_chain", length=CRL_CHAIN_LENGTH)
    pck_ca = bundle.pck_crl_chain[0]
    pki.check_not_revoked(bundle.root_ca_crl, pck_ca, f"{p}.pck_crl_chain.revoked")
    pki.verify_crl(bundle.pck_crl, pck_ca, now, f"{p}.pck_crl")

    verify_signed_object(
        bundle.tcb_info,
        chain=bundle.tcb_info_chain,
        root=root,
        root_crl=bundle.root_ca_crl,
        now=now,
        check=f"{p}.tcb_info",
    )
    tcb_info = TcbInfo.from_json(bundle.tcb_info.raw)
    if tcb_info.id != TCB_INFO_ID[kind] or (kind == "tdx" and tcb_info.version != 3):
        raise VerificationError(
            f"{p}.tcb_info.id",
            "TCB Info is for another TEE",
            expected=f"{TCB_INFO_ID[kind]}",
            actual=f"{tcb_info.id} v{tcb_info.version}",
        )
    _check_window(tcb_info.issue_date, tcb_info.next_update, now, f"{p}.tcb_info.freshness")

    verify_signed_object(
        bundle.qe_identity,
        chain=bundle.qe_identity_chain,
        root=root,
        root_crl=bundle.root_ca_crl,
        now=now,
        check=f"{p}.qe_identity",
    )
    qe = QeIdentity.from_json(bundle.qe_identity.raw)
    if qe.id != QE_IDENTITY_ID[kind]:
        raise VerificationError(
            f"{p}.qe_identity.id",
            "QE Identity is for another QE",
            expected=QE_IDENTITY_ID[kind],
            actual=qe.id,
        )
    _check_window(qe.issue_date, qe.next_update, now, f"{p}.qe_identity.freshness")
    # The window in which all of it is current, so that a verified bundle can be reused for
    # later quotes and still be refused once any part of it expires.
    crls = (bundle.root_ca_crl, bundle.pck_crl)
    certs = (*bundle.tcb_info_chain, *bundle.qe_identity_chain, *bundle.pck_crl_chain)
    starts = [tcb_info.issue_date, qe.issue_date, *(c.last_update_utc for c in crls)]
    starts += [c.not_valid_before_utc for c in certs]
    ends = [tcb_info.next_update, qe.next_update]
    ends += [c.next_update_utc for c in crls if c.next_update_utc is not None]
    ends += [c.not_valid_after_utc for c in certs]
    return VerifiedCollateral(
        kind=kind,
        tcb_info=tcb_info,
        qe_identity=qe,
        pck_crl=bundle.pck_crl,
        pck_ca=pck_ca,
        root_ca_crl=bundle.root_ca_crl,
        valid_from=max(starts),
        valid_until=min(ends),
    )
