"""SEV-SNP verification throughput and cold-start time; prints one JSON object.

* ``warm_per_second``: ``verify_snp`` calls per second on one core, the report
  parsed and the VCEK chain already verified (cached per anchors and VCEK), so
  each call does the report signature, the bindings and the policy checks.
* ``parse_and_verify_per_second``: the same, including ``SnpReport.from_bytes``.
* ``uncached_per_second``: with the chain cache cleared before every call, so
  each call also checks the VCEK's RSA-PSS signature and extensions.
* ``ecdsa_p384_verify_per_second``: the bare ECDSA P-384 verification that
  bounds all of the above.
* ``cold_first_verification_ms``: a fresh Python process importing arx,
  loading the pinned roots, parsing and verifying one report.

Run: ``.venv/bin/python bench/verify.py`` (uses the real virtee/sev Milan vector).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import verify_intel  # bench/ is on sys.path when this file runs as a script

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors" / "snp" / "virtee-sev"
NOW = datetime(2025, 6, 1, tzinfo=UTC)
DURATION_S = 2.0

COLD = f"""
import time
t0 = time.perf_counter()
from datetime import datetime, UTC
from pathlib import Path
from arx.attestation.cmd_verify import decode_evidence
from arx.attestation.policy import ANY, SnpPolicy
from arx.attestation.snp import SnpReport, load_certificates
from arx.attestation.snp_verify import AmdTrust, verify_snp
t1 = time.perf_counter()
v = Path({str(VECTORS)!r})
report = SnpReport.from_bytes(decode_evidence((v / "report_milan.hex").read_bytes()))
vcek = load_certificates((v / "vcek_milan.der").read_bytes())[0]
flags = dict(SnpPolicy.baseline().platform_info); flags["alias_check_complete"] = ANY
policy = SnpPolicy.baseline().with_changes(platform_info=flags)
verify_snp(report, vcek=vcek, anchors=AmdTrust.pinned(), policy=policy,
           now=datetime(2025, 6, 1, tzinfo=UTC))
t2 = time.perf_counter()
print((t1 - t0) * 1000, (t2 - t1) * 1000)
"""


def rate(fn: Callable[[], object], duration: float = DURATION_S) -> float:
    for _ in range(50):
        fn()
    count = 0
    start = time.perf_counter()
    deadline = start + duration
    while True:
        for _ in range(100):
            fn()
        count += 100
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    sys.path.insert(0, str(ROOT / "src"))
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from arx.attestation.cmd_verify import decode_evidence
    from arx.attestation.policy import ANY, SnpPolicy
    from arx.attestation.snp import SnpReport, load_certificates
    from arx.attestation.snp_verify import AmdTrust, verify_snp

    raw = decode_evidence((VECTORS / "report_milan.hex").read_bytes())
    report = SnpReport.from_bytes(raw)
    vcek = load_certificates((VECTORS / "vcek_milan.der").read_bytes())[0]
    anchors = AmdTrust.pinned()
    flags = dict(SnpPolicy.baseline().platform_info)
    flags["alias_check_complete"] = ANY
    policy = SnpPolicy.baseline().with_changes(platform_info=flags)

    def warm() -> None:
        verify_snp(report, vcek=vcek, anchors=anchors, policy=policy, now=NOW)

    def parse_and_verify() -> None:
        verify_snp(SnpReport.from_bytes(raw), vcek=vcek, anchors=anchors, policy=policy, now=NOW)

    def uncached() -> None:
        anchors.clear_cache()
        verify_snp(report, vcek=vcek, anchors=anchors, policy=policy, now=NOW)

    key = ec.generate_private_key(ec.SECP384R1())
    public = key.public_key()
    message = raw[:0x2A0]
    signature = key.sign(message, ec.ECDSA(hashes.SHA384()))

    def bare_ecdsa() -> None:
        public.verify(signature, message, ec.ECDSA(hashes.SHA384()))

    cold_runs = []
    for _ in range(3):
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", COLD],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )
        wall = (time.perf_counter() - started) * 1000
        imports_ms, first_ms = (float(x) for x in out.stdout.split())
        cold_runs.append(
            {"process_wall_ms": wall, "imports_ms": imports_ms, "first_verification_ms": first_ms}
        )

    result = {
        "benchmark": "snp_verify",
        "vector": "virtee-sev/report_milan.hex",
        "target_per_second": 2000,
        "warm_per_second": round(rate(warm)),
        "parse_and_verify_per_second": round(rate(parse_and_verify)),
        "uncached_per_second": round(rate(uncached)),
        "ecdsa_p384_verify_per_second": round(rate(bare_ecdsa)),
        "cold_first_verification_ms": round(min(r["first_verification_ms"] for r in cold_runs), 1),
        "cold_imports_ms": round(min(r["imports_ms"] for r in cold_runs), 1),
        "cold_process_wall_ms": round(min(r["process_wall_ms"] for r in cold_runs), 1),
        "python": sys.version.split()[0],
        # The TDX figures come from bench/verify_intel.py, measured in this run.
        "tdx": {**verify_intel.warm(3.0), "cold": verify_intel.cold()},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
