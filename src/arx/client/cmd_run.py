"""``arx run``: the embedded default.

Starts a private keepmgr on a Unix socket in a fresh private directory,
deploys the workload through it, then stops keepmgr (which stops its Keeps)
and removes the directory, whatever happened. That keepmgr runs without API
tokens, as keepmgr does on Unix sockets: the socket file is 0600 in a 0700
directory only this user can enter, so no one else can reach it, and
``arx run`` works with no configuration at all.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile

from arx.client.cmd_common import add_workload_arguments, options_from_args, run_deployment
from arx.errors import ArxError

# How long the private keepmgr may take to start listening.
KEEPMGR_START_TIMEOUT = 30.0
# How long it may take to stop its Keeps and exit after SIGTERM.
KEEPMGR_STOP_TIMEOUT = 10.0

# The backend ``arx run`` uses. The private keepmgr runs on the user's own
# machine for this one command, so the nil backend's lack of protection
# from "the host" is protection from the user themself; it is allowed here.
RUN_BACKEND = "nil"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workload_arguments(parser)


def run(args: argparse.Namespace) -> int:
    options = options_from_args(args, backend=RUN_BACKEND, allow_insecure=True)
    workdir = tempfile.mkdtemp(prefix="arx-run-")
    socket_path = os.path.join(workdir, "keepmgr.sock")
    keepmgr = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "arx",
            "keepmgr",
            "--listen",
            f"unix:{socket_path}",
            "--state-dir",
            os.path.join(workdir, "state"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        close_fds=True,
    )
    try:
        _wait_listening(keepmgr)
        return run_deployment(f"unix:{socket_path}", args, options)
    finally:
        _stop(keepmgr)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_listening(keepmgr: subprocess.Popen[bytes]) -> None:
    assert keepmgr.stdout is not None
    # keepmgr prints one line once it listens; end of file means it died.
    line = keepmgr.stdout.readline()
    if not line.startswith(b"arx keepmgr listening on "):
        keepmgr.wait(KEEPMGR_START_TIMEOUT)
        raise ArxError(f"the private keepmgr failed to start (exit status {keepmgr.returncode})")


def _stop(keepmgr: subprocess.Popen[bytes]) -> None:
    if keepmgr.poll() is None:
        keepmgr.terminate()
        try:
            keepmgr.wait(KEEPMGR_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            keepmgr.kill()
            keepmgr.wait()
    if keepmgr.stdout is not None:
        with contextlib.suppress(OSError):
            keepmgr.stdout.close()
