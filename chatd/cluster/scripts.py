"""The Lua scripts that change the cluster's state in Redis, read from scripts/*.lua.

Each script is `common.lua` (key names and shared steps) followed by its own
file, loaded with SCRIPT LOAD at every connect and run with EVALSHA by its
SHA1 (which Redis computes the same way: the SHA1 of the source).
"""

import hashlib
from importlib import resources

NAMES = ("epoch", "lease", "hello", "join", "leave", "bye", "say", "dm", "nick", "who",
         "rooms", "history", "private", "register", "passwd", "unregister", "inbox",
         "resume", "sessions", "start")


class Script:
    """One script: `name`, `source` (bytes) and `sha` (hex SHA1 of the source)."""

    __slots__ = ("name", "source", "sha")

    def __init__(self, name: str, source: bytes):
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source).hexdigest()


def load_scripts() -> dict[str, Script]:
    """Every script by name."""
    folder = resources.files(__package__) / "scripts"
    common = (folder / "common.lua").read_bytes()
    return {name: Script(name, common + b"\n" + (folder / f"{name}.lua").read_bytes())
            for name in NAMES}
