"""`chatd account add|passwd|delete|list` for a cluster: the accounts in its Redis.

account_cli.py reads the settings and comes here when `cluster` is set;
this module only speaks to Redis.  A blocking connection is right for a
command that does one thing and exits (never inside the server's loop);
replies are parsed by `hiredis.Reader`, as the nodes' link does, and the
changes are the nodes' own scripts (scripts/*.lua, sent with EVAL), so the
rules are written once: an account made over a guest's name evicts that
guest (`name_registered`), a deleted account's session is evicted
(`not_registered`), each within the same script as the change, and the
nodes tell their clients as soon as the script's PUBLISH reaches them.
"""

import socket

import hiredis

from .accounts import credential_text, parse_credential
from .resp import encode_command, parse_address
from .scripts import load_scripts

# Seconds to wait for Redis to connect or answer.
TIMEOUT = 5.0


class OperatorError(Exception):
    """What was asked cannot be done (no such account, Redis refused or is
    unreachable); the message is the one line the operator sees."""


class BlockingRedis:
    """One blocking connection to the Redis at `url` (`redis://HOST:PORT`,
    `rediss://HOST:PORT` with `tls_context`, or `unix:///path`):
    `call(*args)` -> the reply (RESP2, hiredis' values);
    a context manager that closes it.  OperatorError when it cannot
    connect, times out or answers an error."""

    def __init__(self, url: str, tls_context=None, timeout: float = TIMEOUT):
        where = parse_address(url)
        self.url = where.shown  # no password in an error line
        family, address = where.family, where.address
        try:
            if family == "unix":
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(address)
            else:
                self.sock = socket.create_connection(address, timeout)
                if where.tls:
                    self.sock = tls_context.wrap_socket(self.sock,
                                                        server_hostname=address[0])
        except OSError as exc:
            raise OperatorError(f"cannot reach Redis at {self.url}: "
                                f"{exc.strerror or exc}") from None
        self.reader = hiredis.Reader()
        if where.password is not None:
            try:
                self.call("AUTH", where.username, where.password)
            except OperatorError:
                self.sock.close()
                raise

    def call(self, *args):
        try:
            self.sock.sendall(encode_command(args))
            reply = self.reader.gets()
            while reply is False:
                data = self.sock.recv(1 << 16)
                if not data:
                    raise OperatorError(f"Redis at {self.url} closed the connection")
                self.reader.feed(data)
                reply = self.reader.gets()
        except OSError as exc:
            raise OperatorError(f"Redis at {self.url}: {exc.strerror or exc}") from None
        if isinstance(reply, hiredis.ReplyError):
            raise OperatorError(f"Redis at {self.url} refused: {reply}")
        return reply

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()


def accounts(redis: BlockingRedis) -> list[tuple]:
    """(name, created in Unix s, credential) of every account, by casefolded name."""
    listed = []
    for key in sorted(redis.call("SMEMBERS", "chatd:accounts")):
        name, created, cred = redis.call("HMGET", b"chatd:acct:" + key, "name", "created",
                                         "cred")
        if name is not None:  # deleted between the two calls
            listed.append((name.decode(), float(created), parse_credential(cred)))
    return listed


def exists(redis: BlockingRedis, key: str) -> bool:
    """Whether the casefolded name `key` is an account."""
    return redis.call("EXISTS", "chatd:acct:" + key) == 1


def change(redis: BlockingRedis, settings, command: str, name: str,
           credential=None, created: float = 0.0) -> None:
    """Run `command` ("add", "passwd", "delete") on account `name` through the
    nodes' script, with the presence limit and stream cap the nodes last
    gave Redis (a `left` it publishes is a room event; epoch.lua), else
    `settings`' (a Config) when no node has connected yet.
    OperatorError if the account is not (or, for add, already) there."""
    key = name.lower()
    if command == "add":
        script, args = "register", (key, name, credential_text(credential), created, "")
    elif command == "passwd":
        script, args = "passwd", (key, "", credential_text(credential))
    else:
        script, args = "unregister", (key,)
    # A Redis that restarted must first be seen by a node (epoch.lua: the id
    # floor, the run's numbering bases) before anything is numbered in it.
    run = redis.call("GET", "chatd:run")
    info = redis.call("INFO", "server").decode()
    if run is not None and f"run_id:{run.decode()}" not in info:
        raise OperatorError("Redis restarted and no chatd node has connected since; "
                            "start a node (or wait for one to reconnect), then try again")
    source = load_scripts()[script].source
    presence, cap = redis.call("HMGET", "chatd:limits", "presence", "cap")
    if presence is None:
        presence, cap = settings.presence_limit, 2 * settings.history
    reply = redis.call("EVAL", source, 0, presence, cap, *args)
    if reply[0] == b"name_registered":
        raise OperatorError(f"{name!r} became an account meanwhile; nothing changed")
    if reply[0] == b"no_account":
        raise OperatorError(f"no account {name!r}")
