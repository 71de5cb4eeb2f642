"""Keeps as keepmgr sees them: a registry of supervised keepldr processes.

Each Keep is one keepldr child in its own process group (so that stopping a
Keep stops everything it started), talking over a pipe pair with a CBOR
sequence of frames. A reader task per Keep turns frames into lifecycle events
(``arx.protocol.lifecycle``) and answers to the one request in flight; when
the pipe closes it reaps the process and marks a Keep that did not report its
exit as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field

from arx.errors import (
    ArxError,
    BackendError,
    CapacityError,
    KeepFailedError,
    KeepStateError,
    RemoteError,
    UnknownKeepError,
)
from arx.keepldr.backends import get_backend
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

# Live Keeps one keepmgr supervises at once: each is two Python processes
# (about 60 MiB together), so this bounds what a flood of creates can take.
MAX_LIVE_KEEPS = 64
# Finished Keeps kept for ``arx keeps list``; the oldest are forgotten first.
MAX_FINISHED_KEEPS = 256
# A Keep that has not said "ready" by then is stuck; it is stopped and failed.
KEEP_START_TIMEOUT = 30.0
# The longest keepmgr waits for a Keep to answer a relayed request.
KEEP_REQUEST_TIMEOUT = 30.0
# Between SIGTERM and SIGKILL when stopping a Keep's process group.
STOP_GRACE = 2.0


@dataclass(eq=False)
class Keep:
    id: str
    backend: str
    created_at: int
    process: asyncio.subprocess.Process
    state: KeepStateName = "starting"
    workload_port: int | None = None
    exit: KeepExit | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    request_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pending: asyncio.Future[Message] | None = None
    reader: asyncio.Task[None] | None = None

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


class KeepRegistry:
    def __init__(
        self, *, listen_host: str, max_workload_bytes: int, compile_cache: str | None = None
    ) -> None:
        self._keeps: dict[str, Keep] = {}
        self._listen_host = listen_host
        self._max_workload_bytes = max_workload_bytes
        self._compile_cache = compile_cache

    # -- queries ----------------------------------------------------------

    def list(self) -> list[Keep]:
        return sorted(self._keeps.values(), key=lambda k: (k.created_at, k.id))

    def get(self, keep_id: str) -> Keep:
        keep = self._keeps.get(keep_id) if is_keep_id(keep_id) else None
        if keep is None:
            raise UnknownKeepError(f"no Keep with id {keep_id!r}")
        return keep

    def live_count(self) -> int:
        return sum(1 for k in self._keeps.values() if k.state in lifecycle.LIVE_STATES)

    # -- lifecycle ----------------------------------------------------------

    async def create(self, backend_name: str) -> Keep:
        get_backend(backend_name)  # Unknown or unavailable backends fail here.
        if self.live_count() >= MAX_LIVE_KEEPS:
            raise CapacityError(f"this host already runs its maximum of {MAX_LIVE_KEEPS} Keeps")
        self._forget_old()
        keep_id = "k-" + secrets.token_hex(16)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "arx.keepldr.main",
                "--backend",
                backend_name,
                "--keep-id",
                keep_id,
                "--listen-host",
                self._listen_host,
                "--max-workload-bytes",
                str(self._max_workload_bytes),
                "--parent-pid",
                str(os.getpid()),
                *(["--compile-cache", self._compile_cache] if self._compile_cache else []),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                # Its own process group: stopping the Keep signals the group,
                # which holds keepldr and everything it started.
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise BackendError(f"cannot start keepldr: {exc}") from exc
        keep = Keep(id=keep_id, backend=backend_name, created_at=int(time.time()), process=process)
        self._keeps[keep_id] = keep
        keep.reader = asyncio.create_task(self._read(keep), name=f"keep-reader-{keep_id}")
        try:
            await asyncio.wait_for(keep.ready.wait(), KEEP_START_TIMEOUT)
        except TimeoutError:
            await self._stop_processes(keep)
            self._fail(keep, f"the Keep did not become ready within {KEEP_START_TIMEOUT:.0f} s")
        if keep.state == "failed":
            raise KeepFailedError(
                f"the Keep failed to start: {keep.exit.message if keep.exit else 'unknown'}"
            )
        return keep

    async def request(self, keep_id: str, msg: AttestRequest | ProvisionRequest) -> Message:
        """Relays one request to the Keep and returns its answer (or raises its error)."""
        keep = self.get(keep_id)
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
        return answer

    async def delete(self, keep_id: str) -> Keep:
        keep = self.get(keep_id)
        await self._stop_processes(keep)
        if keep.state in lifecycle.LIVE_STATES:
            self._fail(keep, "deleted while live", status="killed")
        self._keeps.pop(keep.id, None)
        return keep

    async def shutdown(self) -> None:
        """Stops every Keep this keepmgr started (SIGTERM or SIGINT to keepmgr)."""
        await asyncio.gather(*(self._stop_processes(k) for k in list(self._keeps.values())))

    # -- internals ------------------------------------------------------------

    def _send(self, keep: Keep, msg: Message) -> None:
        stdin = keep.process.stdin
        if stdin is None or stdin.is_closing():
            raise KeepFailedError("the Keep's control channel is closed")
        stdin.write(encode_frame(msg))

    def _fail(self, keep: Keep, message: str, *, status: ExitStatus = "failed") -> None:
        if keep.state in lifecycle.LIVE_STATES:
            keep.exit = KeepExit(status=status, message=message)
            keep.move("crashed")
        keep.ready.set()
        keep.finished.set()
        if keep.pending is not None and not keep.pending.done():
            keep.pending.set_exception(KeepFailedError(message))

    async def _read(self, keep: Keep) -> None:
        stdout = keep.process.stdout
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
            self._fail(keep, f"the Keep broke the control protocol: {exc.message}")
        code = await keep.process.wait()
        if keep.state in lifecycle.LIVE_STATES:
            self._fail(keep, f"the Keep's processes ended unexpectedly (exit status {code})")

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
        else:
            raise KeepStateError(f"unexpected {type(msg).__name__} from the Keep")

    async def _stop_processes(self, keep: Keep) -> None:
        process = keep.process
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
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        if keep.reader is not None and keep.reader is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError):
                await keep.reader

    def _forget_old(self) -> None:
        finished = [k for k in self.list() if k.state in lifecycle.TERMINAL_STATES]
        for keep in finished[: max(0, len(finished) - MAX_FINISHED_KEEPS + 1)]:
            self._keeps.pop(keep.id, None)
