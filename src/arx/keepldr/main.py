"""keepldr: creates one Keep on its backend and relays its control channel.

Started by keepmgr with the control channel on stdin/stdout. It starts the
Keep (for ``nil``: wasmldr as a child process), forwards every frame between
keepmgr and wasmldr unchanged, and answers wasmldr's evidence requests from
the platform. It exits when the Keep does, with the Keep's exit status, so
keepmgr learns of a Keep that died without reporting.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
from typing import Any

from arx import procutil
from arx.errors import ArxError
from arx.keepldr.backends import LaunchSpec, add_launch_arguments, get_backend
from arx.keepmgr.confine import KeepLimits, apply_rlimits, namespace_prefix
from arx.protocol.channel import Channel, private_stdio_channel
from arx.protocol.messages import ErrorBody, EvidenceRequest


def _confine(args: argparse.Namespace) -> None:
    """Joins the Keep's cgroups and sets its rlimits before anything else starts.

    keepmgr also moves keepldr into the cgroups from outside; doing it here
    first means wasmldr can never start outside them.
    """
    for path in args.cgroup:
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(f"{os.getpid()}\n")
    if args.nofile is not None and args.memory_bytes is not None:
        limits = KeepLimits(memory_bytes=args.memory_bytes, pids=0, nofile=args.nofile)
        # Without a memory cgroup, RLIMIT_DATA is the next best bound.
        apply_rlimits(limits, with_memory=not args.cgroup)


def _bind(host: str) -> socket.socket:
    """A TCP socket bound to a free port on ``host``; wasmldr starts listening on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, 0))
    except OSError:
        sock.close()
        raise
    return sock


def _credentials(args: argparse.Namespace) -> dict[str, Any]:
    """Popen arguments that run wasmldr as the unprivileged account keepmgr chose."""
    if args.keep_uid is None:
        return {}
    gid = args.keep_gid if args.keep_gid is not None else args.keep_uid
    return {"user": args.keep_uid, "group": gid, "extra_groups": []}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="arx-keepldr", description=__doc__)
    add_launch_arguments(parser)
    parser.add_argument("--nofile", type=int, default=None)
    parser.add_argument("--memory-bytes", type=int, default=None)
    parser.add_argument("--cgroup", action="append", default=[])
    parser.add_argument("--keep-uid", type=int, default=None)
    parser.add_argument("--keep-gid", type=int, default=None)
    parser.add_argument("--namespaces", action="store_true")
    args = parser.parse_args(argv)
    procutil.die_with_parent(args.parent_pid)
    upstream = private_stdio_channel()
    try:
        _confine(args)
        backend = get_backend(args.backend)
        # The workload port is bound here, in the host's network, and handed
        # to wasmldr, so that wasmldr can run in a network namespace with no
        # network of its own: a Wasm escape finds no interface to use.
        port = _bind(args.listen_host)
        spec = LaunchSpec(
            keep_id=args.keep_id,
            listen_host=args.listen_host,
            max_workload_bytes=args.max_workload_bytes,
            # In its own pid namespace wasmldr's parent is outside it and
            # getppid() is 0; the parent-death chain is namespace_prefix's.
            parent_pid=0 if args.namespaces else os.getpid(),
            # Compiled modules on host storage are native code the Keep would
            # run and a copy of the module the host could read, so only a
            # backend that protects nothing from the host uses the cache
            # (docs/workloads.md, "Compile cache").
            compile_cache=None if backend.secure else args.compile_cache,
            listen_fd=port.fileno(),
            workload_wait=args.workload_wait,
            read_only_root=args.namespaces,
        )
        command = backend.wasmldr_command(spec)
        if args.namespaces:
            command = namespace_prefix() + command
        keep = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            # keepmgr gave keepldr a minimal environment; wasmldr gets the same.
            env=dict(os.environ),
            cwd="/",
            pass_fds=(port.fileno(),),
            **_credentials(args),
        )
        # wasmldr holds the port now; keepldr keeps no way into the workload.
        port.close()
    except (ArxError, OSError) as exc:
        message = exc.message if isinstance(exc, ArxError) else str(exc)
        print(f"keepldr: cannot start the Keep: {message}", file=sys.stderr)
        return 1
    assert keep.stdin is not None
    assert keep.stdout is not None
    downstream = Channel(keep.stdout.fileno(), keep.stdin.fileno())

    def relay_down() -> None:
        # keepmgr -> Keep. When keepmgr goes away, so does the Keep.
        try:
            while (msg := upstream.receive()) is not None:
                downstream.send(msg)
        except ArxError:
            pass
        keep.kill()

    threading.Thread(target=relay_down, daemon=True).start()
    try:
        while (msg := downstream.receive()) is not None:
            if isinstance(msg, EvidenceRequest):
                try:
                    downstream.send(backend.evidence(msg.report_data))
                except ArxError as exc:
                    upstream.send(ErrorBody(error=exc.code, message=exc.message))
                    keep.kill()
                continue
            upstream.send(msg)
    except ArxError as exc:
        print(f"keepldr: {exc.message}", file=sys.stderr)
        keep.kill()
    code = keep.wait()
    # A negative code is a signal; report it as the shell would (128 + n).
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    raise SystemExit(main())
