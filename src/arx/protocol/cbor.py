"""The one CBOR codec every arx message goes through.

Decoding is two passes. First a strict structural scan of the raw bytes (this
module, no allocation beyond the call stack) enforces the rules below and finds
where the first data item ends, which is also what frames a CBOR sequence
(RFC 8742) arriving in pieces. Then ``cbor2.loads`` builds the Python objects,
with its own limits switched on as a second line of defence.

Rules (docs/protocol.md, "CBOR rules"; ATTESTATION.md §4):

* at most ``MAX_MESSAGE_BYTES`` per item and ``MAX_DEPTH`` levels of nesting;
* definite lengths only, in their shortest form (RFC 8949 §4.2.1), so that a
  value has exactly one encoding and duplicate keys compare as equal bytes;
* map keys are text strings, without duplicates;
* no semantic tags at all: the protocol uses none, and cbor2 would otherwise
  turn tags into regular expressions, MIME parsers, cyclic references or huge
  integers;
* no floating point, no ``undefined`` and no other simple values than
  ``false``, ``true`` and ``null``: the protocol has no use for them.

Encoding is ``cbor2.dumps`` in canonical mode, which this decoder accepts.
"""

from __future__ import annotations

from typing import Any

import cbor2

from arx.errors import CodecError

# Control messages and evidence are small; this bounds what one peer can make
# the other buffer before the message is even looked at. Workload uploads have
# their own, configurable cap (see arx.protocol.messages.MAX_WORKLOAD_BYTES).
MAX_MESSAGE_BYTES = 64 * 1024

# The deepest message in the protocol nests four levels (a list of Keeps, each
# a map holding an exit map); 16 leaves room without letting a peer make the
# decoder recurse thousands of times.
MAX_DEPTH = 16

_MT_UINT, _MT_NINT, _MT_BYTES, _MT_TEXT, _MT_ARRAY, _MT_MAP, _MT_TAG, _MT_SIMPLE = range(8)
_SIMPLE_FALSE, _SIMPLE_TRUE, _SIMPLE_NULL = 20, 21, 22


class Incomplete(Exception):
    """The bytes end before the first data item does (not an error when streaming)."""


def _head(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int, int]:
    """Reads one initial byte and its argument; returns (major, argument, new position)."""
    if pos >= len(data):
        raise Incomplete
    initial = data[pos]
    major, info = initial >> 5, initial & 0x1F
    pos += 1
    if info < 24:
        return major, info, pos
    if info > 27:
        # 28-30 are reserved; 31 is the indefinite-length marker (or "break").
        what = "indefinite length" if info == 31 else "reserved additional information"
        raise CodecError(f"CBOR {what} at byte {pos - 1} is not allowed")
    width = 1 << (info - 24)
    if pos + width > len(data):
        raise Incomplete
    value = int.from_bytes(data[pos : pos + width], "big")
    # Shortest form: each width must be needed. Simple values 0..31 may not
    # use the one-byte extension at all (RFC 8949 §3.3).
    minimum = 24 if width == 1 else 1 << (8 * (width >> 1))
    if major == _MT_SIMPLE:
        if info != 24:
            raise CodecError(f"CBOR floating-point value at byte {pos - 1} is not allowed")
        raise CodecError(f"CBOR simple value {value} at byte {pos - 1} is not allowed")
    if value < minimum:
        raise CodecError(f"CBOR integer or length at byte {pos - 1} is not in its shortest form")
    return major, value, pos + width


def _skip(data: bytes | bytearray | memoryview, pos: int, depth: int) -> int:
    """Validates one data item starting at ``pos`` and returns where it ends."""
    if depth > MAX_DEPTH:
        raise CodecError(f"CBOR nesting deeper than {MAX_DEPTH} levels")
    start = pos
    major, arg, pos = _head(data, pos)
    if major in (_MT_UINT, _MT_NINT):
        return pos
    if major in (_MT_BYTES, _MT_TEXT):
        end = pos + arg
        if end > len(data):
            raise Incomplete
        return end
    if major == _MT_ARRAY:
        for _ in range(arg):
            pos = _skip(data, pos, depth + 1)
        return pos
    if major == _MT_MAP:
        seen: set[bytes] = set()
        for _ in range(arg):
            key_start = pos
            if pos < len(data) and data[pos] >> 5 != _MT_TEXT:
                raise CodecError(f"CBOR map key at byte {pos} is not a text string")
            pos = _skip(data, pos, depth + 1)
            key = bytes(data[key_start:pos])
            if key in seen:
                raise CodecError(f"CBOR map at byte {start} has a duplicate key")
            seen.add(key)
            pos = _skip(data, pos, depth + 1)
        return pos
    if major == _MT_TAG:
        raise CodecError(f"CBOR tag {arg} at byte {start} is not allowed")
    # Major type 7 with a direct argument: only false, true and null.
    if arg in (_SIMPLE_FALSE, _SIMPLE_TRUE, _SIMPLE_NULL):
        return pos
    raise CodecError(f"CBOR simple value {arg} at byte {start} is not allowed")


def item_length(data: bytes | bytearray | memoryview, *, limit: int = MAX_MESSAGE_BYTES) -> int:
    """Length of the first complete, valid data item in ``data``.

    Raises ``Incomplete`` when more bytes are needed (and the item could still
    fit within ``limit``), ``CodecError`` when the bytes can never become an
    acceptable item.
    """
    try:
        end = _skip(data, 0, 1)
    except Incomplete:
        if len(data) >= limit:
            raise CodecError(f"CBOR item larger than {limit} bytes") from None
        raise
    if end > limit:
        raise CodecError(f"CBOR item larger than {limit} bytes")
    return end


def _refuse_tag(_decoder: object, tag: object) -> Any:
    raise CodecError(f"CBOR tag {getattr(tag, 'tag', '?')} is not allowed")


def decode(data: bytes, *, limit: int = MAX_MESSAGE_BYTES) -> Any:
    """Decodes exactly one data item; trailing bytes are an error."""
    if len(data) > limit:
        raise CodecError(f"CBOR message of {len(data)} bytes exceeds the limit of {limit}")
    if not data:
        raise CodecError("empty CBOR message")
    try:
        end = item_length(data, limit=limit)
    except Incomplete:
        raise CodecError("CBOR message is truncated") from None
    if end != len(data):
        raise CodecError(f"{len(data) - end} trailing bytes after the CBOR message")
    try:
        return cbor2.loads(
            data,
            max_depth=MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            tag_hook=_refuse_tag,
        )
    except CodecError:
        raise
    except (cbor2.CBORDecodeError, ValueError, OverflowError, MemoryError, RecursionError) as exc:
        # The scan above should leave nothing for cbor2 to refuse except
        # invalid UTF-8 in a text string; wrap whatever it says.
        raise CodecError(f"invalid CBOR: {exc}") from exc


def encode(obj: Any) -> bytes:
    """Encodes in the canonical form that ``decode`` accepts."""
    try:
        return cbor2.dumps(obj, canonical=True)
    except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
        raise CodecError(f"cannot encode as CBOR: {exc}") from exc


class SequenceDecoder:
    """Sans-IO splitter for a CBOR sequence (RFC 8742) arriving in pieces.

    ``feed`` bytes as they arrive; ``next_item`` returns the next decoded item
    or ``None`` when more bytes are needed.
    """

    def __init__(self, *, limit: int = MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_item(self) -> Any | None:
        if not self._buffer:
            return None
        try:
            end = item_length(self._buffer, limit=self._limit)
        except Incomplete:
            return None
        item = bytes(self._buffer[:end])
        del self._buffer[:end]
        return decode(item, limit=self._limit)

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole item."""
        return len(self._buffer)
