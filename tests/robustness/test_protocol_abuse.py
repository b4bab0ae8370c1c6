"""Abuse within the protocol: flooding, impersonation, look-alike names,
eavesdropping on a dm, and a history request trying to get an oversized or
foreign frame, while the chatters' conversation goes on untouched."""

import time

from chatters import Chatters, percentile
from crowd import Crowd
from probes import PeakRss, assert_healthy
from support import ServerProcess

SMALL_FRAME = 8_192   # the smallest max_frame chatd accepts: history must page


def _replies(peer, *kinds):
    return [frame for frame in peer.frames if frame["type"] in kinds]


def test_a_flood_is_rate_limited_and_the_others_chat_on():
    with ServerProcess() as server, PeakRss(server.pid) as memory, \
            Chatters((server.host, server.port)) as chatters, \
            Crowd((server.host, server.port)) as crowd:
        flooder, = crowd.open(["flooder"])
        limits = flooder.frames[0]["limits"]
        # Two seconds of about a thousand lines a second, against a rate of 10/s.
        sent, began = 0, time.monotonic()
        while time.monotonic() - began < 2.0:
            for _ in range(20):
                crowd.send(flooder, {"type": "say", "text": f"flood {sent}", "ref": sent})
                sent += 1
            crowd.pump(0.02)
        crowd.run_until(lambda: len(_replies(flooder, "msg", "error")) >= sent, 10,
                        "an answer to each flood line")
        took = time.monotonic() - began
        accepted = [f for f in flooder.frames if f["type"] == "msg" and f["from"] == "flooder"]
        limited = [f for f in flooder.frames if f.get("code") == "rate_limited"]
        assert len(accepted) + len(limited) == sent
        assert len(accepted) <= limits["burst"] + limits["rate"] * took + 1
        assert len(limited) >= sent - limits["burst"] - limits["rate"] * took - 1
        assert sorted(f["ref"] for f in accepted + limited) == list(range(sent))
        assert not flooder.eof, "rate limiting is not a reason to disconnect"
        latencies = chatters.check()
        # A figure, not a test: timing belongs to benchmarks/ (DEVELOPERS.md).
        print(f"\nchatters' p99 during the flood {percentile(latencies, 0.99) * 1000:.1f} ms")
        memory.assert_bounded()
        assert_healthy(server)


def test_a_client_cannot_speak_as_someone_else():
    with ServerProcess() as server, Crowd((server.host, server.port)) as crowd:
        alice, mallory = crowd.open(["alice", "mallory"])
        crowd.send(mallory, {"type": "say", "text": "I am alice", "from": "alice"})
        crowd.send(mallory, {"type": "dm", "to": "alice", "text": "from alice", "from": "alice"})
        crowd.run_until(lambda: len(alice.of_type("msg")) == 2, 5, "both lines at alice")
        for frame in alice.of_type("msg"):
            assert frame["from"] == "mallory", frame
        assert_healthy(server)


def test_names_differing_only_by_case_are_taken_and_non_ascii_names_are_refused():
    with ServerProcess() as server, Crowd((server.host, server.port)) as crowd:
        alice, bob = crowd.open(["alice", "bob"])
        copycat, = crowd.open([None])
        look_alikes = ["ALICE", "Alice", "aLiCe",
                       "\u0430lice",   # Cyrillic a
                       "alic\u00e9", "alice\u0301", "\uff41lice", "ali\u200bce", "alice\u00a0"]
        for name in look_alikes:
            crowd.send(copycat, {"type": "hello", "name": name})
        crowd.send(bob, {"type": "nick", "name": "ALICE"})
        crowd.run_until(lambda: len(copycat.of_type("error")) == len(look_alikes)
                        and bob.of_type("error"), 5, "every look-alike refused")
        codes = [frame["code"] for frame in copycat.of_type("error")]
        assert codes == ["name_taken"] * 3 + ["bad_name"] * 6
        assert bob.of_type("error")[0]["code"] == "name_taken"
        # Refused names leave the connection usable: a real name still gets in.
        crowd.send(copycat, {"type": "hello", "name": "carol"})
        crowd.run_until(lambda: copycat.welcomed, 5, "carol welcomed")
        assert_healthy(server)


def test_a_dm_reaches_only_its_recipient():
    with ServerProcess() as server, Chatters((server.host, server.port)) as chatters, \
            Crowd((server.host, server.port)) as crowd:
        alice, bob, carol = crowd.open(["alice", "bob", "carol"])
        crowd.send(alice, {"type": "dm", "to": "bob", "text": "just for bob"})
        crowd.run_until(lambda: bob.has("msg", text="just for bob"), 5, "bob's dm")
        # Delivery is queued for every recipient in the same loop turn, so
        # a pong answered after bob's dm would come after a leak to carol.
        crowd.send(carol, {"type": "ping", "ref": "after-dm"})
        crowd.run_until(lambda: carol.has("pong", ref="after-dm"), 5, "carol's pong")
        assert alice.has("msg", text="just for bob", to="bob")
        assert not carol.has("msg"), carol.frames
        chatters.check()
        for peer in chatters.peers:
            assert not peer.has("msg", text="just for bob")
        assert_healthy(server)


def test_history_returns_only_its_room_and_never_a_frame_over_max_frame():
    with ServerProcess("--max-frame", str(SMALL_FRAME), "--rate-limit", "0") as server, \
            Crowd((server.host, server.port), max_frame=SMALL_FRAME) as crowd:
        writer, reader = crowd.open(["writer", "reader"])
        for peer in (writer, reader):
            for room in ("big", "other"):
                crowd.send(peer, {"type": "join", "room": room})
        crowd.run_until(lambda: len(reader.of_type("users")) == 2, 5, "rooms joined")
        # Mixed sizes, up to 7,000 bytes of UTF-8: a msg must leave room in
        # max_frame for history's envelope (the server keeps 1 KiB for it).
        texts = [("\u00e9" * 3_500 if index % 3 == 0 else f"line {index} " + "x" * (index * 97))
                 for index in range(40)]
        for index, text in enumerate(texts):
            crowd.send(writer, {"type": "say", "room": "big", "text": text})
            crowd.send(writer, {"type": "say", "room": "other", "text": f"elsewhere {index}"})
        # A request that fits max_frame, but whose msg would not fit history's page.
        crowd.send(writer, {"type": "say", "room": "big", "text": "\u20ac" * 2_500,
                            "ref": "too-big"})
        crowd.run_until(lambda: writer.has("error", ref="too-big"), 10, "the oversized line")
        assert writer.has("error", code="bad_text", ref="too-big")

        pages, since = [], None
        while True:
            request = {"type": "history", "room": "big", "limit": 1_000, "ref": len(pages)}
            if since is not None:
                request["since"] = since
            crowd.send(reader, request)
            crowd.run_until(lambda: reader.has("history", ref=len(pages)), 5, "a history page")
            page = next(f for f in reader.of_type("history") if f["ref"] == len(pages))
            pages.append(page)
            if not page.get("more"):
                break
            since = page["messages"][-1]["id"]
            assert len(pages) <= len(texts), "history never ends"
        assert not reader.bad_frames, "a frame over max_frame"   # the decoder's limit
        got = [message for page in pages for message in page["messages"]]
        assert all(message["room"] == "big" for message in got)
        assert [message["text"] for message in got] == texts
        assert len(pages) > 1, "nothing to page: the test proves nothing"
        assert_healthy(server)
