"""What ``arx run`` and ``arx deploy`` share: workload arguments and output relay."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from arx.client.api import KeepmgrClient, parse_fingerprint
from arx.client.deploy import DeployOptions, deploy, exit_code
from arx.client.progress import StepDisplay
from arx.client.trust import DeployPolicy
from arx.client.workload import (
    CONFIG_NAME,
    DirSpec,
    FileSpec,
    StdinSpec,
    Upload,
    WorkloadConfig,
    check_env_name,
    check_guest_dir,
    load_config,
    merge,
    parse_limits,
)
from arx.errors import UsageError
from arx.protocol.messages import HPKE_SUITES, MAX_WORKLOAD_BYTES, StreamName


def add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "workload",
        metavar="WORKLOAD.wasm",
        help="the WASI module to run; its arguments follow a -- at the end "
        "(and replace the configuration's args)",
    )
    config = parser.add_argument_group(
        "workload configuration",
        "settings for the workload; they override the configuration file's "
        "(keep.toml beside the module, or --config; see docs/workloads.md)",
    )
    config.add_argument(
        "--config", metavar="FILE", type=Path, help="the workload configuration (keep.toml)"
    )
    config.add_argument(
        "--no-config", action="store_true", help="ignore a keep.toml beside the module"
    )
    config.add_argument(
        "--env",
        "-e",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set an environment variable for the workload (repeatable)",
    )
    stdin = config.add_mutually_exclusive_group()
    stdin.add_argument(
        "--stdin", metavar="FILE", type=Path, help="send FILE with the workload as its stdin"
    )
    stdin.add_argument("--stdin-text", metavar="TEXT", help="the workload's stdin, inline")
    config.add_argument(
        "--dir",
        action="append",
        default=[],
        metavar="SRC:GUEST[:rw]",
        help="make local directory SRC visible at GUEST (read-only unless :rw; "
        "an empty SRC gives an empty writable directory)",
    )
    config.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="SRC:GUEST",
        help="make local file SRC visible at GUEST, e.g. data.csv:/in/data.csv",
    )
    config.add_argument(
        "--results",
        action="append",
        default=[],
        metavar="GUEST=DIR",
        help="after the run, write writable directory GUEST's contents into local DIR",
    )
    config.add_argument(
        "--discard",
        action="append",
        default=[],
        metavar="GUEST",
        help="discard writable directory GUEST's contents after the run",
    )
    config.add_argument("--memory", metavar="SIZE", help="memory limit, e.g. 256MiB")
    config.add_argument("--wall-time", metavar="DURATION", help="wall-time limit, e.g. 30s")
    config.add_argument("--fuel", metavar="N", type=int, help="CPU budget in wasmtime fuel")
    config.add_argument(
        "--max-output", metavar="SIZE", help="limit on stdout and stderr together, e.g. 10MiB"
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


def parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--env takes NAME=VALUE, not {pair!r}")
        env[check_env_name(name, "--env")] = value
    return env


def _cli_config(args: argparse.Namespace) -> WorkloadConfig:
    dirs: dict[str, DirSpec] = {}
    for value in args.dir:
        parts = value.split(":")
        writable = len(parts) == 3 and parts[2] == "rw"
        if len(parts) not in (2, 3) or (len(parts) == 3 and not writable):
            raise UsageError(f"--dir takes SRC:GUEST or SRC:GUEST:rw, not {value!r}")
        guest = check_guest_dir(parts[1], "--dir")
        dirs[guest] = DirSpec(
            guest=guest, source=Path(parts[0]) if parts[0] else None, writable=writable
        )
    for value in args.results:
        guest, sep, local = value.partition("=")
        if not sep or not local:
            raise UsageError(f"--results takes GUEST=DIR, not {value!r}")
        guest = check_guest_dir(guest, "--results")
        base = dirs.get(guest, DirSpec(guest=guest, writable=True))
        dirs[guest] = replace(base, results=Path(local), discard=False)
    for value in args.discard:
        guest = check_guest_dir(value, "--discard")
        base = dirs.get(guest, DirSpec(guest=guest, writable=True))
        dirs[guest] = replace(base, discard=True, results=None)
    files = []
    for value in args.file:
        src, sep, guest = value.rpartition(":")
        if not sep or not src:
            raise UsageError(f"--file takes SRC:GUEST, not {value!r}")
        files.append(FileSpec(source=Path(src), guest=check_guest_dir(guest, "--file")))
    stdin = None
    if args.stdin is not None:
        stdin = StdinSpec(file=args.stdin)
    elif args.stdin_text is not None:
        stdin = StdinSpec(data=args.stdin_text.encode())
    limits: dict[str, object] = {}
    for key, value in (
        ("memory", args.memory),
        ("wall_time", args.wall_time),
        ("fuel", args.fuel),
        ("output", args.max_output),
    ):
        if value is not None:
            limits[key] = value
    try:
        parsed_limits = parse_limits(limits, prefix="option")
    except UsageError as exc:
        flag = {
            "option.memory": "--memory",
            "option.wall_time": "--wall-time",
            "option.fuel": "--fuel",
            "option.output": "--max-output",
        }
        message = exc.message
        for key, name in flag.items():
            message = message.replace(key, name)
        raise UsageError(message) from None
    return WorkloadConfig(
        args=None if args.workload_args is None else tuple(args.workload_args),
        env=parse_env(args.env),
        stdin=stdin,
        dirs=tuple(dirs.values()),
        files=tuple(files),
        limits=parsed_limits,
    )


def workload_config(args: argparse.Namespace) -> WorkloadConfig:
    """The file's settings (if any) with the command line's laid over them."""
    cli = _cli_config(args)
    path: Path | None = args.config
    if path is None and not args.no_config:
        beside = Path(args.workload).parent / CONFIG_NAME
        path = beside if beside.is_file() else None
    if path is None:
        return cli
    base = load_config(path)
    # A command-line --results or --discard for a directory the file declares
    # keeps the file's source and mode.
    merged_dirs = {d.guest: d for d in base.dirs}
    cli_dirs = []
    for spec in cli.dirs:
        old = merged_dirs.get(spec.guest)
        if old is not None and spec.source is None and (spec.results is not None or spec.discard):
            cli_dirs.append(replace(old, results=spec.results, discard=spec.discard))
        else:
            cli_dirs.append(spec)
    return merge(base, replace(cli, dirs=tuple(cli_dirs)))


def options_from_args(
    args: argparse.Namespace, *, backend: str, allow_insecure: bool, policy: DeployPolicy
) -> DeployOptions:
    return DeployOptions(
        backend=backend,
        policy=policy,
        allow_insecure=allow_insecure,
        hpke_suite=args.hpke_suite,
    )


def _write(stream: StreamName, data: bytes) -> None:
    # Byte for byte, unbuffered: the workload's output is ours.
    fd = 1 if stream == "stdout" else 2
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def prepare_upload(args: argparse.Namespace) -> Upload:
    """Everything checked before a Keep exists: the module, the configuration, the inputs."""
    module = Path(args.workload)
    try:
        size = module.stat().st_size
    except OSError as exc:
        raise UsageError(f"cannot read {module}: {exc.strerror}") from exc
    if size > MAX_WORKLOAD_BYTES:
        raise UsageError(
            f"{module} is {size} bytes; the largest workload is {MAX_WORKLOAD_BYTES} bytes"
        )
    return Upload(module, module.name, workload_config(args))


def run_deployment(
    url: str,
    args: argparse.Namespace,
    options: DeployOptions,
    upload: Upload | None = None,
    display: StepDisplay | None = None,
) -> int:
    """Deploys and reports; ``display`` (made here if not given) shows the steps."""
    if upload is None:
        upload = prepare_upload(args)
    if display is None:
        with StepDisplay.for_stderr(verbose=args.verbose) as own:
            return run_deployment(url, args, options, upload, own)

    def write(stream: StreamName, data: bytes) -> None:
        # The status line goes before the workload's first byte, for good.
        display.stop()
        _write(stream, data)

    client = make_client(args, url)
    result = deploy(
        client,
        upload,
        options,
        on_output=write,
        progress=display.step,
        notice=display.notice,
        on_sent=display.sent,
    )
    display.stop()
    for directory in upload.results.finish(result):
        display.step(f"results written to {directory}")
    code, line = exit_code(result.exit)
    if line is not None:
        print(f"arx: {line}", file=sys.stderr)
    return code
