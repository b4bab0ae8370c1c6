"""chatd/tls.py without sockets: a server pipe and a client pipe talking through their BIOs,
with certificates from trustme."""

import ssl

import pytest
import trustme

from chatd.tls import TLSClosed, TLSPipe, client_context, server_context


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def files(ca, tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("localhost", "127.0.0.1")
    paths = {"cert": directory / "cert.pem", "key": directory / "key.pem",
             "ca": directory / "ca.pem"}
    cert.cert_chain_pems[0].write_to_path(paths["cert"])
    cert.private_key_pem.write_to_path(paths["key"])
    ca.cert_pem.write_to_path(paths["ca"])
    return {name: str(path) for name, path in paths.items()}


def shuttle(a: TLSPipe, b: TLSPipe) -> int:
    """Move what each side owes to the other once; the bytes moved."""
    moved = 0
    for source, sink in ((a, b), (b, a)):
        data = source.take_output()
        if data:
            sink.receive(data)
            moved += len(data)
    return moved


def connected(files, hostname="localhost"):
    server = TLSPipe(server_context(files["cert"], files["key"]), server_side=True)
    client = TLSPipe(client_context(files["ca"]), server_side=False, server_hostname=hostname)
    for _ in range(10):
        client.handshake()
        server.handshake()
        if not shuttle(client, server) and server.established and client.established:
            return server, client
    raise AssertionError("no handshake within 10 exchanges")


def test_handshake_then_plaintext_both_ways(files):
    server, client = connected(files)
    assert server.version in ("TLSv1.2", "TLSv1.3")
    client.encrypt(b"hello server")
    shuttle(client, server)
    assert server.read() == b"hello server"
    server.encrypt(b"hello client")
    shuttle(server, client)
    assert client.read() == b"hello client"


def test_one_write_of_many_frames_arrives_whole_even_fed_byte_by_byte(files):
    server, client = connected(files)
    client.read()  # TLS 1.3 session tickets
    payload = b"".join(bytes([n % 251]) * 1000 for n in range(100))  # 100 KB, several records
    server.encrypt(payload)
    ciphertext = server.take_output()
    assert len(ciphertext) > len(payload)
    got = []
    for offset in range(0, len(ciphertext), 7):
        client.receive(ciphertext[offset:offset + 7])
        got.append(client.read())
    assert b"".join(got) == payload


def test_read_into_fills_a_buffer_and_resumes(files):
    server, client = connected(files)
    client.encrypt(b"x" * 40_000)
    shuttle(client, server)
    buffer = memoryview(bytearray(16_384))
    total = 0
    for _ in range(10):
        count = server.read_into(buffer)
        if not count:
            break
        total += count
    assert total == 40_000


def test_garbage_fails_the_handshake_with_an_ssl_error(files):
    server = TLSPipe(server_context(files["cert"], files["key"]))
    server.receive(b'\x00\x00\x00\x2a{"type": "hello", "name": "plain"}')
    with pytest.raises(ssl.SSLError):
        server.handshake()


def test_a_client_refuses_an_unknown_ca_and_a_wrong_name(files):
    other = trustme.CA()
    server = TLSPipe(server_context(files["cert"], files["key"]))
    context = ssl.create_default_context()
    other.configure_trust(context)
    client = TLSPipe(context, server_side=False, server_hostname="localhost")
    with pytest.raises(ssl.SSLCertVerificationError):
        for _ in range(10):
            client.handshake()
            server.handshake()
            shuttle(client, server)
    with pytest.raises(ssl.SSLCertVerificationError):
        connected(files, hostname="chat.example.org")


def test_close_notify_ends_the_stream_cleanly(files):
    server, client = connected(files)
    client.read()
    server.encrypt(b"bye")
    server.close_notify()
    server.close_notify()  # once only
    shuttle(server, client)
    assert client.read_into(memoryview(bytearray(100))) == 3
    assert client.peer_closed
    with pytest.raises(TLSClosed):
        client.read_into(memoryview(bytearray(100)))


def test_tls_below_1_2_is_refused(files):
    server = TLSPipe(server_context(files["cert"], files["key"]))
    context = client_context(files["ca"])
    try:
        with pytest.warns(DeprecationWarning):
            context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
        client = TLSPipe(context, server_side=False, server_hostname="localhost")
        client.handshake()
    except ssl.SSLError:
        return  # this OpenSSL will not even offer TLS 1.1
    with pytest.raises(ssl.SSLError):
        for _ in range(10):
            shuttle(client, server)
            server.handshake()
            client.handshake()


def test_bad_files_raise_os_errors(files, tmp_path):
    with pytest.raises(OSError):
        server_context(str(tmp_path / "missing.pem"), files["key"])
    broken = tmp_path / "broken.pem"
    broken.write_text("not a certificate\n")
    with pytest.raises(ssl.SSLError):
        server_context(str(broken), files["key"])
