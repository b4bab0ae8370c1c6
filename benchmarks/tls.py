"""What TLS costs chatd: server CPU per delivery over TLS and over plaintext (fan-out),
and server handshakes per second of one core.

    python -m benchmarks.tls [--receivers 100] [--messages 2000]

Fan-out: one chatd (memory store, rate limit off) serving both ports; R
receivers and one sender in the lobby, all over plaintext, then all over
TLS; the sender keeps --window (8) says in flight and the run ends when every receiver
has every message.  The figure is chatd's own CPU time (from /proc) over the
deliveries, so the generator's pace does not matter.  Handshakes: a server
TLSPipe against a client TLSPipe in memory, the server's side timed alone
(thread CPU time), with an ECDSA P-256 certificate from trustme.
"""

import argparse
import os
import re
import selectors
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import framing
from chatd.tls import TLSPipe, client_context, server_context

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def certificate(directory: str):
    import trustme
    ca = trustme.CA()
    issued = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, ca_file = (os.path.join(directory, name) for name in
                          ("cert.pem", "key.pem", "ca.pem"))
    with open(cert, "wb") as chain:
        for blob in issued.cert_chain_pems:
            chain.write(blob.bytes())
    issued.private_key_pem.write_to_path(key)
    ca.cert_pem.write_to_path(ca_file)
    return cert, key, ca_file


def handshakes_per_second(cert: str, key: str, ca_file: str, count: int = 300) -> float:
    server_ctx, client_ctx = server_context(cert, key), client_context(ca_file)
    spent = 0.0
    for _ in range(count):
        server = TLSPipe(server_ctx)
        client = TLSPipe(client_ctx, server_side=False, server_hostname="localhost")
        for _ in range(10):
            client.handshake()
            data = client.take_output()
            if data:
                server.receive(data)
            began = time.thread_time()
            server.handshake()
            spent += time.thread_time() - began
            data = server.take_output()
            if data:
                client.receive(data)
            if server.established and client.established and not data:
                break
    return count / spent


class Peer:
    def __init__(self, address, name, context):
        sock = socket.create_connection(address, timeout=10)
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname="localhost")
        sock.sendall(framing.encode({"type": "hello", "name": name}))
        self.sock, self.decoder, self.msgs = sock, framing.Decoder(schema=framing.EVENTS), 0
        self.welcomed = False
        while not self.welcomed:
            self.read()
        sock.setblocking(False)

    def read(self) -> None:
        try:
            data = self.sock.recv(1 << 16)
            while data and isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
                data += self.sock.recv(1 << 16)
        except (BlockingIOError, ssl.SSLWantReadError):
            return
        if not data:
            raise EOFError("chatd closed a connection")
        for item in self.decoder.feed(data):
            kind = item["type"]
            if kind == "msg":
                self.msgs += 1
            elif kind == "welcome":
                self.welcomed = True


def fanout(address, context, receivers: int, messages: int, pid: int, tag: str,
           window: int) -> float:
    """Server CPU microseconds per delivery."""
    peers = [Peer(address, f"{tag}r{n}", context) for n in range(receivers)]
    sender = Peer(address, f"{tag}s", context)
    selector = selectors.DefaultSelector()
    for peer in (*peers, sender):
        selector.register(peer.sock, selectors.EVENT_READ, peer)
    say = framing.encode({"type": "say", "text": "x" * 64})
    began, sent = cpu_seconds(pid), 0
    deadline = time.monotonic() + 300
    while min(peer.msgs for peer in peers) < messages:
        assert time.monotonic() < deadline, "fan-out did not finish"
        while sent < messages and sent - sender.msgs < window:
            sender.sock.setblocking(True)
            sender.sock.sendall(say)
            sender.sock.setblocking(False)
            sent += 1
        for key, _ in selector.select(1):
            key.data.read()
    spent = cpu_seconds(pid) - began
    for peer in (*peers, sender):
        peer.sock.close()
    return spent / (messages * receivers) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.tls", description=__doc__.split("\n")[0])
    parser.add_argument("--receivers", type=int, default=100)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--window", type=int, default=8,
                        help="says in flight (unechoed); more lets chatd batch more a turn")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chatd-tls-bench-") as directory:
        cert, key, ca_file = certificate(directory)
        rate = handshakes_per_second(cert, key, ca_file)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        tls_port = probe.getsockname()[1]
        probe.close()
        log_path = os.path.join(directory, "chatd.log")
        with open(log_path, "w") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "chatd", "--host", "127.0.0.1", "--port", "0",
                 "--tls-port", str(tls_port), "--tls-cert", cert, "--tls-key", key,
                 "--store", "memory", "--rate-limit", "0", "--log-level", "info",
                 "--presence-limit", "0"], stderr=log)
        try:
            plain_port, deadline = None, time.monotonic() + 15
            while plain_port is None:
                assert time.monotonic() < deadline and server.poll() is None, "chatd did not start"
                with open(log_path) as log:
                    found = re.search(r"listening on \S+:(\d+)", log.read())
                plain_port = int(found.group(1)) if found else None
                time.sleep(0.05)
            context = client_context(ca_file)
            plain = fanout(("127.0.0.1", plain_port), None, arguments.receivers,
                           arguments.messages, server.pid, "p", arguments.window)
            secure = fanout(("127.0.0.1", tls_port), context, arguments.receivers,
                            arguments.messages, server.pid, "t", arguments.window)
        finally:
            server.terminate()
            server.wait(10)
    print(f"fan-out, R={arguments.receivers}, W={arguments.window}, {arguments.messages} "
          f"messages of 64 B: chatd CPU "
          f"{plain:.3f} us/delivery plaintext, {secure:.3f} us/delivery TLS "
          f"(TLS/plaintext throughput ratio "
          f"{f'{plain / secure:.2f}x' if secure else 'n/a: too short to time'})")
    print(f"TLS handshakes, server side, one core: {rate:,.0f}/s "
          f"({ssl.OPENSSL_VERSION}, ECDSA P-256)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
