"""chat/1 frames: a 4-byte big-endian length, then a UTF-8 JSON object.

Sans-IO, as in h11: `Decoder.feed(bytes)` returns what the bytes completed,
`encode(message)` returns the bytes to send.  Nothing here touches a socket.
The JSON that Python accepts but chat/1 refuses (NaN, Infinity, numbers
that overflow, integers beyond 64 bits, nesting deeper than 32, lone
surrogates) is refused while decoding, so no later layer meets it.
"""

import json
import math
import re
import struct
from collections.abc import Callable, Mapping

from .errors import (BadFrame, BadMessage, FrameTooLarge, LocalProtocolError,
                     MessageError, UnknownType)

# chat/1's default bound on a frame's payload; a server option.
MAX_FRAME = 65_536
# chat/1: nesting is counted from the top-level object as level 1.
MAX_DEPTH = 32
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
# chat/1: a `ref` string is at most 128 characters.
MAX_REF_CHARS = 128

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size

_unpack_header = HEADER.unpack_from
_skip_json_space = re.compile(r"[ \t\n\r]*").match


class _Refused(ValueError):
    """Raised from inside json's hooks to stop at the first refused token."""


def _parse_int(digits: str) -> int:
    # The length test comes first so a 5,000-digit literal is never converted.
    if len(digits) > 20:
        raise _Refused("integer beyond 64 bits")
    value = int(digits)
    if not INT64_MIN <= value <= INT64_MAX:
        raise _Refused("integer beyond 64 bits")
    return value


def _parse_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise _Refused(f"number {literal[:40]} is out of range")
    return value


def _parse_constant(name: str):
    raise _Refused(f"{name} is not JSON")


_raw_decode = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float,
                               parse_constant=_parse_constant).raw_decode
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                                allow_nan=False, check_circular=False).encode


def _depth(value) -> int:
    """Nesting depth of a decoded JSON value, the top level counted as 1."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        value, level = stack.pop()
        if type(value) is dict:
            children = value.values()
        elif type(value) is list:
            children = value
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def _has_lone_surrogate(value) -> bool:
    stack = [value]
    while stack:
        value = stack.pop()
        if type(value) is str:
            if has_lone_surrogate(value):
                return True
        elif type(value) is dict:
            stack.extend(value)
            stack.extend(value.values())
        elif type(value) is list:
            stack.extend(value)
    return False


def has_lone_surrogate(text: str) -> bool:
    """True when `text` cannot be encoded as UTF-8 (JSON's "\\ud800")."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_ref(message: dict):
    """Return the message's `ref`, or None; raise BadMessage if it is bad."""
    ref = message.get("ref")
    if ref is None and "ref" not in message:
        return None
    kind = type(ref)
    # A lone surrogate would make every reply carrying the ref unencodable.
    if (kind is str and len(ref) <= MAX_REF_CHARS and not has_lone_surrogate(ref)) \
            or kind is int:
        return ref  # ints were already bounded to 64 bits by _parse_int
    raise BadMessage("ref must be a string of at most 128 characters "
                     "or a 64-bit integer")


Validator = Callable[[dict], None]


def parse_payload(payload, schema: Mapping[str, Validator] | None = None) -> dict:
    """Decode one frame's payload into a message, or raise a MessageError.

    With a `schema` (type -> validator) the message's shape is checked too;
    a type missing from it is `unknown_type`.  The error carries the
    message's `ref` when that was readable.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadMessage(f"payload is not valid UTF-8 (byte {exc.start})") from None
    try:
        message, end = _raw_decode(
            text, 0 if text.startswith("{") else _skip_json_space(text).end())
    except _Refused as exc:
        raise BadMessage(str(exc)) from None
    except RecursionError:
        raise BadMessage(f"JSON nested deeper than {MAX_DEPTH}") from None
    except ValueError as exc:  # JSONDecodeError, or int()'s digit limit
        reason = getattr(exc, "msg", None) or "invalid number"
        raise BadMessage(f"payload is not JSON: {reason}") from None
    if end != len(text) and _skip_json_space(text, end).end() != len(text):
        raise BadMessage("payload has data after the JSON value")
    if type(message) is not dict:
        raise BadMessage("payload is not a JSON object")
    # Cheap pre-tests keep the common case free of a walk over the value.
    if payload.count(b"{") + payload.count(b"[") > MAX_DEPTH and _depth(message) > MAX_DEPTH:
        raise BadMessage(f"JSON nested deeper than {MAX_DEPTH}")
    kind = message.get("type")
    if type(kind) is not str:
        raise BadMessage("message has no string member 'type'")
    ref = check_ref(message)
    escaped_surrogate = b"\\u" in payload and (b"\\ud" in payload or b"\\uD" in payload)
    if schema is not None:
        validate = schema.get(kind)
        try:
            if validate is None:
                raise UnknownType(f"unknown message type {kind[:40]!r}")
            validate(message)
        except MessageError as exc:
            exc.ref = ref
            raise
    if escaped_surrogate and _has_lone_surrogate(message):
        raise BadMessage("string with a lone surrogate", ref)
    return message


class Decoder:
    """Incremental chat/1 decoder: feed it bytes, get back what they complete.

    `feed` returns a list holding, in stream order, a dict for every good
    message and a MessageError for every bad frame; the stream goes on after
    those.  A bad length (0, or over `max_frame`) ends the list with a
    FrameError as soon as its 4-byte header is complete; the decoder is then
    `broken` and ignores whatever follows, without ever buffering the body.
    """

    def __init__(self, max_frame: int = MAX_FRAME,
                 schema: Mapping[str, Validator] | None = None):
        self.max_frame = max_frame
        self.schema = schema
        self.broken = False
        # An incomplete frame's bytes; b"" (shared) rather than an empty
        # bytearray while there are none, 56 bytes less per idle connection.
        self._pending = b""

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back, waiting for the rest."""
        return len(self._pending)

    def feed(self, data) -> list:
        if self.broken:
            return []
        held = bool(self._pending)
        if held:
            self._pending += data
            buffer = self._pending
        else:
            buffer = data if type(data) is not memoryview else bytes(data)
        out = []
        position, available = 0, len(buffer)
        max_frame, schema = self.max_frame, self.schema
        while available - position >= HEADER_SIZE:
            (size,) = _unpack_header(buffer, position)
            if size == 0 or size > max_frame:
                out.append(BadFrame("frame with length 0") if size == 0 else
                           FrameTooLarge(f"frame of {size} bytes exceeds "
                                         f"max_frame {max_frame}"))
                self.broken = True
                self._pending = b""
                return out
            end = position + HEADER_SIZE + size
            if end > available:
                break
            try:
                out.append(parse_payload(buffer[position + HEADER_SIZE:end], schema))
            except MessageError as exc:
                out.append(exc)
            position = end
        if held:
            del buffer[:position]
            if not buffer:
                self._pending = b""
        elif position < available:
            self._pending = bytearray(buffer[position:])
        return out


def encode_payload(message: Mapping) -> bytes:
    """The JSON payload of one message, compact UTF-8."""
    try:
        return _encode_json(message).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise LocalProtocolError(f"message is not chat/1 JSON: {exc}") from None


def frame(payload: bytes, max_frame: int = MAX_FRAME) -> bytes:
    """Prefix a payload with its length; refuse what the peer would refuse."""
    if not 0 < len(payload) <= max_frame:
        raise LocalProtocolError(f"payload of {len(payload)} bytes does not fit "
                                 f"max_frame {max_frame}")
    return HEADER.pack(len(payload)) + payload


def frames(payloads: list[bytes], max_frame: int = MAX_FRAME) -> bytes:
    """Consecutive frames of `payloads` as one bytes object: one join, no
    payload copied twice; refuses what `frame` refuses."""
    pieces = []
    for payload in payloads:
        if not 0 < len(payload) <= max_frame:
            raise LocalProtocolError(f"payload of {len(payload)} bytes does not fit "
                                     f"max_frame {max_frame}")
        pieces.append(HEADER.pack(len(payload)))
        pieces.append(payload)
    return b"".join(pieces)


def encode(message: Mapping, max_frame: int = MAX_FRAME) -> bytes:
    """One message as one frame, ready to give to any number of recipients."""
    return frame(encode_payload(message), max_frame)
