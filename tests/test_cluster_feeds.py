"""The cluster core's delivery of a room's events, against a fake Redis: pushes
that arrive late, twice or never, fills answered late or cut by a reconnect.

A hypothesis state machine drives `ClusterCore.complete` with the pushes and
answers a real Redis could send on one connection (and some it could not:
a push lost without a reconnect); the member must get every event exactly
once, in ev order, and everything once the fake has answered all.
"""

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from chatd.cluster.core import ClusterCore
from chatd.cluster.effects import (Answered, Batch, Command, LinkChanged, Pushed, Script,
                                   Subscribe)
from chatd.cluster.link import LINK_DOWN
from chatd.config import Config
from chatd.core import Deliver, Session

LOBBY_CHANNEL = b"chatd:room:lobby"


class FeedMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.core = ClusterCore(Config(store="memory").chat_settings(), "n1")
        self.member = Session()
        self.member.name = "m"
        self.core.lobby.members[self.member] = None
        self.stream: list[bytes] = []      # what Redis holds, ev i at [i - 1]
        self.pushes: list[bytes] = []      # published, not yet read by the node
        self.asked: list[Command] = []     # commands the node sent, unanswered
        self.delivered: list[int] = []
        self.start = None                  # the ev Redis had when the node asked
        self._apply(self.core.complete(LinkChanged(True)))  # starts at start.lua's ev

    def _apply(self, effects) -> None:
        for effect in effects:
            if type(effect) is Deliver:
                assert self.member in effect.recipients
                self.delivered.append(int(effect.payload.split(b":")[1][:-1]))
            elif type(effect) is Command:
                self.asked.append(effect)
            elif type(effect) is Script and effect.name == "inbox":  # nothing told here
                self._apply(self.core.complete(Batch([Answered(effect,
                                                               [0, 0, [], 0, b"run1"])])))
            elif type(effect) is Script and effect.name == "sessions":  # the member's
                self._apply(self.core.complete(Batch([Answered(effect, [])])))
            elif type(effect) is Script:  # resume or start: answered by `answer`
                assert effect.name in ("resume", "start")
                self.asked.append(effect)
            else:
                assert type(effect) is Subscribe

    def _answer(self, command: Command) -> list:
        args = command.args
        if type(command) is Script and command.name == "start":
            self.start = len(self.stream)
            return self.core.complete(Batch([Answered(command, [self.start, b"run1"])]))
        if type(command) is Script:  # resume: the stream after the ev given
            seen = command.args[2]
            entries = self._entries(seen + 1, len(self.stream))
            return self.core.complete(Batch([Answered(command, [seen, entries, 0, b"run1"])]))
        if args[0] == "PING":
            return self.core.complete(Batch([Answered(command, b"PONG")]))
        assert args[0] == "XRANGE"
        last = len(self.stream) if args[3] == "+" else int(args[3][2:])
        return self.core.complete(Batch([Answered(command, self._entries(int(args[2][2:]),
                                                                          last))]))

    def _entries(self, first: int, last: int) -> list:
        return [[f"0-{ev}".encode(), [b"d", self.stream[ev - 1]]]
                for ev in range(first, last + 1)]

    @rule(count=st.integers(1, 5))
    def publish(self, count):
        for _ in range(count):
            ev = len(self.stream) + 1
            data = b"%d s1.1 0 %d {\"id\":%d}" % (ev, ev, ev)
            self.stream.append(data)
            self.pushes.append(data)

    @precondition(lambda self: self.pushes)
    @rule(count=st.integers(1, 5))
    def read_pushes(self, count):
        for data in self.pushes[:count]:
            self._apply(self.core.complete(Batch([Pushed(LOBBY_CHANNEL, data)])))
        del self.pushes[:count]

    @precondition(lambda self: self.pushes)
    @rule()
    def lose_a_push(self):
        self.pushes.pop(0)

    @precondition(lambda self: self.pushes)
    @rule()
    def read_a_push_twice(self):
        self._apply(self.core.complete(Batch([Pushed(LOBBY_CHANNEL, self.pushes[0])])))

    @precondition(lambda self: self.asked)
    @rule()
    def answer(self):
        self._apply(self._answer(self.asked.pop(0)))

    @rule()
    def reconnect(self):
        asked, self.asked = self.asked, []
        for command in asked:
            self._apply(self.core.complete(Batch([Answered(command, LINK_DOWN)])))
        self.pushes.clear()
        self._apply(self.core.complete(LinkChanged(False)))
        self._apply(self.core.complete(LinkChanged(True)))

    @invariant()
    def once_each_in_order(self):
        if self.delivered:
            assert self.delivered == list(range(self.start + 1,
                                                self.start + 1 + len(self.delivered)))

    def teardown(self):
        self.reconnect()
        while self.asked:
            self._apply(self._answer(self.asked.pop(0)))
        # The node starts after the ev Redis had when it asked: from there on, all.
        assert self.delivered == list(range(self.start + 1, len(self.stream) + 1))


TestFeedMachine = FeedMachine.TestCase
