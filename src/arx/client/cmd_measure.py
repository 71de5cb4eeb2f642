"""``arx measure``: the MEASUREMENT a sim Keep started from this installation reports."""

from __future__ import annotations

import argparse
import json

from arx import sim


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def run(args: argparse.Namespace) -> int:
    measurement = sim.runtime_measurement().hex()
    if args.json:
        print(json.dumps({"backend": "sim", "measurement": measurement}))
    else:
        print(measurement)
    return 0
