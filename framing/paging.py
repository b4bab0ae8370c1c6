"""Answers that must fit `max_frame`: lists paged with `more`, history cut oldest first.

chat/1 (docs/protocol.md, Payload): every frame the server sends fits
`max_frame`; a `users` or `rooms` list too long for one frame comes as
several, all but the last with `"more": true`; a `history` answer carries as
many of the asked-for messages as fit, oldest first, with `"more": true`
when it left some out.  These functions return payloads (no length prefix).
"""

from .codec import encode_payload
from .messages import MAX_NAME_CHARS

# Largest JSON of one name in a `users` list, with quotes and comma.
NAME_ITEM_BYTES = MAX_NAME_CHARS + 3
# Largest JSON of one {"name","users"} item in a `rooms` list, with comma.
ROOM_ITEM_BYTES = len('{"name":"","users":},') + MAX_NAME_CHARS + 20
# Bytes a `history` answer spends around its messages: the envelope with a
# `with` name and the longest `ref` (128 characters, each escaped to at most
# 6 bytes), and the `more` tail.  A server keeps every `msg` payload within
# `max_frame` less this, so that history can always return it and its
# sender's echo can carry a `ref`.
HISTORY_OVERHEAD = 1024

_MORE = b',"more":true'


def paged(envelope: dict, member: str, items: list, item_bytes: int,
          max_frame: int) -> list[bytes]:
    """Payloads of `envelope` with `items` under `member`, as many as `max_frame` needs.

    `item_bytes` bounds one item's JSON (with its comma).  At least one
    payload, even for no items; every one but the last carries `"more": true`.
    `envelope` is left as it was.
    """
    room_for_items = max_frame - len(encode_payload({**envelope, member: []})) - len(_MORE)
    per_frame = max(1, room_for_items // item_bytes)
    payloads = []
    for start in range(0, max(len(items), 1), per_frame):
        page = dict(envelope)
        page[member] = items[start:start + per_frame]
        if start + per_frame < len(items):
            page["more"] = True
        payloads.append(encode_payload(page))
    return payloads


def history_page(envelope: dict, messages: list[bytes], max_frame: int) -> bytes:
    """One `history` payload: `envelope` with as many of `messages` as fit, oldest first.

    `messages` are stored `msg` payloads, spliced in as they are (never
    re-encoded); `"more": true` when some were left out.
    """
    head = encode_payload(envelope)[:-1] + b',"messages":['
    budget = max_frame - len(head) - len(b"]" + _MORE + b"}")
    used, count = 0, 0
    for payload in messages:
        used += len(payload) + 1
        if used > budget:
            break
        count += 1
    tail = b"]}" if count == len(messages) else b"]" + _MORE + b"}"
    return head + b",".join(messages[:count]) + tail
