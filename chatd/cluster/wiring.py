"""What app.py needs to serve as a cluster node, importing hiredis only then
(the settings have checked it is installed: config.py)."""

from .. import tls
from .resp import parse_address


def tls_context(config):
    """The client TLS context for a `rediss://` cluster (`cluster_ca`,
    `cluster_cert`, `cluster_key`), None for another URL.  Raises
    tls.TLSSetupError naming the files when they cannot be loaded."""
    if not parse_address(config.cluster).tls:
        return None
    try:
        return tls.client_context(config.cluster_ca or None, config.cluster_cert or None,
                                  config.cluster_key or None)
    except OSError as exc:
        reason = exc.strerror or getattr(exc, "reason", None) or str(exc)
        raise tls.TLSSetupError(f"cannot load the cluster's TLS files: {reason}") from None


def core(settings):
    """The ClusterCore for `settings`, under a fresh node id."""
    from .core import ClusterCore
    from .node import new_node_id
    return ClusterCore(settings, new_node_id())


def node(loop, config, cluster_core, complete, context):
    """The started ClusterNode of `cluster_core`, linked to `config.cluster` (over
    TLS with `context`, from `tls_context`)."""
    from .node import ClusterNode
    started = ClusterNode(loop, config.cluster, cluster_core, complete, config.cluster_lease,
                          context)
    started.start()
    return started
