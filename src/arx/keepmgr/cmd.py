"""``arx keepmgr``: serve the host API until SIGTERM or SIGINT, then stop every Keep."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from arx.errors import UsageError
from arx.keepmgr.keeps import KeepRegistry
from arx.keepmgr.server import make_app
from arx.protocol.messages import MAX_WORKLOAD_BYTES

DEFAULT_LISTEN = "127.0.0.1:8443"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address to serve on, or unix:PATH for a Unix socket (default {DEFAULT_LISTEN}; "
        "port 0 picks a free port)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="directory for keepmgr's state (default: $XDG_STATE_HOME/arx/keepmgr)",
    )
    parser.add_argument(
        "--max-workload-mib",
        type=int,
        default=MAX_WORKLOAD_BYTES >> 20,
        metavar="MIB",
        help=f"largest workload upload a Keep accepts (default {MAX_WORKLOAD_BYTES >> 20})",
    )
    parser.add_argument(
        "--compile-cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="where Keeps on insecure backends keep compiled modules "
        "(default: STATE_DIR/compile-cache; 'none' disables it)",
    )


def parse_listen(value: str) -> tuple[str, str | int]:
    """``unix:PATH`` or ``HOST:PORT`` (IPv6 hosts in brackets)."""
    if value.startswith("unix:"):
        path = value[5:]
        if not path:
            raise UsageError("--listen unix: needs a socket path")
        return "unix", path
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise UsageError(f"--listen must be HOST:PORT or unix:PATH, not {value!r}")
    return host.strip("[]"), int(port)


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "arx" / "keepmgr"


def run(args: argparse.Namespace) -> int:
    host, port = parse_listen(args.listen)
    if args.max_workload_mib <= 0:
        raise UsageError("--max-workload-mib must be positive")
    state_dir: Path = args.state_dir or default_state_dir()
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise UsageError(f"cannot use state directory {state_dir}: {exc}") from exc
    cache: Path | None = args.compile_cache or state_dir / "compile-cache"
    if cache is not None and str(cache) == "none":
        cache = None
    if cache is not None:
        try:
            cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise UsageError(f"cannot use compile cache {cache}: {exc}") from exc
    return asyncio.run(
        _serve(host, port, args.max_workload_mib << 20, str(cache) if cache else None)
    )


async def _serve(
    host: str, port: str | int, max_workload_bytes: int, compile_cache: str | None
) -> int:
    # Keeps on a Unix-socket keepmgr serve their workload on loopback.
    keep_host = "127.0.0.1" if host == "unix" else host
    registry = KeepRegistry(
        listen_host=keep_host, max_workload_bytes=max_workload_bytes, compile_cache=compile_cache
    )
    runner = web.AppRunner(make_app(registry), access_log=None, handle_signals=False)
    await runner.setup()
    site: web.BaseSite
    if host == "unix":
        site = web.UnixSite(runner, str(port))
    else:
        site = web.TCPSite(runner, host, int(port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await site.start()
        except OSError as exc:
            print(f"arx: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
            return 125
        url = f"unix:{port}" if host == "unix" else _site_url(site)
        # One line on stdout that scripts (and ``arx run``) wait for.
        print(f"arx keepmgr listening on {url}", flush=True)
        await stop.wait()
    finally:
        await registry.shutdown()
        await runner.cleanup()
        if host == "unix":
            with contextlib.suppress(OSError):
                os.unlink(str(port))
    return 0


def _site_url(site: web.BaseSite) -> str:
    server = site._server  # aiohttp exposes no public accessor for the bound port
    sockets = getattr(server, "sockets", None) or []
    host, port = sockets[0].getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"
