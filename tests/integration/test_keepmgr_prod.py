"""keepmgr in production: quotas, confinement, authentication, TLS, state, faults.

Real keepmgr, keepldr and wasmldr processes on loopback. After every test the
fixtures check that no process, cgroup or temporary file is left behind
(``assert_nothing_left`` and the autouse ``no_cgroup_left_behind``).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from arx import crypto
from arx.client.api import KeepmgrClient, parse_fingerprint
from arx.client.workload import Upload, WorkloadConfig
from arx.errors import PinMismatchError, RemoteError
from arx.protocol.messages import (
    AttestRequest,
    CreateKeepRequest,
    ErrorBody,
    KeepList,
    ProvisionRequest,
)
from tests.conftest import (
    EXAMPLES,
    ROOT,
    WORKLOADS,
    Keepmgr,
    arx,
    arx_popen,
    assert_nothing_left,
    marked_pids,
    start_keepmgr,
)

HELLO = str(EXAMPLES / "hello" / "hello.wasm")
SPIN = str(WORKLOADS / "spin.wasm")


@pytest.fixture
def mgr_factory(tmp_path: Path) -> Iterator[list[Keepmgr]]:
    """keepmgrs a test starts itself; each is stopped and checked afterwards."""
    started: list[Keepmgr] = []
    yield started
    for mgr in started:
        code = mgr.stop()
        assert_nothing_left(mgr)
        assert code in (0, -signal.SIGKILL), f"keepmgr exited with {code}"


def start(started: list[Keepmgr], tmp_path: Path, *extra: str, **kw: object) -> Keepmgr:
    mgr = start_keepmgr(tmp_path, *extra, **kw)  # type: ignore[arg-type]
    started.append(mgr)
    return mgr


def request(
    url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    token: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Content-Type": "application/cbor"} if body is not None else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def create_raw(url: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    return request(
        url, "POST", "/v1/keeps", CreateKeepRequest(backend="nil").to_cbor(), token=token
    )


def token(mgr_state: Path, name: str, *, operator: bool = False) -> tuple[str, str]:
    """Issues a token with the CLI; returns (token, token id)."""
    run = arx(
        "keepmgr", "token", "create", "--name", name, "--state-dir", str(mgr_state),
        *(["--operator"] if operator else []),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    value = run.stdout.decode().strip()
    return value, value.split("_")[1]


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def running_spin(mgr: Keepmgr) -> tuple[subprocess.Popen[bytes], str]:
    """`arx deploy` of a workload that never ends, once its Keep runs: (deployer, Keep id)."""
    deployer = arx_popen("deploy", SPIN, "--host", mgr.url, "--backend", "nil", "--insecure",
                         env=mgr.env)  # fmt: skip
    client = KeepmgrClient(mgr.url)
    (keep_id,) = wait_for(
        lambda: [k.id for k in client.list().keeps if k.state == "running"], what="spin to run"
    )
    return deployer, keep_id


def check_config(mgr: Keepmgr) -> str:
    run = arx("keepmgr", "--check-config", "--auth", "none", "--state-dir", str(mgr.state_dir),
              "--cgroup-parent", mgr.cgroup_parent + "-check")  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run.stdout.decode()


def keep_pids(mgr: Keepmgr, keep_id: str, module: str) -> list[int]:
    pids = []
    for pid in marked_pids(mgr.marker):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().split(b"\0")
        except OSError:
            continue
        # unshare and setpriv carry wasmldr's command line too; the Python is the one.
        python = Path(cmdline[0].decode()).name.startswith("python")
        if python and module.encode() in cmdline and keep_id.encode() in cmdline:
            pids.append(pid)
    return pids


def _assert_host_files_read_only(pid: int, environ: list[bytes]) -> None:
    """In wasmldr's namespaces every mount is read-only but the Keep's TMPDIR and compile cache."""
    (tmpdir,) = [e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"TMPDIR=")]
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().decode().split("\0")
    writable = {tmpdir, argv[argv.index("--compile-cache") + 1]}
    with open(f"/proc/{pid}/mountinfo") as f:
        # Field 5 is the mount point, field 6 its own options.
        mounts = {fields[4]: fields[5].split(",") for fields in map(str.split, f)}
    assert writable <= mounts.keys()
    for point, options in mounts.items():
        assert ("rw" if point in writable else "ro") in options, (point, options)
    # The same seen by a process that joins wasmldr's user and mount namespaces:
    # as root there, it writes the TMPDIR and nothing else.
    probe = "import sys, os\nfor p in sys.argv[1:]:\n    try:\n        open(p, 'x').close()\n" \
            "        print(p, 'written'); os.unlink(p)\n    except OSError as e:\n" \
            "        print(p, e.strerror)\n"  # fmt: skip
    targets = [f"{tmpdir}/probe", "/probe", "/sys/fs/cgroup/memory/probe", "/dev/shm/probe"]
    done = subprocess.run(
        ["nsenter", f"--target={pid}", "--user", "--mount", sys.executable, "-c", probe, *targets],
        capture_output=True, check=True, timeout=30,
    )  # fmt: skip
    assert done.stdout.decode().splitlines() == [
        f"{tmpdir}/probe written",
        *(f"{t} Read-only file system" for t in targets[1:]),
    ]


# -- quotas ---------------------------------------------------------------------


def test_host_limit_refuses_with_503_naming_the_limit(mgr_factory, tmp_path) -> None:
    mgr = start(mgr_factory, tmp_path, "--max-keeps", "1")
    client = KeepmgrClient(mgr.url)
    first = client.create("nil")
    status, headers, body = create_raw(mgr.url)
    assert status == 503
    assert headers["Retry-After"] == "5"
    error = ErrorBody.from_cbor(body)
    assert error.error == "keeps_per_host"
    assert "maximum of 1 Keeps" in error.message
    # The CLI says the same in one line and exits 125.
    run = arx("deploy", HELLO, "--host", mgr.url, "--backend", "nil", "--insecure", env=mgr.env)
    assert run.returncode == 125
    assert run.stderr.decode().count("\n") == 1
    assert "maximum of 1 Keeps" in run.stderr.decode()
    client.delete(first.id)
    assert client.create("nil").state == "ready"


def test_deploy_waits_for_a_keep_when_asked(mgr_factory, tmp_path) -> None:
    """--wait: refused at the host's limit, the client asks again as often as
    Retry-After says, and deploys once the limit frees up."""
    mgr = start(mgr_factory, tmp_path, "--max-keeps", "1", "--provision-timeout", "3")
    client = KeepmgrClient(mgr.url)
    holder = client.create("nil")  # Holds the only slot until its provision timeout.
    began = time.monotonic()
    run = arx("deploy", HELLO, "--host", mgr.url, "--backend", "nil", "--insecure",
              "--wait", "60", env=mgr.env)  # fmt: skip
    waited = time.monotonic() - began
    assert run.returncode == 0, run.stderr
    assert run.stdout == b"Hello from a Keep!\n"
    notices = [line for line in run.stderr.decode().splitlines() if "waiting" in line]
    assert notices, run.stderr
    assert notices[0].startswith("arx: waiting 5 s for a Keep, then asking again: ")
    assert "maximum of 1 Keeps" in notices[0]
    # It could only have got the slot after the holder's timeout freed it.
    assert waited >= 2.5
    assert client.show(holder.id).state == "failed"


def test_deploy_gives_up_when_the_wait_is_over(mgr_factory, tmp_path) -> None:
    mgr = start(mgr_factory, tmp_path, "--max-keeps", "1")
    client = KeepmgrClient(mgr.url)
    client.create("nil")
    began = time.monotonic()
    run = arx("deploy", HELLO, "--host", mgr.url, "--backend", "nil", "--insecure",
              "--wait", "1.5", env=mgr.env)  # fmt: skip
    waited = time.monotonic() - began
    assert run.returncode == 125
    lines = run.stderr.decode().splitlines()
    # One notice (a 1.5 s pause, all that was left of the wait), then the refusal.
    assert lines[0].startswith("arx: waiting 1.5 s for a Keep")
    assert len(lines) == 2
    assert "maximum of 1 Keeps" in lines[1]
    assert 1.5 <= waited < 15
    assert len(client.list().keeps) == 1


def test_per_client_limit_is_429_and_does_not_touch_other_clients(mgr_factory, tmp_path) -> None:
    state = tmp_path / "state"
    alice, _ = token(state, "alice")
    bob, _ = token(state, "bob")
    mgr = start(mgr_factory, tmp_path, "--auth", "tokens", "--max-keeps-per-client", "1",
                state_dir=state)  # fmt: skip
    status, _, _ = create_raw(mgr.url, alice)
    assert status == 201
    status, headers, body = create_raw(mgr.url, alice)
    assert status == 429
    assert headers["Retry-After"] == "5"
    assert ErrorBody.from_cbor(body).error == "keeps_per_client"
    status, _, _ = create_raw(mgr.url, bob)
    assert status == 201


def test_requests_in_flight_cap_is_503(mgr_factory, tmp_path) -> None:
    mgr = start(mgr_factory, tmp_path, "--max-requests", "1")
    parts = urllib.parse.urlsplit(mgr.url)
    # A request whose body never comes holds the one slot until its body deadline.
    holder = socket.create_connection((parts.hostname, parts.port))
    holder.sendall(
        b"POST /v1/keeps HTTP/1.1\r\nHost: x\r\nContent-Type: application/cbor\r\n"
        b"Content-Length: 10\r\n\r\n"
    )
    time.sleep(0.3)
    status, headers, body = request(mgr.url, "GET", "/v1/keeps")
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert ErrorBody.from_cbor(body).error == "requests_in_flight"
    holder.close()
    wait_for(lambda: request(mgr.url, "GET", "/v1/keeps")[0] == 200, what="the slot")


def test_connection_cap_answers_503_and_closes(mgr_factory, tmp_path) -> None:
    mgr = start(mgr_factory, tmp_path, "--max-connections", "2")
    parts = urllib.parse.urlsplit(mgr.url)
    held = [socket.create_connection((parts.hostname, parts.port)) for _ in range(2)]
    time.sleep(0.2)
    extra = socket.create_connection((parts.hostname, parts.port), timeout=10)
    reply = b""
    while chunk := extra.recv(4096):
        reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503")
    assert b"Retry-After: 1" in head
    assert ErrorBody.from_cbor(body).error == "connections"
    extra.close()
    for s in held:
        s.close()
    wait_for(lambda: request(mgr.url, "GET", "/v1/keeps")[0] == 200, what="a free connection")


def test_slowloris_is_cut_off_and_others_are_served(mgr_factory, tmp_path) -> None:
    mgr = start(mgr_factory, tmp_path, "--header-timeout", "1")
    parts = urllib.parse.urlsplit(mgr.url)
    slow = socket.create_connection((parts.hostname, parts.port))
    started = time.monotonic()
    closed_after = None
    for byte in b"GET /v1/keeps HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
        try:
            slow.sendall(bytes([byte]))
        except OSError:
            closed_after = time.monotonic() - started
            break
        # Others are served while the slow client dribbles.
        if byte == ord("H"):
            assert request(mgr.url, "GET", "/v1/keeps")[0] == 200
        time.sleep(0.1)
    if closed_after is None:
        slow.settimeout(5)
        assert slow.recv(1) == b""
        closed_after = time.monotonic() - started
    assert closed_after < 5
    slow.close()


class KeepingClient(KeepmgrClient):
    """A client that does not delete its Keep at the end, so that a test can look at it."""

    kept: list[str]

    def delete(self, keep_id: str):  # type: ignore[no-untyped-def,override]
        self.kept = [*getattr(self, "kept", []), keep_id]


def test_silent_connection_is_cut_off_before_the_tls_handshake_too(mgr_factory, tmp_path) -> None:
    mgr = start(mgr_factory, tmp_path, "--tls", "--header-timeout", "1")
    parts = urllib.parse.urlsplit(mgr.url)
    silent = socket.create_connection((parts.hostname, parts.port))
    silent.settimeout(10)
    started = time.monotonic()
    with contextlib.suppress(ConnectionResetError):
        assert silent.recv(1) == b""
    assert time.monotonic() - started < 5
    silent.close()


def test_memory_limit_kills_only_that_keep(mgr_factory, tmp_path) -> None:
    from arx.client.deploy import DeployOptions, deploy
    from arx.errors import TransportError

    mgr = start(mgr_factory, tmp_path, "--keep-memory-mib", "160")
    spinner = arx_popen("deploy", SPIN, "--host", mgr.url, "--backend", "nil", "--insecure",
                        env=mgr.env)  # fmt: skip
    client = KeepmgrClient(mgr.url)
    wait_for(lambda: any(k.state == "running" for k in client.list().keeps), what="spin")
    keeping = KeepingClient(mgr.url)
    options = DeployOptions(backend="nil", allow_insecure=True, hpke_suite="x25519")
    alloc_upload = Upload(WORKLOADS / "alloc.wasm", "alloc", WorkloadConfig(args=()))
    with pytest.raises(TransportError) as broken:
        deploy(keeping, alloc_upload, options, on_output=lambda _s, _d: None)
    # The client says what the host reports, beside what it saw itself.
    assert broken.value.message.endswith(
        "; the host reports the Keep killed (the Keep exceeded its memory limit of 160 MiB "
        "and was killed)"
    )
    (keep_id,) = keeping.kept
    info = wait_for(lambda: (k := client.show(keep_id)).state == "failed" and k, what="failed")
    assert info.exit is not None
    assert info.exit.status == "killed"
    assert info.exit.message == "the Keep exceeded its memory limit of 160 MiB and was killed"
    # The other Keep runs on, and keepmgr serves new Keeps.
    assert [k.state for k in client.list().keeps if k.id != keep_id] == ["running"]
    hello = arx("deploy", HELLO, "--host", mgr.url, "--backend", "nil", "--insecure", env=mgr.env)
    assert hello.returncode == 0, hello.stderr
    client.delete(keep_id)
    spinner.kill()
    spinner.communicate()


# The unprivileged account for --keep-user, and an interpreter it can run.
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"


def _interpreter_for_nobody() -> tuple[str, str] | None:
    """(python, PYTHONPATH) with which ``nobody`` imports this arx, or None.

    The test venv's interpreter may live where other accounts cannot reach
    it (pyenv under /root); a system interpreter of the same version, given
    this checkout and the venv's packages on PYTHONPATH, can serve instead.
    """
    import site

    if not os.path.exists(SYSTEM_PYTHON) or shutil.which("setpriv") is None:
        return None
    pythonpath = os.pathsep.join([str(ROOT / "src"), *site.getsitepackages()])
    probe = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", SYSTEM_PYTHON,
         "-c", "import sys, arx.wasmldr.main; print(sys.version_info[:2])"],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": pythonpath},
        capture_output=True, timeout=60, check=False, cwd="/",
    )  # fmt: skip
    if probe.returncode != 0 or probe.stdout.decode().strip() != str(sys.version_info[:2]):
        return None
    return SYSTEM_PYTHON, pythonpath


@pytest.mark.skipif(os.geteuid() != 0, reason="--keep-user needs keepmgr to run as root")
def test_keep_user_runs_wasmldr_unprivileged() -> None:
    found = _interpreter_for_nobody()
    if found is None:
        pytest.skip(f"no interpreter that uid {NOBODY} can run this arx with")
    python, pythonpath = found
    # Directories the Keep's account must pass through (pytest's own are 0700).
    base = Path(tempfile.mkdtemp(prefix="arx-keep-user-"))
    try:
        base.chmod(0o755)
        mgr = start_keepmgr(base, "--keep-user", "nobody", python=python, pythonpath=pythonpath)
        try:
            client = KeepmgrClient(mgr.url)
            deployer, keep_id = running_spin(mgr)
            (pid,) = keep_pids(mgr, keep_id, "arx.wasmldr.main")
            with open(f"/proc/{pid}/status") as f:
                status = {k: v.split() for k, _, v in (line.partition(":") for line in f)}
            assert status["Uid"] == [str(NOBODY)] * 4
            assert status["Gid"] == [str(NOBODY)] * 4
            assert status["Groups"] == []
            assert status["CapEff"] == ["0000000000000000"]
            deployer.kill()
            deployer.communicate()
            wait_for(lambda: client.show(keep_id).state != "running", what="the end")
            hello = arx("deploy", HELLO, "--host", mgr.url, "--backend", "nil", "--insecure",
                        env=mgr.env)  # fmt: skip
            assert hello.returncode == 0, hello.stderr
            assert hello.stdout == b"Hello from a Keep!\n"
        finally:
            assert mgr.stop() == 0
            assert_nothing_left(mgr)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        # utime and stime, fields 14 and 15, after the parenthesised command.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_cpu_limit_bounds_a_busy_keep(mgr_factory, tmp_path) -> None:
    mgr = start(mgr_factory, tmp_path, "--keep-cpus", "0.2")
    spinner, keep_id = running_spin(mgr)
    client = KeepmgrClient(mgr.url)
    cgroup = Path("/sys/fs/cgroup/cpu", mgr.cgroup_parent, keep_id)
    assert (cgroup / "cpu.cfs_quota_us").read_text().strip() == "20000"
    (pid,) = keep_pids(mgr, keep_id, "arx.wasmldr.main")
    before, started = _cpu_seconds(pid), time.monotonic()
    time.sleep(2)
    share = (_cpu_seconds(pid) - before) / (time.monotonic() - started)
    # An endless loop would take a whole CPU; the Keep gets a fifth of one.
    assert 0.02 < share < 0.35, share
    stat = dict(line.split() for line in (cgroup / "cpu.stat").read_text().splitlines())
    assert int(stat["nr_throttled"]) > 0
    spinner.kill()
    spinner.communicate()
    wait_for(lambda: client.show(keep_id).state in ("failed", "exited"), what="the end")


@pytest.mark.parametrize("value", ["0.001", "-1", "nan", "inf", "5000"])
def test_keep_cpus_must_be_a_sane_value(tmp_path, value: str) -> None:
    run = arx("keepmgr", "--check-config", "--auth", "none", "--state-dir",
              str(tmp_path / "state"), "--keep-cpus", value)  # fmt: skip
    assert run.returncode == 125
    assert run.stderr == b"arx: --keep-cpus must be 0 (no limit) or from 0.01 to 4096\n"
    # Refused before anything was made.
    assert not (tmp_path / "state").exists()


def test_keep_processes_get_no_secrets_no_fds_and_their_cgroups(mgr_factory, tmp_path) -> None:
    marker_secret = "ARX_TEST_SECRET=" + secrets.token_hex(8)
    os.environ["ARX_TEST_SECRET"] = marker_secret.split("=", 1)[1]
    try:
        mgr = start(mgr_factory, tmp_path)
    finally:
        del os.environ["ARX_TEST_SECRET"]
    client = KeepmgrClient(mgr.url)
    keep = client.create("nil")
    for module in ("arx.keepldr.main", "arx.wasmldr.main"):
        (pid,) = wait_for(lambda m=module: keep_pids(mgr, keep.id, m), what=module)
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read().split(b"\0")
        assert marker_secret.encode() not in environ
        names = {e.split(b"=", 1)[0] for e in environ if e}
        assert names <= {b"PATH", b"LANG", b"LC_ALL", b"TZ", b"TMPDIR", b"PYTHONPATH",
                         b"ARX_TEST_MARKER", b"ARX_SIM_DIR"}  # fmt: skip
        # stdin, stdout, stderr and the pipes of its own channel; nothing of keepmgr's.
        fds = os.listdir(f"/proc/{pid}/fd")
        assert len(fds) <= 16, fds
        with open(f"/proc/{pid}/cgroup") as f:
            cgroups = f.read()
        if Path("/sys/fs/cgroup/memory", mgr.cgroup_parent).is_dir():
            assert f"{mgr.cgroup_parent}/{keep.id}" in cgroups
        if module == "arx.wasmldr.main" and "namespaces user+pid" in check_config(mgr):
            for ns in ("pid", "user", "mnt", "ipc", "uts", "net"):
                assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
            # No network at all: a loopback interface, down, and no route
            # (the table is empty, or a header without rows).
            with open(f"/proc/{pid}/net/dev") as f:
                interfaces = [line.split(":")[0].strip() for line in f.readlines()[2:]]
            assert interfaces == ["lo"]
            with open(f"/proc/{pid}/net/route") as f:
                assert len(f.readlines()) <= 1
            _assert_host_files_read_only(pid, environ)
            # Root of its user namespace, so it had every capability there: the
            # bounding set is empty now, so that no execve can bring one back.
            with open(f"/proc/{pid}/status") as f:
                assert "CapBnd:\t0000000000000000\n" in f.read()
        if module == "arx.wasmldr.main":
            # No capability left, and none to be had again.
            with open(f"/proc/{pid}/status") as f:
                status = {k: v.strip() for k, _, v in (line.partition(":") for line in f)}
            for field in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
                assert int(status[field], 16) == 0, (field, status[field])
            assert status["NoNewPrivs"] == "1"
        with open(f"/proc/{pid}/limits") as f:
            limits = f.read()
        assert any(line.startswith("Max core file size") and " 0 " in line
                   for line in limits.splitlines())  # fmt: skip
    client.delete(keep.id)


# -- authentication and TLS ------------------------------------------------------


def test_tokens_owners_and_revocation(mgr_factory, tmp_path) -> None:
    state = tmp_path / "state"
    alice, alice_id = token(state, "alice")
    bob, _ = token(state, "bob")
    operator, _ = token(state, "ops", operator=True)
    mgr = start(mgr_factory, tmp_path, "--auth", "tokens", state_dir=state)

    status, headers, body = request(mgr.url, "GET", "/v1/keeps")
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert ErrorBody.from_cbor(body).error == "unauthenticated"
    assert request(mgr.url, "GET", "/v1/keeps", token="arx_" + "0" * 16 + "_nope")[0] == 401

    a = KeepmgrClient(mgr.url, token=alice)
    b = KeepmgrClient(mgr.url, token=bob)
    ops = KeepmgrClient(mgr.url, token=operator)
    keep = a.create("nil")
    assert [k.id for k in a.list().keeps] == [keep.id]
    assert b.list().keeps == ()
    for action in (lambda: b.show(keep.id), lambda: b.delete(keep.id)):
        with pytest.raises(RemoteError) as refused:
            action()
        assert refused.value.status == 403
        assert refused.value.code == "forbidden"
    assert [k.id for k in ops.list().keeps] == [keep.id]

    # The CLI takes the token from a file or from ARX_TOKEN.
    token_file = tmp_path / "alice.token"
    token_file.write_text(alice + "\n")
    listed = arx("keeps", "list", "--host", mgr.url, "--token-file", str(token_file), "--json",
                 env=mgr.env)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert keep.id in listed.stdout.decode()
    env = dict(mgr.env, ARX_TOKEN=bob)
    assert keep.id not in arx("keeps", "list", "--host", mgr.url, "--json", env=env).stdout.decode()
    hello = arx("deploy", HELLO, "--host", mgr.url, "--backend", "nil", "--insecure",
                "--token-file", str(token_file), env=mgr.env)  # fmt: skip
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout == b"Hello from a Keep!\n"

    # Revocation takes effect at once, for the next request.
    revoked = arx("keepmgr", "token", "revoke", alice_id, "--state-dir", str(state))
    assert revoked.returncode == 0, revoked.stderr
    with pytest.raises(RemoteError) as refused:
        a.list()
    assert refused.value.status == 401
    listing = arx("keepmgr", "token", "list", "--state-dir", str(state)).stdout.decode()
    assert f"{alice_id}  client    revoked" in listing
    assert alice.split("_", 2)[2] not in listing
    ops.delete(keep.id)
    # Only hashes are stored.
    db = sqlite3.connect(state / "keepmgr.sqlite3")
    stored = db.execute("SELECT hash FROM tokens").fetchall()
    db.close()
    assert all(len(h) == 32 for (h,) in stored)
    assert all(alice.split("_", 2)[2].encode() not in h for (h,) in stored)


def test_tls_with_pinned_fingerprint(mgr_factory, tmp_path) -> None:
    state = tmp_path / "state"
    operator, _ = token(state, "ops", operator=True)
    mgr = start(mgr_factory, tmp_path, "--auth", "tokens", "--tls", state_dir=state)
    assert mgr.url.startswith("https://127.0.0.1:")
    check = arx("keepmgr", "--check-config", "--tls", "--state-dir", str(state))
    assert check.returncode == 0, check.stderr
    (line,) = [x for x in check.stdout.decode().splitlines() if x.startswith("tls fingerprint")]
    fingerprint = line.split()[-1]
    pinned = KeepmgrClient(mgr.url, token=operator, fingerprint=parse_fingerprint(fingerprint))
    assert pinned.list().keeps == ()
    wrong = KeepmgrClient(mgr.url, token=operator, fingerprint=bytes(32))
    with pytest.raises(PinMismatchError):
        wrong.list()
    env = dict(mgr.env, ARX_TOKEN=operator, ARX_TLS_FINGERPRINT=fingerprint)
    hello = arx("deploy", HELLO, "--host", mgr.url, "--backend", "nil", "--insecure", env=env)
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout == b"Hello from a Keep!\n"
    # Plain HTTP to the TLS port gets nothing.
    parts = urllib.parse.urlsplit(mgr.url)
    with pytest.raises((OSError, http.client.HTTPException)):
        request(f"http://{parts.hostname}:{parts.port}", "GET", "/v1/keeps")


def test_beyond_loopback_is_tls_with_a_self_signed_certificate(mgr_factory, tmp_path) -> None:
    state = tmp_path / "state"
    operator, _ = token(state, "ops", operator=True)
    mgr = start(mgr_factory, tmp_path, "--auth", "tokens", state_dir=state, listen="0.0.0.0:0")
    assert mgr.url.startswith("https://0.0.0.0:")
    assert (state / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600
    check = arx("keepmgr", "--check-config", "--listen", "0.0.0.0:0", "--state-dir", str(state),
                "--cgroup-parent", mgr.cgroup_parent + "-check")  # fmt: skip
    assert check.returncode == 0, check.stderr
    out = check.stdout.decode()
    assert "(TLS)" in out
    fingerprint = out.split("tls fingerprint: ")[1].split()[0]
    env = dict(mgr.env, ARX_TOKEN=operator)
    pinned = ("--tls-fingerprint", fingerprint)
    run = arx("platform", "info", "--host", mgr.url, *pinned, "--json", env=env)
    assert run.returncode == 0, run.stderr
    # Without the pin the self-signed certificate is not trusted.
    unpinned = arx("platform", "info", "--host", mgr.url, env=env)
    assert unpinned.returncode == 125
    assert "CERTIFICATE_VERIFY_FAILED" in unpinned.stderr.decode()


def test_unix_socket_is_private_and_needs_no_token(mgr_factory, tmp_path) -> None:
    sock = tmp_path / "km.sock"
    mgr = start(mgr_factory, tmp_path, "--auth", "tokens", listen=f"unix:{sock}")
    # --auth tokens was asked for here; without it a Unix socket has none.
    assert sock.stat().st_mode & 0o777 == 0o600
    with pytest.raises(RemoteError) as refused:
        KeepmgrClient(mgr.url).list()
    assert refused.value.status == 401
    assert mgr.stop() == 0
    plain = start(mgr_factory, tmp_path, "--auth", "none", listen=f"unix:{sock}")
    assert KeepmgrClient(plain.url).list().keeps == ()
    default = arx("keepmgr", "--check-config", "--listen", f"unix:{tmp_path}/other.sock",
                  "--state-dir", str(tmp_path / "s"),
                  "--cgroup-parent", "arx-test-unix-check")  # fmt: skip
    assert "auth: none" in default.stdout.decode()


def test_no_auth_is_refused_beyond_loopback(tmp_path) -> None:
    run = arx("keepmgr", "--listen", "0.0.0.0:0", "--auth", "none",
              "--state-dir", str(tmp_path / "s"))  # fmt: skip
    assert run.returncode == 125
    assert (
        run.stderr == b"arx: --auth none is allowed on Unix sockets and loopback addresses only\n"
    )


# -- state -------------------------------------------------------------------------


def test_corrupt_state_is_refused_in_one_line_and_kept(tmp_path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    db = state / "keepmgr.sqlite3"
    garbage = b"this is not a database" * 100
    db.write_bytes(garbage)
    run = arx("keepmgr", "--listen", "127.0.0.1:0", "--auth", "none", "--state-dir", str(state))
    assert run.returncode == 125
    lines = run.stderr.decode().splitlines()
    assert len(lines) == 1
    assert "corrupt" in lines[0]
    assert str(db) in lines[0]
    assert db.read_bytes() == garbage


def test_state_from_a_newer_schema_is_refused(tmp_path) -> None:
    state = tmp_path / "state"
    assert arx("keepmgr", "--check-config", "--state-dir", str(state)).returncode == 0
    db = sqlite3.connect(state / "keepmgr.sqlite3")
    db.execute("PRAGMA user_version = 99")
    db.close()
    run = arx("keepmgr", "--check-config", "--state-dir", str(state))
    assert run.returncode == 125
    assert "schema version 99" in run.stderr.decode()


def test_keeps_survive_a_restart_as_records(mgr_factory, tmp_path) -> None:
    from arx.client.deploy import DeployOptions, deploy

    state = tmp_path / "state"
    mgr = start(mgr_factory, tmp_path, state_dir=state)
    keeping = KeepingClient(mgr.url)
    options = DeployOptions(backend="nil", allow_insecure=True, hpke_suite="x25519")
    exitcode_upload = Upload(
        WORKLOADS / "exitcode.wasm", "exitcode", WorkloadConfig(args=("3", "x"))
    )
    result = deploy(keeping, exitcode_upload, options,
                    on_output=lambda _s, _d: None)  # fmt: skip
    assert result.exit.code == 3
    (done_id,) = keeping.kept
    # The Keep reports its end to keepmgr just after it told the client.
    wait_for(lambda: keeping.show(done_id).state == "exited", what="the Keep's exit")
    idle = keeping.create("nil")
    assert mgr.stop() == 0
    again = start(mgr_factory, tmp_path, state_dir=state)
    keeps = {k.id: k for k in KeepmgrClient(again.url).list().keeps}
    assert set(keeps) == {done_id, idle.id}
    assert keeps[idle.id].state == "failed"
    assert keeps[idle.id].exit is not None
    assert keeps[idle.id].exit.message == "keepmgr shut down while the Keep was live"
    assert keeps[done_id].state == "exited"
    assert keeps[done_id].exit is not None
    assert keeps[done_id].exit.code == 3


# -- faults ------------------------------------------------------------------------


def _attest(client: KeepmgrClient, keep_id: str) -> None:
    client.attest(keep_id, AttestRequest(nonce=secrets.token_bytes(32)))


@pytest.mark.parametrize("victim", ["arx.keepldr.main", "arx.wasmldr.main"])
@pytest.mark.parametrize("step", ["ready", "attested", "provisioned", "running"])
def test_sigkill_of_a_keep_process_at_each_step(mgr_factory, tmp_path, victim, step) -> None:
    mgr = start(mgr_factory, tmp_path)
    client = KeepmgrClient(mgr.url)
    bystander, bystander_id = running_spin(mgr)
    deployer = None
    outcome: list[BaseException] = []
    if step == "running":
        from arx.client.deploy import DeployOptions, deploy

        options = DeployOptions(backend="nil", allow_insecure=True, hpke_suite="x25519")
        spin_upload = Upload(WORKLOADS / "spin.wasm", "spin", WorkloadConfig(args=()))

        def run_spin() -> None:
            try:
                deploy(KeepingClient(mgr.url), spin_upload, options,
                       on_output=lambda _s, _d: None)  # fmt: skip
            except BaseException as exc:
                outcome.append(exc)

        deployer = threading.Thread(target=run_spin)
        deployer.start()
        keep_id = wait_for(
            lambda: [
                k.id for k in client.list().keeps if k.state == "running" and k.id != bystander_id
            ],
            what="second running Keep",
        )[0]
    else:
        keep_id = _to_step(client, step)
    assert client.show(keep_id).state == ("running" if step == "running" else step)
    (pid,) = keep_pids(mgr, keep_id, victim)
    os.kill(pid, signal.SIGKILL)
    info = wait_for(lambda: (k := client.show(keep_id)).state == "failed" and k, what="failed")
    assert info.exit is not None
    assert "ended unexpectedly" in info.exit.message
    wait_for(
        lambda: (
            not keep_pids(mgr, keep_id, "arx.keepldr.main")
            and not keep_pids(mgr, keep_id, "arx.wasmldr.main")
        ),
        what="the Keep's processes",
    )
    wait_for(
        lambda: not Path("/sys/fs/cgroup/pids", mgr.cgroup_parent, keep_id).exists(),
        what="the Keep's cgroup to go",
    )
    if deployer is not None:
        deployer.join(30)
        assert len(outcome) == 1
        assert "the connection to the Keep broke" in str(outcome[0])
    # The bystander is untouched and keepmgr serves on.
    states = [k.state for k in client.list().keeps if k.id != keep_id]
    assert states == ["running"]
    client.delete(keep_id)
    hello = arx("deploy", HELLO, "--host", mgr.url, "--backend", "nil", "--insecure", env=mgr.env)
    assert hello.returncode == 0, hello.stderr
    bystander.kill()
    bystander.communicate()


def test_a_hung_keep_does_not_hold_up_others_and_can_be_deleted(mgr_factory, tmp_path) -> None:
    mgr = start(mgr_factory, tmp_path)
    client = KeepmgrClient(mgr.url)
    hung = client.create("nil")
    (pid,) = wait_for(lambda: keep_pids(mgr, hung.id, "arx.wasmldr.main"), what="wasmldr")
    os.kill(pid, signal.SIGSTOP)
    hello = arx("deploy", HELLO, "--host", mgr.url, "--backend", "nil", "--insecure", env=mgr.env)
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout == b"Hello from a Keep!\n"
    started = time.monotonic()
    deleted = client.delete(hung.id)
    assert time.monotonic() - started < 10
    assert deleted.state == "failed"
    assert deleted.exit is not None
    assert deleted.exit.message == "deleted while live"
    wait_for(lambda: not keep_pids(mgr, hung.id, "arx.wasmldr.main"), what="wasmldr to go")


def _to_step(client: KeepmgrClient, step: str) -> str:
    keep_id = client.create("nil").id
    if step in ("attested", "provisioned"):
        nonce = secrets.token_bytes(32)
        answer = client.attest(keep_id, AttestRequest(nonce=nonce))
        if step == "provisioned":
            rd = crypto.report_data(backend="nil", keep_id=keep_id, nonce=nonce, suite="x25519",
                                    public_key=answer.hpke_public_key)  # fmt: skip
            _key, der = crypto.make_tls_key()
            sealed = crypto.seal("x25519", answer.hpke_public_key, der, crypto.provision_info(rd))
            client.provision(keep_id, ProvisionRequest(sealed_key=sealed))
    return keep_id


@pytest.mark.parametrize("step", ["ready", "attested", "provisioned", "running"])
def test_sigkill_of_keepmgr_at_each_step(tmp_path, step) -> None:
    state = tmp_path / "state"
    mgr = start_keepmgr(tmp_path, state_dir=state)
    client = KeepmgrClient(mgr.url)
    deployer = None
    if step == "running":
        deployer, keep_id = running_spin(mgr)
    else:
        keep_id = _to_step(client, step)
    mgr.process.kill()
    assert mgr.stop() == -signal.SIGKILL
    if deployer is not None:
        _out, err = deployer.communicate(timeout=30)
        assert deployer.returncode == 125, err
    # The kernel ends every Keep process with keepmgr.
    wait_for(lambda: marked_pids(mgr.marker) == [], what="no process of the dead keepmgr")
    again = start_keepmgr(tmp_path, state_dir=state, marker=mgr.marker)
    try:
        info = KeepmgrClient(again.url).show(keep_id)
        assert info.state == "failed"
        assert info.exit is not None
        assert info.exit.message == (
            "keepmgr restarted while the Keep was live; the Keep was stopped"
        )
        # The restarted keepmgr is fully usable.
        hello = arx("deploy", HELLO, "--host", again.url, "--backend", "nil", "--insecure",
                    env=again.env)  # fmt: skip
        assert hello.returncode == 0, hello.stderr
    finally:
        code = again.stop()
    assert_nothing_left(again)
    assert code == 0


@pytest.mark.parametrize("step", ["created", "attested"])
def test_abandoned_keep_is_stopped_after_the_provision_timeout(mgr_factory, tmp_path, step) -> None:
    mgr = start(mgr_factory, tmp_path, "--provision-timeout", "1.5")
    client = KeepmgrClient(mgr.url)
    keep_id = client.create("nil").id
    if step == "attested":
        _attest(client, keep_id)
    info = wait_for(lambda: (k := client.show(keep_id)).state == "failed" and k, what="timeout")
    assert info.exit is not None
    assert info.exit.message == "no client provisioned the Keep within 1.5 s"
    wait_for(lambda: not keep_pids(mgr, keep_id, "arx.keepldr.main"), what="keepldr to end")


def test_a_provisioned_keep_that_gets_no_workload_ends_itself(mgr_factory, tmp_path) -> None:
    """The client provisioned the Keep and vanished: the same timeout bounds the wait."""
    mgr = start(mgr_factory, tmp_path, "--provision-timeout", "1.5")
    client = KeepmgrClient(mgr.url)
    keep_id = _to_step(client, "provisioned")
    started = time.monotonic()
    info = wait_for(lambda: (k := client.show(keep_id)).exit is not None and k, what="the end")
    assert info.exit is not None
    assert info.exit.status == "failed"
    assert info.exit.message == "no workload arrived within 1.5 s"
    assert time.monotonic() - started < 10
    wait_for(lambda: not keep_pids(mgr, keep_id, "arx.wasmldr.main"), what="wasmldr to end")


@pytest.mark.parametrize("wait", [0.0, 0.3])
def test_client_disconnecting_during_create(mgr_factory, tmp_path, wait) -> None:
    """Gone before the body was read: nothing is created. Gone while the Keep
    starts: the Keep is created, then stopped when nobody provisions it."""
    mgr = start(mgr_factory, tmp_path, "--provision-timeout", "2")
    parts = urllib.parse.urlsplit(mgr.url)
    body = CreateKeepRequest(backend="nil").to_cbor()
    sock = socket.create_connection((parts.hostname, parts.port))
    sock.sendall(
        b"POST /v1/keeps HTTP/1.1\r\nHost: x\r\nContent-Type: application/cbor\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + (body if wait else body[:-1])
    )
    time.sleep(wait)
    sock.close()  # Gone before keepmgr answers.
    client = KeepmgrClient(mgr.url)
    if not wait:
        time.sleep(0.5)
        assert client.list().keeps == ()
        return
    (keep,) = wait_for(lambda: client.list().keeps, what="the Keep")
    info = wait_for(lambda: (k := client.show(keep.id)).state == "failed" and k, what="timeout")
    assert info.exit is not None
    assert info.exit.message == "no client provisioned the Keep within 2 s"


def test_a_workload_that_never_ends_is_bounded_by_the_lifetime(mgr_factory, tmp_path) -> None:
    """A client that stays connected to a workload that never ends: --max-lifetime stops it.

    (A client that leaves ends its Keep by itself: test_deploy's
    test_client_leaving_mid_run_ends_the_keep.)
    """
    mgr = start(mgr_factory, tmp_path, "--max-lifetime", "4")
    deployer, keep_id = running_spin(mgr)
    client = KeepmgrClient(mgr.url)
    _out, err = deployer.communicate(timeout=30)
    assert deployer.returncode == 125
    # The client names how the host says the Keep ended, then deletes it.
    assert (
        err.decode()
        .rstrip()
        .endswith("the host reports the Keep killed (the Keep reached its maximum lifetime of 4 s)")
    )
    assert keep_id not in [k.id for k in client.list().keeps]


def test_flood_of_creates_is_bounded(mgr_factory, tmp_path) -> None:
    mgr = start(mgr_factory, tmp_path, "--max-keeps", "6")
    statuses: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        status, _headers, body = create_raw(mgr.url)
        with lock:
            statuses.append(status)
            if status >= 400:
                errors.append(ErrorBody.from_cbor(body).error)

    threads = [threading.Thread(target=one) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert statuses.count(201) == 6
    assert set(errors) == {"keeps_per_host"}
    client = KeepmgrClient(mgr.url)
    listed = client.list().keeps
    assert len(listed) == 6
    assert {k.state for k in listed} == {"ready"}
    for keep in listed:
        client.delete(keep.id)


def test_full_state_disk_refuses_only_the_affected_request(tmp_path) -> None:
    """A tiny tmpfs as the state directory, in a mount namespace of keepmgr's own."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs in a private mount namespace")
    from tests.conftest import marked_env

    state = tmp_path / "state"
    state.mkdir()
    marker = secrets.token_hex(16)
    env = marked_env(marker)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env["TMPDIR"] = str(tmpdir)
    parent = f"arx-test-{marker[:16]}"
    script = (
        f'mount -t tmpfs -o size=256k tmpfs "{state}" && exec "$0" -m arx keepmgr '
        f'--listen 127.0.0.1:0 --auth none --state-dir "{state}" --cgroup-parent {parent}'
    )
    import sys

    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, sys.executable],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert line.startswith("arx keepmgr listening on "), line
    mgr = Keepmgr(url=line.split()[-1], process=proc, marker=marker, env=env, state_dir=state,
                  cgroup_parent=parent, tmpdir=tmpdir)  # fmt: skip
    try:
        fill = subprocess.run(
            ["nsenter", "-t", str(proc.pid), "-m", "sh", "-c",
             f'dd if=/dev/zero of="{state}/fill" bs=4k 2>/dev/null; sync'],
            check=False,
        )  # fmt: skip
        assert fill.returncode in (0, 1)
        status, headers, body = create_raw(mgr.url)
        assert status == 503
        error = ErrorBody.from_cbor(body)
        assert error.error == "state"
        assert "full" in error.message
        assert headers["Retry-After"] == "30"
        # Everyone else is still served, and nothing was started.
        status, _, body = request(mgr.url, "GET", "/v1/keeps")
        assert status == 200
        assert KeepList.from_cbor(body).keeps == ()
        assert marked_pids(marker) == [proc.pid]
        subprocess.run(["nsenter", "-t", str(proc.pid), "-m", "rm", f"{state}/fill"], check=True)
        client = KeepmgrClient(mgr.url)
        keep = client.create("nil")
        client.delete(keep.id)
    finally:
        code = mgr.stop()
    assert_nothing_left(mgr)
    assert code == 0


# -- operations ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_metrics_and_json_logs(mgr_factory, tmp_path) -> None:
    import json

    metrics_port = free_port()
    log_path = tmp_path / "keepmgr.log"
    with open(log_path, "wb") as log:
        metrics_listen = f"127.0.0.1:{metrics_port}"
        mgr = start(mgr_factory, tmp_path, "--max-keeps", "1", "--log-format", "json",
                    "--metrics-listen", metrics_listen, stderr=log.fileno())  # fmt: skip
    hello = arx("deploy", HELLO, "--host", mgr.url, "--backend", "nil", "--insecure", env=mgr.env)
    assert hello.returncode == 0, hello.stderr
    client = KeepmgrClient(mgr.url)
    idle = client.create("nil")
    assert create_raw(mgr.url)[0] == 503
    status, headers, _ = request(mgr.url, "GET", f"/v1/keeps/{idle.id}")
    assert status == 200
    request_id = headers["X-Request-Id"]
    client.delete(idle.id)
    conn = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples["arx_keep_creations_total"] == 2
    # The finished deployment is not counted as a failure; the idle Keep is.
    assert samples['arx_keep_failures_total{reason="deleted"}'] == 1
    assert samples['arx_api_refusals_total{limit="keeps_per_host"}'] == 1
    assert samples['arx_keeps{state="running"}'] == 0
    count = 'arx_api_request_seconds_count{method="POST",route="/v1/keeps",status="201"}'
    assert samples[count] == 2
    assert mgr.stop() == 0
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    (entry,) = [e for e in lines if e.get("request_id") == request_id]
    assert entry["method"] == "GET"
    assert entry["status"] == 200
    assert entry["path"] == f"/v1/keeps/{idle.id}"
    assert isinstance(entry["duration_ms"], float)
    assert {e["level"] for e in lines} <= {"info", "warning", "error"}


def test_check_config_reports_and_refuses(tmp_path) -> None:
    run = arx("keepmgr", "--check-config", "--state-dir", str(tmp_path / "s"),
              "--max-keeps", "300", "--keep-memory-mib", "512")  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = run.stdout.decode()
    assert "auth: tokens (no token issued yet)" in out
    assert "limits: 300 Keeps" in out
    assert "per Keep: 512 MiB" in out
    bad = arx("keepmgr", "--check-config", "--state-dir", str(tmp_path / "s"),
              "--tls-cert", "/nonexistent")  # fmt: skip
    assert bad.returncode == 125
    assert bad.stderr == b"arx: --tls-cert and --tls-key go together\n"
