"""Every error arx raises on purpose.

One tree, so that callers can catch at the depth they care about and the CLI
can turn any of them into one clear line and a stable exit code::

    ArxError
    ├── UsageError               a command line or configuration file is wrong
    ├── ProtocolError            a peer sent bytes that are not a valid message
    │   ├── CodecError           not acceptable CBOR (size, depth, tags, duplicates, ...)
    │   └── MessageError         valid CBOR, wrong shape (unknown field, wrong type, bad value)
    ├── RemoteError              a peer answered with a well-formed error message
    ├── TransportError           a peer could not be reached or the connection broke
    │   └── PinMismatchError     the TLS peer did not hold the key the client provisioned
    ├── KeepError                a Keep cannot do what was asked
    │   ├── UnknownKeepError     no Keep has that id
    │   ├── KeepStateError       the request is not valid in the Keep's current state
    │   ├── BackendError         the backend is unknown, unavailable or failed
    │   ├── CapacityError        the host is at a limit; try again later
    │   │   └── QuotaError       this client is at its own limit; try again later
    │   └── KeepFailedError      the Keep's processes died or misbehaved
    ├── AuthError                the caller presented no valid credential
    │   └── ForbiddenError       the credential is valid but not for this Keep or action
    ├── StateError               keepmgr's state store is unreadable, corrupt or cannot be written
    ├── WorkloadError            the workload itself is unacceptable (invalid Wasm, too large)
    └── AttestationError         evidence could not be trusted
        ├── EvidenceParseError   the evidence bytes do not have the documented structure
        │   └── EvidenceFieldError   one named structural rule is broken (``check`` names it)
        ├── VerificationError    a check failed; names the check, expected and actual values
        └── PolicyRefusal        the evidence is authentic but the policy does not accept it

Third-party exceptions (cbor2, wasmtime, ssl, OSError, ...) are wrapped at the
boundary where they occur, with ``raise ... from``, so nothing outside this
tree escapes a documented entry point.
"""

from __future__ import annotations


class ArxError(Exception):
    """Root of every error arx raises on purpose.

    ``code`` is a stable, machine-readable identifier: it travels in CBOR error
    bodies and in ``--json`` output, so it never changes once published.
    """

    code = "arx_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(ArxError):
    code = "usage"


class ProtocolError(ArxError):
    code = "protocol"


class CodecError(ProtocolError):
    code = "bad_cbor"


class MessageError(ProtocolError):
    code = "bad_message"


class RemoteError(ArxError):
    """A peer answered with an error body; ``code`` is the peer's code.

    ``retry_after`` is the peer's ``Retry-After`` in seconds when it refused at
    a limit that may free up (HTTP 429 or 503), else None.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.retry_after = retry_after


class TransportError(ArxError):
    code = "transport"


class PinMismatchError(TransportError):
    code = "tls_pin_mismatch"


class KeepError(ArxError):
    code = "keep"


class UnknownKeepError(KeepError):
    code = "unknown_keep"


class KeepStateError(KeepError):
    code = "keep_state"


class BackendError(KeepError):
    code = "backend"


class CapacityError(KeepError):
    """A limit was reached: ``limit`` names it, ``retry_after`` says when to try again (s)."""

    code = "capacity"

    def __init__(self, message: str, *, limit: str = "host", retry_after: int = 5) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after = retry_after


class QuotaError(CapacityError):
    """The limit reached is this client's own (HTTP 429), not the host's (503)."""

    code = "quota"


class KeepFailedError(KeepError):
    code = "keep_failed"


class AuthError(ArxError):
    code = "unauthenticated"


class ForbiddenError(AuthError):
    code = "forbidden"


class StateError(ArxError):
    code = "state"


class WorkloadError(ArxError):
    code = "workload"


class AttestationError(ArxError):
    code = "attestation"


class EvidenceParseError(AttestationError):
    code = "evidence_parse"


class EvidenceFieldError(EvidenceParseError):
    """A structural rule of the evidence format is broken.

    ``check`` is a stable identifier (for example ``snp.parse.reserved``), so
    that a parse failure can be reported the same way as a failed check.
    """

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check


class VerificationError(AttestationError):
    """A named check failed.

    ``check`` is a stable identifier (for example ``snp.policy.debug``) that
    scripts may rely on; ``expected`` and ``actual`` are human-readable.
    """

    code = "verification"

    def __init__(self, check: str, message: str, *, expected: str = "", actual: str = "") -> None:
        detail = message
        if expected or actual:
            detail = f"{message} (expected {expected or '?'}, got {actual or '?'})"
        super().__init__(f"{check}: {detail}")
        self.check = check
        self.expected = expected
        self.actual = actual


class PolicyRefusal(AttestationError):
    """The evidence may be authentic, but the client's policy refuses it."""

    code = "policy"

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check
