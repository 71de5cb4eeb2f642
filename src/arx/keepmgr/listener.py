"""The connection layer under keepmgr's API: a cap on connections and a header deadline.

aiohttp bounds header sizes and closes idle keep-alive connections, but it
has no deadline for a request's headers, so a client sending one byte at a
time (slowloris) could hold a connection forever, and it has no cap on
connections. ``GuardedProtocol`` wraps each of aiohttp's per-connection
protocols: past ``max_connections`` a new connection is answered with a CBOR
503 and closed; every connection must deliver a request's headers within
``HEADER_TIMEOUT`` of opening or of its previous response, or it is closed.
Bodies have their own deadline (``arx.keepmgr.server.BODY_READ_TIMEOUT``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from arx.protocol.messages import ErrorBody

# Connections keepmgr holds open at once (each costs a file descriptor and
# a little memory); the request cap is lower, so idle keep-alive connections
# do not starve active ones.
DEFAULT_MAX_CONNECTIONS = 512
# From a connection's opening (or its previous response) to the end of the
# next request's headers.
HEADER_TIMEOUT = 10.0
# aiohttp's own settings, named here so that they are explicit: how long an
# idle keep-alive connection stays open, and the largest request line and
# header field it reads.
KEEPALIVE_TIMEOUT = 10.0
MAX_LINE_SIZE = 8190
MAX_FIELD_SIZE = 8190
CONNECTIONS_RETRY_AFTER = 1


def _refusal(max_connections: int) -> bytes:
    body = ErrorBody(
        error="connections",
        message=f"keepmgr holds its maximum of {max_connections} connections; "
        f"retry after {CONNECTIONS_RETRY_AFTER} s",
    ).to_cbor()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/cbor\r\n"
        f"Retry-After: {CONNECTIONS_RETRY_AFTER}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class ConnectionGuard:
    def __init__(
        self,
        inner: Callable[[], asyncio.Protocol],
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        header_timeout: float = HEADER_TIMEOUT,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        self.inner = inner
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.live = 0
        self.on_refused = on_refused
        self._by_transport: dict[Any, GuardedProtocol] = {}

    def __call__(self) -> GuardedProtocol:
        return GuardedProtocol(self)

    def request_started(self, transport: Any) -> None:
        protocol = self._by_transport.get(transport)
        if protocol is not None:
            protocol.disarm()

    def request_finished(self, transport: Any) -> None:
        protocol = self._by_transport.get(transport)
        if protocol is not None:
            protocol.arm()


class GuardedProtocol(asyncio.Protocol):
    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        guard = self.guard
        self.transport = transport
        if guard.live >= guard.max_connections:
            if guard.on_refused is not None:
                guard.on_refused()
            transport.write(_refusal(guard.max_connections))
            transport.close()
            return
        guard.live += 1
        guard._by_transport[transport] = self
        self.inner = guard.inner()
        self.inner.connection_made(transport)
        self.arm()

    def arm(self) -> None:
        self.disarm()
        self._timer = asyncio.get_running_loop().call_later(self.guard.header_timeout, self._expire)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        if self.inner is None:
            return
        self.guard.live -= 1
        self.guard._by_transport.pop(self.transport, None)
        self.inner.connection_lost(exc)
