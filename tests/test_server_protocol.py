"""chat/1 through real sockets: every request, every reply and the `ref` echo.

Each test runs its own chatd in this process on 127.0.0.1, port 0 (with
the rate limit off unless the test is about it), and talks to it with
tests/support.ChatClient, which waits on frames, never on the clock.
"""

import json

import pytest

import framing
from support import ChatClient, serve


def expect(client: ChatClient, **fields) -> dict:
    """The client's very next frame, which must carry `fields`."""
    frame = client.next()
    assert {key: frame.get(key) for key in fields} == fields, frame
    return frame


def expect_closed_with(client: ChatClient, *tail: dict) -> list:
    """The frames up to the server's close, which end with `tail` (codes/reasons)."""
    frames = client.frames_until_close()
    ending = [{key: frame.get(key) for key in wanted} for frame, wanted
              in zip(frames[-len(tail):], tail)]
    assert ending == list(tail), frames
    return frames


def test_welcome_carries_the_contract_members_and_others_hear_joined():
    with serve() as server, ChatClient(server.address, "alice") as alice, \
            ChatClient(server.address) as bob:
        welcome = bob.hello("bob", version=1, ref="h1")
        assert welcome["name"] == "bob" and welcome["ref"] == "h1"
        assert welcome["rooms"] == ["lobby"]
        assert welcome["users"] == ["bob", "alice"]
        assert welcome["user_count"] == 2
        assert isinstance(welcome["server"], str) and welcome["server"]
        assert len(welcome["token"]) >= 22  # url-safe base64: >= 128 random bits
        assert welcome["token"] != alice.welcome["token"]
        limits = welcome["limits"]
        assert {"max_frame": 65_536, "max_text": 4_000, "rate": 0, "burst": 20,
                "presence_limit": 200}.items() <= limits.items()
        expect(alice, type="joined", room="lobby", name="bob")


def test_hello_errors_then_a_second_hello_on_the_same_connection():
    with serve() as server, ChatClient(server.address, "alice"), \
            ChatClient(server.address) as other:
        other.send({"type": "hello", "name": "no spaces", "ref": 1})
        expect(other, type="error", code="bad_name", ref=1)
        other.send({"type": "hello", "name": "x" * 33})
        expect(other, type="error", code="bad_name")
        other.send({"type": "hello", "name": "ALICE", "ref": "case"})
        expect(other, type="error", code="name_taken", ref="case")
        other.send({"type": "hello", "name": "bob", "version": 2})
        expect(other, type="error", code="bad_message")
        assert other.hello("bob")["name"] == "bob"
        other.send({"type": "hello", "name": "carol", "ref": 9})
        expect(other, type="error", code="bad_message", ref=9)  # hello after welcome


def test_only_hello_ping_and_quit_before_welcome():
    with serve() as server, ChatClient(server.address) as client:
        for request in ({"type": "say", "text": "hi"}, {"type": "dm", "to": "x", "text": "y"},
                        {"type": "join", "room": "r"}, {"type": "leave", "room": "r"},
                        {"type": "nick", "name": "n"}, {"type": "who"}, {"type": "rooms"},
                        {"type": "history", "room": "lobby"}):
            client.send({**request, "ref": request["type"]})
            expect(client, type="error", code="not_welcome", ref=request["type"])
        client.send({"type": "ping", "data": {"k": [1, 2]}})
        expect(client, type="pong", data={"k": [1, 2]})
        client.send({"type": "quit", "ref": 3})
        assert client.frames_until_close() == [{"type": "bye", "reason": "quit", "ref": 3}]


def test_token_takes_the_name_back_and_replaces_the_old_connection():
    with serve() as server, ChatClient(server.address, "alice") as old, \
            ChatClient(server.address, "bob") as bob, ChatClient(server.address) as new:
        token = old.welcome["token"]
        expect(old, type="joined", name="bob")
        for wrong in ("wrong", token[:-1], "\u00e9t\u00e9"):  # non-ASCII must not crash it
            new.send({"type": "hello", "name": "alice", "token": wrong})
            expect(new, type="error", code="name_taken")
        welcome = new.hello("Alice", token=token)
        assert welcome["name"] == "Alice" and welcome["token"] != token
        assert old.frames_until_close() == [{"type": "bye", "reason": "replaced"}]
        expect(bob, type="left", name="alice", reason="replaced")
        expect(bob, type="joined", name="Alice")


def test_say_numbers_messages_per_room_and_echoes_to_the_sender():
    with serve() as server, ChatClient(server.address, "alice") as alice, \
            ChatClient(server.address, "bob") as bob:
        expect(alice, type="joined", name="bob")
        alice.send({"type": "say", "text": "one", "from": "bob"})  # from is the server's
        alice.send({"type": "say", "room": "lobby", "text": "two \u00e9\U0001f600", "ref": "r"})
        for client in (alice, bob):
            first = expect(client, type="msg", room="lobby", **{"from": "alice"},
                           text="one", id=1)
            assert isinstance(first["ts"], float) and "to" not in first
        expect(alice, type="msg", text="two \u00e9\U0001f600", id=2, ref="r")
        assert "ref" not in expect(bob, type="msg", text="two \u00e9\U0001f600", id=2)
        bob.send({"type": "join", "room": "dev"})
        expect(bob, type="joined", room="dev")
        expect(bob, type="users", room="dev", names=["bob"])
        bob.send({"type": "say", "room": "dev", "text": "own count"})
        expect(bob, type="msg", room="dev", id=1)


def test_say_errors():
    with serve(max_frame=8192) as server, ChatClient(server.address, "alice") as alice, \
            ChatClient(server.address, "bob") as bob:
        bob.send({"type": "join", "room": "dev"})
        expect(alice, type="joined", name="bob")
        for request, code in (
                ({"room": "nowhere", "text": "x"}, "no_such_room"),
                ({"room": "dev", "text": "x"}, "not_in_room"),
                ({"room": "bad room", "text": "x"}, "bad_name"),
                ({"text": ""}, "bad_text"),
                ({"text": "a\x00b"}, "bad_text"),
                ({"text": "x" * 4001}, "bad_text"),
                ({"text": 5}, "bad_text"),
                ({"text": "\u00e9" * 4000}, "bad_text"),  # 4,000 characters, too big for 8 KiB
                ({}, "bad_message")):
            alice.send({"type": "say", **request, "ref": code})
            expect(alice, type="error", code=code, ref=code)
        alice.send({"type": "say", "text": "x" * 4000})
        expect(alice, type="msg", id=1, text="x" * 4000)  # the refused ones used no id


def test_dm_reaches_the_recipient_and_echoes_with_ids_per_pair():
    with serve() as server, ChatClient(server.address, "alice") as alice, \
            ChatClient(server.address, "bob") as bob, \
            ChatClient(server.address, "carol") as carol:
        for client, arrivals in ((alice, ("bob", "carol")), (bob, ("carol",))):
            for name in arrivals:
                expect(client, type="joined", name=name)
        alice.send({"type": "dm", "to": "BOB", "text": "psst", "ref": 4})
        expect(alice, type="msg", to="bob", **{"from": "alice"}, text="psst", id=1, ref=4)
        expect(bob, type="msg", to="bob", **{"from": "alice"}, text="psst", id=1)
        bob.send({"type": "dm", "to": "alice", "text": "back"})
        expect(bob, type="msg", to="alice", id=2)
        expect(alice, type="msg", to="alice", **{"from": "bob"}, text="back", id=2)
        alice.send({"type": "dm", "to": "carol", "text": "hi"})
        expect(alice, type="msg", to="carol", id=1)
        alice.send({"type": "dm", "to": "nobody", "text": "hi", "ref": "n"})
        expect(alice, type="error", code="no_such_user", ref="n")
        alice.send({"type": "dm", "to": "bob", "text": ""})
        expect(alice, type="error", code="bad_text")
        carol.send({"type": "ping"})
        expect(carol, type="msg", to="carol", **{"from": "alice"}, id=1)
        expect(carol, type="pong")  # and nothing of alice and bob's pair


def test_join_leave_and_the_life_of_a_room():
    with serve() as server, ChatClient(server.address, "alice") as alice, \
            ChatClient(server.address, "bob") as bob:
        expect(alice, type="joined", name="bob")
        alice.send({"type": "join", "room": "Dev", "ref": "j"})
        expect(alice, type="joined", room="Dev", name="alice")
        expect(alice, type="users", room="Dev", names=["alice"], ref="j")
        bob.send({"type": "join", "room": "dev"})  # rooms are case-insensitive too
        for client in (alice, bob):
            expect(client, type="joined", room="Dev", name="bob")
        expect(bob, type="users", room="Dev", names=["alice", "bob"])
        bob.send({"type": "rooms", "ref": 1})
        assert expect(bob, type="rooms", ref=1)["rooms"] == [
            {"name": "lobby", "users": 2}, {"name": "Dev", "users": 2}]
        bob.send({"type": "leave", "room": "dev", "ref": "l"})
        expect(alice, type="left", room="Dev", name="bob")
        expect(bob, type="left", room="Dev", name="bob", ref="l")
        bob.send({"type": "leave", "room": "dev"})
        expect(bob, type="error", code="not_in_room")
        alice.send({"type": "leave", "room": "dev"})
        expect(alice, type="left", room="Dev", name="alice")
        bob.send({"type": "leave", "room": "dev"})
        expect(bob, type="error", code="no_such_room")  # empty rooms vanish
        bob.send({"type": "join", "room": "no good"})
        expect(bob, type="error", code="bad_name")
        bob.send({"type": "leave", "room": "lobby"})
        expect(bob, type="left", room="lobby", name="bob")
        expect(alice, type="left", room="lobby", name="bob")
        alice.send({"type": "leave", "room": "lobby"})
        expect(alice, type="left", room="lobby", name="alice")
        alice.send({"type": "rooms"})
        assert expect(alice, type="rooms")["rooms"] == [{"name": "lobby", "users": 0}]


def test_nick_is_announced_to_room_mates_and_self():
    with serve() as server, ChatClient(server.address, "alice") as alice, \
            ChatClient(server.address, "bob") as bob, ChatClient(server.address) as loner:
        expect(alice, type="joined", name="bob")
        loner.hello("loner")
        loner.send({"type": "leave", "room": "lobby"})
        expect(loner, type="left", name="loner")
        for client in (alice, bob):
            expect(client, type="joined", name="loner")
            expect(client, type="left", name="loner")
        alice.send({"type": "nick", "name": "BOB", "ref": 1})
        expect(alice, type="error", code="name_taken", ref=1)
        alice.send({"type": "nick", "name": "bad name"})
        expect(alice, type="error", code="bad_name")
        alice.send({"type": "nick", "name": "ally", "ref": 2})
        expect(alice, type="renamed", old="alice", new="ally", ref=2)
        expect(bob, type="renamed", old="alice", new="ally")
        loner.send({"type": "ping"})
        expect(loner, type="pong")  # shares no room with ally: not told
        bob.send({"type": "dm", "to": "ally", "text": "hi"})
        expect(alice, type="msg", to="ally")
        with ChatClient(server.address, "alice"):  # the old name is free again
            pass


def test_who_defaults_to_the_lobby_and_names_a_room():
    with serve() as server, ChatClient(server.address, "alice") as alice, \
            ChatClient(server.address, "bob") as bob:
        bob.send({"type": "join", "room": "dev"})
        alice.send({"type": "who", "ref": "w"})
        expect(alice, type="joined", name="bob")
        expect(alice, type="users", room="lobby", names=["alice", "bob"], ref="w")
        alice.send({"type": "who", "room": "DEV"})
        assert "more" not in expect(alice, type="users", room="dev", names=["bob"])
        alice.send({"type": "who", "room": "nowhere", "ref": 0})
        expect(alice, type="error", code="no_such_room", ref=0)


def test_users_and_rooms_answers_are_paged_within_max_frame():
    names = [f"user{i:028d}" for i in range(240)]  # 32 characters: 240 need two 8 KiB pages
    with serve(max_frame=8192, presence_limit=0, max_rooms_per_user=200) as server:
        clients = [ChatClient(server.address, name) for name in names]
        try:
            asker = clients[0]
            asker.send({"type": "who", "ref": 1})
            pages = [expect(asker, type="users", room="lobby", ref=1)]
            while pages[-1].get("more"):
                pages.append(expect(asker, type="users", ref=1))
            assert len(pages) >= 2 and all(page["more"] is True for page in pages[:-1])
            assert [name for page in pages for name in page["names"]] == names
            assert all(len(framing.encode_payload(page)) <= 8192 for page in pages)
            rooms = [f"room{i:028d}" for i in range(130)]
            for room in rooms:
                asker.send({"type": "join", "room": room})
            asker.send({"type": "rooms"})
            pages = [asker.next_of("rooms")]
            while pages[-1].get("more"):
                pages.append(expect(asker, type="rooms"))
            assert len(pages) >= 2
            assert all(len(framing.encode_payload(page)) <= 8192 for page in pages)
            assert [item for page in pages for item in page["rooms"]] == \
                [{"name": "lobby", "users": 240}] + [{"name": room, "users": 1}
                                                     for room in rooms]
        finally:
            for client in clients:
                client.close()


def test_history_of_a_room_with_since_limit_and_paging():
    with serve(max_frame=8192) as server, ChatClient(server.address, "alice") as alice:
        texts = [f"{i:04d}" + "h" * 1996 for i in range(1, 11)]  # 10 messages of ~2 KB
        for text in texts:
            alice.send({"type": "say", "text": text})
        for number in range(1, 11):
            expect(alice, type="msg", id=number)
        alice.send({"type": "history", "room": "lobby", "limit": 2, "ref": "h"})
        answer = expect(alice, type="history", room="lobby", ref="h")
        assert [m["id"] for m in answer["messages"]] == [9, 10] and "more" not in answer
        alice.send({"type": "history", "room": "lobby", "since": 7, "limit": 2})
        assert [m["id"] for m in expect(alice, type="history")["messages"]] == [8, 9]
        got, since = [], 0
        while True:  # an answer too big for one frame is cut, oldest first
            alice.send({"type": "history", "room": "lobby", "since": since})
            page = expect(alice, type="history", room="lobby")
            assert len(framing.encode_payload(page)) <= 8192
            got += page["messages"]
            if not page.get("more"):
                break
            assert page["messages"], "a page with more must make progress"
            since = page["messages"][-1]["id"]
        assert [m["text"] for m in got] == texts
        assert all(m["room"] == "lobby" and m["from"] == "alice" for m in got)
        alice.send({"type": "history", "room": "lobby", "since": 10})
        assert expect(alice, type="history")["messages"] == []
        alice.send({"type": "history", "room": "nowhere"})
        expect(alice, type="error", code="no_such_room")
        alice.send({"type": "history", "room": "lobby", "with": "bob"})
        expect(alice, type="error", code="bad_message")
        alice.send({"type": "history", "room": "lobby", "limit": 0})
        expect(alice, type="error", code="bad_message")


def test_a_mixed_burst_in_one_read_is_served_in_order_to_each_member():
    with serve() as server, ChatClient(server.address, "alice") as alice, \
            ChatClient(server.address, "bob") as bob:
        expect(alice, type="joined", name="bob")
        burst = [{"type": "say", "text": "A"}, {"type": "say", "text": "B"},
                 {"type": "join", "room": "dev"}, {"type": "say", "room": "dev", "text": "C"},
                 {"type": "say", "text": "D"}, {"type": "dm", "to": "bob", "text": "E"},
                 {"type": "say", "text": "F", "ref": 6}, {"type": "leave", "room": "dev"},
                 {"type": "say", "room": "dev", "text": "G"}, {"type": "say", "text": "H"},
                 {"type": "say", "text": "I"}, {"type": "leave", "room": "lobby"}]
        alice.send_raw(b"".join(map(framing.encode, burst)))

        def seen(client, count):
            return [(f["type"], f.get("text") or f.get("room") or f.get("code"), f.get("id"))
                    for f in (client.next() for _ in range(count))]
        assert seen(alice, 11) == [
            ("msg", "A", 1), ("msg", "B", 2), ("joined", "dev", None), ("users", "dev", None),
            ("msg", "C", 1), ("msg", "D", 3), ("msg", "E", 1), ("msg", "F", 4),
            ("left", "dev", None), ("error", "no_such_room", None), ("msg", "H", 5)]
        # The run of says before a leave still reaches the leaver.
        assert seen(alice, 2) == [("msg", "I", 6), ("left", "lobby", None)]
        assert seen(bob, 8) == [("msg", "A", 1), ("msg", "B", 2), ("msg", "D", 3),
                                ("msg", "E", 1), ("msg", "F", 4), ("msg", "H", 5),
                                ("msg", "I", 6), ("left", "lobby", None)]


@pytest.mark.parametrize("kind", ["ping", "say", "quit", "shout"])
def test_a_ref_with_a_lone_surrogate_is_bad_message_and_the_server_lives(kind):
    with serve() as server, ChatClient(server.address) as client:
        client.send_raw(framing.frame(
            b'{"type":"%s","text":"x","ref":"\\ud800"}' % kind.encode()))
        assert "ref" not in expect(client, type="error", code="bad_message")
        with ChatClient(server.address, "alice") as alice:  # still serving
            alice.send({"type": "ping", "ref": "ok"})
            expect(alice, type="pong", ref="ok")


def test_private_history_follows_the_user_not_the_name():
    with serve() as server, ChatClient(server.address, "alice") as alice:
        with ChatClient(server.address, "bob") as bob:
            alice.send({"type": "dm", "to": "bob", "text": "for bob only"})
            expect(bob, type="msg", id=1)
            bob.send({"type": "nick", "name": "robert"})
            expect(bob, type="renamed")
            alice.send({"type": "dm", "to": "robert", "text": "still you"})
            assert expect(bob, type="msg")["id"] == 2  # the pair survives a nick
            bob.send({"type": "quit"})
            expect(bob, type="bye")
        # Whoever takes the freed name meets a new, empty conversation.
        with ChatClient(server.address, "robert") as impostor:
            impostor.send({"type": "history", "with": "alice"})
            assert expect(impostor, type="history")["messages"] == []
            impostor.send({"type": "dm", "to": "alice", "text": "hi"})
            assert expect(impostor, type="msg")["id"] == 1


def test_a_token_reclaim_keeps_the_private_history():
    with serve() as server, ChatClient(server.address, "alice") as alice, \
            ChatClient(server.address, "bob") as bob:
        alice.send({"type": "dm", "to": "bob", "text": "before the drop"})
        expect(bob, type="msg", id=1)
        with ChatClient(server.address) as again:
            again.hello("bob", token=bob.welcome["token"])
            again.send({"type": "history", "with": "alice"})
            assert [m["text"] for m in expect(again, type="history")["messages"]] == [
                "before the drop"]


def test_history_with_a_user_returns_the_private_pair_and_only_to_members():
    with serve(history=3) as server, ChatClient(server.address, "alice") as alice, \
            ChatClient(server.address, "bob") as bob:
        expect(alice, type="joined", name="bob")
        for number in range(1, 6):
            alice.send({"type": "dm", "to": "bob", "text": f"d{number}"})
            expect(alice, type="msg", id=number)
        bob.send({"type": "history", "with": "ALICE", "ref": 2})
        answer = bob.next_of("history")
        assert answer["with"] == "ALICE" and answer["ref"] == 2
        assert [m["text"] for m in answer["messages"]] == ["d3", "d4", "d5"]  # ring of 3
        bob.send({"type": "history", "with": "carol"})
        expect(bob, type="error", code="no_such_user")
        bob.send({"type": "join", "room": "dev"})
        alice.send({"type": "history", "room": "dev", "ref": 1})
        expect(alice, type="error", code="not_in_room", ref=1)


def test_ping_echoes_data_and_a_pong_that_cannot_fit_is_bad_message():
    with serve(max_frame=8192) as server, ChatClient(server.address, "alice") as alice:
        alice.send({"type": "ping", "ref": 2**63 - 1})
        assert alice.next() == {"type": "pong", "ref": 2**63 - 1}
        alice.send({"type": "ping", "data": ["\u00e9", None, True, 1.5, {"a": {}}]})
        expect(alice, type="pong", data=["\u00e9", None, True, 1.5, {"a": {}}])
        # 1E5 is 3 bytes in the ping and "100000.0", 8 bytes, in the pong.
        payload = b'{"type":"ping","ref":"big","data":[' + b",".join([b"1E5"] * 2000) + b"]}"
        assert len(payload) <= 8192
        alice.send_raw(framing.frame(payload, 8192))
        expect(alice, type="error", code="bad_message", ref="big")
        alice.send({"type": "ping"})
        expect(alice, type="pong")  # still connected


def test_quit_says_bye_last_and_the_others_hear_left_with_the_reason():
    with serve() as server, ChatClient(server.address, "alice") as alice, \
            ChatClient(server.address, "bob") as bob:
        expect(alice, type="joined", name="bob")
        bob.send({"type": "join", "room": "dev"})
        alice.send({"type": "join", "room": "dev"})
        expect(alice, type="joined", room="dev", name="alice")
        bob.send({"type": "quit", "reason": "lunch", "ref": "q"})
        assert bob.frames_until_close()[-1] == {"type": "bye", "reason": "quit", "ref": "q"}
        gone = [alice.next_of("left"), alice.next_of("left")]
        assert sorted(frame["room"] for frame in gone) == ["dev", "lobby"]
        assert all(frame["name"] == "bob" and frame["reason"] == "lunch" for frame in gone)


@pytest.mark.parametrize("ref", ["", "r" * 128, 0, -2**63, 2**63 - 1])
def test_good_refs_are_echoed_on_replies_and_errors(ref):
    with serve() as server, ChatClient(server.address, "alice") as alice:
        alice.send({"type": "who", "ref": ref})
        assert expect(alice, type="users")["ref"] == ref
        alice.send({"type": "dm", "to": "nobody", "text": "x", "ref": ref})
        assert expect(alice, type="error", code="no_such_user")["ref"] == ref
        alice.send({"type": "nonsense", "ref": ref})
        assert expect(alice, type="error", code="unknown_type")["ref"] == ref


@pytest.mark.parametrize("raw_ref", [b'"' + b"r" * 129 + b'"', b"1.5", b"true", b"null",
                                     b"[1]", b'{"a":1}', b"18446744073709551616"])
def test_bad_refs_are_bad_message(raw_ref):
    with serve() as server, ChatClient(server.address, "alice") as alice:
        alice.send_raw(framing.frame(b'{"type":"ping","ref":' + raw_ref + b"}"))
        assert "ref" not in expect(alice, type="error", code="bad_message")
        alice.send({"type": "ping", "ref": 1})
        expect(alice, type="pong", ref=1)


BAD_PAYLOADS = {
    "not utf-8": b'{"type":"ping","data":"\xff"}',
    "not json": b'{"type":"ping"',
    "not an object": b'["ping"]',
    "no type": b'{"data":1}',
    "type not a string": b'{"type":5}',
    "nan": b'{"type":"ping","data":NaN}',
    "infinity": b'{"type":"ping","data":-Infinity}',
    "too deep": b'{"type":"ping","data":' + b"[" * 32 + b"]" * 32 + b"}",
    "int beyond 64 bits": b'{"type":"ping","data":9223372036854775808}',
    "lone surrogate": b'{"type":"ping","data":"\\ud800"}',
    "trailing data": b'{"type":"ping"} x',
    "bad version": b'{"type":"hello","name":"bob","version":"1"}',
}


@pytest.mark.parametrize("payload", BAD_PAYLOADS.values(), ids=BAD_PAYLOADS.keys())
def test_bad_payloads_are_bad_message_and_the_connection_stays(payload):
    with serve() as server, ChatClient(server.address, "alice") as alice:
        alice.send_raw(framing.frame(payload))
        expect(alice, type="error", code="bad_message")
        alice.send({"type": "say", "text": "still here"})
        expect(alice, type="msg", text="still here")


def test_a_lone_surrogate_in_a_text_or_name_member_is_bad_text_or_bad_name():
    with serve() as server, ChatClient(server.address) as client:
        client.send_raw(framing.frame(b'{"type":"hello","name":"a\\ud800","ref":1}'))
        expect(client, type="error", code="bad_name", ref=1)
        client.hello("alice")
        client.send_raw(framing.frame(b'{"type":"say","text":"a\\udc00b","ref":2}'))
        expect(client, type="error", code="bad_text", ref=2)


def test_nesting_of_exactly_32_levels_is_accepted():
    with serve() as server, ChatClient(server.address, "alice") as alice:
        data = b"[" * 31 + b"]" * 31  # the object is level 1
        alice.send_raw(framing.frame(b'{"type":"ping","data":' + data + b"}"))
        assert json.dumps(expect(alice, type="pong")["data"]).count("[") == 31


def test_unknown_type_keeps_the_connection_and_unknown_members_are_ignored():
    with serve() as server, ChatClient(server.address, "alice") as alice:
        alice.send({"type": "teleport", "ref": "t"})
        expect(alice, type="error", code="unknown_type", ref="t")
        alice.send({"type": "say", "text": "hi", "colour": "red", "extra": {"x": [1]}})
        expect(alice, type="msg", text="hi")


def test_zero_length_frame_is_bad_frame_then_bye():
    with serve() as server, ChatClient(server.address, "alice") as alice:
        alice.send_raw(b"\x00\x00\x00\x00" + framing.encode({"type": "ping"}))
        expect_closed_with(alice, {"type": "error", "code": "bad_frame"},
                           {"type": "bye", "reason": "bad_frame"})


def test_oversized_frame_is_frame_too_large_then_bye_without_waiting_for_the_body():
    with serve(max_frame=8192) as server, ChatClient(server.address, "alice") as alice, \
            ChatClient(server.address, "bob") as bob:
        alice.send({"type": "say", "text": "before"})
        alice.send_raw((8193).to_bytes(4, "big"))  # the header alone is enough
        frames = expect_closed_with(alice, {"type": "error", "code": "frame_too_large"},
                                    {"type": "bye", "reason": "frame_too_large"})
        assert [f["text"] for f in frames if f["type"] == "msg"] == ["before"]
        expect(bob, type="msg", text="before")
        expect(bob, type="left", name="alice", reason="frame_too_large")
        alice.close()
        assert server.disconnects["frame_too_large"] == 1


def test_too_many_bad_messages_close_the_connection_as_abuse():
    with serve(max_bad_messages=5) as server, ChatClient(server.address, "alice") as alice:
        for _ in range(4):
            alice.send_raw(framing.frame(b"not json"))
            expect(alice, type="error", code="bad_message")
        alice.send({"type": "ping"})
        expect(alice, type="pong")  # four are tolerated
        alice.send({"type": "bogus"})
        frames = expect_closed_with(alice, {"type": "error", "code": "unknown_type"},
                                    {"type": "error", "code": "bad_message"},
                                    {"type": "bye", "reason": "abuse"})
        assert len(frames) == 3
