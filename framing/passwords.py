"""The chat/1 password rule and the one way chatd and chatcli read a password line.

PROTOCOL.md, Accounts: a password is 8 to 1,024 characters (code points).
Kept here, beside the codec both sides share, so that the server's
`bad_password` and the clients' refusal before sending agree by construction.
"""

# chat/1 Accounts: a password is 8 to 1,024 characters.
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1_024
PASSWORD_RULE = f"a password is {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS:,} characters"
# The most a password line can take: 1,024 characters of at most 4 UTF-8
# bytes, and "\r\n".  A bound for reading one (bytes, or characters of a
# text stream: larger than needed there, still bounded).
MAX_PASSWORD_LINE = MAX_PASSWORD_CHARS * 4 + 2


def password_ok(password: str) -> bool:
    """Whether `password` has a length chat/1 accepts (8 to 1,024 characters)."""
    return MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS


def password_problem(password: str) -> str | None:
    """Why chat/1 would refuse `password` (one line), or None when it would not."""
    if password_ok(password):
        return None
    return f"{PASSWORD_RULE}, not {len(password)}"


def password_line(text: str) -> str:
    """The first line of `text` without its line end ("\\n" or "\\r\\n"): how a
    password is read from a file, a pipe or a typed answer.  Spaces and any
    other "\\r" are kept: they may be part of the password."""
    return text.split("\n", 1)[0].removesuffix("\r")
