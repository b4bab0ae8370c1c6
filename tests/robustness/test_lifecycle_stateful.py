"""Connection lifecycle in random order over real sockets: members connect,
talk, close, crash (RST) and stall reading, as hypothesis chooses; the
server never raises and every member sees the room's messages in id order,
none missing, from the moment it joined."""

import itertools

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, precondition, rule,
                                 run_state_machine_as_test)

from crowd import Crowd
from probes import assert_healthy
from support import ServerProcess

_examples = itertools.count()


class Lifecycle(RuleBasedStateMachine):
    """Model: the room's next id, every accepted text by id, each member's first id."""

    server = None   # the ServerProcess every example talks to, set by the test

    def __init__(self):
        super().__init__()
        self.crowd = Crowd((self.server.host, self.server.port))
        self.room = f"life{next(_examples)}"   # a fresh room: its ids start at 1
        self.texts: dict[int, str] = {}
        self.first_id: dict = {}               # peer -> first id it must see
        self.paused: list = []                 # in the order they stalled
        self.names = itertools.count()

    def _members(self, reading: bool | None = None) -> list:
        return [peer for peer in self.first_id
                if reading is None or (peer not in self.paused) == reading]

    @rule()
    def connect(self):
        # A modest window, so a stalled reader soon makes the server queue.
        # Not 4 KiB: with many such sockets, loopback segments outgrow so
        # small a buffer, the receiver drops them and TCP's retransmission
        # backoff stalls the stream for many seconds (seen with ss: 2 MB in
        # the server's Send-Q, the reader's queue empty); that is the
        # kernel, not chatd.
        peer, = self.crowd.open([f"{self.room}m{next(self.names)}"], rcvbuf=65_536)
        self.crowd.send(peer, {"type": "join", "room": self.room})
        self.crowd.run_until(lambda: peer.has("users", room=self.room), 5, "join")
        self.first_id[peer] = len(self.texts) + 1

    @precondition(lambda self: self._members(reading=True))
    @rule(data=st.data(), count=st.sampled_from([1, 1, 2, 10, 400]),
          size=st.integers(1, 3_990))  # plus the id prefix: <= 4,000
    def send(self, data, count, size):
        """`count` lines at once: 400 of the largest fill the kernel's buffers
        towards a stalled reader, so the server has to queue."""
        peer = data.draw(st.sampled_from(self._members(reading=True)))
        texts = [f"{len(self.texts) + 1 + index}:" + "x" * size for index in range(count)]
        for text in texts:
            self.crowd.send(peer, {"type": "say", "room": self.room, "text": text})
        # The echo is the acceptance: wait for it so the model's ids are exact.
        self.crowd.run_until(lambda: peer.has("msg", text=texts[-1]), 10, "the echoes")
        for text in texts:
            self.texts[len(self.texts) + 1] = text

    @precondition(lambda self: self._members())
    @rule(data=st.data(), abrupt=st.booleans())
    def leave(self, data, abrupt):
        peer = data.draw(st.sampled_from(self._members()))
        (self.crowd.reset if abrupt else self.crowd.close)(peer)
        del self.first_id[peer]
        if peer in self.paused:
            self.paused.remove(peer)

    @precondition(lambda self: self._members(reading=True))
    @rule(data=st.data())
    def stall(self, data):
        peer = data.draw(st.sampled_from(self._members(reading=True)))
        self.crowd.pause(peer)
        self.paused.append(peer)

    @precondition(lambda self: self.paused)
    @rule(data=st.data())
    def resume(self, data):
        peer = data.draw(st.sampled_from(self.paused))
        self.crowd.pause(peer, False)
        self.paused.remove(peer)

    def teardown(self):
        try:
            for peer in self._members():
                self.crowd.pause(peer, False)
                self.crowd.send(peer, {"type": "ping", "ref": "end"})
            members = self._members()
            self.crowd.run_until(lambda: all(p.has("pong", ref="end") for p in members), 10,
                                 "every member's last pong")
            for peer in members:
                assert not peer.bad_frames and not peer.eof
                got = [(m["id"], m["text"]) for m in peer.of_type("msg")]
                expected = [(number, self.texts[number])
                            for number in range(self.first_id[peer], len(self.texts) + 1)]
                assert got == expected, f"{peer.name} saw ids {[i for i, _ in got]}"
            assert_healthy(self.server)
        finally:
            self.crowd.close_all()


def test_connection_lifecycle_in_random_order_loses_nothing():
    # Output limits far above what an example queues: a stalled reader is
    # served late, never cut off, so the model stays exact.
    with ServerProcess("--rate-limit", "0", "--output-hard-limit", str(256 << 20),
                       "--output-soft-limit", str(256 << 20)) as server:
        Lifecycle.server = server
        # Each example is up to 50 steps of real round trips: 25 examples
        # keep this test to seconds even under CI's 200-example profile.
        run_state_machine_as_test(Lifecycle, settings=settings(
            max_examples=25, stateful_step_count=50, deadline=None))
        assert_healthy(server)
