"""Terminal input decoding: raw bytes from a terminal in raw mode -> keys.

Pure, like the codec: `KeyDecoder.feed(bytes)` returns the keys the bytes
complete, a `Key` for an editing key and a `str` for a run of typed text.
UTF-8 and escape sequences may be split across reads; the undecoded tail
waits for the next feed.
"""

import codecs
import enum


class Key(enum.Enum):
    ENTER = "enter"
    BACKSPACE = "backspace"
    DELETE = "delete"
    LEFT = "left"
    RIGHT = "right"
    WORD_LEFT = "word-left"
    WORD_RIGHT = "word-right"
    HOME = "home"
    END = "end"
    UP = "up"
    DOWN = "down"
    KILL_TO_START = "kill-to-start"
    KILL_TO_END = "kill-to-end"
    KILL_WORD = "kill-word"
    INTERRUPT = "interrupt"
    EOF = "eof"
    REDRAW = "redraw"
    SUSPEND = "suspend"


# Readline's control keys (raw mode delivers them as bytes, not signals).
CONTROL_KEYS = {
    "\r": Key.ENTER, "\n": Key.ENTER,
    "\x7f": Key.BACKSPACE, "\x08": Key.BACKSPACE,
    "\x01": Key.HOME, "\x05": Key.END,
    "\x02": Key.LEFT, "\x06": Key.RIGHT,
    "\x10": Key.UP, "\x0e": Key.DOWN,
    "\x15": Key.KILL_TO_START, "\x0b": Key.KILL_TO_END, "\x17": Key.KILL_WORD,
    "\x03": Key.INTERRUPT, "\x04": Key.EOF,
    "\x0c": Key.REDRAW, "\x1a": Key.SUSPEND,
}

# What xterm, VT220, rxvt and the Linux console send after ESC, in both the
# normal ("[") and the application cursor-key ("O") mode.
ESCAPE_SEQUENCES = {
    "[A": Key.UP, "[B": Key.DOWN, "[C": Key.RIGHT, "[D": Key.LEFT,
    "OA": Key.UP, "OB": Key.DOWN, "OC": Key.RIGHT, "OD": Key.LEFT,
    "[H": Key.HOME, "[F": Key.END, "OH": Key.HOME, "OF": Key.END,
    "[1~": Key.HOME, "[7~": Key.HOME, "[4~": Key.END, "[8~": Key.END,
    "[3~": Key.DELETE,
    "[1;5C": Key.WORD_RIGHT, "[1;5D": Key.WORD_LEFT,
    "[1;3C": Key.WORD_RIGHT, "[1;3D": Key.WORD_LEFT,
}

ESC = "\x1b"


def is_printable(char: str) -> bool:
    """Text the editor may hold: no C0/C1 control characters, no DEL."""
    code = ord(char)
    return code >= 0x20 and not 0x7f <= code <= 0x9f


class KeyDecoder:
    """Incremental decoder of a terminal's input bytes into keys."""

    def __init__(self):
        # A byte that is not UTF-8 becomes U+FFFD instead of stopping input.
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""  # an escape sequence not yet complete

    def feed(self, data: bytes) -> list:
        chars = self._pending + self._utf8.decode(data)
        self._pending = ""
        keys: list = []
        text: list[str] = []
        position = 0
        while position < len(chars):
            char = chars[position]
            if char == ESC:
                end = _escape_end(chars, position)
                if end is None:  # incomplete: wait for the rest
                    self._pending = chars[position:]
                    break
                key = ESCAPE_SEQUENCES.get(chars[position + 1:end])
                if key is not None:
                    _flush_text(text, keys)
                    keys.append(key)
                position = end  # unknown sequences are dropped, never typed
                continue
            if char in CONTROL_KEYS:
                _flush_text(text, keys)
                keys.append(CONTROL_KEYS[char])
            elif is_printable(char):
                text.append(char)
            position += 1
        _flush_text(text, keys)
        return keys


def _flush_text(text: list[str], keys: list) -> None:
    if text:
        keys.append("".join(text))
        text.clear()


def _escape_end(chars: str, start: int) -> int | None:
    """Index just past the escape sequence at `start`, None if incomplete.

    A lone ESC followed by anything but "[" or "O" is the ESC key itself;
    it ends at once so that the next key is not swallowed.
    """
    if start + 1 >= len(chars):
        return None
    introducer = chars[start + 1]
    if introducer == "O":
        return start + 3 if start + 2 < len(chars) else None
    if introducer != "[":
        return start + 1
    # CSI: parameter and intermediate bytes, then one final byte @ to ~.
    for index in range(start + 2, len(chars)):
        if "\x40" <= chars[index] <= "\x7e":
            return index + 1
        if not "\x20" <= chars[index] <= "\x3f":
            return index  # malformed: drop what came so far
    return None
