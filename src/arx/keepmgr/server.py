"""keepmgr's HTTP API: CBOR bodies under /v1, a thin adapter over ``KeepRegistry``.

Routes and their messages are in docs/protocol.md. Every error, including
aiohttp's own (unknown route, wrong method, body too large), leaves as a CBOR
``ErrorBody`` with a 4xx or 5xx status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from arx import __version__
from arx.errors import (
    ArxError,
    BackendError,
    CapacityError,
    KeepFailedError,
    KeepStateError,
    ProtocolError,
    RemoteError,
    UnknownKeepError,
)
from arx.keepldr.backends import BACKENDS
from arx.keepmgr.keeps import KeepRegistry
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
REGISTRY: web.AppKey[KeepRegistry] = web.AppKey("registry", KeepRegistry)

# The status for each error class, most specific first.
_STATUS: tuple[tuple[type[ArxError], int], ...] = (
    (ProtocolError, 400),
    (UnknownKeepError, 404),
    (KeepStateError, 409),
    (BackendError, 422),
    (RemoteError, 422),
    (CapacityError, 503),
    (KeepFailedError, 502),
)


def cbor_response(msg: Message, status: int = 200) -> web.Response:
    return web.Response(body=msg.to_cbor(), status=status, content_type=CBOR)


def error_response(status: int, code: str, message: str) -> web.Response:
    response = cbor_response(ErrorBody(error=code, message=message[:4096]), status)
    if status == 503:
        response.headers["Retry-After"] = "5"
    return response


@web.middleware
async def errors_as_cbor(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ArxError as exc:
        status = next((s for cls, s in _STATUS if isinstance(exc, cls)), 500)
        return error_response(status, exc.code, exc.message)
    except web.HTTPRequestEntityTooLarge:
        return error_response(
            413, "too_large", f"request bodies are limited to {MAX_MESSAGE_BYTES} bytes"
        )
    except web.HTTPException as exc:
        code = exc.reason.lower().replace(" ", "_")
        return error_response(exc.status, code, f"{request.method} {request.path}: {exc.reason}")


async def _body(request: web.Request, cls: type[M]) -> M:
    if request.content_type != CBOR:
        raise web.HTTPUnsupportedMediaType(reason=f"Bodies must be {CBOR}")
    return cls.from_cbor(await request.read())


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
    keep = await request.app[REGISTRY].create(body.backend)
    return cbor_response(keep.info(), 201)


async def list_keeps(request: web.Request) -> web.Response:
    keeps = request.app[REGISTRY].list()
    return cbor_response(KeepList(keeps=tuple(k.info() for k in keeps)))


async def show_keep(request: web.Request) -> web.Response:
    return cbor_response(request.app[REGISTRY].get(request.match_info["id"]).info())


async def delete_keep(request: web.Request) -> web.Response:
    keep = await request.app[REGISTRY].delete(request.match_info["id"])
    return cbor_response(keep.info())


async def attest(request: web.Request) -> web.Response:
    body = await _body(request, AttestRequest)
    answer = await request.app[REGISTRY].request(request.match_info["id"], body)
    return cbor_response(answer)


async def provision(request: web.Request) -> web.Response:
    body = await _body(request, ProvisionRequest)
    answer = await request.app[REGISTRY].request(request.match_info["id"], body)
    return cbor_response(answer)


def make_app(registry: KeepRegistry) -> web.Application:
    app = web.Application(middlewares=[errors_as_cbor], client_max_size=MAX_MESSAGE_BYTES)
    app[REGISTRY] = registry
    app.router.add_get("/v1/platform", platform)
    app.router.add_post("/v1/keeps", create_keep)
    app.router.add_get("/v1/keeps", list_keeps)
    app.router.add_get("/v1/keeps/{id}", show_keep)
    app.router.add_delete("/v1/keeps/{id}", delete_keep)
    app.router.add_post("/v1/keeps/{id}/attest", attest)
    app.router.add_post("/v1/keeps/{id}/provision", provision)
    return app
