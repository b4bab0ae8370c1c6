"""chatd's settings: each limit with its default, its reason and its flag.

One table (`Config`'s fields) drives the defaults, the `--flags`, the
`CHATD_*` environment variables and the TOML config file; precedence is
flags over environment over file over defaults.
"""

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field

import framing

from . import __version__
from .core import ChatSettings


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


class ConfigError(ValueError):
    """Settings chatd must not start with; `problems` lists them, first found first."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def _setting(default, reason: str):
    return field(default=default, metadata={"help": reason})


@dataclass(frozen=True)
class Config:
    host: str = _setting("127.0.0.1", "address to listen on (loopback by default)")
    port: int = _setting(framing.DEFAULT_PORT, "TCP port; 0 picks a free one")
    max_frame: int = _setting(framing.MAX_FRAME,
                              "largest frame payload in bytes, both ways (frame_too_large)")
    max_clients: int = _setting(10_000, "connections served at once; more get server_full")
    rate_limit: float = _setting(10.0, "requests per second per connection; 0 turns it off "
                                       "(rate_limited)")
    rate_burst: int = _setting(20, "requests a connection may send at once before rate_limit "
                                   "applies")
    presence_limit: int = _setting(200, "largest room that still gets joined/left/renamed "
                                        "frames; bigger rooms use who")
    history: int = _setting(1_000, "messages kept per room and per private pair")
    retained_rooms: int = _setting(1_000, "emptied rooms whose history and ids are kept "
                                          "for members coming back")
    max_conversations: int = _setting(10_000, "private pairs whose history is kept, "
                                              "least recently used dropped first")
    history_memory: int = _setting(256 << 20, "bytes of history all rooms and pairs may hold "
                                              "in memory; the least recently used are "
                                              "emptied first (reloaded from the store)")
    max_rooms: int = _setting(10_000, "rooms open at once; a join that would open one more "
                                      "is refused (not_allowed)")
    max_rooms_per_user: int = _setting(100, "rooms one user may be in at once, the lobby "
                                            "included (not_allowed), as IRC's CHANLIMIT")
    store: str = _setting("chatd.db", "the SQLite file that keeps history and ids across "
                                      "restarts, or 'memory' to keep nothing")
    retention: int = _setting(100_000, "messages kept on file per room and per private "
                                       "pair of accounts, oldest deleted first")
    accounts: str = _setting("open", "open: anyone may register a name; closed: no new "
                                     "registrations (existing accounts log in); off: no "
                                     "accounts at all")
    login_failures: int = _setting(5, "failed logins one client address may make per "
                                      "login_window before it gets rate_limited (no "
                                      "password is hashed then)")
    login_window: float = _setting(60.0, "seconds over which failed logins are counted")
    guests: bool = _setting(True, "yes: anyone may say hello under a free name; no: a "
                                  "private server, only accounts log in (auth_required)")
    address_connections: int = _setting(16, "connections open at once from one client "
                                            "address (IPv6: one /64), as Ergo's and "
                                            "ngircd's defaults; more get server_full")
    address_connects: int = _setting(32, "new connections one client address (IPv6: one "
                                         "/64) may open per address_window (server_full)")
    address_window: float = _setting(10.0, "seconds over which address_connects counts")
    limit_loopback: bool = _setting(False, "apply the per-address limits to loopback "
                                           "clients too (exempt by default: a local "
                                           "proxy or benchmark is one address)")
    handshake_timeout: float = _setting(10.0, "seconds to complete hello (timeout)")
    idle_timeout: float = _setting(300.0, "seconds without any frame before the connection "
                                          "is closed (timeout)")
    output_hard_limit: int = _setting(1 << 20, "bytes queued for one client before it is "
                                               "cut off (too_slow)")
    output_soft_limit: int = _setting(256 << 10, "bytes queued for one client that, held for "
                                                 "output_soft_seconds, cut it off (too_slow)")
    output_soft_seconds: float = _setting(10.0, "how long output may stay above the soft "
                                                "limit")
    max_bad_messages: int = _setting(20, "bad messages one connection may send before it is "
                                         "closed (abuse)")
    accepts_per_turn: int = _setting(16, "connections accepted per loop turn, so a connect "
                                         "storm cannot starve chat")
    write_per_turn: int = _setting(64 << 10, "bytes written to one connection per loop turn, "
                                             "so no client starves the others")
    flush_linger: float = _setting(0.0005, "seconds a broadcast's flush may wait after the "
                                           "previous flush while the server is busy, so one "
                                           "send carries several messages; 0: never wait")
    shutdown_timeout: float = _setting(5.0, "seconds to flush clients on SIGTERM/SIGINT "
                                            "before closing them anyway")
    log_level: str = _setting("info", "debug, info, warning or error")
    log_format: str = _setting("text", "text, or json: one object a line with the same "
                                       "fields plus a connection's peer and reason")
    metrics_port: int = _setting(0, "TCP port serving GET /metrics (Prometheus text "
                                    "format); 0 turns metrics off")
    metrics_host: str = _setting("127.0.0.1", "address metrics listen on (loopback by "
                                              "default: the counters are not for everyone)")
    tls_port: int = _setting(0, "TCP port serving chat/1 inside TLS (7879 is the usual "
                                "choice), on the same host; 0 turns TLS off")
    tls_cert: str = _setting("", "PEM file of the server's certificate chain (TLS); "
                                 "read again on SIGHUP")
    tls_key: str = _setting("", "PEM file of the certificate's private key (TLS); read "
                                "again on SIGHUP")
    tls_client_ca: str = _setting("", "PEM file of CAs whose client certificates are asked "
                                      "for, optional, never in place of a password; empty: "
                                      "none asked for")
    ws_port: int = _setting(0, "TCP port serving the web client and chat/1 over WebSocket "
                               "(at /chat), on the same host; HTTPS and wss:// when "
                               "tls_cert is set; 0 turns it off")
    ws_origins: str = _setting("", "comma-separated Origins (scheme://host[:port]) whose "
                                   "pages may open the WebSocket; empty: only the page's "
                                   "own, and only when its Host is localhost or this "
                                   "server's address (against DNS rebinding)")
    no_plaintext: bool = _setting(False, "serve chat/1 over TLS only: no plaintext "
                                         "listener (needs tls_cert, tls_key and tls_port or a "
                                         "passed tls socket)")
    cluster: str = _setting("", "serve one chat with other nodes through Redis: "
                                "redis://[[USER]:PASSWORD@]HOST:PORT, rediss://... (TLS) or "
                                "unix:///path "
                                "(docs/cluster.md; a password belongs in CHATD_CLUSTER or "
                                "the config file, not on the command line); empty: a "
                                "single node")
    cluster_ca: str = _setting("", "with a rediss:// cluster: the CA file (PEM) that "
                                   "signed Redis' certificate; empty: the system's CAs")
    cluster_cert: str = _setting("", "with a rediss:// cluster: this node's client "
                                     "certificate (PEM), for a Redis with tls-auth-clients")
    cluster_key: str = _setting("", "the private key (PEM) of cluster_cert")
    cluster_lease: float = _setting(10.0, "seconds a cluster node stays in the cluster "
                                          "without renewing its lease (renewed every fifth "
                                          "of it); then other nodes reap its users")

    def __post_init__(self):
        problems = []
        if not 8192 <= self.max_frame <= 0xFFFFFFFF:
            problems.append("max_frame must be between 8192 and 4294967295 "
                            "(a welcome must fit)")
        for name in ("max_clients", "rate_burst", "history", "max_bad_messages",
                     "accepts_per_turn", "write_per_turn", "output_hard_limit",
                     "output_soft_limit", "history_memory", "max_rooms",
                     "max_rooms_per_user", "retention", "login_failures",
                     "address_connections", "address_connects"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        for name in ("rate_limit", "presence_limit", "retained_rooms", "max_conversations",
                     "handshake_timeout", "idle_timeout", "output_soft_seconds",
                     "shutdown_timeout", "login_window", "address_window", "flush_linger"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative")
        for setting in dataclasses.fields(self):
            if setting.type is float and not math.isfinite(getattr(self, setting.name)):
                problems.append(f"{setting.name} must be a finite number")
        if not 0 <= self.port <= 65535:
            problems.append("port must be between 0 and 65535")
        if not 0 <= self.metrics_port <= 65535:
            problems.append("metrics_port must be between 0 and 65535 (0: off)")
        if not 0 <= self.tls_port <= 65535:
            problems.append("tls_port must be between 0 and 65535 (0: off)")
        if self.tls_port and not (self.tls_cert and self.tls_key):
            problems.append("tls_port needs tls_cert and tls_key (PEM files)")
        if not 0 <= self.ws_port <= 65535:
            problems.append("ws_port must be between 0 and 65535 (0: off)")
        if self.ws_port and bool(self.tls_cert) != bool(self.tls_key):
            problems.append("ws_port with TLS needs both tls_cert and tls_key (PEM files)")
        for origin in self.web_origins():
            if not re.fullmatch(r"https?://[^/\s]+", origin):
                problems.append(f"ws_origins: {origin!r} is not an origin "
                                "(scheme://host[:port], no path)")
        # The TLS listener itself (tls_port or a socket systemd passes) is
        # checked at start (Server.start): only there are passed sockets known.
        if self.no_plaintext and not (self.tls_cert and self.tls_key):
            problems.append("no_plaintext needs TLS: set tls_cert and tls_key, and tls_port "
                            "(or pass a socket named tls)")
        if not self.store:
            problems.append("store must be a file path or 'memory'")
        if self.accounts not in ("open", "closed", "off"):
            problems.append("accounts must be one of open, closed, off")
        if not self.guests and self.accounts == "off":
            problems.append("guests no needs accounts open or closed (nobody could log in)")
        if self.log_level.lower() not in LOG_LEVELS:
            problems.append(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        if self.log_format not in LOG_FORMATS:
            problems.append(f"log_format must be one of {', '.join(LOG_FORMATS)}")
        if self.cluster:
            problems.extend(_cluster_problems(self))
        elif self.cluster_ca or self.cluster_cert or self.cluster_key:
            problems.append("cluster_ca, cluster_cert and cluster_key need a rediss:// cluster")
        if problems:
            raise ConfigError(problems)


    def web_origins(self) -> list[str]:
        """`ws_origins` as a list (empty: the page's own origin only)."""
        return [origin.strip() for origin in self.ws_origins.split(",") if origin.strip()]

    def chat_settings(self, **overrides) -> ChatSettings:
        """The chat core's group of these settings; `overrides` replace some
        (the server lowers `max_clients` when the open-files limit is low)."""
        values = {setting.name: getattr(self, setting.name)
                  for setting in dataclasses.fields(ChatSettings)}
        return ChatSettings(**{**values, **overrides})


def _cluster_problems(config: Config) -> list[str]:
    """What is wrong with the cluster settings (their own place: a cluster is optional)."""
    from .cluster.resp import parse_address
    problems = []
    try:
        tls = parse_address(config.cluster).tls
    except ValueError as exc:
        problems.append(str(exc))
        tls = True  # no second error about the TLS files
    if not tls and (config.cluster_ca or config.cluster_cert or config.cluster_key):
        problems.append("cluster_ca, cluster_cert and cluster_key need a rediss:// cluster")
    if bool(config.cluster_cert) != bool(config.cluster_key):
        problems.append("cluster_cert and cluster_key go together")
    if importlib.util.find_spec("hiredis") is None:
        problems.append("cluster needs hiredis: pip install 'chatd[cluster]'")
    if not config.cluster_lease > 0:
        problems.append("cluster_lease must be more than 0")
    return problems


SETTINGS = {setting.name: setting for setting in dataclasses.fields(Config)}
ENV_PREFIX = "CHATD_"


# How a yes/no setting may be spelled in a flag or the environment (TOML has booleans).
_BOOLEANS = {"yes": True, "true": True, "on": True, "1": True,
             "no": False, "false": False, "off": False, "0": False}


def _convert(name: str, value):
    kind = SETTINGS[name].type
    if kind is bool:
        if type(value) is bool:
            return value
        if type(value) is str and value.lower() in _BOOLEANS:
            return _BOOLEANS[value.lower()]
        raise ConfigError([f"{name}: {value!r} is not yes or no"])
    # Strings come from flags and the environment; TOML brings typed values.
    acceptable = (str,) if kind is str else (str, int) if kind is int else (str, int, float)
    if type(value) in acceptable:
        try:
            return kind(value)
        except ValueError:
            pass
    raise ConfigError([f"{name}: {value!r} is not a valid {kind.__name__}"])


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chatd", description="A single-threaded chat server speaking chat/1.",
        epilog="Every setting can also come from CHATD_<NAME> in the environment or "
               "from the TOML file given with --config; flags win, then the "
               "environment, then the file.  `chatd account --help`: the operator's "
               "command for accounts in the store file.")
    parser.add_argument("--version", action="version", version=f"chatd {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML file of settings")
    parser.add_argument("--check-config", action="store_true",
                        help="print the effective settings and where each came from, "
                             "then exit: 0 if chatd would start with them, 78 with the "
                             "first error if not")
    for setting in dataclasses.fields(Config):
        flag = "--" + setting.name.replace("_", "-")
        if setting.type is bool:
            # `--limit-loopback` alone means yes; `--guests no` says no.
            default = "yes" if setting.default else "no"
            parser.add_argument(flag, dest=setting.name, metavar="yes|no", nargs="?",
                                const="yes",
                                help=f"{setting.metadata['help']} (default: {default})")
            continue
        parser.add_argument(flag, dest=setting.name, metavar=setting.type.__name__.upper(),
                            help=f"{setting.metadata['help']} (default: {setting.default})")
    return parser.parse_args(argv)


def load_config(argv=None, environ=None) -> Config:
    """Build the Config from defaults, a TOML file, CHATD_* variables and flags."""
    return load_settings(argv, environ)[0]


def load_settings(argv=None, environ=None, arguments=None) -> tuple[Config, dict]:
    """The Config, and where each setting came from: {name: source}.

    A source is "default", "file PATH", "environment CHATD_NAME" or "flag
    --name"; the last one to set a value wins (flags over environment over
    file over defaults). `arguments`, when given, are `parse_arguments`'s
    answer (then `argv` is not read). Raises ConfigError (a ValueError) or
    OSError.
    """
    if arguments is None:
        arguments = parse_arguments(argv)
    environ = os.environ if environ is None else environ
    values = {}
    sources = {name: "default" for name in SETTINGS}
    config_file = arguments.config or environ.get(ENV_PREFIX + "CONFIG")
    if config_file:
        with open(config_file, "rb") as file:
            try:
                table = tomllib.load(file)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError([f"{config_file}: not TOML: {exc}"]) from None
        for key, value in table.items():
            name = key.replace("-", "_")
            if name not in SETTINGS:
                raise ConfigError([f"{config_file}: unknown setting {key!r}"])
            values[name] = _convert(name, value)
            sources[name] = f"file {config_file}"
    for name in SETTINGS:
        variable = ENV_PREFIX + name.upper()
        if variable in environ:
            values[name] = _convert(name, environ[variable])
            sources[name] = f"environment {variable}"
    for name in SETTINGS:
        flag = getattr(arguments, name)
        if flag is not None:
            values[name] = _convert(name, flag)
            sources[name] = "flag --" + name.replace("_", "-")
    return Config(**values), sources


def describe(config: Config, sources: dict) -> str:
    """The settings as TOML (so they can be kept as a config file), each line
    commented with where its value came from."""
    lines = []
    for name in SETTINGS:
        value = getattr(config, name)
        source = sources[name]
        if name == "cluster" and value:
            from .cluster.resp import redacted
            if redacted(value) != value:
                value, source = redacted(value), source + " (password hidden)"
        text = json.dumps(value) if isinstance(value, (str, bool)) else repr(value)
        lines.append(f"{name} = {text}  # {source}")
    return "\n".join(lines) + "\n"
