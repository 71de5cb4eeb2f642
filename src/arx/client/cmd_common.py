"""What ``arx run`` and ``arx deploy`` share: workload arguments and output relay."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from arx.client.api import KeepmgrClient
from arx.client.deploy import DeployOptions, deploy, exit_code
from arx.client.trust import DeployPolicy
from arx.errors import UsageError
from arx.protocol.messages import HPKE_SUITES, MAX_WORKLOAD_BYTES, StreamName


def add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "workload",
        metavar="WORKLOAD.wasm",
        help="the WASI module to run; its arguments follow a -- at the end",
    )
    parser.add_argument(
        "--env",
        "-e",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set an environment variable for the workload (repeatable)",
    )
    parser.add_argument(
        "--hpke-suite",
        choices=HPKE_SUITES,
        default="x25519",
        help="HPKE suite that seals the TLS key to the Keep (default x25519)",
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="report each deployment step on stderr"
    )


def read_module(path: str) -> bytes:
    try:
        size = os.stat(path).st_size
        if size > MAX_WORKLOAD_BYTES:
            raise UsageError(
                f"{path} is {size} bytes; the largest workload is {MAX_WORKLOAD_BYTES} bytes"
            )
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--env takes NAME=VALUE, not {pair!r}")
        env[name] = value
    return env


def options_from_args(
    args: argparse.Namespace, *, backend: str, allow_insecure: bool, policy: DeployPolicy
) -> DeployOptions:
    return DeployOptions(
        backend=backend,
        policy=policy,
        allow_insecure=allow_insecure,
        hpke_suite=args.hpke_suite,
        program=Path(args.workload).name,
        args=tuple(args.workload_args),
        env=parse_env(args.env),
    )


def _write(stream: StreamName, data: bytes) -> None:
    # Byte for byte, unbuffered: the workload's output is ours.
    fd = 1 if stream == "stdout" else 2
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def run_deployment(url: str, args: argparse.Namespace, options: DeployOptions) -> int:
    module = read_module(args.workload)

    def progress(message: str) -> None:
        if args.verbose:
            print(f"arx: {message}", file=sys.stderr, flush=True)

    result = deploy(KeepmgrClient(url), module, options, on_output=_write, progress=progress)
    code, line = exit_code(result.exit)
    if line is not None:
        print(f"arx: {line}", file=sys.stderr)
    return code
