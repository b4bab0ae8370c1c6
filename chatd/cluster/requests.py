"""The cluster node's handlers of requests that touch shared state (say and dm:
messages.py).

A part of ClusterCore (a mixin, as core/identity.py and core/requests.py are
of ChatCore): each handler asks Redis through a script and parks the
session; the answer resumes it, at once or (for what must keep a room's
order: the actor's own `welcome`, `joined`, `left`) at the answer's ev.
"""

import hashlib
import secrets
from functools import partial

from framing import DEFAULT_HISTORY_LIMIT, LOBBY, TOKEN_BYTES, WELCOME_USERS
from framing.paging import NAME_ITEM_BYTES, ROOM_ITEM_BYTES

from ..core.effects import Deliver
from ..core.identity import SERVER_VERSION, WELCOME_CONVERSATIONS
from .effects import Command, Script, Subscribe
from .feeds import Feed
from .link import LINK_DOWN, NOT_SENT

# Room names as Redis spelled them in `rooms` replies etc. are UTF-8.
_TEXT = "utf-8"


def _token_hash(token: str) -> str:
    """What Redis keeps of a token: its SHA-256 (a token is never stored as given)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _text(value: bytes) -> str:
    return value.decode(_TEXT)


class ClusterRequests:
    """ClusterCore's handlers (see the module docstring)."""

    # ------------------------------------------------------------- asking

    def _ask(self, session, item: dict, name: str, args: tuple, then,
             undo=None) -> None:
        """Run script `name`; `session` waits (with what follows) until `then(session,
        item, reply)` is called with a real answer.  On none, `undo(reply)` (the
        script may have run when the reply is LINK_DOWN) and `unavailable`."""
        self._park(session, item)
        self._script(session, name, args, then, undo)

    def _script(self, session, name: str, args: tuple, then, undo=None) -> None:
        """As `_ask`, for a session parked already (its request first in its queue)."""
        self.out.effects.append(Script(name, args, partial(self._answered, session, then,
                                                           undo)))

    def _answer_parked(self, session, code: str, text: str) -> None:
        """An error for the request `session` is parked on; its later requests go on."""
        item = session.deferred.popleft()
        self.out.error(session, code, text, item.get("ref"))
        self._resume(session)

    def _answered(self, session, then, undo, reply) -> None:
        item = session.deferred.popleft()
        why = self.failed(reply)
        if why is not None and undo is not None:
            undo(reply)
        if session.ended:
            return
        if why is not None:
            self.out.error(session, "unavailable", why, item.get("ref"))
            self._resume(session)
            return
        then(session, item, reply)

    def _refused(self, session, reply, errors: dict, ref) -> bool:
        """Answer a script's refusal (`reply[0]` a key of `errors`: (code, text)).
        True if it was one (the session goes on)."""
        if reply[0] == b"ok":
            return False
        code, text = errors.get(reply[0], ("unavailable", "this node is rejoining the "
                                                          "cluster; try again"))
        self.out.error(session, code, text, ref)
        self._resume(session)
        return True

    # ------------------------------------------------------------ identity

    def _hello(self, session, message: dict, ref) -> None:
        if session.name is not None or session in self.sid_of:
            self.out.error(session, "bad_message", "already welcomed", ref)
            return
        password = message.get("password")
        if password is None:
            self._park(session, message)
            self._claim(session, message, "")
        else:
            self._login(session, message, message["name"].lower(), password, ref)

    def _claim(self, session, message: dict, login: str) -> None:
        """The hello script for parked `session`: `login` is the credential its
        password matched as Redis gave it (accounts.py), '' for a hello without
        one."""
        name = message["name"]
        sid = self.sid_of[session] = self.new_sid()
        token = secrets.token_urlsafe(TOKEN_BYTES)
        given = message.get("token")
        self._script(session, "hello",
                     (self.node, sid, name, name.lower(), _token_hash(token),
                      _token_hash(given) if given is not None else "", WELCOME_USERS,
                      "1" if self.settings.guests else "0", login, WELCOME_CONVERSATIONS),
                     partial(self._hello_answered, sid, token),
                     partial(self._hello_undone, session, sid))

    def _hello_undone(self, session, sid: bytes, reply) -> None:
        """A hello without an answer: forget its session id, and free the name in
        case the claim was made (a no-op in Redis if it was not)."""
        if self.sid_of.get(session) == sid:
            del self.sid_of[session]
            self._bye(sid, "disconnect")

    def _hello_answered(self, sid: bytes, token: str, session, message: dict, reply) -> None:
        ref = message.get("ref")
        name = message["name"]
        if reply[0] != b"ok":
            del self.sid_of[session]
        if reply[0] == b"auth_failed":
            self._auth_failed(session, ref)
            self._resume(session)
            return
        if self._refused(session, reply, {
                b"taken": ("name_taken", f"{name!r} is taken"),
                b"auth_required": ("auth_required", f"{name!r} is an account: send its "
                                   "password"),
                b"accounts_only": ("auth_required", "this server serves accounts only: "
                                   "log in with a password")}, ref):
            return
        _, identity, spelled, ev, count, account, conversations, *names = reply
        name = _text(spelled)
        key = name.lower()
        users = [name] + [n for n in map(_text, names) if n.lower() != key]
        listed = [{"with": _text(conversations[i]), "last_id": conversations[i + 1]}
                  for i in range(0, len(conversations), 2)]
        self.welcoming[sid] = (session, [])
        self._park_until(session, self.lobby, ev, partial(
            self._welcome_at, session, sid, token, identity, count,
            users[:WELCOME_USERS], listed if account else None, ref))

    def _park_until(self, session, feed: Feed, ev: int, action) -> None:
        """`session` stays parked (its deferred queue, maybe empty, is kept) until
        `action` runs at `ev` of `feed`."""
        feed.at(ev, action)
        if feed.expected is not None:
            self._flow(feed, [])

    def _welcome_at(self, session, sid: bytes, token: str, identity: bytes, count: int,
                    users: list, conversations: list | None, ref) -> None:
        """The welcome, at the lobby's place of its `joined`; `conversations` is
        None for a guest, else the account's (`welcome.conversations`)."""
        _, held = self.welcoming.pop(sid, (None, ()))
        if session.ended:
            return
        session.name, session.key, session.token = users[0], users[0].lower(), token
        session.identity = identity
        session.account = conversations is not None
        self.users[session.key] = session
        self.sessions[sid] = session
        self.lobby.members[session] = None
        session.rooms[LOBBY] = self.lobby
        welcome = {
            "type": "welcome", "name": session.name, "token": token, "rooms": [LOBBY],
            "users": users, "user_count": count, "server": SERVER_VERSION,
            "epoch": self.epoch, "limits": self.limits}
        if session.account:
            welcome["account"] = True
            welcome["conversations"] = conversations
        self.out.reply(session, welcome, ref)
        for payload in held:  # dms that came before the welcome's place
            self.out.effects.append(Deliver((session,), payload))
        self._resume(session)

    # --------------------------------------------------------------- rooms

    def _join(self, session, message: dict, ref) -> None:
        name = message["room"]
        key = name.lower()
        feed = self.feeds.get(key)
        if feed is None:
            feed = self.feeds[key] = Feed(name, key)
            self.out.effects.append(Subscribe(feed.channel))
        feed.joining += 1
        settings = self.settings
        sid = self.sid_of[session]
        self._ask(session, message, "join", (sid, key, name,
                                             settings.max_rooms, settings.max_rooms_per_user),
                  partial(self._join_answered, feed),
                  partial(self._join_undone, session, feed, sid))

    def _join_undone(self, session, feed: Feed, sid: bytes, reply) -> None:
        """A join without an answer: the feed may close; if the join may have run,
        leave again (a no-op in Redis if it did not), so no other member sees a
        user in the room that this node does not deliver to."""
        feed.joining -= 1
        if reply is LINK_DOWN and session not in feed.members:
            self.must_run("leave", (sid, feed.key))
        self.close_feed_if_unused(feed)

    def _join_answered(self, feed: Feed, session, message: dict, reply) -> None:
        feed.joining -= 1
        limits = self.settings
        if self._refused(session, reply, {
                b"too_many_rooms": ("not_allowed", f"you are in {limits.max_rooms_per_user} "
                                    "rooms already, the most one user may be in; leave one "
                                    "first"),
                b"too_many_open": ("not_allowed", f"the cluster has {limits.max_rooms} rooms "
                                   "open, the most it keeps; join an existing one")},
                message.get("ref")):
            self.close_feed_if_unused(feed)
            return
        _, spelled, ev, _new, *names = reply
        feed.name = _text(spelled)
        # This reply came after the catch-up reads of the link it came on
        # (one connection, in order): `run` is that link's run of Redis.
        self._flow(feed, feed.start_at(ev, self.run))
        self._park_until(session, feed, ev, partial(
            self._enter_at, session, feed, [_text(n) for n in names], message.get("ref")))

    def _enter_at(self, session, feed: Feed, names: list, ref) -> None:
        if session.ended:
            self.close_feed_if_unused(feed)
            return
        feed.members[session] = None
        session.rooms[feed.key] = feed
        self.out.reply(session, {"type": "joined", "room": feed.name, "name": session.name})
        self.out.pages(session, {"type": "users", "room": feed.name}, "names", names,
                       NAME_ITEM_BYTES, ref)
        self._resume(session)

    def _joined_feed(self, session, message: dict):
        """The feed of the room `message` names if `session` is in it, else None;
        then the session waits for Redis to say whether the room exists
        anywhere in the cluster: `not_in_room` if it does, else `no_such_room`."""
        key = message.get("room", LOBBY).lower()
        feed = session.rooms.get(key)
        if feed is None:
            self._park(session, message)
            self.out.effects.append(Command(("HEXISTS", "chatd:rooms", key), partial(
                self._answered, session, self._not_joined, None)))
        return feed

    def _not_joined(self, session, message: dict, reply) -> None:
        room = message.get("room", LOBBY)
        if reply:
            self.out.error(session, "not_in_room", f"you are not in {room!r}",
                           message.get("ref"))
        else:
            self.out.error(session, "no_such_room", f"no room {room!r}", message.get("ref"))
        self._resume(session)

    def _leave(self, session, message: dict, ref) -> None:
        feed = self._joined_feed(session, message)
        if feed is not None:
            self._park(session, message)
            sid = self.sid_of[session]
            self.out.effects.append(Script("leave", (sid, feed.key), partial(
                self._leave_answered, session, feed, sid)))

    def _leave_answered(self, session, feed: Feed, sid: bytes, reply) -> None:
        ref = session.deferred.popleft().get("ref")
        if session.ended:
            return  # its bye leaves every room
        if reply is LINK_DOWN or reply is NOT_SENT:
            # Cut by the link: make sure it runs (leave.lua changes nothing the
            # second time; it goes first after the reconnect, before any later
            # join of the client), and tell the client it left.
            self.unsent.append(("leave", (sid, feed.key)))
            self._exit_at(session, feed, ref)
        elif type(reply) is not list:  # Redis refused it (an error reply): not done
            self.out.error(session, "unavailable", self.failed(reply), ref)
            self._resume(session)
        elif reply[0] != b"ok":  # Redis no longer has it there (reaped): leave here too
            self._exit_at(session, feed, ref)
        else:
            self._park_until(session, feed, reply[1],
                             partial(self._exit_at, session, feed, ref))

    def _exit_at(self, session, feed: Feed, ref) -> None:
        if session.ended:
            return
        feed.members.pop(session, None)
        session.rooms.pop(feed.key, None)
        self.out.reply(session, {"type": "left", "room": feed.name, "name": session.name}, ref)
        self.close_feed_if_unused(feed)
        self._resume(session)

    def _who(self, session, message: dict, ref) -> None:
        self._ask(session, message, "who", (message.get("room", LOBBY).lower(),),
                  self._who_answered)

    def _who_answered(self, session, message: dict, reply) -> None:
        room = message.get("room", LOBBY)
        ref = message.get("ref")
        if self._refused(session, reply, {b"no_such_room": ("no_such_room",
                                                            f"no room {room!r}")}, ref):
            return
        self.out.pages(session, {"type": "users", "room": _text(reply[1])}, "names",
                       [_text(name) for name in reply[2:]], NAME_ITEM_BYTES, ref)
        self._resume(session)

    def _rooms(self, session, message: dict, ref) -> None:
        self._ask(session, message, "rooms", (), self._rooms_answered)

    def _rooms_answered(self, session, message: dict, reply) -> None:
        listing = [{"name": _text(reply[i]), "users": reply[i + 1]}
                   for i in range(0, len(reply), 2)]
        self.out.pages(session, {"type": "rooms"}, "rooms", listing, ROOM_ITEM_BYTES,
                       message.get("ref"))
        self._resume(session)

    def _history(self, session, message: dict, ref) -> None:
        since = message.get("since")
        since = "" if since is None else since
        limit = min(message.get("limit", DEFAULT_HISTORY_LIMIT), self.settings.history)
        if "room" not in message:
            self._ask(session, message, "private",
                      (self.sid_of[session], message["with"].lower(), since, limit),
                      self._private_answered)
            return
        feed = self._joined_feed(session, message)
        if feed is not None:
            self._ask(session, message, "history", (feed.key, since, limit),
                      partial(self._history_answered, feed))

    def _history_answered(self, feed: Feed, session, message: dict, reply) -> None:
        self.messages.answer_history(session, {"type": "history", "room": feed.name},
                                     reply, message.get("ref"))
        self._resume(session)

    def _private_answered(self, session, message: dict, reply) -> None:
        ref = message.get("ref")
        if self._refused(session, reply, {b"no_such_user": (
                "no_such_user", f"no user {message['with']!r}")}, ref):
            return
        self.messages.answer_history(session, {"type": "history", "with": message["with"]},
                                     reply[1:], ref)
        self._resume(session)

    def _nick(self, session, message: dict, ref) -> None:
        if session.account:
            self.out.error(session, "not_allowed", "a logged-in user keeps the account's "
                           "name", ref)
            return
        name = message["name"]
        self._ask(session, message, "nick",
                  (self.sid_of[session], next(self._tags), name, name.lower()),
                  self._nick_answered)

    def _nick_answered(self, session, message: dict, reply) -> None:
        new = message["name"]
        ref = message.get("ref")
        if self._refused(session, reply, {
                b"taken": ("name_taken", f"{new!r} is taken"),
                b"registered": ("name_registered", f"{new!r} is an account")}, ref):
            return
        renamed = {"type": "renamed", "old": session.name, "new": new}
        del self.users[session.key]
        session.name, session.key = new, new.lower()
        self.users[session.key] = session
        self.out.reply(session, renamed, ref)
        self._resume(session)

    # ---------------------------------------------------------------- ending

    def _end(self, session, reason: str) -> None:
        if session.ended:
            return
        session.ended = True
        sid = self.sid_of.pop(session, None)
        self.welcoming.pop(sid, None)
        self.in_flight.pop(session, None)
        if session.name is not None:
            for feed in list(session.rooms.values()):
                del feed.members[session]
                self.close_feed_if_unused(feed)
            session.rooms.clear()
            del self.users[session.key]
            del self.sessions[sid]
        if sid is not None:
            self._bye(sid, reason)

    def _bye(self, sid: bytes, reason: str) -> None:
        """Tell Redis the session ended (its rooms get `left`, its name comes free)."""
        self.must_run("bye", (sid, reason))

    def must_run(self, name: str, args: tuple) -> None:
        """Run idempotent script `name` (bye, leave) until Redis has answered it:
        sent again after each reconnect (before anything that waited for the
        link) if its answer did not come."""
        def answered(reply):
            if self.failed(reply) is not None:
                self.unsent.append((name, args))
        self.out.effects.append(Script(name, args, answered))
