"""The watchdogs' timing wheel on a real EventLoop: deadlines fire in order and
never early; forgotten ones never fire."""

from chatd.loop import EventLoop
from chatd.watchdogs import Watchdogs
from test_loop import run_until

RESOLUTION = 0.01


class Watched:
    """Records when its deadline passed; may ask for another (`again`)."""

    def __init__(self, name, fired, again=None, on_fire=None):
        self.name, self.fired, self.again, self.on_fire = name, fired, again, on_fire
        self.watch_slot = None
        self.deadline = None

    def deadline_passed(self):
        self.fired.append((self.name, self.wheel.loop.time()))
        if self.on_fire is not None:
            self.on_fire()
        if self.again is not None:
            self.deadline, self.again = self.deadline + self.again, None
            self.wheel.watch(self, self.deadline)


def watch(wheel, watched, deadline):
    watched.wheel, watched.deadline = wheel, deadline
    wheel.watch(watched, deadline)


def test_deadlines_fire_in_order_and_never_early():
    loop = EventLoop()
    wheel = Watchdogs(loop, RESOLUTION)
    fired = []
    now = loop.time()
    watchers = {name: Watched(name, fired) for name in "abcd"}
    for name, delay in zip("dbca", (0.08, 0.03, 0.05, 0.001)):
        watch(wheel, watchers[name], now + delay)
    watch(wheel, watchers["d"], now + 0.07)   # a new deadline replaces the old one
    loop.call_at(now + 0.12, loop.stop)
    run_until(loop)
    assert [name for name, _ in fired] == ["a", "b", "c", "d"]
    for name, at in fired:
        assert watchers[name].deadline <= at
    assert all(w.watch_slot is None for w in watchers.values())
    loop.close()


def test_a_forgotten_deadline_never_fires_even_while_its_slot_fires():
    loop = EventLoop()
    wheel = Watchdogs(loop, RESOLUTION)
    fired = []
    now = loop.time()
    gone = Watched("gone", fired)
    closed_by_neighbour = Watched("closed by its neighbour", fired)
    closer = Watched("closer", fired, on_fire=lambda: wheel.forget(closed_by_neighbour))
    watch(wheel, gone, now + 0.02)
    wheel.forget(gone)
    wheel.forget(gone)   # idempotent
    watch(wheel, closer, now + 0.02)
    watch(wheel, closed_by_neighbour, now + 0.02)   # same slot, after the closer
    loop.call_at(now + 0.06, loop.stop)
    run_until(loop)
    assert [name for name, _ in fired] == ["closer"]
    loop.close()


def test_a_deadline_watched_again_from_its_callback_fires_again_later():
    loop = EventLoop()
    wheel = Watchdogs(loop, RESOLUTION)
    fired = []
    now = loop.time()
    twice = Watched("twice", fired, again=0.03)
    watch(wheel, twice, now + 0.01)
    loop.call_at(now + 0.08, loop.stop)
    run_until(loop)
    assert [name for name, _ in fired] == ["twice", "twice"]
    assert fired[1][1] >= now + 0.04
    loop.close()
