"""Message retention in memory: a bounded ring of payloads per room and per private pair,
under one byte budget for the whole server."""

from collections import OrderedDict, deque

# Bytes charged per ring entry beyond its payload: the bytes object's header
# and the deque's slot (measured: sys.getsizeof(b"") is 33, a slot 8).
ENTRY_OVERHEAD = 41


class RingBudget:
    """The bytes all rings may hold together; the least recently used ring is emptied first.

    `limit` in bytes (payloads plus ENTRY_OVERHEAD each).  An emptied ring
    keeps its numbering; what it held is still on file with a durable
    store, and gone without one.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._rings: OrderedDict = OrderedDict()  # History -> None, least recent first

    def charge(self, ring: "History", delta: int) -> None:
        """`ring` grew by `delta` bytes and is now the most recently used."""
        rings = self._rings
        rings[ring] = None
        rings.move_to_end(ring)
        self.used += delta
        while self.used > self.limit and len(rings) > 1:
            oldest = next(iter(rings))
            if oldest is ring:
                break
            self.forget(oldest)
            oldest.evict()

    def forget(self, ring: "History") -> None:
        """`ring` is gone (or emptied): stop counting its bytes."""
        if self._rings.pop(ring, False) is None:
            self.used -= ring.size


class History:
    """The last `capacity` messages of one conversation, with the next id.

    Entries are encoded `msg` payloads, so an answer is spliced from bytes
    and its size known in advance.  The ring holds consecutive ids ending
    at `next_id - 1` (a jump in numbering restarts it), so entries are
    found by arithmetic.  `size` is what the ring charges its budget.
    """

    __slots__ = ("next_id", "entries", "size", "budget")

    def __init__(self, capacity: int, budget: RingBudget, next_id: int = 1,
                 payloads: list | tuple = ()):
        self.next_id = next_id
        self.entries: deque[bytes] = deque(payloads, maxlen=capacity)
        self.budget = budget
        self.size = sum(len(payload) for payload in self.entries) \
            + ENTRY_OVERHEAD * len(self.entries)
        if self.size:
            budget.charge(self, self.size)

    @property
    def first_id(self) -> int:
        """The id of the oldest message in the ring (== next_id when empty)."""
        return self.next_id - len(self.entries)

    def append(self, msg_id: int, payload: bytes) -> None:
        """Record message `msg_id`; an id past `next_id` (a jump) restarts the ring."""
        entries = self.entries
        delta = len(payload) + ENTRY_OVERHEAD
        if msg_id != self.next_id:
            delta -= self.size
            entries.clear()
        elif len(entries) == entries.maxlen:
            delta -= len(entries[0]) + ENTRY_OVERHEAD
        entries.append(payload)
        self.next_id = msg_id + 1
        self.size += delta
        self.budget.charge(self, delta)

    def evict(self) -> None:
        """Drop every payload (the budget asked); numbering goes on."""
        self.entries.clear()
        self.size = 0

    def covers(self, since: int | None, limit: int) -> bool:
        """Whether the ring alone answers `history` (since, limit) exactly:
        nothing the answer needs is older than the ring."""
        first = self.first_id
        if first <= 1:
            return True
        if since is None:
            return len(self.entries) >= limit
        return since + 1 >= first

    def select(self, since: int | None, limit: int) -> list[bytes]:
        """Without `since` the newest `limit`; with it, the first `limit` after it."""
        entries = self.entries
        if since is None:
            start = max(0, len(entries) - limit)
        else:
            start = min(max(0, since + 1 - self.first_id), len(entries))
        stop = min(start + limit, len(entries))
        return [entries[i] for i in range(start, stop)]


class RetainedHistories:
    """Histories kept in memory after their conversation went quiet, most recent last.

    Bounded so that churn through many rooms or pairs cannot grow memory
    without limit: the least recently used is dropped first.  A dropped
    history's ids are remembered only as `floor`, the highest id any
    dropped one reached: a history made anew starts above it, so ids never
    go back (chat/1, Epoch).
    """

    def __init__(self, capacity: int, history_size: int, budget: RingBudget):
        self.capacity = capacity
        self.history_size = history_size
        self.budget = budget
        self.floor = 0
        self._histories: OrderedDict[object, History] = OrderedDict()

    def new(self) -> History:
        """An empty history numbering above every dropped one."""
        return History(self.history_size, self.budget, self.floor + 1)

    def pop_or_new(self, key) -> History:
        """The history kept under `key`, no longer kept here, or a new one."""
        history = self._histories.pop(key, None)
        return history if history is not None else self.new()

    def get(self, key) -> History | None:
        """The history under `key`, now the most recently used, or None."""
        history = self._histories.get(key)
        if history is not None:
            self._histories.move_to_end(key)
        return history

    def get_or_new(self, key) -> History:
        """The history under `key`, made (and kept) if there is none."""
        history = self.get(key)
        if history is None:
            history = self.new()
            self.put(key, history)
        return history

    def put(self, key, history: History) -> None:
        """Keep `history` under `key` as the most recent; drop the oldest beyond capacity."""
        self._histories[key] = history
        self._histories.move_to_end(key)
        while len(self._histories) > self.capacity:
            self.drop(next(iter(self._histories)))

    def drop(self, key) -> None:
        """Forget the history under `key` (if kept), raising `floor` past its ids."""
        history = self._histories.pop(key, None)
        if history is not None:
            self.floor = max(self.floor, history.next_id - 1)
            self.budget.forget(history)
