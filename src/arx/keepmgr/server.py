"""keepmgr's HTTP API: CBOR bodies under /v1, a thin adapter over ``KeepRegistry``.

Routes and their messages are in docs/protocol.md. Every error, including
aiohttp's own (unknown route, wrong method, body too large), leaves as a CBOR
``ErrorBody`` with a 4xx or 5xx status. A request refused at a limit gets 429
(this client's own limit) or 503 (the host's), an ``ErrorBody`` whose
``error`` names the limit, and a ``Retry-After`` header.

Authentication (``AuthPolicy``): with tokens, every /v1 request needs
``Authorization: Bearer <token>`` naming a live token from the state
database; a client token sees and controls only the Keeps it created, an
operator token every Keep. Without tokens (a Unix socket in a private
directory, or loopback when the operator says so) every caller is the
operator.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web

from arx import __version__
from arx.errors import (
    ArxError,
    AuthError,
    BackendError,
    CapacityError,
    ForbiddenError,
    KeepFailedError,
    KeepStateError,
    ProtocolError,
    QuotaError,
    RemoteError,
    StateError,
    TransportError,
    UnknownKeepError,
)
from arx.keepldr.backends import BACKENDS
from arx.keepmgr.keeps import OPERATOR, KeepRegistry
from arx.keepmgr.listener import ConnectionGuard
from arx.keepmgr.metrics import Metrics
from arx.keepmgr.store import Store
from arx.protocol.cbor import MAX_MESSAGE_BYTES
from arx.protocol.messages import (
    AttestRequest,
    BackendInfo,
    CreateKeepRequest,
    ErrorBody,
    KeepList,
    Message,
    PlatformInfo,
    ProvisionRequest,
)

M = TypeVar("M", bound=Message)
CBOR = "application/cbor"
log = logging.getLogger("arx.keepmgr")

# API requests keepmgr handles at once; more are refused with 503 rather than
# queued, so that a flood cannot pile up memory and latency.
DEFAULT_MAX_REQUESTS = 128
# A request body (at most MAX_MESSAGE_BYTES) must arrive within this time.
BODY_READ_TIMEOUT = 10.0
# What a client refused for too many requests in flight should wait.
REQUESTS_RETRY_AFTER = 1
# Clients may name their request; anything else gets a fresh id.
MAX_REQUEST_ID = 64
REQUEST_ID_HEADER = "X-Request-Id"


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """``tokens`` False: every caller is the operator (see the module docstring)."""

    tokens: bool


@dataclass(slots=True)
class ApiState:
    registry: KeepRegistry
    store: Store
    auth: AuthPolicy
    metrics: Metrics
    max_requests: int = DEFAULT_MAX_REQUESTS
    in_flight: int = 0
    guard: ConnectionGuard | None = None


STATE: web.AppKey[ApiState] = web.AppKey("state", ApiState)

# The status for each error class, most specific first.
_STATUS: tuple[tuple[type[ArxError], int], ...] = (
    (ProtocolError, 400),
    (TransportError, 400),
    (ForbiddenError, 403),
    (AuthError, 401),
    (UnknownKeepError, 404),
    (KeepStateError, 409),
    (BackendError, 422),
    (RemoteError, 422),
    (QuotaError, 429),
    (CapacityError, 503),
    (StateError, 503),
    (KeepFailedError, 502),
)
# A state store that cannot be written is usually a full disk: worth a retry later.
STATE_RETRY_AFTER = 30


def cbor_response(msg: Message, status: int = 200) -> web.Response:
    return web.Response(body=msg.to_cbor(), status=status, content_type=CBOR)


def error_response(
    status: int, code: str, message: str, *, retry_after: int | None = None
) -> web.Response:
    response = cbor_response(ErrorBody(error=code, message=message[:4096]), status)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    elif status == 503:
        response.headers["Retry-After"] = "5"
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="arx keepmgr"'
    return response


def refusal_response(limit: str, message: str, *, status: int, retry_after: int) -> web.Response:
    """A refusal at a limit: the ErrorBody's ``error`` is the limit's name."""
    return error_response(
        status, limit, f"{message}; retry after {retry_after} s", retry_after=retry_after
    )


def _route(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.http_exception is None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Outermost: request id, the cap on requests in flight, latency, one log line."""
    state = request.app[STATE]
    given = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = (
        given
        if 0 < len(given) <= MAX_REQUEST_ID and given.replace("-", "").isalnum()
        else secrets.token_hex(8)
    )
    request["request_id"] = request_id
    start = time.perf_counter()
    if state.guard is not None:
        state.guard.request_started(request.transport)
    response: web.StreamResponse
    if state.in_flight >= state.max_requests:
        state.metrics.refusals.labels("requests_in_flight").inc()
        response = refusal_response(
            "requests_in_flight",
            f"keepmgr is handling its maximum of {state.max_requests} requests",
            status=503,
            retry_after=REQUESTS_RETRY_AFTER,
        )
    else:
        state.in_flight += 1
        try:
            response = await handler(request)
        finally:
            state.in_flight -= 1
    elapsed = time.perf_counter() - start
    if state.guard is not None:
        state.guard.request_finished(request.transport)
    response.headers[REQUEST_ID_HEADER] = request_id
    route = _route(request)
    state.metrics.latency.labels(request.method, route, str(response.status)).observe(elapsed)
    log.info(
        "%s %s %s",
        request.method,
        request.path,
        response.status,
        extra={
            "request_id": request_id,
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "duration_ms": round(elapsed * 1000, 3),
            "client": request.get("identity", "-"),
        },
    )
    return response


@web.middleware
async def errors_as_cbor(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ArxError as exc:
        status = next((s for cls, s in _STATUS if isinstance(exc, cls)), 500)
        if isinstance(exc, CapacityError):
            request.app[STATE].metrics.refusals.labels(exc.limit).inc()
            return refusal_response(
                exc.limit, exc.message, status=status, retry_after=exc.retry_after
            )
        if isinstance(exc, StateError):
            log.error("state: %s", exc.message, extra={"request_id": request["request_id"]})
            return error_response(status, exc.code, exc.message, retry_after=STATE_RETRY_AFTER)
        return error_response(status, exc.code, exc.message)
    except web.HTTPRequestEntityTooLarge:
        return error_response(
            413, "too_large", f"request bodies are limited to {MAX_MESSAGE_BYTES} bytes"
        )
    except web.HTTPException as exc:
        code = exc.reason.lower().replace(" ", "_")
        return error_response(exc.status, code, f"{request.method} {request.path}: {exc.reason}")


@web.middleware
async def authenticate(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    state = request.app[STATE]
    if not state.auth.tokens:
        request["identity"] = OPERATOR
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise AuthError("this keepmgr needs an API token (Authorization: Bearer ...)")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("the Authorization header must be 'Bearer <token>'")
    row = state.store.authenticate(token.strip())
    if row is None:
        raise AuthError("the API token is unknown or revoked")
    request["identity"] = OPERATOR if row.role == "operator" else row.id
    return await handler(request)


async def _body(request: web.Request, cls: type[M]) -> M:
    if request.content_type != CBOR:
        raise web.HTTPUnsupportedMediaType(reason=f"Bodies must be {CBOR}")
    try:
        data = await asyncio.wait_for(request.read(), BODY_READ_TIMEOUT)
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            reason=f"The body did not arrive within {BODY_READ_TIMEOUT:.0f} s"
        ) from None
    except ConnectionError as exc:
        # The client went away mid-body; nothing was done for it.
        raise TransportError(f"the client disconnected: {exc}") from exc
    return cls.from_cbor(data)


def _who(request: web.Request) -> str:
    identity: str = request["identity"]
    return identity


async def platform(request: web.Request) -> web.Response:
    backends = tuple(
        BackendInfo(
            name=b.name, available=b.available(), secure=b.secure, description=b.description
        )
        for b in BACKENDS.values()
    )
    return cbor_response(PlatformInfo(arx_version=__version__, backends=backends))


async def create_keep(request: web.Request) -> web.Response:
    body = await _body(request, CreateKeepRequest)
    keep = await request.app[STATE].registry.create(body.backend, _who(request))
    return cbor_response(keep.info(), 201)


async def list_keeps(request: web.Request) -> web.Response:
    keeps = request.app[STATE].registry.list(_who(request))
    return cbor_response(KeepList(keeps=tuple(k.info() for k in keeps)))


async def show_keep(request: web.Request) -> web.Response:
    keep = request.app[STATE].registry.get(request.match_info["id"], _who(request))
    return cbor_response(keep.info())


async def delete_keep(request: web.Request) -> web.Response:
    keep = await request.app[STATE].registry.delete(request.match_info["id"], _who(request))
    return cbor_response(keep.info())


async def attest(request: web.Request) -> web.Response:
    body = await _body(request, AttestRequest)
    registry = request.app[STATE].registry
    answer = await registry.request(request.match_info["id"], body, _who(request))
    return cbor_response(answer)


async def provision(request: web.Request) -> web.Response:
    body = await _body(request, ProvisionRequest)
    registry = request.app[STATE].registry
    answer = await registry.request(request.match_info["id"], body, _who(request))
    return cbor_response(answer)


def make_app(state: ApiState) -> web.Application:
    app = web.Application(
        middlewares=[observe, errors_as_cbor, authenticate], client_max_size=MAX_MESSAGE_BYTES
    )
    app[STATE] = state
    app.router.add_get("/v1/platform", platform)
    app.router.add_post("/v1/keeps", create_keep)
    app.router.add_get("/v1/keeps", list_keeps)
    app.router.add_get("/v1/keeps/{id}", show_keep)
    app.router.add_delete("/v1/keeps/{id}", delete_keep)
    app.router.add_post("/v1/keeps/{id}/attest", attest)
    app.router.add_post("/v1/keeps/{id}/provision", provision)
    return app


def make_metrics_app(metrics: Metrics) -> web.Application:
    async def exposition(request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": "text/plain; version=0.0.4"}
        )

    app = web.Application()
    app.router.add_get("/metrics", exposition)
    return app


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, message and the request's fields."""

    FIELDS = ("request_id", "method", "path", "status", "duration_ms", "client")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        for name in self.FIELDS:
            if name in record.__dict__:
                entry[name] = record.__dict__[name]
        return json.dumps(entry, separators=(",", ":"))
