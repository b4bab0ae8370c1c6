"""Well-behaved clients that keep chatting in their own room while a test
attacks the server, then prove they were not disturbed: every message the
server accepted reached every one of them, in order, with no gap in ids."""

import threading
import time

from crowd import Crowd

ROOM = "calm"


class Chatters:
    """`count` clients in a background thread, each saying one line every
    `interval` seconds (at most `max_messages` in all) and timing its echo."""

    def __init__(self, address, count: int = 3, interval: float = 0.15,
                 max_messages: int = 2_000, prefix: str = "chatter"):
        self.address = address
        self.names = [f"{prefix}{index}" for index in range(count)]
        self.interval = interval
        self.max_messages = max_messages
        self.latencies: list[float] = []   # seconds from say to its echo
        self.sent: dict[str, list[str]] = {name: [] for name in self.names}
        self.peers = []
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        if not self._ready.wait(10):
            raise AssertionError(f"chatters never got going: {self._failure!r}")
        if self._failure is not None:
            raise self._failure
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)

    def _run(self):
        try:
            self._chat()
        except BaseException as exc:  # handed to the test thread in check()
            self._failure = exc
            self._ready.set()

    def _chat(self):
        with Crowd(self.address) as crowd:
            self.peers = crowd.open(self.names)
            for peer in self.peers:
                crowd.send(peer, {"type": "join", "room": ROOM})
            crowd.run_until(lambda: all(p.has("users", room=ROOM) for p in self.peers),
                            10, "chatters in their room")
            self._ready.set()
            waiting = {}   # peer -> (text, sent at) of its say in flight
            scanned = {peer: len(peer.frames) for peer in self.peers}
            total = 0
            next_turn = time.monotonic()
            deadline = next_turn + 120
            while (not self._stop.is_set() or waiting) and time.monotonic() < deadline:
                now = time.monotonic()
                if now >= next_turn and not self._stop.is_set() and total < self.max_messages:
                    for peer in self.peers:
                        if peer not in waiting:
                            text = f"{peer.name} says {len(self.sent[peer.name])}"
                            crowd.send(peer, {"type": "say", "room": ROOM, "text": text})
                            waiting[peer] = (text, now)
                            self.sent[peer.name].append(text)
                            total += 1
                    next_turn = now + self.interval
                crowd.pump(0.005)
                for peer in list(waiting):
                    text, sent_at = waiting[peer]
                    fresh, scanned[peer] = peer.frames[scanned[peer]:], len(peer.frames)
                    for frame in fresh:
                        if frame["type"] == "error":
                            raise AssertionError(f"{peer.name} got {frame}")
                        if frame["type"] == "msg" and frame.get("text") == text:
                            self.latencies.append(time.monotonic() - sent_at)
                            del waiting[peer]
                    if peer.eof:
                        raise AssertionError(f"{peer.name} was cut off: {peer.frames[-3:]}")
            # A ping answered after every echo: all accepted says are delivered.
            for peer in self.peers:
                crowd.send(peer, {"type": "ping", "ref": "chatters-done"})
            crowd.run_until(lambda: all(p.has("pong", ref="chatters-done") for p in self.peers),
                            10, "chatters' last pong")

    def check(self) -> list[float]:
        """Stop chatting; assert nothing was lost or reordered; return latencies."""
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "chatters did not finish"
        if self._failure is not None:
            raise self._failure
        everyone_sent = sum(len(texts) for texts in self.sent.values())
        assert everyone_sent > 0, "the chatters sent nothing"
        for peer in self.peers:
            assert not peer.bad_frames, peer.bad_frames
            errors = peer.of_type("error")
            assert not errors, f"{peer.name} got errors {errors[:3]}"
            assert not peer.eof, f"{peer.name} was disconnected: {peer.frames[-3:]}"
            room = [m for m in peer.frames if m["type"] == "msg" and m.get("room") == ROOM]
            ids = [m["id"] for m in room]
            assert ids == list(range(ids[0], ids[0] + len(ids))), \
                f"{peer.name}: gap or reorder in ids"
            for name, texts in self.sent.items():
                got = [m["text"] for m in room if m["from"] == name]
                assert got == texts, f"{peer.name} lost or reordered {name}'s lines"
        return self.latencies


def percentile(values, fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
