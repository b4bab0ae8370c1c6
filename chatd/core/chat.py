"""The chat core: sessions, rooms, messages and history in; effects out.

Sans-IO, like h11: the caller hands it one decoded item of a session's
input (`receive`), the end of a session (`end`) or the store's answer to an
earlier effect (`complete`), and gets back what that produced, as a list of
effects (see effects.py).  A broadcast is encoded once: every recipient
gets the same payload object.  Time comes from the injected clocks, so
tests drive it.

A request that needs the store (a room opened with a durable store, a
history older than memory holds) parks its session: that request and every
later one of the same session wait, in order, for the completion, so each
connection's answers keep the order of its requests.
"""

import dataclasses
import itertools
import time
from collections import Counter, OrderedDict, deque

from framing import MAX_TEXT_CHARS, ProtocolError, TokenBucket, encode_payload

from .accounts import Account, LoginLimiter
from .effects import (AccountsLoaded, Close, Deliver, HistoryLoaded, Outbox, PasswordChecked, RoomLoaded,
                      StoreWritable)
from .history import History, RingBudget
from .identity import IdentityRequests
from .messages import Messages
from .requests import ChatRequests
from .rooms import Room, Rooms
from .session import Session

# Requests served before a successful hello (chat/1, Session).
_BEFORE_WELCOME = frozenset(("hello", "ping", "quit"))


@dataclasses.dataclass(frozen=True)
class ChatSettings:
    """The core's share of chatd's settings (see chatd/config.py for each one's reason).

    `max_clients` and `idle_timeout` are not the core's to enforce; it only
    announces them in `welcome.limits`.
    """

    max_frame: int
    rate_limit: float
    rate_burst: int
    presence_limit: int
    history: int
    retained_rooms: int
    max_conversations: int
    max_bad_messages: int
    max_clients: int
    idle_timeout: float
    max_rooms: int
    max_rooms_per_user: int
    history_memory: int
    accounts: str = "open"
    login_failures: int = 5
    login_window: float = 60.0
    guests: bool = True


class ChatCore(IdentityRequests, ChatRequests):
    """chat/1's rules over every session of one server.

    `receive(session, item) -> [effect]` for each decoded request or codec
    error; `end(session, reason) -> [effect]` when the session ends (its
    connection closing or gone);
    `complete(completion) -> [effect]` for each answer of the store.
    Handlers append to `self.out.effects`, the list the current call returns.

    `epoch` names the lifetime of the ids (`welcome.epoch`); `durable` says
    whether a store keeps rooms' messages (then closed rooms are reloaded
    from it); `lobby` is the lobby's (next id, newest payloads) at start.
    """

    def __init__(self, settings: ChatSettings, epoch: str, durable: bool = False,
                 lobby: tuple[int, list] = (1, []), wall_clock=time.time,
                 clock=time.monotonic, accounts: dict | None = None, pairs=()):
        self.settings = settings
        self.epoch = epoch
        self.rate = settings.rate_limit
        self.burst = float(settings.rate_burst)
        self.wall_clock = wall_clock
        self.clock = clock
        self.users: dict[str, Session] = {}
        budget = RingBudget(settings.history_memory)
        self.rooms = Rooms(settings.presence_limit, settings.retained_rooms, settings.history,
                           budget, durable, History(settings.history, budget, *lobby))
        self._identities = itertools.count(1)
        # Registered names: casefolded name -> Account (all of them, read at
        # start; a few hundred bytes each).
        self.accounts: dict[str, Account] = dict(accounts or {})
        # An account's identity for private history, kept while the process
        # lives (the store keeps account dms across restarts: not yet).
        self._account_identities: dict[str, int] = {}
        # Account identity -> {partner identity: partner's name}, most recent
        # last: the source of `welcome.conversations`.
        self._partners: dict[int, OrderedDict] = {}
        self.logins = LoginLimiter(settings.login_failures, settings.login_window)
        self.out = Outbox(settings.max_frame)
        self.messages = Messages(self.out, settings.max_conversations, settings.history,
                                 budget, durable, wall_clock)
        self.limits = self._limits(settings)
        self._handlers = {
            "hello": self._hello, "say": self._say, "dm": self._dm,
            "join": self._join, "leave": self._leave, "nick": self._nick,
            "who": self._who, "rooms": self._rooms, "history": self._history,
            "ping": self._ping, "quit": self._quit,
            "register": self._register, "passwd": self._passwd,
        }
        self._checked = {"hello": self._hello_checked, "register": self._register_checked,
                         "passwd": self._passwd_checked}
        self._load_pairs(pairs)
        # Well-formed requests received, by type (the decoder admits only
        # chat/1's types: a bounded set), for metrics.
        self.requests: Counter[str] = Counter()

    # ---------------------------------------------------------- the callers' API

    def reconfigure(self, settings: ChatSettings) -> None:
        """New settings for new work (a reload): rate, presence, caps, `welcome.limits`.

        Sizes fixed at start (max_frame, history, retention in memory) must
        not differ; a session keeps the rate bucket it has.
        """
        self.settings = settings
        self.rate = settings.rate_limit
        self.burst = float(settings.rate_burst)
        self.rooms.presence_limit = settings.presence_limit
        self.limits = self._limits(settings)
        self.logins.failures = settings.login_failures
        self.logins.window = settings.login_window

    def receive(self, session: Session, item) -> list:
        """Handle one item from the session's decoder: a request dict or a ProtocolError."""
        out = self.out.begin()
        if session.ended:
            return out
        if type(item) is dict:
            self.requests[item["type"]] += 1
        if type(item) is dict and self.rate and item["type"] != "quit":
            # Counted on arrival, even for a request that will wait.
            now = self.clock()
            bucket = session.bucket
            if bucket is None:
                bucket = session.bucket = TokenBucket(self.rate, self.burst, now)
            if not bucket.take(now):
                self.out.error(session, "rate_limited",
                               f"more than {self.rate:g} requests/s (burst {self.burst:g}); "
                               f"request dropped", item.get("ref"))
                return out
        if session.deferred is not None:
            # Bounded by one read: the protocol stops reading a parked session.
            session.deferred.append(item)
            return out
        self._handle(session, item)
        return out

    def complete(self, completion) -> list:
        """Take the store's answer to an earlier effect; resume whoever waited for it."""
        out = self.out.begin()
        kind = type(completion)
        if kind is RoomLoaded:
            room = completion.room
            if room.history is None and self.rooms.by_key.get(room.key) is room:
                self.rooms.loaded(room, completion.next_id, completion.payloads)
                waiters, room.waiters = room.waiters, []
                for session in waiters:
                    self._resume(session)
                self.rooms.close_if_empty(room)
        elif kind is HistoryLoaded:
            session = completion.session
            if not session.ended:
                item = session.deferred.popleft()
                self.messages.answer_history(session, self._history_envelope(session, item),
                                             completion.payloads, item.get("ref"))
                self._resume(session)
        elif kind is PasswordChecked:
            session = completion.job.session
            if not session.ended:  # a login whose connection closed is dropped quietly
                item = session.deferred.popleft()
                self._checked[item["type"]](session, item, completion, item.get("ref"))
                self._resume(session)
        elif kind is StoreWritable:
            self.messages.writable = completion.writable
        elif kind is AccountsLoaded:
            self._accounts_loaded(completion.accounts)
        return out

    @staticmethod
    def _limits(settings: ChatSettings) -> dict:
        """`welcome.limits`: what a client should know of the server's limits."""
        return {
            "max_frame": settings.max_frame, "max_text": MAX_TEXT_CHARS,
            "rate": settings.rate_limit, "burst": settings.rate_burst,
            "presence_limit": settings.presence_limit, "history": settings.history,
            "max_clients": settings.max_clients, "idle_timeout": settings.idle_timeout,
            "max_rooms_per_user": settings.max_rooms_per_user,
            "accounts": settings.accounts,
        }

    def _handle(self, session: Session, item) -> None:
        if type(item) is not dict:
            self._protocol_error(session, item)
            return
        kind = item["type"]
        if session.name is None and kind not in _BEFORE_WELCOME:
            self.out.error(session, "not_welcome", "send hello first", item.get("ref"))
            return
        self._handlers[kind](session, item, item.get("ref"))

    def _park(self, session: Session, item: dict) -> None:
        """`item` (being handled) waits for the store, and so does all that follows."""
        session.deferred = deque((item,))

    def _wait_for(self, room: Room, session: Session, item: dict) -> bool:
        """Park `item` until `room`, being opened, has its numbering from the store.

        Only what needs the numbering or the messages waits (`say`,
        `history`); `join`, `who` and presence go on at once.
        """
        if room.history is not None:
            return False
        room.waiters.append(session)
        self._park(session, item)
        return True

    def _resume(self, session: Session) -> None:
        """Handle what `session` queued while it waited, until it waits again."""
        items, session.deferred = session.deferred, None
        effects = self.out.effects
        while items and not session.ended:
            start = len(effects)
            self._handle(session, items.popleft())
            # Several requests are handled before any of this is delivered:
            # a room's live member set must not be read after they change it.
            for effect in effects[start:]:
                if type(effect) is Deliver and type(effect.recipients) is dict:
                    effect.recipients = tuple(effect.recipients)
            if session.deferred is not None:
                session.deferred.extend(items)
                return

    def end(self, session: Session, reason: str) -> list:
        """The session ends: leave every room, free the name (once).

        Returns the `left` deliveries to the rooms it was in.
        """
        effects = self.out.begin()
        self._end(session, reason)
        return effects

    @property
    def user_count(self) -> int:
        """Users welcomed and not ended."""
        return len(self.users)

    @property
    def room_count(self) -> int:
        """Rooms open now, the lobby included."""
        return len(self.rooms.by_key)

    # --------------------------------------------------------- closing

    def _end(self, session: Session, reason: str) -> None:
        if session.ended:
            return
        session.ended = True
        if session.name is None:
            return
        for room in list(session.rooms.values()):
            self._part(session, room, reason, tell_actor=False)
        del self.users[session.key]

    def _close(self, session: Session, reason: str, left_reason: str | None = None,
               ref=None) -> None:
        """End the session and have it closed with `bye` {reason}."""
        self._end(session, left_reason or reason)
        self.out.effects.append(Close(session, reason, ref))

    def _protocol_error(self, session: Session, error: ProtocolError) -> None:
        self.out.error(session, error.code, error.message, error.ref)
        if error.fatal:
            self._close(session, error.code)
            return
        session.bad_messages += 1
        if session.bad_messages >= self.settings.max_bad_messages:
            self.out.error(session, "bad_message", f"{session.bad_messages} bad messages; closing")
            self._close(session, "abuse")

    def _room_or_error(self, session: Session, name: str, ref) -> Room | None:
        room = self.rooms.get(name)
        if room is None:
            self.out.error(session, "no_such_room", f"no room {name!r}", ref)
        return room

    def _user_or_error(self, session: Session, name: str, ref) -> Session | None:
        user = self.users.get(name.lower())
        if user is None:
            self.out.error(session, "no_such_user", f"no user {name!r}", ref)
        return user

    def _member_room(self, session: Session, name: str, ref) -> Room | None:
        room = session.rooms.get(name.lower())
        if room is None and self._room_or_error(session, name, ref) is not None:
            self.out.error(session, "not_in_room", f"you are not in {name!r}", ref)
        return room

    # ------------------------------------------------------------ membership

    def _part(self, session: Session, room: Room, reason: str | None,
              tell_actor: bool, ref=None) -> None:
        message = {"type": "left", "room": room.name, "name": session.name}
        if reason is not None:
            message["reason"] = reason
        announce = self.rooms.announces(room)
        self.rooms.remove(session, room)
        if announce or tell_actor:
            payload = encode_payload(message)
            if announce and room.members:
                # A copy: the caller delivers after later changes to the room.
                self.out.effects.append(Deliver(tuple(room.members), payload))
            if tell_actor:
                self.out.to_actor(session, message, payload, ref)
