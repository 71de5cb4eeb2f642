"""Bit-flip sweeps over the signed regions and signatures, truncation and trailing bytes.

Every single-bit change to header+body, the attestation key, the quote signature, the QE
report or its signature must be rejected. The sweep verifies without collateral
(``require_collateral = false``) so that each variant goes through the full signature, QE
binding and PCK chain path; the unmodified quote passes the same call, so a rejection is
caused by the flip.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from arx.attestation.intel import IntelPolicy, verify_quote
from arx.attestation.intel_quote import (
    ECDSA_PUBLIC_KEY_SIZE,
    ECDSA_SIGNATURE_SIZE,
    SGX_REPORT_BODY_SIZE,
    IntelQuote,
)
from arx.errors import EvidenceParseError, VerificationError
from tests.attestation.intel_vectors import NOW_2025, NOW_2026, policy, read

QUOTES = [
    ("tdx", "tdx/dcap-qvl/tdx_quote", NOW_2025),  # v4, TD 1.0, zero padding
    ("tdx", "tdx/go-tdx-guest/quote_v5_sample.dat", NOW_2026),  # v5, TD 1.5
    ("sgx", "sgx/dcap-qvl/sgx_quote", NOW_2025),  # v3
]

# What a flip may legitimately trip: structure, the two signatures, the binding, or a
# field whose value the verifier refuses before the signature check.
ALLOWED_CHECKS = {
    "quote.signature",
    "qe_report.signature",
    "qe_report.binding",
    "header.qe_vendor_id",
    "quote.kind",
}


def _regions(quote: IntelQuote, kind: str) -> list[tuple[str, int, int]]:
    """(name, offset, length) of each region covered by the sweep, offsets in the quote."""
    signed_len = len(quote.signed)
    sig_start = signed_len + 4  # after the u32 signature data length
    regions = [
        ("header+body", 0, signed_len),
        ("quote signature", sig_start, ECDSA_SIGNATURE_SIZE),
        ("attestation key", sig_start + ECDSA_SIGNATURE_SIZE, ECDSA_PUBLIC_KEY_SIZE),
    ]
    qe_start = sig_start + ECDSA_SIGNATURE_SIZE + ECDSA_PUBLIC_KEY_SIZE
    if kind == "tdx":
        qe_start += 6  # certification data type 6 and its size
    regions.append(("QE report", qe_start, SGX_REPORT_BODY_SIZE))
    regions.append(("QE report signature", qe_start + SGX_REPORT_BODY_SIZE, ECDSA_SIGNATURE_SIZE))
    # The QE authentication data, bound into the QE report by its hash.
    auth_start = qe_start + SGX_REPORT_BODY_SIZE + ECDSA_SIGNATURE_SIZE + 2
    regions.append(("QE auth data", auth_start, len(quote.signature_data.qe.qe_auth_data)))
    return regions


@pytest.mark.parametrize(("kind", "rel", "now"), QUOTES)
def test_every_bit_flip_in_signed_regions_is_rejected(kind: str, rel: str, now: datetime) -> None:
    raw = read(rel)
    quote = IntelQuote.from_bytes(raw)
    pol = IntelPolicy.from_table(kind, policy(kind, require_collateral=False))  # type: ignore[arg-type]
    verify_quote(kind, raw, None, pol, now)  # type: ignore[arg-type]
    regions = _regions(quote, kind)
    # The regions are where the layout says: the QE report parsed from them is the one the
    # parser found.
    qe = next(r for r in regions if r[0] == "QE report")
    assert raw[qe[1] : qe[1] + qe[2]] == quote.signature_data.qe.qe_report_raw
    auth = next(r for r in regions if r[0] == "QE auth data")
    assert raw[auth[1] : auth[1] + auth[2]] == quote.signature_data.qe.qe_auth_data
    assert auth[2] > 0
    buf = bytearray(raw)
    flips = 0
    for name, start, length in regions:
        for byte in range(start, start + length):
            for bit in range(8):
                buf[byte] ^= 1 << bit
                try:
                    verify_quote(kind, bytes(buf), None, pol, now)  # type: ignore[arg-type]
                except EvidenceParseError:
                    pass
                except VerificationError as exc:
                    suffix = exc.check.split(".", 1)[1]
                    if suffix not in ALLOWED_CHECKS:
                        pytest.fail(f"{name} byte {byte} bit {bit}: unexpected {exc.check}")
                else:
                    pytest.fail(f"flip accepted: {name} byte {byte} bit {bit}")
                finally:
                    buf[byte] ^= 1 << bit
                flips += 1
    assert flips == 8 * sum(length for _, _, length in regions)


@pytest.mark.parametrize(("kind", "rel", "now"), QUOTES)
def test_truncation_at_every_length_is_rejected(kind: str, rel: str, now: datetime) -> None:
    raw = read(rel)
    consumed = IntelQuote.from_bytes(raw).consumed
    for n in range(consumed):
        with pytest.raises(EvidenceParseError):
            IntelQuote.from_bytes(raw[:n])
    # And through the entry point, at a few lengths, the same error reaches the caller.
    pol = IntelPolicy.from_table(kind, policy(kind, require_collateral=False))  # type: ignore[arg-type]
    for n in (0, 47, 48, 631, consumed // 2, consumed - 1):
        with pytest.raises(EvidenceParseError):
            verify_quote(kind, raw[:n], None, pol, now)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "rel", "now"), QUOTES)
def test_trailing_bytes(kind: str, rel: str, now: datetime) -> None:
    raw = read(rel)
    consumed = IntelQuote.from_bytes(raw).consumed
    exact = raw[:consumed]
    pol = IntelPolicy.from_table(kind, policy(kind, require_collateral=False))  # type: ignore[arg-type]
    # Zero padding of any length is accepted and reported.
    for pad in (1, 70, 3065):
        ev = verify_quote(kind, exact + bytes(pad), None, pol, now)  # type: ignore[arg-type]
        assert ev.details["trailing_zero_bytes"] == pad
    # Any non-zero byte after the quote is refused, wherever it is.
    for tail in (b"\x01", bytes(69) + b"\x80", b"\xff" * 10, b"\x00\x00x"):
        with pytest.raises(VerificationError) as err:
            verify_quote(kind, exact + tail, None, pol, now)  # type: ignore[arg-type]
        assert err.value.check == f"{kind}.quote.trailing_bytes"


def test_inner_length_fields_must_be_exact() -> None:
    raw = bytearray(read("tdx/dcap-qvl/tdx_quote"))
    quote = IntelQuote.from_bytes(bytes(raw))
    sig_len_at = len(quote.signed)
    sig_len = int.from_bytes(raw[sig_len_at : sig_len_at + 4], "little")
    # A signature data length one larger than its contents: the parser sees an extra byte.
    raw[sig_len_at : sig_len_at + 4] = (sig_len + 1).to_bytes(4, "little")
    with pytest.raises(EvidenceParseError):
        IntelQuote.from_bytes(bytes(raw))
    raw[sig_len_at : sig_len_at + 4] = (sig_len - 1).to_bytes(4, "little")
    with pytest.raises(EvidenceParseError):
        IntelQuote.from_bytes(bytes(raw))
    raw[sig_len_at : sig_len_at + 4] = (1 << 31).to_bytes(4, "little")
    with pytest.raises(EvidenceParseError):
        IntelQuote.from_bytes(bytes(raw))
