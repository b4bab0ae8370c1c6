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
import hmac
import itertools
import secrets
import time

from framing import (DEFAULT_HISTORY_LIMIT, LOBBY, MAX_TEXT_CHARS, TOKEN_BYTES,
                     WELCOME_USERS, ProtocolError, TokenBucket, encode_payload)
from framing.paging import NAME_ITEM_BYTES, ROOM_ITEM_BYTES

from collections import Counter, OrderedDict, deque

from .. import __version__
from .accounts import Account, LoginLimiter, password_ok
from .effects import (CheckPassword, Close, Deliver, HistoryLoaded, LoadHistory, LoadPrivate,
                      LoadRoom, Outbox, PasswordChecked, RoomLoaded, StoreAccount,
                      StoreWritable)
from .history import History, RingBudget
from .messages import Messages, pair_key
from .rooms import Room, Rooms
from .session import Session

# What `welcome.server` says: the package metadata's version, as `chatd --version`.
SERVER_VERSION = f"chatd/{__version__}"
# Partners of one account listed in `welcome.conversations`, at most.
WELCOME_CONVERSATIONS = 100
# Partners remembered per account (least recent forgotten first).
MAX_PARTNERS = 1_000


class OfflineAccount:
    """An account that is not connected, as the other end of a dm or a `history` {with}:
    its name and its identity (no connection: nothing is delivered to it)."""

    __slots__ = ("name", "key", "identity", "account")

    def __init__(self, name: str, identity: int):
        self.name = name
        self.key = name.lower()
        self.identity = identity
        self.account = True


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


class ChatCore:
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
            room = self.rooms.by_key.get(completion.key)
            if room is not None and room.history is None:
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

    def _send_users(self, session: Session, room: Room, ref=None) -> None:
        self.out.pages(session, {"type": "users", "room": room.name}, "names",
                       [member.name for member in room.members], NAME_ITEM_BYTES, ref)

    # ------------------------------------------------------------- lookups

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

    def _account_of(self, key: str) -> Account | None:
        """The account that owns name `key`, if accounts are on."""
        if self.settings.accounts == "off":
            return None
        return self.accounts.get(key)

    def _hello(self, session: Session, message: dict, ref) -> None:
        if session.name is not None:
            self.out.error(session, "bad_message", "already welcomed", ref)
            return
        name = message["name"]
        key = name.lower()
        password = message.get("password")
        if password is not None:
            self._login(session, message, key, password, ref)
            return
        holder = self.users.get(key)
        account = self._account_of(key)
        if holder is not None:
            token = message.get("token")
            # As bytes: compare_digest refuses str with non-ASCII characters.
            if token is None or not hmac.compare_digest(token.encode(),
                                                        holder.token.encode()):
                if account is not None:
                    self.out.error(session, "auth_required",
                                   f"{name!r} is an account: send its password", ref)
                else:
                    self.out.error(session, "name_taken", f"{name!r} is taken", ref)
                return
            self._close(holder, "replaced")
            session.identity = holder.identity
            session.account = holder.account
        elif account is not None:
            self.out.error(session, "auth_required",
                           f"{name!r} is an account: send its password", ref)
            return
        else:
            session.identity = next(self._identities)
        self._welcome(session, name, key, ref)

    def _login(self, session: Session, message: dict, key: str, password: str, ref) -> None:
        """A hello with a password: limited per address, then checked on the worker."""
        now = self.clock()
        if self.logins.blocked(session.address, now):
            self.out.error(session, "rate_limited", "too many failed logins from your "
                           f"address; wait up to {self.logins.window:g}s", ref)
            return
        account = self._account_of(key)
        if self.settings.accounts == "off" or not password_ok(password):
            # Nothing could match: no hash to spend.
            self._auth_failed(session, ref)
            return
        self.out.effects.append(CheckPassword(
            session, password, account.credential if account is not None else None))
        self._park(session, message)

    def _auth_failed(self, session: Session, ref) -> None:
        self.logins.failed(session.address, self.clock())
        # One message for a wrong password and for a name that is no account.
        self.out.error(session, "auth_failed", "wrong name or password", ref)

    def _hello_checked(self, session: Session, message: dict, result: PasswordChecked,
                       ref) -> None:
        name = message["name"]
        key = name.lower()
        account = self._account_of(key)
        if result.ok is None:
            self.out.error(session, "unavailable", "too many logins being checked; "
                           "try again shortly", ref)
            return
        if not result.ok or account is None or account.credential is not result.job.credential:
            self._auth_failed(session, ref)
            return
        holder = self.users.get(key)
        if holder is not None:
            # The account's owner logs in again: the old session goes.
            self._close(holder, "replaced")
        session.identity = self._account_identities.setdefault(key, next(self._identities))
        session.account = True
        self._welcome(session, account.name, key, ref)

    def _welcome(self, session: Session, name: str, key: str, ref) -> None:
        session.name, session.key = name, key
        session.token = secrets.token_urlsafe(TOKEN_BYTES)
        self.users[key] = session
        lobby = self.rooms.lobby
        self.rooms.enter(session, lobby)
        # islice: a walk over a 10,000-member lobby per hello would be O(N²).
        others = [member.name for member in itertools.islice(lobby.members, WELCOME_USERS)
                  if member is not session][:WELCOME_USERS - 1]
        welcome = {
            "type": "welcome", "name": name, "token": session.token, "rooms": [LOBBY],
            "users": [name] + others,
            "user_count": len(lobby.members), "server": SERVER_VERSION,
            "epoch": self.epoch, "limits": self.limits,
        }
        if session.account:
            welcome["account"] = True
            welcome["conversations"] = self._conversations_of(session)
        self.out.reply(session, welcome, ref)
        if self.rooms.announces(lobby) and len(lobby.members) > 1:
            self.out.deliver(tuple(m for m in lobby.members if m is not session),
                          {"type": "joined", "room": LOBBY, "name": name})

    def _load_pairs(self, pairs) -> None:
        """The accounts' conversations on file: (low key, high key, next id), least
        recent first.  Each gets its numbering (its messages load on demand)."""
        for key in self.accounts:
            self._account_identities[key] = next(self._identities)
        conversations = self.messages.conversations
        for low, high, next_id in pairs:
            if low not in self.accounts or high not in self.accounts:
                continue
            a = OfflineAccount(self.accounts[low].name, self._account_identities[low])
            b = OfflineAccount(self.accounts[high].name, self._account_identities[high])
            conversations.put(pair_key(a, b), History(conversations.history_size,
                                                       conversations.budget, next_id))
            self._note_partner(a, b)
            self._note_partner(b, a)

    @staticmethod
    def _stored_pair(a, b) -> tuple[str, str] | None:
        """The store's key of a pair of two accounts (their keys in order), else None."""
        if not (a.account and b.account):
            return None
        return (a.key, b.key) if a.key <= b.key else (b.key, a.key)

    def _conversations_of(self, session: Session) -> list:
        """`welcome.conversations`: up to 100 {with, last_id}, most recent first, of the
        pairs still kept in memory."""
        listed = []
        for identity, name in reversed(self._partners.get(session.identity, {}).items()):
            pair = (session.identity, identity) if session.identity <= identity \
                else (identity, session.identity)
            history = self.messages.conversations.get(pair)
            if history is not None and history.next_id > 1:
                listed.append({"with": name, "last_id": history.next_id - 1})
                if len(listed) == WELCOME_CONVERSATIONS:
                    break
        return listed

    def _note_partner(self, account, partner) -> None:
        partners = self._partners.setdefault(account.identity, OrderedDict())
        partners[partner.identity] = partner.name
        partners.move_to_end(partner.identity)
        if len(partners) > MAX_PARTNERS:
            partners.popitem(last=False)

    def _peer(self, session: Session, name: str, ref):
        """The other end of a dm or a private `history`: a connected user, or an
        account that is offline (no_such_user for anyone else)."""
        key = name.lower()
        user = self.users.get(key)
        if user is not None:
            return user
        account = self._account_of(key)
        if account is None:
            self.out.error(session, "no_such_user", f"no user {name!r}", ref)
            return None
        return OfflineAccount(account.name,
                              self._account_identities.setdefault(key, next(self._identities)))

    def _register(self, session: Session, message: dict, ref) -> None:
        if session.account or self._account_of(session.key) is not None:
            self.out.error(session, "name_registered",
                           f"{session.name!r} is an account already", ref)
            return
        if self.settings.accounts != "open":
            self.out.error(session, "registration_closed", "this server does not take "
                           "registrations", ref)
            return
        if not password_ok(message["password"]):
            self.out.error(session, "bad_password", "a password is 8 to 1024 characters", ref)
            return
        self.out.effects.append(CheckPassword(session, None, None, message["password"]))
        self._park(session, message)

    def _register_checked(self, session: Session, message: dict, result: PasswordChecked,
                          ref) -> None:
        if result.ok is None:
            self.out.error(session, "unavailable", "too many passwords being hashed; "
                           "try again shortly", ref)
            return
        key = session.key
        account = self.accounts[key] = Account(session.name, result.credential,
                                               self.wall_clock())
        self._account_identities[key] = session.identity
        session.account = True
        if self.rooms.durable:
            self.out.effects.append(StoreAccount(key, account.name, account.credential,
                                                 account.created))
        self.out.reply(session, {"type": "registered", "name": session.name}, ref)

    def _passwd(self, session: Session, message: dict, ref) -> None:
        account = self._account_of(session.key)
        if not session.account or account is None:
            self.out.error(session, "not_registered", "log in to an account first", ref)
            return
        if not password_ok(message["new"]):
            self.out.error(session, "bad_password", "a password is 8 to 1024 characters", ref)
            return
        if self.logins.blocked(session.address, self.clock()):
            self.out.error(session, "rate_limited", "too many failed logins from your "
                           f"address; wait up to {self.logins.window:g}s", ref)
            return
        if not password_ok(message["old"]):
            self._auth_failed(session, ref)
            return
        self.out.effects.append(CheckPassword(session, message["old"], account.credential,
                                              message["new"]))
        self._park(session, message)

    def _passwd_checked(self, session: Session, message: dict, result: PasswordChecked,
                        ref) -> None:
        account = self._account_of(session.key)
        if result.ok is None:
            self.out.error(session, "unavailable", "too many passwords being hashed; "
                           "try again shortly", ref)
            return
        if not result.ok or account is None or account.credential is not result.job.credential:
            self._auth_failed(session, ref)
            return
        account.credential = result.credential
        if self.rooms.durable:
            self.out.effects.append(StoreAccount(session.key, account.name,
                                                 account.credential, account.created))
        self.out.reply(session, {"type": "password_changed"}, ref)

    def _join(self, session: Session, message: dict, ref) -> None:
        name = message["room"]
        room = self.rooms.get(name)
        if room is None or session not in room.members:
            limit = self.settings.max_rooms_per_user
            if len(session.rooms) >= limit:
                self.out.error(session, "not_allowed", f"you are in {limit} rooms already, "
                               f"the most one user may be in; leave one first", ref)
                return
        if room is None:
            limit = self.settings.max_rooms
            if len(self.rooms.by_key) >= limit:
                self.out.error(session, "not_allowed", f"the server has {limit} rooms "
                               f"open, the most it keeps; join an existing one", ref)
                return
            room = self.rooms.open(name)
            if room.history is None:
                self.out.effects.append(LoadRoom(room.key))
        joined = {"type": "joined", "room": room.name, "name": session.name}
        if session not in room.members:
            self.rooms.enter(session, room)
            self.out.deliver(room.members if self.rooms.announces(room) else (session,),
                             joined)
        else:
            self.out.reply(session, joined)
        self._send_users(session, room, ref)

    def _leave(self, session: Session, message: dict, ref) -> None:
        room = self._member_room(session, message["room"], ref)
        if room is not None:
            self._part(session, room, None, tell_actor=True, ref=ref)

    def _nick(self, session: Session, message: dict, ref) -> None:
        new = message["name"]
        key = new.lower()
        if session.account:
            self.out.error(session, "not_allowed", "a logged-in user keeps the account's "
                           "name", ref)
            return
        if key != session.key and self._account_of(key) is not None:
            self.out.error(session, "name_registered", f"{new!r} is an account", ref)
            return
        holder = self.users.get(key)
        if holder is not None and holder is not session:
            self.out.error(session, "name_taken", f"{new!r} is taken", ref)
            return
        old = session.name
        del self.users[session.key]
        session.name, session.key = new, key
        self.users[key] = session
        recipients = {}
        for room in session.rooms.values():
            if self.rooms.announces(room):
                recipients.update(room.members)
        recipients.pop(session, None)
        renamed = {"type": "renamed", "old": old, "new": new}
        payload = self.out.deliver(tuple(recipients), renamed)
        self.out.to_actor(session, renamed, payload, ref)

    # -------------------------------------------------------- messages, listings

    def _say(self, session: Session, message: dict, ref) -> None:
        room = self._member_room(session, message.get("room", LOBBY), ref)
        if room is not None and not self._wait_for(room, session, message):
            self.messages.post(session, room.history, room.members,
                               {"type": "msg", "room": room.name, "from": session.name,
                                "text": message["text"]}, ref, room)

    def _dm(self, session: Session, message: dict, ref) -> None:
        recipient = self._peer(session, message["to"], ref)
        if recipient is None:
            return
        accepted = self.messages.accepted
        pair = self._stored_pair(session, recipient) if self.rooms.durable else None
        self.messages.dm(session, recipient, message["text"], ref,
                         online=type(recipient) is not OfflineAccount, pair=pair)
        if self.messages.accepted != accepted:
            if session.account:
                self._note_partner(session, recipient)
            if type(recipient) is OfflineAccount or recipient.account:
                self._note_partner(recipient, session)

    def _who(self, session: Session, message: dict, ref) -> None:
        room = self._room_or_error(session, message.get("room", LOBBY), ref)
        if room is not None:
            self._send_users(session, room, ref)

    def _rooms(self, session: Session, message: dict, ref) -> None:
        listing = [{"name": room.name, "users": len(room.members)}
                   for room in self.rooms.by_key.values()]
        self.out.pages(session, {"type": "rooms"}, "rooms", listing, ROOM_ITEM_BYTES, ref)

    def _history(self, session: Session, message: dict, ref) -> None:
        if "room" in message:
            room = self._member_room(session, message["room"], ref)
            if room is None or self._wait_for(room, session, message):
                return
            history = room.history
        else:
            peer = self._peer(session, message["with"], ref)
            if peer is None:
                return
            room, history = None, self.messages.private_history(session, peer)
        since = message.get("since")
        limit = min(message.get("limit", DEFAULT_HISTORY_LIMIT), self.settings.history)
        if room is None and self.rooms.durable and (history is None
                                                    or not history.covers(since, limit)):
            pair = self._stored_pair(session, peer)
            if pair is not None:
                self.out.effects.append(LoadPrivate(session, *pair, since, limit))
                self._park(session, message)
                return
        if room is not None and self.rooms.durable and not history.covers(since, limit):
            self.out.effects.append(LoadHistory(session, room.key, since, limit))
            self._park(session, message)
            return
        self.messages.answer_history(session, self._history_envelope(session, message),
                                     history.select(since, limit) if history else [], ref)

    @staticmethod
    def _history_envelope(session: Session, message: dict) -> dict:
        if "room" in message:
            return {"type": "history", "room": session.rooms[message["room"].lower()].name}
        return {"type": "history", "with": message["with"]}

    def _ping(self, session: Session, message: dict, ref) -> None:
        reply = {"type": "pong"}
        if "data" in message:
            reply["data"] = message["data"]
        self.out.reply(session, reply, ref)

    def _quit(self, session: Session, message: dict, ref) -> None:
        self._close(session, "quit", message.get("reason"), ref)
