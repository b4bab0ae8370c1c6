"""What the cluster core asks of the cluster link (effects), and what comes back
(completions), in the shape of chatd/core/effects.py: the core does no I/O."""


class Script:
    """Run script `name` with `args` after the presence limit and stream cap;
    `then(reply)` is called by the core with the answer (hiredis' value,
    `LINK_DOWN` or `NOT_SENT` from link.py)."""

    __slots__ = ("name", "args", "then")

    def __init__(self, name: str, args: tuple, then=None):
        self.name = name
        self.args = args
        self.then = then


class Command:
    """Send one plain Redis command (`args`); `then(reply)` as for Script."""

    __slots__ = ("args", "then")

    def __init__(self, args: tuple, then=None):
        self.args = args
        self.then = then


class Subscribe:
    """SUBSCRIBE `channel` (before the script that makes the node need it, on the same
    connection: no window for a missed event)."""

    __slots__ = ("channel",)

    def __init__(self, channel: str):
        self.channel = channel


class Unsubscribe:
    """UNSUBSCRIBE `channel`: the node has no local member there any more."""

    __slots__ = ("channel",)

    def __init__(self, channel: str):
        self.channel = channel


class Answered:
    """Completion: `effect` (a Script or Command) was answered with `reply`."""

    __slots__ = ("effect", "reply")

    def __init__(self, effect, reply):
        self.effect = effect
        self.reply = reply


class Pushed:
    """Completion: a pub/sub message, `channel` and `data` (bytes)."""

    __slots__ = ("channel", "data")

    def __init__(self, channel: bytes, data: bytes):
        self.channel = channel
        self.data = data


class LinkChanged:
    """Completion: the link came up (`up` True: resubscribe and catch up; `node`,
    `epoch` as Redis has them now) or went down."""

    __slots__ = ("up", "node", "epoch")

    def __init__(self, up: bool, node: str = "", epoch: str = ""):
        self.up = up
        self.node = node
        self.epoch = epoch


class Fenced:
    """Completion: this node's lease is gone (reaped, or Redis lost its data): close
    every local session; the node has joined again as `node`."""

    __slots__ = ("node",)

    def __init__(self, node: str):
        self.node = node


class Batch:
    """Completion: the answers and pushes of one loop turn, in arrival order (one
    call into the core, so the service scans its parked sessions once a turn,
    not once per push)."""

    __slots__ = ("completions",)

    def __init__(self, completions: list):
        self.completions = completions
