"""QE identity, TDX module identity and TCB level evaluation, one violation at a time.

Collateral objects cannot be re-signed by Intel, so these tests take verified collateral
and real claims and replace one field of the parsed collateral before ``authenticate``.
"""

from __future__ import annotations

import dataclasses

import pytest

from arx.attestation import intel_pki as pki
from arx.attestation.intel import (
    authenticate,
    check_for_relaunch,
    converge_statuses,
    evaluate_platform_tcb,
)
from arx.attestation.intel_collateral import (
    CollateralBundle,
    IsvLevel,
    TcbLevel,
    VerifiedCollateral,
    verify_collateral,
)
from arx.attestation.intel_quote import IntelQuote
from arx.errors import VerificationError
from tests.attestation.intel_vectors import NOW_2025, read, tdx_collateral


@pytest.fixture(scope="module")
def verified() -> VerifiedCollateral:
    return verify_collateral("tdx", CollateralBundle.from_bytes(tdx_collateral()), NOW_2025)


def _auth(coll: VerifiedCollateral):  # type: ignore[no-untyped-def]
    raw = read("tdx/dcap-qvl/tdx_quote")
    quote = IntelQuote.from_bytes(raw)
    return authenticate("tdx", quote, raw[quote.consumed :], coll, NOW_2025)


def _with_qe(coll: VerifiedCollateral, **fields: object) -> VerifiedCollateral:
    return dataclasses.replace(coll, qe_identity=dataclasses.replace(coll.qe_identity, **fields))


def _with_tcb(coll: VerifiedCollateral, **fields: object) -> VerifiedCollateral:
    return dataclasses.replace(coll, tcb_info=dataclasses.replace(coll.tcb_info, **fields))


def test_baseline(verified: VerifiedCollateral) -> None:
    claims = _auth(verified)
    assert claims.tcb_status == "UpToDate"
    assert claims.qe_tcb_status == "UpToDate"


@pytest.mark.parametrize(
    ("fields", "check"),
    [
        ({"mrsigner": bytes(32)}, "tdx.qe_identity.mrsigner"),
        ({"isvprodid": 1}, "tdx.qe_identity.isvprodid"),
        ({"miscselect": 1}, "tdx.qe_identity.miscselect"),
        ({"attributes": bytes(16)}, "tdx.qe_identity.attributes"),
        ({"levels": (IsvLevel(99, "UpToDate", ()),)}, "tdx.qe_identity.tcb_level"),
        ({"levels": (IsvLevel(0, "Revoked", ()),)}, "tdx.qe_identity.revoked"),
    ],
)
def test_qe_identity_violations(
    verified: VerifiedCollateral, fields: dict[str, object], check: str
) -> None:
    with pytest.raises(VerificationError) as err:
        _auth(_with_qe(verified, **fields))
    assert err.value.check == check


def test_qe_out_of_date_converges(verified: VerifiedCollateral) -> None:
    claims = _auth(_with_qe(verified, levels=(IsvLevel(0, "OutOfDate", ("INTEL-SA-1",)),)))
    assert claims.tcb_status == "OutOfDate"
    assert claims.advisory_ids == ("INTEL-SA-1",)


def test_masked_fields_ignore_bits_outside_the_mask(verified: VerifiedCollateral) -> None:
    qe = verified.qe_identity
    # Expected value differs only where the mask is zero: still a match.
    claims = _auth(_with_qe(verified, miscselect=0xFFFFFFFF, miscselect_mask=0))
    assert claims.tcb_status == "UpToDate"
    assert qe.miscselect_mask == 0xFFFFFFFF


def test_pceid_and_fmspc(verified: VerifiedCollateral) -> None:
    with pytest.raises(VerificationError) as err:
        _auth(_with_tcb(verified, pce_id=b"\x00\x01"))
    assert err.value.check == "tdx.tcb_info.pceid"
    with pytest.raises(VerificationError) as err:
        _auth(_with_tcb(verified, fmspc=bytes(6)))
    assert err.value.check == "tdx.tcb_info.fmspc"


def test_tdx_module_identity(verified: VerifiedCollateral) -> None:
    tcb = verified.tcb_info
    # tdx_quote's TEE_TCB_SVN is 06 01 ...: module major version 1, so TDX_01 applies.
    ident = next(m for m in tcb.tdx_module_identities if m.id == "TDX_01")
    others = tuple(m for m in tcb.tdx_module_identities if m.id != "TDX_01")
    bad_signer = dataclasses.replace(ident, mrsigner=b"\x01" * 48)
    with pytest.raises(VerificationError) as err:
        _auth(_with_tcb(verified, tdx_module_identities=(bad_signer, *others)))
    assert err.value.check == "tdx.tdx_module.mrsignerseam"
    bad_attrs = dataclasses.replace(ident, attributes=b"\x01" + bytes(7))
    with pytest.raises(VerificationError) as err:
        _auth(_with_tcb(verified, tdx_module_identities=(bad_attrs, *others)))
    assert err.value.check == "tdx.tdx_module.seam_attributes"
    with pytest.raises(VerificationError) as err:
        _auth(_with_tcb(verified, tdx_module_identities=others))
    assert err.value.check == "tdx.tdx_module.identity"
    # The module's own TCB level: OutOfDate converges into the platform status.
    old = dataclasses.replace(ident, levels=(IsvLevel(0, "OutOfDate", ("INTEL-SA-M",)),))
    claims = _auth(_with_tcb(verified, tdx_module_identities=(old, *others)))
    assert claims.tcb_status == "OutOfDate"
    assert "INTEL-SA-M" in claims.advisory_ids
    none = dataclasses.replace(ident, levels=(IsvLevel(200, "UpToDate", ()),))
    with pytest.raises(VerificationError) as err:
        _auth(_with_tcb(verified, tdx_module_identities=(none, *others)))
    assert err.value.check == "tdx.tdx_module.tcb_level"


def _pck(components: list[int], pcesvn: int) -> pki.PckExtensions:
    return pki.PckExtensions(
        fmspc=bytes(6),
        pce_id=bytes(2),
        cpusvn_components=tuple(components),
        pcesvn=pcesvn,
        cpusvn=bytes(components),
        sgx_type=0,
    )


def test_tcb_levels_compare_per_component(verified: VerifiedCollateral) -> None:
    level_hi = TcbLevel((1, 5) + (0,) * 14, 10, None, "", "UpToDate", ())
    level_lo = TcbLevel((0,) * 16, 0, None, "", "OutOfDate", ("SA",))
    tcb = dataclasses.replace(verified.tcb_info, levels=(level_hi, level_lo), id="SGX")
    # (2, 4) is "higher" than (1, 5) read as one number, but component 2 is below: no.
    result = evaluate_platform_tcb("sgx", tcb, _pck([2, 4] + [0] * 14, 10), None)
    assert result.status == "OutOfDate"
    assert evaluate_platform_tcb("sgx", tcb, _pck([1, 5] + [0] * 14, 10), None).status == (
        "UpToDate"
    )
    # PCESVN is its own component.
    assert evaluate_platform_tcb("sgx", tcb, _pck([9] * 16, 9), None).status == "OutOfDate"
    only_hi = dataclasses.replace(tcb, levels=(level_hi,))
    with pytest.raises(VerificationError) as err:
        evaluate_platform_tcb("sgx", only_hi, _pck([0] * 16, 10), None)
    assert err.value.check == "sgx.tcb_level"


def test_tdx_components_skip_module_bytes_when_major_is_set(
    verified: VerifiedCollateral,
) -> None:
    level = TcbLevel((0,) * 16, 0, (9, 9, 3) + (0,) * 13, "", "UpToDate", ())
    tcb = dataclasses.replace(verified.tcb_info, levels=(level,))
    pck = _pck([0] * 16, 0)
    # Major version 0: bytes 0 and 1 count, and 0 < 9 means no level.
    with pytest.raises(VerificationError):
        evaluate_platform_tcb("tdx", tcb, pck, bytes([0, 0, 3]) + bytes(13))
    # Major version 1: bytes 0 and 1 are rated by the TDX_01 module identity instead.
    assert evaluate_platform_tcb("tdx", tcb, pck, bytes([9, 1, 3]) + bytes(13)).status == (
        "UpToDate"
    )
    with pytest.raises(VerificationError):
        evaluate_platform_tcb("tdx", tcb, pck, bytes([9, 1, 2]) + bytes(13))


def test_convergence_and_relaunch_rules() -> None:
    assert converge_statuses("UpToDate", ["UpToDate"]) == "UpToDate"
    assert converge_statuses("SWHardeningNeeded", ["OutOfDate"]) == "OutOfDate"
    assert converge_statuses("ConfigurationNeeded", ["OutOfDate"]) == (
        "OutOfDateConfigurationNeeded"
    )
    assert converge_statuses("UpToDate", ["Revoked"]) == "Revoked"
    assert converge_statuses("OutOfDate", ["UpToDate"]) == "OutOfDate"
    assert check_for_relaunch("OutOfDate", "UpToDate") == "TDRelaunchAdvised"
    assert check_for_relaunch("OutOfDate", "ConfigurationNeeded") == (
        "TDRelaunchAdvisedConfigurationNeeded"
    )
    assert check_for_relaunch("UpToDate", "UpToDate") == "UpToDate"
    assert check_for_relaunch("OutOfDate", "OutOfDate") == "OutOfDate"
