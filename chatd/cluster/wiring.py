"""What app.py needs to serve as a cluster node, importing hiredis only then."""


class ClusterSetupError(RuntimeError):
    """The cluster cannot be served: its extra (hiredis) is not installed."""


def core(settings):
    """The ClusterCore for `settings`, under a fresh node id."""
    try:
        from .core import ClusterCore
        from .node import new_node_id
    except ModuleNotFoundError as exc:
        raise ClusterSetupError(f"--cluster needs {exc.name}: pip install "
                                "'chatd[cluster]'") from None
    return ClusterCore(settings, new_node_id())


def node(loop, config, cluster_core, complete):
    """The started ClusterNode of `cluster_core`, linked to `config.cluster`."""
    from .node import ClusterNode
    started = ClusterNode(loop, config.cluster, cluster_core, complete, config.cluster_lease)
    started.start()
    return started
