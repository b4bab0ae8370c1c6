"""What the chat core asks its caller to do (effects) and what comes back (completions).

The core never touches a socket or a file: `ChatCore.receive`, `end` and
`complete` return a list of effects, in the order they must happen.
Payloads are JSON bytes without the chat/1 length prefix; the caller frames
them (once per effect, whatever the number of recipients) for the
transport it serves.  Store effects go to the store's worker thread; its
answers come back as completions through `ChatCore.complete`.
"""

from collections import Counter

from framing import encode_payload
from framing.paging import paged


class Deliver:
    """Give one payload to each of `recipients`, in this order relative to other effects.

    `recipients` is an iterable of `Session`s: a room's member dict (the
    live set: deliver before the room changes) or a tuple.  `room` is set
    only for a plain room broadcast of a `msg` (a `say` without `ref`): the
    caller may then join consecutive broadcasts to the same room into one
    chunk per member, because a `say` cannot change who is in the room.
    """

    __slots__ = ("recipients", "payload", "room")

    def __init__(self, recipients, payload: bytes, room=None):
        self.recipients = recipients
        self.payload = payload
        self.room = room

    def __repr__(self):
        return f"Deliver({len(self.recipients)} recipients, {self.payload!r})"


class Close:
    """Close `session` with `bye` {reason} (and `ref`, the quit's, when set).

    The core has already ended the session (it left every room and its name
    is free), so the caller only says goodbye and closes.
    """

    __slots__ = ("session", "reason", "ref")

    def __init__(self, session, reason: str, ref=None):
        self.session = session
        self.reason = reason
        self.ref = ref

    def __repr__(self):
        return f"Close({self.session!r}, {self.reason!r})"


class StoreMessage:
    """Write one room message to the durable store (room key and name as spelled, id,
    ts in Unix seconds, sender's name, text).  Already delivered: the store
    keeps what was acknowledged (group commit, once per loop turn)."""

    __slots__ = ("room_key", "room", "id", "ts", "sender", "text")

    def __init__(self, room_key: str, room: str, msg_id: int, ts: float, sender: str,
                 text: str):
        self.room_key = room_key
        self.room = room
        self.id = msg_id
        self.ts = ts
        self.sender = sender
        self.text = text


class LoadRoom:
    """Read the numbering and newest messages of `room` from the store
    (answered by `RoomLoaded` for that same Room object)."""

    __slots__ = ("room",)

    def __init__(self, room):
        self.room = room

    @property
    def key(self) -> str:
        return self.room.key


class LoadHistory:
    """Read `history` for `session` from the store: room `key`, the first `limit`
    after `since` (or the newest `limit`), oldest first (answered by
    `HistoryLoaded`)."""

    __slots__ = ("session", "key", "since", "limit")

    def __init__(self, session, key: str, since: int | None, limit: int):
        self.session = session
        self.key = key
        self.since = since
        self.limit = limit


class RoomLoaded:
    """Completion of `LoadRoom`: `room` (the Room object that asked), its next id and
    its newest payloads with consecutive ids ending at `next_id - 1` (empty
    after a jump in numbering).

    Tied to the object, not the name: a room closed while its load was on
    the way and opened again asks again, and an answer read before the
    closed one's last messages were written must not number the new one
    (that reused ids; found by the lifecycle suite).
    """

    __slots__ = ("room", "next_id", "payloads")

    def __init__(self, room, next_id: int, payloads: list):
        self.room = room
        self.next_id = next_id
        self.payloads = payloads


class HistoryLoaded:
    """Completion of `LoadHistory`: the payloads it asked for, oldest first."""

    __slots__ = ("session", "payloads")

    def __init__(self, session, payloads: list):
        self.session = session
        self.payloads = payloads


class StoreWritable:
    """Completion: whether the store takes new messages (False while the disk fails
    or too much is not yet committed; `say`/`dm` are then `unavailable`)."""

    __slots__ = ("writable",)

    def __init__(self, writable: bool):
        self.writable = writable


class StorePrivate:
    """Write one private message between two accounts to the durable store: the
    pair's account keys in order (`low`, `high`), id, ts, sender's and
    recipient's names, text.  Already delivered, as `StoreMessage`."""

    __slots__ = ("low", "high", "id", "ts", "sender", "recipient", "text")

    def __init__(self, low: str, high: str, msg_id: int, ts: float, sender: str,
                 recipient: str, text: str):
        self.low = low
        self.high = high
        self.id = msg_id
        self.ts = ts
        self.sender = sender
        self.recipient = recipient
        self.text = text


class LoadPrivate:
    """Read `history` {with} for `session` from the store: the pair of accounts
    (`low`, `high`), as `LoadHistory` does for a room (answered by `HistoryLoaded`)."""

    __slots__ = ("session", "low", "high", "since", "limit")

    def __init__(self, session, low: str, high: str, since: int | None, limit: int):
        self.session = session
        self.low = low
        self.high = high
        self.since = since
        self.limit = limit


class CheckPassword:
    """For the password worker: check `password` against `credential` and/or hash `new`.

    - a login: `password` and the account's `credential` (None for a name
      that is no account: the worker hashes anyway and fails, so both take
      the same time), `new` None;
    - `register`: `new` only;
    - `passwd`: all three; `new` is hashed only when `password` matched.

    Answered by `PasswordChecked`.  The passwords live only in this object,
    between the request and the worker: never logged, echoed or stored.
    """

    __slots__ = ("session", "password", "credential", "new")

    def __init__(self, session, password: str | None, credential, new: str | None = None):
        self.session = session
        self.password = password
        self.credential = credential
        self.new = new

    def __repr__(self):
        return f"CheckPassword({self.session!r})"


class PasswordChecked:
    """Completion of `CheckPassword` (`job`): `ok` True or False, or None when the
    worker's queue was full or, with `failed`, the check raised (either way the
    request is `unavailable`); `credential` is the new one when `job.new` was
    hashed."""

    __slots__ = ("job", "ok", "credential", "failed")

    def __init__(self, job: CheckPassword, ok: bool | None, credential=None,
                 failed: bool = False):
        self.job = job
        self.ok = ok
        self.credential = credential
        self.failed = failed


class StoreAccount:
    """Write (insert or replace) account `key` to the durable store: its name as
    spelled, its `Credential`, and when it was created."""

    __slots__ = ("key", "name", "credential", "created")

    def __init__(self, key: str, name: str, credential, created: float):
        self.key = key
        self.name = name
        self.credential = credential
        self.created = created


class AccountsLoaded:
    """Completion: every account on file (casefolded name -> Account), read again
    because the operator's `chatd account` changed the file while the server
    runs.  The core adds, changes and removes its accounts to match."""

    __slots__ = ("accounts",)

    def __init__(self, accounts: dict):
        self.accounts = accounts


class Outbox:
    """The effects one core call is producing, and the replies that build them.

    The core starts a fresh `effects` list per call (`begin`) and returns
    it; every helper appends.  `max_frame` bounds a reply (chat/1: every
    frame the server sends fits it).
    """

    __slots__ = ("effects", "max_frame", "errors")

    def __init__(self, max_frame: int):
        self.effects: list = []
        self.max_frame = max_frame
        # `error` frames sent, by code (chat/1's codes: a bounded set), for metrics.
        self.errors: Counter[str] = Counter()

    def begin(self) -> list:
        """A fresh effects list for the call starting now; returned to its caller."""
        self.effects = []
        return self.effects

    def deliver(self, recipients, message: dict) -> bytes:
        """Encode `message` once for all `recipients`; return its payload."""
        payload = encode_payload(message)
        self.effects.append(Deliver(recipients, payload))
        return payload

    def reply(self, session, message: dict, ref=None) -> None:
        """A direct reply; one that cannot fit a frame becomes bad_message."""
        if ref is not None:
            message["ref"] = ref
        payload = encode_payload(message)
        if len(payload) > self.max_frame:
            self.error(session, "bad_message", f"the {message['type']} reply would exceed "
                       f"max_frame {self.max_frame}", ref)
            return
        self.effects.append(Deliver((session,), payload))

    def error(self, session, code: str, text: str, ref=None) -> None:
        """`error` {code, message[, ref]} to `session` (chat/1's error codes)."""
        self.errors[code] += 1
        message = {"type": "error", "code": code, "message": text}
        if ref is not None:
            message["ref"] = ref
        self.deliver((session,), message)

    def to_actor(self, session, message: dict, payload: bytes, ref) -> None:
        """The actor's copy of a broadcast: the same payload, or one with its ref."""
        if ref is not None:
            message["ref"] = ref
            payload = encode_payload(message)
        self.effects.append(Deliver((session,), payload))

    def pages(self, session, envelope: dict, member: str, items: list,
              item_bytes: int, ref) -> None:
        """`items` under `member` of `envelope`, in as many replies as max_frame needs."""
        if ref is not None:
            envelope["ref"] = ref
        for payload in paged(envelope, member, items, item_bytes, self.max_frame):
            self.effects.append(Deliver((session,), payload))
