"""Accounts as the core keeps them: who owns which name, and the failed-login limiter.

Sans-IO like the rest of the core: the password hashes are computed on a
worker thread (chatd/accounts.py), the core only holds what the store keeps
(`Account`, `Credential`) and decides who may try to log in.
"""

import dataclasses
from collections import OrderedDict, deque

# `--accounts` values.
ACCOUNT_MODES = ("open", "closed", "off")
# Addresses the failed-login limiter remembers at most (oldest forgotten first).
MAX_TRACKED_ADDRESSES = 10_000


@dataclasses.dataclass(frozen=True)
class Credential:
    """A salted scrypt hash with the parameters it was made with (so they can be raised
    later without invalidating older hashes).  Never the password itself."""

    n: int
    r: int
    p: int
    salt: bytes
    hash: bytes

    def __repr__(self):  # nothing of the hash in a log line or a traceback
        return f"Credential(scrypt n={self.n} r={self.r} p={self.p})"


@dataclasses.dataclass
class Account:
    """A registered name: its spelling, its credential and when it was made (Unix s)."""

    name: str
    credential: Credential
    created: float


class LoginLimiter:
    """Failed logins per client address: at most `failures` within `window` seconds.

    Checked before any hashing, so a flood of guesses costs no CPU once an
    address is over the limit.  Memory is bounded: at most
    MAX_TRACKED_ADDRESSES addresses, the least recently failing forgotten first.
    """

    def __init__(self, failures: int, window: float):
        self.failures = failures
        self.window = window
        self._by_address: OrderedDict = OrderedDict()

    def _recent(self, address, now: float):
        times = self._by_address.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._by_address[address]
            return None
        return times

    def blocked(self, address, now: float) -> bool:
        """Whether `address` has used up its failures for now."""
        times = self._recent(address, now)
        return times is not None and len(times) >= self.failures

    def failed(self, address, now: float) -> None:
        """Count one failed login from `address`."""
        times = self._recent(address, now)
        if times is None:
            times = self._by_address[address] = deque()
        else:
            self._by_address.move_to_end(address)
        times.append(now)
        while len(self._by_address) > MAX_TRACKED_ADDRESSES:
            self._by_address.popitem(last=False)
