"""Rooms: membership, the presence policy, and the histories of emptied rooms."""

from framing import LOBBY

from .history import History, RetainedHistories


class Room:
    """A room's name as first spelled, its members (an insertion-ordered set) and history."""

    __slots__ = ("name", "key", "members", "history")

    def __init__(self, name: str, history: History):
        self.name = name
        self.key = name.lower()
        self.members: dict = {}  # Session -> None
        self.history = history


class Rooms:
    """Every open room by casefolded name; the lobby always exists.

    A room opens at its first `join` and closes when its last member leaves;
    its history (and so its ids) is kept for `retained` emptied rooms, least
    recently emptied dropped first, so that members coming back see the same
    numbering.  `presence_limit`: rooms larger than this get no presence
    frames (chat/1: a join must not cost a frame per member in a big room).
    """

    def __init__(self, presence_limit: int, retained: int, history_size: int):
        self.presence_limit = presence_limit
        self.by_key: dict[str, Room] = {}
        self._retired = RetainedHistories(retained, history_size)
        self.lobby = self.open(LOBBY)

    def get(self, name: str) -> Room | None:
        return self.by_key.get(name.lower())

    def open(self, name: str) -> Room:
        """A new room named `name`, with the history it had when last emptied."""
        key = name.lower()
        room = Room(name, self._retired.pop_or_new(key))
        self.by_key[key] = room
        return room

    def announces(self, room: Room) -> bool:
        """Whether presence in `room` is sent to its members (not only to the actor)."""
        return len(room.members) <= self.presence_limit

    @staticmethod
    def enter(session, room: Room) -> None:
        room.members[session] = None
        session.rooms[room.key] = room

    def remove(self, session, room: Room) -> None:
        """Take `session` out of `room`; an emptied room other than the lobby closes."""
        del room.members[session]
        del session.rooms[room.key]
        if not room.members and room is not self.lobby:
            del self.by_key[room.key]
            self._retired.put(room.key, room.history)
