"""RESP (the Redis protocol) on our side of the wire: commands out, addresses in.

Replies are parsed by `hiredis.Reader` (C, sans-IO), never here; only the
request encoding is ours, a RESP array of bulk strings
(https://redis.io/docs/reference/protocol-spec/, "Sending commands").
"""

from typing import NamedTuple
from urllib.parse import unquote, urlsplit


def encode_command(args) -> bytes:
    """One command as a RESP array of bulk strings; str and int are sent as UTF-8 text."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if type(arg) is bytes else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RedisAddress(NamedTuple):
    """Where a Redis is and how to log in to it (`parse_address`).

    `family` "tcp" (`address` (host, port)) or "unix" (`address` a path);
    `username` and `password` for HELLO's AUTH (Redis ACL; `username`
    "default" when only a password is given), `password` None for none;
    `shown` the URL without its password, for logs and errors; `tls` True
    for `rediss://` (TLS to Redis' tls-port, the certificate checked for
    the host's name).
    """

    family: str
    address: object
    username: str
    password: str | None
    shown: str
    tls: bool = False


def parse_address(url: str) -> RedisAddress:
    """`redis://[[USER]:PASSWORD@]HOST[:PORT]`, the same with `rediss://` (TLS),
    or `unix://[[USER]:PASSWORD@]/path` (the redis and rediss URI schemes,
    https://www.iana.org/assignments/uri-schemes/prov/redis; user and
    password percent-encoded) as a RedisAddress.

    Raises ValueError with what is wrong (the setting's error at start).
    """
    parts = urlsplit(url)
    userinfo = url.partition("://")[2].rpartition("@")[0]
    beyond = parts.path + parts.query + parts.fragment
    if ("@" not in parts.netloc and userinfo and not userinfo.startswith("/")) or \
            (parts.scheme != "unix" and "@" in beyond) or \
            (parts.scheme == "unix" and parts.netloc.rpartition("@")[2]):
        # Where the password ends cannot be told: show none of it.
        raise ValueError("cluster URL: where its password ends cannot be told (or a "
                         "unix:// URL names a host): percent-encode the password (@ as "
                         "%40, / as %2F, ? as %3F, # as %23)")
    try:
        password = None if parts.password is None else unquote(parts.password)
        username = unquote(parts.username) if parts.username else "default"
        port = parts.port if parts.scheme in ("redis", "rediss") else None
    except ValueError:
        raise ValueError(f"cluster {redacted(url)!r}: the port is not a number "
                         "0-65535") from None
    shown = redacted(url)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"cluster {shown!r}: unix:///path needs a socket path")
        return RedisAddress("unix", parts.path, username, password, shown)
    if parts.scheme in ("redis", "rediss"):
        if not parts.hostname:
            raise ValueError(f"cluster {shown!r}: {parts.scheme}://HOST:PORT needs a host")
        return RedisAddress("tcp", (parts.hostname, port or 6379), username, password,
                            shown, parts.scheme == "rediss")
    raise ValueError(f"cluster {shown!r}: give redis://HOST:PORT, rediss://HOST:PORT "
                     "or unix:///path")


def redacted(url: str) -> str:
    """`url` with its password (if any) shown as ***: what logs may say of it.

    A password with a `/`, `?` or `#` left unencoded ends a URL parser's host
    part early, so it would not be seen as one: then the text itself is read
    (everything up to the last `@` is the user part).
    """
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo or userinfo.startswith("/"):
        return url  # no password (an `@` after a `/` is in a socket's path)
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}"
