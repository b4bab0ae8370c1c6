"""The cluster's share of `GET /metrics` (chatd/metrics.py asks for it when
`--cluster` is on): the link's state and costs, read at scrape time from the
plain counters ClusterNode, RedisLink and ClusterCore keep."""

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


def families(node):
    """The cluster's metric families for one ClusterNode."""
    link, core = node.link, node.core
    yield GaugeMetricFamily("chatd_cluster_link_up", "1 while the link to Redis is up",
                            value=1 if link.up else 0)
    yield CounterMetricFamily("chatd_cluster_link_connects", "Connections to Redis made "
                              "(the first and every reconnect)", value=link.connects)
    yield CounterMetricFamily("chatd_cluster_link_losses", "Times the link to Redis broke",
                              value=link.disconnects)
    yield GaugeMetricFamily("chatd_cluster_round_trip_seconds", "Round trip of the last "
                            "lease renewal to Redis", value=node.round_trip)
    yield GaugeMetricFamily("chatd_cluster_commands_in_flight", "Commands and scripts "
                            "sent to Redis and not answered yet", value=link.in_flight)
    yield GaugeMetricFamily("chatd_cluster_reorder_held_events", "Room events held "
                            "behind a hole until the stream fills it",
                            value=sum(len(feed.held) for feed in core.feeds.values()))
    yield CounterMetricFamily("chatd_cluster_gaps_filled", "Holes filled from a room's "
                              "stream (XRANGE), catch-ups after reconnects included",
                              value=core.gaps_filled)
    yield CounterMetricFamily("chatd_cluster_events_lost", "Room events a stream no "
                              "longer had when a hole was filled", value=core.events_lost)
    yield CounterMetricFamily("chatd_cluster_inbox_caught_up", "What this node was told "
                              "(dms, replaced sessions) while its link was down, read from "
                              "its inbox stream after reconnecting",
                              value=core.inbox_caught_up)
    yield CounterMetricFamily("chatd_cluster_inbox_lost", "What this node was told "
                              "while cut off and its inbox no longer had when it read it "
                              "(trimmed past the inbox's cap)", value=core.inbox_lost)
    yield CounterMetricFamily("chatd_cluster_nodes_reaped", "Other nodes this node reaped "
                              "after their lease ran out", value=node.reaped)
