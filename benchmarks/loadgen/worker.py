"""One generator process: open its share of the connections, complete every
handshake, then run one scenario on a selectors loop and report counts.

The parent (benchmarks/load.py) starts one or more of these with `--procs`,
says "go" with a start time on the shared monotonic clock, and merges the
results.  Every loop here ends by a deadline as well as by its count.
"""

import select
import socket
import ssl
import time
from collections import deque

from chatd.tls import client_context

from .clients import ROOM_STREAM, Chat1Client, RespClient, message_text
from .ws_client import WSChat1Client
from .histogram import LogHistogram
from .tls import SERVER_NAME

# Handshakes left unanswered at once per process, so a connect storm stays
# within the server's listen backlog.
CONNECT_AHEAD = 256
# Reads go into one preallocated buffer (recv() of a new 256 KiB bytes object
# cost an mmap and munmap per call), so a read may be as big as the socket holds.
RECV_SIZE = 1024 * 1024
# After the senders stop: the run is over once no byte came for this long...
QUIET_SECONDS = 0.5
# ...or after this long at most; what has not arrived by then is lost.
DRAIN_SECONDS = 10.0
# A ping without its pong after this long counts as lost.
PING_TIMEOUT = 2.0
PROGRESS_SECONDS = 1.0

_READ, _WRITE = select.EPOLLIN, select.EPOLLOUT
# Errors and hang-ups are reported as readable: the read then sees them.
_READABLE = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP
# A TLS read decrypts one record (at most 16 KiB) per call: a readable TLS
# socket is read record after record while this much of the buffer is left.
TLS_RECORD = 16 * 1024 + 256


def receive_tls(sock, view) -> int | None:
    """Read a TLS socket into `view` until it has no whole record left: the
    plaintext bytes read, 0 at the end of the stream, None when none was
    ready (ssl.SSLWantReadError, as BlockingIOError on a plain socket)."""
    size, room = 0, len(view) - TLS_RECORD
    while size <= room:
        try:
            count = sock.recv_into(view[size:])
        except ssl.SSLWantReadError:
            return size or None
        if not count:
            return size  # the end of the stream (0), or what came before it
        size += count
    return size


class Worker:
    def __init__(self, spec: dict, pipe):
        self.spec = spec
        self.pipe = pipe
        # epoll itself rather than `selectors`: its per-event bookkeeping is
        # generator time taken from reading.
        self.epoll = select.epoll()
        self.by_fd: dict = {}
        self.sender_fds: set = set()
        self.client_class = {"chat1": Chat1Client, "ws": WSChat1Client,
                             "resp": RespClient}[spec["dialect"]]
        # TLS targets: a client context trusting the target's CA (None: plaintext).
        self.tls = client_context(spec["tls_ca"]) if spec.get("tls_ca") else None
        self.stream = self.client_class.new_stream()
        self.recv_buffer = bytearray(RECV_SIZE)
        self.recv_view = memoryview(self.recv_buffer)  # never resized, so never released
        self.delivery_sample = LogHistogram()
        self.latency = LogHistogram()
        self.receivers: list = []
        self.senders: list = []
        self.writing: set = set()
        self.closed = 0
        self.last_data_at = 0.0
        self.measuring = False
        self.window_start = self.window_end = 0.0
        self.stop_at = 0.0            # when the senders stop; set by timed_run
        self.send_times: dict = {}    # sender -> due times of its unacknowledged messages
        self.top_up = None            # the closed loop's refill, called on acknowledgements

    # ------------------------------------------------------------- setup

    def run(self) -> None:
        started = time.monotonic()
        self.connect_all()
        failed = [c for c in self.receivers + self.senders if not c.welcomed]
        self.pipe.send(("ready", {
            "connected": len(self.receivers) + len(self.senders) - len(failed),
            "failed": len(failed),
            "failures": sorted({c.failed or "no answer" for c in failed})[:3],
            "seconds": time.monotonic() - started}))
        if not self.pipe.poll(self.spec["setup_timeout"]):
            return
        command, start_at = self.pipe.recv()
        if command != "go":
            return
        result = getattr(self, "run_" + self.spec["scenario"])(start_at)
        result["bad_frames"] = sum(c.bad_frames for c in self.receivers + self.senders) \
            + self.stream.bad_frames
        result["closed_by_server"] = self.closed
        self.pipe.send(("result", result))

    def connect_all(self) -> None:
        spec = self.spec
        deadline = time.monotonic() + spec["setup_timeout"]
        # Receiver i and sender i go to address i mod the count: on a cluster
        # (several nodes) receivers and senders alike are split over the nodes.
        addresses = spec["addresses"]
        wanted = [(f"r{index}", None, addresses[index % len(addresses)])
                  for index in spec["receiver_indexes"]] + \
                 [(f"s{index}", index, addresses[index % len(addresses)])
                  for index in spec["sender_indexes"]]
        waiting = 0
        for name, sender, address in wanted:
            sock = socket.create_connection(address, timeout=spec["setup_timeout"])
            if self.tls is not None:  # the handshake, blocking (within the timeout)
                sock = self.tls.wrap_socket(sock, server_hostname=SERVER_NAME)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = self.client_class(sock, name, sender, self.delivery_sample, self.stream)
            (self.receivers if sender is None else self.senders).append(client)
            self.by_fd[sock.fileno()] = client
            if sender is not None:
                self.sender_fds.add(sock.fileno())
            self.epoll.register(sock.fileno(), _READ)
            client.hello()
            self.send(client)
            waiting += 1
            if waiting >= CONNECT_AHEAD:
                waiting = self.wait_welcomes(CONNECT_AHEAD // 2, deadline)
        self.wait_welcomes(0, deadline)
        for client in self.receivers + self.senders:
            client.events.clear()

    def wait_welcomes(self, at_most: int, deadline: float) -> int:
        """Serve the loop until at most `at_most` handshakes are unanswered."""
        while True:
            unanswered = sum(1 for c in self.receivers + self.senders
                             if not c.welcomed and c.failed is None)
            if unanswered <= at_most or time.monotonic() > deadline:
                return unanswered
            self.pump(0.05)

    # -------------------------------------------------------------- loop

    def send(self, client) -> None:
        if client.flush():
            if client in self.writing:
                self.writing.discard(client)
                self.epoll.modify(client.sock.fileno(), _READ)
        elif client not in self.writing:
            self.writing.add(client)
            self.epoll.modify(client.sock.fileno(), _READ | _WRITE)

    def pump(self, timeout: float) -> None:
        """One turn of the selectors loop: read what came, write what is owed."""
        events = self.epoll.poll(max(0.0, timeout))
        # Senders first: their acknowledgements release the next messages,
        # which the server can then work on while the receivers are read.
        senders = self.sender_fds
        if senders:
            events = [e for e in events if e[0] in senders] + \
                [e for e in events if e[0] not in senders]
        by_fd = self.by_fd
        buffer, view, tls = self.recv_buffer, self.recv_view, self.tls
        got_data = False
        for fd, mask in events:
            client = by_fd.get(fd)
            if client is None:
                continue
            if mask & _READABLE:
                try:
                    if tls is None:
                        size = client.sock.recv_into(buffer)
                    else:
                        size = receive_tls(client.sock, view)
                except (BlockingIOError, InterruptedError):
                    size = None
                except OSError:
                    size = 0
                if size:
                    client.feed(view[:size])
                    got_data = True
                    if client.sender is not None:
                        self.on_ack(client)
                elif size == 0:
                    self.closed += 1
                    client.failed = client.failed or "closed by the server"
                    self.writing.discard(client)
                    del by_fd[fd]
                    self.epoll.unregister(fd)
                    client.sock.close()
                    continue
            if mask & _WRITE:
                self.send(client)
        if got_data:
            self.last_data_at = time.monotonic()

    def on_ack(self, client) -> None:
        """Scenario hook: a sender's acknowledgements may have advanced."""

    def counts(self) -> tuple[int, int]:
        return (sum(c.delivered for c in self.receivers), sum(c.acked for c in self.senders))

    def wait_until(self, moment: float) -> None:
        while (remaining := moment - time.monotonic()) > 0:
            self.pump(remaining)

    def timed_run(self, start_at: float, send_due) -> dict:
        """Warm-up, the measured window, then the drain; `send_due(now)` sends."""
        spec = self.spec
        measure_at = start_at + spec["warmup"]
        stop_at = measure_at + spec["duration"]
        drain_until = stop_at + DRAIN_SECONDS
        self.stop_at = stop_at
        self.wait_until(start_at)
        next_progress = start_at + PROGRESS_SECONDS
        window_counts = window_cpu = None
        started_counts = (0, 0)
        while True:
            now = time.monotonic()
            if not self.measuring and window_counts is None and now >= measure_at:
                self.measuring = True
                self.window_start = now
                started_counts, window_cpu = self.counts(), time.process_time()
            if self.measuring and now >= stop_at:
                self.measuring = False
                self.window_end = now
                ended = self.counts()
                window_counts = (ended[0] - started_counts[0], ended[1] - started_counts[1])
                window_cpu = time.process_time() - window_cpu
                self.last_data_at = now
            if now >= next_progress:
                delivered, acked = self.counts()
                self.pipe.send(("progress", {"delivered": delivered, "acked": acked,
                                             "cpu": time.process_time()}))
                next_progress += PROGRESS_SECONDS
                self.trim_stream()
            if now >= stop_at:
                in_flight = sum(c.sent - c.acked for c in self.senders if c.failed is None)
                if (not in_flight and now - self.last_data_at >= QUIET_SECONDS) \
                        or now >= drain_until:
                    break
                self.pump(0.05)
                continue
            wake = send_due(now)
            self.pump(min(wake, next_progress, measure_at if not self.measuring else stop_at,
                          stop_at) - now)
        return self.result(window_counts, window_cpu, now < drain_until)

    def trim_stream(self) -> None:
        """Drop the room stream every member reading on it is past."""
        stream = self.stream
        indexes = [stream.frames_before(c.position) for c in self.receivers + self.senders
                   if c.position is not None]
        if indexes:
            stream.trim(min(indexes))

    def result(self, window_counts, window_cpu, drained: bool) -> dict:
        for client in self.receivers + self.senders:
            client.settle()
        accepted: dict = {}
        for client in self.senders:
            key = ROOM_STREAM if self.spec["dialect"] != "resp" else b"%04d" % client.sender
            accepted[key] = accepted.get(key, 0) + client.acked
        members = self.receivers + (self.senders if self.spec["dialect"] != "resp" else [])
        unique = duplicates = reorders = 0
        highest: dict = {}
        for client in members:
            for key, check in client.checks.items():
                unique += check.unique
                duplicates += check.duplicates
                reorders += check.reorders
                key = str(key, "ascii") if type(key) is bytes else key
                highest[key] = max(highest.get(key, 0), check.expected - 1)
        return {
            "delivered": window_counts[0], "acked": window_counts[1],
            "seconds": self.window_end - self.window_start, "cpu": window_cpu,
            "accepted": {str(key, "ascii") if type(key) is bytes else key: count
                         for key, count in accepted.items()},
            "highest": highest,
            "members": len(members) - sum(1 for c in members if c.failed),
            "unique": unique, "duplicates": duplicates, "reorders": reorders,
            "latency": self.latency.to_state(),
            "delivery_sample": self.delivery_sample.to_state(),
            "drained": drained,
        }

    # --------------------------------------------------------- scenarios

    def run_fanout(self, start_at: float) -> dict:
        """Closed loop: each sender keeps `window` messages unacknowledged."""
        spec = self.spec
        window, size = spec["window"], spec["text_size"]
        self.send_times = {client: deque() for client in self.senders}

        def top_up(client, now):
            times = self.send_times[client]
            while client.sent - client.acked < window:
                times.append(now)
                client.say(message_text(client.sender, client.sent + 1, now, size))
            self.send(client)

        def send_due(now):
            if self.top_up is None:  # the first turn: every sender fills its window
                self.top_up = top_up
                for client in self.senders:
                    top_up(client, now)
            return now + 0.1

        return self.timed_run(start_at, send_due)

    def run_rate(self, start_at: float) -> dict:
        """Open loop: a fixed total rate, each message timed from when it was due."""
        spec = self.spec
        size = spec["text_size"]
        interval = spec["senders_total"] / spec["rate"]
        self.send_times = {client: deque() for client in self.senders}
        # Senders are spread evenly over one interval so sends interleave.
        due = {client: start_at + interval * client.sender / spec["senders_total"]
               for client in self.senders}

        def send_due(now):
            wake = now + 0.1
            for client in self.senders:
                moment = due[client]
                if moment <= now and moment < self.stop_at:
                    times = self.send_times[client]
                    while moment <= now and moment < self.stop_at:
                        times.append(moment)
                        client.say(message_text(client.sender, client.sent + 1, moment, size))
                        moment += interval
                    due[client] = moment
                    self.send(client)
                wake = min(wake, moment)
            return wake

        return self.timed_run(start_at, send_due)

    def on_ack(self, client) -> None:
        times = self.send_times.get(client)
        if times is None:
            return
        now = time.monotonic()
        record = self.latency.record
        measuring = self.measuring
        for _ in range(client.acked - (client.sent - len(times))):
            sent_at = times.popleft()
            if measuring:
                record(now - sent_at)
        if self.top_up is not None and now < self.stop_at:
            self.top_up(client, now)

    def run_conns(self, start_at: float) -> dict:
        """Every connection idle; ping a sample one at a time and time the pong."""
        self.wait_until(start_at)
        everyone = [c for c in self.receivers if c.welcomed]
        step = max(1, len(everyone) // max(1, self.spec["ping_sample"]))
        sample = everyone[::step][:self.spec["ping_sample"]]
        deadline = start_at + self.spec["duration"]
        window_cpu = time.process_time()
        answered = lost = wrong = 0
        for number, client in enumerate(sample, 1):
            if time.monotonic() >= deadline:
                break
            sent_at = time.monotonic()
            client.ping(number)
            self.send(client)
            pong = self._wait_pong(client, sent_at + PING_TIMEOUT)
            if pong is None:
                lost += 1
            elif pong != number:
                wrong += 1
            else:
                answered += 1
                self.latency.record(time.monotonic() - sent_at)
        seconds = time.monotonic() - start_at
        return {"delivered": 0, "acked": 0, "seconds": seconds,
                "cpu": time.process_time() - window_cpu, "accepted": {},
                "highest": {}, "members": 0, "unique": 0, "duplicates": 0, "reorders": wrong,
                "ping_lost": lost, "pings": answered,
                "latency": self.latency.to_state(),
                "delivery_sample": self.delivery_sample.to_state(), "drained": True}

    def _wait_pong(self, client, deadline: float):
        while True:
            for index, event in enumerate(client.events):
                if type(event) is dict and event.get("type") == "pong":
                    del client.events[:index + 1]
                    return event.get("data")
            remaining = deadline - time.monotonic()
            if remaining <= 0 or client.failed:
                return None
            self.pump(remaining)


def worker_main(spec: dict, pipe) -> None:
    """multiprocessing target."""
    try:
        Worker(spec, pipe).run()
    except Exception as exc:  # reported to the parent rather than lost in a child
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
