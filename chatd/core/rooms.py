"""Rooms: membership, the presence policy, and where an emptied room's history goes."""

from framing import LOBBY

from .history import History, RetainedHistories, RingBudget


class Room:
    """A room's name as first spelled, its members (an insertion-ordered set) and history.

    `history` is None while the room's numbering is being loaded from a
    durable store; members may join meanwhile, and sessions waiting to say
    or read history there are in `waiters`.
    """

    __slots__ = ("name", "key", "members", "history", "waiters")

    def __init__(self, name: str, history: History | None):
        self.name = name
        self.key = name.lower()
        self.members: dict = {}  # Session -> None
        self.history = history
        self.waiters: list = []


class Rooms:
    """Every open room by casefolded name; the lobby always exists.

    A room opens at its first `join` and closes when its last member
    leaves.  With a durable store (`durable`), a closed room's history and
    numbering live on file and a room opens with `history` None until the
    store's answer arrives; without one, the histories of
    `retained` emptied rooms are kept in memory, least recently emptied
    dropped first, and a room made anew numbers above every dropped one.
    `presence_limit`: rooms larger than this get no presence frames (chat/1:
    a join must not cost a frame per member in a big room).
    """

    def __init__(self, presence_limit: int, retained: int, history_size: int,
                 budget: RingBudget, durable: bool, lobby: History):
        self.presence_limit = presence_limit
        self.durable = durable
        self.history_size = history_size
        self.budget = budget
        self.by_key: dict[str, Room] = {}
        self._retired = RetainedHistories(retained, history_size, budget)
        self.lobby = Room(LOBBY, lobby)
        self.by_key[LOBBY] = self.lobby

    def get(self, name: str) -> Room | None:
        """The open room called `name` (any case), or None."""
        return self.by_key.get(name.lower())

    def open(self, name: str) -> Room:
        """A new room named `name`: with its kept history, or (durable) waiting for it."""
        key = name.lower()
        room = Room(name, None if self.durable else self._retired.pop_or_new(key))
        self.by_key[key] = room
        return room

    def loaded(self, room: Room, next_id: int, payloads: list) -> None:
        """The store's answer for `room`: its next id and newest consecutive payloads."""
        room.history = History(self.history_size, self.budget, next_id, payloads)

    def announces(self, room: Room) -> bool:
        """Whether presence in `room` is sent to its members (not only to the actor)."""
        return len(room.members) <= self.presence_limit

    @staticmethod
    def enter(session, room: Room) -> None:
        """Make `session` a member of `room`."""
        room.members[session] = None
        session.rooms[room.key] = room

    def remove(self, session, room: Room) -> None:
        """Take `session` out of `room`; an emptied room other than the lobby closes."""
        del room.members[session]
        del session.rooms[room.key]
        self.close_if_empty(room)

    def close_if_empty(self, room: Room) -> None:
        """Close `room` if nobody is in it or waiting for it (never the lobby; once)."""
        if room.members or room.waiters or room is self.lobby \
                or self.by_key.get(room.key) is not room:
            return
        del self.by_key[room.key]
        if room.history is None:
            return
        if self.durable:
            self.budget.forget(room.history)
        else:
            self._retired.put(room.key, room.history)
