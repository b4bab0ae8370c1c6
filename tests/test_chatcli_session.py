"""chatcli's sans-IO session: requests out for events and lines in, no sockets.

The server's side is played by hand here, frame by frame, to pin down the
reconnect catch-up, the holding of lines and the pacing; the end-to-end tests
(test_chatcli_e2e.py) run the same code against a real chatd.
"""

import pytest

from chatcli.session import Session

LIMITS = {"rate": 10.0, "burst": 20, "idle_timeout": 300.0}


def welcome(name="alice", token="t1", epoch=None, limits=LIMITS):
    """A welcome frame; `epoch` None leaves the member out, as chatd does today."""
    event = {"type": "welcome", "name": name, "token": token, "rooms": ["lobby"],
             "users": [name], "user_count": 1, "server": "test", "limits": limits}
    if epoch is not None:
        event["epoch"] = epoch
    return event


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


def welcomed_session(now=0.0, epoch=None, limits=LIMITS, **options):
    """A session past hello, with the lobby baseline answered (empty room)."""
    session = Session("alice", **options)
    session.connection_made(now)
    (hello,) = session.take_requests(now)
    assert hello["type"] == "hello" and hello["name"] == "alice"
    session.receive(answer(hello, **welcome(epoch=epoch, limits=limits)))
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
    # From the last message seen: the server answers with what came after.
    assert (catch_up["type"], catch_up["room"], catch_up["since"]) == ("history", "lobby", 2)
    # A live message arriving before the answer waits its turn.
    assert session.receive(msg("lobby", 5)) == []
    lines = session.receive(answer(catch_up, type="history", room="lobby",
                                   messages=[msg("lobby", i) for i in (3, 4, 5)]))
    assert texts(lines) == ["<bob> m3", "<bob> m4", "<bob> m5"]
    (say,) = session.take_requests(1.0)
    assert say["text"] == "typed while away" and say["room"] == "lobby"


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
    assert (dev_catch_up["room"], dev_catch_up["since"]) == ("dev", 7)
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
    # Nothing to pace: the only deadline is the one for the server's answer.
    assert session.next_deadline(0.0) == session.answer_timeout


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


def reconnect(session, now=1.0, **welcome_members):
    """Drop and redial: the lines the new welcome made, and the requests that follow it."""
    session.connection_lost()
    session.connection_made(now)
    (hello,) = session.take_requests(now)
    lines = session.receive(answer(hello, **welcome(**welcome_members)))
    return lines, session.take_requests(now)


def history(request, messages, **members):
    return answer(request, type="history", room=request["room"], messages=messages, **members)

# ------------------------------------------------------- catch-up in pages


def test_a_catch_up_asks_again_while_pages_come_back_full():
    session, _ = welcomed_session()
    session.receive(msg("lobby", 1))
    session.submit("typed while away")
    _, (first,) = reconnect(session)
    assert (first["since"], first["limit"]) == (1, 100)
    # A full page without `more`: the server stopped at the limit, not at
    # the end.  Ask again from its last message.
    lines = session.receive(history(first, [msg("lobby", i) for i in range(2, 102)]))
    assert texts(lines) == [f"<bob> m{i}" for i in range(2, 102)]
    (second,) = session.take_requests(1.0)
    assert (second["since"], second["limit"]) == (101, 100)
    # Live messages meanwhile wait until the catch-up is done.
    assert session.receive(msg("lobby", 152)) == []
    lines = session.receive(history(second, [msg("lobby", i) for i in range(102, 152)]))
    assert texts(lines) == [f"<bob> m{i}" for i in range(102, 153)]
    (say,) = session.take_requests(1.0)
    assert say["text"] == "typed while away"


def test_a_catch_up_follows_more_and_shows_a_live_message_once():
    session, _ = welcomed_session()
    session.receive(msg("lobby", 1))
    _, (first,) = reconnect(session)
    assert session.receive(msg("lobby", 5)) == []
    lines = session.receive(history(first, [msg("lobby", 2), msg("lobby", 3)], more=True))
    assert texts(lines) == ["<bob> m2", "<bob> m3"]
    (second,) = session.take_requests(1.0)
    assert second["since"] == 3
    lines = session.receive(history(second, [msg("lobby", 4), msg("lobby", 5)]))
    assert texts(lines) == ["<bob> m4", "<bob> m5"]
    assert session.take_requests(1.0) == []
    assert texts(session.receive(msg("lobby", 6))) == ["<bob> m6"]


def test_a_catch_up_pages_by_the_retention_the_server_announced():
    # chatd caps `limit` at its retention: 50 back is a full page, not the end.
    session, _ = welcomed_session(limits={**LIMITS, "history": 50})
    session.receive(msg("lobby", 1))
    _, (first,) = reconnect(session, limits={**LIMITS, "history": 50})
    assert first["limit"] == 50
    session.receive(history(first, [msg("lobby", i) for i in range(2, 52)]))
    (second,) = session.take_requests(1.0)
    assert second["since"] == 51


def test_messages_gone_from_the_server_are_counted_in_one_line():
    session, _ = welcomed_session()
    session.receive(msg("lobby", 1))
    _, (first,) = reconnect(session)
    lines = session.receive(history(first, [msg("lobby", i) for i in range(1102, 1110)]))
    assert [line.text for line in lines[:1]] == [
        "* #lobby: 1100 messages said while you were away are no longer on the server"]
    assert texts(lines[1:]) == [f"<bob> m{i}" for i in range(1102, 1110)]
    assert session.take_requests(1.0) == []


def test_a_room_empty_at_the_baseline_is_caught_up_from_its_first_message():
    session, _ = welcomed_session()  # the lobby had no message when we came
    _, (first,) = reconnect(session)
    assert first["since"] == 0
    lines = session.receive(history(first, [msg("lobby", 1), msg("lobby", 2)]))
    assert texts(lines) == ["<bob> m1", "<bob> m2"]

def test_a_room_whose_baseline_never_came_gets_recent_history_not_all_of_it():
    # The connection dropped between the join and the answer that says
    # where the room stood: no id to catch up from, and "since 0" would
    # replay the room's whole retention as if it had all been missed.
    session, _ = welcomed_session()
    session.submit("/join dev")
    (join,) = session.take_requests(0.0)
    session.receive(answer(join, type="users", room="dev", names=["alice"]))
    (baseline,) = session.take_requests(0.0)
    assert baseline["limit"] == 1
    _, (rejoin, lobby) = reconnect(session)
    session.receive(answer(rejoin, type="users", room="dev", names=["alice"]))
    (dev,) = session.take_requests(1.0)
    assert dev == {"type": "history", "room": "dev", "limit": 100, "ref": dev["ref"]}

# ------------------------------------------------------------------ epochs


def test_the_same_epoch_catches_up_since_the_last_id_seen():
    session, _ = welcomed_session(epoch="e1")
    session.receive(msg("lobby", 7))
    lines, (catch_up,) = reconnect(session, epoch="e1")
    assert (catch_up["since"], catch_up["limit"]) == (7, 100)
    assert [line.text for line in lines] == ["* reconnected as alice; rejoining #lobby"]
    # No guess from the content: whatever comes after 7 is what was missed.
    lines = session.receive(history(catch_up, [msg("lobby", 8, sender="carol", ts=1.0)]))
    assert texts(lines) == ["<carol> m8"]


def test_a_new_epoch_says_so_once_and_shows_recent_history_instead():
    session, _ = welcomed_session(epoch="e1")
    session.submit("/join dev")
    (join,) = session.take_requests(0.0)
    session.receive(answer(join, type="users", room="dev", names=["alice"]))
    (baseline,) = session.take_requests(0.0)
    session.receive(answer(baseline, type="history", room="dev", messages=[msg("dev", 40)]))
    session.receive(msg("dev", 41))
    session.receive(msg("lobby", 9))
    lines, (rejoin, lobby) = reconnect(session, epoch="e2")
    epoch_lines = [line.text for line in lines if "epoch" in line.text]
    assert epoch_lines == ["* the server's message ids started over (a new epoch): "
                           "showing recent history instead of what was missed"]
    # The newest messages, not "since" an id of another lifetime.
    assert lobby == {"type": "history", "room": "lobby", "limit": 100, "ref": lobby["ref"]}
    lines = session.receive(history(lobby, [msg("lobby", 1), msg("lobby", 2)]))
    assert texts(lines) == ["[#lobby] <bob> m1", "[#lobby] <bob> m2"]
    session.receive(answer(rejoin, type="users", room="dev", names=["alice"]))
    (dev,) = session.take_requests(1.0)
    assert "since" not in dev and dev["room"] == "dev"
    lines = session.receive(history(dev, [msg("dev", 1)]))
    assert texts(lines) == ["<bob> m1"]
    # Ids of the new epoch are new, not "already seen".
    assert texts(session.receive(msg("dev", 2))) == ["<bob> m2"]


def test_recent_history_of_a_new_epoch_follows_more_up_to_its_count():
    session, _ = welcomed_session(epoch="e1")
    _, (first,) = reconnect(session, epoch="e2")
    session.receive(history(first, [msg("lobby", i) for i in range(1, 61)], more=True))
    (rest,) = session.take_requests(1.0)
    assert (rest["since"], rest["limit"]) == (60, 40)
    session.receive(history(rest, [msg("lobby", i) for i in range(61, 101)]))
    # 100 asked, 100 shown: no third request, even though the page was full.
    assert session.take_requests(1.0) == []


@pytest.mark.parametrize("before, after", [("e1", None), (None, "e1"), (None, None),
                                           ("e1", 5), ("e1", "x" * 65)])
def test_an_epoch_missing_on_either_side_falls_back_to_since_the_last_id(before, after):
    session, _ = welcomed_session(epoch=before)
    session.receive(msg("lobby", 3))
    welcome_members = {"epoch": after} if after is not None else {}
    lines, (catch_up,) = reconnect(session, **welcome_members)
    assert catch_up["since"] == 3
    assert not any("epoch" in line.text for line in lines)


def test_a_live_id_at_or_below_the_last_seen_is_shown_as_a_new_start():
    # A server that restarted without telling an epoch numbers from 1 again:
    # its messages are new, not duplicates to hide.
    session, _ = welcomed_session()
    session.receive(msg("lobby", 5))
    lines = session.receive(msg("lobby", 1, text="after a restart"))
    assert [line.text for line in lines[:1]] == [
        "* #lobby: message ids went back from 5 to 1: the server's history started over"]
    assert texts(lines[1:]) == ["<bob> after a restart"]
    assert texts(session.receive(msg("lobby", 2))) == ["<bob> m2"]

def test_a_live_message_held_during_a_catch_up_is_news_when_ids_went_back():
    session, _ = welcomed_session()
    session.receive(msg("lobby", 5))
    _, (catch_up,) = reconnect(session)
    assert session.receive(msg("lobby", 1, text="new server")) == []
    # Nothing after 5 on a server whose ids restarted: the held message is
    # not a repeat of one the catch-up showed.
    lines = session.receive(history(catch_up, []))
    assert [line.text for line in lines[:1]] == [
        "* #lobby: message ids went back from 5 to 1: the server's history started over"]
    assert texts(lines[1:]) == ["<bob> new server"]


def test_a_failed_catch_up_still_shows_the_live_messages_held_for_it():
    session, _ = welcomed_session()
    session.receive(msg("lobby", 5))
    _, (catch_up,) = reconnect(session)
    session.receive(msg("lobby", 9))
    lines = session.receive(answer(catch_up, type="error", code="unavailable",
                                   message="store down"))
    assert [line.text for line in lines[:1]] == ["! unavailable: store down"]
    assert texts(lines[1:]) == ["<bob> m9"]

# ------------------------------------------------------------------ /history


def test_history_follows_more_and_prints_every_message_once_oldest_first():
    session, _ = welcomed_session()
    session.submit("/history 20")
    (first,) = session.take_requests(0.0)
    assert first == {"type": "history", "room": "lobby", "limit": 20, "ref": first["ref"]}
    assert session.receive(history(first, [msg("lobby", i) for i in range(1, 17)],
                                   more=True)) == []
    assert not session.settled
    (rest,) = session.take_requests(0.0)
    assert (rest["since"], rest["limit"]) == (16, 4)
    lines = session.receive(history(rest, [msg("lobby", i) for i in range(17, 21)]))
    assert texts(lines) == [f"<bob> m{i}" for i in range(1, 21)]
    assert session.settled and session.pending == {}


def test_history_whose_later_part_fails_shows_what_came_and_the_error():
    session, _ = welcomed_session()
    session.submit("/history 20")
    (first,) = session.take_requests(0.0)
    session.receive(history(first, [msg("lobby", i) for i in range(1, 17)], more=True))
    (rest,) = session.take_requests(0.0)
    lines = session.receive(answer(rest, type="error", code="not_in_room", message="no"))
    assert [line.text for line in lines[-1:]] == ["! not_in_room: no"]
    assert texts(lines[:-1]) == [f"<bob> m{i}" for i in range(1, 17)]
    assert session.settled and session.refused == 1


def test_history_that_fits_is_one_request_and_an_empty_room_says_so():
    session, _ = welcomed_session()
    session.submit("/history 5")
    (request,) = session.take_requests(0.0)
    assert texts(session.receive(history(request, [msg("lobby", 3)]))) == ["<bob> m3"]
    session.submit("/history")
    (request,) = session.take_requests(0.0)
    assert request["limit"] == 20
    assert texts(session.receive(history(request, []))) == ["* no messages in #lobby"]
    assert session.settled

# --------------------------------------------------------------- keepalive


def test_with_the_defaults_a_dead_connection_is_noticed_within_30_s_of_the_last_frame():
    session, _ = welcomed_session()
    session.receive(msg("lobby", 1), now=5.0)  # the last frame that got through
    now, pings = 5.0, 0
    while not session.is_dead(now):
        now = session.next_deadline(now)
        assert now is not None
        for request in session.take_requests(now):
            pings += request["type"] == "ping"
    assert now - 5.0 <= 30.0 and pings == 1


def test_an_idle_connection_pings_once_per_20_s_and_no_more():
    session, _ = welcomed_session()
    now, pings = 0.0, []
    while now < 200.0:
        now = session.next_deadline(now)
        for request in session.take_requests(now):
            assert request["type"] == "ping"
            pings.append(now)
            session.receive(answer(request, type="pong"), now=now + 0.01)
    gaps = [later - earlier for earlier, later in zip(pings, pings[1:])]
    assert len(pings) == 10 and all(19.9 <= gap <= 20.1 for gap in gaps), pings


def test_a_busy_room_still_pings_before_the_servers_idle_timeout():
    # Frames keep arriving, so silence never triggers a ping, but the server
    # closes a connection that has sent nothing for idle_timeout (300 s).
    session, _ = welcomed_session()
    sent = []
    for second in range(1, 400):
        session.receive(msg("lobby", second), now=float(second))
        sent += [(second, r["type"]) for r in session.take_requests(float(second))]
    pings = [second for second, kind in sent if kind == "ping"]
    assert pings and pings[0] <= 100 and all(b - a <= 100 for a, b in zip(pings, pings[1:]))


def test_a_request_with_no_frame_back_for_the_answer_timeout_means_a_dead_connection():
    # A hello into a black hole: the welcome never comes.
    session = Session("alice")
    session.connection_made(0.0)
    session.take_requests(0.0)
    assert session.next_deadline(0.0) == session.answer_timeout == 10.0
    assert not session.is_dead(9.99)
    assert session.is_dead(10.0)

# ------------------------------------------------------------------ accounts

PASSWORD = "correct horse"


def dm(msg_id, sender="bob", to="alice", text=None, ref=None):
    event = {"type": "msg", "to": to, "from": sender, "text": text or f"d{msg_id}",
             "id": msg_id, "ts": 1000.0 + msg_id}
    if ref is not None:
        event["ref"] = ref
    return event


def test_register_asks_twice_and_sends_only_matching_passwords():
    session, _ = welcomed_session()
    assert session.submit("/register") == [] and session.question == "new password: "
    session.submit(PASSWORD)
    assert session.question == "new password again: "
    assert texts(session.submit("something else")) == [
        "/register: the two new passwords differ; nothing sent"]
    assert session.question is None and session.take_requests(0.0) == []
    # Too short: refused at once, not asked again.
    session.submit("/register")
    assert texts(session.submit("short")) == [
        "/register: a password is 8 to 1,024 characters, not 5; nothing sent"]
    assert session.question is None and session.refused == 2
    session.submit("/register")
    session.submit(PASSWORD)
    assert session.submit(PASSWORD) == []
    (register,) = session.take_requests(0.0)
    assert register == {"type": "register", "password": PASSWORD, "ref": register["ref"]}
    lines = session.receive(answer(register, type="registered", name="alice"))
    assert texts(lines) == ["* alice is now your account; next time log in with its password"]
    # A reconnect logs in with it (the token alone dies with a server restart).
    session.connection_lost()
    session.connection_made(1.0)
    (hello,) = session.take_requests(1.0)
    assert hello["password"] == PASSWORD and hello["token"] == "t1"


def test_passwd_asks_the_current_and_the_new_twice_and_remembers_the_new():
    session, _ = welcomed_session(password=PASSWORD)
    session.submit("/passwd")
    for prompt, typed in (("current password: ", PASSWORD),
                          ("new password: ", "battery staple"),
                          ("new password again: ", "battery staple")):
        assert session.question == prompt
        session.submit(typed)
    (passwd,) = session.take_requests(0.0)
    assert (passwd["type"], passwd["old"], passwd["new"]) == ("passwd", PASSWORD,
                                                               "battery staple")
    assert texts(session.receive(answer(passwd, type="password_changed"))) == [
        "* password changed"]
    session.connection_lost()
    session.connection_made(1.0)
    assert session.take_requests(1.0)[0]["password"] == "battery staple"


def test_a_cancelled_question_sends_nothing_and_a_cancelled_login_quits():
    session, _ = welcomed_session()
    session.submit("/passwd")
    session.submit(PASSWORD)
    assert texts(session.cancel_question()) == ["/passwd cancelled; nothing sent"]
    assert session.question is None and session.take_requests(0.0) == []
    assert texts(session.submit("chat again")) == []
    assert session.take_requests(0.0)[0]["text"] == "chat again"
    login = Session("alice")
    login.connection_made(0.0)
    (hello,) = login.take_requests(0.0)
    login.receive(answer(hello, type="error", code="auth_required", message="account"))
    login.cancel_question()
    assert login.quitting and login.take_requests(0.0)[0]["type"] == "quit"


def test_an_account_name_asks_for_the_password_three_times_then_gives_up():
    session = Session("alice")
    session.connection_made(0.0)
    (hello,) = session.take_requests(0.0)
    assert "password" not in hello
    lines = session.receive(answer(hello, type="error", code="auth_required",
                                   message="'alice' is an account: send its password"))
    assert [line.text for line in lines] == [
        "! auth_required: 'alice' is an account: send its password"]
    assert session.question == "password for alice (empty: another name): "
    for tries in range(1, 4):
        # A reconnect meanwhile waits for the answer instead of asking again.
        session.connection_lost()
        session.connection_made(float(tries))
        assert session.take_requests(float(tries)) == []
        session.submit(f"wrong {tries} password")
        (hello,) = session.take_requests(float(tries))
        assert hello["password"] == f"wrong {tries} password"
        session.receive(answer(hello, type="error", code="auth_failed",
                               message="wrong name or password"))
        if tries < 3:
            assert session.fatal is None and session.question is not None
    assert session.fatal == "cannot log in as alice: wrong name or password 3 times"


def test_an_empty_answer_gives_the_name_back_and_a_right_one_logs_in():
    session = Session("alice")
    session.connection_made(0.0)
    (hello,) = session.take_requests(0.0)
    session.receive(answer(hello, type="error", code="auth_required", message="account"))
    assert texts(session.submit("")) == [
        "choose another username: 1 to 32 characters from A-Z a-z 0-9 _ - ."]
    assert session.name is None and session.question is None
    session.set_name("alice")
    (hello,) = session.take_requests(0.0)
    session.receive(answer(hello, type="error", code="auth_required", message="account"))
    session.submit(PASSWORD)
    (hello,) = session.take_requests(0.0)
    lines = session.receive(answer(hello, **welcome(), account=True, conversations=[]))
    assert texts(lines) == ["connected as alice, logged in (test); 1 in #lobby: alice"]


def test_without_someone_to_ask_a_refused_login_is_fatal():
    required = Session("alice", ask_password=False)
    required.connection_made(0.0)
    (hello,) = required.take_requests(0.0)
    required.receive(answer(hello, type="error", code="auth_required", message="account"))
    assert required.fatal == ("alice is an account: give its password with "
                              "--password-file FILE or CHATCLI_PASSWORD")
    assert required.question is None
    wrong = Session("alice", password="wrong password", ask_password=False)
    wrong.connection_made(0.0)
    (hello,) = wrong.take_requests(0.0)
    assert hello["password"] == "wrong password"
    wrong.receive(answer(hello, type="error", code="auth_failed",
                         message="wrong name or password"))
    assert wrong.fatal == "cannot log in as alice: wrong name or password"


def test_a_login_refused_for_too_many_failures_is_not_sent_again_at_once():
    session = Session("alice", password=PASSWORD)
    session.connection_made(0.0)
    (hello,) = session.take_requests(0.0)
    session.receive(answer(hello, type="error", code="rate_limited",
                           message="too many failed logins from your address; wait up to 60s"))
    assert session.take_requests(0.0) == []
    assert session.fatal == ("cannot log in as alice: too many failed logins from your "
                             "address; wait up to 60s")


def test_a_login_the_server_cannot_check_now_asks_for_a_new_connection():
    session = Session("alice", password=PASSWORD)
    session.connection_made(0.0)
    (hello,) = session.take_requests(0.0)
    session.receive(answer(hello, type="error", code="unavailable",
                           message="too many logins being checked; try again shortly"))
    assert session.redial == ("cannot log in now: too many logins being checked; "
                              "try again shortly")
    assert session.fatal is None and session.take_requests(0.0) == []
    session.connection_lost()
    assert session.redial is None
    session.connection_made(1.0)
    assert session.take_requests(1.0)[0]["password"] == PASSWORD


def logged_in(conversations, session=None, now=0.0, limits=LIMITS):
    """`session` (a new alice with a password by default) welcomed as an
    account with `conversations`; returns it and the requests that follow."""
    if session is None:
        session = Session("alice", password=PASSWORD)
    session.connection_made(now)
    (hello,) = session.take_requests(now)
    session.receive(answer(hello, **welcome(limits=limits), account=True,
                           conversations=conversations))
    return session, session.take_requests(now)


def test_private_conversations_at_login_are_fetched_least_recent_first():
    session, requests = logged_in([{"with": "Bob", "last_id": 3},
                                   {"with": "carol", "last_id": 1},
                                   {"with": "not a name", "last_id": 1}, "junk"])
    baseline, carol, bob = requests
    assert baseline["room"] == "lobby"
    assert (carol["with"], carol["limit"], "since" in carol) == ("carol", 100, False)
    assert bob["with"] == "Bob"
    # Held: what the user types waits until they are shown.
    session.submit("typed meanwhile")
    assert session.take_requests(0.0) == [] and not session.settled
    session.receive(answer(baseline, type="history", room="lobby", messages=[]))
    lines = session.receive(answer(carol, type="history", messages=[dm(1, sender="carol")],
                                   **{"with": "carol"}))
    assert texts(lines) == ["*carol* d1"]
    # A live one from Bob during his catch-up waits and is shown once.
    assert session.receive(dm(4, sender="Bob")) == []
    lines = session.receive(answer(bob, type="history", messages=[
        dm(1, sender="Bob"), dm(2, sender="alice", to="Bob"), dm(3, sender="Bob")],
        **{"with": "Bob"}))
    assert texts(lines) == ["*Bob* d1", "-> *Bob* d2", "*Bob* d3", "*Bob* d4"]
    (say,) = session.take_requests(0.0)
    assert say["text"] == "typed meanwhile"


def test_a_reconnect_fetches_only_the_conversations_with_unseen_messages():
    session, (baseline, bob) = logged_in([{"with": "bob", "last_id": 2}])
    session.receive(answer(baseline, type="history", room="lobby", messages=[]))
    session.receive(answer(bob, type="history", messages=[dm(1), dm(2)], **{"with": "bob"}))
    session.submit("/msg carol hi")
    (sent,) = session.take_requests(0.0)
    session.receive(dm(1, sender="alice", to="carol", text="hi", ref=sent["ref"]))
    session.connection_lost()
    # A retention of 2 messages: pages of 2, asked until one comes back
    # short, as a room's catch-up does.
    session, (lobby, carol) = logged_in([{"with": "carol", "last_id": 4},
                                         {"with": "bob", "last_id": 2}], session, now=1.0,
                                        limits={**LIMITS, "history": 2})
    assert lobby["room"] == "lobby"
    assert (carol["with"], carol["since"], carol["limit"]) == ("carol", 1, 2)
    session.receive(answer(lobby, type="history", room="lobby", messages=[]))
    session.receive(answer(carol, type="history", messages=[dm(2, sender="carol"),
                                                            dm(3, sender="carol")],
                           **{"with": "carol"}))
    (more,) = session.take_requests(1.0)
    assert (more["with"], more["since"], "room" in more) == ("carol", 3, False)
    assert texts(session.receive(answer(more, type="history", messages=[
        dm(4, sender="carol")], **{"with": "carol"}))) == ["*carol* d4"]
    assert session.settled


def test_a_session_ended_because_its_name_changed_hands_says_why():
    for code, why in (("not_registered", "deleted this account"),
                      ("name_registered", "became an account")):
        session, _ = welcomed_session()
        session.receive({"type": "error", "code": code, "message": "..."})
        session.receive({"type": "bye", "reason": "replaced"})
        assert why in session.fatal
    session, _ = welcomed_session()
    session.receive({"type": "bye", "reason": "replaced"})
    assert session.fatal == "another chatcli took over this name"
