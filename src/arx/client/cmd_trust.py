"""``arx trust sim``: trust (or stop trusting) a simulated AMD root for ``sim`` Keeps."""

from __future__ import annotations

import argparse
from pathlib import Path

from arx.client import trust


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="trust_command", metavar="WHAT", required=True)
    sim = sub.add_parser(
        "sim",
        help="trust the simulator's root: sim Keeps protect nothing, trust it only for testing",
    )
    sim.add_argument(
        "--chain",
        type=Path,
        metavar="DIR",
        help="a simulated chain directory (default: this machine's, from `arx sim init`)",
    )
    sim.add_argument("--remove", action="store_true", help="stop trusting the simulator's root")


def run(args: argparse.Namespace) -> int:
    if args.remove:
        removed = trust.untrust_sim()
        print("the simulator's root is no longer trusted" if removed else "it was not trusted")
        return 0
    target = trust.trust_sim(args.chain)
    print(f"trusting the simulator's root ({target}); sim Keeps protect nothing")
    return 0
