"""The final table: one row per scenario and target, then chatd's ratio to each baseline
and each TLS target's to the same server over plaintext."""

from .targets import TLS_TARGETS

_COLUMNS = ("scenario", "target", "conns", "msgs/s", "deliveries/s", "p50 ms", "p90 ms",
            "p99 ms", "p99.9 ms", "max ms", "RSS MiB", "KiB/conn", "loss/dup/reord",
            "gen CPU", "gen µs/deliv", "srv CPU", "srv µs/deliv")
# A generator this busy, serving a server that is not, is the bottleneck: its
# figures bound the server's from below.  (A slow server that sends one frame
# per write keeps the generator busy with small reads without it being the limit.)
GENERATOR_BOUND = 0.9
# The number each scenario is judged by, and whether more of it is better.
HEADLINE = {"fanout": ("deliveries_per_s", True), "rate": ("p99_ms", False),
            "conns": ("p99_ms", False)}
# The p99 a capacity step must keep (benchmarks/load.py CAPACITY_P99_MS), and
# the server's share of its core from which a step that misses it ends the climb.
CAPACITY_P99_MS = 2.0
SERVER_SATURATED = 0.9
# A capacity step was served in full when this share of its rate was acknowledged.
KEPT_UP = 0.98


def _number(value, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _row(result: dict) -> list[str]:
    if "error" in result:
        return [result["scenario"], result["target"], "failed: " + result["error"][:60]]
    latency = result["latency"]
    return [
        result["scenario"], result["target"], f"{result['connections']:,}",
        _number(result["msgs_per_s"]) if result["scenario"] != "conns" else "-",
        _number(result["deliveries_per_s"]) if result["scenario"] != "conns" else "-",
        *(_number(latency[key], 3) for key in ("p50_ms", "p90_ms", "p99_ms", "p99.9_ms",
                                                 "max_ms")),
        _number(result["rss_loaded_bytes"] / 2**20, 1),
        _number(result["rss_per_connection_bytes"] / 1024, 2),
        f"{result['losses']}/{result['duplicates']}/{result['reorders']}"
        + ("" if result["drained"] else " !"),
        f"{100 * result['generator_cpu']:.0f}%"
        + (" *" if result["generator_cpu"] >= GENERATOR_BOUND > result["server_cpu"] else ""),
        _number(result.get("generator_us_per_delivery"), 3),
        f"{100 * result['server_cpu']:.0f}%",
        _number(result.get("server_us_per_delivery"), 2),
    ]


def headline(result: dict):
    key, _ = HEADLINE[result["scenario"]]
    return result.get(key, result.get("latency", {}).get(key))


def ratios(results: list) -> list[str]:
    """chatd against every other target, per scenario, on the headline number."""
    lines = []
    by_scenario: dict = {}
    for result in results:
        if "error" not in result:
            by_scenario.setdefault(result["scenario"], {})[result["target"]] = result
    for scenario, targets in by_scenario.items():
        chatd = targets.get("chatd")
        if chatd is None or scenario not in HEADLINE:
            continue
        key, more_is_better = HEADLINE[scenario]
        parts = []
        for name, other in targets.items():
            mine, theirs = headline(chatd), headline(other)
            if name == "chatd" or name in TLS_TARGETS or not mine or not theirs:
                continue
            ratio = mine / theirs if more_is_better else theirs / mine
            cost = other.get("server_us_per_delivery"), chatd.get("server_us_per_delivery")
            parts.append(f"{ratio:.2f}x {name}" + (
                f" (its server CPU per delivery / chatd's: {cost[0] / cost[1]:.2f})"
                if all(cost) else ""))
        if parts:
            what = "deliveries/s" if more_is_better else key.replace("_ms", " latency") \
                + " (their/ours)"
            lines.append(f"chatd {scenario} {what}: " + ", ".join(parts))
    return lines


def capacity_lines(results: list) -> list[str]:
    """Per target, the highest capacity step that kept p99 within CAPACITY_P99_MS
    with nothing lost, the lower steps that missed it, what ended the climb, and
    chatd's ratio to each other target."""
    steps: dict = {}
    for result in results:
        if result["scenario"] == "capacity":
            steps.setdefault(result["target"], []).append(result)
    verdicts, sustained, parts = {}, {}, []
    for target, rows in steps.items():
        good = [row for row in rows if "error" not in row
                and row["latency"]["p99_ms"] <= CAPACITY_P99_MS
                and not (row["losses"] or row["duplicates"] or row["reorders"])]
        last = rows[-1]
        if "error" in last:
            why = f"{last['step_rate']:,} msg/s failed: {last['error'][:60]}"
        elif last["generator_cpu"] >= GENERATOR_BOUND and last in good:
            why = f"the generator was the limit at {last['step_rate']:,} msg/s (a lower bound)"
        elif last in good:
            why = "the last step passed (a lower bound)"
        else:
            why = (f"{last['step_rate']:,} msg/s had p99 {last['latency']['p99_ms']:,.2f} ms, "
                   f"srv CPU {100 * last['server_cpu']:.0f}%, loss/dup/reord "
                   f"{last['losses']}/{last['duplicates']}/{last['reorders']}")
        best = good[-1] if good else None
        verdicts[target] = best["step_rate"] if best else 0
        # Whatever the latency floor of the machine: the highest rate served in
        # full with the server's core below saturation.
        kept_up = [row for row in rows if "error" not in row
                   and row["msgs_per_s"] >= KEPT_UP * row["step_rate"]
                   and row["server_cpu"] < SERVER_SATURATED
                   and not (row["losses"] or row["duplicates"] or row["reorders"])]
        sustained[target] = kept_up[-1]["step_rate"] if kept_up else 0
        missed = [row["step_rate"] for row in rows[:-1]
                  if row not in good and (best is None or row["step_rate"] < best["step_rate"])]
        parts.append(f"{target} {verdicts[target]:,} msg/s"
                     + (f" (srv CPU {100 * best['server_cpu']:.0f}%)" if best else "")
                     + (f", p99 over at lower {', '.join(f'{r:,}' for r in missed)}"
                        if missed else "")
                     + f"; then {why}")
    if not parts:
        return []
    lines = [f"capacity at p99 <= {CAPACITY_P99_MS:g} ms: " + " | ".join(parts),
             f"served in full with the server's core below {SERVER_SATURATED:.0%}, at any "
             "p99: " + ", ".join(f"{target} {rate:,} msg/s"
                                 for target, rate in sustained.items())]
    for name, figures in (("capacity at p99", verdicts), ("rate served", sustained)):
        if figures.get("chatd"):
            lines.append(f"chatd {name}: " + ", ".join(
                f"{figures['chatd'] / rate:.2f}x {target}" for target, rate in figures.items()
                if target != "chatd" and rate))
    return lines


def websocket_lines(results: list) -> list[str]:
    """chat/1 over WebSocket (chatd-ws) against chat/1 over TCP (chatd-memory, the same
    store) in the same run: fanout deliveries/s and server CPU per delivery; conns'
    memory per idle connection."""
    lines = []
    pairs: dict = {}
    for result in results:
        if "error" not in result and result["target"] in ("chatd-ws", "chatd-memory"):
            pairs.setdefault(result["scenario"], {})[result["target"]] = result
    for scenario, pair in pairs.items():
        ws, tcp = pair.get("chatd-ws"), pair.get("chatd-memory")
        if ws is None or tcp is None:
            continue
        if scenario == "fanout" and tcp["deliveries_per_s"] and ws["server_us_per_delivery"]:
            lines.append(
                f"chatd WebSocket fanout: {ws['deliveries_per_s'] / tcp['deliveries_per_s']:.2f}x "
                f"the deliveries/s of chat/1 over TCP; server CPU per delivery "
                f"{ws['server_us_per_delivery']:.2f} µs against {tcp['server_us_per_delivery']:.2f}"
                f" ({tcp['server_us_per_delivery'] / ws['server_us_per_delivery']:.2f}x)")
        elif scenario == "conns":
            lines.append(
                f"chatd WebSocket idle connection: {ws['rss_per_connection_bytes'] / 1024:.2f} KiB "
                f"of server memory against {tcp['rss_per_connection_bytes'] / 1024:.2f} KiB "
                "over TCP")
    return lines


def tls_lines(report: dict) -> list[str]:
    """Each TLS target against the same server over plaintext in this run
    (TLS_TARGETS), and what a TLS handshake costs a server core."""
    lines = []
    # (capacity has a row per step; capacity_lines gives each target's verdict)
    rows = {(result["scenario"], result["target"]): result for result in report["results"]
            if "error" not in result and result["scenario"] != "capacity"}
    for (scenario, target), secure in rows.items():
        plain = rows.get((scenario, TLS_TARGETS.get(target)))
        if plain is None:
            continue
        name = plain["target"]
        if scenario == "conns":
            kib, plain_kib = (row["rss_per_connection_bytes"] / 1024 for row in (secure, plain))
            lines.append(f"{target} conns: {kib:,.1f} KiB of RSS per idle connection, "
                         f"{name} {plain_kib:,.1f} KiB (TLS adds {kib - plain_kib:,.1f} KiB)")
            continue
        cost = secure.get("server_us_per_delivery"), plain.get("server_us_per_delivery")
        by_cpu = (f"; server CPU per delivery {cost[0]:.2f} µs against {cost[1]:.2f} µs, "
                  f"i.e. {cost[1] / cost[0]:.2f}x the deliveries per server CPU second"
                  if all(cost) else "")
        if scenario == "fanout":
            ratio = secure["deliveries_per_s"] / max(plain["deliveries_per_s"], 1e-9)
            lines.append(f"{target} fanout: {ratio:.2f}x {name}'s deliveries/s{by_cpu}")
        else:
            lines.append(f"{target} {scenario}: p99 {secure['latency']['p99_ms']:,.3f} ms "
                         f"against {plain['latency']['p99_ms']:,.3f} ms for {name}{by_cpu}")
    handshakes = report.get("tls_handshakes")
    if handshakes and handshakes["per_s"]:
        lines.append(f"TLS handshakes, server side: {handshakes['per_s']:,.0f}/s of one core "
                     f"({handshakes['version']}, ECDSA P-256, {handshakes['openssl']}; chatd's "
                     f"TLSPipe in memory, {handshakes['count']} handshakes, thread CPU time)")
    return lines


def cluster_lines(report: dict) -> list[str]:
    """chatd-cluster (two nodes, one Redis) against chatd-memory (one node) in this
    run: deliveries/s, echo latency, the nodes' CPU per accepted message (both
    summed) and what it adds to one node's, Redis' CPU per message; where it ran."""
    rows = {(result["scenario"], result["target"]): result for result in report["results"]
            if "error" not in result and result["scenario"] != "capacity"}
    lines = []
    for (scenario, target), cluster in rows.items():
        if target != "chatd-cluster" or scenario == "conns":
            continue
        single = rows.get((scenario, "chatd-memory"))
        latency = cluster["latency"]
        line = (f"chatd-cluster {scenario}: {cluster['deliveries_per_s']:,.0f} deliveries/s, "
                f"echo p50 {latency['p50_ms']:,.3f} ms p99 {latency['p99_ms']:,.3f} ms; "
                f"nodes' CPU {_number(cluster['server_us_per_message'], 1)} µs per message "
                f"(both summed)")
        if single is not None and single["server_us_per_message"] \
                and cluster["server_us_per_message"]:
            added = cluster["server_us_per_message"] - single["server_us_per_message"]
            ratio = cluster["deliveries_per_s"] / max(single["deliveries_per_s"], 1e-9)
            line += (f", chatd-memory {single['server_us_per_message']:,.1f} µs (cluster minus "
                     f"one node: {added:+,.1f} µs); {ratio:.2f}x its deliveries/s, p50 {single['latency']['p50_ms']:,.3f} ms p99 "
                     f"{single['latency']['p99_ms']:,.3f} ms")
        line += (f"; Redis {_number(cluster['redis_us_per_message'], 1)} µs per message "
                 f"({100 * cluster['redis_cpu']:.0f}% of a core)")
        lines.append(line)
    if lines:
        pinned = report["pinning"]
        where = (f"both chatd nodes and redis-server on CPU {pinned['server_cpu']}, the "
                 f"generator on CPU {pinned['generator_cpu']}" if pinned
                 else "nodes, Redis and generator unpinned, sharing every CPU")
        lines.append(f"chatd-cluster: 2 chatd nodes (--cluster, --store memory) and one "
                     f"redis-server (unix socket, --save \"\" --appendonly no), receivers and "
                     f"senders dealt alternately to the two nodes; {where}. With "
                     f"{report['machine']['cpus']} CPUs this shows the cluster's overhead, "
                     "not a speed-up: the nodes and Redis share one core.")
    return lines


def chatd_log_lines(results: list) -> list[str]:
    """What chatd logged as it exited: the durable store's writer, the longest loop turn."""
    lines = []
    for result in results:
        store = result.get("store")
        if store is None or "error" in result:
            continue
        where = f"{result['scenario']}/{result['target']}"
        if "error" in store:
            lines.append(f"{where} store writer: unknown ({store['error']})")
            continue
        lines.append(
            f"{where} store writer: {store['messages']:,} messages in {store['batches']:,} "
            f"commits, {_number(store['mean_batch'], 1)} per commit on average, largest "
            f"{store['largest_batch']:,}; longest wait for a commit "
            f"{store['longest_wait_ms']:,.1f} ms; store thread CPU "
            f"{100 * result.get('server_other_threads_cpu', 0):.0f}% (of srv CPU "
            f"{100 * result['server_cpu']:.0f}%)")
    turns = [f"{result['scenario']}/{result['target']} {result['longest_turn_ms']:,.1f} ms"
             for result in results
             if "error" not in result and result.get("longest_turn_ms") is not None]
    if turns:
        lines.append("chatd's longest loop turn: " + ", ".join(turns))
    batching = [f"{result['scenario']}/{result['target']} "
                f"{result['deliveries_per_send']:,.1f}" for result in results
                if "error" not in result and result.get("deliveries_per_send") is not None]
    if batching:
        lines.append("chatd's deliveries per send: " + ", ".join(batching))
    if lines:
        lines.append("(commits, waits, loop turns and sends: chatd's own counts, logged at exit, "
                     "over its whole run with warm-up and drain; thread CPU: the measured "
                     "window)")
    return lines


def format_table(report: dict) -> str:
    rows = [list(_COLUMNS)] + [_row(result) for result in report["results"]]
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(_COLUMNS))]
    lines = []
    for row in rows:
        lines.append("  ".join(cell.rjust(widths[i]) if i > 1 else cell.ljust(widths[i])
                               for i, cell in enumerate(row)).rstrip())
    settings = report["settings"]
    machine = report["machine"]
    pinned = report["pinning"]
    logged = chatd_log_lines(report["results"])
    lines += [
        "",
        *ratios(report["results"]),
        *capacity_lines(report["results"]),
        *websocket_lines(report["results"]),
        *tls_lines(report),
        *cluster_lines(report),
        *([""] + logged if logged else []),
        "",
        f"fanout/rate: R={settings['receivers']} receivers + S={settings['senders']} senders "
        f"in one room, {settings['text_size']} B text, W={settings['window']} in flight (fanout), "
        f"{settings['rate']:,.0f} msg/s (rate); warm-up {settings['warmup']:g}s, "
        f"measured {settings['duration']:g}s; conns: {settings['conns']:,} connections, "
        f"{settings['ping_sample']:,} pinged one at a time.",
        "deliveries/s counts msg frames received by the R receivers only (chat/1 senders also "
        "get their echo; it is not counted). Latency: fanout/rate from each message's due time "
        "to its sender's acknowledgement; conns: ping round trip. loss/dup/reord: summed over "
        "every member's delivery check.",
        f"* generator at >= {GENERATOR_BOUND:.0%} of its core and the server below: the load, "
        "not the server, was the limit; that row's throughput is a lower bound for the server. "
        "! the drain ended by its time limit: messages still under way count as lost.",
        f"chatd ran with {report['chatd_flags']}. "
        + (f"Server pinned to CPU {pinned['server_cpu']}, generator to CPU "
           f"{pinned['generator_cpu']} (taskset)." if pinned else "No CPU pinning.")
        + " gen/srv CPU: share of one core over the measured window; gen µs/deliv: generator "
        "CPU time per delivery (senders' work included), so 1 / it is what one generator core "
        "could absorb; srv µs/deliv: server CPU time per delivery, which holds even when the "
        "generator set the pace. "
        f"{settings['procs']} generator process(es).",
        f"Machine: {machine['cpu']}, {machine['cpus']} CPUs, Linux {machine['kernel']}, "
        f"Python {machine['python']}.",
    ]
    return "\n".join(lines)
