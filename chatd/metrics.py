"""What `GET /metrics` says: chatd's counters, read at scrape time, in Prometheus' text format.

The hot path keeps plain integers on the objects that already exist
(`Connections`, `Listener`, `ChatService`, the core, `StoreLink`, the
loop); nothing is updated per metric while chatting.  A scrape asks
`ChatdCollector.collect`, which reads them and builds the families;
`prometheus_client`'s exposition renders them (text format 0.0.4).  It runs
on the loop's thread, so what it reads is one consistent moment.

Base units (bytes, seconds), counters end in `_total`, labels only from
bounded sets (listener names, disconnect reasons, request types, chat/1
error codes).
"""

from prometheus_client.core import (CollectorRegistry, CounterMetricFamily,
                                    GaugeMetricFamily, HistogramMetricFamily)
from prometheus_client.exposition import generate_latest

import framing

from .cluster.metrics import families as cluster_families
from .loop import TURN_BUCKETS

__all__ = ["CONTENT_TYPE", "Metrics", "ChatdCollector"]

# The text format 0.0.4 (recent prometheus_client calls its text format
# 1.0.0 by default; with chatd's plain names the bytes are the same).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ChatdCollector:
    """A prometheus_client collector over one `app.Server`'s live objects."""

    def __init__(self, server):
        self.server = server

    def collect(self):
        server = self.server
        chat = server.chat
        core = chat.core
        loop = server.loop
        # "chat" is chat/1 on either port: plaintext and TLS connections share
        # one set (and max_clients), so their listeners' counts are added up.
        # The web listener's connections are in that set too (the gauges and
        # bytes under "chat" include them); its accepts and refusals are its own.
        chat_listeners = [listener for listener in (server.listener, server.tls_listener)
                          if listener is not None]
        listeners = [("chat", chat_listeners)]
        connection_sets = [("chat", server.connections, chat_listeners[0].max_connections)]
        if server.web_listener is not None:
            listeners.append(("web", [server.web_listener]))
        if server.metrics_listener is not None:
            listeners.append(("metrics", [server.metrics_listener]))
            connection_sets.append(("metrics", server.metrics_connections,
                                    server.metrics_listener.max_connections))

        open_now = GaugeMetricFamily("chatd_connections", "Connections open now, closing "
                                     "ones included", labels=["listener"])
        limit = GaugeMetricFamily("chatd_connections_max", "Connections a listener serves at "
                                  "once", labels=["listener"])
        accepted = CounterMetricFamily("chatd_connections_accepted", "Connections accepted",
                                       labels=["listener"])
        rejected = CounterMetricFamily("chatd_connections_rejected", "Connections accepted "
                                       "and refused at once, by reason", labels=["listener",
                                                                                 "reason"])
        received = CounterMetricFamily("chatd_received_bytes", "Bytes read from connections",
                                       labels=["listener"])
        sent = CounterMetricFamily("chatd_sent_bytes", "Bytes written to connections",
                                   labels=["listener"])
        sends = CounterMetricFamily("chatd_sends", "System calls that wrote to connections; "
                                    "chatd_deliveries / chatd_sends is how many frames a "
                                    "send carries", labels=["listener"])
        queued = GaugeMetricFamily("chatd_output_queued_bytes", "Bytes queued for "
                                   "connections and not yet written", labels=["listener"])
        for name, members in listeners:
            accepted.add_metric([name], sum(member.accepted for member in members))
            rejected.add_metric([name, "over_capacity"],
                                sum(member.refused for member in members))
            rejected.add_metric([name, "accept_failed"],
                                sum(member.accept_failures for member in members))
            rejected.add_metric([name, "address_limit"],
                                sum(member.refused_by_address for member in members))
        for name, connections, most in connection_sets:
            open_now.add_metric([name], len(connections.open))
            limit.add_metric([name], most)
            received.add_metric([name], connections.bytes_received)
            sent.add_metric([name], connections.bytes_sent)
            sends.add_metric([name], connections.sends)
            queued.add_metric([name], sum([transport.output.size
                                           for transport in connections.open]))
        yield from (open_now, limit, accepted, rejected, received, sent, sends, queued)
        web = server.web
        if web is not None:
            yield CounterMetricFamily("chatd_ws_upgrades", "WebSocket upgrades accepted "
                                      "(101) on the web listener", value=web.upgrades)
            yield CounterMetricFamily("chatd_ws_refused", "WebSocket upgrades refused 403 for "
                                      "their Origin (or, without ws_origins, a Host not "
                                      "naming this server)", value=web.refused_origins)

        disconnects = CounterMetricFamily("chatd_disconnects", "Chat connections closed, by "
                                          "reason", labels=["reason"])
        for reason, count in sorted(chat.disconnects.items()):
            disconnects.add_metric([reason], count)
        yield disconnects
        requests = CounterMetricFamily("chatd_requests", "Well-formed chat/1 requests "
                                       "received, by type", labels=["type"])
        counts = core.requests
        for kind in framing.REQUESTS:
            requests.add_metric([kind], counts.get(kind, 0))
        yield requests
        errors = CounterMetricFamily("chatd_errors_sent", "chat/1 error frames sent, by code",
                                     labels=["code"])
        for code, count in sorted(core.out.errors.items()):
            errors.add_metric([code], count)
        yield errors
        yield CounterMetricFamily("chatd_messages_accepted", "Messages (says and dms) "
                                  "numbered and recorded (in a cluster: this node's "
                                  "clients')", value=core.messages.accepted)
        yield CounterMetricFamily("chatd_deliveries", "Frames queued to recipients (one "
                                  "frame to n recipients counts n)", value=chat.deliveries)
        yield CounterMetricFamily("chatd_slow_consumers", "Chat connections cut for not "
                                  "reading their output (too_slow)",
                                  value=server.connections.slow_consumers)
        yield GaugeMetricFamily("chatd_users", "Users welcomed and connected now",
                                value=core.user_count)
        yield GaugeMetricFamily("chatd_rooms", "Rooms open now, the lobby included (in a "
                                "cluster: those this node has members in or joining)",
                                value=core.room_count)

        buckets, cumulative = [], 0
        counts = loop.turn_counts
        for bound, count in zip(TURN_BUCKETS, counts):
            cumulative += count
            buckets.append((repr(bound), cumulative))
        cumulative += counts[-1]
        buckets.append(("+Inf", cumulative))
        yield HistogramMetricFamily("chatd_loop_turn_seconds", "Duration of the loop's turns "
                                    "(wake-up to the end of its ready callbacks)",
                                    buckets=buckets, sum_value=loop.turn_seconds)
        yield GaugeMetricFamily("chatd_loop_longest_turn_seconds", "Longest loop turn so far",
                                value=loop.longest_turn)

        hasher = chat.accounts
        yield CounterMetricFamily("chatd_password_hashes", "Password checks and hashes handed "
                                  "to the hashing worker (scrypt)", value=hasher.hashes)
        yield CounterMetricFamily("chatd_password_hash_failures", "Password jobs that raised "
                                  "in the worker (answered unavailable)", value=hasher.failures)

        store = chat.store
        if store is not None:
            yield CounterMetricFamily("chatd_store_batches", "Store transactions committed",
                                      value=store.batches)
            yield CounterMetricFamily("chatd_store_rows_committed", "Messages committed to "
                                      "the store", value=store.rows_committed)
            yield CounterMetricFamily("chatd_store_slow_batches", "Store batches that waited "
                                      "over SLOW_SECONDS (2 s) for their commit",
                                      value=store.slow_batches)
            yield GaugeMetricFamily("chatd_store_largest_batch_rows", "Most messages "
                                    "committed in one transaction so far",
                                    value=store.largest_batch)
            yield GaugeMetricFamily("chatd_store_longest_lag_seconds", "Longest wait of a "
                                    "batch for its commit so far", value=store.longest_lag)
            yield GaugeMetricFamily("chatd_store_in_flight_rows", "Messages accepted and not "
                                    "yet committed", value=store.in_flight)
        if chat.cluster is not None:
            yield from cluster_families(chat.cluster)


class Metrics:
    """A private registry holding only chatd's collector; `render()` is one scrape."""

    content_type = CONTENT_TYPE

    def __init__(self, server):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ChatdCollector(server))

    def render(self) -> bytes:
        return generate_latest(self.registry)
