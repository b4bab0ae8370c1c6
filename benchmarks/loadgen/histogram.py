"""A log-bucket latency histogram: constant memory, ~2% resolution, mergeable."""

import math

# Smallest latency told apart (1 µs); anything below lands in bucket 0.
LOWEST_SECONDS = 1e-6
# Bucket width: each bucket is 2% wider than the previous one.
GROWTH = 1.02
_SCALE = 1 / math.log(GROWTH)
# 1 µs * 1.02**1200 is about 20,000 s: no latency of a bounded run goes past it.
BUCKETS = 1200


class LogHistogram:
    __slots__ = ("counts", "total", "highest")

    def __init__(self):
        self.counts = [0] * BUCKETS
        self.total = 0
        self.highest = 0.0

    def record(self, seconds: float) -> None:
        if seconds > LOWEST_SECONDS:
            index = min(int(math.log(seconds / LOWEST_SECONDS) * _SCALE), BUCKETS - 1)
        else:
            index = 0
        self.counts[index] += 1
        self.total += 1
        if seconds > self.highest:
            self.highest = seconds

    def merge(self, other: "LogHistogram") -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts)]
        self.total += other.total
        self.highest = max(self.highest, other.highest)

    def percentile(self, fraction: float) -> float | None:
        """Upper edge of the bucket holding the `fraction` quantile (seconds)."""
        if not self.total:
            return None
        wanted = math.ceil(fraction * self.total)
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= wanted:
                return min(LOWEST_SECONDS * GROWTH ** (index + 1), self.highest)
        return self.highest

    def summary(self) -> dict:
        """p50/p90/p99/p99.9/max in milliseconds, and the sample count."""
        summary = {"count": self.total}
        for label, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)):
            value = self.percentile(fraction)
            summary[label + "_ms"] = None if value is None else round(value * 1e3, 3)
        summary["max_ms"] = round(self.highest * 1e3, 3) if self.total else None
        return summary

    def to_state(self) -> tuple:
        """A picklable, compact form (sparse counts) for sending between processes."""
        return ({i: c for i, c in enumerate(self.counts) if c}, self.total, self.highest)

    @classmethod
    def from_state(cls, state: tuple) -> "LogHistogram":
        histogram = cls()
        sparse, histogram.total, histogram.highest = state
        for index, count in sparse.items():
            histogram.counts[index] = count
        return histogram
