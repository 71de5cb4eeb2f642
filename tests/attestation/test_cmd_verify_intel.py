"""``arx verify --kind tdx|sgx`` as a user runs it, on the real quotes and collateral."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
TDX = VECTORS / "tdx" / "dcap-qvl"
SGX = VECTORS / "sgx" / "dcap-qvl"
INSIDE_WINDOW = "2025-07-01T00:00:00Z"


def verify(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "arx", "verify", *map(str, args)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_tdx_quote_accepted_inside_the_collateral_window() -> None:
    result = verify(TDX / "tdx_quote", "--kind", "tdx", "--collateral",
                    TDX / "tdx_quote_collateral.json", "--at", INSIDE_WINDOW, "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    claims = json.loads(result.stdout)
    assert claims["verdict"] == "accepted"
    assert claims["kind"] == "tdx"
    assert claims["debug"] is False
    assert claims["tcb_status"] == "UpToDate"
    assert len(claims["measurement"]) == 96
    assert len(claims["report_data"]) == 128


def test_tdx_collateral_out_of_date_now_is_rejected() -> None:
    result = verify(TDX / "tdx_quote", "--kind", "tdx", "--collateral",
                    TDX / "tdx_quote_collateral.json", "--json")  # fmt: skip
    assert result.returncode == 1
    verdict = json.loads(result.stdout)
    assert verdict["verdict"] == "rejected"
    assert "collateral" in verdict["failed_check"]


def test_sgx_status_needs_an_explicit_policy(tmp_path: Path) -> None:
    args = (SGX / "sgx_quote", "--kind", "sgx", "--collateral",
            SGX / "sgx_quote_collateral.json", "--at", INSIDE_WINDOW)  # fmt: skip
    baseline = verify(*args, "--json")
    assert baseline.returncode == 1
    assert json.loads(baseline.stdout)["failed_check"] == "sgx.tcb_status"
    policy = tmp_path / "sgx.toml"
    policy.write_text(
        "[sgx]\nmrenclave = 'any'\nmrsigner = 'any'\nreport_data = 'any'\n"
        "isvprodid = 'any'\nmin_isvsvn = 'any'\n"
        "accepted_tcb_statuses = ['UpToDate', 'ConfigurationAndSWHardeningNeeded']\n"
    )
    accepted = verify(*args, "--policy", policy, "--json")
    assert accepted.returncode == 0, accepted.stderr
    claims = json.loads(accepted.stdout)
    assert claims["tcb_status"] == "ConfigurationAndSWHardeningNeeded"
    assert claims["advisories"] == ["INTEL-SA-00289", "INTEL-SA-00615"]


def test_debug_enclave_rejected_with_one_line() -> None:
    result = verify(VECTORS / "sgx" / "trustee" / "occlum_quote.dat", "--kind", "sgx")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "rejected: sgx.attributes.debug: the enclave is debuggable (ATTRIBUTES.DEBUG) "
        "(expected 0, got 1)"
    ]
