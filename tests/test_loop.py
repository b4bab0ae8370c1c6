"""The event loop on its own: file callbacks on a real socket pair, timers, other threads, signals."""

import os
import signal
import socket
import threading

from chatd.loop import TIMERS_PURGE_FLOOR, EventLoop


def run_until(loop: EventLoop, seconds: float = 5.0) -> None:
    """Run the loop until something calls stop(); fail after `seconds` (a timer)."""
    failed = []
    guard = loop.call_later(seconds, lambda: (failed.append(True), loop.stop()))
    loop.run_forever()
    guard.cancel()
    assert not failed, "the loop was not stopped in time"


def test_reader_and_writer_callbacks_follow_readiness_and_removal():
    loop, (ours, theirs) = EventLoop(), socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        events = []

        def on_readable():
            events.append(("read", ours.recv(100)))
            loop.remove_reader(ours)
            loop.add_writer(ours, on_writable)

        def on_writable():
            events.append(("write",))
            loop.remove_writer(ours)
            loop.stop()

        loop.add_reader(ours, on_readable)
        theirs.send(b"hello")
        run_until(loop)
        assert events == [("read", b"hello"), ("write",)]
        loop.close()


def test_timers_run_in_deadline_order_and_a_cancelled_one_never_runs():
    loop = EventLoop()
    ran = []
    now = loop.time()
    loop.call_at(now + 0.02, ran.append, "second")
    cancelled = loop.call_at(now + 0.01, ran.append, "cancelled")
    loop.call_at(now, ran.append, "first")
    loop.call_at(now + 0.03, loop.stop)
    cancelled.cancel()
    cancelled.cancel()  # idempotent
    run_until(loop)
    assert ran == ["first", "second"]
    assert cancelled.callback is None  # what it would have kept alive is let go
    loop.close()


def test_cancelled_timers_are_purged_once_they_are_half_the_heap():
    loop = EventLoop()
    far = loop.time() + 3600
    timers = [loop.call_at(far, lambda: None) for _ in range(2 * TIMERS_PURGE_FLOOR + 10)]
    for timer in timers[:TIMERS_PURGE_FLOOR + 6]:
        timer.cancel()
    assert len(loop._timers) == TIMERS_PURGE_FLOOR + 4  # the live ones only
    loop.close()


def test_call_soon_runs_this_turn_and_what_it_queues_runs_after_a_poll():
    loop = EventLoop()
    order = []

    def first():
        order.append("first")
        loop.call_soon(third)

    def third():
        order.append("third")
        loop.stop()

    loop.call_soon(first)
    loop.call_soon(order.append, "second")
    run_until(loop)
    assert order == ["first", "second", "third"]
    loop.close()


def test_another_thread_wakes_the_loop_and_its_wake_byte_is_no_signal():
    loop = EventLoop()
    got = []
    # SIGUSR1's number is 10, a newline; a zero byte must never be taken
    # for a signal, whatever handlers exist.
    loop.add_signal_handler(signal.SIGUSR1, got.append)
    try:
        def from_thread():
            loop.call_soon_threadsafe(got.append, "from the thread")
            loop.call_soon_threadsafe(loop.stop)

        thread = threading.Thread(target=from_thread)
        thread.start()
        run_until(loop)  # no timer is due: only the wake byte ends the poll
        thread.join()
        assert got == ["from the thread"]
    finally:
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        loop.close()


def test_a_signal_reaches_its_handler_inside_the_loop():
    loop = EventLoop()
    got = []

    def on_signal(signum):
        got.append(signum)
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR1, on_signal)
    try:
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        run_until(loop)
        assert got == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        loop.close()
