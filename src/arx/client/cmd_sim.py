"""``arx sim init|show``: the simulated AMD chain the ``sim`` backend signs with."""

from __future__ import annotations

import argparse
import hashlib

from cryptography.hazmat.primitives import serialization

from arx import sim


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sim_command", metavar="ACTION", required=True)
    init = sub.add_parser(
        "init", help="make the simulated ARK, ASK and VCEK (once, in the user's data directory)"
    )
    init.add_argument("--force", action="store_true", help="replace an existing chain")
    sub.add_parser("show", help="where the chain is and the fingerprint of its ARK")


def run(args: argparse.Namespace) -> int:
    directory = sim.sim_dir()
    if args.sim_command == "init":
        sim.init_chain(directory, force=args.force)
        print(f"made a simulated AMD chain in {directory}")
        print("it is a simulation: whoever holds these keys can forge any sim report")
    chain = sim.load_chain(directory)
    ark = chain.ark.public_bytes(serialization.Encoding.DER)
    print(f"chain:    {directory}")
    print(f"product:  {chain.product.value}")
    print(f"ark:      sha256 {hashlib.sha256(ark).hexdigest()}")
    return 0
