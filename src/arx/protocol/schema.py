"""CDDL (RFC 8610) and worked examples for every message, generated from the code.

docs/protocol.md holds the output between ``<!-- BEGIN GENERATED -->`` and
``<!-- END GENERATED -->``; ``python -m arx.protocol.schema docs/protocol.md``
rewrites that part, and a test fails when the document and the code differ,
so the document cannot drift from the messages the code accepts.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from arx.protocol import messages as m

BEGIN = "<!-- BEGIN GENERATED -->"
END = "<!-- END GENERATED -->"

# Message classes in the order the document presents them, by channel.
CHANNELS: tuple[tuple[str, tuple[type[m.Message], ...]], ...] = (
    (
        "keepmgr HTTP API",
        (
            m.ErrorBody,
            m.PlatformInfo,
            m.BackendInfo,
            m.CreateKeepRequest,
            m.KeepInfo,
            m.KeepExit,
            m.KeepList,
            m.AttestRequest,
            m.AttestResponse,
            m.ProvisionRequest,
            m.ProvisionResponse,
        ),
    ),
    (
        "control channel",
        (m.Ready, m.EvidenceRequest, m.EvidenceReply, m.WorkloadStarted, m.Exited),
    ),
    (
        "workload channel",
        (
            m.Workload,
            m.Mount,
            m.InputEntry,
            m.Limits,
            m.Chunk,
            m.Output,
            m.ArchiveChunk,
            m.ArchiveInfo,
            m.Result,
        ),
    ),
)

_NONCE = bytes(range(32))
_KEEP = "k-" + "0123456789abcdef" * 2

# One example of each message: fixed values, so the document is stable.
EXAMPLES: dict[str, m.Message] = {
    "ErrorBody": m.ErrorBody(error="unknown_keep", message="no Keep with id 'k-…'"),
    "BackendInfo": m.BackendInfo(
        name="nil", available=True, secure=False, description="a plain process"
    ),
    "PlatformInfo": m.PlatformInfo(
        arx_version="0.1.0",
        backends=(m.BackendInfo(name="nil", available=True, secure=False, description="dev"),),
    ),
    "CreateKeepRequest": m.CreateKeepRequest(backend="nil"),
    "KeepExit": m.KeepExit(status="exited", code=3),
    "KeepInfo": m.KeepInfo(
        id=_KEEP, backend="nil", state="provisioned", created_at=1_796_342_400, workload_port=40123
    ),
    "KeepList": m.KeepList(
        keeps=(
            m.KeepInfo(
                id=_KEEP,
                backend="nil",
                state="exited",
                created_at=1_796_342_400,
                exit=m.KeepExit(status="trapped", message="unreachable"),
            ),
        )
    ),
    "AttestRequest": m.AttestRequest(nonce=_NONCE, hpke_suite="x25519"),
    "AttestResponse": m.AttestResponse(
        backend="nil",
        hpke_suite="x25519",
        hpke_public_key=bytes(32),
        evidence_kind="none",
        evidence=b"",
    ),
    "ProvisionRequest": m.ProvisionRequest(sealed_key=bytes(16)),
    "ProvisionResponse": m.ProvisionResponse(workload_port=40123, max_workload_bytes=64 << 20),
    "Ready": m.Ready(),
    "EvidenceRequest": m.EvidenceRequest(report_data=bytes(64)),
    "EvidenceReply": m.EvidenceReply(evidence_kind="none", evidence=b""),
    "WorkloadStarted": m.WorkloadStarted(),
    "Exited": m.Exited(exit=m.KeepExit(status="exited", code=0)),
    "Workload": m.Workload(
        program="news2.wasm",
        args=("--input", "/in/vitals.csv"),
        env={"LANG": "C"},
        module_size=8,
        stdin_size=5,
        mounts=(m.Mount(guest="/in"), m.Mount(guest="/out", writable=True, results=True)),
        entries=(m.InputEntry(mount=0, path="vitals.csv", size=120),),
        limits=m.Limits(memory_bytes=64 << 20, wall_time_ms=10_000),
    ),
    "Mount": m.Mount(guest="/out", writable=True, results=True),
    "InputEntry": m.InputEntry(mount=0, path="vitals.csv", size=120),
    "Limits": m.Limits(
        memory_bytes=64 << 20, wall_time_ms=10_000, fuel=10**9, output_bytes=1 << 20
    ),
    "Chunk": m.Chunk(data=b"\0asm\x01\0\0\0"),
    "Output": m.Output(stream="stdout", data=b"Hello\n"),
    "ArchiveChunk": m.ArchiveChunk(mount=1, data=b"ustar..."),
    "ArchiveInfo": m.ArchiveInfo(mount=1, size=10240, sha256=bytes(32)),
    "Result": m.Result(
        exit=m.KeepExit(status="exited", code=0, memory_bytes=1 << 17),
        workload_sha256=bytes(32),
        stdout_bytes=6,
        archives=(m.ArchiveInfo(mount=1, size=10240, sha256=bytes(32)),),
    ),
}


def _type(hint: Any, meta: typing.Mapping[str, Any]) -> str:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [o for o in get_args(hint) if o is not type(None)]
        return f"{_type(options[0], meta)} / null"
    if origin is Literal:
        return " / ".join(f'"{v}"' for v in get_args(hint))
    limit = meta.get("limit")
    if hint is bytes:
        return f"bstr .size (0..{limit})" if limit else "bstr"
    if hint is str:
        return f"tstr .size (0..{limit})" if limit else "tstr"
    if hint is int:
        return "int"
    if hint is bool:
        return "bool"
    items = meta.get("items")
    count = f"0*{items}" if items else "*"
    if origin is tuple:
        return f"[{count} {_type(get_args(hint)[0], meta if hint is not bytes else {})}]"
    if origin is dict:
        key_t, val_t = get_args(hint)
        return f"{{{count} {_type(key_t, meta)} => {_type(val_t, meta)}}}"
    if isinstance(hint, type) and issubclass(hint, m.Message):
        return hint.__name__
    raise TypeError(hint)


def cddl_rule(cls: type[m.Message]) -> str:
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if not fields:
        return f"{cls.__name__} = {{}}"
    lines = [f"{cls.__name__} = {{"]
    for f in fields:
        optional = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        lines.append(f"  {'? ' if optional else ''}{f.name}: {_type(hints[f.name], f.metadata)},")
    lines.append("}")
    return "\n".join(lines)


def frame_rule() -> str:
    options = [f'  {{type: "{name}", body: {cls.__name__}}}' for name, cls in m.FRAME_TYPES.items()]
    return "Frame =\n" + " /\n".join(options)


def generated_markdown() -> str:
    out = [BEGIN, ""]
    out.append(
        "Generated by `python -m arx.protocol.schema docs/protocol.md` from "
        "`src/arx/protocol/messages.py`; do not edit by hand."
    )
    for channel, classes in CHANNELS:
        out += ["", f"### Messages of the {channel}", ""]
        for cls in classes:
            example = EXAMPLES[cls.__name__]
            doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
            out += [f"#### `{cls.__name__}`", ""]
            if doc and not doc.startswith(f"{cls.__name__}("):  # not dataclass's own
                out += [doc, ""]
            out += ["```cddl", cddl_rule(cls), "```", ""]
            out += [f"Example (`{cls.__name__}`, CBOR in hex):", ""]
            out += ["```cbor-hex", example.to_cbor().hex(), "```", ""]
    out += ["### Frames", "", "```cddl", frame_rule(), "```", "", END]
    return "\n".join(out)


def rewrite(text: str) -> str:
    start = text.index(BEGIN)
    end = text.index(END) + len(END)
    return text[:start] + generated_markdown() + text[end:]


def main(argv: list[str]) -> int:
    (path,) = argv
    with open(path, encoding="utf-8") as f:
        text = f.read()
    updated = rewrite(text)
    if updated != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(updated)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
