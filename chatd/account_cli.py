"""`chatd account add|passwd|delete NAME`, `chatd account list`: the operator's accounts.

Works on the store file directly, also while a chatd serves it: SQLite's
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
import sys
import time

import framing

from .accounts import hash_password
from .config import load_settings
from .core.accounts import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, password_ok
from .store import MEMORY, StoreError
from .store.sqlite import prepare

# sysexits.h EX_CONFIG, as chatd's own refusal of a store file.
EXIT_BAD_STORE = 78


class Refused(Exception):
    """What was asked cannot be done (no such account, passwords differ, ...);
    the message is the one line the operator sees."""


def _arguments(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chatd account", description="Add, change, delete or list accounts in "
        "chatd's store file, also while chatd serves it (a deleted account that is "
        "logged in gets bye within about a second).",
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
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, purpose in (("add", "make NAME an account"),
                             ("passwd", "give account NAME a new password"),
                             ("delete", "delete account NAME and its private messages")):
        commands.add_parser(command, help=purpose, parents=[where]).add_argument(
            "name", metavar="NAME")
    commands.add_parser("list", help="list the accounts: name, created (UTC), hash "
                                     "parameters", parents=[where])
    return parser.parse_args(argv)


def _store_path(arguments) -> str:
    """The store file chatd would use with these settings (flags, environment, file)."""
    flags = []
    if arguments.config:
        flags += ["--config", arguments.config]
    if arguments.store:
        flags += ["--store", arguments.store]
    path = load_settings(flags)[0].store
    if path == MEMORY:
        raise Refused("the store is 'memory': its accounts live inside the chatd process "
                      "and end with it; there is no file to change")
    return path


def read_password(stdin=sys.stdin) -> str:
    """A new password: prompted twice without echo on a terminal, else stdin's
    first line (without its line end).  Refused if not 8 to 1,024 characters."""
    if stdin.isatty():
        password = getpass.getpass("new password: ")
        if getpass.getpass("again: ") != password:
            raise Refused("the two passwords differ; nothing changed")
    else:
        password = stdin.readline().rstrip("\r\n")
    if not password_ok(password):
        raise Refused(f"a password is {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS:,} "
                      "characters; nothing changed")
    return password


def _utc(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _exists(conn, key: str) -> bool:
    return conn.execute("SELECT 1 FROM accounts WHERE key = ?", (key,)).fetchone() is not None


def _run(arguments, stdin) -> str:
    """Do the command; return what to print."""
    path = _store_path(arguments)
    if arguments.command != "add" and not os.path.exists(path):
        raise Refused(f"no store file at {os.path.abspath(path)}")
    name = getattr(arguments, "name", None)
    if name is not None and not framing.is_name(name):
        raise Refused(f"{name!r} is not a chat/1 name (1 to 32 of A-Z a-z 0-9 _ - .)")
    conn = prepare(path)  # inside BEGIN IMMEDIATE
    try:
        if arguments.command == "list":
            rows = conn.execute("SELECT name, created, n, r, p FROM accounts "
                                "ORDER BY key").fetchall()
            conn.execute("COMMIT")
            return "".join(f"{name}\t{_utc(created)}\tscrypt n={n} r={r} p={p}\n"
                           for name, created, n, r, p in rows)
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


def main(argv, stdin=sys.stdin) -> int:
    """`chatd account ...` (argv without "account"); the exit status: 0 done, 1 refused,
    2 a usage or settings error, 78 a store file chatd must not use."""
    arguments = _arguments(argv)
    try:
        sys.stdout.write(_run(arguments, stdin))
    except Refused as exc:
        print(f"chatd account: {exc}", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"chatd account: store refused: {exc}", file=sys.stderr)
        return EXIT_BAD_STORE
    except (ValueError, OSError) as exc:
        print(f"chatd account: {exc}", file=sys.stderr)
        return 2
    return 0
