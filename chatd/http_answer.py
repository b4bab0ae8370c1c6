"""One HTTP/1.1 answer through h11, shared by the metrics and the web listeners.

Both serve one request per connection and close after the answer
(`Connection: close`), so a response is built whole here and queued with
`transport.write`; the sockets stay the transports' business.
"""

import http

import h11

# Bytes a request's head may take (request line and headers); more is 431.
MAX_HEAD = 8192


def head_size(request: h11.Request) -> int:
    """The bytes of `request`'s head as sent: request line, headers, CRLFs.

    h11 bounds only a head that is still incomplete (max_incomplete_event_size);
    one that came whole in a single read is measured with this.
    """
    return (len(request.method) + len(request.target) + 13
            + sum(len(name) + len(value) + 4 for name, value in request.headers) + 2)


def response(connection: h11.Connection, status: int, body: bytes, headers=(),
             head_only: bool = False) -> bytes | None:
    """The bytes of one whole response closing the connection, or None when h11
    cannot answer in its state (then the caller just closes).

    `headers` are (name, value) pairs; Content-Length and Connection: close are
    added, and Content-Type text/plain unless one is given.  `head_only`
    (a HEAD request) leaves the body out, its length still announced.
    """
    headers = [*headers, ("Content-Length", str(len(body))), ("Connection", "close")]
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "text/plain; charset=utf-8"))
    try:
        data = connection.send(h11.Response(status_code=status, headers=headers,
                                            reason=http.HTTPStatus(status).phrase.encode()))
        if not head_only and body:
            data += connection.send(h11.Data(data=body))
        return data + connection.send(h11.EndOfMessage())
    except h11.LocalProtocolError:
        return None


def error_status(error: h11.RemoteProtocolError) -> tuple[int, bytes]:
    """The status and plain-text body answering a request h11 could not parse."""
    status = error.error_status_hint
    return status, f"{http.HTTPStatus(status).phrase}\n".encode()
