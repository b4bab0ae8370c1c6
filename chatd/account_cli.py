"""`chatd account add|passwd|delete NAME`, `chatd account list`: the operator's accounts.

With a cluster (`--cluster`, or the `cluster` setting) the accounts are
the cluster's, in its Redis (cluster/operator.py).  Otherwise this works
on the store file directly, also while a chatd serves it: SQLite's
WAL lets this process commit beside the server's writer, and the server
notices any commit it did not make itself (`PRAGMA data_version`, looked at
every second by its store worker, store/link.py) and reads the accounts
again; a deleted account that is logged in then gets `bye`.

Passwords come from a no-echo prompt (asked twice) when stdin is a
terminal, else from the first line of stdin (scripts: `printf '%s\\n' "$pw"
| chatd account add NAME`); never from the command line, where `ps` and
shell history would show them.  They are hashed here with the server's
own parameters (chatd/accounts.py) and only the hash is written.

Deleting an account also deletes its private messages: a later account
of the same name must not read its predecessor's conversations.
"""

import argparse
import datetime
import getpass
import os
import sqlite3
import sys
import time
import urllib.parse

import framing

from .accounts import hash_password
from .config import load_settings
from .store import MEMORY, StoreError
from .store.file import APPLICATION_ID, prepare

# sysexits.h EX_CONFIG, as chatd's own refusal of a store file.
EXIT_BAD_STORE = 78


class Refused(Exception):
    """What was asked cannot be done (no such account, passwords differ, ...);
    the message is the one line the operator sees."""


def _arguments(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chatd account", description="Add, change, delete or list accounts in "
        "chatd's store file, also while chatd serves it (a deleted account that is "
        "logged in gets bye within about a second), or in a cluster's Redis "
        "(--cluster; at once).",
        epilog="The password is asked without echo, twice, or read from the first line "
               "of stdin when stdin is not a terminal; never given as an argument.")
    # Before or after the command (`chatd account list --store FILE`); after it
    # they must not reset what was given before (SUPPRESS: no default there).
    where = argparse.ArgumentParser(add_help=False)
    for options in (parser, where):
        default = None if options is parser else argparse.SUPPRESS
        options.add_argument("--config", metavar="FILE", default=default,
                             help="chatd's TOML settings, for its store setting")
        options.add_argument("--store", metavar="FILE", default=default,
                             help="the store file (default: the store setting from "
                                  "--config, CHATD_STORE or chatd.db)")
        options.add_argument("--cluster", metavar="URL", default=default,
                             help="the cluster's Redis (redis://HOST:PORT or "
                                  "unix:///path; default: the cluster setting from "
                                  "--config or CHATD_CLUSTER): its accounts, not a "
                                  "store file's")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, purpose in (("add", "make NAME an account"),
                             ("passwd", "give account NAME a new password"),
                             ("delete", "delete account NAME and its private messages")):
        commands.add_parser(command, help=purpose, parents=[where]).add_argument(
            "name", metavar="NAME")
    commands.add_parser("list", help="list the accounts: name, created (UTC), hash "
                                     "parameters", parents=[where])
    return parser.parse_args(argv)


def _settings(arguments):
    """chatd's settings as these flags, the environment and the file give them."""
    flags = []
    for option in ("config", "store", "cluster"):
        if getattr(arguments, option):
            flags += [f"--{option}", getattr(arguments, option)]
    return load_settings(flags)[0]


def _store_path(config) -> str:
    """The store file chatd would use with these settings."""
    if config.store == MEMORY:
        raise Refused("the store is 'memory': its accounts live inside the chatd process "
                      "and end with it; there is no file to change")
    return config.store


def read_password(stdin=sys.stdin) -> str:
    """A new password: prompted twice without echo on a terminal, else stdin's
    first line (`framing.password_line`, read bounded).  Refused if chat/1
    would refuse it (`framing.password_problem`).  EOFError or
    KeyboardInterrupt when the operator ends the input (Ctrl-D, Ctrl-C)."""
    if stdin.isatty():
        password = getpass.getpass("new password: ")
        if getpass.getpass("again: ") != password:
            raise Refused("the two passwords differ; nothing changed")
    else:
        line = stdin.readline(framing.MAX_PASSWORD_LINE)
        if not line:
            raise EOFError
        password = framing.password_line(line)
    problem = framing.password_problem(password)
    if problem is not None:
        raise Refused(f"{problem}; nothing changed")
    return password


def _utc(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _list(path: str) -> str:
    """The accounts, one line each, read through a read-only connection: no
    write permission needed, no write lock taken (WAL readers do not wait
    for the server's writer), the file's journal mode left alone."""
    where = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
    try:
        rows = _accounts(where, path)
    except sqlite3.OperationalError:
        # A read-only connection to a WAL file still needs its -shm file,
        # which SQLite cannot make in a directory this user may not write.
        # Without a -wal file no server has the store open (it would keep
        # one), so nothing changes it: read it as immutable (no -shm, no locks).
        if os.path.exists(path + "-wal"):
            raise
        rows = _accounts(where + "&immutable=1", path)
    return _listing(rows)


def _accounts(uri: str, path: str) -> list:
    """(name, created, n, r, p) of every account in the store at `uri`, by key."""
    conn = sqlite3.connect(uri, uri=True)
    try:
        if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            raise StoreError(f"{path}: not a chatd store")
        return conn.execute("SELECT name, created, n, r, p FROM accounts "
                            "ORDER BY key").fetchall()
    finally:
        conn.close()


def _exists(conn, key: str) -> bool:
    return conn.execute("SELECT 1 FROM accounts WHERE key = ?", (key,)).fetchone() is not None


def _listing(rows) -> str:
    """One line per account: name, created (UTC), hash parameters."""
    return "".join(f"{name}\t{_utc(created)}\tscrypt n={n} r={r} p={p}\n"
                   for name, created, n, r, p in rows)


def _run(arguments, stdin) -> str:
    """Do the command; return what to print."""
    config = _settings(arguments)
    name = getattr(arguments, "name", None)
    if name is not None and not framing.is_name(name):
        raise Refused(f"{name!r} is not a chat/1 name (1 to 32 of A-Z a-z 0-9 _ - .)")
    if config.cluster:
        return _run_in_cluster(config, arguments.command, name, stdin)
    path = _store_path(config)
    if arguments.command != "add" and not os.path.exists(path):
        raise Refused(f"no store file at {os.path.abspath(path)}")
    if arguments.command == "list":
        return _list(path)
    conn = prepare(path)  # inside BEGIN IMMEDIATE
    try:
        key = name.lower()
        if arguments.command == "delete":
            if not _exists(conn, key):
                raise Refused(f"no account {name!r}")
            conn.execute("DELETE FROM accounts WHERE key = ?", (key,))
            conn.execute("DELETE FROM private_messages WHERE low = ? OR high = ?", (key, key))
            conn.execute("COMMIT")
            return f"account {name!r} deleted, with its private messages\n"
        exists = _exists(conn, key)
        conn.execute("COMMIT")  # not held while the operator types
        if arguments.command == "add" and exists:
            raise Refused(f"{name!r} is an account already (chatd account passwd "
                          "changes its password)")
        if arguments.command == "passwd" and not exists:
            raise Refused(f"no account {name!r}")
        credential = hash_password(read_password(stdin))
        values = (credential.n, credential.r, credential.p, credential.salt, credential.hash)
        conn.execute("BEGIN IMMEDIATE")
        if arguments.command == "add":
            if _exists(conn, key):
                raise Refused(f"{name!r} became an account meanwhile; nothing changed")
            conn.execute("INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (key, name, *values, time.time()))
        elif conn.execute("UPDATE accounts SET n = ?, r = ?, p = ?, salt = ?, hash = ? "
                          "WHERE key = ?", (*values, key)).rowcount == 0:
            raise Refused(f"account {name!r} was deleted meanwhile; nothing changed")
        conn.execute("COMMIT")
        return f"account {name!r} {'added' if arguments.command == 'add' else 'changed'}\n"
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def _run_in_cluster(config, command: str, name: str | None, stdin) -> str:
    """The command on the accounts in the cluster's Redis (cluster/operator.py):
    the same answers as on a store file; a logged-in account deleted, or a
    guest on a name made an account, is closed by its node at once."""
    from .cluster import operator, wiring  # hiredis: only with the cluster extra
    try:
        with operator.BlockingRedis(config.cluster, wiring.tls_context(config)) as redis:
            if command == "list":
                return _listing((listed_name, created, c.n, c.r, c.p)
                                for listed_name, created, c in operator.accounts(redis))
            exists = operator.exists(redis, name.lower())
            if command == "add" and exists:
                raise Refused(f"{name!r} is an account already (chatd account passwd "
                              "changes its password)")
            if command != "add" and not exists:
                raise Refused(f"no account {name!r}")
            if command == "delete":
                operator.change(redis, config, command, name)
                return f"account {name!r} deleted, with its private messages\n"
            credential = hash_password(read_password(stdin))
            operator.change(redis, config, command, name, credential, time.time())
            return f"account {name!r} {'added' if command == 'add' else 'changed'}\n"
    except operator.OperatorError as exc:
        raise Refused(str(exc)) from None


def main(argv, stdin=sys.stdin) -> int:
    """`chatd account ...` (argv without "account"); the exit status: 0 done, 1 refused
    or the input ended before a password, 2 a usage or settings error, 78 a store
    file chatd must not use or SQLite refused (locked past its busy timeout,
    read-only, disk full).  Every failure is one line on stderr."""
    arguments = _arguments(argv)
    try:
        sys.stdout.write(_run(arguments, stdin))
    except Refused as exc:
        print(f"chatd account: {exc}", file=sys.stderr)
        return 1
    except (EOFError, KeyboardInterrupt) as exc:
        # On a terminal the cursor still sits after the prompt: end that line first.
        end = "\n" if stdin.isatty() else ""
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else \
            "the input ended before a password"
        print(f"{end}chatd account: {why}; nothing changed", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"chatd account: store refused: {exc}", file=sys.stderr)
        return EXIT_BAD_STORE
    except sqlite3.Error as exc:
        # The open transaction was rolled back (`_run`'s finally).
        print(f"chatd account: store busy or refused: {exc}; nothing changed",
              file=sys.stderr)
        return EXIT_BAD_STORE
    except (ValueError, OSError) as exc:
        print(f"chatd account: {exc}", file=sys.stderr)
        return 2
    return 0
