"""``arx verify`` as a user runs it: a subprocess, its output and its exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import VECTORS

MILAN_HEX = VECTORS / "virtee-sev" / "report_milan.hex"
MILAN_VCEK = VECTORS / "virtee-sev" / "vcek_milan.der"
DEBUG_REPORT = VECTORS / "go-sev-guest" / "attestation.bin"
DEBUG_VCEK = VECTORS / "go-sev-guest" / "vcek.testcer"
VLEK_REPORT = VECTORS / "trustee" / "test-vlek-report.bin"
VLEK = VECTORS / "trustee" / "test-vlek.der"

ALLOW_ALIAS = "[snp.platform_info]\nalias_check_complete = 'any'\n"


def arx(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "arx", "verify", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def allow_alias(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(ALLOW_ALIAS)
    return path


def test_accepts_with_explicit_policy(allow_alias: Path) -> None:
    result = arx(
        MILAN_HEX, "--certs", MILAN_VCEK, "--policy", allow_alias, "--at", "2025-06-01T00:00:00Z"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("accepted:")
    assert "VCEK (Milan) under AMD" in result.stdout
    assert (
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
        in result.stdout
    )


def test_baseline_rejects_with_one_line_on_stderr() -> None:
    result = arx(MILAN_HEX, "--certs", MILAN_VCEK, "--at", "2025-06-01")
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("rejected: snp.platform_info.alias_check_complete:")


def test_json_accepted(allow_alias: Path) -> None:
    result = arx(
        MILAN_HEX, "--certs", MILAN_VCEK, "--policy", allow_alias, "--json", "--at", "2025-06-01"
    )
    assert result.returncode == 0
    out = json.loads(result.stdout)
    assert out["verdict"] == "accepted"
    assert out["kind"] == "snp"
    assert out["debug"] is False
    assert len(bytes.fromhex(out["measurement"])) == 48
    assert len(bytes.fromhex(out["report_data"])) == 64


def test_json_rejected_debug() -> None:
    result = arx(DEBUG_REPORT, "--certs", DEBUG_VCEK, "--json", "--at", "2025-06-01")
    assert result.returncode == 1
    out = json.loads(result.stdout)
    assert out["verdict"] == "rejected"
    assert out["failed_check"] == "snp.policy.debug"
    assert out["debug"] is True
    assert out["reason"]
    assert out["report_data"].startswith("0102030405")


def test_report_data_is_compared_in_full(allow_alias: Path) -> None:
    report_data = (
        "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c64581"
        "0b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd"
    )
    ok = arx(
        MILAN_HEX,
        "--certs",
        MILAN_VCEK,
        "--policy",
        allow_alias,
        "--report-data",
        report_data,
        "--at",
        "2025-06-01",
    )
    assert ok.returncode == 0, ok.stderr
    last_byte_differs = report_data[:-2] + "fe"
    bad = arx(
        MILAN_HEX,
        "--certs",
        MILAN_VCEK,
        "--policy",
        allow_alias,
        "--report-data",
        last_byte_differs,
        "--json",
        "--at",
        "2025-06-01",
    )
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["failed_check"] == "snp.report_data"


def test_vlek_with_presented_chain_and_time(tmp_path: Path) -> None:
    chain = tmp_path / "chain.pem"
    # The host may send its ASVK; it is only compared with the pinned one.
    from cryptography.hazmat.primitives.serialization import Encoding

    from arx.attestation.snp import Product
    from arx.attestation.snp_verify import AmdTrust

    milan = AmdTrust.pinned().get(Product.MILAN)
    assert milan is not None
    assert milan.asvk is not None
    chain.write_bytes(milan.asvk.public_bytes(Encoding.PEM) + milan.ark.public_bytes(Encoding.PEM))
    policy = tmp_path / "p.toml"
    policy.write_text("[snp]\nvmpl = [0, 1]\nallow_provisional_firmware = true\n")
    ok = arx(
        VLEK_REPORT, "--certs", VLEK, chain, "--policy", policy, "--at", "2025-06-01T12:00:00+00:00"
    )
    assert ok.returncode == 0, ok.stderr
    expired = arx(VLEK_REPORT, "--certs", VLEK, "--policy", policy, "--json", "--at", "2026-06-01")
    assert json.loads(expired.stdout)["failed_check"] == "snp.cert.validity"


def test_wrong_vcek_and_truncated_report(tmp_path: Path) -> None:
    result = arx(DEBUG_REPORT, "--certs", MILAN_VCEK, "--json", "--at", "2025-06-01")
    assert result.returncode == 1
    assert json.loads(result.stdout)["failed_check"] == "snp.signature"
    short = tmp_path / "short.bin"
    short.write_bytes(DEBUG_REPORT.read_bytes()[:-1])
    result = arx(short, "--kind", "snp", "--certs", DEBUG_VCEK, "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["failed_check"] == "snp.parse.length"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("/nonexistent/report.bin", "--certs", str(MILAN_VCEK)), 125),
        ((str(MILAN_HEX),), 125),  # no VCEK given
        ((str(MILAN_HEX), "--certs", "/nonexistent.der"), 125),
        ((str(MILAN_HEX), "--certs", str(MILAN_VCEK), "--at", "yesterday"), 2),
        ((str(MILAN_HEX), "--kind", "sev"), 2),
    ],
)
def test_exit_codes_when_arx_cannot_run(args: tuple[str, ...], code: int) -> None:
    result = arx(*args)
    assert result.returncode == code, result.stderr
    assert result.stderr


def test_bad_policy_file_is_125(tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text("[snp]\nallow_debug = true\n")
    result = arx(MILAN_HEX, "--certs", MILAN_VCEK, "--policy", policy)
    assert result.returncode == 125
    assert "allow_debug" in result.stderr


def test_crl_input(tmp_path: Path, allow_alias: Path, sim: object) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    garbage = tmp_path / "garbage.crl"
    garbage.write_bytes(b"not a crl")
    result = arx(
        MILAN_HEX, "--certs", MILAN_VCEK, "--policy", allow_alias, "--crl", garbage, "--json"
    )
    assert result.returncode == 1
    assert json.loads(result.stdout)["failed_check"] == "snp.crl.parse"
    # A CRL from another issuer than AMD's ARK-Milan (here the simulator's ARK).
    foreign = tmp_path / "foreign.crl"
    foreign.write_bytes(sim.crl().public_bytes(Encoding.PEM))  # type: ignore[attr-defined]
    result = arx(
        MILAN_HEX,
        "--certs",
        MILAN_VCEK,
        "--policy",
        allow_alias,
        "--crl",
        foreign,
        "--json",
        "--at",
        "2025-06-01",
    )
    assert result.returncode == 1
    assert json.loads(result.stdout)["failed_check"] == "snp.crl.issuer"
