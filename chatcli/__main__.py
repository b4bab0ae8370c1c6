"""`chatcli` / `python -m chatcli`: read the options, pick the front end, run the loop."""

import argparse
import math
import ssl
from importlib import metadata
import os
import sys

from framing import DEFAULT_PORT, is_name

from . import display
from .client import EXIT_FAILED, Client, PipeUI, TerminalUI
from .commands import NAME_RULE, text_problem
from .passwords import LOGIN_TRIES, password_problem, read_password_file
from .seen import SeenFile, default_path
from .session import KEEPALIVE, Session

ENV_PREFIX = "CHATCLI_"
# The loopback address chatd binds to by default (its Config.host), so that
# `chatd` and `chatcli` find each other unconfigured; the port is framing's
# DEFAULT_PORT, which both share.  Written out rather than imported so the
# client does not depend on the server's package.
DEFAULT_HOST = "127.0.0.1"
# chatd's conventional TLS port (its --tls-port), the default with --tls.
DEFAULT_TLS_PORT = 7879

DESCRIPTION = "A chat/1 client: chat on a terminal, or script it through a pipe."
EPILOG = f"""\
Every option can also come from the environment: CHATCLI_HOST, CHATCLI_PORT,
CHATCLI_NAME, CHATCLI_ROOM, CHATCLI_KEEPALIVE, CHATCLI_TLS (1), CHATCLI_CAFILE,
and for --password-file the password itself, CHATCLI_PASSWORD; options win.
Names: {NAME_RULE}.

--tls speaks TLS (port {DEFAULT_TLS_PORT} unless --port says otherwise) and verifies the
server's certificate and host name against the system's CAs, or against
--cafile FILE (a private CA, or a self-signed server's own certificate;
--cafile implies --tls).  A certificate that fails verification ends the
client with exit status 1 and one line saying why.

--host may be a name with several addresses, IPv6 and IPv4: each is tried
(the next after 250 ms, or at once when one fails; RFC 8305), the first to
answer is used, and if none does, one line says what was tried.  A dropped
connection is redialled after a random delay below 0.25 s, 0.5 s, 1 s, ...
up to 30 s, so many clients do not all come back at once.

Keepalive: after --keepalive seconds (default {KEEPALIVE:g}) without a frame from
the server the client pings; if nothing comes back within half that, the
connection is taken for dead and redialled: a connection that died without
a word is noticed within 1.5 x keepalive ({KEEPALIVE * 1.5:g} s by default).

On a terminal the client asks for a name when none is given, and asks again
if the server refuses it.  Type /help for the commands.

Accounts: /register makes your name an account and /passwd changes its
password; both ask for the password without echo, a new one twice.  To log
in, the password comes from --password-file FILE (its first line) or from
CHATCLI_PASSWORD (the file wins); never from an option on the command line,
where every user of the machine could read it.  Without either, a terminal
asks when the server says the name is an account ({LOGIN_TRIES} tries), and pipe
mode ends with exit status 1.  On login, private messages sent to the account
while it was away are fetched and shown: those an earlier run has not shown
(it keeps the last id shown of each conversation in $CHATCLI_STATE, else
$XDG_STATE_HOME/chatcli/seen.json, else ~/.local/state/chatcli/seen.json).
In pipe mode the answers to /register and /passwd are the next input lines.

Without a terminal (stdin not a tty) each input line is sent as typed, commands
included; without --name the first line is the name.  Messages go to stdout,
one per line; status and errors to stderr.  Lines are paced to the server's
announced rate limit, and a line the server still refuses as rate_limited is
sent again after a pause, so none is lost.  At the end of input the client
waits until the server has answered every line, then quits.

--send TEXT sends TEXT (as text, never as a command) to --room or the lobby;
a text chat/1 would refuse (empty, over 4,000 characters, not UTF-8) is
refused before connecting.

Exit status: 0 when everything was accepted; 1 when the server refused a line,
the name or the login, or the server cannot be reached; 2 on a usage error.
Colours only on a terminal, and never when NO_COLOR is set."""


def client_version() -> str:
    """The version of the distribution chatcli ships in (the `chatd` one, as the
    server's), read from its metadata without importing the server's package."""
    try:
        return metadata.version("chatd")
    except metadata.PackageNotFoundError:
        return "unknown"


def parse_arguments(argv, environ) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chatcli", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # Abbreviations off: `--password SECRET` would be taken for
        # --password-file and the secret named in an error as a file.
        allow_abbrev=False)
    parser.add_argument("--version", action="version",
                        version=f"chatcli {client_version()}")
    parser.add_argument("--host", default=environ.get(ENV_PREFIX + "HOST", DEFAULT_HOST),
                        help=f"server address (default: {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=environ.get(ENV_PREFIX + "PORT"),
                        help=f"server port (default: {DEFAULT_PORT}, {DEFAULT_TLS_PORT} with "
                             "--tls)")
    parser.add_argument("--tls", action="store_true",
                        default=environ.get(ENV_PREFIX + "TLS", "").lower()
                        in ("1", "true", "yes", "on"),
                        help="speak TLS, verifying the server's certificate")
    parser.add_argument("--cafile", metavar="FILE", default=environ.get(ENV_PREFIX + "CAFILE"),
                        help="PEM file of the CAs (or the self-signed certificate) to trust "
                             "instead of the system's; implies --tls")
    parser.add_argument("--name", default=environ.get(ENV_PREFIX + "NAME"),
                        help="your user name (default: ask)")
    parser.add_argument("--room", default=environ.get(ENV_PREFIX + "ROOM"),
                        help="room to join and talk in (default: lobby)")
    parser.add_argument("--send", metavar="TEXT",
                        help="send TEXT, wait for its echo, and exit")
    parser.add_argument("--password-file", metavar="FILE",
                        help="log in with the password on the first line of FILE "
                             "(or set CHATCLI_PASSWORD)")
    parser.add_argument("--keepalive", metavar="SECONDS",
                        default=environ.get(ENV_PREFIX + "KEEPALIVE", KEEPALIVE),
                        help="ping after this long without a frame from the server; "
                             f"dead after 1.5 times it (default: {KEEPALIVE:g})")
    arguments = parser.parse_args(argv)
    if arguments.cafile:
        arguments.tls = True
    if arguments.port is None:
        arguments.port = DEFAULT_TLS_PORT if arguments.tls else DEFAULT_PORT
    try:
        arguments.port = int(arguments.port)
    except ValueError:
        parser.error(f"port {arguments.port!r} is not a number")
    if not 0 < arguments.port < 65536:
        parser.error(f"port {arguments.port} is not between 1 and 65535")
    try:
        arguments.keepalive = float(arguments.keepalive)
    except ValueError:
        parser.error(f"keepalive {arguments.keepalive!r} is not a number")
    # Below a second it would ping more than any network needs; NaN and
    # infinity would never ping at all.
    if not (math.isfinite(arguments.keepalive) and arguments.keepalive >= 1):
        parser.error(f"keepalive {arguments.keepalive:g} is not a number of seconds >= 1")
    for option in ("name", "room"):
        value = getattr(arguments, option)
        if value is not None and not is_name(value.removeprefix("#")):
            parser.error(f"--{option} {value!r}: {NAME_RULE}")
    if arguments.room:
        arguments.room = arguments.room.removeprefix("#")
    if arguments.send is not None and arguments.name is None:
        parser.error("--send needs --name")
    arguments.password = _password(arguments.password_file, environ, parser)
    return arguments


def _password(path: str | None, environ, parser) -> str | None:
    """The login password from --password-file or CHATCLI_PASSWORD, or None."""
    if path is not None:
        try:
            return read_password_file(path)
        except ValueError as exc:
            parser.error(str(exc))
    password = environ.get(ENV_PREFIX + "PASSWORD") or None  # set but empty: unset
    if password is not None:
        problem = password_problem(password)
        if problem is not None:
            parser.error(f"{ENV_PREFIX}PASSWORD: {problem}")
    return password


def main(argv=None) -> int:
    environ = os.environ
    arguments = parse_arguments(argv, environ)
    interactive = (arguments.send is None and sys.stdin.isatty() and sys.stdout.isatty())
    color = sys.stdout.isatty() and not environ.get("NO_COLOR")
    if arguments.send is not None:
        # Known to fail before any byte is sent: the room would see this
        # client join and leave for nothing.
        problem = text_problem(arguments.send)
        if problem is not None:
            sys.stderr.write(display.error(problem).render(sys.stderr.isatty()
                                                           and not environ.get("NO_COLOR"))
                             + "\n")
            return EXIT_FAILED
    tls = None
    if arguments.tls:
        try:
            tls = ssl.create_default_context(cafile=arguments.cafile or None)
            tls.minimum_version = ssl.TLSVersion.TLSv1_2
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
            sys.stderr.write(display.error(f"--cafile {arguments.cafile}: {reason}")
                             .render(False) + "\n")
            return EXIT_FAILED
    seen = SeenFile(default_path(environ))
    session = Session(arguments.name, arguments.room, keepalive=arguments.keepalive,
                      password=arguments.password, ask_password=interactive,
                      remembered=seen.load())
    if interactive:
        ui = TerminalUI(color)
    else:
        ui = PipeUI(color, None if arguments.send is None else [arguments.send])
    client = Client(arguments.host, arguments.port, session, ui, interactive, tls=tls,
                    seen=seen)
    try:
        return client.run()
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout closed (`chatcli | head`): nobody is reading any more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
