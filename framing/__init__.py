"""framing: the chat/1 wire codec, shared by chatd, chatcli and the benchmark.

Bytes in, messages out, and back; no I/O (see docs/protocol.md).
"""

from .codec import (HEADER_SIZE, MAX_DEPTH, MAX_FRAME, Decoder, encode,
                    encode_payload, frame, frames, parse_payload)
from .errors import (BadFrame, BadMessage, BadName, BadText, FrameError,
                     FrameTooLarge, LocalProtocolError, MessageError,
                     ProtocolError, UnknownType)
from .messages import (DEFAULT_HISTORY_LIMIT, DEFAULT_PORT, EVENTS, LOBBY,
                       MAX_NAME_CHARS, MAX_TEXT_CHARS, PROTOCOL_VERSION,
                       REQUESTS, TOKEN_BYTES, WELCOME_USERS, check_name,
                       check_text, is_name)
from .passwords import (MAX_PASSWORD_CHARS, MAX_PASSWORD_LINE,
                        MIN_PASSWORD_CHARS, PASSWORD_RULE, password_line,
                        password_ok, password_problem)
from .ratelimit import TokenBucket

__all__ = [
    "HEADER_SIZE", "MAX_DEPTH", "MAX_FRAME", "Decoder", "encode",
    "encode_payload", "frame", "frames", "parse_payload",
    "BadFrame", "BadMessage", "BadName", "BadText", "FrameError",
    "FrameTooLarge", "LocalProtocolError", "MessageError", "ProtocolError",
    "UnknownType",
    "DEFAULT_HISTORY_LIMIT", "DEFAULT_PORT", "EVENTS", "LOBBY",
    "MAX_NAME_CHARS", "MAX_TEXT_CHARS", "PROTOCOL_VERSION", "REQUESTS",
    "TOKEN_BYTES", "WELCOME_USERS", "check_name", "check_text", "is_name",
    "MAX_PASSWORD_CHARS", "MAX_PASSWORD_LINE", "MIN_PASSWORD_CHARS",
    "PASSWORD_RULE", "password_line", "password_ok", "password_problem",
    "TokenBucket",
]
