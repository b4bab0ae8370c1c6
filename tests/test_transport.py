"""Connections' flush: when it runs, through real socket pairs on a real EventLoop."""

import socket

import pytest

from chatd.loop import EventLoop
from chatd.transport import (FLUSH_LINGER_MIN_CONNECTIONS, Connections, OutputLimits,
                             Transport)

LIMITS = OutputLimits(write_per_turn=64 << 10, soft=256 << 10, soft_seconds=10.0, hard=1 << 20)


class Quiet:
    """A protocol that ignores what it hears (these tests only write)."""

    def connection_made(self, transport):
        pass

    def data_received(self, data):
        pass

    def eof_received(self):
        pass

    def connection_lost(self, reason):
        pass


@pytest.fixture
def world():
    loop = EventLoop()
    pairs = []

    def connect(connections, count):
        transports, peers = [], []
        for _ in range(count):
            ours, theirs = socket.socketpair()
            ours.setblocking(False)
            theirs.settimeout(5)
            pairs.append((ours, theirs))
            transport = Transport(connections, ours, ("test", 0))
            transport.start(Quiet())
            transports.append(transport)
            peers.append(theirs)
        return transports, peers

    yield loop, connect
    for ours, theirs in pairs:
        ours.close()
        theirs.close()
    loop.close()


def broadcast(connections, transports, data: bytes) -> None:
    """What `ChatService.queue` does (inlined there): the same bytes to every
    output, each transport on the flush list once, then the flush arranged."""
    owed_before = bool(connections.pending)
    for transport in transports:
        transport.output.append(data)
        if not transport.scheduled:
            transport.scheduled = True
            connections.pending.append(transport)
    if not owed_before:
        connections.arrange_flush()


def one_turn(loop):
    """Run exactly one turn of `loop` that does not wait."""
    loop.call_soon(loop.stop)
    loop.run_forever()


def run_until(loop, condition, timeout):
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        loop.call_later(0.01, loop.stop)
        loop.run_forever()


def readable(sock) -> bool:
    sock.setblocking(False)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
    finally:
        sock.settimeout(5)


def test_a_broadcast_soon_after_a_flush_lingers_and_carries_what_came_meanwhile(world):
    loop, connect = world
    connections = Connections(loop, LIMITS, flush_linger=0.2)
    transports, peers = connect(connections, FLUSH_LINGER_MIN_CONNECTIONS)
    broadcast(connections, transports, b"one ")   # the first after a quiet spell
    one_turn(loop)
    assert all(peer.recv(100) == b"one " for peer in peers)
    broadcast(connections, transports, b"two ")   # right after: it waits for the linger
    one_turn(loop)
    assert not any(readable(peer) for peer in peers)
    broadcast(connections, transports, b"three")  # a later turn's joins the same send
    one_turn(loop)
    run_until(loop, lambda: all(readable(peer) for peer in peers), 5)
    assert all(peer.recv(100) == b"two three" for peer in peers)
    assert connections.sends == 2 * len(peers)


def test_output_to_few_connections_never_lingers(world):
    loop, connect = world
    connections = Connections(loop, LIMITS, flush_linger=60.0)
    transports, peers = connect(connections, FLUSH_LINGER_MIN_CONNECTIONS - 1)
    for text in (b"first", b"second"):
        broadcast(connections, transports, text)
        one_turn(loop)
        assert all(peer.recv(100) == text for peer in peers)


def test_without_a_linger_every_turn_flushes(world):
    loop, connect = world
    connections = Connections(loop, LIMITS, flush_linger=0.0)
    transports, peers = connect(connections, FLUSH_LINGER_MIN_CONNECTIONS)
    for text in (b"first", b"second"):
        broadcast(connections, transports, text)
        one_turn(loop)
        assert all(peer.recv(100) == text for peer in peers)
