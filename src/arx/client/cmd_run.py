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
from pathlib import Path

from arx import sim
from arx.attestation.policy import SnpPolicy
from arx.client.cmd_common import (
    add_workload_arguments,
    options_from_args,
    prepare_upload,
    run_deployment,
)
from arx.client.deploy import DeployOptions
from arx.client.progress import StepDisplay
from arx.client.trust import DeployPolicy, local_sim_anchors
from arx.client.workload import Upload
from arx.errors import ArxError

# How long the private keepmgr may take to start listening.
KEEPMGR_START_TIMEOUT = 30.0
# How long it may take to stop its Keeps and exit after SIGTERM.
KEEPMGR_STOP_TIMEOUT = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workload_arguments(parser)
    parser.add_argument(
        "--backend",
        choices=("sim", "nil"),
        default="sim",
        help="sim (default): the whole attested path, with a simulated AMD chain made on first "
        "use and trusted for this run only; nil: no attestation at all",
    )


def run_policy(backend: str) -> DeployPolicy:
    """What ``arx run`` trusts: only the local machine's own runtime.

    The private keepmgr runs on the user's own machine for this one command.
    For ``sim`` the client trusts this machine's simulated root for this run
    only (nothing is written to the trust store) and requires the measurement
    of this machine's own runtime, so the whole verifier path runs. ``nil``
    protects nothing from a host that is the user themself.
    """
    if backend == "nil":
        return DeployPolicy(backends=frozenset())
    if not sim.chain_exists():
        if sys.stderr.isatty():
            print("arx: making the simulated AMD chain (first use)", file=sys.stderr)
        sim.init_chain()
    measurement = sim.runtime_measurement(sim.sim_dir())
    return DeployPolicy(
        backends=frozenset({"sim"}),
        sim_anchors=local_sim_anchors(),
        snp=SnpPolicy.baseline().with_changes(measurement=frozenset({measurement})),
    )


def run(args: argparse.Namespace) -> int:
    # The module, the configuration and every input are checked before any
    # process starts.
    upload = prepare_upload(args)
    options = options_from_args(
        args,
        backend=args.backend,
        allow_insecure=args.backend == "nil",
        policy=run_policy(args.backend),
    )
    with StepDisplay.for_stderr(verbose=args.verbose) as display:
        display.step("starting a private keepmgr")
        return _run_private(args, options, upload, display)


def _run_private(
    args: argparse.Namespace, options: DeployOptions, upload: Upload, display: StepDisplay
) -> int:
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
            "--compile-cache",
            str(compile_cache_dir()),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        close_fds=True,
    )
    try:
        _wait_listening(keepmgr)
        return run_deployment(f"unix:{socket_path}", args, options, upload, display)
    finally:
        _stop(keepmgr)
        shutil.rmtree(workdir, ignore_errors=True)


def compile_cache_dir() -> Path:
    """The user's own cache of compiled modules: ``$XDG_CACHE_HOME/arx/compile-cache``.

    The private keepmgr is the user's own, on the user's machine, so keeping
    compiled modules across runs trusts no one new (docs/workloads.md).
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "arx" / "compile-cache"


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
