"""The delivery check: one ordered stream of message numbers, as one receiver saw it.

For chat/1 the stream is the room's `id`s (the server numbers each accepted
`say` +1); for Redis, which numbers nothing, it is each sender's own
sequence number carried in the payload.  Given how many messages were
accepted, a receiver's losses, duplicates and reorders follow exactly.
"""

# A jump forward by more than this is not a gap to remember but garbage.
MAX_GAP = 1_000_000


class DeliveryCheck:
    __slots__ = ("expected", "missing", "received", "duplicates", "reorders")

    def __init__(self, first: int):
        self.expected = first      # the number the next in-order message must carry
        self.missing: set[int] = set()  # skipped numbers that may still come late
        self.received = 0
        self.duplicates = 0
        self.reorders = 0

    def add_run(self, numbers: list[int]) -> None:
        """A run of numbers in arrival order; the in-order case costs no Python loop."""
        count = len(numbers)
        if not count:
            return
        expected = self.expected
        if numbers[0] == expected and numbers[-1] == expected + count - 1 \
                and numbers == list(range(expected, expected + count)):
            self.expected = expected + count
            self.received += count
            return
        for number in numbers:
            self.add(number)

    def advance(self, last: int, count: int) -> None:
        """`count` in-order messages ending with number `last`, checked as a run elsewhere."""
        self.received += count
        self.expected = last + 1

    def add(self, number: int) -> None:
        self.received += 1
        expected = self.expected
        if number == expected:
            self.expected = expected + 1
        elif number > expected:
            if number - expected > MAX_GAP:
                self.duplicates += 1  # not a number this run could have produced
                return
            self.missing.update(range(expected, number))
            self.expected = number + 1
        elif number in self.missing:
            self.missing.remove(number)
            self.reorders += 1
        else:
            self.duplicates += 1

    @property
    def unique(self) -> int:
        return self.received - self.duplicates
