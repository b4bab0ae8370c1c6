"""chat/1 inside TLS, through real sockets on 127.0.0.1 and trustme certificates:
an in-process chatd serving the plaintext port and a TLS port side by side."""

import os
import signal
import socket
import ssl

import pytest

import framing
from chatd.tls import TLSClosed, TLSPipe
from support import WAIT, ChatClient, TLSFiles, assert_cut_too_slow, serve, wait_until
from test_server_limits import push_until
from test_systemd import activated


@pytest.fixture
def files(tmp_path):
    return TLSFiles(tmp_path)


def tls_client(server, files, name=None, tls_context=None, **options) -> ChatClient:
    return ChatClient(server.tls_address, name, tls=tls_context or files.client(), **options)


def test_hello_say_and_dm_over_tls(files):
    with serve(**files.settings()) as server, tls_client(server, files, "ann") as ann, \
            tls_client(server, files, "bob") as bob:
        assert ann.sock.version() in ("TLSv1.2", "TLSv1.3")
        ann.next_of("joined")
        ann.send({"type": "say", "text": "hello over tls"})
        assert bob.next_of("msg")["text"] == "hello over tls"
        assert ann.next_of("msg")["text"] == "hello over tls"
        bob.send({"type": "dm", "to": "ann", "text": "psst"})
        assert ann.next_of("msg")["text"] == "psst"


def test_a_tls_client_and_a_plaintext_client_share_a_room(files):
    with serve(**files.settings()) as server, tls_client(server, files, "secure") as secure, \
            ChatClient(server.address, "plain") as plain:
        secure.next_of("joined")
        plain.send({"type": "say", "text": "from plaintext"})
        assert secure.next_of("msg")["text"] == "from plaintext"
        secure.send({"type": "say", "text": "from tls"})
        assert plain.next(lambda m: m["type"] == "msg" and m["from"] == "secure")["text"] \
            == "from tls"
        plain.send({"type": "who"})
        assert sorted(plain.next_of("users")["names"]) == ["plain", "secure"]


def test_frames_split_byte_by_byte_inside_tls_and_many_in_one_record(files):
    with serve(**files.settings()) as server, tls_client(server, files, "ann") as ann:
        data = framing.encode({"type": "say", "text": "split"})
        for index in range(len(data)):  # one TLS record per byte
            ann.send_raw(data[index:index + 1])
        assert ann.next_of("msg")["text"] == "split"
        ann.send_raw(b"".join(framing.encode({"type": "say", "text": f"n{n}"})
                              for n in range(50)))  # 50 frames in one record
        texts = [ann.next_of("msg")["text"] for _ in range(50)]
        assert texts == [f"n{n}" for n in range(50)]


def test_a_frame_of_64_kib_over_tls(files):
    with serve(**files.settings()) as server, tls_client(server, files, "ann") as ann, \
            tls_client(server, files, "bob") as bob:
        ann.next_of("joined")
        ann.send({"type": "say", "text": "y" * 4000})
        assert bob.next_of("msg")["text"] == "y" * 4000
        # A history answer near max_frame: many messages paged into big frames.
        for _ in range(20):
            ann.send_raw(framing.encode({"type": "say", "text": "z" * 4000}) * 8)
        for _ in range(160):
            bob.next_of("msg")
        bob.send({"type": "history", "room": "lobby", "limit": 200})
        history = bob.next_of("history")
        assert len(history["messages"]) > 10
        assert len(framing.encode(history)) > 60_000  # a page near max_frame (64 KiB)


def test_plaintext_or_garbage_on_the_tls_port_is_closed_and_counted(files):
    with serve(**files.settings()) as server, tls_client(server, files, "ann") as ann:
        with socket.create_connection(server.tls_address, timeout=WAIT) as plain:
            plain.sendall(framing.encode({"type": "hello", "name": "plain"}))
            assert recv_to_end(plain) is not None  # closed, maybe after an alert
        with socket.create_connection(server.tls_address, timeout=WAIT) as garbage:
            garbage.sendall(b"\x16\x03\x01\x00\x05hello" + bytes(range(256)))
            recv_to_end(garbage)
        wait_until(lambda: server.disconnects["tls_error"] == 2, what="two tls_error")
        ann.send({"type": "ping"})
        assert ann.next_of("pong")


def test_a_tls_client_on_the_plaintext_port_fails_without_hurting_anyone(files):
    with serve(**files.settings()) as server, ChatClient(server.address, "ann") as ann:
        with socket.create_connection(server.address, timeout=WAIT) as sock, \
                pytest.raises((ssl.SSLError, OSError)):
            files.client().wrap_socket(sock, server_hostname="localhost")
        # A ClientHello read as chat/1: a length header far over max_frame.
        wait_until(lambda: server.disconnects["frame_too_large"] == 1,
                   what="frame_too_large")
        ann.send({"type": "ping"})
        assert ann.next_of("pong")


def test_a_peer_that_drops_or_stalls_mid_handshake_is_closed_and_counted(files):
    with serve(handshake_timeout=0.3, **files.settings()) as server, \
            tls_client(server, files, "ann") as ann:
        hello = client_hello()
        with socket.create_connection(server.tls_address, timeout=WAIT) as dropper:
            dropper.sendall(hello)
            dropper.recv(1)  # the server's answer has begun: now hang up
        wait_until(lambda: server.disconnects["tls_dropped"] == 1, what="tls_dropped")
        with socket.create_connection(server.tls_address, timeout=WAIT) as slowloris:
            slowloris.sendall(hello[:10])  # then nothing: the handshake timeout closes it
            assert recv_to_end(slowloris) == b""
        wait_until(lambda: server.disconnects["timeout"] == 1, what="timeout")
        ann.send({"type": "ping"})
        assert ann.next_of("pong")


def test_an_abrupt_reset_after_the_handshake_is_a_reset(files):
    with serve(**files.settings()) as server, tls_client(server, files, "ann") as ann:
        victim = tls_client(server, files, "victim")
        ann.next_of("joined")
        victim.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00"
                               b"\x00\x00\x00\x00")
        victim.sock.close()
        assert ann.next_of("left")["name"] == "victim"
        assert server.disconnects["reset"] == 1
        assert server.disconnects["disconnect"] == 0


def test_end_of_input_without_close_notify_is_an_ordinary_disconnect(files):
    with serve(**files.settings()) as server:
        pipe, sock = raw_tls(server, files)
        send_plain(pipe, sock, framing.encode({"type": "hello", "name": "raw"}))
        assert any(frame["type"] == "welcome" for frame in read_frames(pipe, sock, "welcome"))
        sock.shutdown(socket.SHUT_WR)  # a TCP FIN, no close_notify
        wait_until(lambda: server.disconnects["disconnect"] == 1, what="disconnect")
        sock.close()


def test_bye_is_followed_by_close_notify(files):
    with serve(**files.settings()) as server:
        pipe, sock = raw_tls(server, files)
        send_plain(pipe, sock, framing.encode({"type": "hello", "name": "raw"}))
        send_plain(pipe, sock, framing.encode({"type": "quit"}))
        frames = read_frames(pipe, sock, "bye")
        assert frames[-1]["type"] == "bye"
        assert pipe.peer_closed, "no close_notify after bye"
        sock.close()


def test_a_slow_tls_reader_is_cut_too_slow_and_the_others_go_on(files):
    # The limits count plaintext waiting to be encrypted plus ciphertext
    # waiting to be sent (chatd/transport.py, TLSTransport).
    with serve(output_hard_limit=64 << 10, **files.settings()) as server, \
            ChatClient(server.address, "alice") as alice, \
            tls_client(server, files, "bob") as bob:
        slow = tls_client(server, files, "slow", receive_buffer=128 << 10)
        alice.next_of("joined"), bob.next_of("joined")
        push_until(server, alice, [bob], lambda: server.disconnects["too_slow"])
        wait_until(lambda: server.disconnects["too_slow"], what="too_slow")
        frames = slow.frames_until_close(timeout=10)
        slow.close()
        assert_cut_too_slow(frames)
        alice.send({"type": "say", "text": "after"})
        assert bob.next_of("msg")["text"] == "after"


def test_reload_gives_new_connections_a_new_certificate_and_keeps_a_broken_one_out(
        files, tmp_path, caplog):
    with serve(**files.settings()) as server, tls_client(server, files, "early") as early:
        first = early.sock.getpeercert()["serialNumber"]
        renewed = TLSFiles(tmp_path / "..", ca=files.ca, name="renewed")
        with open(renewed.cert, "rb") as cert, open(renewed.key, "rb") as key:
            new_cert, new_key = cert.read(), key.read()
        with open(files.cert, "wb") as cert, open(files.key, "wb") as key:
            cert.write(new_cert), key.write(new_key)  # as certbot renews: same paths
        assert reload_on_loop(server) is True
        with tls_client(server, files, "late") as late:
            second = late.sock.getpeercert()["serialNumber"]
        assert second != first
        early.send({"type": "ping"})  # the old connection goes on
        assert early.next_of("pong")
        with open(files.cert, "w") as cert:
            cert.write("not a certificate\n")
        assert reload_on_loop(server) is False
        assert any("TLS reload failed" in record.getMessage() for record in caplog.records)
        with tls_client(server, files, "later") as later:
            assert later.sock.getpeercert()["serialNumber"] == second


def test_sighup_reloads_the_certificate_of_a_running_chatd(files, tmp_path):
    server, ports = activated("--tls-cert", files.cert, "--tls-key", files.key,
                              env={"ACTIVATE_NAMES": "chat:tls"})
    address = ("127.0.0.1", ports["tls"])
    with server, ChatClient(address, "early", tls=files.client()) as early:
        first = early.sock.getpeercert()["serialNumber"]
        renewed = TLSFiles(tmp_path / "..", ca=files.ca, name="sighup")
        os.replace(renewed.cert, files.cert)
        os.replace(renewed.key, files.key)
        server.process.send_signal(signal.SIGHUP)
        server.wait_for_log(r"TLS certificate reloaded from ")
        with ChatClient(address, "late", tls=files.client()) as late:
            second = late.sock.getpeercert()["serialNumber"]
        assert second != first
        early.send({"type": "ping"})
        assert early.next_of("pong")
        with open(files.key, "w") as key:
            key.write("not a key\n")
        server.process.send_signal(signal.SIGHUP)
        server.wait_for_log(r"TLS reload failed, new connections keep the certificate")
        with ChatClient(address, "later", tls=files.client()) as later:
            assert later.sock.getpeercert()["serialNumber"] == second
        assert server.stop() == 0


def test_handshakes_beyond_the_turns_budget_wait_for_a_later_turn(files):
    import threading
    with serve(**files.settings()) as server:
        server.connections.handshakes_per_turn = 2
        socks = [socket.create_connection(server.tls_address, timeout=WAIT) for _ in range(8)]
        wait_until(lambda: len(server.connections.open) == 8, what="8 accepted")
        # Hold the loop so that all 8 ClientHellos are there for one turn.
        held, release = threading.Event(), threading.Event()
        server.loop.call_soon_threadsafe(lambda: (held.set(), release.wait(WAIT)))
        assert held.wait(WAIT)
        pipes = []
        for sock in socks:
            pipe = TLSPipe(files.client(), server_side=False, server_hostname="localhost")
            pipe.handshake()
            sock.sendall(pipe.take_output())
            pipes.append(pipe)
        release.set()
        for pipe, sock in zip(pipes, socks):
            for _ in range(20):
                if pipe.handshake():
                    break
                if pipe.pending:
                    sock.sendall(pipe.take_output())
                pipe.receive(sock.recv(65536))
            if pipe.pending:
                sock.sendall(pipe.take_output())
            send_plain(pipe, sock, framing.encode({"type": "ping", "ref": 1}))
            frames = read_frames(pipe, sock, "pong")  # chat/1 before hello: a pong
            assert frames[-1] == {"type": "pong", "ref": 1}
        assert server.connections.handshakes_deferred >= 6  # 8 at once, 2 a turn
        for sock in socks:
            sock.close()


def test_a_close_before_the_handshake_ends_sends_no_bye(files):
    # server_full comes at the accept, before any TLS byte: there is no
    # channel for a bye yet, so nothing at all is sent (no plaintext bye).
    with serve(max_clients=1, **files.settings()) as server, \
            tls_client(server, files, "ann") as ann:
        with socket.create_connection(server.tls_address, timeout=WAIT) as late:
            assert recv_to_end(late) == b""
        wait_until(lambda: server.disconnects["server_full"] == 1, what="server_full")
        ann.send({"type": "ping"})
        assert ann.next_of("pong")


def test_client_certificates_from_the_client_ca_or_none_are_accepted_others_refused(
        files, tmp_path):
    import trustme
    with serve(tls_client_ca=files.ca_file, **files.settings()) as server:
        with_cert = files.client()
        files.ca.issue_cert("ann@clients.example").configure_cert(with_cert)
        with tls_client(server, files, "ann", tls_context=with_cert) as ann:
            assert ann.welcome["name"] == "ann"
        with tls_client(server, files, "bob") as bob:  # no certificate: optional
            assert bob.welcome["name"] == "bob"
        stranger = files.client()
        trustme.CA().issue_cert("eve@elsewhere.example").configure_cert(stranger)
        with socket.create_connection(server.tls_address, timeout=WAIT) as raw, \
                stranger.wrap_socket(raw, server_hostname="localhost") as eve, \
                pytest.raises((ssl.SSLError, OSError)):
            # TLS 1.3: the client's side completes first; the refusal (an
            # alert, then the close) comes with the server's next read.
            eve.sendall(framing.encode({"type": "hello", "name": "eve"}))
            assert eve.recv(65536) == b""
            raise AssertionError("a certificate from another CA was let in")
        wait_until(lambda: server.disconnects["tls_error"] == 1, what="tls_error")


def test_tls_settings_are_checked(files):
    from chatd.config import Config, ConfigError
    with pytest.raises(ConfigError, match="tls_port needs tls_cert and tls_key"):
        Config(tls_port=7879)
    with pytest.raises(ConfigError, match="tls_port must be between"):
        Config(tls_port=70000, tls_cert=files.cert, tls_key=files.key)
    with pytest.raises(ConfigError, match="no_plaintext needs TLS"):
        Config(no_plaintext=True, tls_cert=files.cert, tls_key=files.key)


def test_only_loopback_addresses_count_as_private_to_this_machine():
    # A plaintext listener on any other address, with TLS on, is warned about.
    from chatd.app import _loopback
    assert all(map(_loopback, ("127.0.0.1", "127.0.0.2", "::1", "localhost")))
    assert not any(map(_loopback, ("0.0.0.0", "::", "192.0.2.2", "chat.example.org")))


# ---------------------------------------------------------------- helpers


def reload_on_loop(server):
    """Server.reload_tls run on the server's loop thread; its answer."""
    answers = []
    server.loop.call_soon_threadsafe(lambda: answers.append(server.reload_tls()))
    wait_until(lambda: answers, what="the reload")
    return answers[0]


def recv_to_end(sock) -> bytes:
    """Everything until the server closes (a reset counts as the end)."""
    data = b""
    for _ in range(1000):
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    raise AssertionError("the server never closed")


def client_hello() -> bytes:
    """A real TLS ClientHello's bytes, made by a client pipe."""
    pipe = TLSPipe(ssl.create_default_context(), server_side=False,
                   server_hostname="localhost")
    pipe.handshake()
    return pipe.take_output()


def raw_tls(server, files):
    """A blocking socket and a client TLSPipe over it, handshake done."""
    sock = socket.create_connection(server.tls_address, timeout=WAIT)
    pipe = TLSPipe(files.client(), server_side=False, server_hostname="localhost")
    for _ in range(20):
        done = pipe.handshake()
        if pipe.pending:
            sock.sendall(pipe.take_output())
        if done:
            return pipe, sock
        pipe.receive(sock.recv(65536))
    raise AssertionError("no handshake")


def send_plain(pipe, sock, data: bytes) -> None:
    pipe.encrypt(data)
    sock.sendall(pipe.take_output())


def read_frames(pipe, sock, until: str) -> list:
    """Frames read through `pipe` until one of type `until`, then up to the close."""
    decoder = framing.Decoder(schema=framing.EVENTS)
    frames = []
    for _ in range(1000):
        data = sock.recv(65536)
        if not data:
            return frames
        pipe.receive(data)
        try:
            frames += decoder.feed(pipe.read())
        except TLSClosed:
            return frames
        if any(frame["type"] == until for frame in frames) and until != "bye":
            return frames
    raise AssertionError("no end")
