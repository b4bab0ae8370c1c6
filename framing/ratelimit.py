"""chat/1's rate limit as a token bucket, kept by the server and paced to by the client.

The contract (docs/protocol.md, Rate): a connection may send `burst`
requests at once, then `rate` per second; a request beyond that gets
`rate_limited`.  chatd polices it with one bucket per connection and chatcli
paces its own requests with the same bucket, so both count alike.  No clock
is read here: callers pass `now` (seconds, any monotonic origin).
"""


class TokenBucket:
    """`burst` tokens at most, refilled continuously at `rate` per second.

    `tokens` starts at `burst` unless given (chatcli starts at `burst - 1`:
    its hello took one).  `rate` must be > 0 (0 means "no limit": keep no
    bucket at all).
    """

    __slots__ = ("rate", "burst", "tokens", "refilled_at")

    def __init__(self, rate: float, burst: float, now: float, tokens: float | None = None):
        self.rate = rate
        self.burst = burst
        self.tokens = burst if tokens is None else tokens
        self.refilled_at = now

    def take(self, now: float) -> bool:
        """Spend one token if a whole one is there; False (nothing spent) if not."""
        tokens = self.tokens + (now - self.refilled_at) * self.rate
        self.refilled_at = now
        if tokens > self.burst:
            tokens = self.burst
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True

    def wait(self, now: float) -> float:
        """Seconds from `now` until `take` would succeed (0.0 if it would now)."""
        missing = 1.0 - min(self.burst, self.tokens + (now - self.refilled_at) * self.rate)
        return missing / self.rate if missing > 0 else 0.0
