"""Message retention: a bounded, id-numbered log of payloads per room and per private pair."""

from collections import OrderedDict, deque


class History:
    """The last `capacity` messages of one conversation, with the next id.

    Each entry is (id, payload), the payload being the message's encoded
    JSON, so an answer is spliced from bytes and its size known in advance.
    Ids increase by exactly 1, so entries are found by arithmetic.
    """

    __slots__ = ("next_id", "entries")

    def __init__(self, capacity: int):
        self.next_id = 1
        self.entries: deque[bytes] = deque(maxlen=capacity)

    def append(self, payload: bytes) -> None:
        """Record the message that was numbered `next_id`."""
        self.entries.append(payload)
        self.next_id += 1

    def select(self, since: int | None, limit: int) -> list[bytes]:
        """Without `since` the newest `limit`; with it, the first `limit` after it."""
        entries = self.entries
        first_id = self.next_id - len(entries)
        if since is None:
            start = max(0, len(entries) - limit)
        else:
            start = min(max(0, since + 1 - first_id), len(entries))
        stop = min(start + limit, len(entries))
        return [entries[i] for i in range(start, stop)]


class RetainedHistories:
    """Histories kept after their conversation went quiet, most recent last.

    Bounded so that churn through many rooms or pairs cannot grow memory
    without limit: the least recently used is dropped first.
    """

    def __init__(self, capacity: int, history_size: int):
        self.capacity = capacity
        self.history_size = history_size
        self._histories: OrderedDict[object, History] = OrderedDict()

    def pop_or_new(self, key) -> History:
        history = self._histories.pop(key, None)
        return history if history is not None else History(self.history_size)

    def get(self, key) -> History | None:
        """The history under `key`, now the most recently used, or None."""
        history = self._histories.get(key)
        if history is not None:
            self._histories.move_to_end(key)
        return history

    def get_or_new(self, key) -> History:
        history = self.get(key)
        if history is None:
            history = History(self.history_size)
            self.put(key, history)
        return history

    def put(self, key, history: History) -> None:
        self._histories[key] = history
        self._histories.move_to_end(key)
        while len(self._histories) > self.capacity:
            self._histories.popitem(last=False)
