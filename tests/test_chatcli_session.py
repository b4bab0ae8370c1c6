"""chatcli's sans-IO session: requests out for events and lines in, no sockets.

The server's side is played by hand here, frame by frame, to pin down the
reconnect catch-up, the holding of lines and the pacing; the end-to-end tests
(test_chatcli_e2e.py) run the same code against a real chatd.
"""

import pytest

from chatcli.session import Session

LIMITS = {"rate": 10.0, "burst": 20, "idle_timeout": 300.0}


def welcome(name="alice", token="t1"):
    return {"type": "welcome", "name": name, "token": token, "rooms": ["lobby"],
            "users": [name], "user_count": 1, "server": "test", "limits": LIMITS}


def msg(room, msg_id, sender="bob", text=None, ts=None, ref=None):
    event = {"type": "msg", "room": room, "from": sender, "text": text or f"m{msg_id}",
             "id": msg_id, "ts": ts if ts is not None else 1000.0 + msg_id}
    if ref is not None:
        event["ref"] = ref
    return event


def answer(request, **members):
    """The server's reply to `request`, carrying its ref."""
    return {**members, "ref": request["ref"]}


def texts(lines):
    return [line.text.split(" ", 1)[1] for line in lines]


def welcomed_session(now=0.0, **options):
    """A session past hello, with the lobby baseline answered (empty room)."""
    session = Session("alice", **options)
    session.connection_made(now)
    (hello,) = session.take_requests(now)
    assert hello["type"] == "hello" and hello["name"] == "alice"
    session.receive(answer(hello, **welcome()))
    requests = session.take_requests(now)
    baseline = requests[0]
    assert baseline == {"type": "history", "room": "lobby", "limit": 1, "ref": baseline["ref"]}
    session.receive(answer(baseline, type="history", room="lobby", messages=[]))
    return session, requests[1:]


def test_lines_typed_before_welcome_wait_and_follow_a_join_into_its_room():
    session = Session("alice", room="dev")
    session.submit("first")
    session.submit("/join ops")
    session.submit("second")
    session.connection_made(0.0)
    (hello,) = session.take_requests(0.0)
    assert session.take_requests(0.0) == []
    session.receive(answer(hello, **welcome()))
    baseline, join_dev = session.take_requests(0.0)
    assert join_dev["type"] == "join" and join_dev["room"] == "dev"
    session.receive({"type": "joined", "room": "dev", "name": "alice"})
    session.receive(answer(join_dev, type="users", room="dev", names=["alice"]))
    requests = session.take_requests(0.0)
    # Everything typed goes once the --room join is done; after /join ops the
    # rest waits again, because "the current room" is about to change.
    assert [(r["type"], r.get("room"), r.get("text")) for r in requests[1:]] == [
        ("say", "dev", "first"), ("join", "ops", None)]
    join_ops = requests[2]
    session.receive(answer(join_ops, type="users", room="ops", names=["alice"]))
    say = session.take_requests(0.0)[-1]
    assert (say["type"], say["room"], say["text"]) == ("say", "ops", "second")


def test_reconnect_shows_exactly_the_missed_messages_and_no_duplicates():
    session, _ = welcomed_session()
    session.receive(msg("lobby", 1))
    session.receive(msg("lobby", 2))
    session.connection_lost()
    session.submit("typed while away")
    session.connection_made(1.0)
    (hello,) = session.take_requests(1.0)
    assert hello["token"] == "t1"
    session.receive(answer(hello, **welcome(token="t2")))
    (catch_up,) = session.take_requests(1.0)
    # From the last seen message itself, to check it is still the same one.
    assert (catch_up["type"], catch_up["room"], catch_up["since"]) == ("history", "lobby", 1)
    # A live message arriving before the answer waits its turn.
    assert session.receive(msg("lobby", 5)) == []
    lines = session.receive(answer(catch_up, type="history", room="lobby",
                                   messages=[msg("lobby", i) for i in (2, 3, 4, 5)]))
    assert texts(lines) == ["<bob> m3", "<bob> m4", "<bob> m5"]
    (say,) = session.take_requests(1.0)
    assert say["text"] == "typed while away" and say["room"] == "lobby"


def test_a_restarted_server_is_recognised_and_its_whole_history_shown():
    session, _ = welcomed_session()
    session.receive(msg("lobby", 1, text="before restart"))
    session.connection_lost()
    session.connection_made(1.0)
    (hello,) = session.take_requests(1.0)
    session.receive(answer(hello, **welcome()))
    (verify,) = session.take_requests(1.0)
    # The new server's message 1 is another message: not the one we saw.
    lines = session.receive(answer(verify, type="history", room="lobby",
                                   messages=[msg("lobby", 1, text="after", ts=5000.0)]))
    assert "starts afresh (a restart)" in lines[0].text
    (everything,) = session.take_requests(1.0)
    assert everything["since"] == 0
    lines = session.receive(answer(everything, type="history", room="lobby",
                                   messages=[msg("lobby", 1, text="after", ts=5000.0)]))
    assert texts(lines) == ["<bob> after"]


def test_rooms_are_rejoined_before_their_catch_up():
    session, _ = welcomed_session()
    session.submit("/join dev")
    (join,) = session.take_requests(0.0)
    session.receive({"type": "joined", "room": "dev", "name": "alice"})
    session.receive(answer(join, type="users", room="dev", names=["alice"]))
    (baseline,) = session.take_requests(0.0)
    session.receive(answer(baseline, type="history", room="dev",
                           messages=[msg("dev", 7)]))
    session.connection_lost()
    session.connection_made(1.0)
    (hello,) = session.take_requests(1.0)
    session.receive(answer(hello, **welcome()))
    rejoin, lobby_catch_up = session.take_requests(1.0)
    assert (rejoin["type"], rejoin["room"]) == ("join", "dev")
    assert (lobby_catch_up["room"], lobby_catch_up["since"]) == ("lobby", 0)
    session.receive(answer(rejoin, type="users", room="dev", names=["alice"]))
    (dev_catch_up,) = session.take_requests(1.0)
    assert (dev_catch_up["room"], dev_catch_up["since"]) == ("dev", 6)
    assert session.current_name == "dev"


def test_a_room_left_and_joined_again_may_number_from_1_again():
    session, _ = welcomed_session()
    session.submit("/join dev")
    (join,) = session.take_requests(0.0)
    session.receive(answer(join, type="users", room="dev", names=["alice"]))
    (baseline,) = session.take_requests(0.0)
    session.receive(answer(baseline, type="history", room="dev", messages=[]))
    session.receive(msg("dev", 5))
    session.submit("/leave")
    session.take_requests(0.0)
    session.receive({"type": "left", "room": "dev", "name": "alice"})
    assert session.current_name == "lobby"
    session.submit("/join dev")
    (join,) = session.take_requests(0.0)
    session.receive(answer(join, type="users", room="dev", names=["alice"]))
    (baseline,) = session.take_requests(0.0)
    session.receive(answer(baseline, type="history", room="dev", messages=[]))
    assert texts(session.receive(msg("dev", 1, text="fresh"))) == ["<bob> fresh"]
    assert session.settled


def test_a_line_sent_before_a_drop_is_sent_again_unless_it_arrived():
    session, _ = welcomed_session()
    session.submit("arrived")
    session.submit("lost")
    assert len(session.take_requests(0.0)) == 2
    session.connection_lost()
    session.connection_made(1.0)
    (hello,) = session.take_requests(1.0)
    session.receive(answer(hello, **welcome()))
    (catch_up,) = session.take_requests(1.0)
    session.receive(answer(catch_up, type="history", room="lobby",
                           messages=[msg("lobby", 1, sender="alice", text="arrived")]))
    (again,) = session.take_requests(1.0)
    assert again["text"] == "lost"


def test_rate_limited_lines_are_paced_and_retried_in_order():
    session, _ = welcomed_session()
    for number in range(30):
        session.submit(f"line {number}")
    first = session.take_requests(0.0)
    # The welcome said burst 20; hello and the baseline took two.
    assert len(first) == 18
    deadline = session.next_deadline(0.0)
    assert 0 < deadline <= 0.1
    session.receive(answer(first[5], type="error", code="rate_limited", message="slow"))
    later = session.take_requests(1.0)
    assert later[0]["text"] == "line 5" and len(later) == 10
    assert not session.settled


def test_pacing_waits_exactly_until_the_next_token():
    session, _ = welcomed_session()
    for number in range(25):
        session.submit(f"line {number}")
    assert len(session.take_requests(0.0)) == 18
    # 10 per second: the next token is whole 0.1 s after the bucket emptied.
    assert session.next_deadline(0.0) == pytest.approx(0.1)
    assert session.take_requests(0.05) == []
    assert session.next_deadline(0.05) == pytest.approx(0.1)
    assert [m["text"] for m in session.take_requests(0.25)] == ["line 18", "line 19"]


def test_quit_is_never_held_back_by_the_rate_limit():
    session, _ = welcomed_session()
    for number in range(25):
        session.submit(f"line {number}")
    session.take_requests(0.0)  # the bucket is empty now
    session.quit("done")
    (quit,) = session.take_requests(0.0)
    assert (quit["type"], quit["reason"]) == ("quit", "done")


def test_no_pacing_when_the_server_announces_no_rate_limit():
    session = Session("alice")
    session.connection_made(0.0)
    (hello,) = session.take_requests(0.0)
    session.receive(answer(hello, **dict(welcome(), limits={})))
    for number in range(50):
        session.submit(f"line {number}")
    assert len(session.take_requests(0.0)) == 51  # the baseline and every line
    assert session.next_deadline(0.0) == 60.0     # only the keepalive


def test_a_refused_name_is_forgotten_with_the_servers_reason():
    session = Session("alice")
    session.connection_made(0.0)
    (hello,) = session.take_requests(0.0)
    lines = session.receive(answer(hello, type="error", code="name_taken",
                                   message="'alice' is taken"))
    assert session.name is None and "is taken" in session.name_rejected
    assert lines[0].text == "! name_taken: 'alice' is taken"
    session.set_name("alice2")
    (again,) = session.take_requests(0.0)
    assert again["name"] == "alice2"


def test_errors_and_unknown_commands_are_one_line_and_counted():
    session, _ = welcomed_session()
    assert texts(session.submit("/nope")) == ["unknown command /nope; /help lists the commands"]
    session.submit("/msg nobody hi")
    (dm,) = session.take_requests(0.0)
    lines = session.receive(answer(dm, type="error", code="no_such_user",
                                   message="no user 'nobody'"))
    assert [line.text for line in lines] == ["! no_such_user: no user 'nobody'"]
    assert session.refused == 2 and session.settled


def test_a_silent_connection_is_declared_dead_after_an_unanswered_ping():
    session, _ = welcomed_session()
    keepalive = session.next_deadline(0.0)
    (ping,) = session.take_requests(keepalive)
    assert ping["type"] == "ping"
    assert not session.is_dead(keepalive + 1)
    assert session.is_dead(session.next_deadline(keepalive) + 0.1)


def test_a_pong_keeps_the_connection_alive_and_leaves_nothing_pending():
    session, _ = welcomed_session()
    keepalive = session.next_deadline(0.0)
    (ping,) = session.take_requests(keepalive)
    session.receive(answer(ping, type="pong"))
    assert not session.is_dead(keepalive + 100)
    assert session.pending == {}
    assert session.next_deadline(keepalive + 1) == keepalive * 2
