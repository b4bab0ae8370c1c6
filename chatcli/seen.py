"""The last private message shown per conversation, kept between runs.

An account's private conversations outlive the client (chat/1 Accounts):
at each login `welcome.conversations` lists them with their last id, and
without a memory of what it showed before, every run would show up to a
page of each again.  This file remembers, per epoch and account, the last
id shown in each private conversation; the session starts from there
(`history since`), so a new run shows only what is new.  Not per address:
an epoch names one server's (or one cluster's) ids whichever address or
node serves them.

The file is JSON, written whole to a temporary file and renamed over the
old one (never half written), mode 0600 (it says whom the user talks to).
It lives at $CHATCLI_STATE, else $XDG_STATE_HOME/chatcli/seen.json, else
~/.local/state/chatcli/seen.json (the XDG Base Directory Specification's
state directory).  A file that cannot be read is treated as empty, and one
that cannot be written is skipped: at worst messages are shown again.
"""

import json
import os
import tempfile

# Entries (epoch, account) kept, the least recently kept dropped first,
# and conversations kept per entry (as the server lists at most 100 in a
# welcome, more are never needed at once).
MAX_ENTRIES = 100
MAX_CONVERSATIONS = 1000


def default_path(environ) -> str:
    """Where the file lives (see the module docstring)."""
    if environ.get("CHATCLI_STATE"):
        return environ["CHATCLI_STATE"]
    state = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                          ".local", "state")
    return os.path.join(state, "chatcli", "seen.json")


class SeenFile:
    """The file at `path`.

    `load()` -> {(epoch, account): {partner: last id}};
    `keep((epoch, account), {partner: last id})` records one account's
    positions.  Names are casefolded (chat/1 compares them so).
    """

    def __init__(self, path: str):
        self.path = path

    def _entries(self) -> list:
        try:
            with open(self.path, encoding="utf-8") as file:
                entries = json.load(file)["entries"]
        except (OSError, ValueError, KeyError, TypeError):
            return []
        return [entry for entry in entries if type(entry) is dict
                and type(entry.get("seen")) is dict]

    def load(self) -> dict:
        return {(entry.get("epoch"), entry.get("account")): {
                    partner: last for partner, last in entry["seen"].items()
                    if type(last) is int}
                for entry in self._entries()}

    def keep(self, where: tuple, positions: dict) -> None:
        epoch, account = where
        entries = [entry for entry in self._entries()
                   if (entry.get("epoch"), entry.get("account")) != (epoch, account)]
        kept = dict(list(positions.items())[-MAX_CONVERSATIONS:])
        entries.append({"epoch": epoch, "account": account, "seen": kept})
        entries = entries[-MAX_ENTRIES:]
        directory = os.path.dirname(self.path) or "."
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(prefix=".seen-", dir=directory)
            try:
                with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                    json.dump({"entries": entries}, file)
                os.replace(temporary, self.path)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError:
            pass  # nothing kept: messages are shown again next time
