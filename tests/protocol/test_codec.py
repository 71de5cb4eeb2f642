"""The CBOR codec and the message mapping: round trips, refusals, and arbitrary bytes."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arx.errors import CodecError, MessageError, ProtocolError
from arx.protocol import cbor, messages, schema
from arx.protocol.messages import (
    AttestRequest,
    AttestResponse,
    FrameDecoder,
    KeepExit,
    Output,
    Workload,
    decode_frame,
    encode_frame,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


@pytest.mark.parametrize("name", sorted(schema.EXAMPLES))
def test_every_message_round_trips(name: str) -> None:
    msg = schema.EXAMPLES[name]
    data = msg.to_cbor()
    assert type(msg).from_cbor(data) == msg
    assert type(msg).from_cbor(data).to_cbor() == data


@pytest.mark.parametrize("name", sorted(cls.__name__ for cls in messages.FRAME_TYPES.values()))
def test_every_frame_round_trips(name: str) -> None:
    msg = schema.EXAMPLES[name]
    assert decode_frame(encode_frame(msg)) == msg


def test_every_message_has_an_example_and_a_frame_name() -> None:
    documented = {cls for _channel, classes in schema.CHANNELS for cls in classes}
    assert set(messages.FRAME_TYPES.values()) <= documented | {messages.ErrorBody}
    assert {cls.__name__ for cls in documented} == set(schema.EXAMPLES)


def test_protocol_doc_is_generated_from_the_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert schema.rewrite(text) == text, "run: python -m arx.protocol.schema docs/protocol.md"


def test_examples_in_the_doc_decode_to_the_documented_messages() -> None:
    text = DOC.read_text(encoding="utf-8")
    found = re.findall(r"Example \(`(\w+)`, CBOR in hex\):\n\n```cbor-hex\n([0-9a-f]+)\n```", text)
    assert len(found) == len(schema.EXAMPLES)
    for name, hex_bytes in found:
        cls = type(schema.EXAMPLES[name])
        assert cls.from_cbor(bytes.fromhex(hex_bytes)) == schema.EXAMPLES[name]


REFUSED = [
    ("empty", b""),
    ("truncated map", bytes.fromhex("a2")),
    ("truncated bytes", bytes.fromhex("4401")),
    ("trailing", bytes.fromhex("0000")),
    ("indefinite array", bytes.fromhex("9f00ff")),
    ("indefinite bytes", bytes.fromhex("5f4100ff")),
    ("break", bytes.fromhex("ff")),
    ("reserved info", bytes.fromhex("1c")),
    ("tag 35", bytes.fromhex("d8236161")),
    ("tag 2 bignum", bytes.fromhex("c24101")),
    ("tag 28 shareable", bytes.fromhex("d81c80")),
    ("float16", bytes.fromhex("f93c00")),
    ("float64", bytes.fromhex("fb3ff0000000000000")),
    ("undefined", bytes.fromhex("f7")),
    ("simple 16", bytes.fromhex("f0")),
    ("simple ext", bytes.fromhex("f820")),
    ("int not shortest 1", bytes.fromhex("1817")),
    ("int not shortest 2", bytes.fromhex("1900ff")),
    ("int not shortest 4", bytes.fromhex("1a0000ffff")),
    ("int not shortest 8", bytes.fromhex("1b00000000ffffffff")),
    ("length not shortest", bytes.fromhex("5801ff")),
    ("integer key", bytes.fromhex("a10000")),
    ("duplicate key", bytes.fromhex("a2616100616101")),
    ("too deep", b"\x81" * 17 + b"\x00"),
    ("invalid utf-8", bytes.fromhex("62c328")),
    ("huge declared array", bytes.fromhex("9bffffffffffffffff")),
]


@pytest.mark.parametrize(("name", "data"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_cbor(name: str, data: bytes) -> None:
    with pytest.raises(CodecError):
        cbor.decode(data)


def test_depth_limit_is_exact() -> None:
    assert cbor.decode(b"\x81" * 15 + b"\x00") == [[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]
    with pytest.raises(CodecError):
        cbor.decode(b"\x81" * 16 + b"\x00")


def test_size_limit() -> None:
    ok = cbor2.dumps(b"x" * (cbor.MAX_MESSAGE_BYTES - 3))
    assert len(ok) == cbor.MAX_MESSAGE_BYTES
    assert cbor.decode(ok) == b"x" * (cbor.MAX_MESSAGE_BYTES - 3)
    with pytest.raises(CodecError):
        cbor.decode(cbor2.dumps(b"x" * (cbor.MAX_MESSAGE_BYTES - 2)))


SHAPES = [
    ("unknown field", {"nonce": bytes(32), "extra": 1}, "unknown field 'extra'"),
    ("missing field", {}, "missing field 'nonce'"),
    ("wrong type", {"nonce": "x" * 32}, "expected a byte string"),
    ("short nonce", {"nonce": bytes(31)}, "nonce must be 32 bytes"),
    ("long nonce", {"nonce": bytes(33)}, "longer than 32"),
    ("bad literal", {"nonce": bytes(32), "hpke_suite": "rsa"}, "is not one of"),
    ("not a map", [1], "expected a map"),
]


@pytest.mark.parametrize(("name", "obj", "message"), SHAPES, ids=[s[0] for s in SHAPES])
def test_refused_shapes(name: str, obj: object, message: str) -> None:
    with pytest.raises(MessageError, match=re.escape(message)):
        AttestRequest.from_cbor(cbor2.dumps(obj, canonical=True))


def test_booleans_are_not_integers_and_back() -> None:
    with pytest.raises(MessageError):
        messages.ProvisionResponse.from_cbor(
            cbor2.dumps({"workload_port": True, "max_workload_bytes": 1})
        )
    with pytest.raises(MessageError):
        messages.BackendInfo.from_cbor(
            cbor2.dumps({"name": "n", "available": 1, "secure": False, "description": ""})
        )


def test_evidence_must_be_empty_for_kind_none() -> None:
    with pytest.raises(MessageError):
        AttestResponse(
            backend="nil", hpke_suite="x25519", hpke_public_key=b"k", evidence_kind="none",
            evidence=b"x",
        )  # fmt: skip


def test_frame_decoder_reassembles_byte_by_byte() -> None:
    frames = [
        Output(stream="stdout", data=b"a" * 300),
        Output(stream="stderr", data=b""),
        messages.Result(exit=KeepExit(status="exited", code=2), workload_sha256=bytes(32)),
    ]
    stream = b"".join(encode_frame(f) for f in frames)
    decoder = FrameDecoder()
    got = []
    for i in range(len(stream)):
        decoder.feed(stream[i : i + 1])
        while (msg := decoder.next_message()) is not None:
            got.append(msg)
    assert got == frames
    assert decoder.pending == 0


def test_frame_decoder_refuses_an_item_that_can_never_fit() -> None:
    decoder = FrameDecoder()
    decoder.feed(bytes.fromhex("5a00100000"))  # a 1 MiB byte string is announced
    decoder.feed(b"\0" * cbor.MAX_MESSAGE_BYTES)
    with pytest.raises(CodecError):
        decoder.next_message()


def test_unknown_frame_type() -> None:
    with pytest.raises(MessageError, match="unknown frame type"):
        decode_frame(cbor2.dumps({"type": "launch_missiles", "body": {}}))


def test_workload_limit_is_the_callers() -> None:
    data = Workload(module_size=1, args=("a" * 50_000, "b" * 50_000)).to_cbor()
    with pytest.raises(CodecError):
        Workload.from_cbor(data)
    assert Workload.from_cbor(data, limit=200_000).args[1] == "b" * 50_000


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_only_raise_protocol_errors(data: bytes) -> None:
    for cls in (AttestRequest, AttestResponse, Workload, messages.KeepList):
        with contextlib.suppress(ProtocolError):
            cls.from_cbor(data)
    with contextlib.suppress(ProtocolError):
        decode_frame(data)


cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.binary() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=1000, deadline=None)
@given(cbor_values)
def test_canonical_values_round_trip(value: object) -> None:
    data = cbor.encode(value)
    try:
        decoded = cbor.decode(data)
    except CodecError:
        # Only depth can legitimately be refused for generated values.
        assert len(data) > 0
        return
    assert decoded == value


@settings(max_examples=1000, deadline=None)
@given(cbor_values, st.integers(min_value=0, max_value=64))
def test_mutated_valid_messages_only_raise_protocol_errors(value: object, position: int) -> None:
    data = bytearray(cbor.encode({"type": "output", "body": value}))
    data[position % len(data)] ^= 0x5A
    with contextlib.suppress(ProtocolError):
        decode_frame(bytes(data))
