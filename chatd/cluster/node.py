"""One chatd node's membership of the cluster: the link, the lease, the epoch.

`ClusterNode` carries out the cluster core's effects on the link (`take`),
turns the link's answers and pushes into completions for
`ChatService.complete`, and keeps this node alive in Redis (CLUSTER.md,
"Failure"): a lease of `lease` seconds renewed every fifth of it; once
connected a whole lease, it also reaps nodes whose lease ran out; a renewal
that finds its own lease gone means this node was reaped (or Redis lost its
data): its clients are closed and it joins again under a new id.
"""

import logging
import secrets

import hiredis

from .effects import (Answered, Batch, Command, Fenced, LinkChanged, Pushed, Script,
                      Subscribe, Unsubscribe)
from .link import RedisLink
from .scripts import load_scripts

log = logging.getLogger("chatd")


def new_node_id() -> str:
    """A node id: random, never reused (a reaped node joins again under a new one)."""
    return secrets.token_hex(6)


class ClusterNode:
    """The cluster side of one chatd (see the module docstring).

    `core` is the node's ClusterCore (its `node`, `epoch`, `settings`,
    `highest` are read and set here), `complete` the service's completion
    entry.  `lease` in seconds; `tls_context` for a `rediss://` URL.
    """

    def __init__(self, loop, url: str, core, complete, lease: float = 10.0,
                 tls_context=None):
        self.loop = loop
        self.core = core
        self.complete = complete
        self.lease = lease
        self.scripts = load_scripts()
        self.link = RedisLink(loop, url, self.scripts.values(), self._on_push, self._on_up,
                              self._on_down, tls_context=tls_context)
        self.node = core.node
        self.registered = False
        self.expiry = 0   # the lease's expiry (Redis ms) its last renewal answered
        self.up_since = None
        self.epoch_known = ""
        # Answers and pushes of this turn, handed to the core together at its end.
        self._arrived: list = []
        self.reaped = 0   # other nodes this node reaped (metrics)
        self.round_trip = 0.0  # seconds, the last lease renewal's (metrics)
        self._timer = None

    def start(self) -> None:
        """Connect (in the background: requests wait up to 1 s for the link)."""
        self.link.start()
        self._timer = self.loop.call_later(self.lease / 5, self._renew)

    def close(self) -> None:
        """Stop the lease and the link (at exit)."""
        if self._timer is not None:
            self._timer.cancel()
        self.link.close()

    def retire(self) -> None:
        """A clean shutdown: this node's sessions leave the cluster now (their rooms
        get `left` shutdown) rather than at the end of its lease."""
        if self.link.up:
            self._script("lease", (self.node, 0, "renew", "1", self.expiry))

    # ---------------------------------------------------------------- effects

    def take(self, effect) -> None:
        """Carry out one of the cluster core's effects on the link."""
        kind = type(effect)
        if kind is Script:
            self._script(effect.name, effect.args, self._answer(effect))
        elif kind is Command:
            self.link.call(effect.args, self._answer(effect))
        elif kind is Subscribe:
            self.link.send_unanswered(("SUBSCRIBE", effect.channel))
        elif kind is Unsubscribe:
            self.link.send_unanswered(("UNSUBSCRIBE", effect.channel))
        else:
            raise TypeError(f"not a cluster effect: {effect!r}")

    def _script(self, name: str, args: tuple, callback=None) -> None:
        settings = self.core.settings
        self.link.evalsha(self.scripts[name],
                          (settings.presence_limit, 2 * settings.history, *args), callback)

    def _answer(self, effect):
        return lambda reply: self._arrive(Answered(effect, reply))

    def _on_push(self, push) -> None:
        if push[0] == b"message":
            self._arrive(Pushed(push[1], push[2]))

    def _arrive(self, completion) -> None:
        if not self._arrived:
            self.loop.call_soon(self._hand_over)
        self._arrived.append(completion)

    def _hand_over(self) -> None:
        """This turn's answers and pushes to the core, in order, in one completion."""
        if self._arrived:
            arrived, self._arrived = self._arrived, []
            self.complete(Batch(arrived))

    # -------------------------------------------------------------- the link

    def _on_up(self) -> None:
        """Before anything waiting is sent: the epoch, the lease, then the core
        resubscribes and catches up (all on the wire in this order)."""
        self.up_since = self.loop.time()
        self.link.send_unanswered(("SUBSCRIBE", "chatd:node:" + self.node))
        # If Redis lost its data, ids must jump past all handed out (epoch.lua).
        floor = self.core.loss_floor() if self.epoch_known else 0
        self._script("epoch", (self.epoch_known or secrets.token_hex(8), floor,
                               self.core.run), self._epoch_answered)
        self._script("lease", (self.node, int(self.lease * 1000),
                               "renew" if self.registered else "new", "0", self.expiry),
                     self._lease_answered)
        self._hand_over()
        self.complete(LinkChanged(True))

    def _on_down(self) -> None:
        self.up_since = None
        self._hand_over()
        self.complete(LinkChanged(False))

    def _epoch_answered(self, reply) -> None:
        if type(reply) is not list:
            return
        epoch, fresh = reply[0].decode(), reply[1]
        if fresh and self.epoch_known:
            log.error("cluster: Redis lost its data (no epoch); epoch %s kept, ids go on "
                      "above %d", epoch, self.core.highest)
        self.epoch_known = self.core.epoch = epoch

    def _renew(self) -> None:
        self._timer = self.loop.call_later(self.lease / 5, self._renew)
        if not self.link.up or not self.registered:
            return
        sent = self.loop.time()
        may_reap = sent - self.up_since >= self.lease

        def answered(reply):
            self.round_trip = self.loop.time() - sent
            self._lease_answered(reply)
        self._script("lease", (self.node, int(self.lease * 1000), "renew",
                               "1" if may_reap else "0", self.expiry), answered)

    def _lease_answered(self, reply) -> None:
        if type(reply) is not list:
            if type(reply) is hiredis.ReplyError:
                log.error("cluster: lease refused: %s", reply)
            return
        if reply[0] == b"fenced":
            old, self.node = self.node, new_node_id()
            log.error("cluster: node %s lost its lease (reaped, or Redis lost its data); "
                      "closing its clients and joining again as %s", old, self.node)
            self.link.send_unanswered(("UNSUBSCRIBE", "chatd:node:" + old))
            self.link.send_unanswered(("SUBSCRIBE", "chatd:node:" + self.node))
            self.registered = False
            self._script("lease", (self.node, int(self.lease * 1000), "new", "0", 0),
                         self._lease_answered)
            self._hand_over()
            self.complete(Fenced(self.node))
            return
        self.registered = True
        self.expiry = reply[1]
        for dead in reply[2:]:
            self.reaped += 1
            log.warning("cluster: reaped node %s (its lease ran out)", dead.decode())
