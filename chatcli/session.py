"""What the client knows and says: the chat/1 session, without I/O.

The loop feeds it the connection's life (`connection_made`, `connection_lost`),
the server's events (`receive`), the lines the user typed (`submit`) and the
time; it answers with display `Line`s and, from `take_requests(now)`, the
requests to send, paced by the rate limit the server announced.

It remembers the name, the reconnect token, the server's epoch, the rooms
and the last message id seen in each room.  After a reconnect it says hello
again with the token, rejoins, and catches up room by room: in the same
epoch (or when either welcome has none), `history since` the last id seen,
asked again while a page comes back full or with `more`, so every missed
message is shown once and in order, and a gap at the start (messages past
the server's retention) is one counted line; in a new epoch the ids of
before mean nothing, so it says so and shows recent history instead.
Lines typed meanwhile are held and sent afterwards, minus those the catch-up
shows were accepted already.
"""

import itertools
from collections import deque
from dataclasses import dataclass, field

import framing
from framing import LOBBY, PROTOCOL_VERSION, TokenBucket, is_name

from . import commands, display
from .passwords import LOGIN_TRIES, Dialog

# Messages per catch-up request, and how many a new epoch's recent history
# shows; the server caps a request at its retention (`limits.history`).
CATCH_UP_LIMIT = 100
# Messages /history shows without a count.
DEFAULT_HISTORY = 20
# Seconds without any frame from the server before a ping asks whether the
# connection still works (--keepalive).  The answer, or any frame, must come
# within half of that, so a connection that died silently (a NAT that forgot
# it, a peer gone without FIN or reset) is noticed at most 1.5 x keepalive
# (30 s) after the last frame.  An idle connection costs the server one
# ping per 20 s; a busy one none, since its frames already prove it alive.
KEEPALIVE = 20.0
# Seconds without sending before a ping when the server does not announce
# its idle_timeout (it closes a connection that sent nothing for that long);
# otherwise a third of that timeout.
DEFAULT_SEND_KEEPALIVE = 60.0
# chat/1: welcome.epoch is a string of at most this many characters.
MAX_EPOCH_CHARS = 64
# Names refused by the server with these codes are asked for again.
NAME_ERRORS = ("bad_name", "name_taken")
# chat/1 Accounts: errors the server sends before it ends a session whose name
# changed hands (`bye` replaced follows), and what the user is told then.
EVICTIONS = {
    "not_registered": "the server's operator deleted this account",
    "name_registered": "this name became an account; log in with its password",
}
# chat/1 Accounts: the server's answers to a hello whose name is an account
# and that came without the password, or with a wrong one.
AUTH_ERRORS = ("auth_required", "auth_failed")
# Conversation keys: a room's is its name in lower case, a private
# conversation's this prefix and the other user's name in lower case (no
# chat/1 name contains it, so the two never meet).
PRIVATE = "@"


@dataclass
class Pending:
    """A request sent (or about to be) and what its answer is for."""
    message: dict
    purpose: str            # "user" for what the user typed, else internal
    room: str | None = None  # room key the answer is about
    gate: str | None = None  # held user commands wait until this is answered
    # A history wanted in several requests: how many messages are still
    # wanted (None: all there are, page after page), and the pages so far
    # (also the items of paged who/rooms answers).
    remaining: int | None = None
    pages: list = field(default_factory=list)


class Session:
    def __init__(self, name: str | None = None, room: str | None = None,
                 keepalive: float = KEEPALIVE, password: str | None = None,
                 ask_password: bool = True, remembered: dict | None = None):
        """`keepalive`: seconds of silence from the server before a ping (> 0).
        `password`: the account's, sent with every hello (from --password-file
        or CHATCLI_PASSWORD); `ask_password`: when the server wants one (or
        another one), ask through `question` (a terminal) instead of giving
        up with `fatal` (pipe mode, where no one is there to answer).
        `remembered`: what earlier runs showed of accounts' private
        conversations, {(epoch, account): {partner: last id}}
        (seen.py; `private_positions` gives this run's back)."""
        self.name = name
        self.remembered = remembered or {}
        self.account = False                 # logged in to an account
        self.token: str | None = None
        self.password = password
        self.ask_password = ask_password
        self._dialog: Dialog | None = None   # secret answers being asked for
        self._login_failures = 0             # auth_failed answers to hellos in a row
        self._evicted: str | None = None     # why the server is ending this session
        self.epoch: str | None = None        # the last welcome's, if it had one
        self.connected = False
        self.welcomed = False
        self.ever_welcomed = False
        self.rooms: dict[str, str] = {}      # key -> name as the server spells it
        self.current: str | None = None     # room key
        self.initial_room = room
        # Conversation key (a room's, or PRIVATE + a user's) -> the id of the
        # last message seen there, None when the room had none when we came;
        # no key: not known (yet).
        self.last_seen: dict[str, int | None] = {}
        self.name_rejected: str | None = None  # the server's reason; ask again
        self.quitting = False
        self.finished = False                # bye after our quit, or closed
        self.fatal: str | None = None        # why reconnecting makes no sense
        # Why this connection is no use and a new one (after the loop's
        # randomized delay) may do better; None: nothing of the kind.
        self.redial: str | None = None
        self.refused = 0                     # user requests the server refused
        self.pending: dict[int, Pending] = {}
        self._outbox: deque[int] = deque()   # refs in send order
        # What the user asked for while the session could not take it yet:
        # commands (resolved against the current room when released) and
        # requests sent before a drop but never answered.
        self._held: deque = deque()
        self._gates: set[str] = set()        # what must finish before held ones go
        self._notes: list = []               # lines made while releasing held ones
        self._buffered: dict[str, list] = {}  # live msgs arriving during a catch-up
        # PRIVATE keys -> the other user's name as the server spells it.
        self._peers: dict[str, str] = {}
        self._refs = itertools.count(1)
        # The server's rate limit, mirrored; None: no pacing (none announced,
        # or not welcomed on this connection yet).
        self._bucket: TokenBucket | None = None
        # The longest frame the server may send: chat/1's default until a
        # welcome announces its own (the loop's decoder follows it).
        self.max_frame = framing.MAX_FRAME
        # The time of the last take_requests: the bucket made at welcome
        # starts counting from here, and so does receive() when not told.
        self._took_at = 0.0
        self.keepalive = keepalive
        self.answer_timeout = keepalive / 2
        self._send_keepalive = DEFAULT_SEND_KEEPALIVE
        # The server caps a history request at its retention; it says which.
        self._page_limit = CATCH_UP_LIMIT
        self._last_sent = self._last_received = 0.0
        # Since when a request has been out with no frame back (None: not
        # waiting); a frame, any frame, shows the connection works.
        self._waiting_since: float | None = None

    # ----------------------------------------------------------------- state

    @property
    def current_name(self) -> str | None:
        return self.rooms.get(self.current) if self.current else None

    @property
    def question(self) -> str | None:
        """The question whose answer is secret (a password) that the next
        submitted line answers, or None; a terminal hides what is typed."""
        return self._dialog.prompt if self._dialog is not None else None

    @property
    def backlog(self) -> int:
        """Requests waiting to be sent."""
        return len(self._held) + len(self._outbox)

    @property
    def settled(self) -> bool:
        """Welcomed, every request the user made is sent and answered, and
        every catch-up is shown (the private messages found at login too)."""
        return (self.welcomed and not self._held and not self._gates and
                not any(p.purpose == "user" for p in self.pending.values()))

    # ------------------------------------------------------------ connection

    def connection_made(self, now: float) -> None:
        self.connected = True
        self._last_sent = self._last_received = self._took_at = now
        self._waiting_since = None
        if self.name is not None and not self._logging_in:
            self._send_hello()

    @property
    def _logging_in(self) -> bool:
        """Asking for the account's password: the hello waits for it."""
        return self._dialog is not None and self._dialog.kind == "login"

    def connection_lost(self) -> None:
        """The socket is gone: keep what the user asked for, drop the rest."""
        self.connected = self.welcomed = False
        unanswered = [p for ref, p in sorted(self.pending.items()) if p.purpose == "user"]
        self._held.extendleft(reversed(unanswered))
        self.pending.clear()
        self._outbox.clear()
        self._gates.clear()
        self._buffered.clear()
        self._bucket = None
        self.redial = None
        if self.quitting:
            self.finished = True

    def set_name(self, name: str) -> list:
        """The name the user typed at the prompt (or the first piped line)."""
        name = name.strip()
        if not is_name(name):
            return [display.error(f"bad name {name!r}: {commands.NAME_RULE}")]
        self.name, self.name_rejected = name, None
        if self.connected and not self.welcomed:
            self._send_hello()
        return []

    def _send_hello(self) -> None:
        message = {"type": "hello", "name": self.name, "version": PROTOCOL_VERSION}
        if self.token is not None:
            message["token"] = self.token
        if self.password is not None:
            message["password"] = self.password
        self._request(message, "hello")

    # --------------------------------------------------------------- sending

    def _request(self, message: dict, purpose: str, gate: str | None = None,
                 **context) -> Pending:
        ref = next(self._refs)
        pending = Pending(dict(message, ref=ref), purpose, gate=gate, **context)
        self.pending[ref] = pending
        self._outbox.append(ref)
        if gate is not None:
            self._gates.add(gate)
        return pending

    def _release_held(self) -> None:
        while self._held and self.welcomed and not self._gates:
            item = self._held.popleft()
            if isinstance(item, Pending):
                message = dict(item.message)
                del message["ref"]
                self._request(message, "user", gate=item.gate)
            else:
                self._notes += self._perform(item)

    def take_requests(self, now: float) -> list[dict]:
        """The requests to send now (dicts, in order); the rest wait for the
        rate limit.  `now`: seconds on the caller's monotonic clock."""
        if not self.connected:
            return []
        self._took_at = now
        due = self._ping_due()
        if due is not None and now >= due:
            self._request({"type": "ping"}, "ping")
        bucket = self._bucket
        out = []
        while self._outbox:
            pending = self.pending.get(self._outbox[0])
            if pending is None:
                self._outbox.popleft()
                continue
            # chat/1 never rate-limits quit, and the server does not count it.
            if (pending.message["type"] != "quit" and bucket is not None
                    and not bucket.take(now)):
                break
            self._outbox.popleft()
            out.append(pending.message)
        if out:
            self._last_sent = now
            if self._waiting_since is None:
                self._waiting_since = now
        return out

    def _ping_due(self) -> float | None:
        """When a keepalive ping is due, or None while none is wanted: not
        welcomed, or a request is out or queued (its answer will tell)."""
        if not self.welcomed or self._outbox or self._waiting_since is not None:
            return None
        return min(self._last_received + self.keepalive,
                   self._last_sent + self._send_keepalive)

    def next_deadline(self, now: float) -> float | None:
        """When (seconds, the clock of `now`) `take_requests` or `is_dead`
        next has something to say; None: not before something happens."""
        if not self.connected:
            return None
        deadlines = [self._ping_due()]
        if self._outbox and self._bucket is not None:
            wait = self._bucket.wait(now)
            if wait > 0:
                deadlines.append(now + wait)
        if self._waiting_since is not None:
            deadlines.append(self._waiting_since + self.answer_timeout)
        deadlines = [deadline for deadline in deadlines if deadline is not None]
        return min(deadlines) if deadlines else None

    def is_dead(self, now: float) -> bool:
        """True when a request has been out for `answer_timeout` seconds
        with no frame at all back: the connection is gone even if the
        kernel has not noticed.  Every chat/1 request gets an answer.
        (At the deadline itself, so a loop woken by `next_deadline` acts
        then instead of spinning until the clock passes it.)"""
        return (self._waiting_since is not None
                and now - self._waiting_since >= self.answer_timeout)

    # ----------------------------------------------------------- user input

    def submit(self, line: str) -> list:
        """A line the user typed: a command to send, or a line to show; or,
        while there is a `question`, its answer (never parsed, never shown)."""
        if self._dialog is not None:
            return self._answer(line)
        command = commands.parse(line)
        if command is None:
            return []
        return self.command(command)

    def command(self, command) -> list:
        if isinstance(command, commands.Invalid):
            self.refused += 1
            return [display.error(command.reason)]
        if isinstance(command, commands.Help):
            return [display.notice(text) for text in commands.HELP]
        if isinstance(command, commands.Quit):
            return self.quit(command.reason)
        if isinstance(command, commands.Register) and command.password is None:
            self._dialog = Dialog.register()
            return []
        if isinstance(command, commands.Passwd) and command.new is None:
            self._dialog = Dialog.passwd()
            return []
        if isinstance(command, (commands.Say, commands.Msg)):
            problem = commands.text_problem(command.text)
            if problem is not None:
                self.refused += 1
                return [display.error(problem)]
        if not self.welcomed or self._gates:
            # Resolved later: "the current room" may not be known yet, or be
            # about to change (a /join in flight).
            self._held.append(command)
            if self.ever_welcomed and not self.connected:
                return [display.status("not connected: sent once reconnected")]
            return []
        return self._perform(command)

    def _perform(self, command) -> list:
        """Turn a command into its request, now that the session can take it."""
        if isinstance(command, commands.Msg):
            self._request({"type": "dm", "to": command.to, "text": command.text}, "user")
        elif isinstance(command, commands.Join):
            # What follows a /join is meant for the joined room: hold it.
            self._request({"type": "join", "room": command.room}, "user", gate="join")
        elif isinstance(command, commands.Nick):
            self._request({"type": "nick", "name": command.name}, "user")
        elif isinstance(command, commands.Rooms):
            self._request({"type": "rooms"}, "user")
        elif isinstance(command, commands.Register):
            self._request({"type": "register", "password": command.password}, "user")
        elif isinstance(command, commands.Passwd):
            self._request({"type": "passwd", "old": command.old, "new": command.new}, "user")
        else:  # the commands about the current room
            room = getattr(command, "room", None) or self.current_name
            if room is None:
                self.refused += 1
                return [display.error("you are in no room; /join ROOM first")]
            if isinstance(command, commands.Say):
                message = {"type": "say", "room": room, "text": command.text}
            elif isinstance(command, commands.Leave):
                message = {"type": "leave", "room": room}
            elif isinstance(command, commands.Who):
                message = {"type": "who", "room": room}
            else:
                count = command.count or DEFAULT_HISTORY
                self._request({"type": "history", "room": room, "limit": count}, "user",
                              room=room.lower(), remaining=count)
                return []
            self._request(message, "user")
        return []

    def _answer(self, text: str) -> list:
        """The answer to the current `question`."""
        dialog = self._dialog
        outcome = dialog.answer(text)
        if outcome is None:  # more questions
            return []
        self._dialog = None
        result, problem = outcome
        if problem is not None:
            self.refused += 1
            return [display.error(problem)]
        if dialog.kind != "login":
            return self.command(result)
        if not result:  # no password: the user picks another name instead
            self.name, self.token = None, None
            return [display.status("choose another username: " + commands.NAME_RULE)]
        self.password = result
        if self.connected and not self.welcomed:
            self._send_hello()
        return []

    def cancel_question(self) -> list:
        """Drop the current question (Ctrl-C on it, or the end of piped input
        in the middle of /register): nothing is sent.  A login question ends
        the session instead, since without the password there is no chat."""
        dialog, self._dialog = self._dialog, None
        if dialog is None:
            return []
        if dialog.kind == "login":
            return self.quit()
        self.refused += 1
        return [display.error(f"/{dialog.kind} cancelled; nothing sent")]

    def quit(self, reason: str | None = None) -> list:
        self.quitting = True
        if not self.connected:
            self.finished = True
            return []
        message = {"type": "quit"}
        if reason:
            message["reason"] = reason
        pending = self._request(message, "quit")
        self._outbox.remove(pending.message["ref"])
        self._outbox.appendleft(pending.message["ref"])
        return []

    # ---------------------------------------------------------------- events

    def receive(self, event: dict, now: float | None = None) -> list:
        """One decoded frame from the server -> display lines to show.

        `now`: when it arrived (the clock of `take_requests`); None takes the
        time of the last `take_requests`.
        """
        self._last_received = self._took_at if now is None else now
        self._waiting_since = None
        handler = getattr(self, "_on_" + event["type"], None)
        lines = handler(event) if handler else []
        lines += self._notes
        self._notes = []
        return lines

    def _answered(self, event: dict, paged: bool = False) -> Pending | None:
        """The pending request this event answers, no longer pending unless
        `paged` (a `users` or `rooms` list: every frame but the last says
        `more`).  A `history` with `more` is the whole answer: the rest is
        another request."""
        ref = event.get("ref")
        if type(ref) is not int:  # ours are ints; anything else is not ours
            return None
        pending = self.pending.get(ref)
        if pending is not None and not (paged and event.get("more") is True):
            del self.pending[ref]
        return pending

    def _answer_unreferenced(self, kind: str, member: str, value: str) -> None:
        """chat/1 does not promise a ref on `left` and `renamed`: match them
        to the request by what they are about."""
        for ref, pending in self.pending.items():
            message = pending.message
            if message["type"] == kind and display.same_name(message[member], value):
                del self.pending[ref]
                return

    def _on_welcome(self, event: dict) -> list:
        self._answered(event)
        self.name, self.token = event["name"], event["token"]
        self.welcomed = True
        self.account = event.get("account") is True
        self._login_failures = 0
        epoch = event.get("epoch")
        if type(epoch) is not str or not 0 < len(epoch) <= MAX_EPOCH_CHARS:
            epoch = None  # none, or not one chat/1 allows: unknown
        # Only two epochs that differ say the ids started over; a missing one
        # says nothing, and ids are trusted (chatd sends none yet).
        new_epoch = self.epoch is not None and epoch is not None and epoch != self.epoch
        self.epoch = epoch
        limits = event["limits"]
        rate, burst = limits.get("rate"), limits.get("burst")
        if type(rate) in (int, float) and rate > 0 and type(burst) is int and burst >= 1:
            # The hello took one token.
            self._bucket = TokenBucket(float(rate), float(burst), self._took_at,
                                       tokens=burst - 1.0)
        idle = limits.get("idle_timeout")
        if type(idle) in (int, float) and idle > 0:
            self._send_keepalive = min(DEFAULT_SEND_KEEPALIVE, idle / 3)
        retention = limits.get("history")
        self._page_limit = (min(CATCH_UP_LIMIT, retention)
                            if type(retention) is int and retention >= 1 else CATCH_UP_LIMIT)
        max_frame = limits.get("max_frame")
        if type(max_frame) is int and max_frame >= framing.MAX_FRAME:
            # The frames it sends may be that long (history pages are).
            self.max_frame = max_frame
        users = ", ".join(str(user) for user in event["users"])
        count = event["user_count"]
        if not self.ever_welcomed:
            self.ever_welcomed = True
            self.rooms = {LOBBY: LOBBY}
            self.current = LOBBY
            self._request({"type": "history", "room": LOBBY, "limit": 1}, "baseline",
                          room=LOBBY)
            if self.initial_room and self.initial_room.lower() != LOBBY:
                self._request({"type": "join", "room": self.initial_room}, "initial",
                              gate="join")
            self._fetch_conversations(event.get("conversations"))
            self._release_held()
            logged_in = ", logged in" if event.get("account") is True else ""
            return [display.status(f"connected as {self.name}{logged_in} ({event['server']}); "
                                   f"{count} in #{LOBBY}: {users}")]
        lines = [display.status(f"reconnected as {self.name}; rejoining "
                                + ", ".join("#" + room for room in self.rooms.values()))]
        if new_epoch:
            self.last_seen.clear()
            lines.append(display.status("the server's message ids started over (a new "
                                        "epoch): showing recent history instead of what "
                                        "was missed"))
        lobby_member = LOBBY in self.rooms
        for key, room in list(self.rooms.items()):
            if key == LOBBY:
                continue
            self._request({"type": "join", "room": room}, "rejoin", room=key, gate=key)
        if lobby_member:
            self._catch_up(LOBBY)
        else:  # the user had left the lobby; a new session puts us back in
            self._request({"type": "leave", "room": LOBBY}, "rejoin")
        self._fetch_conversations(event.get("conversations"))
        self._release_held()
        return lines

    def _on_error(self, event: dict) -> list:
        pending = self._answered(event)
        code = event["code"]
        if pending is None:
            if code in EVICTIONS:  # the `bye` replaced that follows is why
                self._evicted = EVICTIONS[code]
            return [display.server_error(event)]
        # A password check refused for too many failed logins from this
        # address stays refused for the server's window: sent again at once,
        # it would only be refused again, so it is final, like the others.
        password_check = ((pending.purpose == "hello" and "password" in pending.message)
                          or pending.message["type"] == "passwd")
        if code == "rate_limited" and pending.purpose != "quit" and not password_check:
            # Send it again once the bucket has refilled; nothing is lost.
            ref = event["ref"]
            self.pending[ref] = pending
            self._outbox.appendleft(ref)
            if self._bucket is not None:
                # The server's bucket is empty, whatever ours says.
                self._bucket.tokens = min(self._bucket.tokens, 0.0)
            return []
        if pending.purpose == "hello":
            if code in NAME_ERRORS:
                self.name, self.token = None, None
                self.name_rejected = f"{code}: {event['message']}"
            elif code in AUTH_ERRORS:
                return [display.server_error(event)] + self._password_refused(code)
            elif code == "rate_limited":
                self.fatal = f"cannot log in as {self.name}: {event['message']}"
            elif code == "unavailable":
                # The server's password hasher is full: many log in at once.
                # Asking again at once would add to the crowd; the loop's
                # reconnect delay is random and grows.
                self.redial = f"cannot log in now: {event['message']}"
            return [display.server_error(event)]
        lines = []
        if pending.purpose == "user":
            self.refused += 1
            if pending.message["type"] == "history":
                # A later part of a /history failed: show what came.
                lines = [display.message_line(m, self.current_name, self.name)
                         for m in pending.pages]
        self._open_gate(pending)
        return lines + [display.server_error(event)]

    def _password_refused(self, code: str) -> list:
        """The hello's name is an account and the password is missing or
        wrong: ask for it (a bounded number of times), or give up."""
        self.password = None
        if code == "auth_failed":
            self._login_failures += 1
        if not self.ask_password:
            if code == "auth_required":
                self.fatal = (f"{self.name} is an account: give its password with "
                              f"--password-file FILE or CHATCLI_PASSWORD")
            else:
                self.fatal = f"cannot log in as {self.name}: wrong name or password"
            return []
        if self._login_failures >= LOGIN_TRIES:
            self.fatal = (f"cannot log in as {self.name}: wrong name or password "
                          f"{self._login_failures} times")
            return []
        self._dialog = Dialog.login(self.name)
        return []

    def _on_registered(self, event: dict) -> list:
        pending = self._answered(event)
        if pending is None:
            return []
        # Kept, as a password given at the start is: a reconnect after the
        # server forgot the token (a restart) logs in with it.
        self.password = pending.message["password"]
        return [display.notice(f"{event['name']} is now your account; next time log in "
                               "with its password")]

    def _on_password_changed(self, event: dict) -> list:
        pending = self._answered(event)
        if pending is None:
            return []
        self.password = pending.message["new"]
        return [display.notice("password changed")]

    def _open_gate(self, pending: Pending) -> None:
        """What waited for `pending` goes on: held commands, and the live
        messages held back during a catch-up that failed (shown after the
        error, never dropped)."""
        if pending.gate is not None:
            self._gates.discard(pending.gate)
            for msg in self._buffered.pop(pending.gate, []):
                self._notes += self._show_live(pending.gate, msg)
            self._release_held()

    def _on_msg(self, event: dict) -> list:
        self._answered(event)
        key = self._key_of(event)
        if key in self._buffered:
            self._buffered[key].append(event)
            return []
        return self._show_live(key, event)

    def _key_of(self, msg: dict) -> str:
        """The conversation key of a msg: its room's, or, for a private one,
        PRIVATE + the other user's name (the recipient of one I sent)."""
        if "to" not in msg:
            return msg["room"].lower()
        sender = msg["from"]
        peer = msg["to"] if display.same_name(sender, self.name) else sender
        return PRIVATE + peer.lower()

    def _show_live(self, key: str, event: dict) -> list:
        lines = []
        # A private conversation with a guest numbers from 1 again whenever
        # the guest comes back as a new session (chat/1 keeps guests'
        # private ids per session): not a restart worth a line.
        if not key.startswith(PRIVATE) and self._already_seen(key, event):
            # Live messages come once, in order: an id that does not grow
            # means the numbering started again (a restart that told no
            # epoch, a room the server forgot).  New messages, not repeats.
            lines.append(display.status(
                f"{self._label(key)}: message ids went back from {self.last_seen[key]} "
                f"to {event['id']}: the server's history started over"))
        self.last_seen[key] = event["id"]
        return lines + [display.message_line(event, self.current_name, self.name)]

    def _already_seen(self, key: str, msg: dict) -> bool:
        last = self.last_seen.get(key)
        return last is not None and msg["id"] <= last

    def _on_joined(self, event: dict) -> list:
        room, name = event["room"], event["name"]
        key = room.lower()
        if display.same_name(name, self.name):
            # Told with the member list, when the `users` answer comes.
            self.rooms[key] = room
            return []
        return [display.notice(f"{name} joined", room, self.current_name)]

    def _on_left(self, event: dict) -> list:
        room, name = event["room"], event["name"]
        reason = event.get("reason")
        suffix = f" ({reason})" if reason else ""
        if display.same_name(name, self.name):
            key = room.lower()
            self.rooms.pop(key, None)
            # What was said while we were out is not ours to fetch, and an
            # emptied room may come back with its ids starting again at 1.
            self.last_seen.pop(key, None)
            if self.current == key:
                self.current = next(iter(self.rooms), None)
            self._answer_unreferenced("leave", "room", room)
            return [display.notice(f"you left #{room}")]
        return [display.notice(f"{name} left{suffix}", room, self.current_name)]

    def _on_renamed(self, event: dict) -> list:
        old, new = event["old"], event["new"]
        if display.same_name(old, self.name):
            self.name = new
            self._answer_unreferenced("nick", "name", new)
            return [display.notice(f"you are now {new}")]
        return [display.notice(f"{old} is now {new}")]

    def _on_users(self, event: dict) -> list:
        pending = self._answered(event, paged=True)
        room = event["room"]
        key = room.lower()
        if pending is None:
            return []
        pending.pages.extend(event["names"])
        if event.get("more"):
            return []
        if pending.purpose == "rejoin":
            self._catch_up(key)
            return []
        names = ", ".join(pending.pages)
        if pending.message["type"] == "join":
            self.current = key
            self.rooms[key] = room
            if key not in self.last_seen:
                self._request({"type": "history", "room": room, "limit": 1}, "baseline",
                              room=key)
            self._open_gate(pending)
            return [display.notice(f"you joined #{room}; {len(pending.pages)} here: {names}")]
        return [display.notice(f"{len(pending.pages)} in #{room}: {names}",
                               room, self.current_name)]

    def _on_rooms(self, event: dict) -> list:
        pending = self._answered(event, paged=True)
        if pending is None:
            return []
        pending.pages.extend(event["rooms"])
        if event.get("more"):
            return []
        listing = ", ".join(f"#{item.get('name')} ({item.get('users')})"
                            for item in pending.pages if type(item) is dict)
        return [display.notice(f"{len(pending.pages)} rooms: {listing}")]

    def _on_history(self, event: dict) -> list:
        pending = self._answered(event)
        messages = [m for m in event["messages"] if _is_msg(m)]
        more = event.get("more") is True
        if pending is None:
            return []
        if pending.purpose == "baseline":
            if messages and not self._already_seen(pending.room, messages[-1]):
                self.last_seen[pending.room] = messages[-1]["id"]
            else:
                self.last_seen.setdefault(pending.room, None)
            return []
        if pending.purpose == "catchup":
            return self._caught_up(pending, messages, more)
        # /history N: the server gives the newest N, oldest first, as many as
        # fit one frame, and `more` when it left the newer ones out.  Fetch
        # those after the last one received, then print them all at once.
        pending.pages += messages
        if self._continue_history(pending, messages, more):
            return []
        room = event.get("room") or event.get("with")
        lines = [display.message_line(m, self.current_name, self.name) for m in pending.pages]
        if not lines:
            return [display.notice(f"no messages in #{room}")]
        return lines

    def _continue_history(self, pending: Pending, page: list, more: bool) -> bool:
        """Ask for the next part of a history wanted in several requests, if
        any is still wanted; False when `pending` was the last part.

        With `remaining` None (a catch-up: all there is) a full page also
        asks again, since the server stops at the limit without `more`;
        with a count, only `more` does, until the count is reached.  An
        empty page ends it either way (nothing to page from).
        """
        if not page:
            return False
        if pending.remaining is None:
            if not (more or len(page) >= pending.message["limit"]):
                return False
            limit, remaining = self._page_limit, None
        else:
            remaining = pending.remaining - len(page)
            if not (more and remaining > 0):
                return False
            limit = remaining
        message = {"type": "history", **self._target(pending.message),
                   "since": page[-1]["id"], "limit": limit}
        self._request(message, pending.purpose, room=pending.room, gate=pending.gate,
                      remaining=remaining, pages=pending.pages)
        return True

    def _on_pong(self, event: dict) -> list:
        self._answered(event)
        return []

    def _on_bye(self, event: dict) -> list:
        reason = event["reason"]
        if self.quitting:
            self.finished = True
            return []
        if reason == "replaced":
            self.fatal = self._evicted or "another chatcli took over this name"
        return [display.status(f"server closed the connection: {reason}")]

    # -------------------------------------------------------------- catch-up

    @staticmethod
    def _target(message: dict) -> dict:
        """What a history request (or answer) is about: {"room": ...} or {"with": ...}."""
        return {member: message[member] for member in ("room", "with") if member in message}

    def _label(self, key: str) -> str:
        """A conversation as the user reads it: #room, or "private with bob"."""
        if key.startswith(PRIVATE):
            return f"private with {self._peers.get(key, key[1:])}"
        return "#" + self.rooms.get(key, key)

    def _fetch_conversations(self, conversations) -> None:
        """chat/1 Accounts: `welcome.conversations` lists the account's private
        conversations ({with, last_id}, most recent first); fetch those with
        messages this client has not shown, least recent first, so the most
        recent ends up nearest the input line."""
        if type(conversations) is not list:
            return
        shown = self.remembered.get((self.epoch, self.name.lower()), {})
        for partner, last in shown.items():
            self.last_seen.setdefault(PRIVATE + partner, last)
        for item in reversed(conversations):
            if type(item) is not dict or not is_name(item.get("with")):
                continue
            last_id = item.get("last_id")
            key = PRIVATE + item["with"].lower()
            seen = self.last_seen.get(key)
            if type(last_id) is int and seen is not None and last_id <= seen:
                continue
            self._peers[key] = item["with"]
            self._catch_up(key)

    def private_positions(self) -> tuple | None:
        """((epoch, account), {partner: the last id shown}) of the account this
        session is logged in to, for the next run (seen.py); None when it is not
        logged in, or the server names no epoch (its ids could start over)."""
        if not self.account or self.epoch is None:
            return None
        return (self.epoch, self.name.lower()), {
            key[len(PRIVATE):]: last for key, last in self.last_seen.items()
            if key.startswith(PRIVATE) and type(last) is int}

    def _catch_up(self, key: str) -> None:
        """Fetch what was missed in a conversation: since the last id seen, or,
        with no id that means anything here (a new epoch, a room whose
        baseline never came, a private conversation not seen yet), the newest
        messages."""
        self._gates.add(key)
        self._buffered.setdefault(key, [])
        if key.startswith(PRIVATE):
            target = {"with": self._peers[key]}
        else:
            target = {"room": self.rooms[key]}
        message = {"type": "history", **target, "limit": self._page_limit}
        if key in self.last_seen:
            message["since"] = self.last_seen[key] or 0
            remaining = None
        else:
            remaining = self._page_limit
        self._request(message, "catchup", room=key, gate=key, remaining=remaining)

    def _caught_up(self, pending: Pending, messages: list, more: bool) -> list:
        key = pending.room
        lines = []
        since = pending.message.get("since")
        if since is not None and messages and messages[0]["id"] > since + 1:
            # `since` is exact within retention: the answer starts at the
            # oldest kept, so the ids in between are gone.
            gone = messages[0]["id"] - since - 1
            lines.append(display.status(
                f"{self._label(key)}: {gone} message{'s' if gone != 1 else ''} said while "
                f"you were away {'are' if gone != 1 else 'is'} no longer on the server"))
        for msg in messages:
            if not self._already_seen(key, msg):
                lines += self._show_caught_up(key, msg)
                pending.pages.append(msg["id"])
        if self._continue_history(pending, messages, more):
            return lines
        # Live messages that came meanwhile: those the pages showed are
        # repeats; any other is live news, even with an id that went back.
        shown = set(pending.pages)
        for msg in self._buffered.pop(key, []):
            if msg["id"] not in shown:
                lines += self._show_live(key, msg)
        self._gates.discard(key)
        self._release_held()
        return lines

    def _show_caught_up(self, key: str, msg: dict) -> list:
        self.last_seen[key] = msg["id"]
        if display.same_name(msg["from"], self.name):
            self._forget_held_say(key, msg["text"])
        return [display.message_line(msg, self.current_name, self.name)]

    def _forget_held_say(self, key: str, text: str) -> None:
        """A line sent before the drop did arrive: do not send it twice."""
        for item in self._held:
            if not isinstance(item, Pending):
                continue
            message = item.message
            if (message["type"] in ("say", "dm") and message["text"] == text
                    and self._key_of({**message, "from": self.name}) == key):
                self._held.remove(item)
                return


def _is_msg(item) -> bool:
    return (type(item) is dict and type(item.get("id")) is int
            and type(item.get("from")) is str and type(item.get("text")) is str
            and type(item.get("ts")) in (int, float))
