"""``arx platform info``: what a host offers (or this machine, without --host)."""

from __future__ import annotations

import argparse
import json

from arx import __version__
from arx.client.cmd_common import add_connection_arguments, make_client
from arx.protocol.messages import BackendInfo, PlatformInfo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="platform_command", metavar="ACTION", required=True)
    info = sub.add_parser("info", help="list the backends and whether they are available")
    add_connection_arguments(info, host_required=False)
    info.add_argument("--json", action="store_true", help="print JSON for scripts")


def local_platform() -> PlatformInfo:
    from arx.keepldr.backends import BACKENDS

    return PlatformInfo(
        arx_version=__version__,
        backends=tuple(
            BackendInfo(
                name=b.name, available=b.available(), secure=b.secure, description=b.description
            )
            for b in BACKENDS.values()
        ),
    )


def run(args: argparse.Namespace) -> int:
    info = make_client(args).platform() if args.host else local_platform()
    if args.json:
        print(
            json.dumps(
                {
                    "arx_version": info.arx_version,
                    "backends": [
                        {
                            "name": b.name,
                            "available": b.available,
                            "secure": b.secure,
                            "description": b.description,
                        }
                        for b in info.backends
                    ],
                },
                indent=2,
            )
        )
        return 0
    print(f"arx {info.arx_version} on {args.host or 'this machine'}")
    for b in info.backends:
        status = "available" if b.available else "unavailable"
        security = "protects the workload" if b.secure else "PROTECTS NOTHING"
        print(f"  {b.name:5} {status:11} {security:22} {b.description}")
    return 0
