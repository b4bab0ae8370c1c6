"""What app.py needs to serve as a cluster node, importing hiredis only then
(the settings have checked it is installed: config.py)."""


def core(settings):
    """The ClusterCore for `settings`, under a fresh node id."""
    from .core import ClusterCore
    from .node import new_node_id
    return ClusterCore(settings, new_node_id())


def node(loop, config, cluster_core, complete):
    """The started ClusterNode of `cluster_core`, linked to `config.cluster`."""
    from .node import ClusterNode
    started = ClusterNode(loop, config.cluster, cluster_core, complete, config.cluster_lease)
    started.start()
    return started
