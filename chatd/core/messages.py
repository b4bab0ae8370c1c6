"""Messages: numbering, recording and delivering `msg`, and answering `history`."""

from framing import encode_payload
from framing.paging import HISTORY_OVERHEAD, history_page

from .effects import Deliver, Outbox, StoreMessage, StorePrivate
from .history import History, RetainedHistories, RingBudget


def pair_key(a, b) -> tuple[int, int]:
    """The key of the private conversation between two sessions.

    Keyed by identity, not name: whoever takes a freed name must not read
    its previous holder's private messages, and a `nick` keeps the pair.
    """
    return (a.identity, b.identity) if a.identity <= b.identity else (b.identity, a.identity)


class Messages:
    """Posts `msg`s into room and private histories and reads them back.

    Ids come from each history (1, 2, 3, ... per room and per pair), `ts`
    from `wall_clock` (Unix seconds).  Private histories (of guests: they
    end with the session) are kept in memory for `max_conversations` pairs,
    least recently used dropped first.  With a durable store (`durable`)
    every room message is also handed to it (`StoreMessage`); while the
    store cannot take more (`writable` False) nothing is accepted.

    This is the one place a message is numbered and delivered: a store that
    numbers asynchronously (a cluster) replaces `post`'s numbering with an
    effect and delivers from its completion.
    """

    def __init__(self, out: Outbox, max_conversations: int, history_size: int,
                 budget: RingBudget, durable: bool, wall_clock):
        self.out = out
        self.wall_clock = wall_clock
        self.durable = durable
        self.writable = True
        self.accepted = 0  # messages numbered and recorded (rooms and dms), for metrics
        self.conversations = RetainedHistories(max_conversations, history_size, budget)

    def post(self, sender, history: History, recipients, msg: dict, ref, room=None,
             pair=None) -> None:
        """Number, record and deliver one msg; the sender's echo carries its ref.

        A msg whose payload would not leave HISTORY_OVERHEAD spare in
        max_frame is refused with bad_text, so every stored message fits a
        history answer; while the store cannot write, `unavailable`.
        """
        out = self.out
        if not self.writable:
            out.error(sender, "unavailable", "the message store cannot write right now; "
                      "nothing was accepted, try again", ref)
            return
        msg_id = msg["id"] = history.next_id
        ts = msg["ts"] = self.wall_clock()
        payload = encode_payload(msg)
        if len(payload) > out.max_frame - HISTORY_OVERHEAD:
            out.error(sender, "bad_text", f"message of {len(payload)} bytes; at most "
                      f"{out.max_frame - HISTORY_OVERHEAD} fit max_frame", ref)
            return
        history.append(msg_id, payload)
        self.accepted += 1
        # The room's Deliver first: the protocol joins a read's run of says to
        # one room only when it leads (measured: with the store's copy first,
        # durable fan-out ran at half the speed of memory-only).
        if ref is None:
            out.effects.append(Deliver(recipients, payload, room))
        else:
            others = tuple(member for member in recipients if member is not sender)
            out.effects.append(Deliver(others, payload))
            out.to_actor(sender, msg, payload, ref)
        if room is not None and self.durable:
            out.effects.append(StoreMessage(room.key, room.name, msg_id, ts, sender.name,
                                            msg["text"]))
        elif pair is not None:
            out.effects.append(StorePrivate(pair[0], pair[1], msg_id, ts, sender.name,
                                            msg["to"], msg["text"]))

    def dm(self, sender, recipient, text: str, ref, online: bool = True,
           pair=None) -> None:
        """Post a private `msg` from `sender` to `recipient` (both echoed; only the
        sender when the recipient, an account, is not `online`: it finds the
        message later through `welcome.conversations` and `history`).  `pair`, the
        two account keys in order, has it stored (`StorePrivate`)."""
        history = self.conversations.get_or_new(pair_key(sender, recipient))
        if not online or recipient is sender:
            recipients = (sender,) if not online else (recipient,)
        else:
            recipients = (recipient, sender)
        self.post(sender, history, recipients,
                  {"type": "msg", "to": recipient.name, "from": sender.name, "text": text}, ref,
                  pair=pair)

    def private_history(self, a, b) -> History | None:
        """The pair's history, if it is still kept."""
        return self.conversations.get(pair_key(a, b))

    def answer_history(self, session, envelope: dict, payloads: list, ref) -> None:
        """`history` {…, messages} spliced from the stored payloads, as many as fit."""
        if ref is not None:
            envelope["ref"] = ref
        self.out.effects.append(Deliver((session,), history_page(envelope, payloads,
                                                                 self.out.max_frame)))
