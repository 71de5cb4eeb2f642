"""Hypothesis on every Intel parser: for any input, only EvidenceParseError escapes."""

from __future__ import annotations

import contextlib
import json

from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arx.attestation import intel_pki as pki
from arx.attestation.intel_collateral import (
    CollateralBundle,
    QeIdentity,
    TcbInfo,
    raw_members,
)
from arx.attestation.intel_quote import (
    IntelQuote,
    QuoteHeader,
    SgxReportBody,
    TdReportBody,
    parse_signature_data,
)
from arx.errors import EvidenceParseError
from tests.attestation.intel_vectors import read, tdx_collateral

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REAL_QUOTES = [
    read("tdx/dcap-qvl/tdx_quote"),
    read("tdx/go-tdx-guest/quote_v5_sample.dat"),
    read("sgx/dcap-qvl/sgx_quote"),
]


def _only_parse_errors(fn, data) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(EvidenceParseError):
        fn(data)


@SETTINGS
@given(st.binary(max_size=6000))
def test_quote_arbitrary_bytes(data: bytes) -> None:
    _only_parse_errors(IntelQuote.from_bytes, data)


@SETTINGS
@given(
    st.sampled_from(REAL_QUOTES),
    st.lists(st.tuples(st.integers(0, 5100), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, 5100),
)
def test_quote_mutations_of_real_quotes(
    quote: bytes, edits: list[tuple[int, int]], cut: int
) -> None:
    buf = bytearray(quote)
    for at, value in edits:
        if at < len(buf):
            buf[at] = value
    _only_parse_errors(IntelQuote.from_bytes, bytes(buf[: max(cut, 1) if cut < 200 else None]))


@SETTINGS
@given(st.binary(min_size=0, max_size=700))
def test_fixed_records(data: bytes) -> None:
    _only_parse_errors(QuoteHeader.from_bytes, data[:48])
    _only_parse_errors(SgxReportBody.from_bytes, data[:384])
    _only_parse_errors(TdReportBody.from_bytes, data)


@SETTINGS
@given(st.binary(max_size=2000), st.sampled_from([3, 4, 5]))
def test_signature_data(data: bytes, version: int) -> None:
    _only_parse_errors(lambda d: parse_signature_data(d, version), data)


@SETTINGS
@given(st.binary(max_size=3000))
def test_collateral_arbitrary_bytes(data: bytes) -> None:
    _only_parse_errors(CollateralBundle.from_bytes, data)
    _only_parse_errors(TcbInfo.from_json, data)
    _only_parse_errors(QeIdentity.from_json, data)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@SETTINGS
@given(st.dictionaries(st.text(max_size=24), JSON, max_size=12))
def test_collateral_json_shapes(obj: dict[str, object]) -> None:
    data = json.dumps(obj).encode()
    _only_parse_errors(CollateralBundle.from_bytes, data)
    _only_parse_errors(TcbInfo.from_json, data)
    _only_parse_errors(QeIdentity.from_json, data)
    _only_parse_errors(lambda d: raw_members(d.decode(), "x"), data)


REAL_TCB = json.loads(json.loads(tdx_collateral())["tcb_info"])
REAL_QE = json.loads(json.loads(tdx_collateral())["qe_identity"])


def _mutate(obj: object, path: list[int], value: object) -> object:
    """Replace one node (chosen by ``path``) of a JSON tree with ``value``."""
    if not path or not isinstance(obj, dict | list) or not obj:
        return value
    if isinstance(obj, dict):
        keys = sorted(obj)
        key = keys[path[0] % len(keys)]
        return {**obj, key: _mutate(obj[key], path[1:], value)}
    items = list(obj)
    i = path[0] % len(items)
    items[i] = _mutate(items[i], path[1:], value)
    return items


@SETTINGS
@given(st.lists(st.integers(0, 40), max_size=6), JSON)
def test_tcb_info_and_qe_identity_mutations(path: list[int], value: object) -> None:
    _only_parse_errors(TcbInfo.from_json, json.dumps(_mutate(REAL_TCB, path, value)).encode())
    _only_parse_errors(QeIdentity.from_json, json.dumps(_mutate(REAL_QE, path, value)).encode())


PCK = x509.load_pem_x509_certificates(
    IntelQuote.from_bytes(REAL_QUOTES[0]).signature_data.qe.cert_data
)[0]
SGX_EXT = PCK.extensions.get_extension_for_oid(pki.OID_SGX_EXTENSIONS).value.public_bytes()


@SETTINGS
@given(
    st.lists(st.tuples(st.integers(0, 600), st.integers(0, 255)), max_size=4), st.integers(0, 600)
)
def test_pck_extension_der_mutations(edits: list[tuple[int, int]], cut: int) -> None:
    buf = bytearray(SGX_EXT)
    for at, value in edits:
        if at < len(buf):
            buf[at] = value
    data = bytes(buf[:cut] if cut < len(buf) else buf)
    ext = x509.UnrecognizedExtension(pki.OID_SGX_EXTENSIONS, data)

    class _Exts:
        def get_extension_for_oid(self, oid: object) -> object:
            return x509.Extension(pki.OID_SGX_EXTENSIONS, False, ext)

    class _Cert:
        extensions = _Exts()

    _only_parse_errors(pki.PckExtensions.from_certificate, _Cert())


def test_real_pck_extension_parses() -> None:
    ext = pki.PckExtensions.from_certificate(PCK)
    assert ext.fmspc == bytes.fromhex("B0C06F000000")
    assert len(ext.cpusvn_components) == 16


COLLATERAL = tdx_collateral()
QUOTE = REAL_QUOTES[0]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(COLLATERAL) - 1), st.integers(0, 255)), min_size=1, max_size=4
    )
)
def test_full_verification_with_mutated_collateral(edits: list[tuple[int, int]]) -> None:
    """Whatever the collateral bytes, only errors from arx's own tree reach the caller, and a
    changed byte that matters is never silently accepted with a different result."""
    from arx.attestation.intel import verify_quote_file
    from arx.errors import AttestationError
    from tests.attestation.intel_vectors import NOW_2025

    buf = bytearray(COLLATERAL)
    for at, value in edits:
        buf[at] = value
    try:
        ev = verify_quote_file("tdx", QUOTE, bytes(buf), None, NOW_2025)
    except AttestationError:
        return
    # Accepted: then the mutation only touched bytes outside what is signed or checked
    # (JSON whitespace, an unchecked PEM header letter ...), and the outcome is unchanged.
    assert ev.tcb_status == "UpToDate"
