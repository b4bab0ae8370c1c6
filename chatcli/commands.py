"""What a line the user typed means: chat text or a /command, parsed, no I/O.

`parse(line)` returns one of the command classes below, `Invalid` with a
one-line reason when the line cannot be sent, or None for a blank line.
Names are checked here so the user learns at once what chat/1 accepts.
"""

from dataclasses import dataclass, field

from framing import MAX_NAME_CHARS, MAX_TEXT_CHARS, is_name
from framing.codec import has_lone_surrogate


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class Join:
    room: str


@dataclass(frozen=True)
class Leave:
    room: str | None  # None: the current room


@dataclass(frozen=True)
class Msg:
    to: str
    text: str


@dataclass(frozen=True)
class Nick:
    name: str


@dataclass(frozen=True)
class Who:
    room: str | None  # None: the current room


@dataclass(frozen=True)
class Rooms:
    pass


@dataclass(frozen=True)
class History:
    count: int | None  # None: the server's default


@dataclass(frozen=True)
class Quit:
    reason: str | None


@dataclass(frozen=True)
class Help:
    pass


# The account commands: typed without their passwords, which are asked for
# without echo (`passwords.Dialog`) and filled in then.  repr=False: a
# password never shows in a traceback or a log.
@dataclass(frozen=True)
class Register:
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Passwd:
    old: str | None = field(default=None, repr=False)
    new: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Invalid:
    reason: str


HELP = (
    "text                send text to the current room (//text sends /text)",
    "/join ROOM          join ROOM and talk there",
    "/leave [ROOM]       leave ROOM (default: the current room)",
    "/msg NAME TEXT      send a private message",
    "/nick NAME          change your name",
    "/who [ROOM]         list the users in ROOM (default: the current room)",
    "/rooms              list the rooms",
    "/history [N]        show the last N messages of the current room",
    "/register           make your name an account (asks for a password twice)",
    "/passwd             change your account's password (asks without echo)",
    "/quit [REASON]      leave the chat",
    "/help               show this list",
    "keys: Ctrl-A/E home/end, Ctrl-U/K/W delete, Up/Down recall, "
    "Ctrl-C or Ctrl-D on an empty line to quit",
)

NAME_RULE = f"1 to {MAX_NAME_CHARS} characters from A-Z a-z 0-9 _ - ."


def text_problem(text: str) -> str | None:
    """Why chat/1 would refuse `text` as a message's text, in one line, or
    None when it would not: 1 to MAX_TEXT_CHARS characters, no NUL, and
    encodable as UTF-8 (an argument of bytes that are not UTF-8 arrives as
    lone surrogates)."""
    if not text:
        return "text is empty"
    if len(text) > MAX_TEXT_CHARS:
        return f"text of {len(text)} characters is over the limit of {MAX_TEXT_CHARS}"
    if "\x00" in text:
        return "text contains NUL, which chat/1 does not carry"
    if has_lone_surrogate(text):
        return "text is not valid UTF-8"
    return None


def parse(line: str):
    """Parse one line of input into a command (see the module docstring)."""
    line = line.rstrip("\r\n")
    if not line.strip():
        return None
    if line.startswith("//"):
        return Say(line[1:])
    if not line.startswith("/"):
        return Say(line)
    word, _, rest = line[1:].partition(" ")
    parser = _PARSERS.get(word.lower())
    if parser is None:
        return Invalid(f"unknown command /{word}; /help lists the commands")
    return parser(rest.strip())


def _room_argument(argument: str, usage: str):
    """A room name (a leading '#' is allowed), or Invalid."""
    if " " in argument:
        return Invalid(f"usage: {usage}")
    room = argument.removeprefix("#")
    if not is_name(room):
        return Invalid(f"bad room name {argument!r}: {NAME_RULE}")
    return room


def _parse_join(argument: str):
    if not argument:
        return Invalid("usage: /join ROOM")
    room = _room_argument(argument, "/join ROOM")
    return room if isinstance(room, Invalid) else Join(room)


def _parse_leave(argument: str):
    if not argument:
        return Leave(None)
    room = _room_argument(argument, "/leave [ROOM]")
    return room if isinstance(room, Invalid) else Leave(room)


def _parse_who(argument: str):
    if not argument:
        return Who(None)
    room = _room_argument(argument, "/who [ROOM]")
    return room if isinstance(room, Invalid) else Who(room)


def _parse_msg(argument: str):
    name, _, text = argument.partition(" ")
    if not name or not text.strip():
        return Invalid("usage: /msg NAME TEXT")
    if not is_name(name):
        return Invalid(f"bad user name {name!r}: {NAME_RULE}")
    return Msg(name, text)


def _parse_nick(argument: str):
    if not argument or " " in argument:
        return Invalid("usage: /nick NAME")
    if not is_name(argument):
        return Invalid(f"bad user name {argument!r}: {NAME_RULE}")
    return Nick(argument)


def _parse_rooms(argument: str):
    return Invalid("usage: /rooms") if argument else Rooms()


def _parse_history(argument: str):
    if not argument:
        return History(None)
    if not argument.isdecimal() or int(argument) < 1:
        return Invalid("usage: /history [N], N a whole number of at least 1")
    return History(int(argument))


def _parse_quit(argument: str):
    return Quit(argument or None)


def _parse_help(argument: str):
    return Help()


def _parse_register(argument: str):
    # Never a password on the command line: it would be echoed and recalled.
    return Invalid("usage: /register (the password is asked for)") if argument else Register()


def _parse_passwd(argument: str):
    return Invalid("usage: /passwd (the passwords are asked for)") if argument else Passwd()


_PARSERS = {
    "join": _parse_join, "leave": _parse_leave, "msg": _parse_msg,
    "nick": _parse_nick, "who": _parse_who, "rooms": _parse_rooms,
    "history": _parse_history, "quit": _parse_quit, "help": _parse_help,
    "register": _parse_register, "passwd": _parse_passwd,
}
