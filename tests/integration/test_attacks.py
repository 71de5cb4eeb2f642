"""A malicious host tries each attack; the client must abort before any workload byte leaves it.

The host is a real process (tests/malicious_host.py) in front of a real
keepmgr, holding the simulated chain's keys as a host running sim Keeps does.
For each attack the test checks the exit code, that the error names the check
that stopped it, and that the attacker's own TLS server received nothing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ROOT, Keepmgr, arx


@dataclass
class Attacker:
    url: str
    process: subprocess.Popen[bytes]
    report: Path

    def stop(self) -> dict[str, int]:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(20)
        if self.process.stdout:
            self.process.stdout.close()
        result: dict[str, int] = json.loads(self.report.read_text())
        return result


def start_attacker(mgr: Keepmgr, attack: str, tmp_path: Path) -> Attacker:
    report = tmp_path / f"attacker-{attack}.json"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "malicious_host.py"), "--upstream", mgr.url,
         "--attack", attack, "--report", str(report)],
        stdout=subprocess.PIPE, env=mgr.env,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    assert line.startswith("malicious host listening on "), line
    return Attacker(line.split()[-1], process, report)


@pytest.fixture
def trusted(keepmgr: Keepmgr) -> Keepmgr:
    assert arx("trust", "sim", env=keepmgr.env).returncode == 0
    return keepmgr


# attack, backend the client asks for, what the error must name
ATTACKS = [
    ("swap_hpke_key", "sim", "snp.report_data"),
    ("replay_evidence", "sim", "snp.report_data"),
    ("other_keep_evidence", "sim", "snp.report_data"),
    ("relabel_sim_as_snp", "snp", "snp.cert"),
    ("downgrade_to_nil", "sim", "attestation.evidence_kind"),
    ("tamper_sealed_key", "sim", "the sealed key does not open"),
    ("redirect_tls", "sim", "does not hold the key provisioned to the attested Keep"),
    ("truncate_evidence", "sim", "snp.parse.length"),
    ("pad_evidence", "sim", "snp.parse.length"),
    ("debug_policy", "sim", "snp.policy.debug"),
    ("wrong_measurement", "sim", "snp.measurement"),
]


@pytest.mark.parametrize(("attack", "backend", "named"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attack_fails_before_any_workload_byte_leaves(
    trusted: Keepmgr, tmp_path: Path, attack: str, backend: str, named: str
) -> None:
    measurement = arx("measure", env=trusted.env).stdout.decode().strip()
    policy = tmp_path / "policy.toml"
    policy.write_text(
        f'[deploy]\nbackends = ["sim", "snp"]\n[snp]\nmeasurement = ["{measurement}"]\n'
    )
    attacker = start_attacker(trusted, attack, tmp_path)
    try:
        run = arx(
            "deploy", str(EXAMPLES / "hello" / "hello.wasm"), "--host", attacker.url,
            "--backend", backend, "--policy", str(policy), env=trusted.env,
        )  # fmt: skip
    finally:
        seen = attacker.stop()
    assert run.returncode == 125, run.stderr
    assert run.stdout == b""
    lines = run.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert named in lines[0]
    assert seen["workload_bytes"] == 0


def test_the_proxy_itself_forwards_faithfully(trusted: Keepmgr, tmp_path: Path) -> None:
    """Without an attack the deployment works through the proxy: the tests above
    fail because of the attacks, not because of the proxy."""
    attacker = start_attacker(trusted, "none", tmp_path)
    try:
        run = arx(
            "deploy", str(EXAMPLES / "hello" / "hello.wasm"), "--host", attacker.url,
            "--backend", "sim", env=trusted.env,
        )  # fmt: skip
    finally:
        seen = attacker.stop()
    assert run.returncode == 0, run.stderr
    assert run.stdout == b"Hello from a Keep!\n"
    assert seen == {"workload_bytes": 0, "tls_connections": 0}
