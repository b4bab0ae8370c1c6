"""Typed errors of the chat/1 codec, one class per wire error code.

As in h11, errors are split by who was wrong: the peer (`ProtocolError`
and its subclasses, carried back to it as an `error` frame) or this side
(`LocalProtocolError`, a bug or a refused outgoing message).  A peer error
is either fatal to the stream (`FrameError`: the frame boundary is lost, the
connection must close) or confined to one intact frame (`MessageError`).
"""


class ProtocolError(Exception):
    """The peer sent something chat/1 does not allow.

    `code` is the chat/1 error code, `ref` the request's `ref` when it could
    be read, so the error can be matched to the request that caused it.
    """

    code = "bad_message"
    fatal = False

    def __init__(self, message: str, ref: str | int | None = None):
        super().__init__(message)
        self.message = message
        self.ref = ref

    def __eq__(self, other):
        return (type(self) is type(other) and self.message == other.message
                and self.ref == other.ref)

    def __hash__(self):
        return hash((type(self), self.message))

    def __repr__(self):
        return f"{type(self).__name__}({self.message!r}, ref={self.ref!r})"


class FrameError(ProtocolError):
    """The byte stream itself is broken; nothing after it can be trusted."""

    fatal = True


class BadFrame(FrameError):
    code = "bad_frame"


class FrameTooLarge(FrameError):
    code = "frame_too_large"


class MessageError(ProtocolError):
    """One frame's payload is unacceptable; the stream goes on."""


class BadMessage(MessageError):
    code = "bad_message"


class UnknownType(MessageError):
    code = "unknown_type"


class BadName(MessageError):
    code = "bad_name"


class BadText(MessageError):
    code = "bad_text"


class LocalProtocolError(Exception):
    """This side tried to send something chat/1 does not allow."""
