"""A load driver for keepmgr: many concurrent clients, each deploying in turn.

Used by the load test (tests/integration/test_keepmgr_load.py) and by
bench/keepmgr.py. Clients are threads of this process, each with its own
API client; every deployment runs ``tests/workloads/exitcode.wasm`` with an
exit code and output of its own, so that a mixed-up or truncated result
cannot pass.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from arx.client.api import KeepmgrClient
from arx.client.deploy import DeployOptions, deploy
from arx.client.workload import Upload, WorkloadConfig
from arx.errors import ArxError

EXITCODE = Path(__file__).resolve().parent.parent / "workloads" / "exitcode.wasm"
# Exit codes the deployments cycle through (exitcode.wasm exits with its first argument).
CODES = 7


@dataclass
class LoadResult:
    deployments: int = 0
    correct: int = 0
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def run_load(url: str, clients: int, per_client: int, *, token: str | None = None) -> LoadResult:
    result = LoadResult()
    lock = threading.Lock()

    def client_thread(n: int) -> None:
        api = KeepmgrClient(url, token=token)
        for i in range(per_client):
            code = (n * per_client + i) % CODES
            words = (f"client{n}", f"deployment{i}", "x" * (i % 5))
            options = DeployOptions(backend="nil", allow_insecure=True, hpke_suite="x25519")
            upload = Upload(EXITCODE, "exitcode.wasm", WorkloadConfig(args=(str(code), *words)))
            out: dict[str, bytes] = {"stdout": b"", "stderr": b""}

            def sink(stream: str, data: bytes, out: dict[str, bytes] = out) -> None:
                out[stream] += data

            start = time.perf_counter()
            try:
                outcome = deploy(api, upload, options, on_output=sink)
            except ArxError as exc:
                with lock:
                    result.deployments += 1
                    result.errors.append(f"client {n} deployment {i}: {exc.message}")
                continue
            elapsed = time.perf_counter() - start
            ok = (
                outcome.exit.status == "exited"
                and outcome.exit.code == code
                and out["stdout"] == (" ".join(words) + "\n").encode()
                and out["stderr"] == b"to stderr\n"
            )
            with lock:
                result.deployments += 1
                result.latencies_s.append(elapsed)
                if ok:
                    result.correct += 1
                else:
                    result.errors.append(f"client {n} deployment {i}: {outcome.exit} {out}")

    threads = [threading.Thread(target=client_thread, args=(n,)) for n in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.wall_s = time.perf_counter() - start
    return result
