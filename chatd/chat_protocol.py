"""chat/1 on a transport: bytes to requests for the core, the core's effects to frames.

One `ChatProtocol` per connection, made by `ChatService.protocol`.  It owns
the decoder and a deadline on the service's watchdogs (the hello deadline,
then the idle timeout), feeds each decoded item to the chat core and
carries out the effects that come back: `Deliver` is framed once and the same bytes
appended to every recipient's output; `Close` says `bye` and closes.
"""

import logging
import time
from collections import Counter

import framing
from framing import REQUESTS, Decoder

from . import logs
from .core import ChatCore, CheckPassword, Close, Deliver, Session
from .transport import State
from .watchdogs import Watchdogs

log = logging.getLogger("chatd")

_OPEN = State.OPEN


class ChatService:
    """What every chat/1 connection of one server shares: the core, the
    timeouts, the disconnect counts and the fan-out.

    `handshake_timeout` and `idle_timeout` are in seconds; `disconnects`
    counts closed connections by reason (logged at exit).
    """

    def __init__(self, loop, connections, core: ChatCore, handshake_timeout: float,
                 idle_timeout: float):
        self.loop = loop
        self.connections = connections
        self.core = core
        self.max_frame = core.settings.max_frame
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.watchdogs = Watchdogs(loop)   # every connection's hello or idle deadline
        self.disconnects: Counter[str] = Counter()
        # Frames queued to recipients: a frame (or a run of n says) to m
        # recipients counts m (n * m); one addition per queue call, none per
        # recipient.  For metrics.
        self.deliveries = 0
        # The durable store's link (store/link.py), or None in memory mode.
        self.store = None
        # The password hasher's link (accounts.py).
        self.accounts = None
        # The cluster node (cluster/node.py) with --cluster, else None.
        self.cluster = None
        self._parked: list = []  # protocols not read while their session waits
        # Set at shutdown: closes no longer tell the core (nobody is left to
        # hear who left) and nothing more is delivered.
        self.shutting_down = False

    def protocol(self) -> "ChatProtocol":
        """A protocol for one new connection (the listener's factory)."""
        return ChatProtocol(self)

    def apply(self, effects: list) -> None:
        """Carry out what the core returned, in order."""
        for effect in effects:
            kind = type(effect)
            if kind is Deliver:
                self.queue(effect.recipients, framing.frame(effect.payload, self.max_frame))
            elif kind is Close:  # the core has ended the session already
                effect.session.begin_close(effect.reason, ref=effect.ref)
            elif kind is CheckPassword:  # its answer comes back through complete()
                self.accounts.take(effect)
            elif self.cluster is not None:  # its answer comes back through complete()
                self.cluster.take(effect)
            else:  # for the store: its answer comes back through complete()
                self.store.take(effect)

    def complete(self, completion) -> None:
        """A completion from a worker (the store's or the hasher's) into the core, its effects out.

        Then reads again from the sessions it let go on.
        """
        self.apply(self.core.complete(completion))
        if self._parked:
            waiting = []
            for protocol in self._parked:
                if protocol.deferred is None or protocol.ended:
                    protocol.transport.resume_reading()  # a no-op once closed
                else:
                    waiting.append(protocol)
            self._parked = waiting

    def park(self, protocol: "ChatProtocol") -> None:
        """`protocol`'s session waits for the store: read nothing more from it until
        it goes on, so what it queues meanwhile is bounded by one read."""
        if not protocol.transport.reading_paused:
            protocol.transport.pause_reading()
            self._parked.append(protocol)

    def queue(self, recipients, data: bytes, frames: int = 1) -> None:
        """Give `data` to every recipient's output: the hot path of every broadcast.

        Transport.write and Connections.schedule are inlined: a call per
        recipient would be a large share of a fan-out's cost (measured: two
        calls per recipient per turn cost 15% of server CPU at R=100).  The
        same bytes object goes to everyone.  `data` holds `frames` frames
        (a run of says), for the deliveries count.
        """
        size = len(data)
        self.deliveries += frames * len(recipients)
        connections = self.connections
        pending = connections.pending
        flush_queued = bool(pending)
        for session in recipients:
            transport = session.transport
            output = transport.output
            output.chunks.append(data)
            output.size += size
            if not transport.scheduled:
                transport.scheduled = True
                pending.append(transport)
        if not flush_queued and pending:
            connections.arrange_flush()

    def queue_run(self, room, payloads: list) -> None:
        """Queue a run of `msg` payloads to `room`'s members as one chunk, and empty it."""
        self.queue(room.members, framing.frames(payloads, self.max_frame), len(payloads))
        payloads.clear()


class ChatProtocol(Session):
    """One chat/1 connection: the core's Session for it, and its transport's protocol.

    One object instead of two saves a pointer hop per recipient on the
    fan-out path; the core uses only the Session slots.
    """

    __slots__ = ("service", "transport", "decoder", "last_frame_at", "watch_slot")

    def __init__(self, service: ChatService):
        Session.__init__(self)
        self.service = service
        self.transport = None
        self.decoder = Decoder(service.max_frame, REQUESTS)
        self.watch_slot = None   # written by the service's Watchdogs

    # ------------------------------------------------------ transport events

    def connection_made(self, transport) -> None:
        """Watch the hello deadline (`_hello_timeout`); after hello, a frame per idle_timeout."""
        self.transport = transport
        self.address = transport.peer[0]  # for the core's failed-login limiter
        now = self.service.loop.time()
        self.last_frame_at = now
        # Before hello one deadline, which frames do not move: the first
        # watchdog firing finds the session welcomed or closes it.
        self.service.watchdogs.watch(self, now + self._hello_timeout())

    def data_received(self, data) -> None:
        """Decode `data` (a memoryview of the shared buffer) and hand each item to the core."""
        items = self.decoder.feed(data)
        if not items:
            return
        self.last_frame_at = time.monotonic()
        service = self.service
        receive = service.core.receive
        # Consecutive room broadcasts of this read to one room are queued as
        # one joined chunk: each member then costs one append per read, not
        # one per message.  Only a `say` may join a run (it cannot change
        # who is in the room); anything else queues the run first.
        run_room, run = None, []
        for item in items:
            is_say = type(item) is dict and item["type"] == "say"
            if run and not is_say:
                service.queue_run(run_room, run)
            effects = receive(self, item)
            # A say's broadcast to its room comes first, followed only by the
            # store's copy of the message (durable store).
            if is_say and effects and type(effects[0]) is Deliver \
                    and effects[0].room is not None:
                room = effects[0].room
                if run and room is not run_room:
                    service.queue_run(run_room, run)
                run_room = room
                run.append(effects[0].payload)
                if len(effects) > 1:
                    service.apply(effects[1:])
                continue
            if run:
                service.queue_run(run_room, run)
            service.apply(effects)
            if self.ended:
                break
        if run:
            service.queue_run(run_room, run)
        if self.deferred is not None:
            service.park(self)
        elif service.store is not None and service.store.congested:
            service.store.pause(self.transport)

    def eof_received(self) -> None:
        """End of input is a disconnect: said as `quit`, counted as `disconnect`."""
        self.begin_close("quit", counted_as="disconnect")

    def slow_consumer(self, why: str) -> None:
        """The transport dropped unsent output: `too_slow`, then close."""
        self.begin_close("too_slow", error=("too_slow", f"{why}; disconnecting"))

    def over_capacity(self, why: str) -> None:
        """One connection beyond max_clients or a per-address limit (`why`, the
        error's message): `server_full`, then close."""
        self.begin_close("server_full", error=("server_full", why))

    def shutdown(self) -> None:
        """The server stops: `bye` {shutdown} after what is owed."""
        self.begin_close("shutdown")

    def connection_lost(self, reason: str | None) -> None:
        """The socket closed; with a `reason`, the session had not begun to close."""
        self.service.watchdogs.forget(self)
        if reason is not None:
            self._count_and_end(reason)

    def _count_and_end(self, reason: str) -> None:
        """Count the disconnect, let the core end the session (not at shutdown:
        nobody is left to hear who left), log it."""
        service = self.service
        service.disconnects[reason] += 1
        if not service.shutting_down:
            service.apply(service.core.end(self, reason))
        log.info("closing %s:%d (%s)", *self.transport.peer, reason,
                 extra=logs.connection(self.transport.peer, reason))

    # ----------------------------------------------------------------- closing

    def begin_close(self, reason: str, error: tuple[str, str] | None = None,
                    counted_as: str | None = None, ref=None) -> None:
        """Stop serving: [error,] `bye` {reason[, ref]}, then close once flushed.

        `counted_as` is the disconnect reason when it differs from the bye's
        (end of input is counted as `disconnect` but said as `quit`).
        """
        transport = self.transport
        if transport.state is not _OPEN:
            return
        self._count_and_end(counted_as or reason)
        self.service.watchdogs.forget(self)
        if error is not None:
            self.service.core.out.errors[error[0]] += 1
            transport.write(framing.encode({"type": "error", "code": error[0],
                                            "message": error[1]}))
        bye = {"type": "bye", "reason": reason}
        if ref is not None:
            bye["ref"] = ref
        transport.write(framing.encode(bye))
        transport.close()

    # ---------------------------------------------------------------- timers

    def _hello_timeout(self) -> float:
        """Seconds a connection has to say hello: handshake_timeout, or
        idle_timeout if that is shorter (an unwelcomed connection is idle too)."""
        return min(self.service.handshake_timeout, self.service.idle_timeout)

    def deadline_passed(self) -> None:
        """The hello deadline or the idle timeout, whichever is due; else watch
        for the next (the service's Watchdogs call it).

        The hello deadline is the first one armed (connection_made) and no
        frame moves it: a session still without a name then is closed.
        Afterwards the idle deadline is re-armed lazily from `last_frame_at`
        instead of on every frame.
        """
        service = self.service
        if self.name is None:
            self.begin_close("timeout", error=(
                "timeout", f"no hello within {self._hello_timeout():g}s"))
            return
        idle_deadline = self.last_frame_at + service.idle_timeout
        if service.loop.time() >= idle_deadline:
            self.begin_close("timeout", error=(
                "timeout", f"no frame for {service.idle_timeout:g}s"))
        else:
            service.watchdogs.watch(self, idle_deadline)
