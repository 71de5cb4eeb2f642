"""Keeps as keepmgr sees them: a registry of supervised keepldr processes.

Each Keep is one keepldr child in its own process group (so that stopping a
Keep stops everything it started) and, where the host allows, its own memory
and pids cgroups (``arx.keepmgr.confine``), talking over a pipe pair with a
CBOR sequence of frames. A reader task per Keep turns frames into lifecycle
events (``arx.protocol.lifecycle``) and answers to the one request in flight;
when the pipe closes it reaps the process, kills whatever is left in the
Keep's process group and cgroups, removes the cgroups, and marks a Keep that
did not report its exit as failed.

Every state change is recorded in the state database (``arx.keepmgr.store``).
When keepmgr starts it reads the Keeps it had. The rule for Keeps that were
live when keepmgr went away: they are stopped (their control pipes died with
the old keepmgr, so nothing could drive them on, and the kernel's
parent-death signal has normally killed them already) and reported as failed
with ``RESTART_MESSAGE``; none is forgotten and none is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field

from arx import sim
from arx.errors import (
    ArxError,
    BackendError,
    CapacityError,
    ForbiddenError,
    KeepFailedError,
    KeepStateError,
    QuotaError,
    RemoteError,
    StateError,
    UnknownKeepError,
)
from arx.keepldr.backends import get_backend
from arx.keepmgr.confine import Cgroups, KeepCgroups, KeepLimits, oom_killed
from arx.keepmgr.metrics import Metrics
from arx.keepmgr.store import Store
from arx.protocol import lifecycle
from arx.protocol.messages import (
    AttestRequest,
    AttestResponse,
    ErrorBody,
    Exited,
    ExitStatus,
    FrameDecoder,
    KeepExit,
    KeepInfo,
    KeepStateName,
    Message,
    ProvisionRequest,
    ProvisionResponse,
    Ready,
    WorkloadStarted,
    encode_frame,
    is_keep_id,
)

log = logging.getLogger("arx.keepmgr")

# Live Keeps one keepmgr supervises at once. An idle Keep is two Python
# processes costing about 60 MiB together, so 256 fit a 24 GiB host with room
# to spare; operators size it with --max-keeps.
DEFAULT_MAX_KEEPS = 256
# Live Keeps one client (one API token) may hold, so that one client cannot
# take the whole host.
DEFAULT_MAX_KEEPS_PER_CLIENT = 64
# Keeps starting at once. Starting a Keep is two Python start-ups; more in
# parallel only slows every one of them on a small host, so further creates
# wait their turn (bounded by the API's own cap on requests in flight).
MAX_STARTING_KEEPS = 8
# Per-Keep limits the kernel enforces (keepldr and wasmldr together). Memory:
# compiling a large module is the peak (Yosys's 69 MB of Wasm takes 1.3 GiB to
# compile), so 2 GiB; a limit is a ceiling, not a reservation, and an idle
# Keep uses under 30 MiB.
DEFAULT_KEEP_MEMORY_BYTES = 2 << 30
# Tasks, threads included: wasmldr runs one thread per workload connection
# (at most arx.wasmldr.server.MAX_CONNECTIONS) plus output pumps.
DEFAULT_KEEP_PIDS = 128
DEFAULT_KEEP_NOFILE = 256
# Finished Keeps kept for ``arx keeps list``; the oldest are forgotten first.
MAX_FINISHED_KEEPS = 256
# A Keep no client has provisioned by then was abandoned (its client went
# away between steps); it is stopped and failed so that it frees its quota.
DEFAULT_PROVISION_TIMEOUT = 120.0
# A Keep that has not said "ready" by then is stuck; it is stopped and failed.
KEEP_START_TIMEOUT = 30.0
# The longest keepmgr waits for a Keep to answer a relayed request.
KEEP_REQUEST_TIMEOUT = 30.0
# Between SIGTERM and SIGKILL when stopping a Keep's process group.
STOP_GRACE = 2.0
# A client deletes its Keep as soon as it has the workload's result, which
# the Keep sends it just before it reports the exit to keepmgr; a delete of a
# running Keep waits this long for that report, so that a finished Keep is
# recorded as exited rather than killed.
EXIT_REPORT_GRACE = 0.5
# What a client is told to wait before asking again for a Keep when a Keep
# limit is reached: Keeps usually end within seconds of their workload.
KEEP_LIMIT_RETRY_AFTER = 5
# The only environment variables a Keep's processes get from keepmgr's: none
# can carry a secret. ARX_TEST_MARKER lets the test suite find every process
# it started.
KEEP_ENV_PASSTHROUGH = (
    "PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "ARX_TEST_MARKER",
)  # fmt: skip
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
RESTART_MESSAGE = "keepmgr restarted while the Keep was live; the Keep was stopped"
SHUTDOWN_MESSAGE = "keepmgr shut down while the Keep was live"
OPERATOR = "*operator*"


def keep_tmpdir(keep_id: str) -> str:
    """Where a Keep's TMPDIR is: derived from its id, so a restarted keepmgr finds it."""
    return os.path.join(tempfile.gettempdir(), f"arx-{keep_id}")


def _make_keep_tmpdir(keep_id: str) -> str:
    path = keep_tmpdir(keep_id)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError as exc:
        # Keep ids are 128 random bits: an existing directory is someone
        # else's doing, and the Keep must not write into it.
        raise BackendError(f"the Keep's temporary directory {path} already exists") from exc
    return path


def keep_environment(tmpdir: str) -> dict[str, str]:
    env = {name: os.environ[name] for name in KEEP_ENV_PASSTHROUGH if name in os.environ}
    env.setdefault("PATH", DEFAULT_PATH)
    # A temporary directory of the Keep's own, which keepmgr removes when the
    # Keep ends: a Keep killed outright (SIGKILL, out of memory) cannot clean
    # up the workload's files itself.
    env["TMPDIR"] = tmpdir
    # The sim backend signs with the chain keepmgr itself sees (the same one
    # `arx platform info` reports available), wherever keepmgr's own
    # environment says it is; a path, not a secret.
    env["ARX_SIM_DIR"] = str(sim.sim_dir())
    return env


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryConfig:
    listen_host: str
    max_workload_bytes: int
    max_keeps: int = DEFAULT_MAX_KEEPS
    max_keeps_per_client: int = DEFAULT_MAX_KEEPS_PER_CLIENT
    limits: KeepLimits = field(
        default_factory=lambda: KeepLimits(
            memory_bytes=DEFAULT_KEEP_MEMORY_BYTES,
            pids=DEFAULT_KEEP_PIDS,
            nofile=DEFAULT_KEEP_NOFILE,
        )
    )
    # The uid and gid wasmldr runs as (when keepmgr runs as root).
    keep_user: tuple[int, int] | None = None
    provision_timeout: float = DEFAULT_PROVISION_TIMEOUT
    # The longest a Keep may live from its creation (0: no limit). A Keep
    # ends by itself when its client leaves mid-run; this bounds a client
    # that stays connected with a workload that never ends.
    max_lifetime: float = 0.0
    # Whether wasmldr runs in its own user, pid, mount, ipc, uts and network namespaces.
    namespaces: bool = False
    # Where Keeps on insecure backends keep compiled modules (None: no cache).
    compile_cache: str | None = None


@dataclass(eq=False)
class Keep:
    id: str
    backend: str
    created_at: int
    owner: str
    process: asyncio.subprocess.Process | None = None
    cgroups: KeepCgroups | None = None
    # The Keep's own TMPDIR, removed by keepmgr when the Keep ends.
    tmpdir: str | None = None
    state: KeepStateName = "starting"
    workload_port: int | None = None
    exit: KeepExit | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    request_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pending: asyncio.Future[Message] | None = None
    reader: asyncio.Task[None] | None = None
    # Set once the Keep is provisioned or over: the abandonment watch ends.
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    watch: asyncio.Task[None] | None = None
    # Why keepmgr is stopping the Keep, so that the reader, which sees the
    # processes end first, reports that rather than a crash.
    stopping: tuple[str, ExitStatus, str] | None = None

    def info(self) -> KeepInfo:
        return KeepInfo(
            id=self.id,
            backend=self.backend,
            state=self.state,
            created_at=self.created_at,
            workload_port=self.workload_port,
            exit=self.exit,
        )

    def move(self, event: lifecycle.Event) -> None:
        self.state = lifecycle.next_state(self.state, event)
        if self.state in lifecycle.TERMINAL_STATES:
            self.finished.set()
        if self.state != "starting":
            self.ready.set()
        if self.state not in ("starting", "ready", "attested"):
            self.settled.set()


class KeepRegistry:
    def __init__(
        self,
        config: RegistryConfig,
        *,
        store: Store,
        cgroups: Cgroups | None,
        metrics: Metrics | None = None,
    ) -> None:
        self._keeps: dict[str, Keep] = {}
        self.config = config
        self._store = store
        self._cgroups = cgroups if cgroups is not None and cgroups.available else None
        self._metrics = metrics
        self._starting = asyncio.Semaphore(MAX_STARTING_KEEPS)

    # -- queries ----------------------------------------------------------

    def list(self, owner: str = OPERATOR) -> list[Keep]:
        keeps = sorted(self._keeps.values(), key=lambda k: (k.created_at, k.id))
        return [k for k in keeps if owner in (OPERATOR, k.owner)]

    def get(self, keep_id: str, owner: str = OPERATOR) -> Keep:
        keep = self._keeps.get(keep_id) if is_keep_id(keep_id) else None
        if keep is None:
            raise UnknownKeepError(f"no Keep with id {keep_id!r}")
        if owner not in (OPERATOR, keep.owner):
            raise ForbiddenError(f"the Keep {keep_id} belongs to another client")
        return keep

    def live_count(self, owner: str | None = None) -> int:
        return sum(
            1
            for k in self._keeps.values()
            if k.state in lifecycle.LIVE_STATES and owner in (None, k.owner)
        )

    def counts_by_state(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for k in self._keeps.values():
            counts[k.state] = counts.get(k.state, 0) + 1
        return counts

    # -- restart -------------------------------------------------------------

    async def recover(self) -> int:
        """Loads the recorded Keeps; stops and fails those that were live. Returns their count."""
        stopped = 0
        for row in self._store.keeps():
            info = row.info
            keep = Keep(
                id=info.id,
                backend=info.backend,
                created_at=info.created_at,
                owner=row.owner,
                state=info.state,
                workload_port=info.workload_port,
                exit=info.exit,
            )
            keep.ready.set()
            self._keeps[keep.id] = keep
            # A keepmgr killed outright could not remove the Keep's files.
            await asyncio.to_thread(shutil.rmtree, keep_tmpdir(keep.id), True)
            leftovers = self._cgroups.existing(keep.id) if self._cgroups else None
            if leftovers is not None:
                await asyncio.to_thread(leftovers.remove)
            if keep.state in lifecycle.LIVE_STATES:
                if row.pid is not None:
                    _kill_group_if_ours(row.pid, keep.id)
                self._fail(keep, RESTART_MESSAGE, reason="keepmgr_restart")
                stopped += 1
            else:
                keep.finished.set()
        return stopped

    # -- lifecycle ----------------------------------------------------------

    async def create(self, backend_name: str, owner: str) -> Keep:
        get_backend(backend_name)  # Unknown or unavailable backends fail here.
        if self.live_count() >= self.config.max_keeps:
            raise CapacityError(
                f"this host already runs its maximum of {self.config.max_keeps} Keeps",
                limit="keeps_per_host",
                retry_after=KEEP_LIMIT_RETRY_AFTER,
            )
        if owner != OPERATOR and self.live_count(owner) >= self.config.max_keeps_per_client:
            raise QuotaError(
                f"this client already has its maximum of {self.config.max_keeps_per_client} "
                "live Keeps on this host",
                limit="keeps_per_client",
                retry_after=KEEP_LIMIT_RETRY_AFTER,
            )
        self._forget_old()
        keep = Keep(
            id="k-" + secrets.token_hex(16),
            backend=backend_name,
            created_at=int(time.time()),
            owner=owner,
        )
        # Recorded before anything starts: a Keep the state cannot hold is
        # refused (to this client only) rather than run unrecorded.
        self._store.save_keep(keep.info(), owner, None)
        self._keeps[keep.id] = keep
        try:
            async with self._starting:
                if keep.state == "starting":
                    await self._start(keep)
        except BaseException:
            await self._stop_and_fail(keep, "the Keep could not be started", reason="start_failed")
            raise
        if keep.state == "failed":
            raise KeepFailedError(
                f"the Keep failed to start: {keep.exit.message if keep.exit else 'unknown'}"
            )
        keep.watch = asyncio.create_task(self._watch(keep), name=f"keep-watch-{keep.id}")
        if self._metrics:
            self._metrics.creations.inc()
        return keep

    async def _start(self, keep: Keep) -> None:
        config = self.config
        if self._cgroups is not None:
            try:
                keep.cgroups = self._cgroups.create(keep.id, config.limits)
            except OSError as exc:
                raise BackendError(f"cannot create the Keep's cgroups: {exc}") from exc
        command = [
            sys.executable,
            "-m",
            "arx.keepldr.main",
            "--backend",
            keep.backend,
            "--keep-id",
            keep.id,
            "--listen-host",
            config.listen_host,
            "--max-workload-bytes",
            str(config.max_workload_bytes),
            "--parent-pid",
            str(os.getpid()),
            # The same bound after provisioning: a client that provisioned
            # the Keep and then vanished must not hold it longer.
            "--workload-wait",
            str(config.provision_timeout),
            "--nofile",
            str(config.limits.nofile),
            "--memory-bytes",
            str(config.limits.memory_bytes),
        ]
        if keep.cgroups is not None:
            for path in keep.cgroups.paths:
                command += ["--cgroup", str(path)]
        if config.namespaces:
            command.append("--namespaces")
        if config.compile_cache is not None:
            command += ["--compile-cache", config.compile_cache]
        if config.keep_user is not None:
            command += ["--keep-uid", str(config.keep_user[0])]
            command += ["--keep-gid", str(config.keep_user[1])]
        keep.tmpdir = _make_keep_tmpdir(keep.id)
        if config.keep_user is not None:
            os.chown(keep.tmpdir, *config.keep_user)
        try:
            keep.process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                # Its own process group: stopping the Keep signals the group,
                # which holds keepldr and everything it started.
                start_new_session=True,
                close_fds=True,
                env=keep_environment(keep.tmpdir),
                cwd="/",
            )
        except OSError as exc:
            raise BackendError(f"cannot start keepldr: {exc}") from exc
        if keep.cgroups is not None:
            # keepldr joins them itself before it starts anything; this makes
            # sure of it from the outside as well.
            with contextlib.suppress(OSError):
                keep.cgroups.add(keep.process.pid)
        self._persist(keep)
        keep.reader = asyncio.create_task(self._read(keep), name=f"keep-reader-{keep.id}")
        try:
            await asyncio.wait_for(asyncio.shield(keep.ready.wait()), KEEP_START_TIMEOUT)
        except TimeoutError:
            await self._stop_and_fail(
                keep,
                f"the Keep did not become ready within {KEEP_START_TIMEOUT:.0f} s",
                reason="start_timeout",
            )

    async def _watch(self, keep: Keep) -> None:
        timeout = self.config.provision_timeout
        born = time.monotonic()
        try:
            await asyncio.wait_for(keep.settled.wait(), timeout)
        except TimeoutError:
            if keep.state in lifecycle.LIVE_STATES:
                await self._stop_and_fail(
                    keep,
                    f"no client provisioned the Keep within {timeout:g} s",
                    reason="provision_timeout",
                )
            return
        lifetime = self.config.max_lifetime
        if lifetime <= 0:
            return
        try:
            left = max(0.0, lifetime - (time.monotonic() - born))
            await asyncio.wait_for(keep.finished.wait(), left)
        except TimeoutError:
            if keep.state in lifecycle.LIVE_STATES:
                await self._stop_and_fail(
                    keep,
                    f"the Keep reached its maximum lifetime of {lifetime:g} s",
                    status="killed",
                    reason="lifetime",
                )

    async def request(
        self, keep_id: str, msg: AttestRequest | ProvisionRequest, owner: str = OPERATOR
    ) -> Message:
        """Relays one request to the Keep and returns its answer (or raises its error)."""
        keep = self.get(keep_id, owner)
        kind: lifecycle.Request = "attest" if isinstance(msg, AttestRequest) else "provision"
        async with keep.request_lock:
            lifecycle.check_request(keep.state, kind)
            loop = asyncio.get_running_loop()
            keep.pending = loop.create_future()
            try:
                self._send(keep, msg)
                answer = await asyncio.wait_for(asyncio.shield(keep.pending), KEEP_REQUEST_TIMEOUT)
            except TimeoutError:
                raise KeepFailedError(
                    f"the Keep did not answer within {KEEP_REQUEST_TIMEOUT:.0f} s"
                ) from None
            finally:
                keep.pending = None
        if isinstance(answer, ErrorBody):
            raise RemoteError(answer.error, f"the Keep refused: {answer.message}")
        if isinstance(answer, AttestResponse) and kind == "attest":
            keep.move("attested")
        elif isinstance(answer, ProvisionResponse) and kind == "provision":
            keep.workload_port = answer.workload_port
            keep.move("provisioned")
        else:
            raise KeepFailedError(f"the Keep answered {kind} with {type(answer).__name__}")
        self._persist(keep)
        return answer

    async def delete(self, keep_id: str, owner: str = OPERATOR) -> Keep:
        keep = self.get(keep_id, owner)
        if keep.watch is not None:
            keep.watch.cancel()
        if keep.state in ("provisioned", "running"):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(keep.finished.wait()), EXIT_REPORT_GRACE)
        await self._stop_and_fail(keep, "deleted while live", status="killed", reason="deleted")
        self._store.delete_keep(keep.id)
        self._keeps.pop(keep.id, None)
        return keep

    async def shutdown(self) -> None:
        """Stops every Keep this keepmgr started (SIGTERM or SIGINT to keepmgr)."""
        keeps = list(self._keeps.values())
        watches = [k.watch for k in keeps if k.watch is not None]
        for watch in watches:
            watch.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
        await asyncio.gather(
            *(
                self._stop_and_fail(k, SHUTDOWN_MESSAGE, status="killed", reason="shutdown")
                for k in keeps
            )
        )
        # Every reader must have released its Keep's resources before
        # keepmgr exits; one left pending would be cancelled by the loop's end.
        readers = [k.reader for k in keeps if k.reader is not None]
        await asyncio.gather(*readers, return_exceptions=True)
        if self._cgroups is not None:
            self._cgroups.remove_parents()

    # -- internals ------------------------------------------------------------

    def _persist(self, keep: Keep) -> None:
        """Records a Keep's state; a failure is logged, since the Keep itself is fine."""
        pid = keep.process.pid if keep.process and keep.process.returncode is None else None
        try:
            self._store.save_keep(keep.info(), keep.owner, pid)
        except StateError as exc:
            log.error("cannot record Keep %s: %s", keep.id, exc.message)

    def _send(self, keep: Keep, msg: Message) -> None:
        stdin = keep.process.stdin if keep.process else None
        if stdin is None or stdin.is_closing():
            raise KeepFailedError("the Keep's control channel is closed")
        stdin.write(encode_frame(msg))

    def _fail(
        self, keep: Keep, message: str, *, status: ExitStatus = "failed", reason: str
    ) -> None:
        if keep.state in lifecycle.LIVE_STATES:
            keep.exit = KeepExit(status=status, message=message)
            keep.move("crashed")
            if self._metrics:
                self._metrics.failures.labels(reason).inc()
            log.info("Keep %s failed (%s): %s", keep.id, reason, message)
            self._persist(keep)
        keep.ready.set()
        keep.finished.set()
        keep.settled.set()
        if keep.pending is not None and not keep.pending.done():
            keep.pending.set_exception(KeepFailedError(message))

    async def _read(self, keep: Keep) -> None:
        process = keep.process
        assert process is not None
        stdout = process.stdout
        assert stdout is not None
        decoder = FrameDecoder()
        try:
            while data := await stdout.read(64 * 1024):
                decoder.feed(data)
                while (msg := decoder.next_message()) is not None:
                    self._on_message(keep, msg)
        except ArxError as exc:
            # A Keep that breaks the control protocol is not trusted to go on.
            await self._stop_processes(keep)
            self._fail(
                keep, f"the Keep broke the control protocol: {exc.message}", reason="protocol"
            )
        code = await process.wait()
        await self._cleanup(keep)
        if keep.state in lifecycle.LIVE_STATES:
            if keep.stopping is not None:
                message, status, reason = keep.stopping
                self._fail(keep, message, status=status, reason=reason)
            elif keep.cgroups is not None and oom_killed(keep.cgroups):
                limit = self.config.limits.memory_bytes >> 20
                self._fail(
                    keep,
                    f"the Keep exceeded its memory limit of {limit} MiB and was killed",
                    status="killed",
                    reason="memory_limit",
                )
            else:
                self._fail(
                    keep,
                    f"the Keep's processes ended unexpectedly (exit status {code})",
                    reason="crashed",
                )
        await self._release_resources(keep)

    async def _release_resources(self, keep: Keep) -> None:
        """Removes what the host made for a Keep that has ended: its TMPDIR and cgroups."""
        tmpdir, keep.tmpdir = keep.tmpdir, None
        if tmpdir is not None:
            await asyncio.to_thread(shutil.rmtree, tmpdir, True)
        cgroups, keep.cgroups = keep.cgroups, None
        if cgroups is not None:
            # The OOM check above reads them; only now do they go.
            left = await asyncio.to_thread(cgroups.remove)
            if left:
                log.error("cannot remove cgroups of Keep %s: %s", keep.id, left)

    async def _cleanup(self, keep: Keep) -> None:
        """After keepldr exited: nothing of the Keep may outlive it."""
        process = keep.process
        if process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if keep.cgroups is not None:
            await asyncio.to_thread(keep.cgroups.kill_all)

    def _on_message(self, keep: Keep, msg: Message) -> None:
        if isinstance(msg, Ready):
            keep.move("ready")
        elif isinstance(msg, WorkloadStarted):
            keep.move("workload_started")
        elif isinstance(msg, Exited):
            keep.exit = msg.exit
            keep.move("exited")
        elif isinstance(msg, AttestResponse | ProvisionResponse | ErrorBody):
            if keep.pending is None or keep.pending.done():
                raise KeepStateError(f"unsolicited {type(msg).__name__} from the Keep")
            keep.pending.set_result(msg)
            return
        else:
            raise KeepStateError(f"unexpected {type(msg).__name__} from the Keep")
        self._persist(keep)

    async def _stop_and_fail(
        self, keep: Keep, message: str, *, status: ExitStatus = "failed", reason: str
    ) -> None:
        """Stops a Keep's processes; a Keep still live is then failed for ``reason``."""
        if keep.state in lifecycle.LIVE_STATES and keep.stopping is None:
            keep.stopping = (message, status, reason)
        await self._stop_processes(keep)
        self._fail(keep, message, status=status, reason=reason)

    async def _stop_processes(self, keep: Keep) -> None:
        process = keep.process
        if process is None:
            await self._release_resources(keep)
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        # keepldr may be gone while its group lives on (its child ignored
        # SIGTERM); the group id is keepldr's pid, so make sure of the rest.
        await self._cleanup(keep)
        if keep.reader is not None and keep.reader is not asyncio.current_task():
            # Shielded: a waiter that is itself cancelled (a watch task at
            # shutdown) must not cancel the reader while it removes the
            # Keep's TMPDIR and cgroups.
            await asyncio.shield(keep.reader)
        elif keep.reader is None:
            await self._release_resources(keep)

    def _forget_old(self) -> None:
        finished = [k for k in self.list() if k.state in lifecycle.TERMINAL_STATES]
        for keep in finished[: max(0, len(finished) - MAX_FINISHED_KEEPS + 1)]:
            self._keeps.pop(keep.id, None)
            with contextlib.suppress(StateError):
                self._store.delete_keep(keep.id)


def _kill_group_if_ours(pid: int, keep_id: str) -> None:
    """Kills a recorded keepldr's process group if that pid still is that Keep's keepldr.

    The pid may have been reused since; the Keep's id on the command line
    tells the process apart from any other.
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().split(b"\0")
    except OSError:
        return
    if keep_id.encode() in cmdline:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
