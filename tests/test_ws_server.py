"""chat/1 over WebSocket, through real sockets: a `websockets` client against the
web listener, beside chat/1 TCP clients on the same server."""

import http.client
import json
import socket
from contextlib import contextmanager

import pytest

import framing
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from wsproto.frame_protocol import FrameProtocol

from chatd.ws_service import host_names_server
from support import WAIT, ChatClient, TLSFiles, assert_cut_too_slow, serve, wait_until


@contextmanager
def ws_connect(server, name=None, origin=None, **options):
    """A websockets client on `server`'s /chat (hello'd as `name` if given)."""
    host, port = server.web_address
    with connect(f"ws://{host}:{port}/chat", origin=origin, open_timeout=WAIT,
                 **options) as ws:
        if name is not None:
            ws.send(json.dumps({"type": "hello", "name": name}))
            assert receive(ws)["type"] == "welcome"
        yield ws


def receive(ws, kind=None):
    """The next frame (of type `kind` if given), decoded; fails after WAIT."""
    while True:
        frame = json.loads(ws.recv(timeout=WAIT))
        if kind is None or frame["type"] == kind:
            return frame


def until_close(ws) -> tuple[list, int, str]:
    """Every frame left, then the server's Close code and reason."""
    frames = []
    try:
        while True:
            frames.append(json.loads(ws.recv(timeout=WAIT)))
    except ConnectionClosed as closed:
        return frames, closed.rcvd.code, closed.rcvd.reason


def test_a_websocket_user_and_a_tcp_user_share_rooms_ids_and_private_messages():
    with serve(web=True) as server, ws_connect(server, "webby") as web, \
            ChatClient(server.address, "tcpy") as tcp:
        assert receive(web) == {"type": "joined", "room": "lobby", "name": "tcpy"}
        tcp.send({"type": "say", "text": "from tcp"})
        web.send(json.dumps({"type": "say", "text": "from the web"}))
        heard_by_web = [receive(web, "msg"), receive(web, "msg")]
        heard_by_tcp = [tcp.next_of("msg"), tcp.next_of("msg")]
        assert heard_by_web == heard_by_tcp
        assert [(m["from"], m["id"]) for m in heard_by_web] == [("tcpy", 1), ("webby", 2)]
        web.send(json.dumps({"type": "dm", "to": "tcpy", "text": "psst", "ref": 7}))
        private = tcp.next_of("msg")
        assert (private["from"], private["to"], private["text"]) == ("webby", "tcpy", "psst")
        assert receive(web, "msg")["ref"] == 7
        tcp.send({"type": "dm", "to": "webby", "text": "back"})
        assert receive(web, "msg")["text"] == "back"
        web.send(json.dumps({"type": "quit"}))
        assert until_close(web) == ([{"type": "bye", "reason": "quit"}], 1000, "quit")
        assert tcp.next_of("left")["name"] == "webby"


def test_messages_fragmented_across_websocket_frames_and_tcp_reads():
    with serve(web=True) as server, ws_connect(server, "frag") as web:
        # One message in three WebSocket frames (a fragmented message).
        web.send(['{"type":"say",', '"text":"in three', ' frames"}'])
        assert receive(web, "msg")["text"] == "in three frames"
        # Two messages, one fragmented, sent a few bytes per TCP segment.
        encoder = FrameProtocol(client=True, extensions=[])
        wire = (bytes(encoder.send_data('{"type":"say","te', fin=False))
                + bytes(encoder.send_data('xt":"split"}', fin=True))
                + bytes(encoder.send_data('{"type":"say","text":"whole"}')))
        for start in range(0, len(wire), 5):
            web.socket.sendall(wire[start:start + 5])
        assert [receive(web, "msg")["text"] for _ in range(2)] == ["split", "whole"]


def padded_say(size: int) -> str:
    """A `say` whose JSON is exactly `size` bytes (an unknown member pads it)."""
    head = '{"type":"say","text":"big","pad":"'
    return head + "x" * (size - len(head) - 2) + '"}'


def test_a_message_of_max_frame_bytes_passes_and_one_more_byte_is_frame_too_large():
    with serve(web=True) as server, ws_connect(server, "big") as web:
        assert len(padded_say(65_536)) == 65_536
        web.send(padded_say(65_536))
        assert receive(web, "msg")["text"] == "big"
        web.send(padded_say(65_537))
        frames, code, reason = until_close(web)
        assert [(f["type"], f.get("code") or f.get("reason")) for f in frames] == [
            ("error", "frame_too_large"), ("bye", "frame_too_large")]
        assert (code, reason) == (1009, "frame_too_large")


def test_a_binary_message_is_refused_with_1003():
    with serve(web=True) as server, ws_connect(server, "bin") as web:
        web.send(b'{"type":"say","text":"bytes"}')
        frames, code, reason = until_close(web)
        assert [(f["type"], f.get("code") or f.get("reason")) for f in frames] == [
            ("error", "bad_frame"), ("bye", "bad_frame")]
        assert (code, reason) == (1003, "bad_frame")


def test_origins_own_page_and_listed_ones_are_let_in_others_refused_403():
    with serve(web=True) as server:
        host, port = server.web_address
        with ws_connect(server, "own", origin=f"http://{host}:{port}"):
            pass
        with pytest.raises(InvalidStatus) as refused, \
                ws_connect(server, origin="http://evil.example"):
            pass
        assert refused.value.response.status_code == 403
    with serve(web=True, ws_origins="https://chat.example.org") as server:
        with ws_connect(server, "listed", origin="https://chat.example.org"):
            pass
        host, port = server.web_address
        with pytest.raises(InvalidStatus) as refused, \
                ws_connect(server, origin=f"http://{host}:{port}"):
            pass
        assert refused.value.response.status_code == 403


@pytest.mark.parametrize("reason, code", [
    ("abuse", 1008), ("timeout", 1008), ("shutdown", 1001), ("server_full", 1013),
    ("replaced", 1000)])
def test_bye_is_followed_by_a_close_code_that_fits_its_reason(reason, code):
    settings = {"abuse": dict(max_bad_messages=2), "timeout": dict(handshake_timeout=0.3),
                "server_full": dict(max_clients=1)}.get(reason, {})
    with serve(web=True, **settings) as server, ChatClient(server.address) as other:
        if reason == "server_full":
            other.hello("first")
        with ws_connect(server) as web:
            if reason in ("abuse", "shutdown", "replaced"):
                web.send(json.dumps({"type": "hello", "name": "user"}))
                token = receive(web, "welcome")["token"]
            if reason == "abuse":
                web.send("not json")
                web.send("[]")
            elif reason == "shutdown":
                server.request_shutdown()
            elif reason == "replaced":
                other.hello("user", token=token)
            frames, got_code, got_reason = until_close(web)
            assert frames[-1] == {"type": "bye", "reason": reason}
            assert (got_code, got_reason) == (code, reason)


def test_ping_frames_are_answered_with_pong():
    with serve(web=True) as server, ws_connect(server, "pinger") as web:
        assert web.ping(b"are you there").wait(WAIT)


def test_a_websocket_reader_that_never_reads_is_cut_too_slow_and_the_others_go_on():
    with serve(web=True, output_hard_limit=64 << 10) as server, \
            ChatClient(server.address, "alice") as alice:
        sock = socket.socket()
        # Set before connecting, so the window stays small (see test_server_limits).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 128 << 10)
        sock.connect(server.web_address)
        # max_queue=1: websockets stops reading the socket while a message waits.
        with ws_connect(server, "slow", sock=sock, max_queue=1) as slow:
            alice.next_of("joined")
            burst = framing.encode({"type": "say", "text": "x" * 4000}) * 8
            sent = 0
            while not server.disconnects["too_slow"] and sent < 2000:
                alice.send_raw(burst)
                sent += 8
                for _ in range(8):
                    alice.next_of("msg")
            assert server.disconnects["too_slow"] == 1
            frames, code, reason = until_close(slow)
        assert_cut_too_slow(frames)
        assert (code, reason) == (1008, "too_slow")
        alice.send({"type": "say", "text": "after"})
        assert alice.next_of("msg")["text"] == "after"


def http_get(server, path, method="GET", headers=None):
    """One HTTP request to `server`'s web port: the response and its body."""
    connection = http.client.HTTPConnection(*server.web_address, timeout=WAIT)
    connection.request(method, path, headers=headers or {})
    answer = connection.getresponse()
    body = answer.read()
    connection.close()
    return answer, body


def test_static_files_with_their_types_caching_and_csp_and_404_otherwise():
    with serve(web=True) as server:
        def get(path, method="GET", headers=None):
            return http_get(server, path, method, headers)

        page, body = get("/")
        assert page.status == 200 and b'<script type="module" src="client.js"' in body
        assert page.getheader("Content-Type") == "text/html; charset=utf-8"
        assert page.getheader("Cache-Control") == "no-cache"
        csp = page.getheader("Content-Security-Policy")
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp
        for module in ("client", "state", "conversations", "connection", "commands"):
            script, _ = get(f"/{module}.js")
            assert script.getheader("Content-Type") == "text/javascript; charset=utf-8"
        assert get("/style.css")[0].getheader("Content-Type") == "text/css; charset=utf-8"
        again, body = get("/", headers={"If-None-Match": page.getheader("ETag")})
        assert again.status == 304 and body == b""
        missing, _ = get("/etc/passwd")
        assert missing.status == 404 and missing.getheader("Content-Security-Policy")
        assert get("/", method="POST")[0].status == 405
        assert get("/", headers={"X-Big": "y" * 9000})[0].status == 431
        # A plain GET of /chat is not an upgrade.
        assert get("/chat")[0].status in (400, 426)


def test_an_incomplete_request_is_closed_at_the_handshake_timeout():
    with serve(web=True, handshake_timeout=0.3) as server, \
            socket.create_connection(server.web_address, timeout=WAIT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert sock.recv(100) == b""


def test_websocket_and_page_over_tls_on_the_same_port(tmp_path):
    files = TLSFiles(tmp_path)
    with serve(web=True, **files.settings()) as server:
        host, port = server.web_address
        with connect(f"wss://localhost:{port}/chat", ssl=files.client(),
                     origin=f"https://localhost:{port}", open_timeout=WAIT) as web:
            web.send(json.dumps({"type": "hello", "name": "secure"}))
            assert receive(web)["name"] == "secure"
        connection = http.client.HTTPSConnection("localhost", port, timeout=WAIT,
                                                 context=files.client())
        connection.request("GET", "/")
        assert connection.getresponse().status == 200
        connection.close()
        with pytest.raises(InvalidStatus), \
                connect(f"wss://localhost:{port}/chat", ssl=files.client(),
                        origin=f"http://localhost:{port}", open_timeout=WAIT):
            pass  # plain http's origin is not the page's


@pytest.mark.parametrize("wire, code", [
    (b"\x81\x02{}", 1002),                          # a client frame without a mask
    # Text that is not UTF-8, masked with a zero key (so the payload reads as sent).
    (b"\x81\x82\x00\x00\x00\x00\xff\xfe", 1007),
])
def test_a_frame_websocket_refuses_is_bad_frame_then_closed_with_its_code(wire, code):
    with serve(web=True) as server, ws_connect(server, "raw") as web:
        web.socket.sendall(wire)
        frames, got_code, reason = until_close(web)
        assert [(f["type"], f.get("code") or f.get("reason")) for f in frames] == [
            ("error", "bad_frame"), ("bye", "bad_frame")]
        assert (got_code, reason) == (code, "bad_frame")


def test_a_close_from_the_client_is_a_disconnect_answered_with_its_code():
    with serve(web=True) as server, ChatClient(server.address, "tcpy") as tcp:
        with ws_connect(server, "leaving") as web:
            assert tcp.next_of("joined")["name"] == "leaving"
            web.close(code=1001, reason="tab closed")
            assert web.close_code == 1001  # the server echoed it
        left = tcp.next_of("left")
        assert (left["name"], left["reason"]) == ("leaving", "disconnect")


def test_if_none_match_is_a_list_of_tags_or_star():
    with serve(web=True) as server:
        etag = http_get(server, "/")[0].getheader("ETag")
        for header, status in [("*", 304), (f'"other", W/{etag}', 304),
                               (f'"a,b", {etag}', 304), ('"other"', 200),
                               (f'"{etag}"', 200), ("", 200)]:
            answer, body = http_get(server, "/", headers={"If-None-Match": header})
            assert answer.status == status, header
            assert (body == b"") == (status == 304)


def test_over_capacity_every_request_but_the_upgrade_is_503():
    with serve(web=True, max_clients=1) as server, ChatClient(server.address, "first"):
        for path, method in [("/", "GET"), ("/nowhere", "GET"), ("/", "POST")]:
            answer, _ = http_get(server, path, method)
            assert answer.status == 503, (path, method)
            assert answer.getheader("Content-Security-Policy")


def test_a_silent_connection_refused_over_capacity_is_closed_within_a_second():
    # handshake_timeout is far beyond WAIT: only the refusal's own short wait
    # can close these in time.
    with serve(web=True, max_clients=1, handshake_timeout=60) as server, \
            ChatClient(server.address, "first"):
        silent = [socket.create_connection(server.web_address, timeout=WAIT)
                  for _ in range(5)]
        for sock in silent:
            with sock:
                assert sock.recv(100) == b""
        wait_until(lambda: len(server.connections.open) == 1, what="the refused closed")


def test_the_default_origin_policy_wants_a_host_naming_this_server():
    with serve(web=True) as server:
        host, port = server.web_address

        def upgrade(name):
            """A WebSocket from the page at http://NAME:PORT/ (Host and Origin alike),
            over a socket to the server's address whatever NAME resolves to."""
            sock = socket.create_connection((host, port), timeout=WAIT)
            return connect(f"ws://{name}:{port}/chat", sock=sock,
                           origin=f"http://{name}:{port}", open_timeout=WAIT)

        # DNS rebinding: a hostile name resolved to this server.
        with pytest.raises(InvalidStatus) as refused, upgrade("evil.example"):
            pass
        assert refused.value.response.status_code == 403
        for name in ("localhost", "127.0.0.1", "127.0.0.2"):
            with upgrade(name) as web:
                web.send(json.dumps({"type": "ping", "data": name}))
                assert receive(web, "pong")["data"] == name
        wait_until(lambda: server.core.user_count == 0 and
                   len(server.connections.open) == 0, what="the upgrades closed")


def test_host_names_server_by_localhost_or_the_address_reached():
    assert host_names_server("localhost:8080", "192.0.2.1")
    assert host_names_server("192.0.2.1:8080", "192.0.2.1")
    assert host_names_server("192.0.2.1", "::ffff:192.0.2.1")  # a dual-stack socket
    assert host_names_server("[::1]:8080", "127.0.0.1")  # loopback for loopback
    assert host_names_server("[2001:db8::1]:80", "2001:db8::1")
    assert not host_names_server("192.0.2.2:8080", "192.0.2.1")
    assert not host_names_server("127.0.0.1:8080", "192.0.2.1")
    assert not host_names_server("chat.example.org", "192.0.2.1")
    assert not host_names_server("localhost.evil.example:80", "127.0.0.1")
    assert not host_names_server("[::1", "")
