"""History in memory has a bound whatever one client does: the ring budget, the rooms per
user, and history evicted from memory still served exactly from the store's file."""

import pytest

from probes import MIB, PeakRss, assert_healthy
from support import ChatClient, ServerProcess

ROOMS = 60
PER_ROOM = 100
TEXT = 4_000
BUDGET = 4 * MIB
# What the server may hold beyond the budget during the fill: SQLite's page
# cache (2 MiB), the texts waiting for their commit (at most 4 MiB before the
# senders are paused), the rooms and their members, the allocator's slack.
OVERHEAD = 14 * MIB


def text(room: int, number: int) -> str:
    return f"{room}:{number}:".ljust(TEXT, "x")


def fill(client: ChatClient, rooms: int, per_room: int) -> None:
    """Join `rooms` rooms and say `per_room` texts of TEXT characters in each."""
    for room in range(rooms):
        client.send({"type": "join", "room": f"r{room}"})
        client.next(lambda m: m["type"] == "users" and m["room"] == f"r{room}")
        for number in range(per_room):
            client.send({"type": "say", "room": f"r{room}", "text": text(room, number)})
        last = text(room, per_room - 1)
        client.next(lambda m: m["type"] == "msg" and m["text"] == last, timeout=30)


@pytest.mark.parametrize("store", ["file", "memory"])
def test_a_flood_of_history_stays_within_the_budget_and_the_file_serves_what_memory_dropped(
        store, tmp_path):
    path = str(tmp_path / "chatd.db") if store == "file" else "memory"
    with ServerProcess("--store", path, "--rate-limit", "0", "--history-memory", str(BUDGET),
                       "--max-rooms-per-user", str(ROOMS + 1)) as server, \
            ChatClient((server.host, server.port), "filler") as filler:
        with PeakRss(server.pid) as memory:
            fill(filler, ROOMS, PER_ROOM)
        volume = ROOMS * PER_ROOM * TEXT
        print(f"\n{store}: {volume / MIB:.0f} MiB of text said; server RSS peak "
              f"+{memory.growth / MIB:.1f} MiB (budget {BUDGET / MIB:.0f} MiB)")
        assert volume > 4 * BUDGET
        memory.assert_bounded(BUDGET + OVERHEAD)
        # The first room's ring was emptied long ago to stay within the budget.
        filler.send({"type": "history", "room": "r0", "since": 0, "limit": PER_ROOM})
        answer = filler.next_of("history")
        texts = []
        while True:
            texts += [m["text"] for m in answer["messages"]]
            if not answer.get("more") or not answer["messages"]:
                break
            filler.send({"type": "history", "room": "r0", "limit": PER_ROOM,
                         "since": answer["messages"][-1]["id"]})
            answer = filler.next_of("history")
        if store == "file":
            assert texts == [text(0, number) for number in range(PER_ROOM)]
        else:  # nothing else holds it: gone, and the answer says so by being empty
            assert texts == []
        # One room more than the cap is refused with a clear error.
        filler.send({"type": "join", "room": "one-too-many", "ref": 1})
        refusal = filler.next(lambda m: m.get("ref") == 1)
        assert refusal["code"] == "not_allowed" and "rooms already" in refusal["message"]
        assert_healthy(server)
