"""How chat events look on screen: one `Line` per event, colour optional.

A `Line` is a sequence of styled spans plus a kind that says where it goes
in pipe mode (chat and notices to stdout, status and errors to stderr).
`Line.render(color)` adds ANSI colours only when asked, so the caller
decides (a terminal, and NO_COLOR not set).  Text from the server is
sanitized: control characters would otherwise move the cursor or change
the terminal's state.
"""

import time
import zlib
from dataclasses import dataclass

# Kinds of line.
CHAT = "chat"        # a msg, or a history line
NOTICE = "notice"    # presence and answers to commands: stdout in pipe mode
STATUS = "status"    # connection state: stderr in pipe mode
ERROR = "error"      # server errors and refused commands: stderr in pipe mode

# ANSI SGR parameters of each style; names get one colour each, stable
# across runs (crc32, not the salted hash()).
STYLES = {
    "time": "2", "me": "1", "room": "36", "notice": "2", "dm": "35",
    "error": "31", "status": "33",
}
NAME_COLOURS = ("31", "32", "33", "34", "35", "36", "91", "92", "93", "94", "95", "96")


@dataclass(frozen=True)
class Line:
    kind: str
    spans: tuple  # of (style or None, text)

    @property
    def text(self) -> str:
        return "".join(text for _, text in self.spans)

    def render(self, color: bool) -> str:
        if not color:
            return self.text
        return "".join(f"\x1b[{_sgr(style)}m{text}\x1b[0m" if style else text
                       for style, text in self.spans)


def _sgr(style: str) -> str:
    if style.startswith("name:"):
        name = style[5:].lower()
        return NAME_COLOURS[zlib.crc32(name.encode()) % len(NAME_COLOURS)]
    return STYLES[style]


def sanitize(text: str) -> str:
    """Make control characters visible instead of obeyed (ESC, CR, newline...).

    C0 controls become their Unicode control pictures (newline shows as ␊),
    DEL and C1 controls a hex escape, so one message is one screen line.
    """
    if text.isprintable():
        return text
    out = []
    for char in text:
        code = ord(char)
        if code < 0x20:
            out.append(chr(0x2400 + code))
        elif 0x7f <= code <= 0x9f:
            out.append(f"\\x{code:02x}")
        else:
            out.append(char)
    return "".join(out)


def clock(ts: float | None = None) -> str:
    """HH:MM in local time of a server timestamp, or of now."""
    return time.strftime("%H:%M", time.localtime(ts))


def same_name(a: str | None, b: str | None) -> bool:
    """chat/1 names compare case-insensitively (they are ASCII)."""
    return a is not None and b is not None and a.lower() == b.lower()


def _name_style(name: str, me: str | None) -> str:
    return "me" if same_name(name, me) else "name:" + name


def message_line(msg: dict, current_room: str | None, me: str | None) -> Line:
    """A msg: `HH:MM <alice> text`, `[#room]` when not the current room,
    `*alice*` for a private message to me and `-> *bob*` for one I sent."""
    spans = [("time", clock(msg.get("ts"))), (None, " ")]
    text = sanitize(msg["text"])
    sender = msg["from"]
    if "to" in msg:
        if same_name(sender, me) and not same_name(msg["to"], me):
            spans += [("dm", "-> "), ("dm", f"*{msg['to']}*")]
        else:
            spans += [("dm", f"*{sender}*")]
        spans += [(None, " "), ("dm", text)]
        return Line(CHAT, tuple(spans))
    room = msg["room"]
    if not same_name(room, current_room):
        spans += [("room", f"[#{room}]"), (None, " ")]
    spans += [(None, "<"), (_name_style(sender, me), sender), (None, "> "), (None, text)]
    return Line(CHAT, tuple(spans))


def notice(text: str, room: str | None = None, current_room: str | None = None) -> Line:
    """A `*` line (presence, command answers), `[#room]` when not current."""
    spans = [("time", clock()), (None, " ")]
    if room is not None and not same_name(room, current_room):
        spans += [("room", f"[#{room}]"), (None, " ")]
    spans.append(("notice", "* " + sanitize(text)))
    return Line(NOTICE, tuple(spans))


def status(text: str) -> Line:
    return Line(STATUS, (("status", "* " + sanitize(text)),))


def error(text: str) -> Line:
    return Line(ERROR, (("error", "! " + sanitize(text)),))


def server_error(event: dict) -> Line:
    return error(f"{event['code']}: {event['message']}")
