"""RESP (the Redis protocol) on our side of the wire: commands out, addresses in.

Replies are parsed by `hiredis.Reader` (C, sans-IO), never here; only the
request encoding is ours, a RESP array of bulk strings
(https://redis.io/docs/reference/protocol-spec/, "Sending commands").
"""

from urllib.parse import urlsplit


def encode_command(args) -> bytes:
    """One command as a RESP array of bulk strings; str and int are sent as UTF-8 text."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if type(arg) is bytes else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def parse_address(url: str):
    """`redis://HOST:PORT` -> ("tcp", (host, port)); `unix:///path` -> ("unix", path).

    Raises ValueError with what is wrong (the setting's error at start).
    """
    parts = urlsplit(url)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"cluster {url!r}: unix:///path needs a socket path")
        return "unix", parts.path
    if parts.scheme == "redis":
        if not parts.hostname:
            raise ValueError(f"cluster {url!r}: redis://HOST:PORT needs a host")
        try:
            port = parts.port or 6379
        except ValueError:
            raise ValueError(f"cluster {url!r}: the port is not a number 0-65535") from None
        return "tcp", (parts.hostname, port)
    raise ValueError(f"cluster {url!r}: give redis://HOST:PORT or unix:///path")
