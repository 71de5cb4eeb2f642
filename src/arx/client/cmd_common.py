"""What ``arx run`` and ``arx deploy`` share: workload arguments and output relay."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from arx.client.api import KeepmgrClient, parse_fingerprint
from arx.client.deploy import DeployOptions, deploy, exit_code
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


# Where a client finds its API token and keepmgr's TLS fingerprint when no
# option names them.
TOKEN_ENV = "ARX_TOKEN"  # noqa: S105 (the name of a variable)
FINGERPRINT_ENV = "ARX_TLS_FINGERPRINT"
# An API token file holds one line; anything longer is not a token.
MAX_TOKEN_FILE = 4096


def add_connection_arguments(parser: argparse.ArgumentParser, *, host_required: bool) -> None:
    parser.add_argument(
        "--host",
        required=host_required,
        metavar="URL",
        help="keepmgr's URL: https://HOST:PORT, http://HOST:PORT (loopback) or unix:PATH",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"file holding the API token the operator issued (default: ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--tls-fingerprint",
        metavar="sha256:HEX",
        help=f"pin keepmgr's TLS certificate (default: ${FINGERPRINT_ENV})",
    )


def make_client(args: argparse.Namespace, url: str | None = None) -> KeepmgrClient:
    """The client for ``--host`` (or ``url``), with the credentials the command line gave."""
    token_file = getattr(args, "token_file", None)
    token = None
    if token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.read(MAX_TOKEN_FILE).strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the token file {token_file}: {exc}") from exc
        if not token:
            raise UsageError(f"the token file {token_file} is empty")
    elif hasattr(args, "token_file"):
        token = os.environ.get(TOKEN_ENV) or None
    pin = getattr(args, "tls_fingerprint", None)
    if pin is None and hasattr(args, "tls_fingerprint"):
        pin = os.environ.get(FINGERPRINT_ENV) or None
    return KeepmgrClient(
        url or args.host,
        token=token,
        fingerprint=parse_fingerprint(pin) if pin else None,
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
    args: argparse.Namespace, *, backend: str, allow_insecure: bool
) -> DeployOptions:
    return DeployOptions(
        backend=backend,
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

    client = make_client(args, url)
    result = deploy(client, module, options, on_output=_write, progress=progress)
    code, line = exit_code(result.exit)
    if line is not None:
        print(f"arx: {line}", file=sys.stderr)
    return code
