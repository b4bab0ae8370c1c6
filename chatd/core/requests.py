"""Rooms and messages: join, leave, who, rooms, say, dm, history, ping, quit.

A part of ChatCore (a mixin): these handlers share the core's state and are
split off only to keep each module readable.
"""

from framing import DEFAULT_HISTORY_LIMIT, LOBBY
from framing.paging import NAME_ITEM_BYTES, ROOM_ITEM_BYTES

from .effects import LoadHistory, LoadPrivate, LoadRoom
from .identity import OfflineAccount
from .rooms import Room
from .session import Session


class ChatRequests:
    """ChatCore's handlers of rooms and messages (see the module docstring)."""

    def _send_users(self, session: Session, room: Room, ref=None) -> None:
        self.out.pages(session, {"type": "users", "room": room.name}, "names",
                       [member.name for member in room.members], NAME_ITEM_BYTES, ref)

    def _join(self, session: Session, message: dict, ref) -> None:
        name = message["room"]
        room = self.rooms.get(name)
        if room is None or session not in room.members:
            limit = self.settings.max_rooms_per_user
            if len(session.rooms) >= limit:
                self.out.error(session, "not_allowed", f"you are in {limit} rooms already, "
                               f"the most one user may be in; leave one first", ref)
                return
        if room is None:
            limit = self.settings.max_rooms
            if len(self.rooms.by_key) >= limit:
                self.out.error(session, "not_allowed", f"the server has {limit} rooms "
                               f"open, the most it keeps; join an existing one", ref)
                return
            room = self.rooms.open(name)
            if room.history is None:
                self.out.effects.append(LoadRoom(room))
        joined = {"type": "joined", "room": room.name, "name": session.name}
        if session not in room.members:
            self.rooms.enter(session, room)
            self.out.deliver(room.members if self.rooms.announces(room) else (session,),
                             joined)
        else:
            self.out.reply(session, joined)
        self._send_users(session, room, ref)

    def _leave(self, session: Session, message: dict, ref) -> None:
        room = self._member_room(session, message["room"], ref)
        if room is not None:
            self._part(session, room, None, tell_actor=True, ref=ref)

    def _say(self, session: Session, message: dict, ref) -> None:
        room = self._member_room(session, message.get("room", LOBBY), ref)
        if room is not None and not self._wait_for(room, session, message):
            self.messages.post(session, room.history, room.members,
                               {"type": "msg", "room": room.name, "from": session.name,
                                "text": message["text"]}, ref, room)

    def _dm(self, session: Session, message: dict, ref) -> None:
        recipient = self._peer(session, message["to"], ref)
        if recipient is None:
            return
        accepted = self.messages.accepted
        pair = self._stored_pair(session, recipient) if self.rooms.durable else None
        self.messages.dm(session, recipient, message["text"], ref,
                         online=type(recipient) is not OfflineAccount, pair=pair)
        if self.messages.accepted != accepted:
            if session.account:
                self._note_partner(session, recipient)
            if type(recipient) is OfflineAccount or recipient.account:
                self._note_partner(recipient, session)

    def _who(self, session: Session, message: dict, ref) -> None:
        room = self._room_or_error(session, message.get("room", LOBBY), ref)
        if room is not None:
            self._send_users(session, room, ref)

    def _rooms(self, session: Session, message: dict, ref) -> None:
        listing = [{"name": room.name, "users": len(room.members)}
                   for room in self.rooms.by_key.values()]
        self.out.pages(session, {"type": "rooms"}, "rooms", listing, ROOM_ITEM_BYTES, ref)

    def _history(self, session: Session, message: dict, ref) -> None:
        if "room" in message:
            room = self._member_room(session, message["room"], ref)
            if room is None or self._wait_for(room, session, message):
                return
            history = room.history
        else:
            peer = self._peer(session, message["with"], ref, partners=True)
            if peer is None:
                return
            room, history = None, self.messages.private_history(session, peer)
        since = message.get("since")
        limit = min(message.get("limit", DEFAULT_HISTORY_LIMIT), self.settings.history)
        if room is None and self.rooms.durable and (history is None
                                                    or not history.covers(since, limit)):
            pair = self._stored_pair(session, peer)
            if pair is not None:
                self.out.effects.append(LoadPrivate(session, *pair, since, limit))
                self._park(session, message)
                return
        if room is not None and self.rooms.durable and not history.covers(since, limit):
            self.out.effects.append(LoadHistory(session, room.key, since, limit))
            self._park(session, message)
            return
        self.messages.answer_history(session, self._history_envelope(session, message),
                                     history.select(since, limit) if history else [], ref)

    @staticmethod
    def _history_envelope(session: Session, message: dict) -> dict:
        if "room" in message:
            return {"type": "history", "room": session.rooms[message["room"].lower()].name}
        return {"type": "history", "with": message["with"]}

    def _ping(self, session: Session, message: dict, ref) -> None:
        reply = {"type": "pong"}
        if "data" in message:
            reply["data"] = message["data"]
        self.out.reply(session, reply, ref)

    def _quit(self, session: Session, message: dict, ref) -> None:
        self._close(session, "quit", message.get("reason"), ref)
