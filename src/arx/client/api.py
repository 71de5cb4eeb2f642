"""A small, blocking client for keepmgr's HTTP+CBOR API.

``http.client`` is enough for one request at a time from a command-line tool
and costs no import time; a Unix-socket URL (``unix:/path``) is served by a
connection subclass that only changes how the socket is opened.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import TypeVar

from arx.errors import ArxError, PinMismatchError, RemoteError, TransportError, UsageError
from arx.protocol.messages import (
    AttestRequest,
    AttestResponse,
    CreateKeepRequest,
    ErrorBody,
    KeepInfo,
    KeepList,
    Message,
    PlatformInfo,
    ProvisionRequest,
    ProvisionResponse,
)

M = TypeVar("M", bound=Message)
CBOR = "application/cbor"
# keepmgr answers create requests only once the Keep is ready (up to its own
# 30 s start timeout), so the client waits somewhat longer than that.
REQUEST_TIMEOUT = 45.0
# Responses are single messages bounded like every control message; a host
# that sends more is not answering in good faith.
MAX_RESPONSE_BYTES = 1024 * 1024
# keepmgr is untrusted: a Retry-After beyond an hour is read as an hour, so
# that a client told to wait never waits longer than a person would.
MAX_RETRY_AFTER = 3600


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a keepmgr whose certificate the client pins by its SHA-256 fingerprint.

    The check runs right after the handshake, before a byte of the request
    (and so before the API token) is sent.
    """

    def __init__(self, host: str, port: int, timeout: float, fingerprint: bytes) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        super().__init__(host, port, timeout=timeout, context=context)
        self._fingerprint = fingerprint

    def connect(self) -> None:
        super().connect()
        assert isinstance(self.sock, ssl.SSLSocket)
        der = self.sock.getpeercert(binary_form=True) or b""
        if not hmac.compare_digest(hashlib.sha256(der).digest(), self._fingerprint):
            self.sock.close()
            raise PinMismatchError(
                f"keepmgr at {self.host}:{self.port} presented a certificate with another "
                "fingerprint than the one given"
            )


def parse_fingerprint(value: str) -> bytes:
    """``sha256:HEX`` (colons between bytes allowed), as ``arx keepmgr`` prints it."""
    text = value.strip().lower().removeprefix("sha256:").replace(":", "")
    try:
        digest = bytes.fromhex(text)
    except ValueError:
        digest = b""
    if len(digest) != hashlib.sha256().digest_size:
        raise UsageError(f"a TLS fingerprint is sha256: and 64 hex digits, not {value!r}")
    return digest


@dataclass(frozen=True, slots=True)
class HostAddress:
    """Where keepmgr is, and which host name reaches the Keeps it starts."""

    url: str
    unix_path: str | None
    host: str
    port: int
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> HostAddress:
        if url.startswith("unix:"):
            path = url[5:]
            if not path:
                raise UsageError("a unix: host URL needs a socket path")
            return cls(url, path, "127.0.0.1", 0)
        if "://" not in url:
            url = "http://" + url
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"the host URL must be http(s)://HOST:PORT or unix:PATH, not {url!r}")
        tls = parts.scheme == "https"
        try:
            port = parts.port or (443 if tls else 80)
        except ValueError as exc:
            raise UsageError(f"invalid port in host URL {url!r}") from exc
        return cls(url, None, parts.hostname, port, tls)


class KeepmgrClient:
    """``token`` goes in every request's Authorization header; ``fingerprint`` pins TLS."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = REQUEST_TIMEOUT,
        token: str | None = None,
        fingerprint: bytes | None = None,
    ) -> None:
        self.address = HostAddress.parse(url)
        self.timeout = timeout
        self.token = token
        self.fingerprint = fingerprint
        if fingerprint is not None and not self.address.tls:
            raise UsageError("a TLS fingerprint needs an https:// host URL")

    def _connection(self) -> http.client.HTTPConnection:
        if self.address.unix_path is not None:
            return _UnixConnection(self.address.unix_path, self.timeout)
        if self.address.tls:
            if self.fingerprint is not None:
                return _PinnedHTTPSConnection(
                    self.address.host, self.address.port, self.timeout, self.fingerprint
                )
            return http.client.HTTPSConnection(
                self.address.host, self.address.port, timeout=self.timeout
            )
        return http.client.HTTPConnection(
            self.address.host, self.address.port, timeout=self.timeout
        )

    def _call(self, method: str, path: str, body: Message | None, answer: type[M]) -> M:
        conn = self._connection()
        headers = {"Accept": CBOR}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        payload = None
        if body is not None:
            payload = body.to_cbor()
            headers["Content-Type"] = CBOR
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read(MAX_RESPONSE_BYTES + 1)
        except PinMismatchError:
            raise
        except (OSError, http.client.HTTPException) as exc:
            raise TransportError(f"cannot reach keepmgr at {self.address.url}: {exc}") from exc
        finally:
            conn.close()
        if len(data) > MAX_RESPONSE_BYTES:
            raise TransportError(f"keepmgr sent a response larger than {MAX_RESPONSE_BYTES} bytes")
        if response.status >= 400:
            raise _remote_error(response.status, data, response.getheader("Retry-After"))
        if response.getheader("Content-Type", "").split(";")[0] != CBOR:
            raise TransportError(f"keepmgr at {self.address.url} did not answer with CBOR")
        return answer.from_cbor(data, limit=MAX_RESPONSE_BYTES)

    def platform(self) -> PlatformInfo:
        return self._call("GET", "/v1/platform", None, PlatformInfo)

    def create(self, backend: str) -> KeepInfo:
        return self._call("POST", "/v1/keeps", CreateKeepRequest(backend=backend), KeepInfo)

    def list(self) -> KeepList:
        return self._call("GET", "/v1/keeps", None, KeepList)

    def show(self, keep_id: str) -> KeepInfo:
        return self._call("GET", f"/v1/keeps/{urllib.parse.quote(keep_id)}", None, KeepInfo)

    def delete(self, keep_id: str) -> KeepInfo:
        return self._call("DELETE", f"/v1/keeps/{urllib.parse.quote(keep_id)}", None, KeepInfo)

    def attest(self, keep_id: str, request: AttestRequest) -> AttestResponse:
        path = f"/v1/keeps/{urllib.parse.quote(keep_id)}/attest"
        return self._call("POST", path, request, AttestResponse)

    def provision(self, keep_id: str, request: ProvisionRequest) -> ProvisionResponse:
        path = f"/v1/keeps/{urllib.parse.quote(keep_id)}/provision"
        return self._call("POST", path, request, ProvisionResponse)


def _remote_error(status: int, data: bytes, retry_after_header: str | None) -> ArxError:
    retry_after = parse_retry_after(retry_after_header) if status in (429, 503) else None
    try:
        body = ErrorBody.from_cbor(data)
    except ArxError:
        return RemoteError(
            "http_error",
            f"keepmgr answered HTTP {status}",
            status=status,
            retry_after=retry_after,
        )
    return RemoteError(body.error, body.message, status=status, retry_after=retry_after)


def parse_retry_after(value: str | None) -> int | None:
    """A ``Retry-After`` in delay-seconds (RFC 9110 10.2.3), capped; None if absent or not that.

    keepmgr sends seconds only; the HTTP-date form is not read, since a
    client's and a host's clocks need not agree.
    """
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        return None
    return min(int(value), MAX_RETRY_AFTER)
