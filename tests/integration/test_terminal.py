"""On a terminal, `arx run` shows its steps on one status line that is gone before any output.

stderr is a real pseudo-terminal here; stdout stays a pipe so that the
workload's bytes can be compared exactly.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import WORKLOADS, install_sim_chain, marked_env, wait_no_marked

# rich erases a line with "\r" and "Erase in Line" before redrawing it.
ERASE_LINE = b"\x1b[2K"


def run_on_terminal(args: list[str], env: dict[str, str]) -> tuple[int, bytes, bytes]:
    """Runs arx with stderr on a pseudo-terminal; returns (code, stdout, terminal transcript)."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "arx", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
        env=env,
    )
    os.close(terminal)
    transcript = bytearray()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.1)
            if ready:
                try:
                    data = os.read(controller, 65536)
                except OSError:  # EIO: the last writer closed the terminal.
                    break
                if not data:
                    break
                transcript += data
            elif proc.poll() is not None:
                break
        assert proc.stdout is not None
        stdout = proc.stdout.read()
        code = proc.wait(30)
    finally:
        os.close(controller)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    return code, stdout, bytes(transcript)


@pytest.fixture
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home: Path = tmp_path_factory.mktemp("home")
    install_sim_chain(home / "sim")
    env = marked_env(uuid.uuid4().hex, home)
    env["TERM"] = "xterm"
    env["COLUMNS"] = "120"
    return env


def test_steps_show_on_one_line_that_is_gone_before_the_output(env) -> None:
    code, stdout, transcript = run_on_terminal(
        ["run", str(WORKLOADS / "exitcode.wasm"), "--", "3", "hello"], env
    )
    assert code == 3, transcript
    assert stdout == b"hello\n"
    for step in (b"starting a private keepmgr", b"creating a sim Keep", b"the workload is running"):
        assert step in transcript
    # The workload's stderr comes after the status line was erased for good:
    # no status is drawn again after it, and nothing else is mixed into it.
    before, _, after = transcript.partition(b"to stderr\r\n")
    assert ERASE_LINE in before
    assert after == b""
    assert b"the workload is running" not in after
    assert wait_no_marked(env["ARX_TEST_MARKER"]) == []


def test_a_silent_workload_leaves_a_clean_terminal(env) -> None:
    # catstdin with no stdin writes nothing: the status line lasts to the end.
    code, stdout, transcript = run_on_terminal(["run", str(WORKLOADS / "catstdin.wasm")], env)
    assert code == 0, transcript
    assert stdout == b""
    assert b"the workload is running" in transcript
    # The last thing on the terminal is the erasing of the status line.
    assert transcript.endswith(ERASE_LINE)


def test_verbose_prints_lines_instead(env) -> None:
    code, _stdout, transcript = run_on_terminal(
        ["run", "--verbose", str(WORKLOADS / "exitcode.wasm"), "--", "0"], env
    )
    assert code == 0, transcript
    assert b"arx: creating a sim Keep\r\n" in transcript
    assert b"\x1b[" not in transcript


def test_a_dumb_terminal_gets_no_status_line(env) -> None:
    env["TERM"] = "dumb"
    code, _stdout, transcript = run_on_terminal(
        ["run", str(WORKLOADS / "exitcode.wasm"), "--", "0"], env
    )
    assert code == 0, transcript
    assert transcript == b"to stderr\r\n"
