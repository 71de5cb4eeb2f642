"""End-to-end deployment time: ``arx run hello.wasm`` (nil and sim) against bare wasmtime-py.

The sim runs use the user's simulated chain (made on the first run, before
timing starts).

Each sample is a fresh process, timed from spawn to exit, so both sides pay
for Python start-up and imports. The two are interleaved in one run so that
machine noise affects both alike. Prints one JSON object.

    python bench/deploy.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "hello" / "hello.wasm"

# The baseline: what a user would otherwise write to run the module with
# wasmtime-py directly, output to a file as WASM-NOTES recommends.
BARE = """
import sys, tempfile, os
from wasmtime import Engine, Linker, Module, Store, WasiConfig
engine = Engine()
module = Module.from_file(engine, sys.argv[1])
linker = Linker(engine)
linker.define_wasi()
store = Store(engine)
wasi = WasiConfig()
wasi.argv = ["hello.wasm"]
fd, path = tempfile.mkstemp()
os.close(fd)
wasi.stdout_file = path
store.set_wasi(wasi)
linker.instantiate(store, module).exports(store)["_start"](store)
del store
sys.stdout.buffer.write(open(path, "rb").read())
os.unlink(path)
"""


def timed(cmd: list[str], expected: bytes) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or proc.stdout != expected:
        raise SystemExit(f"benchmark command failed: {cmd}: {proc.stderr.decode()[-500:]}")
    return elapsed


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {
        "median_s": round(statistics.median(ordered), 4),
        "p90_s": round(p90, 4),
        "min_s": round(ordered[0], 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    expected = b"Hello from a Keep!\n"
    commands = {
        "bare_wasmtime_py": [sys.executable, "-c", BARE, str(HELLO)],
        "arx_run_nil": [sys.executable, "-m", "arx", "run", "--backend", "nil", str(HELLO)],
        "arx_run_sim": [sys.executable, "-m", "arx", "run", "--backend", "sim", str(HELLO)],
    }
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for cmd in commands.values():
        timed(cmd, expected)  # warm the page cache and bytecode caches
    for _ in range(args.runs):
        for name, cmd in commands.items():
            samples[name].append(timed(cmd, expected))
    results = {name: summary(values) for name, values in samples.items()}
    base = results["bare_wasmtime_py"]["median_s"]
    report = {
        "benchmark": "deploy",
        "workload": "examples/hello/hello.wasm",
        "runs": args.runs,
        "results": results,
        "ratio_median": {
            name: round(r["median_s"] / base, 2)
            for name, r in results.items()
            if name != "bare_wasmtime_py"
        },
        "ratio_p90": {
            name: round(r["p90_s"] / results["bare_wasmtime_py"]["p90_s"], 2)
            for name, r in results.items()
            if name != "bare_wasmtime_py"
        },
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
