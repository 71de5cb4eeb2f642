"""Fixtures that start real arx processes on loopback.

Every process a test starts carries ``ARX_TEST_MARKER`` in its environment
(children inherit it), so a test can prove that nothing it started is still
alive afterwards by scanning /proc for the marker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs each property with a fixed seed, so that a submission's verdict does
# not depend on luck; local runs explore new inputs every time.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ROOT / "tests" / "workloads"
EXAMPLES = ROOT / "examples"


def marked_pids(marker: str) -> list[int]:
    """Pids of live processes whose environment holds ``ARX_TEST_MARKER=marker``."""
    needle = f"ARX_TEST_MARKER={marker}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z" and needle in environ.split(b"\0"):
            pids.append(int(entry))
    return pids


def wait_no_marked(marker: str, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        pids = marked_pids(marker)
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids", "cpu")


def cgroup_children(parent: str) -> list[str]:
    """Per-Keep cgroups left under ``parent`` in the memory, pids and cpu hierarchies."""
    left = []
    for controller in CONTROLLERS:
        directory = CGROUP_ROOT / controller / parent
        if directory.is_dir():
            left += [f"{controller}/{p.name}" for p in directory.iterdir() if p.is_dir()]
    return left


def remove_cgroup_parent(parent: str) -> None:
    for controller in CONTROLLERS:
        with contextlib.suppress(OSError):
            (CGROUP_ROOT / controller / parent).rmdir()


# Every keepmgr this test process started, for the check after each test.
STARTED: list[Keepmgr] = []


@pytest.fixture(autouse=True)
def no_cgroup_left_behind() -> Iterator[None]:
    """After every test: no per-Keep cgroup of any keepmgr the test started is left."""
    yield
    started, STARTED[:] = list(STARTED), []
    left = []
    for mgr in started:
        if mgr.process.poll() is None:
            continue  # Still running: the test has not finished with it.
        left += cgroup_children(mgr.cgroup_parent)
        remove_cgroup_parent(mgr.cgroup_parent)
    assert left == [], f"cgroups left behind: {left}"


def leaked_tempfiles(tmpdir: Path) -> list[str]:
    """What keepmgr and its Keeps left in the TMPDIR the test gave them."""
    return sorted(str(p) for p in tmpdir.iterdir()) if tmpdir.is_dir() else []


@dataclass
class Keepmgr:
    url: str
    process: subprocess.Popen[bytes]
    marker: str
    env: dict[str, str]
    state_dir: Path
    cgroup_parent: str = ""
    tmpdir: Path | None = None

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(20)
        finally:
            if self.process.stdout:
                self.process.stdout.close()


def marked_env(marker: str, home: Path | None = None) -> dict[str, str]:
    """The environment for processes of one test; ``home`` holds its sim and trust dirs."""
    env = dict(os.environ)
    env["ARX_TEST_MARKER"] = marker
    env["PYTHONUNBUFFERED"] = "1"
    if home is not None:
        env["ARX_SIM_DIR"] = str(home / "sim")
        env["ARX_TRUST_DIR"] = str(home / "trust")
    return env


_SIM_CHAIN: dict[str, bytes] = {}


def install_sim_chain(directory: Path) -> None:
    """A simulated AMD chain in ``directory``, made once per test session (RSA-4096 is slow)."""
    if not _SIM_CHAIN:
        from arx.attestation.snp_sim import SimAmdChain

        _SIM_CHAIN.update(SimAmdChain.generate().to_pem())
    directory.mkdir(parents=True, mode=0o700)
    for name, data in _SIM_CHAIN.items():
        (directory / name).write_bytes(data)


def start_keepmgr(
    tmp_path: Path,
    *extra: str,
    listen: str = "127.0.0.1:0",
    state_dir: Path | None = None,
    marker: str | None = None,
    stderr: int | None = None,
    python: str = sys.executable,
    pythonpath: str | None = None,
) -> Keepmgr:
    """Starts keepmgr on loopback; without an ``--auth`` in ``extra``, with ``--auth none``.

    Each keepmgr puts its Keeps' cgroups under a parent of its own, so that a
    test can prove none is left behind.
    """
    marker = marker or uuid.uuid4().hex
    home = tmp_path / f"home-{marker[:8]}"
    if not (home / "sim").exists():
        install_sim_chain(home / "sim")
    env = marked_env(marker, home)
    # keepmgr and its Keeps get a TMPDIR of their own that must end up empty.
    tmpdir = tmp_path / f"tmp-{marker[:8]}"
    tmpdir.mkdir(exist_ok=True)
    env["TMPDIR"] = str(tmpdir)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    state_dir = state_dir or tmp_path / f"state-{marker[:8]}"
    cgroup_parent = f"arx-test-{marker[:16]}"
    if "--auth" not in extra:
        extra = ("--auth", "none", *extra)
    process = subprocess.Popen(
        [
            python,
            "-m",
            "arx",
            "keepmgr",
            "--listen",
            listen,
            "--state-dir",
            str(state_dir),
            "--cgroup-parent",
            cgroup_parent,
            *extra,
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        stderr=stderr,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    if not line.startswith("arx keepmgr listening on "):
        process.kill()
        process.wait()
        raise AssertionError(f"keepmgr did not start: {line!r}")
    url = line.removeprefix("arx keepmgr listening on ").strip()
    mgr = Keepmgr(
        url=url,
        process=process,
        marker=marker,
        env=env,
        state_dir=state_dir,
        cgroup_parent=cgroup_parent,
        tmpdir=tmpdir,
    )
    STARTED.append(mgr)
    return mgr


def assert_nothing_left(mgr: Keepmgr) -> None:
    """No process, cgroup or Keep temporary directory of ``mgr`` is left."""
    leftover = wait_no_marked(mgr.marker)
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    cgroups = cgroup_children(mgr.cgroup_parent)
    remove_cgroup_parent(mgr.cgroup_parent)
    temps = leaked_tempfiles(mgr.tmpdir) if mgr.tmpdir else []
    assert leftover == [], f"processes left behind: {leftover}"
    assert cgroups == [], f"cgroups left behind: {cgroups}"
    assert temps == [], f"temporary directories left behind: {temps}"


@pytest.fixture
def keepmgr(tmp_path: Path) -> Iterator[Keepmgr]:
    mgr = start_keepmgr(tmp_path)
    try:
        yield mgr
    finally:
        code = mgr.stop()
        assert_nothing_left(mgr)
        assert code == 0, f"keepmgr exited with {code}"


@dataclass
class Run:
    returncode: int
    stdout: bytes
    stderr: bytes


def arx(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, input: bytes | None = None
) -> Run:
    proc = subprocess.run(
        [sys.executable, "-m", "arx", *args],
        capture_output=True,
        env=env,
        timeout=timeout,
        input=input,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def arx_popen(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "arx", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
    )
