"""End to end through real processes: arx CLI -> keepmgr -> keepldr -> wasmldr on loopback."""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
import uuid

import pytest

from arx.sim import CHAIN_FILES
from tests.conftest import (
    EXAMPLES,
    WORKLOADS,
    Keepmgr,
    arx,
    arx_popen,
    assert_nothing_left,
    install_sim_chain,
    marked_env,
    marked_pids,
    wait_no_marked,
)


def deploy(mgr: Keepmgr, workload: str, *args: str, flags: tuple[str, ...] = ("--insecure",)):
    return arx(
        "deploy", workload, "--host", mgr.url, "--backend", "nil", *flags, "--", *args, env=mgr.env
    )


def keeps(mgr: Keepmgr) -> list[dict[str, object]]:
    listed = arx("keeps", "list", "--host", mgr.url, "--json", env=mgr.env)
    assert listed.returncode == 0, listed.stderr
    result: list[dict[str, object]] = json.loads(listed.stdout)
    return result


def pattern(n: int) -> bytes:
    return bytes((i * 31) % 251 for i in range(n))


def test_hello_output_and_exit_code(keepmgr: Keepmgr) -> None:
    run = deploy(keepmgr, str(EXAMPLES / "hello" / "hello.wasm"), "a", "b")
    assert run.returncode == 0, run.stderr
    assert run.stdout == b"Hello from a Keep!\nargs: a b\n"
    assert run.stderr == b""


def test_non_zero_exit_code_and_stderr_come_back_exactly(keepmgr: Keepmgr) -> None:
    run = deploy(keepmgr, str(WORKLOADS / "exitcode.wasm"), "7", "x", "y z")
    assert run.returncode == 7
    assert run.stdout == b"x y z\n"
    assert run.stderr == b"to stderr\n"


def test_environment_reaches_the_workload(keepmgr: Keepmgr) -> None:
    run = arx(
        "deploy", str(WORKLOADS / "env.wasm"), "--host", keepmgr.url, "--backend", "nil",
        "--insecure", "-e", "A=1", "-e", "B=two words", env=keepmgr.env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout == b"A=1\nB=two words\n"


def test_trap_exits_134_with_one_clear_line(keepmgr: Keepmgr) -> None:
    run = deploy(keepmgr, str(WORKLOADS / "trap.wasm"))
    assert run.returncode == 134
    assert run.stdout == b"before trap\n"
    assert run.stderr.startswith(b"arx: the workload trapped: unreachable")


def test_nil_is_refused_without_insecure_and_nothing_is_created(keepmgr: Keepmgr) -> None:
    run = deploy(keepmgr, str(EXAMPLES / "hello" / "hello.wasm"), flags=())
    assert run.returncode == 125
    assert run.stdout == b""
    lines = run.stderr.decode().splitlines()
    assert len(lines) == 1
    assert "nil" in lines[0]
    assert "--insecure" in lines[0]
    assert keeps(keepmgr) == []


def test_invalid_module_is_refused_and_leaves_nothing(keepmgr: Keepmgr, tmp_path) -> None:
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"\0asm\x01\0\0\0\x01\xff")
    run = deploy(keepmgr, str(bad))
    assert run.returncode == 125
    assert run.stderr.decode().startswith("arx: the module is not valid WebAssembly")
    assert keeps(keepmgr) == []
    assert marked_pids(keepmgr.marker) == [keepmgr.process.pid]


def test_module_without_start_is_refused(keepmgr: Keepmgr, tmp_path) -> None:
    empty = tmp_path / "empty.wasm"
    empty.write_bytes(b"\0asm\x01\0\0\0")
    run = deploy(keepmgr, str(empty))
    assert run.returncode == 125
    assert b"not a WASI command" in run.stderr


def test_unknown_backend(keepmgr: Keepmgr) -> None:
    run = arx(
        "deploy", str(EXAMPLES / "hello" / "hello.wasm"), "--host", keepmgr.url,
        "--backend", "quantum", env=keepmgr.env,
    )  # fmt: skip
    assert run.returncode == 125
    assert run.stderr.decode().strip() == (
        "arx: unknown backend 'quantum' (arx knows nil, sim, snp, tdx, sgx)"
    )


def test_unavailable_hardware_backend(keepmgr: Keepmgr) -> None:
    run = arx(
        "deploy", str(EXAMPLES / "hello" / "hello.wasm"), "--host", keepmgr.url,
        "--backend", "snp", env=keepmgr.env,
    )  # fmt: skip
    assert run.returncode == 125
    assert b"snp backend is not available on this host" in run.stderr


def test_unreachable_host() -> None:
    run = arx(
        "deploy", str(EXAMPLES / "hello" / "hello.wasm"), "--host", "http://127.0.0.1:9",
        "--backend", "nil", "--insecure",
    )  # fmt: skip
    assert run.returncode == 125
    assert run.stderr.decode().startswith("arx: cannot reach keepmgr at http://127.0.0.1:9")


def test_two_keeps_at_once_do_not_mix_output(keepmgr: Keepmgr) -> None:
    sizes = {"a": 3, "b": 5}
    procs = {
        name: arx_popen(
            "deploy",
            str(WORKLOADS / "bigout.wasm"),
            "--host",
            keepmgr.url,
            "--backend",
            "nil",
            "--insecure",
            "--",
            str(mib),
            "both",
            env=keepmgr.env,
        )
        for name, mib in sizes.items()
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        expected = hashlib.sha256(pattern(sizes[name] << 20)).hexdigest()
        assert proc.returncode == 0, err[-500:]
        assert hashlib.sha256(out).hexdigest() == expected
        assert hashlib.sha256(err).hexdigest() == expected


def test_output_streams_while_the_workload_runs(keepmgr: Keepmgr) -> None:
    proc = arx_popen(
        "deploy", str(WORKLOADS / "slow.wasm"), "--host", keepmgr.url, "--backend", "nil",
        "--insecure", "--", "3", "700", env=keepmgr.env,
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline()
    first_at = time.monotonic()
    rest, _err = proc.communicate(timeout=60)
    done_at = time.monotonic()
    assert first == b"tick 1\n"
    assert rest == b"tick 2\ntick 3\n"
    # Two more sleeps of 0.7 s happen after the first line arrived.
    assert done_at - first_at > 1.0
    assert proc.returncode == 0


def _wait_state(mgr: Keepmgr, state: str, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for keep in keeps(mgr):
            if keep["state"] == state:
                return keep
        time.sleep(0.1)
    raise AssertionError(f"no Keep reached {state}")


def test_deleting_a_keep_mid_run_stops_it(keepmgr: Keepmgr) -> None:
    proc = arx_popen(
        "deploy", str(WORKLOADS / "spin.wasm"), "--host", keepmgr.url, "--backend", "nil",
        "--insecure", env=keepmgr.env,
    )  # fmt: skip
    keep = _wait_state(keepmgr, "running")
    removed = arx("keeps", "rm", str(keep["id"]), "--host", keepmgr.url, env=keepmgr.env)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.decode() == f"deleted {keep['id']}\n"
    out, err = proc.communicate(timeout=30)
    assert out == b"spinning\n"
    assert proc.returncode == 125
    assert err.decode().startswith("arx: the connection to the Keep broke") or b"closed" in err
    assert keeps(keepmgr) == []
    assert wait_no_marked(keepmgr.marker + "-none") == []
    # Only keepmgr and the finished deploy client carried the marker.
    deadline = time.monotonic() + 10
    while marked_pids(keepmgr.marker) != [keepmgr.process.pid] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marked_pids(keepmgr.marker) == [keepmgr.process.pid]


def test_sigterm_to_keepmgr_stops_every_keep(tmp_path) -> None:
    from tests.conftest import start_keepmgr

    mgr = start_keepmgr(tmp_path)
    clients = [
        arx_popen(
            "deploy",
            str(WORKLOADS / "spin.wasm"),
            "--host",
            mgr.url,
            "--backend",
            "nil",
            "--insecure",
            env=mgr.env,
        )
        for _ in range(2)
    ]
    deadline = time.monotonic() + 30
    while sum(k["state"] == "running" for k in keeps(mgr)) < 2:
        assert time.monotonic() < deadline, "the Keeps did not start"
        time.sleep(0.1)
    before = marked_pids(mgr.marker)
    # keepmgr, 2 clients, and 2 x (keepldr + wasmldr), plus unshare in
    # between where wasmldr runs in namespaces of its own.
    assert len(before) in (7, 9)
    assert mgr.stop() == 0
    for client in clients:
        client.communicate(timeout=30)
        assert client.returncode == 125
    assert wait_no_marked(mgr.marker) == []


def test_sigkill_to_keepmgr_leaves_no_orphans(tmp_path) -> None:
    from tests.conftest import start_keepmgr

    mgr = start_keepmgr(tmp_path)
    client = arx_popen(
        "deploy", str(WORKLOADS / "spin.wasm"), "--host", mgr.url, "--backend", "nil",
        "--insecure", env=mgr.env,
    )  # fmt: skip
    running = _wait_state(mgr, "running")
    mgr.process.send_signal(signal.SIGKILL)
    assert mgr.stop() == -signal.SIGKILL
    client.communicate(timeout=30)
    assert wait_no_marked(mgr.marker) == []
    # Restarted on the same state, keepmgr still knows the Keep, reports it
    # failed, and removes the cgroups the killed keepmgr could not.
    again = start_keepmgr(tmp_path, state_dir=mgr.state_dir, marker=mgr.marker)
    try:
        (keep,) = keeps(again)
        assert keep["id"] == running["id"]
        assert keep["state"] == "failed"
        assert keep["exit"] == {
            "status": "failed",
            "code": None,
            "message": "keepmgr restarted while the Keep was live; the Keep was stopped",
        }
    finally:
        assert again.stop() == 0
    assert_nothing_left(again)


def test_keeps_show_and_rm_unknown_id(keepmgr: Keepmgr) -> None:
    for action in ("show", "rm"):
        run = arx("keeps", action, "k-" + "0" * 32, "--host", keepmgr.url, env=keepmgr.env)
        assert run.returncode == 125
        assert run.stderr.decode() == f"arx: no Keep with id 'k-{'0' * 32}'\n"


def test_platform_info_json(keepmgr: Keepmgr) -> None:
    run = arx("platform", "info", "--host", keepmgr.url, "--json", env=keepmgr.env)
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    by_name = {b["name"]: b for b in info["backends"]}
    assert by_name["nil"] == {
        "name": "nil",
        "available": True,
        "secure": False,
        "description": by_name["nil"]["description"],
    }
    assert by_name["snp"]["available"] is False


def test_workload_larger_than_the_cap(tmp_path) -> None:
    from tests.conftest import start_keepmgr

    mgr = start_keepmgr(tmp_path, "--max-workload-mib", "1")
    try:
        big = tmp_path / "big.wasm"
        hello = (EXAMPLES / "hello" / "hello.wasm").read_bytes()
        # A custom section (id 0) padded to 1.5 MiB keeps the module valid.
        payload = b"\x04pads" + b"\0" * (3 << 19)
        size = len(payload)
        leb = bytearray()
        while True:
            byte, size = size & 0x7F, size >> 7
            leb.append(byte | (0x80 if size else 0))
            if not size:
                break
        big.write_bytes(hello + b"\x00" + bytes(leb) + payload)
        run = deploy(mgr, str(big))
        assert run.returncode == 125
        assert b"this Keep accepts at most 1048576" in run.stderr
        assert keeps(mgr) == []
    finally:
        assert mgr.stop() == 0
        assert wait_no_marked(mgr.marker) == []


@pytest.mark.parametrize("backend", ["sim", "nil"])
def test_arx_run_end_to_end_leaves_nothing(tmp_path, tmp_path_factory, backend: str) -> None:
    marker = uuid.uuid4().hex
    home = tmp_path_factory.mktemp("home")
    install_sim_chain(home / "sim")
    env = marked_env(marker, home)
    env["TMPDIR"] = str(tmp_path)
    run = arx(
        "run", "--backend", backend, str(WORKLOADS / "exitcode.wasm"), "--", "3", "hello", env=env
    )
    assert run.returncode == 3, run.stderr
    assert run.stdout == b"hello\n"
    assert run.stderr == b"to stderr\n"
    assert wait_no_marked(marker) == []
    assert list(tmp_path.iterdir()) == []
    # arx run trusts the local chain for that run only: nothing in the trust store.
    assert not (home / "trust").exists()


def test_arx_run_makes_the_sim_chain_on_first_use(tmp_path_factory) -> None:
    marker = uuid.uuid4().hex
    home = tmp_path_factory.mktemp("fresh-home")
    env = marked_env(marker, home)
    run = arx("run", str(EXAMPLES / "hello" / "hello.wasm"), env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout == b"Hello from a Keep!\n"
    assert run.stderr == b""
    assert sorted(p.name for p in (home / "sim").iterdir()) == sorted(
        [*CHAIN_FILES, "measurement-cache.json"]
    )
    assert (home / "sim" / "vcek.key").stat().st_mode & 0o077 == 0
    assert wait_no_marked(marker) == []


def test_arx_run_invalid_module(tmp_path, tmp_path_factory) -> None:
    marker = uuid.uuid4().hex
    home = tmp_path_factory.mktemp("home")
    install_sim_chain(home / "sim")
    env = marked_env(marker, home)
    env["TMPDIR"] = str(tmp_path)
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"not wasm at all")
    run = arx("run", str(bad), env=env)
    assert run.returncode == 125
    assert len(run.stderr.splitlines()) == 1
    assert wait_no_marked(marker) == []
    assert [p.name for p in tmp_path.iterdir()] == ["bad.wasm"]


def test_keepmgr_serves_others_while_a_keep_runs(keepmgr: Keepmgr) -> None:
    spinner = arx_popen(
        "deploy", str(WORKLOADS / "spin.wasm"), "--host", keepmgr.url, "--backend", "nil",
        "--insecure", env=keepmgr.env,
    )  # fmt: skip
    keep = _wait_state(keepmgr, "running")
    run = deploy(keepmgr, str(EXAMPLES / "hello" / "hello.wasm"))
    assert run.returncode == 0
    arx("keeps", "rm", str(keep["id"]), "--host", keepmgr.url, env=keepmgr.env)
    spinner.communicate(timeout=30)


def test_sigterm_keepmgr_exits_zero_when_idle(tmp_path) -> None:
    from tests.conftest import start_keepmgr

    mgr = start_keepmgr(tmp_path)
    threading.Event().wait(0.1)
    assert mgr.stop() == 0
    assert wait_no_marked(mgr.marker) == []


@pytest.mark.parametrize("suite", ["x25519", "mlkem768-x25519"])
def test_both_hpke_suites(keepmgr: Keepmgr, suite: str) -> None:
    run = arx(
        "deploy", str(EXAMPLES / "hello" / "hello.wasm"), "--host", keepmgr.url,
        "--backend", "nil", "--insecure", "--hpke-suite", suite, env=keepmgr.env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout == b"Hello from a Keep!\n"


def test_client_leaving_mid_run_ends_the_keep(keepmgr: Keepmgr) -> None:
    client = arx_popen(
        "deploy", str(WORKLOADS / "spin.wasm"), "--host", keepmgr.url, "--backend", "nil",
        "--insecure", env=keepmgr.env,
    )  # fmt: skip
    keep = _wait_state(keepmgr, "running")
    client.kill()
    client.communicate(timeout=30)
    deadline = time.monotonic() + 20
    while True:
        (info,) = [k for k in keeps(keepmgr) if k["id"] == keep["id"]]
        if info["state"] != "running":
            break
        assert time.monotonic() < deadline, "the Keep kept running without its client"
        time.sleep(0.1)
    assert info["state"] == "exited"
    assert info["exit"] == {
        "status": "killed",
        "code": None,
        "message": "the client disconnected while the workload ran",
    }
    assert wait_no_marked(keepmgr.marker + "-none") == []
    deadline = time.monotonic() + 10
    while marked_pids(keepmgr.marker) != [keepmgr.process.pid]:
        assert time.monotonic() < deadline, marked_pids(keepmgr.marker)
        time.sleep(0.05)
