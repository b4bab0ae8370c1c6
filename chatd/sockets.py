"""The listening sockets one start of chatd serves, and where each comes from.

Each listener's socket is, in this order: one the caller gave (a test binds
port 0 itself), one systemd passed under its name (socket activation:
"chat", "tls", "metrics"; see chatd/systemd.py), or one bound here from the
settings.  Deciding that is all this module does; what is served on each is
the Server's business (chatd/app.py).
"""

import logging
import socket
from dataclasses import dataclass

from . import tls
from .config import Config
from .listeners import bind

log = logging.getLogger("chatd")


@dataclass
class ServedSockets:
    """The listening sockets of one start; None where that listener is off."""

    chat: socket.socket | None = None
    tls: socket.socket | None = None
    web: socket.socket | None = None
    metrics: socket.socket | None = None

    def close(self) -> None:
        """Close every one (a start that failed half-way)."""
        for sock in (self.chat, self.tls, self.web, self.metrics):
            if sock is not None:
                sock.close()


def _bound(host: str, port: int, what: str) -> socket.socket:
    """`bind(host, port)`; an OSError names which listener could not bind."""
    try:
        return bind(host, port)
    except OSError as exc:
        raise OSError(exc.errno, f"{exc.strerror} ({what} on {host}:{port})") from None


def open_sockets(config: Config, adopted: dict, given: dict, passed_any: bool,
                 tls_wanted) -> ServedSockets:
    """The sockets to serve: `given` ({"tls"|"web"|"metrics": socket}) first,
    then `adopted` (from systemd, by name), else bound from `config`.

    `passed_any`: systemd passed sockets at all (a missing chat one is then
    worth a warning).  `tls_wanted(served)` is called once the TLS and web
    sockets are known and before the TLS port is bound; it loads the TLS
    context when one is needed and raises what loading raises.

    Raises OSError when a socket cannot be bound, tls.TLSSetupError when
    no_plaintext leaves no TLS listener; every socket already open is closed
    first.
    """
    served = ServedSockets()
    served.chat = adopted.get("chat")
    if config.no_plaintext:
        if served.chat is not None:
            log.warning("systemd: passed chat socket (fd %d) closed: no_plaintext serves "
                        "TLS only", served.chat.fileno())
            served.chat.close()
            served.chat = None
    elif served.chat is not None:
        log.info("systemd: serving the socket passed as fd %d (host and port settings "
                 "unused)", served.chat.fileno())
    else:
        if passed_any:
            log.warning("systemd: no chat socket among those passed; binding %s:%d",
                        config.host, config.port)
        served.chat = bind(config.host, config.port)
    try:
        served.metrics = given.get("metrics") or adopted.get("metrics")
        if served.metrics is None and config.metrics_port:
            served.metrics = _bound(config.metrics_host, config.metrics_port, "metrics")
        served.tls = given.get("tls") or adopted.get("tls")
        # Here, not in Config.problems: only now is a passed `tls` socket known.
        if config.no_plaintext and served.tls is None and not config.tls_port:
            raise tls.TLSSetupError("no_plaintext needs a TLS listener: tls_port, or a "
                                    "socket systemd passes named tls")
        if served.tls is not None and served.tls is not given.get("tls"):
            log.info("systemd: serving TLS on the socket passed as fd %d (host and "
                     "tls_port settings unused)", served.tls.fileno())
        served.web = given.get("web") or adopted.get("web")
        if served.web is not None and served.web is not given.get("web"):
            log.info("systemd: serving the web client on the socket passed as fd %d (host "
                     "and ws_port settings unused)", served.web.fileno())
        if served.web is None and config.ws_port:
            served.web = _bound(config.host, config.ws_port, "web")
        tls_wanted(served)
        if served.tls is None and config.tls_port:
            served.tls = _bound(config.host, config.tls_port, "TLS")
    except Exception:
        served.close()
        raise
    return served
