"""Benchmark of TDX quote verification; prints one JSON object.

* ``warm_verifications_per_second``: full verification of the real tdx_quote (parse,
  signatures, QE binding, PCK chain, revocation, QE/TDX module identity, TCB level, baseline
  policy) on one core, with the collateral already parsed and verified once.
* ``cold``: a fresh Python process that imports the verifier and verifies the quote once
  including its collateral, timed inside that process (import, then first verification).

Run: ``.venv/bin/python bench/verify_intel.py [--seconds N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUOTE = ROOT / "tests/vectors/tdx/dcap-qvl/tdx_quote"
COLLATERAL = ROOT / "tests/vectors/tdx/dcap-qvl/tdx_quote_collateral.json"
NOW = datetime(2025, 7, 1, tzinfo=UTC)

COLD_SNIPPET = f"""
import json, time
t0 = time.perf_counter()
from datetime import datetime, UTC
from arx.attestation.intel import verify_quote_file
t1 = time.perf_counter()
quote = open({str(QUOTE)!r}, "rb").read()
coll = open({str(COLLATERAL)!r}, "rb").read()
t2 = time.perf_counter()
ev = verify_quote_file("tdx", quote, coll, None, datetime(2025, 7, 1, tzinfo=UTC))
t3 = time.perf_counter()
ev2 = verify_quote_file("tdx", quote, coll, None, datetime(2025, 7, 1, tzinfo=UTC))
t4 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "first_verification_s": t3 - t2,
                   "second_verification_with_collateral_s": t4 - t3,
                   "tcb_status": ev.tcb_status}}))
"""


def warm(seconds: float) -> dict[str, float | int]:
    from arx.attestation.intel import IntelPolicy, verify_quote
    from arx.attestation.intel_collateral import CollateralBundle, verify_collateral

    quote = QUOTE.read_bytes()
    t0 = time.perf_counter()
    collateral = verify_collateral("tdx", CollateralBundle.from_bytes(COLLATERAL.read_bytes()), NOW)
    collateral_s = time.perf_counter() - t0
    policy = IntelPolicy.baseline("tdx")
    assert verify_quote("tdx", quote, collateral, policy, NOW).tcb_status == "UpToDate"
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        verify_quote("tdx", quote, collateral, policy, NOW)
        count += 1
    elapsed = time.perf_counter() - start
    return {
        "warm_verifications_per_second": round(count / elapsed, 1),
        "warm_mean_ms": round(1000 * elapsed / count, 3),
        "warm_iterations": count,
        "collateral_parse_and_verify_ms": round(1000 * collateral_s, 3),
    }


def cold() -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run(
        [sys.executable, "-c", COLD_SNIPPET], capture_output=True, text=True, check=True, env=env
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    report = {
        "benchmark": "tdx quote verification (tests/vectors/tdx/dcap-qvl/tdx_quote)",
        "python": sys.version.split()[0],
        **warm(args.seconds),
        "cold": cold(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
