"""framing.paging: lists and history answers cut to fit max_frame, nothing lost or reordered."""

import json

from hypothesis import given, strategies as st

import framing
from framing.paging import NAME_ITEM_BYTES, ROOM_ITEM_BYTES, history_page, paged

names = st.text(alphabet="abcXYZ019_.-", min_size=1, max_size=framing.MAX_NAME_CHARS)
refs = st.one_of(st.none(), st.integers(-2**63, 2**63 - 1),
                 st.text(max_size=128).filter(lambda ref: not framing.codec.has_lone_surrogate(ref)))
max_frames = st.integers(8192, 20_000)


@given(st.lists(names, max_size=800), refs, max_frames)
def test_users_pages_fit_max_frame_and_carry_every_name_once_in_order(items, ref, max_frame):
    envelope = {"type": "users", "room": "lobby"}
    if ref is not None:
        envelope["ref"] = ref
    payloads = paged(envelope, "names", items, NAME_ITEM_BYTES, max_frame)
    assert all(len(payload) <= max_frame for payload in payloads)
    pages = [json.loads(payload) for payload in payloads]
    assert [name for page in pages for name in page["names"]] == items
    assert [page.get("more", False) for page in pages] == [True] * (len(pages) - 1) + [False]
    assert all(page.get("ref") == ref for page in pages)
    assert "names" not in envelope  # the caller's envelope is left as it was


@given(st.lists(st.fixed_dictionaries({"name": names, "users": st.integers(0, 10**6)}),
                max_size=300), max_frames)
def test_rooms_pages_fit_max_frame(listing, max_frame):
    payloads = paged({"type": "rooms"}, "rooms", listing, ROOM_ITEM_BYTES, max_frame)
    assert all(len(payload) <= max_frame for payload in payloads)
    assert [room for payload in payloads for room in json.loads(payload)["rooms"]] == listing


@given(st.lists(st.integers(1, 6000), max_size=60), refs, max_frames)
def test_a_history_page_is_the_oldest_messages_that_fit_and_says_more_when_it_cut(
        text_sizes, ref, max_frame):
    stored = [framing.encode_payload({"type": "msg", "room": "lobby", "from": "a",
                                      "text": "x" * size, "id": number, "ts": 1.5})
              for number, size in enumerate(text_sizes, 1)]
    envelope = {"type": "history", "room": "lobby"}
    if ref is not None:
        envelope["ref"] = ref
    payload = history_page(envelope, stored, max_frame)
    assert len(payload) <= max_frame
    answer = json.loads(payload)
    kept = answer["messages"]
    assert [m["id"] for m in kept] == list(range(1, len(kept) + 1))  # oldest first
    assert answer.get("more", False) == (len(kept) < len(stored))
    if len(kept) < len(stored):  # the next one really did not fit
        assert len(history_page(envelope, stored[:len(kept) + 1], max_frame + 10**6)) \
            >= max_frame - len(',"more":true')
