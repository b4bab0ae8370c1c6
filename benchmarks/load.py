"""The load benchmark: chatd against the servers people would pick instead, in one run.

Starts each target server as its own process (chatd with `--rate-limit 0`
and its durable store in a temporary directory, chatd-memory the same with
`--store memory`, chatd-ws the same over WebSocket on its web port,
chatd-tls the same as chatd-memory over TLS only (`--no-plaintext`), the
asyncio-streams and thread-per-client baselines, and Redis pub/sub when
`redis-server` is on PATH, redis-tls the same over TLS, and chatd-cluster:
two chatd-memory nodes joined through one Redis, the members dealt over the
two in turn, benchmarks/loadgen/cluster.py), drives it from
generator processes with the same scenarios, checks that every receiver got
every accepted message once and in order, and prints one table.  For the
durable chatd it also reports the store's writer over the run (commits,
messages per commit, the longest wait for a commit), from the line chatd
logs as it exits.  With a TLS target it also reports each TLS target
against the same server over plaintext in this run (fan-out, idle memory per
connection) and the server-side TLS handshakes per second of one core
(benchmarks/loadgen/tls.py).

    python -m benchmarks.load [--scenario fanout,rate,capacity,conns] [--target chatd,asyncio,...]
                              [--receivers 100] [--senders 10] [--duration 5] [--json FILE]

Scenarios:
  fanout    closed loop: R receivers and S senders in one room, each sender
            keeping W messages unacknowledged (its own echo acknowledges);
  rate      open loop: a fixed total rate; latency from each message's due time;
  capacity  the rate scenario at rising rates (--capacity-rates), a fresh server
            each step, until the server saturates over 2 ms at p99, a message
            is lost or the generator is the limit: the highest rate that kept
            p99 <= 2 ms;
  conns     N connections complete their handshake and idle; ping a sample.
"""

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from multiprocessing.connection import wait

if not __package__:  # run as `python benchmarks/load.py`: make the packages importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.loadgen.histogram import LogHistogram  # noqa: E402
from benchmarks.loadgen.report import (CAPACITY_P99_MS, GENERATOR_BOUND,  # noqa: E402
                                       SERVER_SATURATED, format_table)
from benchmarks.loadgen.cluster import ClusterTarget  # noqa: E402
from benchmarks.loadgen.targets import (DIALECTS, LOG_LEVELS, TARGETS,  # noqa: E402
                                        TLS_TARGETS, TargetProcess, available_targets,
                                        chatd_log_level, pinning)
from benchmarks.loadgen.tls import handshakes_per_second  # noqa: E402
from benchmarks.loadgen.worker import DRAIN_SECONDS, worker_main  # noqa: E402

SCENARIOS = ("fanout", "rate", "capacity", "conns")
# Total msg/s of the capacity scenario's steps (each must keep CAPACITY_P99_MS).
CAPACITY_RATES = (2_500, 5_000, 10_000, 15_000, 20_000, 25_000, 30_000, 40_000, 50_000)
# Seconds between "go" and the start, so every process is in its loop by then.
START_DELAY = 0.3


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default=",".join(SCENARIOS),
                        help="comma-separated: fanout, rate, capacity, conns (default: all)")
    parser.add_argument("--target", default=None,
                        help="comma-separated: chatd, chatd-memory, chatd-ws, chatd-tls, "
                             "chatd-cluster, asyncio, threads, redis, redis-tls "
                             "(default: all available)")
    parser.add_argument("--receivers", type=int, default=100, help="R (fanout, rate)")
    parser.add_argument("--senders", type=int, default=10, help="S (fanout, rate)")
    parser.add_argument("--window", type=int, default=8,
                        help="messages each fanout sender keeps in flight")
    parser.add_argument("--text-size", type=int, default=64, help="bytes of text per message")
    parser.add_argument("--rate", type=float, default=10_000.0,
                        help="total messages per second of the rate scenario")
    parser.add_argument("--capacity-rates", default=",".join(map(str, CAPACITY_RATES)),
                        help="comma-separated total msg/s of the capacity scenario's steps")
    parser.add_argument("--conns", type=int, default=1_000,
                        help="connections of the conns scenario")
    parser.add_argument("--ping-sample", type=int, default=1_000,
                        help="connections pinged in the conns scenario")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured")
    parser.add_argument("--procs", type=int, default=1,
                        help="generator processes the connections are spread over")
    parser.add_argument("--setup-timeout", type=float, default=120.0,
                        help="seconds for all connections to complete their handshake")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    arguments = parser.parse_args(argv)
    arguments.scenarios = _choices(arguments.scenario, SCENARIOS, "scenario")
    try:
        arguments.capacity_rates = sorted(int(rate) for rate in
                                          arguments.capacity_rates.split(","))
    except ValueError:
        parser.error(f"--capacity-rates: not a list of whole numbers: "
                     f"{arguments.capacity_rates!r}")
    available = available_targets()
    if arguments.target is None:
        arguments.targets = available
    else:
        arguments.targets = _choices(arguments.target, TARGETS, "target")
        missing = [t for t in arguments.targets if t not in available]
        if missing:
            parser.error(f"not available here: {', '.join(missing)} (redis-server not on PATH)")
    if min(arguments.receivers, arguments.senders, arguments.window, arguments.procs,
           arguments.conns, arguments.text_size) < 1 or arguments.rate <= 0 \
            or min(arguments.capacity_rates) <= 0:
        parser.error("counts, sizes and the rates must be positive")
    if arguments.text_size < 40:
        parser.error("--text-size must be at least 40 (the sender, number and due time)")
    return arguments


def _choices(value: str, allowed: tuple, what: str) -> list[str]:
    chosen = [item.strip() for item in value.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in allowed]
    if unknown or not chosen:
        raise SystemExit(f"unknown {what}: {', '.join(unknown) or value!r}; "
                         f"choose from {', '.join(allowed)}")
    return chosen


def worker_specs(arguments, scenario: str, target: str, addresses: list,
                 tls_ca: str | None = None) -> list[dict]:
    """Connections dealt round-robin over `--procs` generator processes (and each
    over the server's `addresses`, by its index: see worker.connect_all); with
    `tls_ca` (a PEM file) they speak TLS, trusting that CA."""
    procs = arguments.procs
    if scenario == "conns":
        receivers, senders = arguments.conns, 0
    else:
        receivers, senders = arguments.receivers, arguments.senders
    specs = []
    for proc in range(procs):
        specs.append({
            "scenario": scenario, "dialect": DIALECTS[target], "addresses": addresses,
            "tls_ca": tls_ca,
            "receiver_indexes": list(range(proc, receivers, procs)),
            "sender_indexes": list(range(proc, senders, procs)),
            "senders_total": senders, "window": arguments.window,
            "text_size": arguments.text_size, "rate": arguments.rate,
            "ping_sample": -(-arguments.ping_sample // procs),
            "warmup": arguments.warmup, "duration": arguments.duration,
            "setup_timeout": arguments.setup_timeout})
    return specs


class Run:
    """One scenario against one target: start it, load it, stop it, add up."""

    def __init__(self, arguments, scenario: str, target: str, cpus):
        self.arguments, self.scenario, self.target, self.cpus = arguments, scenario, target, cpus

    def execute(self) -> dict:
        arguments = self.arguments
        connections = arguments.conns if self.scenario == "conns" else \
            arguments.receivers + arguments.senders
        cpu = self.cpus[0] if self.cpus else None  # the cluster's nodes and Redis share it
        if self.target == "chatd-cluster":
            server = ClusterTarget(connections, cpu, chatd_log_level(self.scenario))
        else:
            server = TargetProcess(self.target, connections, cpu, chatd_log_level(self.scenario))
        try:
            rss_idle = server.rss_bytes()
            row = self._load(server, rss_idle)
        finally:
            server.stop()
        if server.log_summary is not None:  # chatd: read from its log once it has exited
            row.update(server.log_summary)
        return row

    def _load(self, server: TargetProcess | ClusterTarget, rss_idle: int) -> dict:
        context = multiprocessing.get_context("fork")
        pipes, processes = [], []
        tls_ca = server.tls_files[2] if server.tls_files else None
        for spec in worker_specs(self.arguments, self.scenario, self.target, server.addresses,
                                 tls_ca):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=worker_main, args=(spec, child_end), daemon=True)
            process.start()
            child_end.close()
            pipes.append(parent_end)
            processes.append(process)
        try:
            ready = self._collect(pipes, "ready", self.arguments.setup_timeout + 10)
            connected = sum(r["connected"] for r in ready)
            failed = sum(r["failed"] for r in ready)
            if failed:
                reasons = sorted({reason for r in ready for reason in r["failures"]})
                raise RuntimeError(f"{failed} handshakes failed: {'; '.join(reasons)}")
            rss_loaded = server.rss_bytes()
            start_at = time.monotonic() + START_DELAY
            for pipe in pipes:
                pipe.send(("go", start_at))
            limit = START_DELAY + self.arguments.warmup + self.arguments.duration + \
                DRAIN_SECONDS + 30
            # The server's CPU is read at the edges of the measured window.
            window = [start_at + self.arguments.warmup,
                      start_at + self.arguments.warmup + self.arguments.duration]
            if self.scenario == "conns":
                window = [start_at, start_at + self.arguments.duration]
            readings: list = []

            def read_cpu():
                readings.append((time.monotonic(), server.cpu_seconds(),
                                 server.other_threads_cpu_seconds(),
                                 server.redis.cpu_seconds() if server.redis else 0.0))

            results = self._collect(pipes, "result", limit, progress=True,
                                    at_moments=(window, read_cpu))
            if len(readings) < 2:  # the run ended before the window did
                read_cpu()
            (then, cpu_then, others_then, redis_then), (now, cpu_now, others_now, redis_now) = \
                readings[0], readings[-1]
            server_cpu = (cpu_now - cpu_then) / max(now - then, 1e-9)
            # Threads besides the loop's: chatd's store worker (the threads baseline's
            # client threads); the same core when pinned, since taskset pins them all.
            other_threads_cpu = (others_now - others_then) / max(now - then, 1e-9)
            # chatd-cluster: the Redis its nodes share, on the same core when pinned.
            redis_cpu = (redis_now - redis_then) / max(now - then, 1e-9) \
                if server.redis else None
            rss_after = server.rss_bytes()
        finally:
            for process in processes:
                process.join(10)
                if process.is_alive():
                    process.kill()
                    process.join(5)
        row = self._summarise(results, connected, rss_idle, rss_loaded, rss_after,
                              server_cpu)
        row["server_other_threads_cpu"] = other_threads_cpu
        row["redis_cpu"] = redis_cpu
        # Per accepted message (the senders' acknowledged says), in µs of CPU.
        messages = row["msgs_per_s"]
        row["redis_us_per_message"] = 1e6 * redis_cpu / messages \
            if redis_cpu is not None and messages else None
        return row

    def _collect(self, pipes, kind: str, timeout: float, progress: bool = False,
                 at_moments=((), None)) -> list:
        """Wait for `kind` from every process; call at_moments[1] at each of at_moments[0]."""
        moments, action = list(at_moments[0]), at_moments[1]
        deadline = time.monotonic() + timeout
        answers: dict = {}
        latest: dict = {}
        last_line = (time.monotonic(), 0, 0, 0.0)
        while len(answers) < len(pipes):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"no {kind} from {len(pipes) - len(answers)} "
                                   f"generator processes within {timeout:g}s")
            while moments and moments[0] <= time.monotonic():
                moments.pop(0)
                action()
            if moments:
                remaining = min(remaining, max(0.0, moments[0] - time.monotonic()))
            for pipe in wait([p for p in pipes if p not in answers], remaining):
                try:
                    message, body = pipe.recv()
                except EOFError:
                    raise RuntimeError("a generator process died") from None
                if message == "error":
                    raise RuntimeError(f"generator: {body}")
                if message == "progress":
                    latest[pipe] = body
                    if progress and len(latest) == len(pipes):
                        last_line = self._progress(latest, last_line)
                        latest = {}
                elif message == kind:
                    answers[pipe] = body
        return [answers[pipe] for pipe in pipes]

    def _progress(self, latest: dict, last_line: tuple) -> tuple:
        now = time.monotonic()
        delivered = sum(body["delivered"] for body in latest.values())
        acked = sum(body["acked"] for body in latest.values())
        cpu = sum(body["cpu"] for body in latest.values())
        then, delivered_then, acked_then, cpu_then = last_line
        seconds = max(now - then, 1e-9)
        print(f"{self.scenario:7} {self.target:8} {(acked - acked_then) / seconds:11,.0f} msgs/s "
              f"{(delivered - delivered_then) / seconds:13,.0f} deliveries/s  "
              f"generator CPU {100 * (cpu - cpu_then) / seconds:4.0f}%",
              file=sys.stderr, flush=True)
        return (now, delivered, acked, cpu)

    def _summarise(self, results: list, connected: int, rss_idle: int, rss_loaded: int,
                   rss_after: int, server_cpu: float) -> dict:
        latency, sample = LogHistogram(), LogHistogram()
        for result in results:
            latency.merge(LogHistogram.from_state(result["latency"]))
            sample.merge(LogHistogram.from_state(result["delivery_sample"]))
        # Accepted: acknowledged to its sender, or proved accepted by a
        # receiver holding its number (an acknowledgement may still be on its way).
        accepted: dict = {}
        for result in results:
            for key, count in result["accepted"].items():
                accepted[key] = accepted.get(key, 0) + count
        for result in results:
            for key, number in result["highest"].items():
                accepted[key] = max(accepted.get(key, 0), number)
        members = sum(r["members"] for r in results)
        expected = members * sum(accepted.values())
        unique = sum(r["unique"] for r in results)
        seconds = max(r["seconds"] for r in results) or 1e-9
        losses = expected - unique + sum(r.get("ping_lost", 0) for r in results)
        return {
            "scenario": self.scenario, "target": self.target, "connections": connected,
            "msgs_per_s": sum(r["acked"] for r in results) / seconds,
            "deliveries_per_s": sum(r["delivered"] for r in results) / seconds,
            "seconds": seconds,
            "accepted_total": sum(accepted.values()),
            "latency": latency.summary(), "delivery_latency_sample": sample.summary(),
            "pings": sum(r.get("pings", 0) for r in results),
            "losses": losses, "duplicates": sum(r["duplicates"] for r in results),
            "reorders": sum(r["reorders"] for r in results),
            "bad_frames": sum(r["bad_frames"] for r in results),
            "closed_by_server": sum(r["closed_by_server"] for r in results),
            "drained": all(r["drained"] for r in results),
            "rss_idle_bytes": rss_idle, "rss_loaded_bytes": rss_loaded,
            "rss_after_bytes": rss_after,
            "rss_per_connection_bytes": (rss_loaded - rss_idle) / max(connected, 1),
            "generator_cpu": sum(r["cpu"] for r in results) / seconds,
            "generator_us_per_delivery": (1e6 * sum(r["cpu"] for r in results)
                                          / max(1, sum(r["delivered"] for r in results))
                                          if self.scenario != "conns" else None),
            "server_cpu": server_cpu,
            # Server CPU per accepted message: for chatd-cluster both nodes summed,
            # so against chatd-memory's it is what the cluster adds per message.
            "server_us_per_message": (1e6 * server_cpu * seconds
                                      / max(1, sum(r["acked"] for r in results))
                                      if self.scenario != "conns" else None),
            # Server CPU per delivery: what the server costs even when the
            # generator, not the server, set the pace.
            "server_us_per_delivery": (1e6 * server_cpu * seconds
                                       / max(1, sum(r["delivered"] for r in results))
                                       if self.scenario != "conns" else None),
        }


def capacity_steps(arguments, target: str, cpus) -> list[dict]:
    """The rate scenario against `target` at each of `--capacity-rates` in turn (a
    fresh server each), until a step loses a message, finds the generator the
    limit (the best rate is then only a lower bound), or misses CAPACITY_P99_MS
    at p99 with the server's core saturated (higher rates only do worse).  A
    step that misses the p99 with the server not saturated does not end the
    climb: on a virtual machine whose idle vCPUs are slow to wake, a light load
    can have a worse p99 than a heavier one (docs/performance.md).  Each step
    is a row of scenario "capacity"; `capacity_lines` reads the verdict off them."""
    rows = []
    for rate in arguments.capacity_rates:
        step = argparse.Namespace(**{**vars(arguments), "rate": float(rate)})
        print(f"capacity against {target}: {rate:,} msg/s ...", file=sys.stderr, flush=True)
        try:
            row = Run(step, "rate", target, cpus).execute()
        except RuntimeError as exc:
            rows.append({"scenario": "capacity", "target": target, "step_rate": rate,
                         "error": str(exc)})
            break
        row.update(scenario="capacity", step_rate=rate)
        rows.append(row)
        if (row["losses"] or row["duplicates"] or row["reorders"]
                or row["generator_cpu"] >= GENERATOR_BOUND
                or (row["latency"]["p99_ms"] > CAPACITY_P99_MS
                    and row["server_cpu"] >= SERVER_SATURATED)):
            break
    return rows


def machine() -> dict:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(), "machine": platform.machine()}


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    cpus = None if arguments.no_pin else pinning()
    if cpus:
        os.sched_setaffinity(0, {cpus[1]})  # the generator processes inherit it
    # What a TLS handshake costs a server core, measured once, in memory.
    handshakes = handshakes_per_second() if set(arguments.targets) & set(TLS_TARGETS) \
        else None
    rows = []
    for scenario in arguments.scenarios:
        for target in arguments.targets:
            if scenario == "capacity":
                rows += capacity_steps(arguments, target, cpus)
                continue
            print(f"{scenario} against {target} ...", file=sys.stderr, flush=True)
            try:
                rows.append(Run(arguments, scenario, target, cpus).execute())
            except RuntimeError as exc:
                print(f"  {scenario}/{target} failed: {exc}", file=sys.stderr, flush=True)
                rows.append({"scenario": scenario, "target": target, "error": str(exc)})
    report = {"command": "python -m benchmarks.load " + " ".join(argv or sys.argv[1:]),
              "machine": machine(),
              "pinning": {"server_cpu": cpus[0], "generator_cpu": cpus[1]} if cpus else None,
              "settings": {name: getattr(arguments, name) for name in
                           ("receivers", "senders", "window", "text_size", "rate", "conns",
                            "ping_sample", "warmup", "duration", "procs")},
              "chatd_flags": "--rate-limit 0 --max-clients <connections + 64> --log-level "
                             + ", ".join(f"{level} ({scenario})" for scenario, level
                                         in LOG_LEVELS.items()),
              "tls_handshakes": handshakes,
              "results": rows}
    print(format_table(report))
    if arguments.json:
        with open(arguments.json, "w") as file:
            json.dump(report, file, indent=2)
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
