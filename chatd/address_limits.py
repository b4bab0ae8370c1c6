"""Connections per client address, judged at accept: how many at once, how many new per window.

The defaults (16 at once, 32 new per 10 s) are Ergo's and ngircd's: far
above what one person's clients need, low enough that one address cannot
take a server's `max_clients` or its accept loop.  An IPv6 client is
counted by its /64, the prefix one site (one customer) usually gets
(RFC 6177), since it can pick any address within it.  Loopback is exempt
unless asked (a local proxy or a benchmark is one address for everyone).

Sans-IO: the listener asks `admit(transport, now)` with the loop's clock
and `Connections.forget` calls `release(transport)` when one closes.
"""

import ipaddress
from collections import deque

# Addresses whose recent connects are remembered at most; past it the
# oldest entries go (their windows restart), so memory stays bounded.
MAX_TRACKED_ADDRESSES = 10_000


def address_key(host: str) -> tuple[str, bool] | None:
    """(the unit counted for `host`, whether it is loopback): the unit is the
    IPv4 address or the IPv6 /64 as text; None for what is not an IP address
    (a Unix socket's peer).  One parse per accept gives both."""
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # an IPv4 client on a dual-stack socket
    if address.version == 6:
        return (str(ipaddress.IPv6Network((address, 64), strict=False)),
                address.is_loopback)
    return str(address), address.is_loopback


class AddressLimits:
    """At most `concurrent` open connections and `connects` new ones per `window`
    seconds per client address (see the module docstring for what an address is).

    `admit` answers None (admitted: counted until `release`) or the reason it
    refuses, for the `server_full` error; a refused connection counts nowhere
    (each Listener counts its refusals, for metrics).  Settings may change while
    serving.
    """

    def __init__(self, concurrent: int, connects: int, window: float,
                 limit_loopback: bool = False):
        self.concurrent = concurrent
        self.connects = connects
        self.window = window
        self.limit_loopback = limit_loopback
        self._open: dict[str, int] = {}           # key -> admitted and not released
        self._recent: dict[str, deque] = {}       # key -> admission times in the window
        self._admitted: dict = {}                 # transport -> its key

    def admit(self, transport, now: float) -> str | None:
        """Count `transport` (its `peer` host) in, or say why it is refused."""
        counted = address_key(transport.peer[0])
        if counted is None:
            return None
        key, loopback = counted
        if loopback and not self.limit_loopback:
            return None
        times = self._recent.get(key)
        if times is not None:
            while times and times[0] <= now - self.window:
                times.popleft()
        if self._open.get(key, 0) >= self.concurrent:
            return (f"{self.concurrent} connections from your address are open already "
                    "(per-address limit); close one and try again")
        if times is not None and len(times) >= self.connects:
            return (f"more than {self.connects} new connections from your address within "
                    f"{self.window:g}s (per-address limit); try again shortly")
        if times is None:
            if len(self._recent) >= MAX_TRACKED_ADDRESSES:
                self._forget_idle(now)
            times = self._recent[key] = deque()
        times.append(now)
        self._open[key] = self._open.get(key, 0) + 1
        self._admitted[transport] = key
        return None

    def release(self, transport) -> None:
        """`transport` has closed: it no longer counts as open (a no-op if never admitted)."""
        key = self._admitted.pop(transport, None)
        if key is None:
            return
        left = self._open[key] - 1
        if left:
            self._open[key] = left
        else:
            del self._open[key]

    def _forget_idle(self, now: float) -> None:
        """Drop the remembered connects that left their window; if every address is
        still busy, the oldest half (bounded memory wins over exact counting)."""
        for key in [key for key, times in self._recent.items()
                    if not times or times[-1] <= now - self.window]:
            del self._recent[key]
        if len(self._recent) >= MAX_TRACKED_ADDRESSES:
            for key in list(self._recent)[:MAX_TRACKED_ADDRESSES // 2]:
                del self._recent[key]
