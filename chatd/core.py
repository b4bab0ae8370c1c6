"""The chat core: users, rooms, messages and history, with no sockets.

Sans-IO, like h11: the event-loop shell hands it each decoded item of a
connection (`receive`) and then drains, before its next call, `outbox`, a
list of (recipients, frame bytes), and `closing`, the clients the core
wants closed with a `bye` reason.  A broadcast is encoded once; every recipient gets the same
bytes object.  Time comes from the injected clocks, so tests drive it.
"""

import hmac
import itertools
import secrets
import time

import framing
from framing import LocalProtocolError, ProtocolError

from .config import Config
from .history import History, RetainedHistories

SERVER_VERSION = "chatd/0.1.0"
LOBBY = "lobby"
# chat/1: `welcome.users` lists up to 100 lobby members, the newcomer first.
WELCOME_USERS = 100
# A history request without `limit` gets at most this many messages.
DEFAULT_HISTORY_LIMIT = 100
# Largest JSON of one name in a `users` list, with quotes and comma.
_NAME_ITEM_BYTES = framing.MAX_NAME_CHARS + 3
# Largest JSON of one {"name","users"} item in a `rooms` list, with comma.
_ROOM_ITEM_BYTES = len('{"name":"","users":},') + framing.MAX_NAME_CHARS + 20
# Requests served before a successful hello.
_BEFORE_WELCOME = frozenset(("hello", "ping", "quit"))
# Bytes a `history` answer spends around its messages: the envelope with a
# `with` name and the longest `ref` (128 characters, each escaped to at most
# 6 bytes), and the `more` tail.  A `msg` must fit `max_frame` less this, so
# that history can always return it and its sender's echo can carry a `ref`.
_HISTORY_OVERHEAD = 1024


class Client:
    """One connection's chat state; `conn` belongs to the shell."""

    __slots__ = ("name", "key", "token", "identity", "rooms", "bad_messages",
                 "allowance", "refilled_at", "ended", "bye_ref", "conn")

    def __init__(self, burst: float, now: float):
        self.name: str | None = None  # set by welcome
        self.key: str | None = None   # casefolded name, the registry key
        self.token: str | None = None
        # Who this user is for private history: kept across nick and a token
        # reclaim, new for anyone who takes a freed name.
        self.identity: int | None = None
        self.rooms: dict[str, Room] = {}
        self.bad_messages = 0
        self.allowance = burst        # token bucket for the rate limit
        self.refilled_at = now
        self.ended = False
        self.bye_ref = None           # the quit request's ref, echoed on its bye
        self.conn = None


class Room:
    __slots__ = ("name", "key", "members", "history")

    def __init__(self, name: str, history: History):
        self.name = name
        self.key = name.lower()
        self.members: dict[Client, None] = {}  # insertion-ordered set
        self.history = history


def _pair_key(a: Client, b: Client) -> tuple[int, int]:
    """The key of the private conversation between two users.

    Keyed by identity, not name: whoever takes a freed name must not read
    its previous holder's private messages, and a `nick` keeps the pair.
    """
    return (a.identity, b.identity) if a.identity <= b.identity else (b.identity, a.identity)


class ChatCore:
    def __init__(self, config: Config, wall_clock=time.time, clock=time.monotonic):
        self.config = config
        self.max_frame = config.max_frame
        self.presence_limit = config.presence_limit
        self.rate = config.rate_limit
        self.burst = float(config.rate_burst)
        self.wall_clock = wall_clock
        self.clock = clock
        self.users: dict[str, Client] = {}
        self.rooms: dict[str, Room] = {}
        self.retired_rooms = RetainedHistories(config.retained_rooms, config.history)
        self.conversations = RetainedHistories(config.max_conversations, config.history)
        self._identities = itertools.count(1)
        self.outbox: list[tuple[tuple | dict, bytes]] = []
        self.closing: list[tuple[Client, str]] = []
        self.lobby = self._open_room(LOBBY)
        self.limits = {
            "max_frame": config.max_frame, "max_text": framing.MAX_TEXT_CHARS,
            "rate": config.rate_limit, "burst": config.rate_burst,
            "presence_limit": config.presence_limit, "history": config.history,
            "max_clients": config.max_clients, "idle_timeout": config.idle_timeout,
        }
        self._handlers = {
            "hello": self._hello, "say": self._say, "dm": self._dm,
            "join": self._join, "leave": self._leave, "nick": self._nick,
            "who": self._who, "rooms": self._rooms, "history": self._history,
            "ping": self._ping, "quit": self._quit,
        }

    # ------------------------------------------------------------ the shell's API

    def connect(self) -> Client:
        return Client(self.burst, self.clock())

    def receive(self, client: Client, item) -> None:
        """Handle one item from the client's decoder: a message or an error."""
        if client.ended:
            return
        if type(item) is not dict:
            self._protocol_error(client, item)
            return
        kind = item["type"]
        ref = item.get("ref")
        if kind != "quit" and self.rate and not self._within_rate(client):
            self._error(client, "rate_limited",
                        f"more than {self.rate:g} requests/s (burst {self.burst:g}); "
                        f"request dropped", ref)
            return
        if client.name is None and kind not in _BEFORE_WELCOME:
            self._error(client, "not_welcome", "send hello first", ref)
            return
        self._handlers[kind](client, item, ref)

    def end(self, client: Client, reason: str) -> None:
        """Remove the client from every room and free its name (once)."""
        if client.ended:
            return
        client.ended = True
        if client.name is None:
            return
        for room in list(client.rooms.values()):
            self._part(client, room, reason, tell_actor=False)
        del self.users[client.key]

    @property
    def user_count(self) -> int:
        return len(self.users)

    # ------------------------------------------------------------------ output

    def _send(self, client: Client, message: dict, ref=None) -> None:
        """A direct reply; one that cannot fit a frame becomes bad_message."""
        if ref is not None:
            message["ref"] = ref
        try:
            data = framing.encode(message, self.max_frame)
        except LocalProtocolError:
            self._error(client, "bad_message",
                        f"the {message['type']} reply would exceed max_frame "
                        f"{self.max_frame}", ref)
            return
        self.outbox.append(((client,), data))

    def _error(self, client: Client, code: str, text: str, ref=None) -> None:
        message = {"type": "error", "code": code, "message": text}
        if ref is not None:
            message["ref"] = ref
        self.outbox.append(((client,), framing.encode(message)))

    def _close(self, client: Client, reason: str, left_reason: str | None = None) -> None:
        """End the client and ask the shell to close it with `bye` {reason}."""
        self.end(client, left_reason or reason)
        self.closing.append((client, reason))

    def _protocol_error(self, client: Client, error: ProtocolError) -> None:
        self._error(client, error.code, error.message, error.ref)
        if error.fatal:
            self._close(client, error.code)
            return
        client.bad_messages += 1
        if client.bad_messages >= self.config.max_bad_messages:
            self._error(client, "bad_message",
                        f"{client.bad_messages} bad messages; closing")
            self._close(client, "abuse")

    def _within_rate(self, client: Client) -> bool:
        now = self.clock()
        allowance = min(self.burst,
                        client.allowance + (now - client.refilled_at) * self.rate)
        client.refilled_at = now
        if allowance < 1.0:
            client.allowance = allowance
            return False
        client.allowance = allowance - 1.0
        return True

    def _presence(self, room: Room, actor: Client, message: dict) -> None:
        """Announce to the room while it is small enough; the actor always."""
        data = framing.encode(message)
        if len(room.members) <= self.presence_limit:
            self.outbox.append((room.members, data))
        else:
            self.outbox.append(((actor,), data))

    # -------------------------------------------------------------- rooms

    def _open_room(self, name: str) -> Room:
        key = name.lower()
        room = Room(name, self.retired_rooms.pop_or_new(key))
        self.rooms[key] = room
        return room

    def _enter(self, client: Client, room: Room) -> None:
        room.members[client] = None
        client.rooms[room.key] = room

    def _part(self, client: Client, room: Room, reason: str | None,
              tell_actor: bool, ref=None) -> None:
        message = {"type": "left", "room": room.name, "name": client.name}
        if reason is not None:
            message["reason"] = reason
        announce = len(room.members) <= self.presence_limit
        del room.members[client]
        del client.rooms[room.key]
        if announce or tell_actor:
            data = framing.encode(message)
            if announce and room.members:
                # A copy: the shell delivers after later changes to the room.
                self.outbox.append((tuple(room.members), data))
            if tell_actor:
                self._tell_actor(client, message, data, ref)
        if not room.members and room is not self.lobby:
            del self.rooms[room.key]
            self.retired_rooms.put(room.key, room.history)

    def _room_or_error(self, client: Client, name: str, ref) -> Room | None:
        room = self.rooms.get(name.lower())
        if room is None:
            self._error(client, "no_such_room", f"no room {name!r}", ref)
        return room

    def _user_or_error(self, client: Client, name: str, ref) -> Client | None:
        user = self.users.get(name.lower())
        if user is None:
            self._error(client, "no_such_user", f"no user {name!r}", ref)
        return user

    def _member_room(self, client: Client, name: str, ref) -> Room | None:
        room = client.rooms.get(name.lower())
        if room is None and self._room_or_error(client, name, ref) is not None:
            self._error(client, "not_in_room", f"you are not in {name!r}", ref)
        return room

    def _send_paged(self, client: Client, envelope: dict, member: str, items: list,
                    item_bytes: int, ref) -> None:
        """Send `items` under `member`, as many frames as max_frame needs."""
        if ref is not None:
            envelope["ref"] = ref
        envelope[member] = []
        room_for_items = self.max_frame - len(framing.encode_payload(envelope)) \
            - len(',"more":true')
        per_frame = max(1, room_for_items // item_bytes)
        for start in range(0, max(len(items), 1), per_frame):
            page = dict(envelope)
            page[member] = items[start:start + per_frame]
            if start + per_frame < len(items):
                page["more"] = True
            self.outbox.append(((client,), framing.encode(page, self.max_frame)))

    def _send_users(self, client: Client, room: Room, ref=None) -> None:
        self._send_paged(client, {"type": "users", "room": room.name}, "names",
                         [member.name for member in room.members], _NAME_ITEM_BYTES, ref)

    # ------------------------------------------------------------ handlers

    def _hello(self, client: Client, message: dict, ref) -> None:
        if client.name is not None:
            self._error(client, "bad_message", "already welcomed", ref)
            return
        name = message["name"]
        key = name.lower()
        holder = self.users.get(key)
        if holder is not None:
            token = message.get("token")
            # As bytes: compare_digest refuses str with non-ASCII characters.
            if token is None or not hmac.compare_digest(token.encode(),
                                                        holder.token.encode()):
                self._error(client, "name_taken", f"{name!r} is taken", ref)
                return
            self._close(holder, "replaced")
            client.identity = holder.identity
        else:
            client.identity = next(self._identities)
        client.name, client.key = name, key
        client.token = secrets.token_urlsafe(24)
        self.users[key] = client
        lobby = self.lobby
        self._enter(client, lobby)
        # islice: a walk over a 10,000-member lobby per hello would be O(N²).
        others = [member.name for member in itertools.islice(lobby.members, WELCOME_USERS)
                  if member is not client][:WELCOME_USERS - 1]
        self._send(client, {
            "type": "welcome", "name": name, "token": client.token, "rooms": [LOBBY],
            "users": [name] + others,
            "user_count": len(lobby.members), "server": SERVER_VERSION,
            "limits": self.limits,
        }, ref)
        if len(lobby.members) <= self.presence_limit and len(lobby.members) > 1:
            joined = framing.encode({"type": "joined", "room": LOBBY, "name": name})
            self.outbox.append((tuple(m for m in lobby.members if m is not client), joined))

    def _say(self, client: Client, message: dict, ref) -> None:
        room = self._member_room(client, message.get("room", LOBBY), ref)
        if room is None:
            return
        self._post(client, room.history, room.members,
                   {"type": "msg", "room": room.name, "from": client.name,
                    "text": message["text"]}, ref)

    def _dm(self, client: Client, message: dict, ref) -> None:
        recipient = self._user_or_error(client, message["to"], ref)
        if recipient is None:
            return
        history = self.conversations.get_or_new(_pair_key(client, recipient))
        recipients = (recipient,) if recipient is client else (recipient, client)
        self._post(client, history, recipients,
                   {"type": "msg", "to": recipient.name, "from": client.name,
                    "text": message["text"]}, ref)

    def _post(self, client: Client, history: History, recipients, msg: dict, ref) -> None:
        """Number, record and deliver one msg; the sender's echo carries its ref."""
        msg["id"] = history.next_id
        msg["ts"] = self.wall_clock()
        payload = framing.encode_payload(msg)
        if len(payload) > self.max_frame - _HISTORY_OVERHEAD:
            self._error(client, "bad_text", f"message of {len(payload)} bytes; at most "
                        f"{self.max_frame - _HISTORY_OVERHEAD} fit max_frame", ref)
            return
        data = framing.frame(payload, self.max_frame)
        history.append(payload)
        if ref is None:
            self.outbox.append((recipients, data))
            return
        others = tuple(member for member in recipients if member is not client)
        self.outbox.append((others, data))
        self._tell_actor(client, msg, data, ref)

    def _tell_actor(self, client: Client, message: dict, data: bytes, ref) -> None:
        """The actor's copy of a broadcast: the same bytes, or with its ref."""
        if ref is not None:
            message["ref"] = ref
            data = framing.encode(message)
        self.outbox.append(((client,), data))

    def _join(self, client: Client, message: dict, ref) -> None:
        name = message["room"]
        room = self.rooms.get(name.lower()) or self._open_room(name)
        if client not in room.members:
            self._enter(client, room)
            self._presence(room, client, {"type": "joined", "room": room.name,
                                          "name": client.name})
        else:
            self._send(client, {"type": "joined", "room": room.name, "name": client.name})
        self._send_users(client, room, ref)

    def _leave(self, client: Client, message: dict, ref) -> None:
        room = self._member_room(client, message["room"], ref)
        if room is not None:
            self._part(client, room, None, tell_actor=True, ref=ref)

    def _nick(self, client: Client, message: dict, ref) -> None:
        new = message["name"]
        key = new.lower()
        holder = self.users.get(key)
        if holder is not None and holder is not client:
            self._error(client, "name_taken", f"{new!r} is taken", ref)
            return
        old = client.name
        del self.users[client.key]
        client.name, client.key = new, key
        self.users[key] = client
        recipients = {}
        for room in client.rooms.values():
            if len(room.members) <= self.presence_limit:
                recipients.update(room.members)
        recipients.pop(client, None)
        renamed = {"type": "renamed", "old": old, "new": new}
        data = framing.encode(renamed)
        self.outbox.append((tuple(recipients), data))
        self._tell_actor(client, renamed, data, ref)

    def _who(self, client: Client, message: dict, ref) -> None:
        room = self._room_or_error(client, message.get("room", LOBBY), ref)
        if room is not None:
            self._send_users(client, room, ref)

    def _rooms(self, client: Client, message: dict, ref) -> None:
        listing = [{"name": room.name, "users": len(room.members)}
                   for room in self.rooms.values()]
        self._send_paged(client, {"type": "rooms"}, "rooms", listing, _ROOM_ITEM_BYTES, ref)

    def _history(self, client: Client, message: dict, ref) -> None:
        if "room" in message:
            room = self._member_room(client, message["room"], ref)
            if room is None:
                return
            history, envelope = room.history, {"type": "history", "room": room.name}
        else:
            peer = self._user_or_error(client, message["with"], ref)
            if peer is None:
                return
            history = self.conversations.get(_pair_key(client, peer))
            envelope = {"type": "history", "with": message["with"]}
        limit = min(message.get("limit", DEFAULT_HISTORY_LIMIT), self.config.history)
        payloads = history.select(message.get("since"), limit) if history else []
        if ref is not None:
            envelope["ref"] = ref
        # Spliced from the stored payloads: oldest first, as many as fit.
        head = framing.encode_payload(envelope)[:-1] + b',"messages":['
        budget = self.max_frame - len(head) - len(b'],"more":true}')
        used, count = 0, 0
        for payload in payloads:
            used += len(payload) + 1
            if used > budget:
                break
            count += 1
        tail = b"]}" if count == len(payloads) else b'],"more":true}'
        self.outbox.append(((client,),
                            framing.frame(head + b",".join(payloads[:count]) + tail,
                                          self.max_frame)))

    def _ping(self, client: Client, message: dict, ref) -> None:
        reply = {"type": "pong"}
        if "data" in message:
            reply["data"] = message["data"]
        self._send(client, reply, ref)

    def _quit(self, client: Client, message: dict, ref) -> None:
        client.bye_ref = ref
        self._close(client, "quit", message.get("reason"))
