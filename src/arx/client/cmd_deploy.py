"""``arx deploy``: deploy a workload into a Keep on a keepmgr host."""

from __future__ import annotations

import argparse
from dataclasses import replace

from arx.client.cmd_common import (
    add_connection_arguments,
    add_workload_arguments,
    options_from_args,
    run_deployment,
)
from arx.client.trust import DeployPolicy

# The longest --wait: a day is longer than anyone waits at a terminal, so
# more is taken for a mistake.
MAX_WAIT = 86400.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workload_arguments(parser)
    add_connection_arguments(parser, host_required=True)
    parser.add_argument(
        "--backend", required=True, help="the backend to create the Keep on (nil, sim, snp, ...)"
    )
    parser.add_argument(
        "--policy",
        metavar="FILE",
        help="policy file ([deploy] backends and trust_sim, [snp] measurement, TCB, ...); "
        "default: hardware backends with the baseline checks, sim only if trusted",
    )
    parser.add_argument(
        "--wait",
        metavar="SECONDS",
        type=_seconds,
        default=0.0,
        help="while the host refuses a new Keep at a limit, keep asking for this long, "
        "as often as it says to (default 0: fail at once)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow the nil backend, which protects nothing from the host",
    )


def run(args: argparse.Namespace) -> int:
    policy = DeployPolicy.from_file(args.policy) if args.policy else DeployPolicy.default()
    options = options_from_args(
        args, backend=args.backend, allow_insecure=args.insecure, policy=policy
    )
    return run_deployment(args.host, args, replace(options, wait=args.wait))


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= MAX_WAIT:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_WAIT:g} seconds")
    return value
