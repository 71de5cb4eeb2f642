"""``arx keeps list|show|rm``: the Keeps on a keepmgr host."""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any

from arx.client.cmd_common import add_connection_arguments, make_client
from arx.protocol.messages import KeepInfo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="keeps_command", metavar="ACTION", required=True)
    for name, help_text in (
        ("list", "list the Keeps on the host"),
        ("show", "show one Keep"),
        ("rm", "delete a Keep, stopping it if it runs"),
    ):
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name != "list":
            cmd.add_argument("id", metavar="KEEP_ID")
        add_connection_arguments(cmd, host_required=True)
        cmd.add_argument("--json", action="store_true", help="print JSON for scripts")


def keep_json(keep: KeepInfo) -> dict[str, Any]:
    return {
        "id": keep.id,
        "backend": keep.backend,
        "state": keep.state,
        "created_at": keep.created_at,
        "workload_port": keep.workload_port,
        "exit": None
        if keep.exit is None
        else {"status": keep.exit.status, "code": keep.exit.code, "message": keep.exit.message},
    }


def _describe_exit(keep: KeepInfo) -> str:
    if keep.exit is None:
        return ""
    if keep.exit.code is not None:
        return f"{keep.exit.status} {keep.exit.code}"
    return f"{keep.exit.status}: {keep.exit.message}"


def _created(keep: KeepInfo) -> str:
    when = datetime.datetime.fromtimestamp(keep.created_at, datetime.UTC)
    return when.strftime("%Y-%m-%d %H:%M:%SZ")


def run(args: argparse.Namespace) -> int:
    client = make_client(args)
    if args.keeps_command == "list":
        keeps = client.list().keeps
        if args.json:
            print(json.dumps([keep_json(k) for k in keeps], indent=2))
            return 0
        if not keeps:
            print("no Keeps")
            return 0
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for column in ("ID", "BACKEND", "STATE", "CREATED", "EXIT"):
            table.add_column(column)
        for k in keeps:
            table.add_row(k.id, k.backend, k.state, _created(k), _describe_exit(k))
        Console(highlight=False).print(table)
        return 0
    keep = client.show(args.id) if args.keeps_command == "show" else client.delete(args.id)
    if args.json:
        print(json.dumps(keep_json(keep), indent=2))
    elif args.keeps_command == "rm":
        print(f"deleted {keep.id}")
    else:
        print(f"id:       {keep.id}")
        print(f"backend:  {keep.backend}")
        print(f"state:    {keep.state}")
        print(f"created:  {_created(keep)}")
        if keep.workload_port is not None:
            print(f"port:     {keep.workload_port}")
        if keep.exit is not None:
            print(f"exit:     {_describe_exit(keep)}")
    return 0
