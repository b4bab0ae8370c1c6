"""TLS for the load benchmark: the targets' certificate, the generator's client
context, and what a handshake costs the server.

The certificate is trustme's (ECDSA P-256, a CA of its own, for localhost
and 127.0.0.1), the same kind the tests use; the generator trusts that CA
and verifies the host name (chatd.tls.client_context), as `chatcli --cafile`
does.
"""

import os
import ssl
import time

from chatd.tls import TLSPipe, client_context, server_context

# The host name the generator verifies (the certificate is issued for it).
SERVER_NAME = "localhost"


def certificate(directory: str) -> tuple[str, str, str]:
    """PEM files (certificate chain, key, CA) written into `directory`."""
    import trustme
    ca = trustme.CA()
    issued = ca.issue_cert(SERVER_NAME, "127.0.0.1")
    cert, key, ca_file = (os.path.join(directory, name) for name in
                          ("cert.pem", "key.pem", "ca.pem"))
    with open(cert, "wb") as chain:
        for blob in issued.cert_chain_pems:
            chain.write(blob.bytes())
    issued.private_key_pem.write_to_path(key)
    ca.cert_pem.write_to_path(ca_file)
    return cert, key, ca_file


def handshakes_per_second(count: int = 300) -> dict:
    """Server-side TLS handshakes per second of one core, in memory.

    A server `TLSPipe` (chatd's own, with its context: TLS 1.2 at least,
    Python's default ciphers) against a client pipe, `count` times; only the
    server's steps are timed, in thread CPU time, so the client's work and
    any I/O are left out.  Returns {"per_s", "count", "version", "openssl"}.
    """
    import tempfile
    with tempfile.TemporaryDirectory(prefix="chatd-bench-tls-") as directory:
        cert, key, ca_file = certificate(directory)
        server_ctx, client_ctx = server_context(cert, key), client_context(ca_file)
    spent, version = 0.0, None
    for _ in range(count):
        server = TLSPipe(server_ctx)
        client = TLSPipe(client_ctx, server_side=False, server_hostname=SERVER_NAME)
        for _ in range(10):  # a handshake is two or three flights each way
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
        else:
            raise RuntimeError("an in-memory TLS handshake did not complete")
        version = server.version
    return {"per_s": count / spent if spent else None, "count": count, "version": version,
            "openssl": ssl.OPENSSL_VERSION}
