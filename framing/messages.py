"""The shape of every chat/1 message, checked in one place.

`REQUESTS` (client -> server) and `EVENTS` (server -> client) map a message
type to a validator that raises the chat/1 error for a bad member.  The
server decodes with `REQUESTS`, the client with `EVENTS`.  A member that
is missing or of the wrong JSON type is `bad_message`; a name or text member
that breaks its rules is `bad_name` / `bad_text`.  Unknown members are
ignored, as the contract asks for forward compatibility.
"""

import re

from .codec import has_lone_surrogate
from .errors import BadMessage, BadName, BadText

PROTOCOL_VERSION = 1
# The plaintext port a server listens on and a client connects to unless told.
DEFAULT_PORT = 7878
# The room every user is in after welcome; it always exists.
LOBBY = "lobby"
# `welcome.users` lists up to this many lobby members, the newcomer first.
WELCOME_USERS = 100
# A `history` request without `limit` gets at most this many messages.
DEFAULT_HISTORY_LIMIT = 100
# chat/1 names: ASCII only, so no two names can look alike.
MAX_NAME_CHARS = 32
# chat/1 text: 1 to 4,000 code points.
MAX_TEXT_CHARS = 4_000
# The reconnect token: the contract wants >= 128 random bits; we refuse
# anything longer than any token we would hand out.
MAX_TOKEN_CHARS = 128
# Random bytes in a reconnect token the server hands out: 192 bits, 32
# characters in URL-safe base64 (`secrets.token_urlsafe`).
TOKEN_BYTES = 24

_is_name = re.compile(r"[A-Za-z0-9_.\-]{1,32}").fullmatch


def is_name(value) -> bool:
    if type(value) is not str or not 0 < len(value) <= MAX_NAME_CHARS:
        return False
    # isalnum() is the fast path for most names; alone it would admit
    # non-ASCII letters, hence isascii() first.
    return value.isascii() and (value.isalnum() or _is_name(value) is not None)


def check_name(member: str, value) -> None:
    if not is_name(value):
        raise BadName(f"{member} must be 1 to {MAX_NAME_CHARS} characters "
                      f"from A-Z a-z 0-9 _ - .")


def check_text(member: str, value) -> None:
    if type(value) is not str:
        raise BadText(f"{member} must be a string")
    if not 0 < len(value) <= MAX_TEXT_CHARS:
        raise BadText(f"{member} must be 1 to {MAX_TEXT_CHARS} characters, "
                      f"not {len(value)}")
    if "\x00" in value:
        raise BadText(f"{member} must not contain NUL")
    if has_lone_surrogate(value):
        raise BadText(f"{member} has a lone surrogate")


def _count(least: int):
    """A check for an integer member of at least `least`."""
    def check(member: str, value) -> None:
        if type(value) is not int or value < least:
            raise BadMessage(f"{member} must be an integer >= {least}")
    return check


_check_positive = _count(1)   # msg ids, history limits
_check_natural = _count(0)    # history since, user counts


def _check_string(member: str, value) -> None:
    if type(value) is not str:
        raise BadMessage(f"{member} must be a string")


def _check_list(member: str, value) -> None:
    if type(value) is not list:
        raise BadMessage(f"{member} must be a list")


def _check_object(member: str, value) -> None:
    if type(value) is not dict:
        raise BadMessage(f"{member} must be an object")


def _check_number(member: str, value) -> None:
    if type(value) not in (int, float):
        raise BadMessage(f"{member} must be a number")


def _check_version(member: str, value) -> None:
    if type(value) is not int or value != PROTOCOL_VERSION:
        raise BadMessage(f"unsupported version {value!r}; this server speaks "
                         f"version {PROTOCOL_VERSION}")


def _check_token(member: str, value) -> None:
    if type(value) is not str or len(value) > MAX_TOKEN_CHARS:
        raise BadMessage(f"{member} must be a string of at most "
                         f"{MAX_TOKEN_CHARS} characters")


def _check_bool(member: str, value) -> None:
    if type(value) is not bool:
        raise BadMessage(f"{member} must be true or false")


# A password member: any string here (its length is the server's to judge:
# `bad_password`, or `auth_failed` on a login); the codec has refused lone
# surrogates already.  Never quoted in an error.
_check_password = _check_string


def _check_any(member: str, value) -> None:
    """Any JSON value (ping's `data`): the codec has already vetted it."""


_ABSENT = object()  # a member missing from a message (null is a value)


def _shape(required: dict, optional: dict, one_of: tuple = ()):
    """A validator: required and optional members, each with its check.

    `one_of` names the two members of which exactly one must be present.
    """
    required_items = tuple(required.items())
    optional_items = tuple(optional.items())
    first, second = one_of or (None, None)

    def validate(message: dict) -> None:
        get = message.get
        for member, check in required_items:
            value = get(member, _ABSENT)
            if value is _ABSENT:
                raise BadMessage(f"{message['type']} needs member {member!r}")
            check(member, value)
        for member, check in optional_items:
            value = get(member, _ABSENT)
            if value is not _ABSENT:
                check(member, value)
        if first is not None and (first in message) == (second in message):
            raise BadMessage(f"{message['type']} needs exactly one of "
                             f"{first!r} or {second!r}")

    return validate


REQUESTS = {
    "hello": _shape({"name": check_name},
                    {"version": _check_version, "token": _check_token,
                     "password": _check_password}),
    "say": _shape({"text": check_text}, {"room": check_name}),
    "dm": _shape({"to": check_name, "text": check_text}, {}),
    "join": _shape({"room": check_name}, {}),
    "leave": _shape({"room": check_name}, {}),
    "nick": _shape({"name": check_name}, {}),
    "who": _shape({}, {"room": check_name}),
    "rooms": _shape({}, {}),
    "history": _shape({}, {"room": check_name, "with": check_name,
                           "since": _check_natural,
                           "limit": _check_positive},
                      one_of=("room", "with")),
    "ping": _shape({}, {"data": _check_any}),
    "quit": _shape({}, {"reason": check_text}),
    # chat/1 Accounts
    "register": _shape({"password": _check_password}, {}),
    "passwd": _shape({"old": _check_password, "new": _check_password}, {}),
}

EVENTS = {
    "welcome": _shape({"name": check_name, "token": _check_string,
                       "rooms": _check_list, "users": _check_list,
                       "user_count": _check_natural,
                       "server": _check_string, "limits": _check_object},
                      {"epoch": _check_string, "account": _check_bool,
                       "conversations": _check_list}),
    "msg": _shape({"from": check_name, "text": check_text,
                   "id": _check_positive,
                   "ts": _check_number},
                  {"room": check_name, "to": check_name}, one_of=("room", "to")),
    "joined": _shape({"room": check_name, "name": check_name}, {}),
    "left": _shape({"room": check_name, "name": check_name},
                   {"reason": _check_string}),
    "renamed": _shape({"old": check_name, "new": check_name}, {}),
    "users": _shape({"room": check_name, "names": _check_list}, {}),
    "rooms": _shape({"rooms": _check_list}, {}),
    "history": _shape({"messages": _check_list},
                      {"room": check_name, "with": check_name},
                      one_of=("room", "with")),
    "pong": _shape({}, {"data": _check_any}),
    "error": _shape({"code": _check_string, "message": _check_string}, {}),
    "bye": _shape({"reason": _check_string}, {}),
    # chat/1 Accounts
    "registered": _shape({"name": check_name}, {}),
    "password_changed": _shape({}, {}),
}
