"""Policy files: fail closed, reject unknown keys, no debug setting."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arx.attestation.policy import (
    ANY,
    GUEST_POLICY_FLAGS,
    SnpPolicy,
    load_policy_file,
    parse_policy_text,
    parse_snp_table,
)
from arx.attestation.snp import PLATFORM_INFO_BITS, Product, SigningKey
from arx.errors import UsageError


def test_baseline_is_explicit_everywhere() -> None:
    base = SnpPolicy.baseline()
    for name in SnpPolicy.__dataclass_fields__:
        assert getattr(base, name) is not None, name
    assert base.vmpl == frozenset({0})
    assert base.measurement is ANY
    assert base.host_data == frozenset({bytes(32)})
    assert base.guest_policy["cxl_allow"] is False
    assert base.platform_info["alias_check_complete"] is True
    assert base.allow_provisional_firmware is False
    assert base.allow_masked_chip_id is False
    assert set(base.guest_policy) == set(GUEST_POLICY_FLAGS)
    assert set(base.platform_info) == set(PLATFORM_INFO_BITS)
    assert "debug" not in GUEST_POLICY_FLAGS
    assert "migrate_ma" not in GUEST_POLICY_FLAGS


def test_empty_document_is_the_baseline() -> None:
    parsed = parse_policy_text("")
    assert parsed.snp == SnpPolicy.baseline()
    assert parsed.tdx_table is None
    assert parsed.sgx_table is None


def test_full_snp_table() -> None:
    measurement = "ab" * 48
    parsed = parse_policy_text(
        f"""
        [snp]
        products = ["Milan", "genoa"]
        signing_keys = ["vcek"]
        min_report_version = 3
        vmpl = [0, 1]
        measurement = ["{measurement}"]
        measurement_denylist = ["{"cd" * 48}"]
        host_data = "any"
        family_id = "{"01" * 16}"
        min_guest_svn = 4
        min_policy_abi = "1.51"
        min_firmware_api = "1.55"
        min_firmware_build = 3
        allow_provisional_firmware = true
        allow_masked_chip_id = true
        required_mitigations = 3
        require_crl = true

        [snp.guest_policy]
        smt = false
        single_socket = true

        [snp.platform_info]
        alias_check_complete = "any"
        tsme_en = true

        [snp.min_tcb]
        snp = 8
        microcode = 115

        [tdx]
        mrtd = "any"

        [sgx]
        whatever = 1
        """
    )
    snp = parsed.snp
    assert snp.products == frozenset({Product.MILAN, Product.GENOA})
    assert snp.signing_keys == frozenset({SigningKey.VCEK})
    assert snp.min_report_version == 3
    assert snp.vmpl == frozenset({0, 1})
    assert snp.measurement == frozenset({bytes.fromhex(measurement)})
    assert snp.host_data is ANY
    assert snp.family_id == frozenset({b"\x01" * 16})
    assert snp.min_policy_abi == (1, 51)
    assert snp.min_firmware_api == (1, 55)
    assert snp.guest_policy["smt"] is False
    assert snp.guest_policy["single_socket"] is True
    assert snp.guest_policy["cxl_allow"] is False  # untouched: baseline
    assert snp.platform_info["alias_check_complete"] is ANY
    assert snp.platform_info["tsme_en"] is True
    assert snp.min_tcb["snp"] == 8
    assert snp.min_tcb["bootloader"] == 0
    assert parsed.tdx_table == {"mrtd": "any"}
    assert parsed.sgx_table == {"whatever": 1}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[snp]\nmeasurment = 'any'", "'measurment'"),
        ("[snp.guest_policy]\nsmtt = true", "'smtt'"),
        ("[snp.platform_info]\nalias = true", "'alias'"),
        ("[snp.min_tcb]\nucode = 1", "'ucode'"),
        ("[snpp]\n", "'snpp'"),
        ("[snp]\ndebug = true", "'debug'"),
        ("[snp]\nallow_debug = true", "'allow_debug'"),
        ("[snp.guest_policy]\ndebug = true", "'debug'"),
        ("[snp.guest_policy]\nmigrate_ma = true", "'migrate_ma'"),
    ],
)
def test_unknown_and_forbidden_keys_are_named(text: str, needle: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_policy_text(text, "p.toml")
    assert needle in info.value.message
    assert "p.toml" in info.value.message


@pytest.mark.parametrize(
    "text",
    [
        "[snp]\nvmpl = 4",
        "[snp]\nvmpl = []",
        "[snp]\nvmpl = true",
        "[snp]\nmeasurement = []",
        "[snp]\nmeasurement = 'abcd'",
        "[snp]\nmeasurement = 'zz'",
        "[snp]\nmin_report_version = 1",
        "[snp]\nmin_policy_abi = '1'",
        "[snp]\nmin_policy_abi = '1.256'",
        "[snp]\nallow_provisional_firmware = 'yes'",
        "[snp]\nproducts = ['Rome']",
        "[snp]\nproducts = []",
        "[snp.guest_policy]\nsmt = 'sometimes'",
        "[snp.min_tcb]\nsnp = 256",
        "[snp]\nmin_guest_svn = -1",
        "snp = 1",
        "[tdx]\n[tdx.x]\n[sgx]\n" + "[snp]\nvmpl = 'none'",
        "not toml [",
    ],
)
def test_bad_values_are_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_policy_text(text)


def test_load_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text("[snp]\nvmpl = 'any'\n")
    assert load_policy_file(path).snp.vmpl is ANY
    with pytest.raises(UsageError):
        load_policy_file(tmp_path / "missing.toml")


_TOML_VALUE: Any = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*SnpPolicy.__dataclass_fields__, "debug", "x"]), _TOML_VALUE, max_size=4
    )
)
def test_arbitrary_tables_raise_only_usage_errors(table: dict[str, Any]) -> None:
    with contextlib.suppress(UsageError):
        parse_snp_table(table)
