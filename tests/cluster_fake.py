"""An in-memory fake of the cluster's Redis for state-machine tests of ClusterCore.

It keeps the same state the Lua scripts keep (names, sessions, members in
join order, each room's event counter, message ids and stream) and runs the
scripts the tests use (hello, join, leave, say, dm between guests, bye,
inbox, resume, sessions; accounts as far as hello reads them; Redis never
loses data here), and each node's inbox (its
cap trims only when a test says so) as Python with the same
replies and published texts.  Each node has a connection: commands queue
until the test lets Redis execute one (`execute`), replies and pushes queue
until the test lets the node read one (`read`), so a test chooses every
interleaving; `break_link` drops a connection as a reset would.  It is a
model of scripts/*.lua: a change there must be made here too.
"""

import json
from collections import deque

from chatd.cluster.effects import (Answered, Batch, Command, LinkChanged, Pushed, Script,
                                   Subscribe, Unsubscribe)
from chatd.cluster.link import LINK_DOWN
from chatd.core import CheckPassword, Close, Deliver


def _enc(value: str) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class FakeRedis:
    """The shared state and the scripts (see the module docstring)."""

    def __init__(self, presence_limit: int = 200):
        self.limit = presence_limit
        self.users: dict[str, bytes] = {}
        self.sess: dict[bytes, dict] = {}
        self.members: dict[str, dict] = {}   # room -> {sid: None} in join order
        self.rooms = {"lobby": "lobby"}
        self.accounts: dict[str, dict] = {}  # key -> name, cred, identity
        self.ev: dict[str, int] = {}
        self.seq: dict[str, int] = {}
        self.log: dict[str, list] = {}       # room -> [(ev, data)]
        self.inbox: dict[str, list] = {}     # node -> [data told, oldest kept first]
        self.trimmed: dict[str, int] = {}    # node -> how many its cap dropped
        self.pseq: dict[tuple, int] = {}     # pair of identities -> last dm id
        self.connections: list = []
        self.clock = 1_000_000.0

    # -------------------------------------------------------------- helpers

    def _publish(self, channel: str, data: bytes) -> None:
        for connection in self.connections:
            if channel in connection.channels:
                connection.outbound.append(("push", channel.encode(), data))

    def _tell(self, node: str, data: bytes) -> None:
        inbox = self.inbox.setdefault(node, [])
        number = self.trimmed.get(node, 0) + len(inbox) + 1
        inbox.append(data)
        self._publish("chatd:node:" + node, b"%d %s" % (number, data))

    def trim(self, node: str, count: int) -> None:
        """The inbox cap drops the oldest `count` entries of `node`'s inbox."""
        del self.inbox[node][:count]
        self.trimmed[node] = self.trimmed.get(node, 0) + count

    def _emit(self, room: str, sid: bytes, tag: int, msgid: int, payload: bytes) -> int:
        ev = self.ev[room] = self.ev.get(room, 0) + 1
        data = b"%d %s %d %d %s" % (ev, sid, tag, msgid, payload)
        self.log.setdefault(room, []).append((ev, data))
        self._publish("chatd:room:" + room, data)
        return ev

    def _announce(self, room: str, sid: bytes, payload: bytes) -> int:
        if len(self.members.get(room, {})) <= self.limit:
            return self._emit(room, sid, 0, 0, payload)
        return self.ev.get(room, 0)

    def _names(self, room: str) -> list:
        return [self.sess[sid]["name"].encode() for sid in self.members.get(room, {})]

    def _part(self, room: str, sid: bytes, reason: str) -> int:
        name = self.sess[sid]["name"]
        text = f'{{"type":"left","room":{_enc(self.rooms.get(room, room))},"name":{_enc(name)}'
        if reason:
            text += f',"reason":{_enc(reason)}'
        ev = self._announce(room, sid, (text + "}").encode())
        del self.members[room][sid]
        self.sess[sid]["rooms"].discard(room)
        if room != "lobby" and not self.members[room]:
            del self.rooms[room]
        return ev

    def _drop(self, sid: bytes, reason: str) -> int:
        session = self.sess.pop(sid, None)
        if session is None:
            return 0
        self.sess[sid] = session  # _part reads it
        for room in list(session["rooms"]):
            self._part(room, sid, reason)
        if self.users.get(session["key"]) == sid:
            del self.users[session["key"]]
        del self.sess[sid]
        return 1

    # -------------------------------------------------------------- scripts

    def run(self, connection, name: str, args: tuple):
        """One script (ARGV after the presence limit and stream cap): its reply."""
        text = [a.decode() if type(a) is bytes else str(a) for a in args]
        if name == "say":
            text[-1] = args[-1]  # the msg's JSON head stays bytes
        return getattr(self, "_" + name)(connection, *text)

    def _hello(self, connection, node, sid, name, key, token, given, most, guests, login,
               conversations):
        sid = sid.encode()
        identity = sid
        holder = self.users.get(key)
        account = self.accounts.get(key)
        is_account = False
        if login:
            if account is None or account["cred"] != login:
                return [b"auth_failed"]
            name, identity, is_account = account["name"], account["identity"], True
        elif account is None and guests != "1":
            return [b"accounts_only"]
        elif holder is not None:
            if not given or self.sess[holder]["token"] != given:
                return [b"auth_required" if account is not None else b"taken"]
            identity = self.sess[holder]["identity"]
            is_account = self.sess[holder]["account"]
        elif account is not None:
            return [b"auth_required"]
        if holder is not None:
            hnode = self.sess[holder]["node"]
            self._drop(holder, "replaced")
            self._tell(hnode, b"replaced " + holder)
        self.users[key] = sid
        self.sess[sid] = {"name": name, "key": key, "node": node, "token": token,
                          "identity": identity, "account": is_account, "rooms": {"lobby"}}
        self.members.setdefault("lobby", {})[sid] = None
        ev = self._announce("lobby", sid,
                            f'{{"type":"joined","room":"lobby","name":{_enc(name)}}}'.encode())
        # No account dms in this model: an account's conversations are empty.
        return [b"ok", identity, name.encode(), ev, len(self.members["lobby"]),
                int(is_account), [], *self._names("lobby")[:int(most)]]

    def _join(self, connection, sid, room, spelled, max_rooms, per_user):
        sid = sid.encode()
        session = self.sess.get(sid)
        if session is None:
            return [b"gone"]
        new = 0
        if sid in self.members.get(room, {}):
            ev = self.ev.get(room, 0)
        else:
            if len(session["rooms"]) >= int(per_user):
                return [b"too_many_rooms"]
            if room not in self.rooms:
                if len(self.rooms) >= int(max_rooms):
                    return [b"too_many_open"]
                self.rooms[room] = spelled
            self.members.setdefault(room, {})[sid] = None
            session["rooms"].add(room)
            ev = self._announce(room, sid, (f'{{"type":"joined","room":'
                                            f'{_enc(self.rooms[room])},"name":'
                                            f'{_enc(session["name"])}}}').encode())
            new = 1
        return [b"ok", self.rooms[room].encode(), ev, new, *self._names(room)]

    def _leave(self, connection, sid, room):
        sid = sid.encode()
        if sid not in self.sess or sid not in self.members.get(room, {}):
            return [b"not_in_room"]
        return [b"ok", self._part(room, sid, "")]

    def _bye(self, connection, sid, reason):
        return self._drop(sid.encode(), reason)

    def _say(self, connection, sid, tag, room, head):
        sid = sid.encode()
        if sid not in self.members.get(room, {}):
            return [b"not_in_room", self.ev.get(room, 0)]
        msgid = self.seq[room] = self.seq.get(room, 0) + 1
        self.clock += 0.001
        self._emit(room, sid, int(tag), msgid,
                   head + b',"id":%d,"ts":%.6f}' % (msgid, self.clock))
        return [b"ok"]

    def _dm(self, connection, sid, tag, key, text):
        sender = self.sess.get(sid.encode())
        if sender is None:
            return [b"gone"]
        rsid = self.users.get(key)
        if rsid is None:
            return [b"no_such_user"]
        recipient = self.sess[rsid]
        pair = tuple(sorted((sender["identity"], recipient["identity"])))
        msgid = self.pseq[pair] = self.pseq.get(pair, 0) + 1
        self.clock += 0.001
        payload = (f'{{"type":"msg","to":{_enc(recipient["name"])},"from":'
                   f'{_enc(sender["name"])},"text":{text},"id":{msgid},'
                   f'"ts":{self.clock:.6f}}}').encode()
        data = b"dm %s %s %s %s" % (rsid, sid.encode(), tag.encode(), payload)
        self._tell(recipient["node"], data)
        if sender["node"] != recipient["node"]:
            self._tell(sender["node"], data)
        return [b"ok"]

    def _inbox(self, connection, node, after, run):
        inbox, trimmed = self.inbox.get(node, []), self.trimmed.get(node, 0)
        return [int(after), trimmed + len(inbox),
                [[b"0-%d" % number, [b"d", data]]
                 for number, data in enumerate(inbox, trimmed + 1) if number > int(after)],
                0, b"run1"]

    def _resume(self, connection, node, room, seen, run):
        return [int(seen), self._entries(room, int(seen) + 1, float("inf")), 0, b"run1"]

    def _start(self, connection, room):
        return [self.ev.get(room, 0), b"run1"]

    def _sessions(self, connection, node):
        reply = []
        for sid, session in self.sess.items():
            if session["node"] == node:
                reply += [sid, [room.encode() for room in session["rooms"]]]
        return reply

    def _entries(self, room: str, first, last) -> list:
        return [[b"0-%d" % ev, [b"d", data]] for ev, data in self.log.get(room, [])
                if first <= ev <= last]

    def command(self, connection, args: tuple):
        """A plain command's reply (XRANGE of a room's stream, HEXISTS of a room,
        HGET of an account's credential, PING)."""
        if args[0] == "XRANGE":
            last = float("inf") if args[3] == "+" else int(args[3][2:])
            return self._entries(args[1][len("chatd:log:"):], int(args[2][2:]), last)
        if args[0] == "HGET" and args[1].startswith("chatd:acct:"):
            account = self.accounts.get(args[1][len("chatd:acct:"):])
            return None if account is None else account[args[2]].encode()
        if args[0] == "HEXISTS":
            return int(args[2] in self.rooms)
        assert args[0] == "PING"
        return b"PONG"


class FakeConnection:
    """One node's connection: commands not yet run, replies and pushes not yet read."""

    def __init__(self, redis: FakeRedis, node):
        self.redis = redis
        self.node = node
        self.channels: set[str] = set()
        self.inbound: deque = deque()    # (effect or None, kind, args)
        self.outbound: deque = deque()   # ("push", channel, data) or ("reply", effect, value)
        redis.connections.append(self)

    def execute(self) -> None:
        effect, kind, args = self.inbound.popleft()
        redis = self.redis
        if kind == "subscribe":
            self.channels.add(args)
            return
        if kind == "unsubscribe":
            self.channels.discard(args)
            return
        if kind == "script":
            value = redis.run(self, args[0], args[1])
        else:
            value = redis.command(self, args)
        self.outbound.append(("reply", effect, value))


class FakeNode:
    """A ClusterCore and its connection to the fake: effects in, completions out.

    `frames[session]` lists every payload (decoded) delivered to a session;
    `closed` the sessions the core closed; `checks` the password checks asked
    for (the test answers each with a PasswordChecked).
    """

    def __init__(self, redis: FakeRedis, core):
        self.redis = redis
        self.core = core
        self.frames: dict = {}
        self.closed: dict = {}
        self.checks: list = []    # CheckPassword effects, for the test to answer
        self.down = False
        self.waiting: list = []   # scripts and commands made while the link was down
        self.connection = FakeConnection(redis, self)
        self.connection.inbound.append((None, "subscribe", "chatd:node:" + core.node))
        self.apply(core.complete(LinkChanged(True)))

    def apply(self, effects) -> None:
        inbound = self.connection.inbound
        for effect in effects:
            kind = type(effect)
            if kind is Deliver:
                for session in effect.recipients:
                    self.frames.setdefault(session, []).append(json.loads(effect.payload))
            elif kind is Close:
                self.closed[effect.session] = effect.reason
            elif kind is CheckPassword:  # the test answers it (PasswordChecked)
                self.checks.append(effect)
            elif self.down:
                if kind in (Script, Command):  # sent once the link is back
                    self.waiting.append(effect)
            elif kind is Script:
                inbound.append((effect, "script", (effect.name, effect.args)))
            elif kind is Command:
                inbound.append((effect, "command", effect.args))
            elif kind is Subscribe:
                inbound.append((None, "subscribe", effect.channel))
            else:
                assert kind is Unsubscribe
                inbound.append((None, "unsubscribe", effect.channel))

    def read(self, count: int = 1) -> None:
        """The node reads `count` replies and pushes (one turn's: one Batch)."""
        outbound = self.connection.outbound
        arrived = []
        for _ in range(min(count, len(outbound))):
            item = outbound.popleft()
            if item[0] == "push":
                arrived.append(Pushed(item[1], item[2]))
            elif item[1] is not None:
                arrived.append(Answered(item[1], item[2]))
        self.apply(self.core.complete(Batch(arrived)))

    def break_link(self) -> None:
        """A reset: what was not run is lost, what was run has lost its reply; a new
        connection, then the core resubscribes and catches up."""
        connection = self.connection
        self.redis.connections.remove(connection)
        owed = [item[1] for item in connection.outbound if item[0] == "reply"] + \
               [effect for effect, _, _ in connection.inbound]
        self.down = True
        for effect in owed:
            if effect is not None:
                self.apply(self.core.complete(Batch([Answered(effect, LINK_DOWN)])))
        self.apply(self.core.complete(LinkChanged(False)))
        self.connection = FakeConnection(self.redis, self)
        self.down = False
        self.connection.inbound.append((None, "subscribe", "chatd:node:" + self.core.node))
        self.apply(self.core.complete(LinkChanged(True)))
        waiting, self.waiting = self.waiting, []
        self.apply(waiting)
