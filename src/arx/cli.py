"""The ``arx`` command.

Each subcommand lives in its own module, which exposes ``add_arguments(parser)``
and ``run(args) -> int``. Modules are imported only for the command that runs,
so ``arx keeps list`` does not pay for importing wasmtime.

Exit codes shared by every command: 0 success; 125 arx itself failed (as
``docker run`` does, so that it cannot be confused with a workload's own exit
code); 2 the command line is wrong (argparse's convention). ``arx run`` and
``arx deploy`` otherwise exit with the workload's code; ``arx verify`` exits 1
when evidence is rejected.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from arx import __version__
from arx.errors import ArxError

EXIT_ARX_FAILURE = 125
EXIT_USAGE = 2

# (command, module, one-line help). The module is imported lazily.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("run", "arx.client.cmd_run", "deploy a workload into a private, local Keep and run it"),
    ("deploy", "arx.client.cmd_deploy", "deploy a workload into a Keep on a keepmgr host"),
    ("keepmgr", "arx.keepmgr.cmd", "run the host daemon that creates and supervises Keeps"),
    ("keeps", "arx.client.cmd_keeps", "list, inspect or delete Keeps on a host"),
    ("platform", "arx.client.cmd_platform", "show what a host offers"),
    ("verify", "arx.attestation.cmd_verify", "verify attestation evidence offline"),
    (
        "measure",
        "arx.client.cmd_measure",
        "print the measurement of this installation's Keep runtime",
    ),
    ("sim", "arx.client.cmd_sim", "manage the simulated AMD chain of the sim backend"),
    ("trust", "arx.client.cmd_trust", "choose which extra roots the client trusts"),
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (all of them when ``None``)."""
    parser = argparse.ArgumentParser(
        prog="arx",
        description="Deploy WebAssembly workloads into attested Keeps.",
    )
    parser.add_argument("--version", action="version", version=f"arx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name, help_text in COMMANDS:
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if command is not None and name != command:
            continue
        module = importlib.import_module(module_name)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first "--" belongs to the workload, untouched;
    # argparse cannot tell those apart from arx's own options on its own.
    # ``None`` when there is no "--": the configuration file's args apply.
    workload_args: list[str] | None = None
    if "--" in args_list:
        cut = args_list.index("--")
        args_list, workload_args = args_list[:cut], args_list[cut + 1 :]
    first = next((a for a in args_list if not a.startswith("-")), None)
    known = {name for name, _module, _help in COMMANDS}
    parser = build_parser(first if first in known else None)
    args = parser.parse_args(args_list)
    args.workload_args = workload_args
    try:
        code: int = args._run(args)
    except ArxError as exc:
        print(f"arx: {exc.message}", file=sys.stderr)
        return EXIT_ARX_FAILURE
    except KeyboardInterrupt:
        print("arx: interrupted", file=sys.stderr)
        return 130
    return code
