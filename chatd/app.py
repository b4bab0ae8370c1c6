"""The daemon's wiring: the loop, the listener bound to chat/1, the core, and shutdown.

`Server(config).start()` binds; `serve_forever()` runs the loop until a
signal (or `request_shutdown()`) has let every connection say goodbye.
Each new capability plugs in here: another listener with its protocol
factory, a worker whose completions come back through the loop.
"""

import ipaddress
import logging
import signal

from . import reload, tls
from .cluster import wiring as cluster
from .cluster.resp import redacted
from .accounts import AccountLink
from .address_limits import AddressLimits
from .chat_protocol import ChatService
from .config import Config
from .core import ChatCore
from .http_metrics import MetricsService
from .listeners import Listener, raise_fd_limit
from .loop import EventLoop
from .metrics import Metrics
from .sockets import ServedSockets, open_sockets
from .store import StoreLink, open_store
from .systemd import Notifier, adopt_listeners
from .tls_transport import TLSTransport
from .transport import Connections, OutputLimits, Transport
from .ws_service import WebService

log = logging.getLogger("chatd")

# Scrapers served at once: a few, so they cannot crowd out chat.
METRICS_MAX_CONNECTIONS = 16


def _loopback(host: str) -> bool:
    """True for an address only this machine can reach."""
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


class Server:
    """One chatd: `start()` -> (host, port) bound, `serve_forever()`, `request_shutdown()`.

    Shutdown (first SIGTERM/SIGINT): stop accepting, send every client
    `bye` {shutdown}, flush for up to `shutdown_timeout` seconds, then
    stop; a second signal stops at once.
    """

    def __init__(self, config: Config, notifier: Notifier | None = None,
                 passed_fds: list | None = None, metrics_socket=None, tls_socket=None,
                 ws_socket=None):
        """`notifier` tells systemd how it goes (sd_notify); `passed_fds` are
        the sockets systemd passed, [(fd, name)] (socket activation). Both
        come from the environment in `__main__`, never from here, so a
        server embedded in a test ignores the environment it runs in.
        `metrics_socket`: a listening socket already bound for metrics
        (serves metrics whatever `metrics_port` says; tests use one on port 0).
        `tls_socket`: the same for chat/1 over TLS (`tls_cert` and `tls_key`
        still say what it serves). `ws_socket`: the same for the web client and
        WebSocket (HTTPS when `tls_cert` is set)."""
        self.config = config
        self.notifier = notifier if notifier is not None else Notifier(None)
        self.passed_fds = passed_fds or []
        self.loop = EventLoop()
        limits = OutputLimits(
            write_per_turn=config.write_per_turn, soft=config.output_soft_limit,
            soft_seconds=config.output_soft_seconds, hard=config.output_hard_limit)
        self.connections = Connections(self.loop, limits, config.flush_linger)
        # Per client address, over the chat listeners (plaintext, TLS, web) together.
        self.address_limits = self.connections.address_limits = AddressLimits(
            config.address_connections, config.address_connects, config.address_window,
            config.limit_loopback)
        # Scrapers have their own set: they count against their listener's
        # few places, never against max_clients.
        self.metrics_connections = Connections(self.loop, limits)
        self.metrics_socket = metrics_socket
        self.metrics_listener: Listener | None = None
        self.metrics_address = None
        self.max_clients = config.max_clients
        self.chat: ChatService | None = None
        self.listener: Listener | None = None
        self.address = None
        self.tls_socket = tls_socket
        self.tls_context = None   # for new TLS connections; SIGHUP replaces it
        self.tls_listener: Listener | None = None
        self.tls_address = None
        self.ws_socket = ws_socket
        self.web_listener: Listener | None = None
        self.web: WebService | None = None   # the web listener's shared state (metrics)
        self.web_address = None
        self._shutting_down = False

    def start(self) -> tuple:
        """Raise the open-files limit, bind, open the store and listen; return the
        address chat/1 is served on: the plaintext one, or with no_plaintext the TLS one.

        Raises OSError when the address cannot be bound, StoreError when the
        store's file must not be used, TLSSetupError when the certificate or
        key (or the cluster's TLS files) cannot be loaded or no_plaintext has
        no TLS listener (chatd then exits 78).
        """
        config = self.config
        # Before any socket is opened: files that cannot be loaded stop the start.
        cluster_tls = cluster.tls_context(config) if config.cluster else None
        adopted = adopt_listeners(self.passed_fds)
        metrics_on = (self.metrics_socket or adopted.get("metrics")) is not None \
            or config.metrics_port != 0
        extra = METRICS_MAX_CONNECTIONS if metrics_on else 0
        self.max_clients = max(1, raise_fd_limit(config.max_clients + extra) - extra)
        served = open_sockets(config, adopted, {"metrics": self.metrics_socket,
                                                "tls": self.tls_socket, "web": self.ws_socket},
                              bool(self.passed_fds), self._load_tls)
        try:
            # A cluster keeps its state in Redis: no store file of its own.
            store = open_store("memory" if config.cluster else config.store,
                               config.retention, config.history)
        except Exception:
            served.close()
            raise
        sock, tls_sock, ws_sock, metrics_sock = served.chat, served.tls, served.web, \
            served.metrics
        if config.cluster:
            log.info("cluster: through Redis at %s", redacted(config.cluster))
        elif store.durable:
            log.info("store: %s (epoch %s)", store.path, store.epoch)
            if store.crashed:
                log.warning("store: the last run did not shut down cleanly; every room's ids "
                            "go on above %d", store.id_floor)
        else:
            log.info("store: memory only; history ends with this process (epoch %s)",
                     store.epoch)
            log.info("accounts: memory only; they end with this process")
        if config.cluster:
            core = cluster.core(config.chat_settings(max_clients=self.max_clients))
        else:
            core = ChatCore(config.chat_settings(max_clients=self.max_clients), store.epoch,
                            store.durable, store.lobby, accounts=store.accounts,
                            pairs=store.pairs)
        self.chat = ChatService(self.loop, self.connections, core,
                                config.handshake_timeout, config.idle_timeout)
        if config.cluster:
            self.chat.cluster = cluster.node(self.loop, config, core, self.chat.complete,
                                             cluster_tls)
        if store.durable:
            self.chat.store = StoreLink(self.loop, store.writer, self.chat.complete)
        self.chat.accounts = AccountLink(self.loop, self.chat.complete)
        if sock is not None:
            self.listener = Listener(self.loop, self.connections, sock, self.chat.protocol,
                                     config.accepts_per_turn, self.max_clients,
                                     address_limits=self.address_limits)
            self.listener.start()
            self.address = self.listener.address
        if tls_sock is not None:
            self.tls_listener = Listener(self.loop, self.connections, tls_sock,
                                         self.chat.protocol, config.accepts_per_turn,
                                         self.max_clients, transport_factory=self._tls_transport,
                                         address_limits=self.address_limits)
            self.tls_listener.start()
            self.tls_address = self.tls_listener.address
            log.info("TLS on %s:%d", *self.tls_address)
            if self.address is not None and not _loopback(self.address[0]):
                log.warning("plaintext chat/1 on %s:%d can be read by anyone on the path, "
                            "reconnect tokens included; TLS is on %s:%d", *self.address[:2],
                            *self.tls_address)
        if ws_sock is not None:
            self._start_web(ws_sock)
        if metrics_sock is not None:
            metrics = MetricsService(self.loop, Metrics(self))
            self.metrics_listener = Listener(self.loop, self.metrics_connections, metrics_sock,
                                             metrics.protocol, config.accepts_per_turn,
                                             METRICS_MAX_CONNECTIONS,
                                             open_log_level=logging.DEBUG)
            self.metrics_listener.start()
            self.metrics_address = self.metrics_listener.address
            log.info("metrics on %s:%d", *self.metrics_address)
        log.info(self._status())
        self.notifier.ready(self.loop, self._status())
        return self.address or self.tls_address

    def _status(self) -> str:
        """Where chat/1 is served, for the log and systemd's STATUS=."""
        if self.address is None:
            return "listening on %s:%d (TLS only)" % self.tls_address[:2]
        return "listening on %s:%d" % self.address[:2]

    def _load_tls(self, served: ServedSockets) -> None:
        """Load the TLS context when a listener will need it: the TLS port (given,
        passed or to bind) or the web port with a certificate.  Raises
        tls.TLSSetupError when the files cannot be loaded."""
        config = self.config
        if served.tls is not None or config.tls_port or (served.web is not None
                                                         and config.tls_cert):
            self.tls_context = tls.load_server_context(
                config.tls_cert, config.tls_key, config.tls_client_ca or None)

    def _start_web(self, sock) -> None:
        """Serve the web client and chat/1 over WebSocket on `sock`: connections
        count against max_clients like any chat connection; TLS when tls_cert is set."""
        secure = bool(self.config.tls_cert)
        web = self.web = WebService(self.chat, self.config.web_origins(), secure)
        self.web_listener = Listener(
            self.loop, self.connections, sock, web.protocol, self.config.accepts_per_turn,
            self.max_clients, transport_factory=self._tls_transport if secure else Transport,
            address_limits=self.address_limits)
        self.web_listener.start()
        self.web_address = self.web_listener.address
        log.info("web client on %s://%s:%d/", "https" if secure else "http",
                 *self.web_address)

    def _tls_transport(self, connections, sock, peer) -> TLSTransport:
        """A new TLS connection's transport, with the context of the moment."""
        return TLSTransport(connections, sock, peer, self.tls_context)

    def reload_tls(self) -> bool:
        """Read the certificate and key again (SIGHUP): new connections get a new
        context, open ones keep theirs; a failed load keeps the old one and
        logs why.  True if replaced (False too when TLS is off)."""
        if self.tls_context is None:
            return False
        config = self.config
        try:
            self.tls_context = tls.load_server_context(config.tls_cert, config.tls_key,
                                                       config.tls_client_ca or None)
        except tls.TLSSetupError as exc:
            log.error("TLS reload failed, new connections keep the certificate loaded "
                      "before: %s", exc)
            return False
        log.warning("TLS certificate reloaded from %s", config.tls_cert)
        return True

    @property
    def core(self) -> ChatCore:
        """The chat core (after `start`)."""
        return self.chat.core

    @property
    def disconnects(self):
        """Closed connections by reason (a Counter), as logged at exit."""
        return self.chat.disconnects

    def install_signal_handlers(self, reread=None) -> None:
        """SIGTERM and SIGINT begin the shutdown; SIGHUP calls `reread()` for the
        settings as a start would read them and applies them (reload.py).
        Main thread only."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self._on_signal)
        if reread is not None:
            self.loop.add_signal_handler(signal.SIGHUP, lambda signum: self.reload(reread))

    def reload(self, reread) -> bool:
        """Apply the settings `reread()` returns if all of them may change live.

        Logs what changed, or why nothing did; True if applied.  Tells
        systemd RELOADING=1 then READY=1 around it.
        """
        self.notifier.reloading()
        try:
            try:
                new = reread()
                changed = reload.changes(self.config, new)
            except (ValueError, OSError) as exc:
                log.error("reload refused, nothing changed: %s", exc)
                return False
            self._apply(new)
            log.warning("reloaded: %s", ", ".join(
                f"{name} {old!r} -> {value!r}" for name, (old, value) in changed.items())
                or "nothing changed")
            self.reload_tls()
            return True
        finally:
            self.notifier.ready(self.loop, self._status())

    def _apply(self, config: Config) -> None:
        """Hand the LIVE settings of `config` to the parts that use them."""
        self.config = config
        logging.getLogger().setLevel(config.log_level.upper())
        self.max_clients = raise_fd_limit(config.max_clients)
        self.connections.limits = OutputLimits(
            write_per_turn=config.write_per_turn, soft=config.output_soft_limit,
            soft_seconds=config.output_soft_seconds, hard=config.output_hard_limit)
        self.connections.flush_linger = config.flush_linger
        for listener in (self.listener, self.tls_listener, self.web_listener):
            if listener is not None:
                listener.max_connections = self.max_clients
                listener.accepts_per_turn = config.accepts_per_turn
        limits = self.address_limits
        limits.concurrent, limits.connects = config.address_connections, config.address_connects
        limits.window, limits.limit_loopback = config.address_window, config.limit_loopback
        self.chat.handshake_timeout = config.handshake_timeout
        self.chat.idle_timeout = config.idle_timeout
        self.chat.core.reconfigure(config.chat_settings(max_clients=self.max_clients))
        if self.chat.store is not None:
            self.chat.store.set_retention(config.retention)

    def request_shutdown(self) -> None:
        """What SIGTERM does, callable from any thread."""
        self.loop.call_soon_threadsafe(self._on_signal, signal.SIGTERM)

    def serve_forever(self) -> bool:
        """Serve until shut down; True if everything acknowledged is stored."""
        try:
            self.loop.run_forever()
        finally:
            stored = self._close_everything()
        return stored

    def _on_signal(self, signum: int) -> None:
        if self._shutting_down:
            log.warning("second signal: exiting now")
            self.loop.stop()
            return
        log.info("longest loop turn so far: %.1f ms; %d sends for %d deliveries",
                 self.loop.longest_turn * 1000, self.connections.sends, self.chat.deliveries)
        log.info("%s: closing %d connections", signal.Signals(signum).name,
                 len(self.connections.open))
        self._shutting_down = True
        self.notifier.stopping()
        self.loop.call_later(self.config.shutdown_timeout, self.loop.stop)
        for listener in (self.listener, self.tls_listener, self.web_listener):
            if listener is not None:
                listener.close()
        if self.metrics_listener is not None:
            self.metrics_listener.close()
            for transport in list(self.metrics_connections.open):
                transport.protocol.shutdown()
        self.connections.begin_shutdown(when_empty=self.loop.stop)
        self.chat.shutting_down = True
        if self.chat.cluster is not None:
            self.chat.cluster.retire()
        for transport in list(self.connections.open):
            transport.protocol.shutdown()

    def _close_everything(self) -> bool:
        self.notifier.stopping()
        self.notifier.close()
        self.connections.close_all()
        self.metrics_connections.close_all()
        self.loop.run_ready()  # the reaps of those last closes, the last store batch
        if self.listener is not None:
            self.listener.close()
        if self.tls_listener is not None:
            self.tls_listener.close()
        elif self.tls_socket is not None:
            self.tls_socket.close()
        if self.web_listener is not None:
            self.web_listener.close()
        elif self.ws_socket is not None:
            self.ws_socket.close()
        if self.metrics_listener is not None:
            self.metrics_listener.close()
        elif self.metrics_socket is not None:
            self.metrics_socket.close()
        stored = True
        self.chat.accounts.close(self.config.shutdown_timeout)
        if self.chat.cluster is not None:
            self.chat.cluster.close()
        store = self.chat.store
        if store is not None:
            stored = store.close(self.config.shutdown_timeout)
            if stored:
                log.info("store: %d messages in %d batches (largest %d, longest wait "
                         "%.1f ms); closed cleanly", store.rows_committed, store.batches,
                         store.largest_batch, store.longest_lag * 1000)
            else:
                log.error("store: could not commit everything before exiting; the next "
                          "start moves ids past what may be missing")
        self.loop.close()
        log.info("disconnects by reason: %s",
                 ", ".join(f"{reason}={count}" for reason, count
                           in sorted(self.disconnects.items())) or "none")
        return stored
