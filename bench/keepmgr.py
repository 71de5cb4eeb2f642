"""keepmgr under load: idle Keeps held at once, API latency, deployments per second.

Starts its own keepmgr on loopback (no authentication, its own cgroup
parent), then:

1. idle Keeps: creates Keeps (8 at a time) until ``--idle`` are live or the
   host refuses one, and measures what each costs: the proportional set size
   (PSS, shared pages split fairly) of its keepldr and wasmldr, and its memory
   cgroup's usage where there is one;
2. API latency: ``--api-clients`` concurrent clients on keep-alive
   connections ask for one of those Keeps (``GET /v1/keeps/ID``) for
   ``--api-seconds``; p50 and p99 of the round trip;
3. deployments: ``--clients`` x ``--deployments`` full deployments
   (tests/integration/load.py), each checked for complete output and exit
   code; deployments per second over the wall time.

Prints one JSON object. Loopback only; everything it starts is stopped.

    python bench/keepmgr.py [--idle 200] [--clients 50] [--deployments 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.load import run_load  # noqa: E402

from arx.client.api import KeepmgrClient  # noqa: E402
from arx.errors import ArxError  # noqa: E402

CGROUP_ROOT = Path("/sys/fs/cgroup")
CREATE_PARALLEL = 8
# Think time between one client's requests in the paced latency run: 50
# clients then offer about 1,000 requests per second, a busy host's API
# load, rather than saturating keepmgr as the unpaced run does.
API_PACE = 0.05


def start_keepmgr(state: Path, parent: str, max_keeps: int) -> tuple[subprocess.Popen[bytes], str]:
    env = dict(os.environ, TMPDIR=str(state.parent))
    proc = subprocess.Popen(
        [sys.executable, "-m", "arx", "keepmgr", "--listen", "127.0.0.1:0", "--auth", "none",
         "--state-dir", str(state), "--cgroup-parent", parent, "--max-keeps", str(max_keeps),
         "--max-keeps-per-client", str(max_keeps), "--provision-timeout", "3600"],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("arx keepmgr listening on "):
        proc.kill()
        raise SystemExit(f"keepmgr did not start: {line!r}")
    return proc, line.split()[-1]


def pss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def idle_keeps(
    url: str, target: int, keepmgr_pid: int, parent: str
) -> tuple[dict[str, object], list[str]]:
    client = KeepmgrClient(url)
    ids: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()
    start = time.perf_counter()

    def worker() -> None:
        while True:
            with lock:
                if len(ids) >= target or refused:
                    return
            try:
                keep = client.create("nil")
            except ArxError as exc:
                with lock:
                    refused.append(exc.message)
                return
            with lock:
                ids.append(keep.id)

    threads = [threading.Thread(target=worker) for _ in range(CREATE_PARALLEL)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    time.sleep(2)  # let start-up garbage settle before measuring
    pids = descendants(keepmgr_pid)
    total_pss = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total_pss += pss_bytes(pid)
    cgroup_usage = []
    for keep_id in ids:
        usage = CGROUP_ROOT / "memory" / parent / keep_id / "memory.usage_in_bytes"
        with contextlib.suppress(OSError):
            cgroup_usage.append(int(usage.read_text()))
    live = sum(1 for k in client.list().keeps if k.state == "ready")
    mib = 1 << 20
    report: dict[str, object] = {
        "target": target,
        "held": live,
        "refused": refused[:1],
        "create_seconds": round(elapsed, 1),
        "processes": len(pids),
        "pss_per_keep_mib": round(total_pss / max(1, len(ids)) / mib, 1),
        "cgroup_usage_per_keep_mib": round(statistics.mean(cgroup_usage) / mib, 1)
        if cgroup_usage
        else None,
        "keepmgr_pss_mib": round(pss_bytes(keepmgr_pid) / mib, 1),
    }
    return report, ids


def api_latency(
    url: str, keep_ids: list[str], clients: int, seconds: float, pace: float = 0.0
) -> dict[str, object]:
    """Closed loop: each client sends its next request when the last is answered,
    after ``pace`` seconds of think time (0: as fast as keepmgr answers)."""
    import aiohttp

    samples: list[float] = []
    errors = 0

    async def one(n: int, session: aiohttp.ClientSession, stop: float) -> None:
        nonlocal errors
        i = n
        while time.perf_counter() < stop:
            path = (
                f"{url}/v1/keeps/{keep_ids[i % len(keep_ids)]}"
                if keep_ids
                else f"{url}/v1/platform"
            )
            i += clients
            start = time.perf_counter()
            async with session.get(path) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
            samples.append(time.perf_counter() - start)
            if pace:
                # Jittered, so that the clients do not fall into step and
                # arrive as one burst.
                await asyncio.sleep(pace * random.uniform(0.5, 1.5))

    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector) as session:
            stop = time.perf_counter() + seconds
            await asyncio.gather(*(one(n, session, stop) for n in range(clients)))

    asyncio.run(main())
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)

    return {
        "clients": clients,
        "think_time_ms": pace * 1000,
        "requests": len(samples),
        "errors": errors,
        "requests_per_s": round(len(samples) / seconds, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--idle", type=int, default=200, help="idle Keeps to hold at once")
    parser.add_argument("--api-clients", type=int, default=50)
    parser.add_argument("--api-seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--deployments", type=int, default=20, help="per client")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="arx-bench-"))
    parent = f"arx-bench-{uuid.uuid4().hex[:12]}"
    proc, url = start_keepmgr(work / "state", parent, max(args.idle, args.clients) + 8)
    report: dict[str, object] = {"benchmark": "keepmgr", "cpus": os.cpu_count()}
    try:
        idle, ids = idle_keeps(url, args.idle, proc.pid, parent)
        report["idle_keeps"] = idle
        report["api_latency_with_idle_keeps"] = api_latency(
            url, ids, args.api_clients, args.api_seconds
        )
        report["api_latency_with_idle_keeps_paced"] = api_latency(
            url, ids, args.api_clients, args.api_seconds, pace=API_PACE
        )
        client = KeepmgrClient(url)
        for keep_id in ids:
            client.delete(keep_id)
        report["api_latency_no_keeps"] = api_latency(url, [], args.api_clients, args.api_seconds)
        if args.deployments <= 0:
            print(json.dumps(report, indent=2))
            return 0
        load = run_load(url, args.clients, args.deployments)
        lat = sorted(load.latencies_s)
        report["deployments"] = {
            "clients": args.clients,
            "per_client": args.deployments,
            "total": load.deployments,
            "correct": load.correct,
            "errors": load.errors[:3],
            "wall_s": round(load.wall_s, 1),
            "per_second": round(load.deployments / load.wall_s, 2),
            "latency_p50_s": round(lat[len(lat) // 2], 3) if lat else None,
            "latency_p99_s": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 3)
            if lat
            else None,
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        if proc.stdout:
            proc.stdout.close()
        for controller in ("memory", "pids"):
            with contextlib.suppress(OSError):
                (CGROUP_ROOT / controller / parent).rmdir()
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
