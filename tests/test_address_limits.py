"""Per-address connection limits at accept (issue 12 item 7), over real sockets from
127.0.0.2 and up (each a client address of its own on Linux's loopback)."""

import socket

from websockets.sync.client import connect

from chatd.address_limits import AddressLimits, address_key
from support import WAIT, ChatClient, running_server, serve, wait_until
from test_metrics import scrape, value
from test_ws_server import until_close


def refusal(client) -> tuple[str, str]:
    """The error and bye a refused connection gets, and nothing else."""
    frames = client.frames_until_close()
    assert [(f["type"], f.get("code") or f.get("reason")) for f in frames] == [
        ("error", "server_full"), ("bye", "server_full")], frames
    return frames[0]["message"]


def test_sixteen_open_per_address_then_server_full_saying_why():
    with running_server(metrics=True, limit_loopback=True) as server:
        address = server.address
        clients = [ChatClient(address, f"a{number}", source="127.0.0.2")
                   for number in range(16)]
        try:
            extra = ChatClient(address, source="127.0.0.2")
            assert "16 connections from your address are open" in refusal(extra)
            # Another address is not affected.
            with ChatClient(address, "other", source="127.0.0.3") as other:
                assert other.welcome["name"] == "other"
            # One closes: its place is free again.
            clients.pop().close()
            wait_until(lambda: len(server.connections.open) == 15, what="the close")
            clients.append(ChatClient(address, "again", source="127.0.0.2"))
            families = scrape(server)
            assert value(families, "chatd_connections_rejected",
                         "chatd_connections_rejected_total", listener="chat",
                         reason="address_limit") == 1
            assert value(families, "chatd_disconnects", "chatd_disconnects_total",
                         reason="server_full") == 1
        finally:
            for client in clients:
                client.close()


def test_thirty_two_new_per_window_per_address():
    # Concurrency out of the way: only the count of new connections is tested.
    with running_server(limit_loopback=True, address_connections=100,
                        address_window=60) as server:
        for number in range(32):
            with ChatClient(server.address, source="127.0.0.4") as client:
                client.send({"type": "ping", "data": number})
                assert client.next_of("pong")["data"] == number
        late = ChatClient(server.address, source="127.0.0.4")
        assert "more than 32 new connections from your address within 60s" in refusal(late)
        with ChatClient(server.address, "fine", source="127.0.0.3") as other:
            assert other.welcome["type"] == "welcome"
        assert server.listener.refused_by_address == 1


def test_loopback_is_exempt_unless_asked():
    with running_server() as server:
        clients = [ChatClient(server.address, f"l{number}", source="127.0.0.5")
                   for number in range(20)]
        try:
            assert all(client.welcome["type"] == "welcome" for client in clients)
        finally:
            for client in clients:
                client.close()
        assert server.listener.refused_by_address == 0


class Peer:
    """A stand-in for a transport: only its `peer` is read."""

    def __init__(self, host):
        self.peer = (host, 1)


def test_ipv6_counts_by_slash_64_and_ipv4_mapped_as_ipv4():
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9") \
        == ("2001:db8:1:2::/64", False)
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == ("192.0.2.7", False)
    assert address_key("not an address") is None
    limits = AddressLimits(concurrent=2, connects=10, window=10.0)
    first, second = Peer("2001:db8::1"), Peer("2001:db8::2")
    assert limits.admit(first, 0.0) is None and limits.admit(second, 0.0) is None
    assert "2 connections" in limits.admit(Peer("2001:db8::3"), 0.0)
    assert limits.admit(Peer("2001:db8:0:1::3"), 0.0) is None  # another /64
    limits.release(first)
    assert limits.admit(Peer("2001:db8::4"), 0.0) is None
    assert limits.admit(Peer("::1"), 0.0) is None  # loopback: exempt


def test_loopback_is_known_from_the_one_parse():
    assert address_key("127.0.0.5") == ("127.0.0.5", True)
    assert address_key("::ffff:127.0.0.1") == ("127.0.0.1", True)
    assert address_key("::1") == ("::/64", True)
    assert address_key("192.0.2.1") == ("192.0.2.1", False)
    limits = AddressLimits(concurrent=1, connects=1, window=10.0)
    assert all(limits.admit(Peer(host), 0.0) is None for host in ("::1", "::1", "127.0.0.1"))
    assert limits.admit(Peer("192.0.2.1"), 0.0) is None
    assert limits.admit(Peer("192.0.2.1"), 0.0) is not None


def test_the_web_listener_counts_against_the_same_address():
    with serve(web=True, limit_loopback=True, address_connections=2) as server, \
            ChatClient(server.address, "tcp", source="127.0.0.2"), \
            ChatClient(server.address, "tcp2", source="127.0.0.2"):
        host, port = server.web_address
        sock = socket.create_connection((host, port), timeout=WAIT,
                                        source_address=("127.0.0.2", 0))
        with connect(f"ws://{host}:{port}/chat", sock=sock, open_timeout=WAIT) as web:
            frames, code, reason = until_close(web)
        assert [(f["type"], f.get("code") or f.get("reason")) for f in frames] == [
            ("error", "server_full"), ("bye", "server_full")]
        assert "2 connections from your address are open already" in frames[0]["message"]
        assert (code, reason) == (1013, "server_full")


def test_silent_web_connections_over_the_address_limit_are_closed_within_a_second():
    # handshake_timeout is far beyond WAIT: only the refusal's own short wait can
    # close these in time; the limit then still holds, since none was admitted.
    with serve(web=True, limit_loopback=True, address_connections=1,
               handshake_timeout=60) as server, \
            ChatClient(server.address, "held", source="127.0.0.2"):
        silent = [socket.create_connection(server.web_address, timeout=WAIT,
                                           source_address=("127.0.0.2", 0))
                  for _ in range(5)]
        for sock in silent:
            with sock:
                assert sock.recv(100) == b""
        wait_until(lambda: len(server.connections.open) == 1, what="the refused closed")
        assert server.web_listener.refused_by_address == 5
        assert server.listener.refused_by_address == 0
        with ChatClient(server.address, "other", source="127.0.0.3") as other:
            assert other.welcome["name"] == "other"
