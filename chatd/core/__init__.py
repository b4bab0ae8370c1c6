"""The chat core: users, rooms, messages and history, with no sockets, threads or clocks of its own.

`ChatCore.receive(session, item)` takes one decoded request (or codec error)
and returns the effects it produced (`Deliver`, `Close`, and for a durable
store `StoreMessage`, `LoadRoom`, `LoadHistory`, answered by completions
through `ChatCore.complete`); see docs/architecture.md for the path of one
message.
"""

from .accounts import Account, Credential, LoginLimiter
from .chat import ChatCore, ChatSettings
from .effects import (AccountsLoaded, CheckPassword, Close, Deliver, HistoryLoaded, LoadHistory, LoadPrivate,
                      LoadRoom, PasswordChecked, StorePrivate, RoomLoaded, StoreAccount, StoreMessage, StoreWritable)
from .session import Session

__all__ = ["Account", "AccountsLoaded", "CheckPassword", "Credential", "LoginLimiter", "PasswordChecked", "LoadPrivate", "StorePrivate",
           "StoreAccount", "ChatCore", "ChatSettings", "Close", "Deliver", "HistoryLoaded", "LoadHistory",
           "LoadRoom", "RoomLoaded", "Session", "StoreMessage", "StoreWritable"]
