"""Where messages are kept: a SQLite file (durable, the default) or nowhere but memory.

`open_store(spec, ...)` is the one seam the daemon calls at start: it
returns the epoch, whether the store is durable, the lobby's numbering and
newest messages, and (when durable) the `Writer` the loop's `StoreLink`
drives on a worker thread.
"""

import os
import secrets
from dataclasses import dataclass, field

from framing import LOBBY

from .link import StoreLink
from .file import StoreError, open_file
from .sqlite import Writer

MEMORY = "memory"

__all__ = ["MEMORY", "Store", "StoreError", "StoreLink", "open_store"]


@dataclass
class Store:
    """An opened store: `epoch` (welcome.epoch), `durable`, `lobby` = (next id,
    newest payloads), `writer` (None in memory), `path` (absolute, or None),
    `crashed` (the last run did not shut down cleanly), `id_floor`, `accounts`
    (casefolded name -> Account: read from the file, or empty in memory, where
    accounts end with the process), `pairs` (the accounts' private
    conversations on file: (low key, high key, next id), least recent first)."""

    epoch: str
    durable: bool
    lobby: tuple[int, list]
    writer: Writer | None = None
    path: str | None = None
    crashed: bool = False
    id_floor: int = 0
    accounts: dict = field(default_factory=dict)
    pairs: list = field(default_factory=list)


def open_store(spec: str, retention: int, history_size: int) -> Store:
    """`spec` is a file path or MEMORY.  Raises StoreError for a file chatd must not use.

    Runs before the loop: the lobby is read here, every other room lazily
    by the worker when it is first used.
    """
    if spec == MEMORY:
        # Nothing survives a restart, so every start is a new epoch.
        return Store(epoch=secrets.token_hex(8), durable=False, lobby=(1, []))
    path = os.path.abspath(spec)
    opening = open_file(path)
    writer = Writer(path, opening.id_floor, retention, history_size, opening.lock)
    try:
        return Store(epoch=opening.epoch, durable=True, lobby=writer.load_room(LOBBY),
                     writer=writer, path=path, crashed=opening.crashed,
                     id_floor=opening.id_floor, accounts=writer.load_accounts(),
                     pairs=[(low, high, max(last_id, opening.id_floor) + 1)
                            for low, high, last_id in writer.load_pairs()])
    except BaseException:
        os.close(opening.lock)  # a start that failed here holds nothing
        raise
