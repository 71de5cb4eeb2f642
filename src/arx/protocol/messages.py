"""Every message of the arx wire protocol, and the one mapping to and from CBOR.

Messages are frozen, slotted, keyword-only dataclasses that validate
themselves on construction, so a message that exists is a valid one, whichever
side built it. ``to_cbor``/``from_cbor`` map them to CBOR maps with text keys
that are exactly the field names; unknown keys, missing keys and wrong types
are ``MessageError``. Size bounds on strings, byte strings and lists are given
per field (``bounded``) and checked while decoding.

Three channels carry them (docs/protocol.md has the routes and CDDL):

* the keepmgr HTTP API (client <-> keepmgr), one message per request or
  response body;
* the control channel (keepmgr <-> keepldr <-> wasmldr), a CBOR sequence of
  ``Frame``-wrapped messages over pipes;
* the workload channel (client <-> wasmldr over TLS), one ``Workload`` request
  and a CBOR sequence of ``Frame``-wrapped ``Output`` and ``Result`` messages.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, Union, dataclass_transform, get_args, get_origin

from arx.errors import MessageError
from arx.protocol import cbor

# ---------------------------------------------------------------------------
# Bounds on what a peer controls. Each is the largest value a valid peer can
# need, so that no untrusted peer can make the other allocate more.

# A Keep id is "k-" and 32 hex digits (128 random bits).
KEEP_ID_LENGTH = 34
# Client nonces are 32 random bytes: enough that they never repeat.
NONCE_LENGTH = 32
# SEV-SNP and TDX carry 64 bytes of REPORT_DATA; arx fills them with a SHA-512.
REPORT_DATA_LENGTH = 64
# The largest evidence arx understands is a TDX quote with its PCK chain
# (about 5 KiB); 32 KiB bounds it with room for certificate chains.
MAX_EVIDENCE_BYTES = 32 * 1024
# A VCEK/VLEK or PCK certificate is under 2 KiB; a chain of a few fits in 16 KiB.
MAX_CERTIFICATE_BYTES = 16 * 1024
MAX_CERTIFICATES = 4
# The hybrid ML-KEM-768+X25519 public key is 1,216 bytes; X25519 is 32.
MAX_PUBLIC_KEY_BYTES = 2048
# A sealed PKCS#8 P-256 TLS key: about 140 bytes plus 1,120 of hybrid KEM
# encapsulation and the AEAD tag. 4 KiB leaves room for larger key types.
MAX_SEALED_KEY_BYTES = 4096
# Names (backends, states, error codes) and human-readable messages.
MAX_NAME_LENGTH = 64
MAX_TEXT_LENGTH = 4096
# A host offers a handful of backends; a Keep listing is bounded by the
# registry size of keepmgr (arx.keepmgr.registry.MAX_KEEPS).
MAX_BACKENDS = 16
MAX_LISTED_KEEPS = 4096
# Output travels in chunks small enough that a whole Output frame, with its
# few bytes of framing, stays within cbor.MAX_MESSAGE_BYTES.
MAX_OUTPUT_CHUNK = 63 * 1024
# Workload arguments and environment: generous for real programs, bounded so
# a request cannot smuggle a large payload outside the module size cap.
MAX_ARGS = 1024
MAX_ARG_LENGTH = 64 * 1024
MAX_ENV_VARS = 1024
# The default cap on a workload upload: the module, its configuration, stdin
# and input files together. Inputs stream to the Keep in chunks and are
# written to its private directory as they arrive, so the cap bounds the
# Keep's disk (or, inside a confidential VM, its encrypted memory), not the
# client's or the Keep's heap. 1 GiB admits a 69 MB module such as Yosys with
# a few hundred MB of data; keepmgr can lower or raise it
# (``arx keepmgr --max-workload-mib``).
MAX_WORKLOAD_BYTES = 1024 * 1024 * 1024
# The workload header (everything but the bytes of the module and inputs):
# arguments, environment and the list of input files. It is decoded whole,
# so it has its own, smaller bound.
MAX_WORKLOAD_HEADER_BYTES = 16 * 1024 * 1024
# Input bytes travel in chunks that fit a frame within cbor.MAX_MESSAGE_BYTES.
MAX_INPUT_CHUNK = 63 * 1024
# Directories made visible to the workload, and files and directories sent in
# them: enough for a source tree, bounded so the header stays small.
MAX_MOUNTS = 64
MAX_INPUT_ENTRIES = 16384
# A guest path or a path inside a mount: PATH_MAX on Linux is 4096; 1024
# keeps the header bound meaningful and is plenty for real trees.
MAX_PATH_LENGTH = 1024
# Limit values: wasm32 memory is at most 4 GiB, memory64 far more; a wall
# time of 30 days; fuel is a u64 in wasmtime; output up to 2**62 bytes.
MAX_MEMORY_LIMIT = 1 << 48
MAX_WALL_TIME_MS = 30 * 24 * 3600 * 1000
MAX_FUEL = (1 << 63) - 1
MAX_OUTPUT_LIMIT = 1 << 62
MAX_FILE_SIZE = 1 << 62

BACKEND_NAMES = ("nil", "sim", "snp", "tdx", "sgx")
HPKE_SUITES = ("x25519", "mlkem768-x25519")

HpkeSuiteName = Literal["x25519", "mlkem768-x25519"]
EvidenceKindName = Literal["none", "sim", "snp", "tdx", "sgx"]
KeepStateName = Literal[
    "starting", "ready", "attested", "provisioned", "running", "exited", "failed"
]
ExitStatus = Literal[
    "exited",
    "trapped",
    "memory_limit",
    "timeout",
    "out_of_fuel",
    "output_limit",
    "failed",
    "killed",
]
EntryKind = Literal["file", "dir"]
StreamName = Literal["stdout", "stderr"]


def bounded(limit: int, *, items: int | None = None, default: Any = dataclasses.MISSING) -> Any:
    """A field with bounds: the longest string/bytes (``limit``) and list length (``items``)."""
    meta = {"limit": limit, "items": items}
    if isinstance(default, dict):
        return field(metadata=meta, default_factory=lambda: dict(default))
    return field(metadata=meta, default=default)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise MessageError(message)


class Message:
    """Base of every wire message: CBOR mapping and validation of shape."""

    __slots__ = ()

    def to_cbor(self) -> bytes:
        return cbor.encode(_to_obj(self))

    @classmethod
    def from_cbor(cls: type[M], data: bytes, *, limit: int = cbor.MAX_MESSAGE_BYTES) -> M:
        return from_obj(cls, cbor.decode(data, limit=limit))


M = TypeVar("M", bound=Message)


def _to_obj(value: Any) -> Any:
    if isinstance(value, Message):
        return {
            f.name: _to_obj(getattr(value, f.name))
            for f in dataclasses.fields(value)  # type: ignore[arg-type]
        }
    if isinstance(value, tuple | list):
        return [_to_obj(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _to_obj(v) for k, v in value.items()}
    return value


_hints_cache: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _hints_cache.get(cls)
    if hints is None:
        hints = typing.get_type_hints(cls)
        _hints_cache[cls] = hints
    return hints


def from_obj(cls: type[M], obj: Any, *, where: str = "") -> M:
    """Builds ``cls`` from decoded CBOR, checking keys, types and bounds."""
    where = where or cls.__name__
    if not isinstance(obj, dict):
        raise MessageError(f"{where}: expected a map, got {_type_name(obj)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(obj) - set(fields))
    if unknown:
        raise MessageError(f"{where}: unknown field {unknown[0]!r}")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in obj:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise MessageError(f"{where}: missing field {name!r}")
            continue
        kwargs[name] = _convert(hints[name], obj[name], f.metadata, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except MessageError as exc:
        raise MessageError(f"{where}: {exc.message}") from None


def _type_name(value: Any) -> str:
    return {
        dict: "a map",
        list: "an array",
        str: "a text string",
        bytes: "a byte string",
        bool: "a boolean",
        int: "an integer",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _convert(hint: Any, value: Any, meta: Mapping[str, Any], where: str) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _convert(inner, value, meta, where)
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed or type(value) is not type(allowed[0]):
            raise MessageError(f"{where}: {value!r} is not one of {', '.join(map(str, allowed))}")
        return value
    limit = meta.get("limit")
    if hint is bytes or hint is str:
        if type(value) is not hint:
            expected = "a byte string" if hint is bytes else "a text string"
            raise MessageError(f"{where}: expected {expected}, got {_type_name(value)}")
        if limit is not None and len(value) > limit:
            raise MessageError(f"{where}: longer than {limit}")
        return value
    if hint is bool:
        if type(value) is not bool:
            raise MessageError(f"{where}: expected a boolean, got {_type_name(value)}")
        return value
    if hint is int:
        if type(value) is not int:
            raise MessageError(f"{where}: expected an integer, got {_type_name(value)}")
        return value
    if origin is tuple:
        inner, _ellipsis = get_args(hint)
        if not isinstance(value, list):
            raise MessageError(f"{where}: expected an array, got {_type_name(value)}")
        items = meta.get("items")
        if items is not None and len(value) > items:
            raise MessageError(f"{where}: more than {items} items")
        return tuple(_convert(inner, v, meta, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or origin is typing.Mapping:
        key_t, val_t = get_args(hint)
        if not isinstance(value, dict):
            raise MessageError(f"{where}: expected a map, got {_type_name(value)}")
        items = meta.get("items")
        if items is not None and len(value) > items:
            raise MessageError(f"{where}: more than {items} entries")
        return {
            _convert(key_t, k, meta, f"{where} key"): _convert(val_t, v, meta, f"{where}[{k!r}]")
            for k, v in value.items()
        }
    if isinstance(hint, type) and issubclass(hint, Message):
        return from_obj(hint, value, where=where)
    raise TypeError(f"unsupported field type {hint!r} at {where}")  # a bug, not bad input


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(field, bounded))
def message(cls: type[M]) -> type[M]:
    """The dataclass form every message uses."""
    return dataclass(frozen=True, slots=True, kw_only=True)(cls)


# ---------------------------------------------------------------------------
# keepmgr HTTP API


@message
class ErrorBody(Message):
    """Every 4xx/5xx response body, on every channel."""

    error: str = bounded(MAX_NAME_LENGTH)
    message: str = bounded(MAX_TEXT_LENGTH)


@message
class BackendInfo(Message):
    name: str = bounded(MAX_NAME_LENGTH)
    available: bool
    # Whether Keeps on this backend protect anything from the host.
    secure: bool
    description: str = bounded(MAX_TEXT_LENGTH)


@message
class PlatformInfo(Message):
    arx_version: str = bounded(MAX_NAME_LENGTH)
    backends: tuple[BackendInfo, ...] = bounded(0, items=MAX_BACKENDS)


@message
class CreateKeepRequest(Message):
    backend: str = bounded(MAX_NAME_LENGTH)

    def __post_init__(self) -> None:
        _require(bool(self.backend), "backend must not be empty")


@message
class KeepExit(Message):
    """How a Keep's workload ended.

    ``status`` says which of the ways it was: ``exited`` (``code`` is its
    exit code), ``trapped`` (``trap_code`` names the trap and ``message``
    holds wasmtime's message with the Wasm backtrace), ``memory_limit``,
    ``timeout``, ``out_of_fuel``, ``output_limit`` (a limit ended or
    constrained it; ``message`` says which value and what was seen),
    ``failed`` (arx could not run it) or ``killed`` (the Keep was stopped
    from outside). ``memory_bytes`` is the size of the workload's linear
    memory when it ended, which is its peak, since Wasm memory never shrinks.
    """

    status: ExitStatus
    code: int | None = None
    message: str = bounded(MAX_TEXT_LENGTH, default="")
    trap_code: str = bounded(MAX_NAME_LENGTH, default="")
    memory_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.code is not None:
            _require(-(2**31) <= self.code < 2**32, "exit code out of range")
        if self.memory_bytes is not None:
            _require(0 <= self.memory_bytes <= MAX_MEMORY_LIMIT, "memory_bytes out of range")


@message
class KeepInfo(Message):
    id: str = bounded(KEEP_ID_LENGTH)
    backend: str = bounded(MAX_NAME_LENGTH)
    state: KeepStateName
    created_at: int
    workload_port: int | None = None
    exit: KeepExit | None = None

    def __post_init__(self) -> None:
        _require(is_keep_id(self.id), f"{self.id!r} is not a Keep id")
        if self.workload_port is not None:
            _require(0 < self.workload_port < 65536, "workload_port out of range")


@message
class KeepList(Message):
    keeps: tuple[KeepInfo, ...] = bounded(0, items=MAX_LISTED_KEEPS)


@message
class AttestRequest(Message):
    nonce: bytes = bounded(NONCE_LENGTH)
    hpke_suite: HpkeSuiteName = "x25519"

    def __post_init__(self) -> None:
        _require(len(self.nonce) == NONCE_LENGTH, f"nonce must be {NONCE_LENGTH} bytes")


@message
class AttestResponse(Message):
    """The Keep's answer to step 4, relayed unchanged by keepldr and keepmgr.

    ``evidence`` is empty for the ``none`` kind (the ``nil`` backend).
    ``certificates`` are the host-supplied certificates the verifier may need
    (for SNP, the VCEK or VLEK); they are untrusted inputs to verification.
    """

    backend: str = bounded(MAX_NAME_LENGTH)
    hpke_suite: HpkeSuiteName
    hpke_public_key: bytes = bounded(MAX_PUBLIC_KEY_BYTES)
    evidence_kind: EvidenceKindName
    evidence: bytes = bounded(MAX_EVIDENCE_BYTES)
    certificates: tuple[bytes, ...] = bounded(
        MAX_CERTIFICATE_BYTES, items=MAX_CERTIFICATES, default=()
    )

    def __post_init__(self) -> None:
        _require(bool(self.hpke_public_key), "hpke_public_key must not be empty")
        if self.evidence_kind == "none":
            _require(not self.evidence, "evidence must be empty for kind none")


@message
class ProvisionRequest(Message):
    """Step 6: the client's one-use TLS private key, sealed with HPKE."""

    sealed_key: bytes = bounded(MAX_SEALED_KEY_BYTES)

    def __post_init__(self) -> None:
        _require(bool(self.sealed_key), "sealed_key must not be empty")


@message
class ProvisionResponse(Message):
    """The Keep listens for its workload; the client checks the size cap before sending."""

    workload_port: int
    max_workload_bytes: int

    def __post_init__(self) -> None:
        _require(0 < self.workload_port < 65536, "workload_port out of range")
        _require(self.max_workload_bytes > 0, "max_workload_bytes must be positive")


# ---------------------------------------------------------------------------
# Control channel (keepmgr <-> keepldr <-> wasmldr)


@message
class Ready(Message):
    """wasmldr has made its HPKE key pairs and waits for attestation."""


@message
class EvidenceRequest(Message):
    """wasmldr asks its platform (through keepldr) for evidence over REPORT_DATA."""

    report_data: bytes = bounded(REPORT_DATA_LENGTH)

    def __post_init__(self) -> None:
        _require(len(self.report_data) == REPORT_DATA_LENGTH, "report_data must be 64 bytes")


@message
class EvidenceReply(Message):
    evidence_kind: EvidenceKindName
    evidence: bytes = bounded(MAX_EVIDENCE_BYTES)
    certificates: tuple[bytes, ...] = bounded(
        MAX_CERTIFICATE_BYTES, items=MAX_CERTIFICATES, default=()
    )


@message
class WorkloadStarted(Message):
    """wasmldr accepted a workload and is running it."""


@message
class Exited(Message):
    """The Keep's workload has ended; the Keep's processes exit next."""

    exit: KeepExit


# ---------------------------------------------------------------------------
# Workload channel (client <-> wasmldr over the provisioned TLS key)


def _check_guest_path(path: str) -> None:
    """An absolute, normalised guest directory: ``/a/b``, never ``/`` or ``/a/../b``."""
    parts = path.split("/")
    _require(
        path.startswith("/")
        and len(parts) > 1
        and all(p not in ("", ".", "..") and "\0" not in p for p in parts[1:]),
        f"guest path {path!r} must be absolute and normalised, and not /",
    )


def check_relative_path(path: str) -> None:
    """A path inside a mount: relative, normalised, no ``..``, no empty parts."""
    _require(
        bool(path) and all(p not in ("", ".", "..") and "\0" not in p for p in path.split("/")),
        f"path {path!r} must be relative and normalised, without '..'",
    )


@message
class Mount(Message):
    """A directory the workload sees at ``guest``; read-only unless ``writable``.

    For a writable mount, ``results`` asks the Keep to send its contents back
    after the run (as a tar archive); otherwise they are discarded with the Keep.
    """

    guest: str = bounded(MAX_PATH_LENGTH)
    writable: bool = False
    results: bool = False

    def __post_init__(self) -> None:
        _check_guest_path(self.guest)
        _require(self.writable or not self.results, "only a writable mount can return results")


@message
class InputEntry(Message):
    """A file (with ``size`` bytes following in chunks) or a directory in a mount."""

    mount: int
    path: str = bounded(MAX_PATH_LENGTH)
    kind: EntryKind = "file"
    size: int = 0

    def __post_init__(self) -> None:
        _require(0 <= self.mount < MAX_MOUNTS, "mount index out of range")
        check_relative_path(self.path)
        _require(0 <= self.size <= MAX_FILE_SIZE, "size out of range")
        _require(self.kind == "file" or self.size == 0, "a directory has no size")


@message
class Limits(Message):
    """What the Keep enforces; ``None`` means no limit of that kind."""

    # Linear memory (and tables) of the store, in bytes.
    memory_bytes: int | None = None
    # Wall-clock time from the start of the module, in milliseconds.
    wall_time_ms: int | None = None
    # wasmtime fuel: roughly one unit per Wasm instruction.
    fuel: int | None = None
    # stdout and stderr together, in bytes.
    output_bytes: int | None = None

    def __post_init__(self) -> None:
        for name, top in (
            ("memory_bytes", MAX_MEMORY_LIMIT),
            ("wall_time_ms", MAX_WALL_TIME_MS),
            ("fuel", MAX_FUEL),
            ("output_bytes", MAX_OUTPUT_LIMIT),
        ):
            value = getattr(self, name)
            _require(value is None or 0 < value <= top, f"{name} must be 1..{top}")


@message
class Workload(Message):
    """Step 9, the first frame of the request: how to run the module, and what follows.

    After this frame come ``Chunk`` frames carrying, in this order and with
    exactly these sizes: the module (``module_size`` bytes), stdin
    (``stdin_size`` bytes, if not ``None``) and each file of ``entries``.
    """

    # argv[0] as the workload sees it (the client sends the module's file name).
    program: str = bounded(MAX_NAME_LENGTH, default="workload.wasm")
    args: tuple[str, ...] = bounded(MAX_ARG_LENGTH, items=MAX_ARGS, default=())
    env: dict[str, str] = bounded(MAX_ARG_LENGTH, items=MAX_ENV_VARS, default={})
    module_size: int
    stdin_size: int | None = None
    mounts: tuple[Mount, ...] = bounded(0, items=MAX_MOUNTS, default=())
    entries: tuple[InputEntry, ...] = bounded(0, items=MAX_INPUT_ENTRIES, default=())
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        _require(0 < self.module_size <= MAX_WORKLOAD_BYTES, "module_size out of range")
        _require(
            self.stdin_size is None or 0 <= self.stdin_size <= MAX_FILE_SIZE,
            "stdin_size out of range",
        )
        for name in self.env:
            _require(bool(name) and "=" not in name, f"invalid environment variable name {name!r}")
        guests = [m.guest for m in self.mounts]
        _require(len(set(guests)) == len(guests), "two mounts share a guest path")
        for a in guests:
            for b in guests:
                _require(not b.startswith(a + "/"), f"mount {b} is inside mount {a}")
        seen: set[tuple[int, str]] = set()
        for entry in self.entries:
            _require(entry.mount < len(self.mounts), "entry names a mount that does not exist")
            key = (entry.mount, entry.path)
            _require(key not in seen, f"entry {entry.path!r} is listed twice")
            seen.add(key)

    def total_bytes(self) -> int:
        """Bytes of module and inputs that follow this frame."""
        return (
            self.module_size
            + (self.stdin_size or 0)
            + sum(e.size for e in self.entries if e.kind == "file")
        )


@message
class Chunk(Message):
    """The next bytes of the module or an input, in the order ``Workload`` lists them."""

    data: bytes = bounded(MAX_INPUT_CHUNK)

    def __post_init__(self) -> None:
        _require(bool(self.data), "a chunk must not be empty")


@message
class Output(Message):
    stream: StreamName
    data: bytes = bounded(MAX_OUTPUT_CHUNK)


@message
class ArchiveChunk(Message):
    """Bytes of the tar archive of writable mount ``mount``, after the run."""

    mount: int
    data: bytes = bounded(MAX_OUTPUT_CHUNK)

    def __post_init__(self) -> None:
        _require(0 <= self.mount < MAX_MOUNTS, "mount index out of range")


@message
class ArchiveInfo(Message):
    """One result archive as the Keep sent it, so the client can check it is whole."""

    mount: int
    size: int
    sha256: bytes = bounded(32)

    def __post_init__(self) -> None:
        _require(0 <= self.mount < MAX_MOUNTS, "mount index out of range")
        _require(self.size >= 0, "size out of range")
        _require(len(self.sha256) == 32, "sha256 must be 32 bytes")


@message
class Result(Message):
    """The last item of a workload's output: how it ended.

    ``workload_sha256`` is the SHA-256 of the exact request body the Keep
    received (the ``Workload`` frame and every ``Chunk``: module,
    configuration, stdin and input files), so the client can see that the
    Keep ran exactly what it sent. ``stdout_bytes``/``stderr_bytes`` count
    what the Keep forwarded; ``archives`` describe the result archives sent
    before this frame.
    """

    exit: KeepExit
    workload_sha256: bytes = bounded(32)
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    archives: tuple[ArchiveInfo, ...] = bounded(0, items=MAX_MOUNTS, default=())


# ---------------------------------------------------------------------------
# Frames: the messages that travel in CBOR sequences carry a type name.

FRAME_TYPES: dict[str, type[Message]] = {
    "ready": Ready,
    "attest": AttestRequest,
    "attested": AttestResponse,
    "evidence_request": EvidenceRequest,
    "evidence": EvidenceReply,
    "provision": ProvisionRequest,
    "provisioned": ProvisionResponse,
    "workload_started": WorkloadStarted,
    "exited": Exited,
    "error": ErrorBody,
    "workload": Workload,
    "chunk": Chunk,
    "output": Output,
    "archive": ArchiveChunk,
    "result": Result,
}
_FRAME_NAMES = {cls: name for name, cls in FRAME_TYPES.items()}


def encode_frame(msg: Message) -> bytes:
    """``{"type": name, "body": message}`` as one CBOR item."""
    return cbor.encode({"type": _FRAME_NAMES[type(msg)], "body": _to_obj(msg)})


def frame_from_obj(obj: Any) -> Message:
    if not isinstance(obj, dict) or set(obj) != {"type", "body"}:
        raise MessageError("frame must be a map with exactly 'type' and 'body'")
    name = obj["type"]
    cls = FRAME_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise MessageError(f"unknown frame type {name!r}")
    return from_obj(cls, obj["body"], where=name)


def decode_frame(data: bytes, *, limit: int = cbor.MAX_MESSAGE_BYTES) -> Message:
    return frame_from_obj(cbor.decode(data, limit=limit))


class FrameDecoder:
    """Sans-IO: bytes of a CBOR sequence of frames in, messages out."""

    def __init__(self, *, limit: int = cbor.MAX_MESSAGE_BYTES) -> None:
        self._items = cbor.SequenceDecoder(limit=limit)

    def feed(self, data: bytes) -> None:
        self._items.feed(data)

    def next_message(self) -> Message | None:
        obj = self._items.next_item()
        return None if obj is None else frame_from_obj(obj)

    @property
    def pending(self) -> int:
        return self._items.pending


def is_keep_id(value: str) -> bool:
    return (
        len(value) == KEEP_ID_LENGTH
        and value.startswith("k-")
        and all(c in "0123456789abcdef" for c in value[2:])
    )
