"""``arx keepmgr``: serve the host API until SIGTERM or SIGINT, then stop every Keep.

``arx keepmgr token create|list|revoke`` manages the API tokens in the state
directory; ``arx keepmgr --check-config`` checks the configuration and exits.

Authentication and transport security (docs/keepmgr.md):

* A Unix socket is served without authentication by default: whoever can
  open the socket file (0600, in a directory the operator chose) is the
  operator. ``arx run`` relies on this for its private keepmgr.
* TCP needs API tokens (``--auth tokens``, the default) unless the operator
  says ``--auth none``, which is accepted on loopback addresses only.
* TCP beyond loopback is served over TLS only: with ``--tls-cert``/
  ``--tls-key``, or else a self-signed certificate keepmgr makes in its state
  directory, whose SHA-256 fingerprint clients pin (``--tls-fingerprint``).
  ``--tls`` turns TLS on for loopback too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import logging
import os
import pwd
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

from aiohttp import web

from arx.errors import ArxError, StateError, UsageError
from arx.keepmgr import keeps
from arx.keepmgr.confine import (
    DEFAULT_CGROUP_PARENT,
    MAX_KEEP_CPUS,
    MIN_KEEP_CPUS,
    Cgroups,
    KeepLimits,
    namespaces_work,
)
from arx.keepmgr.keeps import KeepRegistry, RegistryConfig
from arx.keepmgr.listener import (
    DEFAULT_MAX_CONNECTIONS,
    HEADER_TIMEOUT,
    KEEPALIVE_TIMEOUT,
    MAX_FIELD_SIZE,
    MAX_LINE_SIZE,
    ConnectionGuard,
)
from arx.keepmgr.metrics import Metrics
from arx.keepmgr.server import (
    DEFAULT_MAX_REQUESTS,
    ApiState,
    AuthPolicy,
    JsonLogFormatter,
    make_app,
    make_metrics_app,
)
from arx.keepmgr.store import Store
from arx.protocol.messages import MAX_WORKLOAD_BYTES

DEFAULT_LISTEN = "127.0.0.1:8443"
# Between SIGTERM and the end: Keeps get STOP_GRACE each (in parallel), open
# requests get what is left of this.
SHUTDOWN_DEADLINE = 10.0
# Pending connections the kernel queues before keepmgr accepts them.
LISTEN_BACKLOG = 512
TLS_DIR = "tls"
SELF_SIGNED_LIFETIME = datetime.timedelta(days=825)
# How long the check that the Keep account can run arx may take.
KEEP_USER_CHECK_TIMEOUT = 30.0
log = logging.getLogger("arx.keepmgr")


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
        "--auth",
        choices=("tokens", "none"),
        default=None,
        help="tokens: every request needs an API token; none: no authentication "
        "(Unix sockets and loopback only). Default: none on a Unix socket, tokens on TCP",
    )
    parser.add_argument("--tls", action="store_true", help="serve TLS even on loopback")
    parser.add_argument("--tls-cert", type=Path, metavar="PEM", help="TLS certificate chain")
    parser.add_argument("--tls-key", type=Path, metavar="PEM", help="TLS private key")
    parser.add_argument(
        "--compile-cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="where Keeps on insecure backends keep compiled modules "
        "(default: STATE_DIR/compile-cache; 'none' disables it)",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-keeps", type=int, default=keeps.DEFAULT_MAX_KEEPS, metavar="N",
        help=f"live Keeps on this host (default {keeps.DEFAULT_MAX_KEEPS})",
    )  # fmt: skip
    limits.add_argument(
        "--max-keeps-per-client", type=int, default=keeps.DEFAULT_MAX_KEEPS_PER_CLIENT,
        metavar="N",
        help=f"live Keeps per API token (default {keeps.DEFAULT_MAX_KEEPS_PER_CLIENT})",
    )  # fmt: skip
    limits.add_argument(
        "--max-requests", type=int, default=DEFAULT_MAX_REQUESTS, metavar="N",
        help=f"API requests handled at once (default {DEFAULT_MAX_REQUESTS})",
    )  # fmt: skip
    limits.add_argument(
        "--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS, metavar="N",
        help=f"API connections open at once (default {DEFAULT_MAX_CONNECTIONS})",
    )  # fmt: skip
    limits.add_argument(
        "--keep-memory-mib", type=int, default=keeps.DEFAULT_KEEP_MEMORY_BYTES >> 20,
        metavar="MIB",
        help="memory per Keep, enforced by its cgroup (default "
        f"{keeps.DEFAULT_KEEP_MEMORY_BYTES >> 20})",
    )  # fmt: skip
    limits.add_argument(
        "--keep-pids", type=int, default=keeps.DEFAULT_KEEP_PIDS, metavar="N",
        help=f"tasks (processes and threads) per Keep (default {keeps.DEFAULT_KEEP_PIDS})",
    )  # fmt: skip
    limits.add_argument(
        "--keep-cpus", type=float, default=0.0, metavar="N",
        help="CPU time per Keep, in CPUs (e.g. 0.5; cgroup v1 cpu controller); "
        "default 0: no limit",
    )  # fmt: skip
    limits.add_argument(
        "--keep-user", default=None, metavar="USER",
        help="unprivileged account wasmldr runs as (keepmgr must run as root, and the "
        "account must be able to run this Python and arx); default: keepmgr's own",
    )  # fmt: skip
    limits.add_argument(
        "--namespaces", choices=("auto", "on", "off"), default="auto",
        help="run wasmldr in its own user, pid, mount, ipc, uts and network namespaces "
        "(auto: where unshare works; default auto)",
    )  # fmt: skip
    limits.add_argument(
        "--cgroup-parent", default=DEFAULT_CGROUP_PARENT, metavar="NAME",
        help=f"cgroup v1 directory the Keeps' cgroups go under (default {DEFAULT_CGROUP_PARENT})",
    )  # fmt: skip
    limits.add_argument(
        "--provision-timeout", type=float, default=keeps.DEFAULT_PROVISION_TIMEOUT,
        metavar="SECONDS",
        help="a Keep no client provisioned within this time, or whose client sent no "
        "workload within this time after provisioning, is stopped (default "
        f"{keeps.DEFAULT_PROVISION_TIMEOUT:g})",
    )  # fmt: skip
    limits.add_argument(
        "--max-lifetime", type=float, default=0.0, metavar="SECONDS",
        help="stop a Keep this long after its creation, whatever it does (default 0: "
        "no limit)",
    )  # fmt: skip
    limits.add_argument(
        "--header-timeout", type=float, default=HEADER_TIMEOUT, metavar="SECONDS",
        help="a connection must send each request's headers within this time "
        f"(default {HEADER_TIMEOUT:g})",
    )  # fmt: skip
    ops = parser.add_argument_group("operations")
    ops.add_argument(
        "--metrics-listen", metavar="HOST:PORT", help="serve Prometheus metrics at /metrics here"
    )
    ops.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log lines on stderr"
    )
    ops.add_argument(
        "--check-config", action="store_true", help="check the configuration and state, then exit"
    )
    sub = parser.add_subparsers(dest="keepmgr_command", metavar="ACTION")
    token = sub.add_parser("token", help="manage API tokens", description="manage API tokens")
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = token_sub.add_parser("create", help="issue a token (printed once)")
    create.add_argument("--name", required=True, help="who the token is for")
    create.add_argument("--operator", action="store_true", help="may see and delete every Keep")
    token_sub.add_parser("list", help="list tokens (never their secrets)")
    revoke = token_sub.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("token_id", metavar="TOKEN_ID")
    for cmd in (create, token_sub.choices["list"], revoke):
        cmd.add_argument("--state-dir", type=Path, default=None, help="keepmgr's state directory")


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


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "arx" / "keepmgr"


def _state_dir(args: argparse.Namespace) -> Path:
    state_dir: Path = args.state_dir or default_state_dir()
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise UsageError(f"cannot use state directory {state_dir}: {exc}") from exc
    return state_dir


def run(args: argparse.Namespace) -> int:
    if args.keepmgr_command == "token":
        return _token(args)
    config = Config(args)
    if args.check_config:
        print(config.describe())
        config.cgroups.remove_parents()
        return 0
    return asyncio.run(_serve(config))


def _token(args: argparse.Namespace) -> int:
    store = Store.open(_state_dir(args))
    try:
        action = args.token_command
        if action == "create":
            row, token = store.create_token(args.name, "operator" if args.operator else "client")
            print(token)
            print(f"arx: token {row.id} ({row.role}) for {row.name!r}; it is shown only once",
                  file=sys.stderr)  # fmt: skip
        elif action == "list":
            for t in store.tokens():
                when = datetime.datetime.fromtimestamp(t.created_at, datetime.UTC)
                status = "revoked" if t.revoked_at is not None else "live"
                print(f"{t.id}  {t.role:8}  {status:7}  {when:%Y-%m-%d %H:%M:%SZ}  {t.name}")
        elif not store.revoke_token(args.token_id):
            raise UsageError(f"no live token with id {args.token_id!r}")
        else:
            print(f"revoked {args.token_id}")
    finally:
        store.close()
    return 0


def _compile_cache(option: Path | None, state_dir: Path) -> Path | None:
    """The compile cache directory (made 0700), or ``None`` when disabled with ``none``."""
    if option is not None and str(option) == "none":
        return None
    cache = option or state_dir / "compile-cache"
    try:
        cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise UsageError(f"cannot use compile cache {cache}: {exc}") from exc
    return cache


class Config:
    """Everything ``arx keepmgr`` was told, checked, before anything listens."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.host, self.port = parse_listen(args.listen)
        self.unix = self.host == "unix"
        for name in (
            "max_workload_mib", "max_keeps", "max_keeps_per_client", "max_requests",
            "max_connections", "keep_memory_mib", "keep_pids", "provision_timeout",
            "header_timeout",
        ):  # fmt: skip
            if getattr(args, name) <= 0:
                raise UsageError(f"--{name.replace('_', '-')} must be positive")
        # Everything that needs only the arguments is checked before anything
        # is made on the host: a refused configuration leaves nothing behind.
        auth = args.auth or ("none" if self.unix else "tokens")
        if auth == "none" and not self.unix and not is_loopback(self.host):
            raise UsageError("--auth none is allowed on Unix sockets and loopback addresses only")
        self.auth = AuthPolicy(tokens=auth == "tokens")
        if args.max_lifetime < 0:
            raise UsageError("--max-lifetime must be 0 (no limit) or positive")
        if bool(args.tls_cert) != bool(args.tls_key):
            raise UsageError("--tls-cert and --tls-key go together")
        cpus: float = args.keep_cpus
        if not (cpus == 0 or MIN_KEEP_CPUS <= cpus <= MAX_KEEP_CPUS):
            raise UsageError(
                f"--keep-cpus must be 0 (no limit) or from {MIN_KEEP_CPUS:g} to {MAX_KEEP_CPUS:g}"
            )
        self.state_dir = _state_dir(args)
        self.compile_cache = _compile_cache(args.compile_cache, self.state_dir)
        self.tls = not self.unix and (args.tls or bool(args.tls_cert) or not is_loopback(self.host))
        self.tls_cert: Path | None = args.tls_cert
        self.tls_key: Path | None = args.tls_key
        self.metrics_listen = parse_listen(args.metrics_listen) if args.metrics_listen else None
        if self.metrics_listen is not None and self.metrics_listen[0] == "unix":
            raise UsageError("--metrics-listen takes HOST:PORT")
        self.log_format: str = args.log_format
        self.max_requests: int = args.max_requests
        self.max_connections: int = args.max_connections
        self.header_timeout: float = args.header_timeout
        self.keep_user = _keep_user(args.keep_user)
        self.cgroup_parent: str = args.cgroup_parent
        # Opening the state checks it (corrupt or newer state stops here),
        # before anything is made on the host.
        store = Store.open(self.state_dir)
        self.has_tokens = store.has_tokens()
        store.close()
        try:
            self.cgroups = Cgroups(args.cgroup_parent, cpu=cpus > 0)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        if cpus > 0 and not self.cgroups.available:
            # Without the cpu controller nothing could enforce it: refuse
            # rather than run Keeps the operator believes are bounded.
            raise UsageError(f"--keep-cpus needs writable cgroups: {self.cgroups.reason}")
        self.namespaces_reason = ""
        if args.namespaces == "off":
            self.namespaces = False
            self.namespaces_reason = "off"
        else:
            why_not = namespaces_work()
            if why_not is not None and args.namespaces == "on":
                raise UsageError(f"--namespaces on: cannot make namespaces here: {why_not}")
            self.namespaces = why_not is None
            self.namespaces_reason = why_not or ""
        self.registry = RegistryConfig(
            # Keeps on a Unix-socket keepmgr serve their workload on loopback.
            listen_host="127.0.0.1" if self.unix else self.host,
            max_workload_bytes=args.max_workload_mib << 20,
            max_keeps=args.max_keeps,
            max_keeps_per_client=args.max_keeps_per_client,
            limits=KeepLimits(
                memory_bytes=args.keep_memory_mib << 20,
                pids=args.keep_pids,
                nofile=keeps.DEFAULT_KEEP_NOFILE,
                cpus=cpus,
            ),
            keep_user=self.keep_user,
            provision_timeout=args.provision_timeout,
            max_lifetime=args.max_lifetime,
            namespaces=self.namespaces,
            compile_cache=None if self.compile_cache is None else str(self.compile_cache),
        )
        self.ssl_context = self._ssl_context() if self.tls else None

    def _ssl_context(self) -> ssl.SSLContext:
        cert, key = self.tls_cert, self.tls_key
        if cert is None or key is None:
            cert, key = ensure_self_signed(self.state_dir / TLS_DIR)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(
                f"cannot load the TLS certificate {cert} and key {key}: {exc}"
            ) from exc
        self.tls_fingerprint = certificate_fingerprint(cert.read_bytes())
        return context

    def describe(self) -> str:
        where = f"unix:{self.port}" if self.unix else f"{self.host}:{self.port}"
        lines = [
            f"listen: {where} ({'TLS' if self.tls else 'plain'})",
            f"auth: {'tokens' if self.auth.tokens else 'none'}"
            + (" (no token issued yet)" if self.auth.tokens and not self.has_tokens else ""),
            f"state: {self.state_dir} (ok)",
            f"limits: {self.registry.max_keeps} Keeps, {self.registry.max_keeps_per_client} "
            f"per client, {self.max_requests} requests, {self.max_connections} connections",
            f"per Keep: {self.registry.limits.memory_bytes >> 20} MiB, "
            f"{self.registry.limits.pids} tasks, {self.registry.limits.nofile} files, "
            + (
                f"{self.registry.limits.cpus:g} CPUs"
                if self.registry.limits.cpus
                else "no CPU limit"
            ),
            "confinement: "
            + (
                f"cgroups v1 under {self.cgroup_parent}"
                if self.cgroups.available
                else f"rlimits only ({self.cgroups.reason})"
            )
            + (f", wasmldr as uid {self.keep_user[0]}" if self.keep_user else "")
            + (
                ", namespaces user+pid+mount+ipc+uts+net"
                if self.namespaces
                else f", no namespaces ({self.namespaces_reason})"
            ),
        ]
        if self.tls:
            lines.append(f"tls fingerprint: {self.tls_fingerprint}")
        return "\n".join(lines)


def _keep_user(name: str | None) -> tuple[int, int] | None:
    if name is None:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise UsageError(f"--keep-user: no account named {name!r}") from None
    if os.geteuid() != 0:
        raise UsageError("--keep-user needs keepmgr to run as root")
    # Refuse now rather than fail every Keep later: the account must be able
    # to start this interpreter and import wasmldr.
    try:
        check = subprocess.run(
            [sys.executable, "-c", "import arx.wasmldr.main"],
            user=entry.pw_uid,
            group=entry.pw_gid,
            extra_groups=[],
            env=keeps.keep_environment(tempfile.gettempdir()),
            cwd="/",
            capture_output=True,
            timeout=KEEP_USER_CHECK_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"--keep-user {name}: cannot run {sys.executable}: {exc}") from exc
    if check.returncode != 0:
        last = (check.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        raise UsageError(f"--keep-user {name} cannot run arx from {sys.executable}: {last}")
    return entry.pw_uid, entry.pw_gid


def certificate_fingerprint(pem: bytes) -> str:
    der = ssl.PEM_cert_to_DER_cert(pem.decode())
    return "sha256:" + hashlib.sha256(der).hexdigest()


def ensure_self_signed(directory: Path) -> tuple[Path, Path]:
    """keepmgr's own certificate, made once and kept in the state directory."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if cert.exists() and key.exists():
        return cert, key
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(mode=0o700, exist_ok=True)
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"arx keepmgr {socket.getfqdn()}")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + SELF_SIGNED_LIFETIME)
        .sign(private, hashes.SHA256())
    )
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _setup_logging(fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("arx keepmgr: %(levelname)s %(message)s"))
    logger = logging.getLogger("arx.keepmgr")
    logger.addHandler(handler)
    # Text logs are for people: only what needs attention. JSON logs are for
    # machines and carry one line per request.
    logger.setLevel(logging.INFO if fmt == "json" else logging.WARNING)
    logger.propagate = False


def _raise_nofile() -> None:
    """Each Keep costs keepmgr two pipes and each connection a socket; use the hard limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _serve(config: Config) -> int:
    _setup_logging(config.log_format)
    _raise_nofile()
    try:
        store = Store.open(config.state_dir)
    except StateError as exc:
        print(f"arx: {exc.message}", file=sys.stderr)
        return 125
    metrics = Metrics()
    registry = KeepRegistry(config.registry, store=store, cgroups=config.cgroups, metrics=metrics)
    metrics.watch_keeps(registry.counts_by_state)
    try:
        stopped = await registry.recover()
    except ArxError as exc:
        print(f"arx: {exc.message}", file=sys.stderr)
        store.close()
        return 125
    if stopped:
        log.warning("%d Keeps were live when keepmgr last stopped; they are stopped", stopped)
    state = ApiState(
        registry=registry,
        store=store,
        auth=config.auth,
        metrics=metrics,
        max_requests=config.max_requests,
    )
    runner = web.AppRunner(
        make_app(state),
        access_log=None,
        handle_signals=False,
        keepalive_timeout=KEEPALIVE_TIMEOUT,
        max_line_size=MAX_LINE_SIZE,
        max_field_size=MAX_FIELD_SIZE,
        shutdown_timeout=SHUTDOWN_DEADLINE,
    )
    await runner.setup()
    assert runner.server is not None
    guard = ConnectionGuard(
        runner.server,
        max_connections=config.max_connections,
        header_timeout=config.header_timeout,
        on_refused=lambda: metrics.refusals.labels("connections").inc(),
    )
    state.guard = guard
    metrics_runner: web.AppRunner | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server: asyncio.Server | None = None
    try:
        try:
            if config.unix:
                path = str(config.port)
                old_umask = os.umask(0o177)
                try:
                    server = await loop.create_unix_server(guard, path, backlog=LISTEN_BACKLOG)
                finally:
                    os.umask(old_umask)
                url = f"unix:{path}"
            else:
                server = await loop.create_server(
                    guard,
                    config.host,
                    int(config.port),
                    ssl=config.ssl_context,
                    # The header deadline starts after the handshake, so the
                    # handshake has one of its own.
                    ssl_handshake_timeout=config.header_timeout if config.ssl_context else None,
                    backlog=LISTEN_BACKLOG,
                    reuse_address=True,
                )
                url = _server_url(server, "https" if config.tls else "http")
            if config.metrics_listen is not None:
                metrics_runner = web.AppRunner(
                    make_metrics_app(metrics), access_log=None, handle_signals=False
                )
                await metrics_runner.setup()
                mhost, mport = config.metrics_listen
                site = web.TCPSite(metrics_runner, mhost, int(mport))
                try:
                    await site.start()
                except OSError as exc:
                    print(f"arx: cannot serve metrics on {mhost}:{mport}: {exc.strerror}",
                          file=sys.stderr)  # fmt: skip
                    return 125
        except OSError as exc:
            print(f"arx: cannot listen on {config.host}:{config.port}: {exc.strerror}",
                  file=sys.stderr)  # fmt: skip
            return 125
        if config.tls:
            print(f"arx keepmgr TLS fingerprint {config.tls_fingerprint}", file=sys.stderr)
        # One line on stdout that scripts (and ``arx run``) wait for.
        print(f"arx keepmgr listening on {url}", flush=True)
        await stop.wait()
        log.info("stopping: no new connections; stopping every Keep")
    finally:
        if server is not None:
            server.close()
        await registry.shutdown()
        await runner.cleanup()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        if config.unix:
            with contextlib.suppress(OSError):
                os.unlink(str(config.port))
        store.close()
    return 0


def _server_url(server: asyncio.Server, scheme: str) -> str:
    host, port = server.sockets[0].getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"
