"""Connections' flush: when it runs, for ChatService's fan-out through real socket pairs
on a real EventLoop."""

import socket

import pytest

from chatd.chat_protocol import ChatService
from chatd.config import Config
from chatd.core import ChatCore
from chatd.loop import EventLoop
from chatd.store import open_store
from chatd.transport import (FLUSH_LINGER_MIN_CONNECTIONS, Connections, OutputLimits,
                             Transport)

LIMITS = OutputLimits(write_per_turn=64 << 10, soft=256 << 10, soft_seconds=10.0, hard=1 << 20)


@pytest.fixture
def world():
    """A loop, and `connect(flush_linger, count)`: a ChatService on it whose
    `count` protocols are started on real socket pairs; returns the service,
    the protocols (sessions) and the peers' sockets."""
    loop = EventLoop()
    pairs = []
    store = open_store("memory", 100, 100)

    def connect(flush_linger, count):
        connections = Connections(loop, LIMITS, flush_linger=flush_linger)
        core = ChatCore(Config(store="memory").chat_settings(), store.epoch, store.durable,
                        store.lobby)
        service = ChatService(loop, connections, core, handshake_timeout=60, idle_timeout=60)
        protocols, peers = [], []
        for _ in range(count):
            ours, theirs = socket.socketpair()
            ours.setblocking(False)
            theirs.settimeout(5)
            pairs.append((ours, theirs))
            protocol = service.protocol()
            Transport(connections, ours, ("test", 0)).start(protocol)
            protocols.append(protocol)
            peers.append(theirs)
        return service, protocols, peers

    yield loop, connect
    for ours, theirs in pairs:
        ours.close()
        theirs.close()
    loop.close()


def one_turn(loop):
    """Run exactly one turn of `loop` that does not wait."""
    loop.call_soon(loop.stop)
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
    service, sessions, peers = connect(60.0, FLUSH_LINGER_MIN_CONNECTIONS)
    connections = service.connections
    service.queue(sessions, b"one ")    # the first after a quiet spell: sent this turn
    one_turn(loop)
    assert all(peer.recv(100) == b"one " for peer in peers)
    service.queue(sessions, b"two ")    # right after: it waits for the linger
    one_turn(loop)
    service.queue(sessions, b"three")   # a later turn's output joins the same send
    one_turn(loop)
    assert not any(readable(peer) for peer in peers)
    assert len(connections.pending) == len(peers)
    connections.flush()                  # what the linger's timer calls when due
    assert all(peer.recv(100) == b"two three" for peer in peers)
    assert connections.sends == 2 * len(peers)


def test_output_to_few_connections_never_lingers(world):
    loop, connect = world
    service, sessions, peers = connect(60.0, FLUSH_LINGER_MIN_CONNECTIONS - 1)
    for text in (b"first", b"second"):
        service.queue(sessions, text)
        one_turn(loop)
        assert all(peer.recv(100) == text for peer in peers)


def test_without_a_linger_every_turn_flushes(world):
    loop, connect = world
    service, sessions, peers = connect(0.0, FLUSH_LINGER_MIN_CONNECTIONS)
    for text in (b"first", b"second"):
        service.queue(sessions, text)
        one_turn(loop)
        assert all(peer.recv(100) == text for peer in peers)
